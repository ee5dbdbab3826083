//! The benchmark's HTTP load generator: N keep-alive HTTP/1.1 connections,
//! each sending one order after another (closed loop), for a duration or a
//! number of orders. It is written on hyper's connection API directly, so one
//! request costs the generator as little as possible: on a 2-core machine the
//! generator shares the CPU with the system under test.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How many times one connection is re-opened after errors before its task
/// gives up.
pub const MAX_RECONNECTS_PER_CONNECTION: u32 = 20;

/// The longest one request may take before it counts as an error.
pub const REQUEST_TIMEOUT_MS: u64 = 30_000;

/// The largest latency the histograms record, in microseconds.
const MAX_RECORDED_LATENCY_US: u64 = 120_000_000;

/// When the load stops.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    After(Duration),
    Orders(u64),
}

/// What to send.
pub struct LoadSpec {
    /// `host:port` of the server.
    pub address: String,
    pub path: String,
    pub connections: usize,
    pub stop: Stop,
    /// The body of the order with this sequence number.
    pub body: Arc<dyn Fn(u64) -> Bytes + Send + Sync>,
}

/// What came back.
#[derive(Debug, Clone)]
pub struct LoadResult {
    pub sent: u64,
    pub created: u64,
    pub rejected: u64,
    pub overloaded: u64,
    pub other_status: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latency: hdrhistogram::Histogram<u64>,
}

impl LoadResult {
    pub fn answered(&self) -> u64 {
        self.created + self.rejected
    }

    /// Orders answered (201 or 409) per second.
    pub fn orders_per_s(&self) -> f64 {
        self.answered() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn percentile_ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1_000.0
    }
}

#[derive(Default)]
struct Counters {
    next: AtomicU64,
    sent: AtomicU64,
    created: AtomicU64,
    rejected: AtomicU64,
    overloaded: AtomicU64,
    other_status: AtomicU64,
    errors: AtomicU64,
}

/// Runs the load; `progress` is called with the number of answers so far,
/// about ten times a second.
pub async fn run(spec: LoadSpec, progress: impl Fn(u64) + Send + 'static) -> LoadResult {
    let spec = Arc::new(spec);
    let counters = Arc::new(Counters::default());
    let finished = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let deadline = match spec.stop {
        Stop::After(duration) => Some(started + duration),
        Stop::Orders(_) => None,
    };
    let reporter = {
        let counters = Arc::clone(&counters);
        let finished = Arc::clone(&finished);
        tokio::spawn(async move {
            while !finished.load(Ordering::Relaxed) {
                progress(
                    counters.created.load(Ordering::Relaxed)
                        + counters.rejected.load(Ordering::Relaxed),
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let tasks: Vec<_> = (0..spec.connections)
        .map(|_| {
            let spec = Arc::clone(&spec);
            let counters = Arc::clone(&counters);
            tokio::spawn(connection(spec, counters, deadline))
        })
        .collect();
    let mut latency = hdrhistogram::Histogram::new_with_bounds(1, MAX_RECORDED_LATENCY_US, 3)
        .expect("valid histogram bounds");
    for task in tasks {
        if let Ok(histogram) = task.await {
            latency.add(histogram).expect("same bounds");
        }
    }
    let elapsed = started.elapsed();
    finished.store(true, Ordering::Relaxed);
    let _ = reporter.await;
    LoadResult {
        sent: counters.sent.load(Ordering::Relaxed),
        created: counters.created.load(Ordering::Relaxed),
        rejected: counters.rejected.load(Ordering::Relaxed),
        overloaded: counters.overloaded.load(Ordering::Relaxed),
        other_status: counters.other_status.load(Ordering::Relaxed),
        errors: counters.errors.load(Ordering::Relaxed),
        elapsed,
        latency,
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn open(address: &str) -> Option<Sender> {
    let stream = TcpStream::connect(address).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(connection);
    Some(sender)
}

async fn connection(
    spec: Arc<LoadSpec>,
    counters: Arc<Counters>,
    deadline: Option<Instant>,
) -> hdrhistogram::Histogram<u64> {
    let mut latency = hdrhistogram::Histogram::new_with_bounds(1, MAX_RECORDED_LATENCY_US, 3)
        .expect("valid histogram bounds");
    let mut sender = None;
    let mut reconnects = 0;
    loop {
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return latency;
        }
        let sequence = counters.next.fetch_add(1, Ordering::Relaxed);
        if let Stop::Orders(total) = spec.stop
            && sequence >= total
        {
            return latency;
        }
        if sender.is_none() {
            sender = open(&spec.address).await;
            if sender.is_none() {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                reconnects += 1;
                if reconnects > MAX_RECONNECTS_PER_CONNECTION {
                    return latency;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        }
        let request = Request::post(spec.path.as_str())
            .header(hyper::header::HOST, spec.address.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new((spec.body)(sequence)))
            .expect("a valid request");
        let started = Instant::now();
        counters.sent.fetch_add(1, Ordering::Relaxed);
        let sent = sender.as_mut().expect("opened above").send_request(request);
        let answer = tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), async {
            let response = sent.await?;
            let status = response.status().as_u16();
            // Read the body to the end so the connection can be reused.
            response.into_body().collect().await?;
            Ok::<u16, hyper::Error>(status)
        })
        .await;
        match answer {
            Ok(Ok(status)) => {
                latency
                    .record(
                        (started.elapsed().as_micros() as u64).clamp(1, MAX_RECORDED_LATENCY_US),
                    )
                    .expect("clamped into bounds");
                let counter = match status {
                    200 | 201 => &counters.created,
                    409 => &counters.rejected,
                    503 => &counters.overloaded,
                    _ => &counters.other_status,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                sender = None;
                reconnects += 1;
                if reconnects > MAX_RECONNECTS_PER_CONNECTION {
                    return latency;
                }
            }
        }
    }
}
