//! `stockroom bench --smoke`: every system and phase of the flash-sale
//! benchmark runs and reports. No timing is asserted (these machines are
//! noisy); correctness is: Stockroom sells exactly its stock.

use std::process::Command;

use serde_json::Value;

#[test]
fn the_benchmark_runs_every_system_and_sells_exactly_the_stock() {
    let _servers = crate::harness::using_shared_servers_blocking();
    let directory = tempfile::tempdir().unwrap();
    let chart = directory.path().join("chart.svg");
    let mut command = Command::new(env!("CARGO_BIN_EXE_stockroom"));
    command
        .args(["bench", "--smoke", "--json", "--chart"])
        .arg(&chart);
    let postgres = std::env::var("STOCKROOM_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.is_empty());
    let amqp = std::env::var("STOCKROOM_TEST_AMQP_URL")
        .ok()
        .filter(|url| !url.is_empty());
    match &postgres {
        Some(url) => {
            command.args(["--postgres-url", url, "--wal-by-relation"]);
            if let Some(amqp) = &amqp {
                command.args(["--amqp-url", amqp]);
            }
        }
        None => {
            command.args([
                "--systems",
                "stockroom,stockroom-batching-off,naive,noop-http",
            ]);
        }
    }
    let output = command.env("STOCKROOM_LOG", "off").output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    for scenario in ["hot_sku", "cold"] {
        let summary = &report[scenario];
        assert!(summary["orders_per_s"].as_f64().unwrap() > 0.0, "{summary}");
        assert!(summary["p99_ms"].as_f64().is_some());
        assert_eq!(summary["oversold"], 0, "{summary}");
        assert_eq!(summary["undersold"], 0, "{summary}");
        assert!(summary["ratio_vs_noop_http"].as_f64().unwrap() > 0.0);
        assert!(summary["ratio_vs_batching_off"].as_f64().is_some());
        assert!(
            summary["statements_per_order"].as_f64().unwrap() > 0.0,
            "{summary}"
        );
        // The machine's CPU an order takes is read from Linux's /proc/stat.
        if cfg!(target_os = "linux") {
            assert!(
                summary["cpu_us_per_order"].as_f64().unwrap() > 0.0,
                "{summary}"
            );
        }
    }
    if postgres.is_some() {
        let mut measured = vec!["postgres_hot", "postgres_cold"];
        if amqp.is_some() {
            measured.extend(["postgres_rabbitmq_hot", "postgres_rabbitmq_cold"]);
        }
        for summary in measured {
            let summary = &report[summary];
            assert!(summary["orders_per_s"].as_f64().unwrap() > 0.0, "{summary}");
            assert!(summary["ratio_vs_postgres_per_request"].as_f64().unwrap() > 0.0);
            assert!(summary["ratio_vs_full_flow_per_request"].as_f64().unwrap() > 0.0);
            assert!(
                summary["wal_bytes_per_order"].as_f64().unwrap() > 0.0,
                "{summary}"
            );
            assert!(summary["statements_per_order"].as_f64().unwrap() > 0.0);
            // Every order adds index entries: at least its row's keys. A
            // phase whose log could not be read back says why in its note.
            let notes: Vec<&serde_json::Value> = report["phases"]
                .as_array()
                .unwrap()
                .iter()
                .map(|phase| &phase["note"])
                .filter(|note| !note.is_null())
                .collect();
            assert!(
                summary["index_insertions_per_order"]
                    .as_f64()
                    .is_some_and(|entries| entries > 0.0),
                "{summary} {notes:?}"
            );
            assert_eq!(summary["oversold"], 0, "{summary}");
            assert_eq!(summary["undersold"], 0, "{summary}");
        }
    }
    assert!(
        report["hot_sku"]
            .get("ratio_vs_postgres_per_request")
            .is_some()
    );
    let phases = report["phases"].as_array().unwrap();
    for phase in phases.iter().filter(|phase| {
        phase["system"].as_str().unwrap().starts_with("stockroom") && phase["phase"] == "sell-out"
    }) {
        assert_eq!(
            (phase["oversold"].as_i64(), phase["undersold"].as_i64()),
            (Some(0), Some(0)),
            "{phase}"
        );
    }
    if postgres.is_some() {
        // The full-flow baseline sells exactly its stock too.
        let full_flow: Vec<_> = phases
            .iter()
            .filter(|phase| {
                phase["system"] == "postgres-full-flow-per-request" && phase["phase"] == "sell-out"
            })
            .collect();
        assert_eq!(full_flow.len(), 2, "{phases:?}");
        for phase in full_flow {
            assert_eq!(
                (phase["oversold"].as_i64(), phase["undersold"].as_i64()),
                (Some(0), Some(0)),
                "{phase}"
            );
        }
    }
    if postgres.is_some() {
        // The log read back names the tables an order writes, and what it
        // sums to is what the insert position moved (the records between
        // two positions, within the records cut at either end).
        let phase = phases
            .iter()
            .find(|phase| {
                phase["system"] == "stockroom-postgres"
                    && phase["scenario"] == "cold"
                    && phase["phase"] == "throughput"
            })
            .unwrap();
        let relations = phase["wal_by_relation"]["relations"].as_array().unwrap();
        let bytes_of = |name: &str| {
            relations
                .iter()
                .find(|relation| relation["relation"] == name)
                .and_then(|relation| relation["bytes_per_order"].as_f64())
        };
        for table in ["orders", "outbox", "inventory"] {
            assert!(
                bytes_of(table).unwrap_or(0.0) > 0.0,
                "{table}: {relations:?}"
            );
        }
        let total: f64 = relations
            .iter()
            .map(|relation| relation["bytes_per_order"].as_f64().unwrap())
            .sum();
        let measured = phase["wal_bytes_per_order"].as_f64().unwrap();
        assert!(
            total > 0.5 * measured && total <= measured * 1.01 + 100.0,
            "{total} of {measured}: {relations:?}"
        );
    }
    assert!(phases.iter().any(|phase| phase["system"] == "naive"));
    assert!(phases.iter().any(|phase| phase["system"] == "noop-http"));
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("stockroom"));
}

