//! The accept loop every service's listener runs: connections, heads and
//! bodies bounded in number, size and time, and requests checked for the
//! names they are addressed to and the sites that sent them, so that one
//! greedy, stalled or hostile client cannot take a service (or, by
//! exhausting the process's open files, every service in the process) down,
//! and no page on another site can use the operator's browser against it.
//!
//! `axum::serve` has no header-read timeout, no idle timeout and no
//! connection limit, so this module drives hyper's HTTP/1 connections
//! itself:
//!
//! - a listener holds at most its connection limit, and each peer at most
//!   its share of it ([`slots`]): when full, the connection that has waited
//!   longest for a request head gives way to the new one, and only when
//!   every connection is serving a request is the new one answered with a
//!   503 and closed;
//! - a connection must deliver a request's head within
//!   [`HEADER_READ_TIMEOUT_MS`] of opening or of finishing its previous
//!   response, in at most [`MAX_REQUEST_HEAD_BYTES`] and
//!   [`MAX_REQUEST_HEADERS`] headers (hyper answers 431 beyond them);
//! - a request body must arrive whole within [`BODY_DEADLINE_MS`] and at
//!   [`MIN_BODY_BYTES_PER_SECOND`] after [`BODY_RATE_GRACE_MS`] ([`deadline`]);
//! - a client that stops reading its answer is cut after
//!   [`WRITE_STALL_TIMEOUT_MS`] ([`stall`]);
//! - a request must name a host the listener serves ([`crate::hosts`]: 421
//!   otherwise), and a request that changes something must not come from
//!   another site's page ([`crate::cross_site`]: 403).

mod deadline;
mod slots;
mod stall;
#[cfg(test)]
mod tests;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tower::Service;

pub use self::deadline::{BodyLimits, BodyReadError};
pub use self::slots::PeerKey;
use self::slots::{Admission, RequestMark, Slot, Slots};
use crate::hosts::{AllowedHosts, HostCheck};

/// The most connections one listener holds open at once: enough for
/// thousands of concurrent clients (or a proxy's pool), few enough that five
/// listeners in one process stay far below a usual open-file limit once it
/// is raised.
pub const MAX_CONNECTIONS_PER_LISTENER: usize = 4_096;

/// Each listener may hold at most this fraction (one in N) of the process's
/// open-file limit, so that, with every service of `stockroom up` (five
/// listeners) full, files remain for storage, peers and the broker.
pub const OPEN_FILES_PER_LISTENER_SHARE: u64 = 8;

/// Each peer (an IPv4 address or an IPv6 /64) may hold at most this
/// fraction (one in N) of a listener's connections, so that however many
/// requests one client keeps in flight, another client always finds room.
/// Half, because a deployment behind one load balancer sees every customer
/// as that one peer.
pub const CONNECTIONS_PER_PEER_SHARE: usize = 2;

/// How long a connection may take to send a request's head, counted from
/// when it opened or last finished a response: it bounds both a half-sent
/// request and an idle keep-alive connection.
pub const HEADER_READ_TIMEOUT_MS: u64 = 15_000;

/// The largest request head (request line and headers): browsers send 1 to
/// 2 KiB and a long bearer token adds a few hundred bytes; 16 KiB is what
/// common proxies allow, and more is only ever an attack on memory.
pub const MAX_REQUEST_HEAD_BYTES: usize = 16 * 1_024;

/// The most headers one request may carry: browsers send about twenty.
pub const MAX_REQUEST_HEADERS: usize = 64;

/// hyper's read and write buffer per connection. A request head must fit
/// in it; bodies and answers pass through it in pieces of this size.
/// hyper's default (about 400 KiB) let a head that large in, and costs that
/// much memory per connection.
pub const CONNECTION_BUFFER_BYTES: usize = 64 * 1_024;

/// hyper refuses a connection buffer smaller than this.
const HYPER_MIN_BUFFER_BYTES: usize = 8 * 1_024;

const _: () = assert!(MAX_REQUEST_HEAD_BYTES < CONNECTION_BUFFER_BYTES);
const _: () = assert!(CONNECTION_BUFFER_BYTES >= HYPER_MIN_BUFFER_BYTES);

