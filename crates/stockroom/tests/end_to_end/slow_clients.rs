//! Slow and greedy clients: thousands of connections that send half a
//! request and stall must neither stop orders nor starve the other
//! services (also when the process may hold only 1,024 files and the flood
//! is renewed as fast as the server closes it), and the server must close
//! them once the header-read timeout has passed; a dripped body is cut
//! within seconds, and an oversized head is refused.

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

/// The open-file limit of the process under attack: a common default, low
/// enough that each listener holds only 128 connections.
const LOW_OPEN_FILE_LIMIT: u64 = 1_024;

/// Stalled connections opened against it: many times what it can hold.
const FLOOD_CONNECTIONS: usize = 3_000;

/// How many connections the flood opens at once, and the pause between two
/// such waves while it renews the ones the server closed: a thousand
/// connections a second, for as long as the order takes.
const FLOOD_WAVE: usize = 50;
const FLOOD_WAVE_PAUSE_MS: u64 = 50;

/// A connection that sends most of a request head and stalls; `None` when
/// the server refused or closed it at once.
async fn stall(address: String) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(address).await.ok()?;
    stream
        .write_all(b"POST /api/orders HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
        .await
        .ok()?;
    Some(stream)
}

/// Opens `count` stalled connections, a wave at a time.
async fn flood(address: &str, count: usize) -> Vec<TcpStream> {
    let mut open = Vec::with_capacity(count);
    while open.len() < count {
        let wave = (count - open.len()).min(FLOOD_WAVE);
        let opened = all_at_once((0..wave).map(|_| stall(address.to_owned()))).await;
        open.extend(opened.into_iter().flatten());
    }
    open
}

/// Runs the futures concurrently and collects their outputs in order.
async fn all_at_once<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(handles.len());
    for handle in handles {
        outputs.push(handle.await.expect("a connection task"));
    }
    outputs
}

/// The open-file limit the kernel applies to `pid`.
fn open_file_limit(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .unwrap()
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap()
        .to_owned()
}

/// Under a low open-file limit each listener holds few connections; a
/// flood of stalled ones, renewed as fast as the server closes them, must
/// still leave room for a customer: a connection that has sent no request
/// gives its slot to a newer one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_flood_of_stalled_connections_under_a_low_file_limit_leaves_room_for_an_order() {
    let open_files = stockroom_http_kit::raise_open_file_limit();
    assert!(
        open_files >= 2 * FLOOD_CONNECTIONS as u64,
        "this test needs an open-file limit of at least {} (it is {open_files})",
        2 * FLOOD_CONNECTIONS
    );
    let directory = tempfile::tempdir().unwrap();
    let (child, line) =
        crate::harness::spawn_up_with_file_limit(directory.path(), LOW_OPEN_FILE_LIMIT, &[]);
    let limit = open_file_limit(child.id());
    assert!(
        limit
            .split_whitespace()
            .filter(|field| *field == "1024")
            .count()
            == 2,
        "the system runs with soft and hard limits of 1,024: {limit}"
    );
    let order_url = crate::harness::ready_url(&line, "order");
    let data_url = crate::harness::ready_url(&line, "data");
    let address = order_url.trim_start_matches("http://").to_owned();
    let mut stalled = flood(&address, FLOOD_CONNECTIONS).await;

    // The flood goes on while the customer orders: closed connections are
    // opened again, a wave at a time.
    let renewing = {
        let address = address.clone();
        tokio::spawn(async move {
            loop {
                stalled.extend(flood(&address, FLOOD_WAVE).await);
                // The oldest were closed by the server long ago.
                let surplus = stalled.len().saturating_sub(FLOOD_CONNECTIONS);
                stalled.drain(..surplus);
                tokio::time::sleep(Duration::from_millis(FLOOD_WAVE_PAUSE_MS)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let customer = reqwest::Client::new();
    for attempt in 0..3 {
        let (status, body) = timed(
            &format!("order {attempt} during the flood"),
            crate::harness::post(&customer, &format!("{order_url}/api/orders"), laptops(1)),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, _) = timed(
        "data-service's inventory during the flood",
        get(&customer, &format!("{data_url}/inventory")),
    )
    .await;
    assert_eq!(status, 200);
    renewing.abort();
}

/// A body dripped a byte at a time never pauses long enough for a timeout
/// between pieces; the body's deadline and minimum rate cut it within
/// seconds, with a 408 (or a closed connection), and no order is placed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dripped_order_is_cut_off_and_places_nothing() {
    let test = TestSystem::start(|_| {}).await;
    let address = test.system.urls.order.trim_start_matches("http://");
    let body = laptops(1).to_string();
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(
            format!(
                "POST /api/orders HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let started = Instant::now();
    let (mut reader, mut writer) = stream.into_split();
    let dripping = tokio::spawn(async move {
        // All but the last byte, one every half second: the order is never
        // complete, and never pauses as long as a second.
        for byte in body.as_bytes()[..body.len() - 1].iter() {
            if writer.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        writer
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), reader.read_to_end(&mut answer)).await;
    let waited = started.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    let bound = Duration::from_millis(stockroom_http_kit::BODY_RATE_GRACE_MS + 3_000);
    assert!(waited < bound, "the drip lasted {waited:?}");
    dripping.abort();
    assert!(
        test.all_orders().await.is_empty(),
        "a dripped order was placed"
    );
    test.stop().await;
}

/// A head larger than the listener takes is refused (431) before any route
/// runs, on every service; hyper's default would have taken 400 KiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_kib_header_is_refused() {
    let test = TestSystem::start(|_| {}).await;
    let body = laptops(1).to_string();
    let urls = &test.system.urls;
    for base in [&urls.order, &urls.data, &urls.inventory, &urls.payment] {
        let mut stream = TcpStream::connect(base.trim_start_matches("http://"))
            .await
            .unwrap();
        let request = format!(
            "POST /api/orders HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Padding: {}\r\nContent-Length: {}\r\n\r\n{body}",
            "x".repeat(64 * 1_024),
            body.len()
        );
        let _ = stream.write_all(request.as_bytes()).await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 431"),
            "{base}: {}",
            answer.lines().next().unwrap_or("(closed)")
        );
    }
    assert!(test.all_orders().await.is_empty());
    test.stop().await;
}
