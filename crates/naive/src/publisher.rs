//! Fix 5 as written: the order-service de-duplicates what it publishes with
//! Redis. It takes a short lock on the message (`SET NX EX 10`), skips the
//! message if it is marked as sent, publishes, marks it as sent (`SETEX …
//! 300`) and releases the lock. Only the publisher is de-duplicated: a crash
//! between publishing and marking, or a broker redelivery to the consumer,
//! still delivers the message twice.

use std::future::Future;

use redis::aio::MultiplexedConnection;

use crate::NaiveError;

/// The message lock's lifetime: the write-up's 10 s, scaled to the lab's
/// short runs (the lab's restart after a crash outlasts it, as a real
/// restart outlasts 10 s).
pub const PUBLISH_LOCK_TTL_MS: u64 = 200;

/// How long a message stays marked as sent: the write-up's 300 s.
pub const SENT_MARK_TTL_S: u64 = 300;

/// What one publishing attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Sent, and marked as sent.
    Sent,
    /// Sent, and the publisher crashed before it could mark it.
    SentThenCrashed,
    /// Skipped: another attempt holds the lock or it is marked as sent.
    Skipped,
}

#[derive(Clone)]
pub struct PublishDedupe {
    connection: MultiplexedConnection,
    prefix: String,
}

impl std::fmt::Debug for PublishDedupe {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PublishDedupe")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn redis_error(error: redis::RedisError) -> NaiveError {
    NaiveError::Redis(error)
}

impl PublishDedupe {
    pub fn new(connection: MultiplexedConnection, prefix: &str) -> PublishDedupe {
        PublishDedupe {
            connection,
            prefix: prefix.to_owned(),
        }
    }

    /// Runs `publish` at most once per order, as the write-up does; with
    /// `crash_before_mark` the publisher dies right after publishing, before
    /// it marks the message or releases its lock.
    pub async fn publish_once<F>(
        &self,
        order_id: &str,
        publish: F,
        crash_before_mark: bool,
    ) -> Result<Published, NaiveError>
    where
        F: Future<Output = Result<(), NaiveError>>,
    {
        let message_key = format!("{}order:{order_id}:created", self.prefix);
        let lock_key = format!("lock:{message_key}");
        let mut connection = self.connection.clone();
        let acquired: Option<String> = redis::cmd("SET")
            .arg(&lock_key)
            .arg("1")
            .arg("PX")
            .arg(PUBLISH_LOCK_TTL_MS)
            .arg("NX")
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        if acquired.is_none() {
            return Ok(Published::Skipped);
        }
        let already: Option<String> = redis::cmd("GET")
            .arg(&message_key)
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        let outcome = if already.is_some() {
            Published::Skipped
        } else {
            publish.await?;
            if crash_before_mark {
                // The process dies here: no mark, and the lock is left to
                // run out.
                return Ok(Published::SentThenCrashed);
            }
            redis::cmd("SETEX")
                .arg(&message_key)
                .arg(SENT_MARK_TTL_S)
                .arg("1")
                .query_async::<()>(&mut connection)
                .await
                .map_err(redis_error)?;
            Published::Sent
        };
        redis::cmd("DEL")
            .arg(&lock_key)
            .query_async::<()>(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(outcome)
    }
}
