//! Deciding a batch: every call through the rules, in arrival order, and
//! what the whole batch writes.

use std::collections::HashMap;

use stockroom_domain::ProductName;
use stockroom_domain::ReleaseReason;
use stockroom_domain::rules::{
    AdjustDecision, AdjustInput, Book, Changes, CreateDecision, Effect, ProductSettings,
    ReserveDecision, ReserveInput, RuleError, SettingsChange, SweepDecision,
};

use crate::StorageError;
use crate::batch::{
    Adjustment, Answer, Command, Needs, PaymentVerdict, Reply, Reservation, SettlementCall,
    SweepQuery, SweptOrder,
};

/// Everything a batch writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Writes {
    pub changes: Changes,
    pub created_at_ms: i64,
}

impl Writes {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Whether the batch wrote events, so that waiting consumers should look.
    pub fn has_events(&self) -> bool {
        !self.changes.events.is_empty()
    }
}

/// Runs every command through the rules, in order, and returns each one's
/// answer and what the whole batch writes. One call's refusal never undoes
/// another's effect: each decision of the book is all or nothing.
pub fn decide(
    mut book: Book,
    commands: &[Command],
    needs: &Needs,
) -> (Vec<Result<Answer, StorageError>>, Writes) {
    let mut sweeps = needs.sweeps.iter();
    let answers = commands
        .iter()
        .map(|command| match command {
            Command::Reserve(requests) => {
                Ok(Answer::Ready(Reply::Reserved(reserve(&mut book, requests))))
            }
            Command::RecordPayments(payments) => Ok(Answer::Ready(Reply::Effects(
                record_payments(&mut book, payments),
            ))),
            Command::Settle(settlements) => Ok(Answer::Ready(Reply::Effects(settle(
                &mut book,
                settlements,
            )))),
            Command::Release { order_id, reason } => release(&mut book, order_id, *reason),
            Command::Sweep { .. } => {
                let query = sweeps
                    .next()
                    .expect("Needs::of made one sweep query per sweep command");
                Ok(Answer::Ready(Reply::Swept(sweep(&mut book, query))))
            }
            Command::Restock { product, quantity } => restock(&mut book, product, *quantity),
            Command::CreateProduct {
                product,
                quantity,
                settings,
            } => create_product(&mut book, product, *quantity, *settings),
            Command::ChangeSettings {
                product_key,
                change,
            } => Ok(change_settings(&mut book, product_key, *change, needs)),
            Command::Adjust(adjustment) => Ok(adjust(&mut book, adjustment)),
            Command::Extend {
                order_id,
                customer_id,
                until_ms,
            } => {
                let decision = book.extend(order_id, customer_id, *until_ms);
                tracing::info!(
                    operation = "extend",
                    order_id,
                    ?decision,
                    "extension decided"
                );
                Ok(Answer::Ready(Reply::Extended(decision)))
            }
        })
        .collect();
    let created_at_ms = book.now_ms();
    let mut changes = book.into_changes();
    carry_trace_context(commands, &mut changes);
    (
        answers,
        Writes {
            changes,
            created_at_ms,
        },
    )
}

fn reserve(book: &mut Book, requests: &[Reservation]) -> Vec<ReserveDecision> {
    requests
        .iter()
        .map(|request| {
            let decision = book.reserve(ReserveInput {
                order_id: &request.order_id,
                customer_id: &request.customer_id,
                items: &request.items,
                idempotency_key: request.idempotency_key.as_deref(),
                fingerprint: request.fingerprint.as_deref(),
            });
            match &decision {
                ReserveDecision::AnswerGone { order_id } => tracing::error!(
                    order_id,
                    "an idempotency key's order is no longer stored; its answer cannot be replayed"
                ),
                decision => {
                    tracing::debug!(order_id = %request.order_id, ?decision, "reservation decided")
                }
            }
            decision
        })
        .collect()
}

