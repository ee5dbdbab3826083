//! Slow and greedy clients: thousands of connections that send half a
//! request and stall must neither stop orders nor starve the other
//! services, and the server must close them once the header-read timeout
//! has passed.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{TestSystem, get, laptops};

/// More stalled connections than the usual soft open-file limit (1,024) of
/// a process that never raised it, fewer than one listener's limit.
const STALLED_CONNECTIONS: usize = 2_000;

/// The longest a request may take while the stalled connections are open.
const ANSWER_BOUND_MS: u64 = 1_000;

async fn timed<T>(what: &str, request: impl std::future::Future<Output = T>) -> T {
    let started = Instant::now();
    let answer = tokio::time::timeout(Duration::from_millis(ANSWER_BOUND_MS), request)
        .await
        .unwrap_or_else(|_| panic!("{what} was not answered within {ANSWER_BOUND_MS} ms"));
    eprintln!("{what} answered in {:?}", started.elapsed());
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_neither_stop_orders_nor_outlive_the_header_timeout() {
    let open_files = stockroom_http_kit::raise_open_file_limit();
    assert!(
        open_files >= 3 * STALLED_CONNECTIONS as u64,
        "this test needs an open-file limit of at least {} (it is {open_files})",
        3 * STALLED_CONNECTIONS
    );
    let test = TestSystem::start(|_| {}).await;
    let address = test
        .system
        .urls
        .order
        .trim_start_matches("http://")
        .to_owned();
    let mut stalled = Vec::with_capacity(STALLED_CONNECTIONS);
    for _ in 0..STALLED_CONNECTIONS {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        stream
            .write_all(b"POST /api/orders HTTP/1.1\r\nHost: stockroom\r\nContent-Le")
            .await
            .unwrap();
        stalled.push(stream);
    }
    let opened = Instant::now();

    let (status, _) = timed("an order", test.place(laptops(1))).await;
    assert_eq!(status, 201);
    let (status, _) = timed(
        "data-service's inventory",
        get(&test.client, &test.data_url("/inventory")),
    )
    .await;
    assert_eq!(status, 200);

    // Past the timeout, every stalled connection has been closed by the
    // server: a read sees the end of the stream (or a reset) at once.
    let timeout = Duration::from_millis(stockroom_http_kit::HEADER_READ_TIMEOUT_MS);
    tokio::time::sleep((timeout + Duration::from_secs(3)).saturating_sub(opened.elapsed())).await;
    let mut still_open = 0;
    for stream in &mut stalled {
        let mut buffer = [0_u8; 256];
        match tokio::time::timeout(Duration::from_millis(50), stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => {}
            Ok(Ok(_)) => {} // An error answer before closing is fine too.
            Err(_) => still_open += 1,
        }
    }
    assert_eq!(
        still_open, 0,
        "stalled connections still open after the header-read timeout"
    );
    drop(stalled);
    let (status, _) = timed("an order after the stall", test.place(laptops(1))).await;
    assert_eq!(status, 201);
    test.stop().await;
}