/// `stockroom bench --growth --smoke`: every read is timed at two sizes on
/// every backend, and the report carries the ratios (no timing is asserted).
#[test]
fn the_growth_benchmark_measures_every_read_at_every_size() {
    let _servers = crate::harness::using_shared_servers_blocking();
    let mut command = Command::new(env!("CARGO_BIN_EXE_stockroom"));
    command.args(["bench", "--growth", "--smoke", "--json"]);
    let postgres = std::env::var("STOCKROOM_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.is_empty());
    if let Some(url) = &postgres {
        command.args(["--postgres-url", url]);
    }
    let output = command.env("STOCKROOM_LOG", "off").output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let backends = if postgres.is_some() { 2 } else { 1 };
    assert_eq!(report["reads"].as_array().unwrap().len(), backends * 2 * 6);
    let ratios = report["ratios"].as_array().unwrap();
    assert_eq!(ratios.len(), backends * 6);
    for ratio in ratios {
        assert!(ratio["ratio"].as_f64().unwrap() > 0.0, "{ratio}");
    }
}

/// `stockroom bench --rounds 2`: every phase runs once per round, and the
/// summary is made of both rounds.
#[test]
fn two_rounds_run_every_phase_twice() {
    let _servers = crate::harness::using_shared_servers_blocking();
    let report = smoke_report(&[
        "--rounds",
        "2",
        "--systems",
        "stockroom,noop-http",
        "--scenarios",
        "hot",
    ]);
    assert_eq!(report["settings"]["rounds"], 2);
    let phases = report["phases"].as_array().unwrap();
    for round in [1, 2] {
        for (system, phase) in [
            ("stockroom", "throughput"),
            ("stockroom", "sell-out"),
            ("noop-http", "throughput"),
        ] {
            assert!(
                phases.iter().any(|measured| measured["round"] == round
                    && measured["system"] == system
                    && measured["phase"] == phase),
                "{system} {phase} in round {round}: {phases:?}"
            );
        }
    }
    let summary = &report["hot_sku"];
    assert!(summary["ratio_vs_noop_http"].as_f64().unwrap() > 0.0);
    assert_eq!(summary["oversold"], 0, "{summary}");
    assert_eq!(summary["undersold"], 0, "{summary}");
}

#[test]
fn rounds_out_of_bounds_are_refused() {
    let output = Command::new(env!("CARGO_BIN_EXE_stockroom"))
        .args(["bench", "--smoke", "--rounds", "0"])
        .env("STOCKROOM_LOG", "off")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--rounds must be from 1 to 9"), "{stderr}");
}

/// `stockroom bench --systems stockroom-postgres,stockroom-postgres-locking-first`:
/// the variant that locks every batch's stock first runs only when named,
/// sells exactly the stock like the shipped one, and the shipped one's
/// summary gives the ratio between them.
#[test]
fn the_locking_first_variant_runs_when_named_and_gives_its_ratio() {
    let _servers = crate::harness::using_shared_servers_blocking();
    let Some(url) = crate::harness::postgres_url() else {
        return;
    };
    let report = smoke_report(&[
        "--postgres-url",
        &url,
        "--systems",
        "stockroom-postgres,stockroom-postgres-locking-first",
        "--scenarios",
        "cold",
    ]);
    for phase in report["phases"].as_array().unwrap() {
        if phase["phase"] == "sell-out" {
            assert_eq!(phase["oversold"], 0, "{phase}");
            assert_eq!(phase["undersold"], 0, "{phase}");
        }
    }
    let summary = &report["postgres_cold"];
    assert!(
        summary["ratio_vs_locking_first"].as_f64().unwrap() > 0.0,
        "{summary}"
    );
}

/// The JSON report of `stockroom bench --smoke --json` with `args`, which
/// must succeed.
fn smoke_report(args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_stockroom"))
        .args(["bench", "--smoke", "--json"])
        .args(args)
        .env("STOCKROOM_LOG", "off")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}
