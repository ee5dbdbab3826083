//! data-service's routes, one file per resource. Each handler is a thin
//! translation: the document it receives becomes a storage call
//! ([`crate::calls`]), the records storage returns become the document it
//! answers ([`crate::documents`]).

mod adjustments;
mod events;
mod inventory;
mod orders;
mod payments;
mod products;
mod provider;
mod reservations;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use stockroom_http_kit::ServiceRoutes;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::{DataState, MAX_BODY_BYTES};
// The `routes!` macro names each handler's generated OpenAPI path type
// beside the handler, so the handlers are taken in whole.
use adjustments::*;
use events::*;
use inventory::*;
use orders::*;
use payments::*;
use products::*;
use provider::*;
use reservations::*;

#[derive(OpenApi)]
#[openapi(info(
    title = "Stockroom data-service",
    description = "The only process that touches storage: atomic operations on inventory and orders, and the embedded event bus."
))]
struct ApiDoc;

/// The public routes are the original system's reads (any client may list
/// stock and orders); everything the other services change, the event bus
/// and the provider are internal; what a shop's operator changes (products,
/// limits, adjustments) and the ledger are the operator's.
fn service_routes() -> ServiceRoutes<DataState> {
    let public = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(inventory))
        .routes(routes!(inventory_item))
        .routes(routes!(orders))
        .routes(routes!(order_counts))
        .routes(routes!(order));
    let internal = OpenApiRouter::new()
        .routes(routes!(restock))
        .routes(routes!(reserve))
        .routes(routes!(record_payments))
        .routes(routes!(settle))
        .routes(routes!(release))
        .routes(routes!(extend))
        .routes(routes!(expire))
        .routes(routes!(lease_events))
        .routes(routes!(acknowledge_events))
        .routes(routes!(release_events))
        .routes(routes!(reject_events))
        .routes(routes!(dead_letters, bury_events))
        .routes(routes!(redrive))
        .routes(routes!(provider_charge))
        .routes(routes!(provider_stats));
    let operator = OpenApiRouter::new()
        .routes(routes!(create_product))
        .routes(routes!(change_settings))
        .routes(routes!(adjust))
        .routes(routes!(movements));
    ServiceRoutes {
        public,
        internal,
        operator,
    }
}

pub fn openapi() -> utoipa::openapi::OpenApi {
    service_routes().openapi()
}

pub fn router(state: DataState) -> Router {
    service_routes()
        .into_router(state.internal_token.clone(), state.operator_token.clone())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(state.metrics.layer())
        .layer(stockroom_http_kit::TraceLayer::new("data-service"))
        .with_state(state)
}

/// The service's health, part by part: 503 while the storage refuses writes.
#[utoipa::path(
    get,
    path = "/health",
    responses(
        (status = 200, description = "ok, or degraded (dead letters wait for an operator)"),
        (status = 503, description = "starting, or a part is down (the storage refuses writes)")
    )
)]
async fn health(State(state): State<DataState>) -> axum::response::Response {
    state.readiness.health_response()
}
