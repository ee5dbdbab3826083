//! Hoarding clients: one address that opens thousands of dashboard streams
//! and never reads them gets its share and no more, and another viewer can
//! still watch.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::dashboard::Watched;

/// Streams the hoarding client asks for.
const HOARDED_STREAMS: usize = 2_000;

/// Opens a connection from `source` (any 127.x.y.z is this machine, and each
/// counts as another client) and asks for the live stream.
async fn ask_for_stream(source: &str, dashboard: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(dashboard).await.unwrap();
    stream
        .write_all(format!("GET /api/stream HTTP/1.1\r\nHost: {dashboard}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    stream
}

/// The status code the dashboard answered on `stream`, reading no further
/// than the status line (a stream's events stay unread).
async fn status_of(stream: &mut TcpStream) -> Option<u16> {
    let mut head = [0_u8; 12];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut head))
        .await
        .ok()?
        .ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_streams_from_one_client_leave_a_slot_for_another() {
    let open_files = stockroom_http_kit::raise_open_file_limit();
    assert!(
        open_files >= 3 * HOARDED_STREAMS as u64,
        "this test needs an open-file limit of at least {} (it is {open_files})",
        3 * HOARDED_STREAMS
    );
    let watched = Watched::start(25).await;
    let dashboard: SocketAddr = watched
        .dashboard_url
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let mut hoarded = Vec::with_capacity(HOARDED_STREAMS);
    for _ in 0..HOARDED_STREAMS {
        hoarded.push(ask_for_stream("127.0.0.1", dashboard).await);
    }
    let mut streaming = 0;
    let mut limited = 0;
    for stream in &mut hoarded {
        match status_of(stream).await {
            Some(200) => streaming += 1,
            Some(429) => limited += 1,
            // Closed to admit a newer connection, or cut: no stream either.
            _ => {}
        }
    }
    assert_eq!(
        streaming,
        stockroom_dashboard::stream::MAX_STREAMS_PER_CLIENT,
        "one client holds only its share of the streams"
    );
    assert!(limited > 0, "the others were told to wait");

    // Another viewer, while the hoarded connections stay open and unread.
    let mut viewer = ask_for_stream("127.0.0.2", dashboard).await;
    assert_eq!(status_of(&mut viewer).await, Some(200));
    let mut events = String::new();
    let mut buffer = [0_u8; 4_096];
    while !events.contains("event: snapshot") {
        let read = tokio::time::timeout(Duration::from_secs(5), viewer.read(&mut buffer))
            .await
            .expect("the viewer gets a snapshot within five seconds")
            .unwrap();
        assert!(read > 0, "the viewer's stream ended");
        events.push_str(&String::from_utf8_lossy(&buffer[..read]));
    }
    drop(hoarded);
    drop(viewer);
    watched.stop().await;
}
