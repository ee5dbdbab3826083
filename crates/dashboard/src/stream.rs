//! The snapshot as JSON (`GET /api/snapshot`) and as a live stream of
//! server-sent events (`GET /api/stream`): one `snapshot` event at once, then
//! one per poll. A page that loses the stream reconnects by itself
//! (`EventSource` does), and gets the latest snapshot at once.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::WatchStream;

use crate::{DashboardError, DashboardState, POLL_INTERVAL_MS};

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

/// `GET /api/stream`: every snapshot as it is taken; 503 when
/// [`MAX_STREAM_CLIENTS`](crate::MAX_STREAM_CLIENTS) pages already watch.
pub(crate) async fn stream(
    State(state): State<DashboardState>,
) -> Result<Response, DashboardError> {
    let permit = Arc::clone(&state.streams)
        .try_acquire_owned()
        .map_err(|_| DashboardError::TooManyStreams)?;
    let events = WatchStream::new(state.snapshots.clone()).map(move |text| {
        // The permit lives as long as the stream, and frees its slot when the
        // page goes away.
        let _held = &permit;
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
