//! The accept loop every service's listener runs: bounded connections and
//! timeouts for slow clients, so one greedy or stalled client cannot take a
//! service (or, by exhausting the process's open files, every service in
//! the process) down.
//!
//! `axum::serve` has no header-read timeout, no idle timeout and no
//! connection limit, so this module drives hyper's HTTP/1 connections
//! itself:
//!
//! - a connection beyond the listener's limit is answered at once with a
//!   503 and closed, instead of waiting in the kernel's backlog or taking a
//!   file the other listeners need;
//! - a connection must deliver a request's headers within
//!   [`HEADER_READ_TIMEOUT_MS`] of opening or of finishing its previous
//!   response (hyper starts that timer whenever the connection is idle), so
//!   a half-sent request and an idle keep-alive connection are both closed;
//! - a request body must arrive within [`BODY_READ_TIMEOUT_MS`].

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::Service;

/// The most connections one listener holds open at once. Beyond it new
/// connections are refused with a 503: enough for thousands of concurrent
/// clients (or a proxy's pool), few enough that five listeners in one
/// process stay far below a usual open-file limit once it is raised.
pub const MAX_CONNECTIONS_PER_LISTENER: usize = 4_096;

/// Each listener may hold at most this fraction (one in N) of the process's
/// open-file limit, so that, with every service of `stockroom up` (five
/// listeners) full, files remain for storage, peers and the broker.
pub const OPEN_FILES_PER_LISTENER_SHARE: u64 = 8;

/// How long a connection may take to send a request's headers, counted from
/// when it opened or last finished a response: it bounds both a half-sent
/// request and an idle keep-alive connection.
pub const HEADER_READ_TIMEOUT_MS: u64 = 15_000;

/// How long a request's body may take to arrive once its headers have.
/// Bodies are at most a few MiB (data-service's internal batches), which
/// even a slow link delivers well within this.
pub const BODY_READ_TIMEOUT_MS: u64 = 15_000;

/// How long a refused connection is given to take its 503 before it is
/// dropped anyway.
pub const REFUSAL_WRITE_TIMEOUT_MS: u64 = 1_000;

/// After an accept error (typically "too many open files"), the pause before
/// accepting again, so the loop does not spin while files are short.
pub const ACCEPT_ERROR_PAUSE_MS: u64 = 50;

/// How a listener treats its clients; [`ListenerLimits::for_this_process`]
/// gives the values every service uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    pub max_connections: usize,
    pub header_read_timeout_ms: u64,
    pub body_read_timeout_ms: u64,
}

impl ListenerLimits {
    /// The documented limits, with the connection limit lowered to this
    /// listener's share of the process's open-file limit.
    pub fn for_this_process() -> ListenerLimits {
        let open_files = rlimit::getrlimit(rlimit::Resource::NOFILE)
            .map(|(soft, _hard)| soft)
            .unwrap_or(1_024);
        let share =
            usize::try_from(open_files / OPEN_FILES_PER_LISTENER_SHARE).unwrap_or(usize::MAX);
        ListenerLimits {
            max_connections: share.clamp(1, MAX_CONNECTIONS_PER_LISTENER),
            header_read_timeout_ms: HEADER_READ_TIMEOUT_MS,
            body_read_timeout_ms: BODY_READ_TIMEOUT_MS,
        }
    }
}

/// Raises the process's soft open-file limit to its hard limit, as servers
/// do at start: the usual soft limit (1,024) is far below what thousands of
/// client connections need. Returns the limit now in force.
pub fn raise_open_file_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "cannot raise the open-file limit"
            );
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .map(|(soft, _hard)| soft)
                .unwrap_or(1_024)
        }
    }
}

/// Serves `router` with [`ListenerLimits::for_this_process`] until
/// `shutdown` completes, then stops accepting and waits for the requests in
/// flight to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_limits(
        listener,
        router,
        shutdown,
        ListenerLimits::for_this_process(),
    )
    .await
}

