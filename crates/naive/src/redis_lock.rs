//! The production story's distributed lock: a Redis key taken with
//! `SET NX PX` (a timeout, so a dead holder cannot block forever), retried
//! until it is free, released only by its holder. Each acquisition also draws
//! a fencing token, a number that only grows, which the fencing fix sends
//! with every stock write so that storage can refuse a holder whose lock ran
//! out while it was paused.

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

use crate::NaiveError;

/// How long a lock lives unless released: the story's lock timeout, scaled
/// to the lab's short runs (a payment slower than this outlives the lock).
/// Five times the lab's default race window, so that a holder slowed by a
/// busy machine still finishes a scenario's flow (a window and a few
/// requests) well inside it; only the lock-expiry scenario outlives it.
pub const LOCK_TIMEOUT_MS: u64 = 250;

const _: () = assert!(LOCK_TIMEOUT_MS >= 5 * crate::DEFAULT_RACE_WINDOW_MS);

/// The pause between two attempts to take a busy lock.
pub const LOCK_RETRY_MS: u64 = 2;

/// How long a worker keeps retrying before it gives the order up.
pub const LOCK_WAIT_MS: u64 = 30_000;

/// The longest a Redis connection attempt or command may take.
pub const REDIS_TIMEOUT_MS: u64 = 2_000;

/// Takes the lock and, only then, draws the next fencing token, in one step.
const ACQUIRE: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return redis.call('INCR', KEYS[2])
end
return false
";

/// Deletes the lock only if it is still this holder's.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
";

/// Connects to Redis and checks that it answers.
pub async fn connect_redis(url: &str) -> Result<MultiplexedConnection, NaiveError> {
    let redis_error = |source: redis::RedisError| NaiveError::RedisUnreachable {
        url: url.to_owned(),
        source,
    };
    let client = redis::Client::open(url).map_err(redis_error)?;
    let timeout = Some(Duration::from_millis(REDIS_TIMEOUT_MS));
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(timeout)
        .set_response_timeout(timeout);
    let mut connection = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(redis_error)?;
    redis::cmd("PING")
        .query_async::<String>(&mut connection)
        .await
        .map_err(redis_error)?;
    Ok(connection)
}

/// The locks of one naive system, under a key prefix of its own so that
/// systems sharing a Redis never meet.
#[derive(Clone)]
pub struct RedisLocks {
    connection: MultiplexedConnection,
    prefix: String,
}

impl std::fmt::Debug for RedisLocks {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RedisLocks")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// A lock this worker holds, and the fencing token it came with.
#[derive(Debug, Clone)]
pub struct HeldLock {
    key: String,
    owner: String,
    pub resource: String,
    pub token: u64,
}

impl RedisLocks {
    pub fn new(connection: MultiplexedConnection, prefix: &str) -> RedisLocks {
        RedisLocks {
            connection,
            prefix: prefix.to_owned(),
        }
    }

    /// Takes `resource`'s lock, retrying every [`LOCK_RETRY_MS`] for up to
    /// [`LOCK_WAIT_MS`].
    pub async fn acquire(&self, resource: &str) -> Result<HeldLock, NaiveError> {
        let key = format!("{}lock:{resource}", self.prefix);
        let fence = format!("{}fence:{resource}", self.prefix);
        let owner = uuid::Uuid::now_v7().to_string();
        let script = redis::Script::new(ACQUIRE);
        let deadline = Instant::now() + Duration::from_millis(LOCK_WAIT_MS);
        let mut connection = self.connection.clone();
        loop {
            let token: Option<u64> = script
                .key(&key)
                .key(&fence)
                .arg(&owner)
                .arg(LOCK_TIMEOUT_MS)
                .invoke_async(&mut connection)
                .await
                .map_err(NaiveError::Redis)?;
            if let Some(token) = token {
                return Ok(HeldLock {
                    key,
                    owner,
                    resource: resource.to_owned(),
                    token,
                });
            }
            if Instant::now() >= deadline {
                return Err(NaiveError::LockBusy {
                    resource: resource.to_owned(),
                });
            }
            tokio::time::sleep(Duration::from_millis(LOCK_RETRY_MS)).await;
        }
    }

    /// Releases `held` if it is still this holder's (it may have run out and
    /// gone to another worker meanwhile).
    pub async fn release(&self, held: &HeldLock) -> Result<(), NaiveError> {
        let mut connection = self.connection.clone();
        redis::Script::new(RELEASE)
            .key(&held.key)
            .arg(&held.owner)
            .invoke_async::<i64>(&mut connection)
            .await
            .map(|_| ())
            .map_err(NaiveError::Redis)
    }
}
