//! Histories: every request the storm made and every reply it got, one JSON
//! object per line, in the shape Jepsen histories use.
//!
//! An operation is an `invoke` line followed by one completion with the same
//! `process`: `ok` (the order was acknowledged with a 2xx), `fail` (a definite
//! refusal such as 409 insufficient stock or a 4xx) or `info` (the outcome is
//! unknown: a timeout, a lost connection or a 5xx, so the order may or may
//! not exist). `time` is nanoseconds since the storm started.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The `f` of every storm operation.
pub const PLACE_ORDER: &str = "order";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// What an operation asked for and, on completion, what came of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpValue {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantity: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// The HTTP status of the last attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// `reserved`, `rejected`, `refused` or `error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The order's status as the reply stated it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// HTTP attempts made for this operation (retries included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
}

/// One line of a history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEvent {
    #[serde(rename = "type")]
    pub kind: EventType,
    pub process: u64,
    pub time: u64,
    pub f: String,
    pub value: OpValue,
}

/// Why a history file could not be written or read; the cause is the source.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot open history file {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write history file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("history file {path} line {line} is not a history event")]
    Parse {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
}

/// Appends events to a history file; shared by the storm's workers.
pub struct HistoryWriter {
    path: PathBuf,
    out: Mutex<BufWriter<File>>,
}

impl HistoryWriter {
    pub fn create(path: &Path) -> Result<HistoryWriter, HistoryError> {
        let file = File::create(path).map_err(|source| HistoryError::Open {
            path: path.to_owned(),
            source,
        })?;
        Ok(HistoryWriter {
            path: path.to_owned(),
            out: Mutex::new(BufWriter::new(file)),
        })
    }

    pub fn append(&self, event: &HistoryEvent) -> Result<(), HistoryError> {
        let mut line = serde_json::to_vec(event).expect("history events always serialise");
        line.push(b'\n');
        self.out
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .write_all(&line)
            .map_err(|source| HistoryError::Write {
                path: self.path.clone(),
                source,
            })
    }

    pub fn flush(&self) -> Result<(), HistoryError> {
        self.out
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .flush()
            .map_err(|source| HistoryError::Write {
                path: self.path.clone(),
                source,
            })
    }
}

/// Reads a history file written by [`HistoryWriter`] (blank lines skipped).
pub fn read_history(path: &Path) -> Result<Vec<HistoryEvent>, HistoryError> {
    let file = File::open(path).map_err(|source| HistoryError::Open {
        path: path.to_owned(),
        source,
    })?;
    let mut events = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| HistoryError::Open {
            path: path.to_owned(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let event = serde_json::from_str(&line).map_err(|source| HistoryError::Parse {
            path: path.to_owned(),
            line: index + 1,
            source,
        })?;
        events.push(event);
    }
    Ok(events)
}
