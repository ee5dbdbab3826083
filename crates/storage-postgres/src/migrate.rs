//! Schema migrations, applied on every connect.
//!
//! `schema_migrations` records which versions a database has. Each migration
//! runs in one transaction together with its record, so it is applied whole
//! and once, or not at all. A transaction-scoped advisory lock makes data-service
//! instances that start at the same moment migrate one after the other.

use deadpool_postgres::Object;
use stockroom_storage::StorageError;

use crate::{Failure, now_ms};

/// One step of the schema's history. Versions only grow; a released
/// migration is never edited, a change is a new version.
struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial schema",
        sql: include_str!("migrations/0001_initial_schema.sql"),
    },
    Migration {
        version: 2,
        name: "rules engine: customer-scoped idempotency keys, list indexes",
        sql: include_str!("migrations/0002_rules_engine.sql"),
    },
    Migration {
        version: 3,
        name: "outbox trace context",
        sql: include_str!("migrations/0003_outbox_trace_context.sql"),
    },
    Migration {
        version: 4,
        name: "history in the order's row",
        sql: include_str!("migrations/0004_history_in_order_row.sql"),
    },
    Migration {
        version: 5,
        name: "idempotency keys keep the decision they replay",
        sql: include_str!("migrations/0005_keys_keep_decisions.sql"),
    },
    Migration {
        version: 6,
        name: "orders counted per status as written; retention indexes",
        sql: include_str!("migrations/0006_counters_and_retention.sql"),
    },
    Migration {
        version: 7,
        name: "shop operations: limits, thresholds, the stock ledger, holdings, operator keys, extensions, notices",
        sql: include_str!("migrations/0007_shop_operations.sql"),
    },
    Migration {
        version: 8,
        name: "room on order and outbox pages for heap-only updates; no index of charges by order",
        sql: include_str!("migrations/0008_room_for_updates.sql"),
    },
    Migration {
        version: 9,
        name: "fulfilled orders leave the status index; room on outbox pages for leases",
        sql: include_str!("migrations/0009_fewer_order_index_entries.sql"),
    },
    Migration {
        version: 10,
        name: "the outbox keeps a batch's events for one consumer in one row",
        sql: include_str!("migrations/0010_outbox_rows_by_batch.sql"),
    },
    Migration {
        version: 11,
        name: "settlements rewrite the order in place: the status indexed nowhere, reserved orders named in open_orders",
        sql: include_str!("migrations/0011_settlements_stay_on_the_page.sql"),
    },
    Migration {
        version: 12,
        name: "a product's last ledger row takes later movements while small, newest first",
        sql: include_str!("migrations/0012_ledger_rows_grow.sql"),
    },
    Migration {
        version: 13,
        name: "an open-orders row keeps the creation time of its oldest order",
        sql: include_str!("migrations/0013_open_orders_know_their_oldest.sql"),
    },
    Migration {
        version: 14,
        name: "outbox events and open-order ids are compressed with LZ4",
        sql: include_str!("migrations/0014_compressed_with_lz4.sql"),
    },
];

/// The advisory lock key migrations hold: the ASCII bytes of "Stockroo".
const MIGRATION_LOCK_KEY: i64 = 0x5374_6f63_6b72_6f6f;

pub(crate) async fn apply(client: &mut Object, schema: Option<&str>) -> Result<(), Failure> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    if let Some(schema) = schema {
        // The name was checked to be a plain lower-case identifier, so
        // quoting it cannot fail; quoting keeps keywords usable as names.
        // The connection's search_path already names the schema.
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
            .await?;
    }
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version       INTEGER PRIMARY KEY,
             name          TEXT NOT NULL,
             applied_at_ms BIGINT NOT NULL
         )",
    )
    .await?;
    let applied: Vec<i32> = tx
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    let newest_known = MIGRATIONS.iter().map(|migration| migration.version).max();
    if let (Some(&newest_applied), Some(newest_known)) = (applied.last(), newest_known)
        && newest_applied > newest_known
    {
        return Err(Failure::Storage(StorageError::Inconsistent(format!(
            "the database has schema version {newest_applied}, newer than the {newest_known} this build knows"
        ))));
    }
    for migration in MIGRATIONS {
        if applied.contains(&migration.version) {
            continue;
        }
        tx.batch_execute(migration.sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES ($1, $2, $3)",
            &[&migration.version, &migration.name, &now_ms()],
        )
        .await?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "postgres migration applied"
        );
    }
    tx.commit().await?;
    Ok(())
}
