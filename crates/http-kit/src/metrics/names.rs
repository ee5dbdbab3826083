//! Every metric name Stockroom exposes, with its help text, in one place so
//! that services, the dashboard, the Grafana board and the documentation
//! (`docs/observability.md`) cannot drift apart.

/// Requests answered, by `method`, `route` and `status` (counter).
pub const HTTP_REQUESTS_TOTAL: &str = "stockroom_http_requests_total";
/// Request latency by `route` (histogram, seconds).
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "stockroom_http_request_duration_seconds";
/// Orders placed and reserved (counter, order-service).
pub const RESERVATIONS_TOTAL: &str = "stockroom_reservations_total";
/// Orders rejected for insufficient stock (counter, order-service).
pub const REJECTIONS_TOTAL: &str = "stockroom_rejections_total";
/// Invariant violations found by the auditor (counter).
pub const INVARIANT_VIOLATIONS_TOTAL: &str = "stockroom_invariant_violations_total";
/// Invariant violations by `invariant` (counter).
pub const INVARIANT_VIOLATIONS_BY_KIND_TOTAL: &str = "stockroom_invariant_violations_by_kind_total";
/// Violations the last audit found (gauge).
pub const INVARIANT_VIOLATIONS_CURRENT: &str = "stockroom_invariant_violations_current";
/// Units of stock per `product` and `figure` (on_hand, reserved, available) (gauge).
pub const STOCK_UNITS: &str = "stockroom_stock_units";
/// Time from a payment verdict's event to its settlement (histogram, seconds).
pub const SETTLEMENT_LAG_SECONDS: &str = "stockroom_settlement_lag_seconds";
/// Events waiting for their `consumer` (gauge).
pub const OUTBOX_PENDING: &str = "stockroom_outbox_pending";
/// Age of the oldest waiting event per `consumer` (gauge, milliseconds).
pub const OUTBOX_OLDEST_AGE_MS: &str = "stockroom_outbox_oldest_age_ms";
/// Events refused as poison and kept for redrive, per `consumer` (gauge).
pub const DEAD_LETTERS: &str = "stockroom_dead_letters";
/// Rows deleted by retention, per `kind` (counter).
pub const PRUNED_ROWS_TOTAL: &str = "stockroom_pruned_rows_total";
/// Orders per exchange between order-service and inventory-service (histogram).
pub const ORDER_BATCH_SIZE: &str = "stockroom_order_batch_size";
/// Events per batch a consumer received, per `consumer` (histogram).
pub const EVENT_BATCH_SIZE: &str = "stockroom_event_batch_size";
/// Write transactions the storage committed (counter, data-service).
pub const WRITE_BATCHES_TOTAL: &str = "stockroom_write_batches_total";
/// Calls the storage's write transactions carried (counter, data-service).
pub const WRITE_BATCH_CALLS_TOTAL: &str = "stockroom_write_batch_calls_total";
/// Calls waiting for the storage's writer (gauge, data-service).
pub const WRITE_QUEUE_DEPTH: &str = "stockroom_write_queue_depth";

/// Webhook deliveries, by how they ended: sent, retrying, dead (counter,
/// data-service).
pub const WEBHOOK_DELIVERIES_TOTAL: &str = "stockroom_webhook_deliveries_total";
/// Webhook URLs the dispatcher sends to; absent where no webhook is
/// configured (gauge, data-service).
pub const WEBHOOK_RECEIVERS: &str = "stockroom_webhook_receivers";

/// Every name above, for checks that a dashboard or a document names only
/// metrics that exist.
pub const ALL: [&str; 20] = [
    HTTP_REQUESTS_TOTAL,
    HTTP_REQUEST_DURATION_SECONDS,
    RESERVATIONS_TOTAL,
    REJECTIONS_TOTAL,
    INVARIANT_VIOLATIONS_TOTAL,
    INVARIANT_VIOLATIONS_BY_KIND_TOTAL,
    INVARIANT_VIOLATIONS_CURRENT,
    STOCK_UNITS,
    SETTLEMENT_LAG_SECONDS,
    OUTBOX_PENDING,
    OUTBOX_OLDEST_AGE_MS,
    DEAD_LETTERS,
    PRUNED_ROWS_TOTAL,
    ORDER_BATCH_SIZE,
    EVENT_BATCH_SIZE,
    WRITE_BATCHES_TOTAL,
    WRITE_BATCH_CALLS_TOTAL,
    WRITE_QUEUE_DEPTH,
    WEBHOOK_DELIVERIES_TOTAL,
    WEBHOOK_RECEIVERS,
];

/// The help text of each metric, as the exposition's `# HELP` line says it.
pub fn help(name: &str) -> &'static str {
    match name {
        HTTP_REQUESTS_TOTAL => "HTTP requests answered",
        HTTP_REQUEST_DURATION_SECONDS => "HTTP request latency",
        RESERVATIONS_TOTAL => "orders placed and reserved",
        REJECTIONS_TOTAL => "orders rejected for insufficient stock",
        INVARIANT_VIOLATIONS_TOTAL => "invariant violations found by the auditor",
        INVARIANT_VIOLATIONS_BY_KIND_TOTAL => {
            "invariant violations found by the auditor, by invariant"
        }
        INVARIANT_VIOLATIONS_CURRENT => "invariant violations found by the last audit",
        STOCK_UNITS => "units of stock per product: on hand, reserved and available",
        SETTLEMENT_LAG_SECONDS => "time from a payment verdict's event to its settlement",
        OUTBOX_PENDING => "events waiting for their consumer, per consumer",
        OUTBOX_OLDEST_AGE_MS => "how long the oldest waiting event has waited, per consumer",
        DEAD_LETTERS => "events refused as poison and kept for redrive, per consumer",
        PRUNED_ROWS_TOTAL => "rows deleted by retention, per kind",
        ORDER_BATCH_SIZE => "orders sent to inventory-service in one exchange",
        EVENT_BATCH_SIZE => "events a consumer received in one batch",
        WRITE_BATCHES_TOTAL => "write transactions the storage committed",
        WRITE_BATCH_CALLS_TOTAL => "calls carried by the storage's write transactions",
        WRITE_QUEUE_DEPTH => "calls waiting for the storage's writer",
        WEBHOOK_DELIVERIES_TOTAL => "webhook deliveries, by outcome: sent, retrying or dead",
        WEBHOOK_RECEIVERS => "webhook URLs events are sent to",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The suffixes Prometheus adds to a histogram's series.
    const HISTOGRAM_SUFFIXES: [&str; 3] = ["_bucket", "_sum", "_count"];

    #[test]
    fn every_metric_has_help() {
        for name in ALL {
            assert!(!help(name).is_empty(), "{name} has no help text");
        }
    }

    #[test]
    fn the_grafana_board_names_only_metrics_that_exist() {
        let board = include_str!("../../../../docs/grafana/stockroom.json");
        let mut named = 0;
        for (start, _) in board.match_indices("stockroom_") {
            let name: String = board[start..]
                .chars()
                .take_while(|character| character.is_ascii_alphanumeric() || *character == '_')
                .collect();
            let base = HISTOGRAM_SUFFIXES
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(&name);
            assert!(
                ALL.contains(&name.as_str()) || ALL.contains(&base),
                "the board names {name}, which no service exposes"
            );
            named += 1;
        }
        assert!(named > 10, "the board names {named} metrics");
    }
}
