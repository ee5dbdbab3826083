//! The documents data-service answers with, made of the records storage
//! returns: the one place where this service's answers take their wire form.

use stockroom_contract::{
    DeadLetter, Delivery, EffectBatchResult, EffectOutcome, EffectResult, Event, ExpireResult,
    Order, ProviderStats, ProviderVerdict, ReserveOutcome, ReserveResult, Shortage,
};
use stockroom_domain::outbox;
use stockroom_domain::rules::{Effect, ReserveAnswer, ReserveDecision, RuleError, SweepDecision};
use stockroom_storage::batch::SweptOrder;
use stockroom_storage::{LedgerStats, Verdict};

/// The answer to one reservation request.
pub fn reserve_result(request_order_id: &str, decision: ReserveDecision) -> ReserveResult {
    let (replayed, outcome) = match decision {
        ReserveDecision::Created(answer) => (false, answered(&answer)),
        ReserveDecision::Replay(answer) => (true, answered(&answer)),
        ReserveDecision::UnknownProduct(product_name) => {
            (false, ReserveOutcome::UnknownProduct { product_name })
        }
        ReserveDecision::LimitExceeded(exceeded) => (
            false,
            ReserveOutcome::LimitExceeded {
                product_name: exceeded.product_name,
                max_per_customer: exceeded.max_per_customer,
                already_held: exceeded.already_held,
            },
        ),
        ReserveDecision::OrderIdTaken => (
            false,
            ReserveOutcome::OrderIdTaken {
                order_id: request_order_id.to_owned(),
            },
        ),
        ReserveDecision::KeyReused => (false, ReserveOutcome::IdempotencyKeyReused),
        ReserveDecision::AnswerGone { order_id } => {
            (false, ReserveOutcome::AnswerGone { order_id })
        }
    };
    ReserveResult { replayed, outcome }
}

/// The outcome of a request that created an order, as its first request was
/// answered: the order as it was created.
fn answered(answer: &ReserveAnswer) -> ReserveOutcome {
    match answer {
        ReserveAnswer::Reserved(order) => ReserveOutcome::Reserved {
            order: Order::created(order),
        },
        ReserveAnswer::Rejected { order, shortages } => ReserveOutcome::Rejected {
            order: Order::created(order),
            shortages: shortages
                .iter()
                .map(|shortage| Shortage {
                    product_name: shortage.product_name.clone(),
                    requested: shortage.requested,
                    // Stock never exceeds MAX_STOCK_PER_PRODUCT, far inside
                    // i64.
                    available: shortage.available as i64,
                })
                .collect(),
        },
    }
}

/// The answers to a batch of events, one per order id, in order.
pub fn effect_results(
    order_ids: &[String],
    effects: Vec<Result<Effect, RuleError>>,
) -> EffectBatchResult {
    EffectBatchResult {
        results: order_ids
            .iter()
            .zip(effects)
            .map(|(order_id, effect)| effect_result(order_id, effect))
            .collect(),
    }
}

/// The answer to one event a consumer handed over.
fn effect_result(order_id: &str, effect: Result<Effect, RuleError>) -> EffectResult {
    let (outcome, status) = match effect {
        Ok(Effect::Applied(status)) => (EffectOutcome::Applied, Some(status)),
        Ok(Effect::Duplicate(status)) => (EffectOutcome::Duplicate, Some(status)),
        Ok(Effect::NotApplicable(status)) => (EffectOutcome::NotApplicable, Some(status)),
        Ok(Effect::UnknownOrder) => (EffectOutcome::UnknownOrder, None),
        Err(_) => (EffectOutcome::Inconsistent, None),
    };
    EffectResult {
        order_id: order_id.to_owned(),
        outcome,
        status,
    }
}

/// What one sweep ended, by how it ended each order.
pub fn expire_result(swept: Vec<SweptOrder>) -> ExpireResult {
    let mut result = ExpireResult::default();
    for order in swept {
        let ids = match order.outcome {
            SweepDecision::Expired => &mut result.expired_order_ids,
            SweepDecision::Declined => &mut result.released_order_ids,
            SweepDecision::Fulfilled => &mut result.fulfilled_order_ids,
            SweepDecision::Kept => continue,
        };
        ids.push(order.order_id);
    }
    result
}

/// An entry handed to a consumer, as the embedded bus carries it.
pub fn delivery(leased: &outbox::Delivery) -> Delivery {
    Delivery {
        delivery_id: leased.seq,
        lease_token: leased.token.clone(),
        attempt: leased.attempt,
        event: Event::from_record(&leased.event),
    }
}

/// A dead letter, for an operator.
pub fn dead_letter(letter: &outbox::DeadLetter) -> DeadLetter {
    DeadLetter {
        delivery_id: letter.seq,
        consumer: letter.consumer.as_str().to_owned(),
        deliveries: letter.deliveries,
        rejections: letter.rejections,
        dead_at: stockroom_contract::format_time(letter.dead_at_ms),
        event: Event::from_record(&letter.event),
    }
}

/// The provider's verdict on one charge.
pub fn verdict(verdict: Verdict) -> ProviderVerdict {
    ProviderVerdict {
        charge_key: verdict.charge_key,
        approved: verdict.approved,
        requests: verdict.requests,
    }
}

/// What the provider's ledger holds.
pub fn provider_stats(stats: LedgerStats) -> ProviderStats {
    ProviderStats {
        charged: stats.charged,
        declined: stats.declined,
        repeated_requests: stats.repeated_requests,
        orders_charged_twice: stats.orders_charged_twice,
    }
}
