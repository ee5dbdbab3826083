//! data-service's answers to a batch of reservations, as order-service reads
//! them: the order each outcome carries is kept as the JSON data-service
//! wrote, never rebuilt.
//!
//! order-service does not look inside an answered order; it hands it to the
//! client as it is. Reading it into a [`stockroom_contract::Order`] and
//! writing it out again cost a parse and a serialisation of every order a
//! flash sale places (with the internally tagged outcome buffered on the
//! way), so the order stays a [`RawValue`] from data-service's bytes to the
//! client's. The wire format is [`stockroom_contract::ReserveBatchResult`]'s,
//! which data-service writes and the tests below read both ways.

use serde::Deserialize;
use serde_json::value::RawValue;
use stockroom_contract::Shortage;

/// The answers to one batch, in the order of its requests.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyBatch {
    pub results: Vec<Reply>,
}

/// The answer to one reservation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    /// True when this is the stored answer to an earlier request with the
    /// same idempotency key.
    pub replayed: bool,
    pub outcome: Outcome,
}

/// What became of one reservation, as [`stockroom_contract::ReserveOutcome`]
/// says, with its order left as data-service wrote it.
#[derive(Debug, Deserialize)]
#[serde(try_from = "OutcomeFields")]
pub enum Outcome {
    Reserved {
        order: Box<RawValue>,
    },
    Rejected {
        order: Box<RawValue>,
        shortages: Vec<Shortage>,
    },
    UnknownProduct {
        product_name: String,
    },
    LimitExceeded {
        product_name: String,
        max_per_customer: u32,
        already_held: u64,
    },
    IdempotencyKeyReused,
    OrderIdTaken {
        order_id: String,
    },
    AnswerGone {
        order_id: String,
    },
}

/// The outcome's tag, as `ReserveOutcome` writes it.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Reserved,
    Rejected,
    UnknownProduct,
    LimitExceeded,
    IdempotencyKeyReused,
    OrderIdTaken,
    AnswerGone,
}

/// Every field any outcome has, read in one pass: an internally tagged enum
/// would buffer the whole outcome first, and a [`RawValue`] cannot be read
/// from such a buffer.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OutcomeFields {
    outcome: Kind,
    order: Option<Box<RawValue>>,
    shortages: Option<Vec<Shortage>>,
    product_name: Option<String>,
    max_per_customer: Option<u32>,
    already_held: Option<u64>,
    order_id: Option<String>,
}

impl TryFrom<OutcomeFields> for Outcome {
    type Error = String;

