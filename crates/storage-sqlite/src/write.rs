//! The writer thread: every change to the database happens here, in batches.
//!
//! The writer takes whatever jobs are queued (up to the configured batch) and
//! applies them in one transaction with one disk flush. The jobs the rules
//! decide (reservations, payments, settlements, cancels, sweeps, restocks)
//! run together as one batch of the rules: loaded with a fixed number of
//! queries, decided in memory in arrival order, written with a fixed number
//! of statements. The bus's jobs (leases, acknowledgements, rejections,
//! redrives) run together the same way as one batch of the outbox. The rest
//! (the provider's charges, retention, the probe) follow, each in its own
//! savepoint. No caller hears "done" before the commit is on disk.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use rusqlite::Connection;
use stockroom_storage::batch::{Command, Needs, Reply, decide};
use stockroom_storage::bus::{OutboxCommand, OutboxReply};
use stockroom_storage::{
    Charge, InitialStock, Prune, Pruned, StorageError, Verdict, WriteCounters,
};
use tokio::sync::{mpsc, oneshot};

use crate::sql::Sql;
use crate::{WriterConfig, apply, bus, load, now_ms, provider, prune, read};

pub struct WriteJob {
    pub command: WriteCommand,
    pub reply: oneshot::Sender<Result<WriteReply, StorageError>>,
}

#[derive(Debug)]
pub enum WriteCommand {
    Rules(Command),
    Outbox(OutboxCommand),
    InitializeStock(Vec<InitialStock>),
    /// The simulated provider's charges.
    Charge(Vec<Charge>),
    /// Retention's deletions.
    Prune(Prune),
    /// Write and commit a marker: proves the write path works.
    Probe,
    /// Finish the queued jobs, then stop.
    Shutdown,
}

#[derive(Debug)]
pub enum WriteReply {
    Rules(Reply),
    Outbox(OutboxReply),
    Loaded(bool),
    Verdicts(Vec<Verdict>),
    Pruned(Pruned),
    Done,
}

type Replier = oneshot::Sender<Result<WriteReply, StorageError>>;

/// Runs until every sender is gone or a shutdown job arrives.
pub fn run_writer(
    mut connection: Connection,
    statements: Arc<AtomicU64>,
    counters: Arc<WriteCounters>,
    mut receiver: mpsc::Receiver<WriteJob>,
    config: WriterConfig,
) {
    let mut batch: Vec<WriteJob> = Vec::with_capacity(config.max_batch);
    loop {
        let Some(first) = receiver.blocking_recv() else {
            break;
        };
        batch.push(first);
        while batch.len() < config.max_batch {
            match receiver.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        counters.record_batch(batch.len());
        let stop = batch
            .iter()
            .any(|job| matches!(job.command, WriteCommand::Shutdown));
        // A bug that panics fails its batch, not the writer: the callers'
        // answers are dropped (they hear the batch failed), the transaction
        // is rolled back, and the next batch is written as usual.
        let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            apply_batch(&mut connection, &statements, &mut batch, config.notify)
        }));
        if applied.is_err() {
            batch.clear();
            let _ = connection.execute_batch("ROLLBACK");
            tracing::error!(
                "a write batch failed on a bug; its callers were answered with an error"
            );
        }
        if stop {
            break;
        }
    }
    // Dropping the connection closes the database; SQLite checkpoints the WAL
    // into the main file when its last connection closes.
    drop(connection);
}

/// The jobs of one batch, sorted by how they run.
#[derive(Default)]
struct Sorted {
    rules: Vec<Command>,
    rule_repliers: Vec<Replier>,
    outbox: Vec<OutboxCommand>,
    outbox_repliers: Vec<Replier>,
    others: Vec<(WriteCommand, Replier)>,
}

impl Sorted {
    fn of(batch: &mut Vec<WriteJob>) -> Sorted {
        let mut sorted = Sorted::default();
        for job in batch.drain(..) {
            match job.command {
                WriteCommand::Rules(command) => {
                    sorted.rules.push(command);
                    sorted.rule_repliers.push(job.reply);
                }
                WriteCommand::Outbox(command) => {
                    sorted.outbox.push(command);
                    sorted.outbox_repliers.push(job.reply);
                }
                other => sorted.others.push((other, job.reply)),
            }
        }
        sorted
    }

    fn repliers(self) -> impl Iterator<Item = Replier> {
        self.rule_repliers
            .into_iter()
            .chain(self.outbox_repliers)
            .chain(self.others.into_iter().map(|(_, reply)| reply))
    }
}

/// Applies every job of the batch in one transaction, then answers each
/// caller. A caller hears success only after the commit is on disk.
fn apply_batch(
    connection: &mut Connection,
    statements: &AtomicU64,
    batch: &mut Vec<WriteJob>,
    notify: bool,
) {
    let sorted = Sorted::of(batch);
    let sql = Sql::new(connection, statements);
    if let Err(error) = sql.batch("BEGIN IMMEDIATE") {
        for reply in sorted.repliers() {
            let _ = reply.send(Err(error.clone()));
        }
        return;
    }
    let mut answers: Vec<(Replier, Result<WriteReply, StorageError>)> = Vec::new();
    if !sorted.rules.is_empty() {
        let replies = in_savepoint(sql, |sql| run_rules(sql, &sorted.rules, notify));
        answer_each(
            &mut answers,
            sorted.rule_repliers,
            replies,
            WriteReply::Rules,
        );
    }
    if !sorted.outbox.is_empty() {
        let replies = in_savepoint(sql, |sql| bus::run(sql, sorted.outbox, now_ms()));
        answer_each(
            &mut answers,
            sorted.outbox_repliers,
            replies.map(|replies| replies.into_iter().map(Ok).collect()),
            WriteReply::Outbox,
        );
    }
    for (command, reply) in sorted.others {
        answers.push((
            reply,
            in_savepoint(sql, |sql| apply_other(sql, command, notify)),
        ));
    }
    let commit = sql.batch("COMMIT").map_err(|error| {
        // A failed COMMIT leaves the transaction open in some cases (a busy
        // database); roll it back so the next batch starts clean.
        let _ = sql.batch("ROLLBACK");
        commit_failed(error)
    });
    for (reply, answer) in answers {
        let answer = match &commit {
            Ok(()) => answer,
            Err(error) => Err(error.clone()),
        };
        let _ = reply.send(answer);
    }
}

