//! A request body bounded in time as a whole.
//!
//! A timeout on the pause between two pieces of a body does not bound the
//! body: a client that sends one byte every few seconds never pauses long
//! enough, and a 16 KiB body can be dripped for most of a day. A body here
//! must instead arrive whole within [`BodyLimits::deadline_ms`] of its head,
//! and, once [`BodyLimits::rate_grace_ms`] have passed, keep up an average of
//! [`BodyLimits::min_bytes_per_second`], so that a drip is cut within
//! seconds rather than at the deadline. Either failure is a
//! [`BodyReadError`] that [`crate::JsonBody`] answers with a 408.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

/// How a request body is bounded in time; see the module's documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// The whole body must arrive within this long of its head.
    pub deadline_ms: u64,
    /// After the grace period, the body must arrive at least this fast, on
    /// average since its head.
    pub min_bytes_per_second: u64,
    /// How long a body may take to start (a client's slow start, a first
    /// round trip on a poor link) before the minimum rate applies.
    pub rate_grace_ms: u64,
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyReadError {
    /// The body was not complete within the deadline.
    #[error("the request body did not arrive within {deadline_ms} ms")]
    Deadline { deadline_ms: u64 },
    /// The body arrived slower than the minimum rate.
    #[error(
        "the request body arrived slower than {min_bytes_per_second} bytes per second ({received} bytes in {elapsed_ms} ms)"
    )]
    TooSlow {
        min_bytes_per_second: u64,
        received: u64,
        elapsed_ms: u64,
    },
    /// The connection failed while the body was arriving.
    #[error("the request body could not be read")]
    Transport(#[source] hyper::Error),
}

impl BodyReadError {
    /// Whether the client was too slow (a 408), rather than the connection
    /// failing.
    pub fn is_timeout(&self) -> bool {
        !matches!(self, BodyReadError::Transport(_))
    }
}

/// A request's body with its deadline and minimum rate.
pub(crate) struct DeadlineBody {
    inner: Incoming,
    limits: BodyLimits,
    started: Instant,
    received: u64,
    /// Fires at the next moment the body could fail: the deadline, or when
    /// the bytes received so far fall below the minimum rate.
    check: Pin<Box<Sleep>>,
}

impl DeadlineBody {
    /// Starts the clock now, when the request's head has arrived.
    pub fn new(inner: Incoming, limits: BodyLimits) -> DeadlineBody {
        let started = Instant::now();
        let mut body = DeadlineBody {
            inner,
            limits,
            started,
            received: 0,
            check: Box::pin(tokio::time::sleep_until(started)),
        };
        let next = body.next_check();
        body.check.as_mut().reset(next);
        body
    }

    fn deadline(&self) -> Instant {
        self.started + Duration::from_millis(self.limits.deadline_ms)
    }

    /// The earlier of the deadline and the moment the bytes received so far
    /// no longer meet the minimum rate.
    fn next_check(&self) -> Instant {
        let rate = self.limits.min_bytes_per_second.max(1);
        let covered_ms = self
            .limits
            .rate_grace_ms
            .saturating_add(self.received.saturating_mul(1_000) / rate);
        let rate_check = self.started + Duration::from_millis(covered_ms);
        rate_check.min(self.deadline())
    }

    fn failure(&self) -> BodyReadError {
        let now = Instant::now();
        if now >= self.deadline() {
            BodyReadError::Deadline {
                deadline_ms: self.limits.deadline_ms,
            }
        } else {
            BodyReadError::TooSlow {
                min_bytes_per_second: self.limits.min_bytes_per_second,
                received: self.received,
                elapsed_ms: now.duration_since(self.started).as_millis() as u64,
            }
        }
    }
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = BodyReadError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyReadError>>> {
        match Pin::new(&mut self.inner).poll_frame(context) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.received += data.len() as u64;
                }
                if !self.inner.is_end_stream() && Instant::now() >= self.deadline() {
                    return Poll::Ready(Some(Err(self.failure())));
                }
                let next = self.next_check();
                self.check.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                Poll::Ready(Some(Err(BodyReadError::Transport(error))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.check.as_mut().poll(context) {
                Poll::Ready(()) => Poll::Ready(Some(Err(self.failure()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