/// How long a request's whole body may take to arrive once its head has.
/// Public bodies are a few KiB; data-service's internal batches (a few MiB)
/// travel between the system's own processes, far faster than this needs.
pub const BODY_DEADLINE_MS: u64 = 15_000;

/// The slowest a body may arrive on average, once [`BODY_RATE_GRACE_MS`]
/// have passed: slower than the poorest mobile link, fast enough that a
/// client dripping a byte at a time is cut within seconds.
pub const MIN_BODY_BYTES_PER_SECOND: u64 = 2_048;

/// How long a body may take to start before [`MIN_BODY_BYTES_PER_SECOND`]
/// applies: a slow start and a first round trip on a poor link.
pub const BODY_RATE_GRACE_MS: u64 = 2_000;

const _: () = assert!(BODY_RATE_GRACE_MS < BODY_DEADLINE_MS);

/// How long a write to a client may stay blocked (the client stopped
/// reading, and the socket's buffers are full) before the connection is
/// closed.
pub const WRITE_STALL_TIMEOUT_MS: u64 = 10_000;

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
    pub max_connections_per_peer: usize,
    pub header_read_timeout_ms: u64,
    pub body: BodyLimits,
    pub write_stall_timeout_ms: u64,
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
        let max_connections = share.clamp(1, MAX_CONNECTIONS_PER_LISTENER);
        ListenerLimits {
            max_connections,
            max_connections_per_peer: (max_connections / CONNECTIONS_PER_PEER_SHARE).max(1),
            header_read_timeout_ms: HEADER_READ_TIMEOUT_MS,
            body: BodyLimits {
                deadline_ms: BODY_DEADLINE_MS,
                min_bytes_per_second: MIN_BODY_BYTES_PER_SECOND,
                rate_grace_ms: BODY_RATE_GRACE_MS,
            },
            write_stall_timeout_ms: WRITE_STALL_TIMEOUT_MS,
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

/// Serves `router` with [`ListenerLimits::for_this_process`] and the host
/// names installed for this process ([`AllowedHosts::installed`]) until
/// `shutdown` completes, then stops accepting and waits for the requests in
/// flight to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = ListenerLimits::for_this_process();
    serve_with(
        listener,
        router,
        shutdown,
        limits,
        AllowedHosts::installed(),
    )
    .await
}

/// [`serve`] with explicit limits and extra host names.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: ListenerLimits,
    allowed_hosts: AllowedHosts,
) -> std::io::Result<()> {
    assert!(
        limits.max_connections > 0 && limits.max_connections_per_peer > 0,
        "a listener must accept connections"
    );
    let shared = Arc::new(Shared {
        router,
        hosts: HostCheck::new(listener.local_addr()?.ip(), allowed_hosts),
        limits,
    });
    let slots = Slots::new(limits.max_connections, limits.max_connections_per_peer);
    let graceful = GracefulShutdown::new();
    let builder = http1_builder(&limits);
    let mut refused: u64 = 0;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
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
        match slots.admit(PeerKey::of(peer.ip())) {
            Admission::Admitted { slot, evicted } => {
                if evicted && slots.evicted().is_power_of_two() {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        evicted = slots.evicted(),
                        "listener full: closing connections that sent no request to admit new ones"
                    );
                }
                let connection = Connection::new(stream, peer, slot, Arc::clone(&shared));
                tokio::spawn(connection.run(&builder, &graceful));
            }
            Admission::Refused => {
                refused += 1;
                if refused.is_power_of_two() {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        refused,
                        %peer,
                        "no connection can give way (the listener, or this peer's share, is all serving requests); refusing with 503"
                    );
                }
                tokio::spawn(refuse(stream));
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// hyper's HTTP/1 settings for every connection of a listener.
fn http1_builder(limits: &ListenerLimits) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms))
        .max_buf_size(CONNECTION_BUFFER_BYTES)
        .max_header_size(MAX_REQUEST_HEAD_BYTES)
        .max_headers(MAX_REQUEST_HEADERS);
    builder
}

