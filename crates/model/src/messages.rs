//! What the model's services say to each other: the HTTP calls of the real
//! system, one message per request and one per answer. Each call between a
//! consumer and data-service carries a [`CallTag`], so that an answer that
//! arrives after its caller gave up (or restarted) is recognised and dropped,
//! as a real client drops the answer on a connection it closed.

use std::fmt;

use stockroom_domain::Consumer;

/// Which call, of which worker of which incarnation of a service, an answer
/// belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallTag {
    pub worker: u8,
    /// The caller's incarnation: one more at each restart.
    pub boot: u8,
    /// The caller's calls since it started, this one included.
    pub seq: u8,
}

/// What a client was answered when it placed an order.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PlaceAnswer {
    /// 201: the order with this id is reserved.
    Reserved(String),
    /// 409: the order with this id was rejected for want of stock.
    Rejected(String),
    /// 4xx: refused outright; trying again cannot help.
    Refused,
    /// 503: the call failed inside the system; the client tries again.
    Failed,
}

/// What a client was answered when it cancelled.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CancelAnswer {
    Released,
    AlreadyCancelled,
    NotCancellable,
    Unknown,
    Failed,
}

/// How a consumer settles a delivery: the outbox's three outcomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    Acknowledge,
    Release,
    Reject,
}

/// What a delivered event asks its consumer to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventStep {
    /// `OrderReserved`: charge the order.
    Pay,
    /// `PaymentSucceeded`: sell the reserved units.
    Commit,
    /// `PaymentFailed`: put the reserved units back on sale.
    Release,
}

/// One outbox entry handed to a consumer under a lease.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryNote {
    pub seq: i64,
    pub token: String,
    pub order_id: String,
    pub event_id: String,
    pub step: EventStep,
}

/// A consumer's or the sweeper's call to data-service.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Request {
    Lease(Consumer),
    Finish {
        consumer: Consumer,
        outcome: Outcome,
        seq: i64,
        token: String,
    },
    /// A charge at the provider, keyed by the order: the first verdict stands.
    Charge {
        order_id: String,
        approved: bool,
    },
    RecordPayment {
        order_id: String,
        event_id: String,
        approved: bool,
    },
    Settle {
        order_id: String,
        event_id: String,
        step: EventStep,
    },
    Sweep,
}

/// What an event did, as data-service answers a payment or a settlement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EffectNote {
    Applied,
    Duplicate,
    NotApplicable,
    UnknownOrder,
    /// The stored order contradicts the stock: never for Stockroom's rules.
    Inconsistent,
}

/// data-service's answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reply {
    Leased(DeliveryNote),
    Finished(u8),
    Verdict(bool),
    Effect(EffectNote),
    Swept(u8),
    /// Refused outright (a 4xx): the delivery is poison.
    Refused,
    /// The call's writes found their rows changed (a 5xx): tried again later.
    Failed,
}

/// Every message of the model.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Msg {
    /// A client places its order number `order` (its idempotency key), for
    /// the `attempt`-th time.
    Place {
        client: u8,
        order: u8,
        attempt: u8,
    },
    Placed {
        order: u8,
        attempt: u8,
        answer: PlaceAnswer,
    },
    Cancel {
        client: u8,
        order: u8,
        order_id: String,
    },
    CancelAnswered {
        order: u8,
        answer: CancelAnswer,
    },
    /// order-service's reservation call; it keeps nothing, so the call
    /// carries where the answer goes, and order-service's incarnation.
    Reserve {
        client: u8,
        order: u8,
        attempt: u8,
        boot: u8,
    },
    ReserveAnswered {
        client: u8,
        order: u8,
        attempt: u8,
        boot: u8,
        answer: PlaceAnswer,
    },
    Release {
        client: u8,
        order: u8,
        order_id: String,
        boot: u8,
    },
    ReleaseAnswered {
        client: u8,
        order: u8,
        boot: u8,
        answer: CancelAnswer,
    },
    Call {
        tag: CallTag,
        request: Request,
    },
    Answer {
        tag: CallTag,
        reply: Reply,
    },
}

impl fmt::Display for Msg {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Msg::Place {
                client,
                order,
                attempt,
            } => write!(
                formatter,
                "POST /api/orders (customer c{client}, key k{order}, attempt {attempt})"
            ),
            Msg::Placed { order, answer, .. } => write!(formatter, "key k{order}: {answer:?}"),
            Msg::Cancel { order_id, .. } => write!(formatter, "cancel {order_id}"),
            Msg::CancelAnswered { answer, .. } => write!(formatter, "cancel: {answer:?}"),
            Msg::Reserve {
                client,
                order,
                attempt,
                ..
            } => write!(
                formatter,
                "reserve {} (customer c{client}, key k{order})",
                crate::service::order_id(*client, *order, *attempt)
            ),
            Msg::ReserveAnswered { answer, .. } => write!(formatter, "reservation: {answer:?}"),
            Msg::Release { order_id, .. } => write!(formatter, "release {order_id}"),
            Msg::ReleaseAnswered { answer, .. } => write!(formatter, "release: {answer:?}"),
            Msg::Call { request, .. } => write!(formatter, "{request:?}"),
            Msg::Answer { reply, .. } => write!(formatter, "{reply:?}"),
        }
    }
}
