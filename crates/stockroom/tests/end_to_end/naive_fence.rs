//! The naive mode's fence: only the explicit `--mode naive` flag starts the
//! original, racy system (an environment variable never does), it refuses an
//! address other machines can reach, and it says it is racy on purpose.

use std::process::Command;

use serde_json::Value;

use crate::harness::{UpProcess, get, ready_url, spawn_up};

/// A `stockroom up` child process and its ready line. The process is
/// dropped, and so stopped, before its data directory.
struct Up {
    _child: UpProcess,
    ready: String,
    _directory: tempfile::TempDir,
}

impl Up {
    fn url(&self, name: &str) -> String {
        ready_url(&self.ready, name)
    }
}

/// Starts `stockroom up` with `extra` arguments and `STOCKROOM_MODE=naive` in
/// its environment, and reads its ready line.
fn up_with_naive_environment(extra: &[&str]) -> Up {
    let directory = tempfile::tempdir().unwrap();
    let environment = [("STOCKROOM_MODE", "naive"), ("STOCKROOM_LOG", "error")];
    let (child, ready) = spawn_up(directory.path(), extra, &environment);
    Up {
        _child: child,
        ready,
        _directory: directory,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environment_alone_starts_the_fixed_system() {
    let up = up_with_naive_environment(&[]);
    assert!(!up.ready.contains("naive"), "{}", up.ready);
    let client = reqwest::Client::new();
    for service in ["order", "data", "inventory", "payment"] {
        let (status, health) = get(&client, &format!("{}/health", up.url(service))).await;
        assert_eq!(status, 200, "{service}: {health}");
        assert_ne!(health["mode"], "naive", "{service}: {health}");
        assert_eq!(health["racy"], Value::Null, "{service}: {health}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flag_starts_the_naive_system_and_it_says_it_is_racy() {
    let up = up_with_naive_environment(&["--mode", "naive"]);
    assert!(up.ready.contains("mode=naive"), "{}", up.ready);
    assert!(up.ready.contains("racy on purpose"), "{}", up.ready);
    let client = reqwest::Client::new();
    for service in ["order", "data", "inventory", "payment"] {
        let (status, health) = get(&client, &format!("{}/health", up.url(service))).await;
        assert_eq!(status, 200, "{service}: {health}");
        assert_eq!(health["mode"], "naive", "{service}: {health}");
        assert_eq!(health["racy"], true, "{service}: {health}");
        let warning = health["warning"].as_str().unwrap_or_default();
        assert!(warning.contains("racy on purpose"), "{service}: {health}");
    }
}

#[test]
fn the_naive_system_refuses_an_address_other_machines_reach() {
    let directory = tempfile::tempdir().unwrap();
    for command in [&["up"][..], &["serve", "data"][..]] {
        let output = Command::new(env!("CARGO_BIN_EXE_stockroom"))
            .args(command)
            .args(["--mode", "naive", "--host", "0.0.0.0", "--data-dir"])
            .arg(directory.path())
            .env("STOCKROOM_LOG", "off")
            .output()
            .unwrap();
        assert!(!output.status.success(), "{command:?} started");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(
            stderr.contains("loopback") && stderr.contains("0.0.0.0"),
            "{command:?}: {stderr}"
        );
    }
}
