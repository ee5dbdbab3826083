//! One run at a time of a long task (a flash sale, a race-lab run), and its
//! status, shared by the handlers that start it and the collector that shows
//! it. The task runs on its own; the dashboard aborts it when it stops.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use serde::Serialize;
use tokio::task::AbortHandle;

/// Where a control stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Nothing has run yet.
    Idle,
    Running,
    /// The last run ended with its result.
    Finished,
    /// The last run could not finish; its status says why.
    Failed,
}

/// The status of the current or last run, and its task while it runs.
pub(crate) struct Slot<S> {
    pub status: S,
    started: Option<Instant>,
    task: Option<AbortHandle>,
}

impl<S> Slot<S> {
    /// Whether a task is under way.
    pub fn busy(&self) -> bool {
        self.task.is_some()
    }

    /// Runs `work` as this slot's task, and returns when it started
    /// (RFC 3339).
    pub fn begin(&mut self, work: impl Future<Output = ()> + Send + 'static) -> String {
        self.started = Some(Instant::now());
        self.task = Some(tokio::spawn(work).abort_handle());
        humantime::format_rfc3339_millis(SystemTime::now()).to_string()
    }

    /// Marks the task over (it is finishing) and returns how long it ran.
    pub fn end(&mut self) -> u64 {
        self.task = None;
        self.elapsed_ms()
    }

    /// Milliseconds since the last run started.
    pub fn elapsed_ms(&self) -> u64 {
        self.started
            .map_or(0, |started| started.elapsed().as_millis() as u64)
    }
}

/// A slot shared between handlers and the collector. Cloning shares it.
pub(crate) struct Job<S> {
    slot: Arc<Mutex<Slot<S>>>,
}

impl<S> Clone for Job<S> {
    fn clone(&self) -> Self {
        Job {
            slot: Arc::clone(&self.slot),
        }
    }
}

impl<S> Job<S> {
    pub fn new(status: S) -> Job<S> {
        Job {
            slot: Arc::new(Mutex::new(Slot {
                status,
                started: None,
                task: None,
            })),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Slot<S>> {
        // The slot holds plain values; one left by a panic is still readable.
        self.slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Stops the task under way, if any (the dashboard is shutting down).
    pub fn abort(&self) {
        if let Some(task) = self.lock().task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slot_is_busy_from_begin_to_end_and_abort_stops_its_task() {
        let job = Job::new(0u32);
        assert!(!job.lock().busy());
        let (sender, receiver) = tokio::sync::oneshot::channel::<()>();
        job.lock().begin(async move {
            let _ = receiver.await;
        });
        assert!(job.lock().busy());
        job.abort();
        assert!(!job.lock().busy());
        // The aborted task dropped its receiver: the channel is closed.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(sender.is_closed());
        job.lock().begin(async {});
        job.lock().end();
        assert!(!job.lock().busy());
    }
}
