//! The listener against real sockets: each limit, as a client that breaks
//! it sees it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::*;

/// Limits small enough for a test to reach each one quickly.
fn limits() -> ListenerLimits {
    ListenerLimits {
        max_connections: 8,
        max_connections_per_peer: 8,
        header_read_timeout_ms: 10_000,
        body: BodyLimits {
            deadline_ms: 10_000,
            min_bytes_per_second: 100,
            rate_grace_ms: 300,
        },
        write_stall_timeout_ms: 10_000,
    }
}

/// The size of `/big`'s answer: more than a socket's buffers on both ends
/// hold, so that a client that does not read blocks the server's writes.
const BIG_ANSWER_BYTES: usize = 32 * 1_024 * 1_024;

fn router() -> Router {
    Router::new()
        .route("/echo", post(|body: bytes::Bytes| async move { body }))
        .route(
            "/json",
            post(
                |crate::JsonBody(document): crate::JsonBody<serde_json::Value>| async move {
                    axum::Json(document)
                },
            ),
        )
        .route(
            "/slow",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "done"
            }),
        )
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
        .route("/big", get(|| async { vec![b'x'; BIG_ANSWER_BYTES] }))
        .layer(axum::extract::DefaultBodyLimit::max(16 * 1024))
}

async fn start(limits: ListenerLimits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_with(
        listener,
        router(),
        async move {
            let _ = stopped.await;
        },
        limits,
        AllowedHosts::parse("shop.example.test").unwrap(),
    ));
    (address, stop)
}