/// What every connection of a listener shares.
struct Shared {
    router: Router,
    hosts: HostCheck,
    limits: ListenerLimits,
}

/// One accepted connection and the slot it holds.
struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    slot: Arc<Slot>,
    shared: Arc<Shared>,
}

impl Connection {
    fn new(stream: TcpStream, peer: SocketAddr, slot: Slot, shared: Arc<Shared>) -> Connection {
        Connection {
            stream,
            peer,
            slot: Arc::new(slot),
            shared,
        }
    }

    /// Serves the connection's requests until the client leaves, a limit
    /// cuts it, the listener shuts down, or its slot goes to a newer
    /// connection while it waits for a request.
    fn run(
        self,
        builder: &hyper::server::conn::http1::Builder,
        graceful: &GracefulShutdown,
    ) -> impl Future<Output = ()> + Send + 'static {
        let _ = self.stream.set_nodelay(true);
        let stall = Duration::from_millis(self.shared.limits.write_stall_timeout_ms);
        let io = TokioIo::new(stall::StallGuard::new(self.stream, stall));
        let gate = Gate {
            shared: self.shared,
            slot: Arc::clone(&self.slot),
            peer: self.peer,
        };
        let service = hyper::service::service_fn(move |request| gate.call(request));
        let connection = graceful.watch(builder.serve_connection(io, service));
        let slot = self.slot;
        async move {
            tokio::select! {
                served = connection => {
                    // Errors here are the client's: it went away, sent
                    // garbage, or was too slow. Nothing to do but close.
                    if let Err(error) = served {
                        tracing::debug!(
                            error = &error as &dyn std::error::Error,
                            "connection closed with an error"
                        );
                    }
                }
                () = slot.evicted() => {
                    tracing::debug!("connection closed to admit a newer one");
                }
            }
        }
    }
}

/// What every request passes before the router: the connection's slot is
/// marked busy, and the host and the sending site are checked.
struct Gate {
    shared: Arc<Shared>,
    slot: Arc<Slot>,
    peer: SocketAddr,
}

impl Gate {
    fn call(
        &self,
        request: Request<Incoming>,
    ) -> impl Future<Output = Result<Response<TrackedBody>, Infallible>> + Send + use<> {
        let checked = self.check(request);
        let router = self.shared.router.clone();
        async move {
            let (checked, mark) = checked;
            let response = match checked {
                Ok(request) => match router.clone().call(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                },
                Err(refusal) => refusal,
            };
            Ok(response.map(|body| TrackedBody {
                inner: body,
                _mark: mark,
            }))
        }
    }

    /// The request ready for the router, or the answer that refuses it;
    /// and the mark that keeps the connection busy until the answer is sent.
    fn check(
        &self,
        request: Request<Incoming>,
    ) -> (Result<Request, Response>, Option<RequestMark>) {
        let Some(mark) = self.slot.begin_request() else {
            return (Err(closing()), None);
        };
        let hosts = &self.shared.hosts;
        if let Err(refusal) = hosts.check(request.headers(), request.uri().authority()) {
            return (Err(refusal.into_response()), Some(mark));
        }
        if let Err(refusal) = crate::cross_site::check(request.method(), request.headers(), hosts) {
            return (Err(refusal.into_response()), Some(mark));
        }
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(ConnectInfo(self.peer));
        let body = deadline::DeadlineBody::new(body, self.shared.limits.body);
        let request = Request::from_parts(parts, axum::body::Body::new(body));
        (Ok(request), Some(mark))
    }
}

/// The answer to a request on a connection that has just given its slot to
/// a newer one: it did not run, and may be sent again.
fn closing() -> Response {
    let mut response = crate::error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        "this connection was closed to admit another; send the request again",
    );
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// An answer's body, holding its connection busy until it has been sent.
struct TrackedBody {
    inner: axum::body::Body,
    _mark: Option<RequestMark>,
}

impl Body for TrackedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<bytes::Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(context)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Answers a connection no slot could be found for with a 503 in the
/// services' error shape, without reading its request, and closes it.
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