/// What every caller of a batch hears when its COMMIT failed. The outcome is
/// not known: in WAL mode a commit that failed while writing its frames (a
/// full disk, an I/O error) may still be found complete by the recovery at
/// the next open, so "nothing was written" would be a promise SQLite does not
/// make. A caller retries with the same idempotency key, which returns the
/// order if it was stored and stores it once if it was not.
fn commit_failed(error: StorageError) -> StorageError {
    tracing::error!(
        error = &error as &dyn std::error::Error,
        "a write batch's commit failed; its outcome is unknown"
    );
    StorageError::OutcomeUnknown {
        source: stockroom_storage::cause(error),
    }
}

/// Pairs each caller with its own reply, or with the error that failed the
/// whole group.
fn answer_each<T>(
    answers: &mut Vec<(Replier, Result<WriteReply, StorageError>)>,
    repliers: Vec<Replier>,
    replies: Result<Vec<Result<T, StorageError>>, StorageError>,
    wrap: impl Fn(T) -> WriteReply,
) {
    match replies {
        Ok(replies) => answers.extend(
            repliers
                .into_iter()
                .zip(replies)
                .map(|(reply, answer)| (reply, answer.map(&wrap))),
        ),
        Err(error) => answers.extend(
            repliers
                .into_iter()
                .map(|reply| (reply, Err(error.clone()))),
        ),
    }
}

/// Runs `work` inside a savepoint, which it undoes when `work` fails.
fn in_savepoint<T>(
    sql: Sql<'_>,
    work: impl FnOnce(Sql<'_>) -> Result<T, StorageError>,
) -> Result<T, StorageError> {
    sql.batch("SAVEPOINT job")?;
    let result = work(sql);
    let end = if result.is_ok() {
        "RELEASE job"
    } else {
        "ROLLBACK TO job; RELEASE job"
    };
    sql.batch(end)?;
    result
}

/// Loads what the commands touch, decides them, and writes the decisions.
/// The outer error means nothing of the batch can be written; the inner ones
/// are each command's own answer.
fn run_rules(
    sql: Sql<'_>,
    commands: &[Command],
    notify: bool,
) -> Result<Vec<Result<Reply, StorageError>>, StorageError> {
    let now = now_ms();
    let mut needs = Needs::of(commands, now);
    let book = load::load(sql, &mut needs, now, notify)?;
    let (answers, writes) = decide(book, commands, &needs);
    apply::apply(sql, &writes)?;
    answers
        .into_iter()
        .map(|answer| match answer {
            Ok(answer) => {
                let order = match answer.order_needed() {
                    Some(order_id) => read::order(sql, order_id)?,
                    None => None,
                };
                Ok(answer.into_reply(order))
            }
            Err(error) => Ok(Err(error)),
        })
        .collect()
}

fn apply_other(
    sql: Sql<'_>,
    command: WriteCommand,
    notify: bool,
) -> Result<WriteReply, StorageError> {
    match command {
        WriteCommand::InitializeStock(lines) => {
            initialize_stock(sql, lines, notify).map(WriteReply::Loaded)
        }
        WriteCommand::Prune(rules) => prune::prune(sql, rules).map(WriteReply::Pruned),
        WriteCommand::Charge(charges) => {
            provider::charge(sql, &charges, now_ms()).map(WriteReply::Verdicts)
        }
        WriteCommand::Probe => sql
            .execute(
                "INSERT INTO meta (key, value) VALUES ('health_probe', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [now_ms().to_string()],
            )
            .map(|_| WriteReply::Done),
        WriteCommand::Shutdown => Ok(WriteReply::Done),
        WriteCommand::Rules(_) | WriteCommand::Outbox(_) => {
            unreachable!("rule and outbox commands run as batches of their own")
        }
    }
}

/// Loads the initial stock once: the first start claims the `stock_loaded`
/// marker and restocks every line through the rules.
fn initialize_stock(
    sql: Sql<'_>,
    lines: Vec<InitialStock>,
    notify: bool,
) -> Result<bool, StorageError> {
    let claimed = sql.execute(
        "INSERT INTO meta (key, value) VALUES ('stock_loaded', ?1) ON CONFLICT (key) DO NOTHING",
        [now_ms().to_string()],
    )?;
    if claimed == 0 {
        return Ok(false);
    }
    let commands: Vec<Command> = lines
        .into_iter()
        .map(|line| Command::Restock {
            product: line.product,
            quantity: line.quantity,
        })
        .collect();
    for reply in run_rules(sql, &commands, notify)? {
        reply?;
    }
    Ok(true)
}
