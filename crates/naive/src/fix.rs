//! The fixes the original authors proposed, as options of the naive system:
//! a pure choice of strategy, one question per concern, that the data-service,
//! the worker and the order-service ask.
//!
//! Each fix is applied alone to the original system, "as written" in its
//! write-up, plus the corrected form where the written one leaves a race open.
//! The race lab runs every scenario against every fix and reports which hold.

/// One proposed fix (or none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Fix {
    /// The original system as it was.
    #[default]
    None,
    /// Fix 1 as written: `lock; writeFile; release`. Loads stay outside the
    /// lock and readers never take it.
    FileLockOnWrite,
    /// Fix 1 corrected: every read-modify-write cycle under the file's lock,
    /// and every save written to a temporary file, synced and renamed over.
    LockedAtomicReplace,
    /// Fix 2 as written: the version is compared in memory, between an
    /// unlocked load and a whole-file save.
    VersionInMemory,
    /// Fix 2 corrected: the version is compared and the change written in one
    /// step (compare-and-swap), and a stock write compares the item it read.
    VersionCompareAndSwap,
    /// Fix 3 as written: the reservation checks a fresh read and writes under
    /// one lock; nothing else changes.
    CheckAndReserveUnderLock,
    /// Fix 4 as written: SQLite instead of the files, each request one
    /// deferred transaction.
    SqliteTransaction,
    /// Fix 5 as written: the publisher takes a Redis lock, publishes, and then
    /// marks the message as sent; consumers are unchanged.
    RedisPublisherDedupe,
    /// Fix 5 corrected: the consumer records the event it processed in the
    /// same write as its effect, so a second delivery has none.
    ProcessedEventsRecord,
    /// The production story's lock alone: a Redis lock (timeout and retry)
    /// around the worker's check-then-update, payment inside the lock.
    RedisLock,
    /// The same lock, with a fencing token that storage checks on every stock
    /// write, so a holder whose lock ran out cannot write any more.
    RedisLockFencing,
    /// The production story's deployed fix: the Redis lock around a
    /// conditional update (`UPDATE … WHERE stock >= q`), payment inside.
    RedisLockConditionalUpdate,
}

/// How the data-service reads and writes its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageDiscipline {
    /// Unlocked, rewritten in place: the original.
    InPlace,
    /// Each physical write under the file's lock, rewritten in place.
    LockedWrites,
    /// Each request's whole read-modify-write under the file's lock, saved by
    /// temporary file, fsync and rename.
    LockedCycles,
    /// Each write's fresh read, comparison and save under the file's lock,
    /// rewritten in place; the reads a request decides on stay outside it.
    ComparedCycles,
    /// An SQLite database, each request one deferred transaction.
    Sqlite,
}

/// How a status change or an order replacement checks the order's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionCheck {
    /// Not at all.
    None,
    /// Against the copy just loaded, before a later whole-file save.
    InMemory,
    /// Against a fresh read under the lock, in the same step as the write.
    CompareAndSwap,
}

/// The lock the worker takes around one order's flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerLock {
    /// A Redis lock with a timeout; the flow inside is the original's.
    Plain,
    /// The same, and every stock write carries the lock's fencing token.
    Fenced,
    /// The same lock, and the stock is reserved by a conditional update
    /// before the payment.
    ConditionalUpdate,
}

