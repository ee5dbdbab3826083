//! How both backends store an event's id in the outbox.
//!
//! The rules name every event they raise after its kind, its order (or
//! product) and the version that change reached
//! ([`stockroom_domain::rules::event_id`]), and the outbox keeps all three
//! with the event ([`crate::outbox_rows`]). Storing the id as well repeated
//! about 52 bytes in every event, the largest of its fields. An event whose
//! id is the one its fields make keeps the empty text (or no id) instead,
//! and reading makes the id again; an id of any other form (written by an
//! earlier schema, or by a later rule) is stored as it is. The empty text is
//! never an event's id.

use stockroom_domain::EventKind;
use stockroom_domain::rules::{EventRecord, event_id};

/// What the outbox row of `event` stores as its id: the empty text when
/// [`restored`] makes the id again from the row's other columns.
pub fn stored(event: &EventRecord) -> &str {
    let derived = event
        .event_id
        .strip_prefix(event.kind.as_str())
        .and_then(|rest| rest.strip_prefix(':'))
        .and_then(|rest| rest.strip_prefix(event.order_id.as_str()))
        .and_then(|rest| rest.strip_prefix(':'))
        .is_some_and(|version| version == event.order_version.to_string());
    if derived { "" } else { &event.event_id }
}

/// The id of the event a row stores `stored` for.
pub fn restored(stored: String, kind: EventKind, order_id: &str, order_version: i64) -> String {
    if stored.is_empty() {
        event_id(kind, order_id, order_version)
    } else {
        stored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event_id: String) -> EventRecord {
        EventRecord {
            event_id,
            kind: EventKind::OrderReserved,
            order_id: "o1".into(),
            order_version: 12,
            total_units: 1,
            occurred_at_ms: 0,
            trace_parent: None,
            notice: None,
        }
    }

    #[test]
    fn an_id_the_columns_make_is_stored_empty_and_made_again() {
        let made = event(event_id(EventKind::OrderReserved, "o1", 12));
        assert_eq!(stored(&made), "");
        assert_eq!(
            restored(stored(&made).to_owned(), made.kind, "o1", 12),
            made.event_id
        );
    }

    #[test]
    fn any_other_id_is_stored_as_it_is() {
        for other in [
            "OrderReserved:o1:1",
            "OrderReserved:o1:123",
            "OrderReserved:o12:12",
            "PaymentFailed:o1:12",
            "OrderReserved:o1:12:x",
            "legacy-id",
        ] {
            let kept = event(other.to_owned());
            assert_eq!(stored(&kept), other);
            assert_eq!(restored(other.to_owned(), kept.kind, "o1", 12), other);
        }
    }
}
