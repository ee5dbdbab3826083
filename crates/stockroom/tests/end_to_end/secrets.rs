//! Secrets stay where they belong: a cluster's children get the database's
//! and the broker's URLs (with their passwords) and the internal token in
//! their environment, never on their command lines, which every user of the
//! machine can read; and no service sends its calls (and the token in them)
//! to a proxy named in the environment.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use crate::bus::rabbit_url;
use crate::harness::{
    get, laptops, post, postgres_url, ready_url, spawn_up, unique_name, using_shared_servers,
};
use crate::scale_out::{drop_cluster_state, spawn_cluster};

/// Ports of this test's cluster: the defaults shifted by this much, clear
/// of `stockroom up` and of the scale-out test.
const PORT_OFFSET: u16 = 23_000;

/// A password the database ignores (it trusts local connections) but that
/// must never be visible.
const DATABASE_PASSWORD: &str = "database-password-in-the-url";

/// What `ps` shows of a process: its command line, arguments joined.
fn command_line(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw).replace('\0', " ")
}

/// A process's environment (readable only by its owner, as here).
fn environment(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    String::from_utf8_lossy(&raw).replace('\0', "\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_children_carry_no_secret_on_their_command_lines() {
    let (Some(postgres), Some(rabbit)) = (postgres_url(), rabbit_url()) else {
        return;
    };
    let _servers = using_shared_servers().await;
    let name = unique_name("secrets");
    let separator = if postgres.contains('?') { '&' } else { '?' };
    let database_url = format!("{postgres}{separator}schema={name}").replacen(
        "://postgres@",
        &format!("://postgres:{DATABASE_PASSWORD}@"),
        1,
    );
    assert!(database_url.contains(DATABASE_PASSWORD), "{database_url}");
    let broker_password = rabbit
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(credentials, _)| credentials.split_once(':'))
        .map(|(_, password)| password.to_owned())
        .expect("the broker's URL has a password");
    let token = stockroom_http_kit::InternalToken::generate();
    let offset = PORT_OFFSET.to_string();
    let cluster = spawn_cluster(
        &["--instances", "1", "--port-offset", &offset],
        &[
            ("STOCKROOM_DATABASE_URL", &database_url),
            ("STOCKROOM_BUS_URL", &rabbit),
            ("STOCKROOM_BUS_PREFIX", &name),
            (stockroom_http_kit::INTERNAL_TOKEN_ENV, token.expose()),
        ],
    );
    assert_eq!(cluster.pids.len(), 4, "one process of each service");
    for ((service, _), pid) in &cluster.pids {
        let shown = command_line(*pid);
        assert!(shown.contains("serve"), "{service}: {shown}");
        for secret in [
            DATABASE_PASSWORD,
            &format!(":{broker_password}@"),
            "postgres://",
            "amqp://",
            token.expose(),
        ] {
            assert!(
                !shown.contains(secret),
                "{service}'s command line shows {secret}: {shown}"
            );
        }
        // Each child has only the secrets it uses.
        let variables = environment(*pid);
        let has = |name: &str| {
            variables
                .lines()
                .any(|line| line.starts_with(&format!("{name}=")))
        };
        assert!(has(stockroom_http_kit::INTERNAL_TOKEN_ENV), "{service}");
        assert_eq!(
            has("STOCKROOM_DATABASE_URL"),
            service == "data",
            "{service}"
        );
        assert_eq!(has("STOCKROOM_BUS_URL"), service != "order", "{service}");
    }
    // And the children work with what they were given.
    let order_url = &cluster.urls["order"][0];
    let (status, body) = post(
        &reqwest::Client::new(),
        &format!("{order_url}/api/orders"),
        laptops(1),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    drop(cluster);
    drop_cluster_state(&postgres, &rabbit, &name).await;
}

/// A stand-in proxy that counts the connections it is offered and answers
/// none of them.
fn counting_proxy() -> (String, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let offered = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&offered);
    std::thread::spawn(move || {
        for mut connection in listener.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut request = [0_u8; 1_024];
            let _ = connection.read(&mut request);
        }
    });
    (url, offered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_calls_ignore_proxy_variables() {
    let (proxy, offered) = counting_proxy();
    let directory = tempfile::tempdir().unwrap();
    let variables: Vec<(&str, &str)> = [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .into_iter()
    .map(|name| (name, proxy.as_str()))
    .chain([("NO_PROXY", ""), ("no_proxy", "")])
    .collect();
    // Starting waits for every service's health through the launcher's
    // client; the order flow calls inventory-, data- and payment-service.
    let (_up, line) = spawn_up(directory.path(), &[], &variables);
    let order_url = ready_url(&line, "order");
    let data_url = ready_url(&line, "data");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let (status, placed) = post(&client, &format!("{order_url}/api/orders"), laptops(1)).await;
    assert_eq!(status, 201, "{placed}");
    let id = placed["order"]["id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, order) = get(&client, &format!("{data_url}/orders/{id}")).await;
        if order["order"]["status"] == json!("fulfilled") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never settled: {order}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        offered.load(Ordering::SeqCst),
        0,
        "a service sent a call through the proxy"
    );
}
