//! The original system's storage: two JSON files rewritten whole, in place.
//!
//! WRONG ON PURPOSE. There is no lock, so two read-modify-write cycles
//! overwrite each other; and a write truncates the file and then writes it in
//! [`WRITE_CHUNKS`] chunks, pausing between them when the torn-write window is
//! open, so a concurrent reader sees a truncated document ("unexpected end of
//! JSON input") and two concurrent writers interleave their bytes (see
//! [`JsonFiles`]'s `save` for how the window is narrowed when closed). The fixed
//! system's answer is a database with transactions; the original authors'
//! was a lock plus write-to-temporary-and-rename, which the fixes of
//! [`StorageDiscipline`] add on request (see [`crate::fix`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use stockroom_contract::{InventoryItem, Order, StockLine};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::NaiveError;
use crate::fix::StorageDiscipline;

/// The orders file's name in the data directory.
pub const ORDERS_FILE: &str = "orders.json";
/// The inventory file's name in the data directory.
pub const INVENTORY_FILE: &str = "inventory.json";

/// How many pieces an in-place rewrite is written in.
pub const WRITE_CHUNKS: usize = 4;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct OrdersFile {
    pub orders: Vec<Order>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct InventoryFile {
    pub inventory: Vec<InventoryItem>,
    /// Events whose stock effect is already in this file (the processed-events
    /// fix writes them with the effect).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processed_events: Vec<String>,
    /// The highest fencing token each product's stock was written with (the
    /// fencing fix refuses a lower one).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fencing_tokens: BTreeMap<String, u64>,
}

/// The most processed events the inventory file remembers; the oldest are
/// forgotten first, long after any redelivery of the lab's short runs.
pub const MAX_PROCESSED_EVENTS: usize = 100_000;

/// The inventory document that `stock` starts as.
pub fn inventory_from(stock: &[StockLine]) -> InventoryFile {
    let inventory = stock
        .iter()
        .map(|line| {
            let quantity = i64::try_from(line.quantity).unwrap_or(i64::MAX);
            InventoryItem {
                product_name: line.product_name.to_string(),
                quantity,
                reserved_quantity: 0,
                available: quantity,
                sold: 0,
                received: quantity,
                max_per_customer: None,
                low_stock_threshold: None,
                movement_seq: None,
            }
        })
        .collect();
    InventoryFile {
        inventory,
        ..InventoryFile::default()
    }
}

/// The two data files of one naive data-service.
#[derive(Debug, Clone)]
pub struct JsonFiles {
    directory: PathBuf,
    torn_write_ms: u64,
    discipline: StorageDiscipline,
    bytes: Arc<std::sync::Mutex<()>>,
    /// Taken around a whole read-modify-write cycle, per file.
    cycle_locks: Arc<[Arc<Mutex<()>>; 2]>,
    /// Taken around a physical write only (fix 1 as written), per file.
    write_locks: Arc<[Mutex<()>; 2]>,
}

fn lock_index(name: &str) -> usize {
    usize::from(name == INVENTORY_FILE)
}

impl JsonFiles {
    pub fn new(directory: &Path, torn_write_ms: u64) -> JsonFiles {
        JsonFiles {
            directory: directory.to_owned(),
            torn_write_ms,
            discipline: StorageDiscipline::InPlace,
            bytes: Arc::new(std::sync::Mutex::new(())),
            cycle_locks: Arc::new([Arc::new(Mutex::new(())), Arc::new(Mutex::new(()))]),
            write_locks: Arc::new([Mutex::new(()), Mutex::new(())]),
        }
    }

    /// The same files, read and written with `discipline`.
    pub fn with_discipline(mut self, discipline: StorageDiscipline) -> JsonFiles {
        self.discipline = discipline;
        self
    }

    pub fn discipline(&self) -> StorageDiscipline {
        self.discipline
    }

    /// Takes `name`'s read-modify-write lock, held until the guard drops.
    pub async fn lock_cycle(&self, name: &str) -> OwnedMutexGuard<()> {
        Arc::clone(&self.cycle_locks[lock_index(name)])
            .lock_owned()
            .await
    }

    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// Writes the stock and an empty orders file when `fresh` or when no
    /// inventory file exists yet.
    pub async fn initialize(&self, stock: &[StockLine], fresh: bool) -> Result<(), NaiveError> {
        std::fs::create_dir_all(&self.directory).map_err(|source| NaiveError::Io {
            file: self.directory.display().to_string(),
            source,
        })?;
        if !fresh && self.directory.join(INVENTORY_FILE).exists() {
            return Ok(());
        }
        self.save_inventory(&inventory_from(stock)).await?;
        self.save_orders(&OrdersFile::default()).await
    }

    pub async fn load_orders(&self) -> Result<OrdersFile, NaiveError> {
        self.load(ORDERS_FILE)
    }

    pub async fn save_orders(&self, orders: &OrdersFile) -> Result<(), NaiveError> {
        self.save(ORDERS_FILE, orders).await
    }

    pub async fn load_inventory(&self) -> Result<InventoryFile, NaiveError> {
        self.load(INVENTORY_FILE)
    }

    pub async fn save_inventory(&self, inventory: &InventoryFile) -> Result<(), NaiveError> {
        self.save(INVENTORY_FILE, inventory).await
    }

    /// Held around a physical read or write only when the torn-write window
    /// is closed; see `save`.
    fn bytes_lock(&self) -> Option<std::sync::MutexGuard<'_, ()>> {
        (self.torn_write_ms == 0).then(|| {
            self.bytes
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        })
    }

    fn load<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<T, NaiveError> {
        let path = self.directory.join(name);
        let bytes = {
            let _whole = self.bytes_lock();
            std::fs::read(&path)
        }
        .map_err(|source| NaiveError::Io {
            file: name.to_owned(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|error| NaiveError::Corrupted {
            file: name.to_owned(),
            message: if error.is_eof() {
                format!(
                    "unexpected end of JSON input ({} bytes): {error}",
                    bytes.len()
                )
            } else {
                error.to_string()
            },
        })
    }

    /// Rewrites the file in place: the original system's write, racy by
    /// design. With the torn-write window open it truncates the file and
    /// writes it in chunks, pausing between them, so readers and other
    /// writers see and make half-written files. With the window closed it
    /// overwrites the file from the start and cuts it to length while holding
    /// a short lock on the bytes alone (readers take it too): each physical
    /// read and write is then whole, so the lab can study the other races
    /// without every file tearing. The read-modify-write cycle around it stays
    /// unlocked, which is what the other races need.
    async fn save<T: Serialize>(&self, name: &str, document: &T) -> Result<(), NaiveError> {
        let bytes = serde_json::to_vec_pretty(document).map_err(NaiveError::Encode)?;
        match self.discipline {
            StorageDiscipline::LockedCycles => return self.replace_atomically(name, &bytes).await,
            StorageDiscipline::LockedWrites => {
                let _writing = self.write_locks[lock_index(name)].lock().await;
                return self.write_in_place(name, &bytes).await;
            }
            StorageDiscipline::InPlace
            | StorageDiscipline::ComparedCycles
            | StorageDiscipline::Sqlite => {}
        }
        self.write_in_place(name, &bytes).await
    }

    /// Writes a temporary file beside `name`, syncs it and renames it over
    /// `name`: a reader sees the old document or the new one, never half.
    async fn replace_atomically(&self, name: &str, bytes: &[u8]) -> Result<(), NaiveError> {
        let io_error = |source| NaiveError::Io {
            file: name.to_owned(),
            source,
        };
        let temporary = self
            .directory
            .join(format!(".{name}.{}.tmp", uuid::Uuid::now_v7()));
        let mut file = std::fs::File::create(&temporary).map_err(io_error)?;
        file.write_all(bytes).map_err(io_error)?;
        file.sync_all().map_err(io_error)?;
        std::fs::rename(&temporary, self.directory.join(name)).map_err(io_error)
    }

    async fn write_in_place(&self, name: &str, bytes: &[u8]) -> Result<(), NaiveError> {
        let io_error = |source| NaiveError::Io {
            file: name.to_owned(),
            source,
        };
        let torn = self.torn_write_ms > 0;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(torn)
            .open(self.directory.join(name))
            .map_err(io_error)?;
        if !torn {
            let _whole = self.bytes_lock();
            file.write_all(bytes).map_err(io_error)?;
            return file.set_len(bytes.len() as u64).map_err(io_error);
        }
        let chunk_size = bytes.len().div_ceil(WRITE_CHUNKS).max(1);
        for chunk in bytes.chunks(chunk_size) {
            file.write_all(chunk).map_err(io_error)?;
            // Another request runs here and finds half a file.
            tokio::time::sleep(Duration::from_millis(self.torn_write_ms)).await;
        }
        Ok(())
    }
}