async fn read_to_end(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// Sends `request` on a new connection and reads the answer to the end.
async fn exchange(address: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    read_to_end(&mut stream).await
}

/// Whether the server has closed `stream` (a read sees the end or a reset
/// at once, after any answer it sent).
async fn closed(stream: &mut TcpStream) -> bool {
    let mut buffer = [0_u8; 4_096];
    loop {
        match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

async fn stalled(address: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
        .await
        .unwrap();
    stream
}

#[tokio::test]
async fn a_full_listener_closes_its_longest_waiting_connection_for_a_new_one() {
    let (address, _stop) = start(ListenerLimits {
        max_connections: 2,
        max_connections_per_peer: 2,
        ..limits()
    })
    .await;
    let mut oldest = stalled(address).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _younger = stalled(address).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let answer = exchange(
        address,
        "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        closed(&mut oldest).await,
        "the oldest stalled connection gave way"
    );
}

#[tokio::test]
async fn a_listener_full_of_requests_in_flight_answers_503_at_once() {
    let (address, _stop) = start(ListenerLimits {
        max_connections: 2,
        max_connections_per_peer: 2,
        ..limits()
    })
    .await;
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"POST /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        busy.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let answer = exchange(address, "GET /peer HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
}

#[tokio::test]
async fn one_peer_gets_only_its_share_of_the_connections() {
    let (address, _stop) = start(ListenerLimits {
        max_connections: 4,
        max_connections_per_peer: 2,
        ..limits()
    })
    .await;
    // 127.0.0.1 fills its share with requests in flight.
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"POST /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        busy.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let request = "GET /peer HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let answer = exchange(address, request).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    // Another peer (every 127.x.y.z is this machine) still gets in.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = socket.connect(address).await.unwrap();
    other.write_all(request.as_bytes()).await.unwrap();
    let answer = read_to_end(&mut other).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.ends_with(&format!("127.0.0.2:{}", other.local_addr().unwrap().port())),
        "{answer}"
    );
}

#[tokio::test]
async fn half_sent_heads_are_cut_off_after_the_timeout() {
    let (address, _stop) = start(ListenerLimits {
        header_read_timeout_ms: 300,
        ..limits()
    })
    .await;
    let mut stalled = stalled(address).await;
    let started = Instant::now();
    read_to_end(&mut stalled).await;
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(4), "closed after {waited:?}");
    let answer = exchange(
        address,
        "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn heads_over_the_limits_are_refused() {
    let (address, _stop) = start(limits()).await;
    let large = format!(
        "GET /peer HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: {}\r\n\r\n",
        "x".repeat(MAX_REQUEST_HEAD_BYTES)
    );
    let answer = exchange(address, &large).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let many: String = (0..=MAX_REQUEST_HEADERS)
        .map(|index| format!("X-Header-{index}: {index}\r\n"))
        .collect();
    let answer = exchange(
        address,
        &format!("GET /peer HTTP/1.1\r\nHost: 127.0.0.1\r\n{many}\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    // A head within both limits passes.
    let answer = exchange(
        address,
        "GET /peer HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_client_still_sending_a_body_over_the_limit_reads_its_413() {
    let (address, _stop) = start(limits()).await;
    for _ in 0..20 {
        let body = format!("{{\"x\":\"{}\"}}", "x".repeat(256 * 1024));
        let stream = TcpStream::connect(address).await.unwrap();
        let (mut reader, mut writer) = stream.into_split();
        let request = format!(
            "POST /json HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        // Like most clients, send the whole request before reading the
        // answer; the server may stop reading at any point.
        let _ = writer.write_all(request.as_bytes()).await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), reader.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    }
}

const JSON_HEAD: &str = "POST /json HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n";

#[tokio::test]
async fn a_body_that_stops_arriving_is_refused_with_408() {
    let (address, _stop) = start(limits()).await;
    let mut slow = TcpStream::connect(address).await.unwrap();
    slow.write_all(format!("{JSON_HEAD}{{\"a\":").as_bytes())
        .await
        .unwrap();
    let started = Instant::now();
    let answer = read_to_end(&mut slow).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_dripped_body_is_cut_by_the_minimum_rate() {
    let (address, _stop) = start(limits()).await;
    let mut drip = TcpStream::connect(address).await.unwrap();
    drip.write_all(JSON_HEAD.as_bytes()).await.unwrap();
    let started = Instant::now();
    // One byte every 100 ms, never a pause near the deadline: ten bytes a
    // second, a tenth of the minimum rate.
    let dripping = async {
        loop {
            if drip.write_all(b" ").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            if started.elapsed() > Duration::from_secs(8) {
                break;
            }
        }
    };
    dripping.await;
    let answer = read_to_end(&mut drip).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("slower than 100 bytes per second"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_body_that_keeps_the_rate_but_misses_the_deadline_is_cut() {
    let (address, _stop) = start(ListenerLimits {
        body: BodyLimits {
            deadline_ms: 800,
            min_bytes_per_second: 10,
            rate_grace_ms: 0,
        },
        ..limits()
    })
    .await;
    let (mut reader, mut writer) = TcpStream::connect(address).await.unwrap().into_split();
    writer.write_all(JSON_HEAD.as_bytes()).await.unwrap();
    let started = Instant::now();
    tokio::spawn(async move {
        // Forty bytes a second: four times the minimum rate, but the whole
        // body would take 25 s.
        while writer.write_all(b" ").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), reader.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("within 800 ms"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn requests_for_other_hosts_and_from_other_sites_are_refused() {
    let (address, _stop) = start(limits()).await;
    let answer = exchange(
        address,
        "GET /peer HTTP/1.1\r\nHost: rebind.attacker.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 421"), "{answer}");
    assert!(
        answer.contains(r#""error":"misdirected_request""#),
        "{answer}"
    );
    let answer = exchange(address, "GET /peer HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("missing_host"), "{answer}");
    let answer = exchange(
        address,
        "GET /peer HTTP/1.1\r\nHost: shop.example.test:443\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer = exchange(
        address,
        "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: https://evil.example\r\nSec-Fetch-Site: cross-site\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("cross_site_request"), "{answer}");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut() {
    let (address, _stop) = start(ListenerLimits {
        write_stall_timeout_ms: 300,
        ..limits()
    })
    .await;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4_096).unwrap();
    let mut client = socket.connect(address).await.unwrap();
    client
        .write_all(b"GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut received = 0;
    let mut buffer = vec![0_u8; 64 * 1_024];
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(2), client.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(read)) => received += read,
            Err(_) => break false,
        }
    };
    assert!(ended, "the connection is still open");
    assert!(received < BIG_ANSWER_BYTES, "the whole answer arrived");
}
