//! The snapshot as JSON (`GET /api/snapshot`) and as a live stream of
//! server-sent events (`GET /api/stream`): one `snapshot` event at once, then
//! one per poll. A page that loses the stream reconnects by itself
//! (`EventSource` does), and gets the latest snapshot at once.
//!
//! Streams are bounded so that no client can keep the others from watching:
//! at most [`MAX_STREAM_CLIENTS`](crate::MAX_STREAM_CLIENTS) in all, at most
//! [`MAX_STREAMS_PER_CLIENT`] per client address (a 429 beyond it), and each
//! ends after [`STREAM_LIFETIME_MS`] (the page reconnects at once), so a
//! client that stopped reading gives its slot back even while the socket's
//! buffers still take its snapshots; once they are full, the listener's
//! write-stall timeout closes its connection sooner.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use stockroom_http_kit::PeerKey;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::WatchStream;

use crate::{DashboardError, DashboardState, MAX_STREAM_CLIENTS, POLL_INTERVAL_MS};

/// The most live streams one client address may hold: an operator with a
/// few tabs. Behind one proxy every viewer is one address, which this caps.
pub const MAX_STREAMS_PER_CLIENT: usize = 4;

const _: () = assert!(2 * MAX_STREAMS_PER_CLIENT <= MAX_STREAM_CLIENTS);

/// How long one stream lasts before the dashboard ends it; the page
/// reconnects at once and carries on. It bounds how long a client that
/// stopped reading holds a stream slot.
pub const STREAM_LIFETIME_MS: u64 = 300_000;

/// The pause (`Retry-After`) a client over its share of streams is told to
/// take.
pub const STREAM_RETRY_AFTER_S: u64 = 5;

/// How long a browser waits before reconnecting a lost stream.
pub const RECONNECT_AFTER_MS: u64 = POLL_INTERVAL_MS;

/// The pause after which an idle stream sends a comment, so that proxies
/// and browsers keep it open.
pub const KEEP_ALIVE_MS: u64 = 15_000;

/// `GET /api/snapshot`: the latest snapshot.
pub(crate) async fn latest(State(state): State<DashboardState>) -> Response {
    let text: Arc<str> = state.snapshots.borrow().clone();
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text.to_string(),
    )
        .into_response()
}

/// The stream slots: the total, and what each client address holds.
/// Cloning shares them.
#[derive(Clone)]
pub(crate) struct StreamSlots {
    total: Arc<Semaphore>,
    per_client: Arc<Mutex<HashMap<PeerKey, usize>>>,
}

impl StreamSlots {
    pub fn new() -> StreamSlots {
        StreamSlots {
            total: Arc::new(Semaphore::new(MAX_STREAM_CLIENTS)),
            per_client: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PeerKey, usize>> {
        // A map of counts, consistent after every statement.
        self.per_client
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A slot for a stream to `client`, within its share and the total.
    fn take(&self, client: PeerKey) -> Result<StreamSlot, DashboardError> {
        let mut per_client = self.lock();
        if per_client.get(&client).copied().unwrap_or(0) >= MAX_STREAMS_PER_CLIENT {
            return Err(DashboardError::TooManyStreamsFromClient);
        }
        let permit = Arc::clone(&self.total)
            .try_acquire_owned()
            .map_err(|_| DashboardError::TooManyStreams)?;
        *per_client.entry(client).or_default() += 1;
        Ok(StreamSlot {
            slots: self.clone(),
            client,
            _permit: permit,
        })
    }
}

/// One stream's slot; dropping it (the stream ended or the page went away)
/// frees it.
struct StreamSlot {
    slots: StreamSlots,
    client: PeerKey,
    _permit: OwnedSemaphorePermit,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut per_client = self.slots.lock();
        if let Some(held) = per_client.get_mut(&self.client) {
            *held -= 1;
            if *held == 0 {
                per_client.remove(&self.client);
            }
        }
    }
}

/// The address a request came from, as the listener saw it (all requests
/// count as one client when it is unknown).
pub(crate) struct Client(PeerKey);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        let address = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |info| info.0.ip());
        Ok(Client(PeerKey::of(address)))
    }
}

/// `GET /api/stream`: every snapshot as it is taken, for
/// [`STREAM_LIFETIME_MS`]; 429 when this client already holds
/// [`MAX_STREAMS_PER_CLIENT`] streams, 503 when
/// [`MAX_STREAM_CLIENTS`](crate::MAX_STREAM_CLIENTS) pages already watch.
pub(crate) async fn stream(
    State(state): State<DashboardState>,
    Client(client): Client,
) -> Result<Response, DashboardError> {
    let slot = state.streams.take(client)?;
    let ends_at = Instant::now() + Duration::from_millis(STREAM_LIFETIME_MS);
    let events = WatchStream::new(state.snapshots.clone())
        .take_while(move |_| Instant::now() < ends_at)
        .map(move |text| {
            // The slot lives as long as the stream, and is freed when the
            // stream ends or the page goes away.
            let _held = &slot;
            Ok::<Event, Infallible>(
                Event::default()
                    .event("snapshot")
                    .retry(Duration::from_millis(RECONNECT_AFTER_MS))
                    .data(text.as_ref()),
            )
        });
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_millis(KEEP_ALIVE_MS)))
        .into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(address: &str) -> PeerKey {
        PeerKey::of(address.parse().unwrap())
    }

    #[test]
    fn one_client_gets_its_share_and_leaves_room_for_the_others() {
        let slots = StreamSlots::new();
        let greedy: Vec<StreamSlot> = (0..MAX_STREAMS_PER_CLIENT)
            .map(|_| slots.take(client("10.0.0.1")).unwrap())
            .collect();
        assert!(matches!(
            slots.take(client("10.0.0.1")),
            Err(DashboardError::TooManyStreamsFromClient)
        ));
        let others: Vec<StreamSlot> = (2..)
            .map(|host| client(&format!("10.0.0.{host}")))
            .flat_map(|other| (0..MAX_STREAMS_PER_CLIENT).map(move |_| other))
            .take(MAX_STREAM_CLIENTS - MAX_STREAMS_PER_CLIENT)
            .map(|other| slots.take(other).unwrap())
            .collect();
        assert!(matches!(
            slots.take(client("10.0.0.200")),
            Err(DashboardError::TooManyStreams)
        ));
        drop(greedy);
        assert!(slots.take(client("10.0.0.1")).is_ok(), "freed when dropped");
        drop(others);
        assert!(slots.lock().is_empty(), "no client is remembered once gone");
    }
}
