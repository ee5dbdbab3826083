//! The bus's errors: a source's or publisher's ([`BusError`]), a handler's
//! ([`HandlerError`]), and a consumer round's, which is either.

use stockroom_http_kit::ClientError;

/// Why the bus could not receive, settle or publish events. Each variant
/// keeps its cause as the source; the message says what was being done.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// data-service, which carries the embedded bus, failed to take a call.
    #[error("the embedded event bus is unavailable")]
    Embedded(#[from] ClientError),
    /// data-service, which keeps the events a consumer refused (whatever the
    /// bus), failed to take them; they go back to the queue meanwhile.
    #[error("cannot keep the refused events as dead letters")]
    DeadLetters(#[source] ClientError),
    /// The broker failed or could not be reached while doing `context`. The
    /// broker's own error is boxed so that this crate, and every consumer,
    /// stays free of the AMQP client.
    #[error("{context}")]
    Broker {
        context: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// The broker answered a publish with something other than a
    /// confirmation (a nack, or no confirm mode).
    #[error("the broker did not confirm event {event_id}: {answer}")]
    NotConfirmed { event_id: String, answer: String },
    /// An event could not be encoded for the broker.
    #[error("cannot encode event {event_id}")]
    Encode {
        event_id: String,
        #[source]
        source: serde_json::Error,
    },
}

impl BusError {
    /// A broker failure while doing `context`, for a `map_err`.
    pub fn broker<E>(context: &'static str) -> impl FnOnce(E) -> BusError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        move |source| BusError::Broker {
            context,
            source: Box::new(source),
        }
    }
}

/// Why a consumer's handler could not handle a batch. The batch is given
/// back and delivered again, so every variant is a passing condition;
/// poison is not an error but part of [`Handled`](crate::Handled).
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// A service the handler needs failed while it was doing `action`.
    #[error("cannot {action}")]
    Dependency {
        action: &'static str,
        #[source]
        source: ClientError,
    },
    /// A service answered a batch with a different number of results than
    /// the requests it was sent, so no answer can be matched to its event.
    #[error("{service} answered {answered} results for {sent} requests")]
    ResultCount {
        service: &'static str,
        sent: usize,
        answered: usize,
    },
    /// The service began to shut down while the batch was in hand.
    #[error("shutting down before the batch was handled")]
    ShuttingDown,
}

impl HandlerError {
    /// A dependency's failure while doing `action`, for a `map_err`.
    pub fn dependency(action: &'static str) -> impl FnOnce(ClientError) -> HandlerError {
        move |source| HandlerError::Dependency { action, source }
    }
}

/// Why a consumer's round failed: the source or the handler. Each says what
/// failed by itself, so this adds no words of its own.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RoundError {
    #[error(transparent)]
    Source(#[from] BusError),
    #[error(transparent)]
    Handler(#[from] HandlerError),
}