fn record_payments(book: &mut Book, payments: &[PaymentVerdict]) -> Vec<Result<Effect, RuleError>> {
    payments
        .iter()
        .map(|payment| {
            let effect = book.record_payment(&payment.order_id, &payment.event_id, payment.approved);
            tracing::debug!(order_id = %payment.order_id, approved = payment.approved, ?effect, "payment recorded");
            Ok(effect)
        })
        .collect()
}

fn settle(book: &mut Book, settlements: &[SettlementCall]) -> Vec<Result<Effect, RuleError>> {
    settlements
        .iter()
        .map(|settlement| {
            let effect = book.settle(&settlement.order_id, &settlement.event_id, settlement.action);
            match &effect {
                Ok(effect) => tracing::debug!(order_id = %settlement.order_id, action = ?settlement.action, ?effect, "settlement decided"),
                Err(error) => tracing::error!(order_id = %settlement.order_id, error = error as &dyn std::error::Error, "stored order is inconsistent; event not applied"),
            }
            effect
        })
        .collect()
}

fn release(book: &mut Book, order_id: &str, reason: ReleaseReason) -> Result<Answer, StorageError> {
    let decision = book
        .release(order_id, reason)
        .map_err(|error| StorageError::Inconsistent(error.to_string()))?;
    tracing::info!(
        operation = "release",
        order_id,
        reason = reason.as_str(),
        ?decision,
        "release decided"
    );
    Ok(Answer::Release {
        order_id: order_id.to_owned(),
        decision,
    })
}

fn restock(book: &mut Book, product: &ProductName, quantity: u64) -> Result<Answer, StorageError> {
    let stock = book
        .restock(product, quantity)
        .map_err(|error| StorageError::Refused(error.to_string()))?;
    let key = product.key();
    tracing::info!(
        operation = "restock",
        product = product.as_str(),
        quantity,
        on_hand_after = stock.on_hand(),
        "inventory restocked"
    );
    let record = book
        .product(&key)
        .expect("a restocked product is in the book");
    Ok(Answer::Ready(Reply::Item(record)))
}

fn create_product(
    book: &mut Book,
    product: &ProductName,
    quantity: u64,
    settings: ProductSettings,
) -> Result<Answer, StorageError> {
    let decision = book
        .create_product(product, quantity, settings)
        .map_err(|error| StorageError::Refused(error.to_string()))?;
    if let CreateDecision::Created(record) = &decision {
        tracing::info!(
            operation = "create_product",
            product = record.product_name,
            quantity,
            "product created"
        );
    }
    Ok(Answer::Ready(Reply::Created(decision)))
}

fn change_settings(
    book: &mut Book,
    product_key: &str,
    change: SettingsChange,
    needs: &Needs,
) -> Answer {
    let holders = needs
        .holders
        .get(product_key)
        .map_or(&[][..], Vec::as_slice);
    let decision = book.change_settings(product_key, change, holders);
    tracing::info!(
        operation = "change_settings",
        product_key,
        ?change,
        "settings decided"
    );
    Answer::Ready(Reply::Settings(decision))
}

fn adjust(book: &mut Book, adjustment: &Adjustment) -> Answer {
    let decision = book.adjust(AdjustInput {
        product_key: &adjustment.product_key,
        delta: adjustment.delta,
        reason: adjustment.reason,
        reference: adjustment.reference.as_deref(),
        expected_on_hand: adjustment.expected_on_hand,
        idempotency_key: adjustment.idempotency_key.as_deref(),
        fingerprint: adjustment.fingerprint.as_deref(),
    });
    if let AdjustDecision::Adjusted(answer) = &decision {
        tracing::info!(
            operation = "adjust",
            product_key = adjustment.product_key,
            delta = adjustment.delta.get(),
            reason = adjustment.reason.as_str(),
            on_hand_after = answer.stock.on_hand(),
            "stock adjusted"
        );
    }
    Answer::Ready(Reply::Adjusted(decision))
}