    fn try_from(fields: OutcomeFields) -> Result<Outcome, String> {
        let kind = fields.outcome;
        let missing = |field: &str| format!("a {kind:?} outcome without its {field}");
        Ok(match kind {
            Kind::Reserved => Outcome::Reserved {
                order: fields.order.ok_or_else(|| missing("order"))?,
            },
            Kind::Rejected => Outcome::Rejected {
                order: fields.order.ok_or_else(|| missing("order"))?,
                shortages: fields.shortages.ok_or_else(|| missing("shortages"))?,
            },
            Kind::UnknownProduct => Outcome::UnknownProduct {
                product_name: fields.product_name.ok_or_else(|| missing("productName"))?,
            },
            Kind::LimitExceeded => Outcome::LimitExceeded {
                product_name: fields.product_name.ok_or_else(|| missing("productName"))?,
                max_per_customer: fields
                    .max_per_customer
                    .ok_or_else(|| missing("maxPerCustomer"))?,
                already_held: fields.already_held.ok_or_else(|| missing("alreadyHeld"))?,
            },
            Kind::IdempotencyKeyReused => Outcome::IdempotencyKeyReused,
            Kind::OrderIdTaken => Outcome::OrderIdTaken {
                order_id: fields.order_id.ok_or_else(|| missing("orderId"))?,
            },
            Kind::AnswerGone => Outcome::AnswerGone {
                order_id: fields.order_id.ok_or_else(|| missing("orderId"))?,
            },
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use stockroom_contract::{
        HistoryEntry, Order, OrderLine, ProductRef, ReserveBatchResult, ReserveOutcome,
        ReserveResult,
    };
    use stockroom_domain::{OrderStatus, PaymentStatus};

    use super::*;

    /// A reserved order as data-service writes it, for the tests here and in
    /// `answer`.
    pub(crate) fn order() -> Order {
        Order {
            id: "0193a0e2-7c1d-7000-8000-000000000001".into(),
            customer_id: "ada \"the\" customer".into(),
            status: OrderStatus::Reserved,
            reason: None,
            payment_status: PaymentStatus::None,
            version: 1,
            created_at: "2026-12-07T06:00:00.000Z".into(),
            updated_at: "2026-12-07T06:00:00.000Z".into(),
            extended_until: None,
            items: vec![OrderLine {
                product: ProductRef { name: "Hot".into() },
                quantity: 2,
            }],
            history: vec![HistoryEntry {
                version: 1,
                status: OrderStatus::Reserved,
                reason: None,
                at: "2026-12-07T06:00:00.000Z".into(),
            }],
        }
    }

    /// Every outcome data-service writes, read back here.
    fn every_outcome() -> Vec<ReserveOutcome> {
        vec![
            ReserveOutcome::Reserved { order: order() },
            ReserveOutcome::Rejected {
                order: order(),
                shortages: vec![Shortage {
                    product_name: "Hot".into(),
                    requested: 2,
                    available: 1,
                }],
            },
            ReserveOutcome::UnknownProduct {
                product_name: "Cold".into(),
            },
            ReserveOutcome::LimitExceeded {
                product_name: "Hot".into(),
                max_per_customer: 2,
                already_held: 1,
            },
            ReserveOutcome::IdempotencyKeyReused,
            ReserveOutcome::OrderIdTaken {
                order_id: "taken".into(),
            },
            ReserveOutcome::AnswerGone {
                order_id: "gone".into(),
            },
        ]
    }

    #[test]
    fn every_outcome_data_service_writes_is_read_with_its_order_unchanged() {
        let written = ReserveBatchResult {
            results: every_outcome()
                .into_iter()
                .map(|outcome| ReserveResult {
                    replayed: true,
                    outcome,
                })
                .collect(),
        };
        let bytes = serde_json::to_vec(&written).unwrap();
        let read: ReplyBatch = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(read.results.len(), written.results.len());
        let order_json = serde_json::to_string(&order()).unwrap();
        for (reply, result) in read.results.iter().zip(&written.results) {
            assert!(reply.replayed);
            match (&reply.outcome, &result.outcome) {
                (Outcome::Reserved { order }, ReserveOutcome::Reserved { .. }) => {
                    assert_eq!(order.get(), order_json);
                }
                (
                    Outcome::Rejected { order, shortages },
                    ReserveOutcome::Rejected {
                        shortages: written, ..
                    },
                ) => {
                    assert_eq!(order.get(), order_json);
                    assert_eq!(shortages, written);
                }
                (
                    Outcome::UnknownProduct { product_name },
                    ReserveOutcome::UnknownProduct { product_name: name },
                ) => assert_eq!(product_name, name),
                (
                    Outcome::LimitExceeded {
                        product_name,
                        max_per_customer,
                        already_held,
                    },
                    ReserveOutcome::LimitExceeded {
                        product_name: name,
                        max_per_customer: max,
                        already_held: held,
                    },
                ) => {
                    assert_eq!(
                        (product_name, max_per_customer, already_held),
                        (name, max, held)
                    );
                }
                (Outcome::IdempotencyKeyReused, ReserveOutcome::IdempotencyKeyReused) => {}
                (
                    Outcome::OrderIdTaken { order_id },
                    ReserveOutcome::OrderIdTaken { order_id: id },
                )
                | (Outcome::AnswerGone { order_id }, ReserveOutcome::AnswerGone { order_id: id }) =>
                {
                    assert_eq!(order_id, id);
                }
                (read, written) => panic!("{written:?} was read as {read:?}"),
            }
        }
    }

    #[test]
    fn an_outcome_without_what_its_kind_carries_is_refused() {
        for text in [
            r#"{"outcome":"reserved"}"#,
            r#"{"outcome":"rejected","order":{}}"#,
            r#"{"outcome":"limit_exceeded","productName":"Hot"}"#,
            r#"{"outcome":"answer_gone"}"#,
            r#"{"outcome":"sold_out"}"#,
            r#"{"outcome":"reserved","order":{},"surprise":1}"#,
        ] {
            assert!(serde_json::from_str::<Outcome>(text).is_err(), "{text}");
        }
    }
}