impl Fix {
    /// Every fix, in the order the lab prints them.
    pub const ALL: [Fix; 12] = [
        Fix::None,
        Fix::FileLockOnWrite,
        Fix::LockedAtomicReplace,
        Fix::VersionInMemory,
        Fix::VersionCompareAndSwap,
        Fix::CheckAndReserveUnderLock,
        Fix::SqliteTransaction,
        Fix::RedisPublisherDedupe,
        Fix::ProcessedEventsRecord,
        Fix::RedisLock,
        Fix::RedisLockFencing,
        Fix::RedisLockConditionalUpdate,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fix::None => "no-fix",
            Fix::FileLockOnWrite => "file-lock-on-write",
            Fix::LockedAtomicReplace => "locked-atomic-replace",
            Fix::VersionInMemory => "version-in-memory",
            Fix::VersionCompareAndSwap => "version-compare-and-swap",
            Fix::CheckAndReserveUnderLock => "check-and-reserve-under-lock",
            Fix::SqliteTransaction => "sqlite-transaction",
            Fix::RedisPublisherDedupe => "redis-publisher-dedupe",
            Fix::ProcessedEventsRecord => "processed-events-record",
            Fix::RedisLock => "redis-lock",
            Fix::RedisLockFencing => "redis-lock-fencing",
            Fix::RedisLockConditionalUpdate => "redis-lock-conditional-update",
        }
    }

    /// Where the fix comes from: the write-up and whether it is as written.
    pub fn source(self) -> &'static str {
        match self {
            Fix::None => "the original system",
            Fix::FileLockOnWrite => "000 fix 1, as written",
            Fix::LockedAtomicReplace => "000 fix 1, corrected",
            Fix::VersionInMemory => "000 fix 2, as written",
            Fix::VersionCompareAndSwap => "000 fix 2, corrected",
            Fix::CheckAndReserveUnderLock => "000 fix 3, as written",
            Fix::SqliteTransaction => "000 fix 4, as written",
            Fix::RedisPublisherDedupe => "000 fix 5, as written",
            Fix::ProcessedEventsRecord => "000 fix 5, corrected",
            Fix::RedisLock => "001 lock alone, as described",
            Fix::RedisLockFencing => "001 lock alone, corrected (fencing)",
            Fix::RedisLockConditionalUpdate => "001 deployed fix",
        }
    }

    pub fn storage(self) -> StorageDiscipline {
        match self {
            Fix::FileLockOnWrite => StorageDiscipline::LockedWrites,
            Fix::LockedAtomicReplace => StorageDiscipline::LockedCycles,
            Fix::VersionCompareAndSwap => StorageDiscipline::ComparedCycles,
            Fix::SqliteTransaction => StorageDiscipline::Sqlite,
            _ => StorageDiscipline::InPlace,
        }
    }

    pub fn version_check(self) -> VersionCheck {
        match self {
            Fix::VersionInMemory => VersionCheck::InMemory,
            Fix::VersionCompareAndSwap => VersionCheck::CompareAndSwap,
            _ => VersionCheck::None,
        }
    }

    /// Whether the worker's reserve call checks the stock and reserves in one
    /// locked step (or transaction) with a fresh read: the write-ups that
    /// rewrote `reserveStock` (fixes 3 and 4, and the deployed conditional
    /// update).
    pub fn checked_reserve(self) -> bool {
        matches!(
            self,
            Fix::CheckAndReserveUnderLock
                | Fix::SqliteTransaction
                | Fix::RedisLockConditionalUpdate
        )
    }

    /// Whether the consumer writes a processed-event record with its effect.
    pub fn processed_events(self) -> bool {
        self == Fix::ProcessedEventsRecord
    }

    /// Whether the publisher de-duplicates its messages in Redis.
    pub fn publisher_dedupe(self) -> bool {
        self == Fix::RedisPublisherDedupe
    }

    pub fn worker_lock(self) -> Option<WorkerLock> {
        match self {
            Fix::RedisLock => Some(WorkerLock::Plain),
            Fix::RedisLockFencing => Some(WorkerLock::Fenced),
            Fix::RedisLockConditionalUpdate => Some(WorkerLock::ConditionalUpdate),
            _ => None,
        }
    }

    /// Whether the fix needs a Redis server.
    pub fn needs_redis(self) -> bool {
        self.publisher_dedupe() || self.worker_lock().is_some()
    }
}

impl std::str::FromStr for Fix {
    type Err = stockroom_domain::UnknownName;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        stockroom_domain::UnknownName::find("fix", &Fix::ALL, Fix::name, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fix_parses_back_from_its_name() {
        for fix in Fix::ALL {
            assert_eq!(fix.name().parse::<Fix>(), Ok(fix));
        }
        assert!("no-such-fix".parse::<Fix>().is_err());
    }

    #[test]
    fn only_the_redis_rows_need_redis() {
        let needing: Vec<Fix> = Fix::ALL
            .into_iter()
            .filter(|fix| fix.needs_redis())
            .collect();
        assert_eq!(
            needing,
            [
                Fix::RedisPublisherDedupe,
                Fix::RedisLock,
                Fix::RedisLockFencing,
                Fix::RedisLockConditionalUpdate
            ]
        );
    }

    #[test]
    fn the_original_system_fixes_nothing() {
        let none = Fix::None;
        assert_eq!(none.storage(), StorageDiscipline::InPlace);
        assert_eq!(none.version_check(), VersionCheck::None);
        assert!(!none.checked_reserve() && !none.processed_events() && !none.publisher_dedupe());
        assert_eq!(none.worker_lock(), None);
    }
}
