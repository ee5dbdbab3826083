//! The storage calls data-service makes of the documents it receives: the
//! one place where the wire form of a request meets the storage's records.

use stockroom_contract::{
    PaymentRecord, ProviderCharge, Receipt, ReserveRequest, Settlement, SettlementAction,
};
use stockroom_domain::outbox;
use stockroom_domain::rules::Settle;
use stockroom_storage::Charge;
use stockroom_storage::batch::{PaymentVerdict, Reservation, SettlementCall};

pub fn reservation(request: ReserveRequest) -> Reservation {
    Reservation {
        order_id: request.order_id,
        customer_id: request.customer_id,
        items: request.items,
        idempotency_key: request.idempotency_key,
        fingerprint: request.request_fingerprint,
        trace_parent: request.trace_parent,
    }
}

pub fn payment(record: PaymentRecord) -> PaymentVerdict {
    PaymentVerdict {
        order_id: record.order_id,
        event_id: record.event_id,
        approved: record.approved,
        trace_parent: record.trace_parent,
    }
}

pub fn settlement(settlement: Settlement) -> SettlementCall {
    SettlementCall {
        order_id: settlement.order_id,
        event_id: settlement.event_id,
        action: match settlement.action {
            SettlementAction::Commit => Settle::Commit,
            SettlementAction::Release => Settle::Release,
        },
    }
}

pub fn receipt(receipt: Receipt) -> outbox::Receipt {
    outbox::Receipt {
        seq: receipt.delivery_id,
        token: receipt.lease_token,
    }
}

pub fn charge(charge: ProviderCharge) -> Charge {
    Charge {
        charge_key: charge.charge_key,
        order_id: charge.order_id,
        units: charge.units,
        approved: charge.approved,
    }
}