/// The longest trace context an event carries into the outbox: a W3C
/// `traceparent` is 55 bytes; anything much longer is not one and is dropped
/// rather than stored with every event.
pub const MAX_TRACE_CONTEXT_BYTES: usize = 128;

/// Gives each event the trace context of the call that caused it (the
/// order's request or the payment verdict), so that its consumer continues
/// the order's trace. The rules never see it: it only rides along.
fn carry_trace_context(commands: &[Command], changes: &mut Changes) {
    let mut by_order: HashMap<&str, &str> = HashMap::new();
    for command in commands {
        match command {
            Command::Reserve(requests) => by_order.extend(requests.iter().filter_map(|request| {
                Some((
                    request.order_id.as_str(),
                    bounded(request.trace_parent.as_deref())?,
                ))
            })),
            Command::RecordPayments(payments) => {
                by_order.extend(payments.iter().filter_map(|payment| {
                    Some((
                        payment.order_id.as_str(),
                        bounded(payment.trace_parent.as_deref())?,
                    ))
                }))
            }
            _ => {}
        }
    }
    if by_order.is_empty() {
        return;
    }
    for event in &mut changes.events {
        event.trace_parent = by_order
            .get(event.order_id.as_str())
            .map(|traceparent| (*traceparent).to_owned());
    }
}

fn bounded(trace_context: Option<&str>) -> Option<&str> {
    trace_context.filter(|value| value.len() <= MAX_TRACE_CONTEXT_BYTES)
}

fn sweep(book: &mut Book, query: &SweepQuery) -> Vec<SweptOrder> {
    let mut swept = Vec::new();
    for order_id in &query.found {
        match book.sweep(order_id, query.cutoff_ms) {
            Ok(SweepDecision::Kept) => {}
            Ok(outcome) => {
                tracing::info!(
                    operation = "sweep",
                    order_id,
                    ?outcome,
                    "overdue reservation ended"
                );
                swept.push(SweptOrder {
                    order_id: order_id.clone(),
                    outcome,
                });
            }
            Err(error) => {
                tracing::error!(order_id, %error, "stored order is inconsistent; left reserved");
            }
        }
    }
    swept
}

#[cfg(test)]
mod tests {
    use stockroom_domain::EventKind;
    use stockroom_domain::rules::EventRecord;

    use super::*;
    use crate::batch::MAX_TRACE_CONTEXT_BYTES;

    fn event(order_id: &str) -> EventRecord {
        EventRecord {
            event_id: format!("PaymentSucceeded:{order_id}:2"),
            kind: EventKind::PaymentSucceeded,
            order_id: order_id.to_owned(),
            order_version: 2,
            total_units: 1,
            occurred_at_ms: 0,
            trace_parent: None,
            notice: None,
        }
    }

    fn payment(order_id: &str, trace_parent: Option<String>) -> PaymentVerdict {
        PaymentVerdict {
            order_id: order_id.to_owned(),
            event_id: format!("OrderReserved:{order_id}:1"),
            approved: true,
            trace_parent,
        }
    }

    #[test]
    fn each_event_gets_its_own_calls_trace_context_if_it_is_bounded() {
        let traced = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let commands = [
            Command::RecordPayments(vec![payment("a", Some(traced.into())), payment("b", None)]),
            Command::RecordPayments(vec![payment(
                "c",
                Some("x".repeat(MAX_TRACE_CONTEXT_BYTES + 1)),
            )]),
        ];
        let mut changes = Changes {
            events: vec![event("a"), event("b"), event("c")],
            ..Changes::default()
        };
        carry_trace_context(&commands, &mut changes);
        let carried: Vec<Option<&str>> = changes
            .events
            .iter()
            .map(|event| event.trace_parent.as_deref())
            .collect();
        assert_eq!(carried, [Some(traced), None, None]);
    }
}