/// [`serve`] with explicit limits.
pub async fn serve_with_limits(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: ListenerLimits,
) -> std::io::Result<()> {
    assert!(
        limits.max_connections > 0,
        "a listener must accept connections"
    );
    let router = router.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
        Duration::from_millis(limits.body_read_timeout_ms),
    ));
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let refused = Arc::new(AtomicU64::new(0));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms));
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of files, or a connection reset before it was
                    // accepted: either way the listener itself is fine.
                    tracing::warn!(error = &error as &dyn std::error::Error, "accept error");
                    tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_PAUSE_MS)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            let count = refused.fetch_add(1, Ordering::Relaxed) + 1;
            if count.is_power_of_two() {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    refused = count,
                    "connection limit reached; refusing new connections with 503"
                );
            }
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            router.clone().call(request)
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // Errors here are the client's: it went away, sent garbage, or
            // was too slow. Nothing to do but close the connection.
            if let Err(error) = connection.await {
                tracing::debug!(
                    error = &error as &dyn std::error::Error,
                    "connection closed with an error"
                );
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Answers a connection beyond the limit with a 503 in the services' error
/// shape, without reading its request, and closes it.
async fn refuse(mut stream: TcpStream) {
    const BODY: &str =
        r#"{"error":"overloaded","message":"too many connections to this service; retry shortly"}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: {}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        crate::RETRY_AFTER_SECONDS,
        BODY.len()
    );
    let write = async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_millis(REFUSAL_WRITE_TIMEOUT_MS), write).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn start(
        limits: ListenerLimits,
    ) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let router = Router::new()
            .route(
                "/echo",
                axum::routing::post(|body: bytes::Bytes| async move { body }),
            )
            .route(
                "/json",
                axum::routing::post(
                    |crate::JsonBody(document): crate::JsonBody<serde_json::Value>| async move {
                        axum::Json(document)
                    },
                ),
            )
            .layer(axum::extract::DefaultBodyLimit::max(16 * 1024));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve_with_limits(
            listener,
            router,
            async move {
                let _ = stopped.await;
            },
            limits,
        ));
        (address, stop)
    }

    async fn read_to_end(stream: &mut TcpStream) -> String {
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test]
    async fn a_connection_beyond_the_limit_gets_a_503_at_once() {
        let limits = ListenerLimits {
            max_connections: 2,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 10_000,
        };
        let (address, _stop) = start(limits).await;
        let _first = TcpStream::connect(address).await.unwrap();
        let _second = TcpStream::connect(address).await.unwrap();
        // Let the loop take both before the third arrives.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut third = TcpStream::connect(address).await.unwrap();
        let answer = read_to_end(&mut third).await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("retry-after: 1"), "{answer}");
    }

    #[tokio::test]
    async fn half_sent_headers_are_cut_off_after_the_timeout() {
        let limits = ListenerLimits {
            max_connections: 8,
            header_read_timeout_ms: 300,
            body_read_timeout_ms: 10_000,
        };
        let (address, _stop) = start(limits).await;
        let mut stalled = TcpStream::connect(address).await.unwrap();
        stalled
            .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Le")
            .await
            .unwrap();
        let started = std::time::Instant::now();
        read_to_end(&mut stalled).await;
        let waited = started.elapsed();
        assert!(waited < Duration::from_secs(4), "closed after {waited:?}");
        // The slot it held is free again: a whole request is answered.
        let mut client = TcpStream::connect(address).await.unwrap();
        client
            .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
            .await
            .unwrap();
        let answer = read_to_end(&mut client).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    #[tokio::test]
    async fn a_client_still_sending_a_body_over_the_limit_reads_its_413() {
        let limits = ListenerLimits {
            max_connections: 8,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 10_000,
        };
        let (address, _stop) = start(limits).await;
        for _ in 0..20 {
            let body = format!("{{\"x\":\"{}\"}}", "x".repeat(256 * 1024));
            let stream = TcpStream::connect(address).await.unwrap();
            let (mut reader, mut writer) = stream.into_split();
            let request = format!(
                "POST /json HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            // Like most clients, send the whole request before reading the
            // answer; the server may stop reading at any point.
            let _ = writer.write_all(request.as_bytes()).await;
            let mut answer = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(5), reader.read_to_end(&mut answer)).await;
            let answer = String::from_utf8_lossy(&answer);
            assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        }
    }

    #[tokio::test]
    async fn a_body_that_stops_arriving_is_refused_after_the_timeout() {
        let limits = ListenerLimits {
            max_connections: 8,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 300,
        };
        let (address, _stop) = start(limits).await;
        let mut slow = TcpStream::connect(address).await.unwrap();
        slow.write_all(b"POST /json HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\":")
            .await
            .unwrap();
        let answer = read_to_end(&mut slow).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("body_timeout"), "{answer}");
    }
}
