//! Where the naive data-service keeps its two documents, and one request's
//! session over them: the JSON files (locked or not, as the fix says) or
//! SQLite (one transaction per session).
//!
//! A handler begins a session, loads, changes, saves and commits. Whether
//! anything stops another request in between is the fix's choice: nothing
//! (the original), the file's lock for the whole cycle, or a transaction.

use stockroom_contract::StockLine;
use tokio::sync::OwnedMutexGuard;

use crate::NaiveError;
use crate::files::{INVENTORY_FILE, InventoryFile, JsonFiles, ORDERS_FILE, OrdersFile};
use crate::fix::StorageDiscipline;
use crate::sqlite::{SqliteStore, SqliteTransaction};

/// One of the two documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Document {
    Orders,
    Inventory,
}

impl Document {
    fn file_name(self) -> &'static str {
        match self {
            Document::Orders => ORDERS_FILE,
            Document::Inventory => INVENTORY_FILE,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Store {
    Files(JsonFiles),
    Sqlite(SqliteStore),
}

impl Store {
    /// The files in `files`' directory, or SQLite there when the discipline
    /// says so.
    pub fn new(files: JsonFiles) -> Store {
        if files.discipline() == StorageDiscipline::Sqlite {
            Store::Sqlite(SqliteStore::new(files.directory()))
        } else {
            Store::Files(files)
        }
    }

    pub async fn initialize(&self, stock: &[StockLine], fresh: bool) -> Result<(), NaiveError> {
        match self {
            Store::Files(files) => files.initialize(stock, fresh).await,
            Store::Sqlite(database) => {
                database
                    .initialize(crate::files::inventory_from(stock), fresh)
                    .await
            }
        }
    }

    /// Begins a request's session: locked for the whole cycle only when the
    /// storage discipline locks cycles; a transaction on SQLite.
    pub async fn begin(&self, document: Document) -> Result<Session, NaiveError> {
        match self {
            Store::Files(files)
                if matches!(
                    files.discipline(),
                    StorageDiscipline::LockedCycles | StorageDiscipline::ComparedCycles
                ) =>
            {
                self.locked(document).await
            }
            Store::Files(_) => self.unlocked(),
            Store::Sqlite(database) => Ok(Session::Sqlite(database.begin().await?)),
        }
    }

    /// A session that takes no lock, over the files only (reads).
    pub fn unlocked(&self) -> Result<Session, NaiveError> {
        match self {
            Store::Files(files) => Ok(Session::Files {
                files: files.clone(),
                _cycle: None,
            }),
            Store::Sqlite(_) => Err(NaiveError::Invalid(
                "an unlocked session exists only over the files".into(),
            )),
        }
    }

    /// Begins a session that holds `document`'s lock (or a transaction)
    /// until it ends, whatever the discipline: the fixes that lock one
    /// operation ask for it.
    pub async fn locked(&self, document: Document) -> Result<Session, NaiveError> {
        match self {
            Store::Files(files) => Ok(Session::Files {
                files: files.clone(),
                _cycle: Some(files.lock_cycle(document.file_name()).await),
            }),
            Store::Sqlite(database) => Ok(Session::Sqlite(database.begin().await?)),
        }
    }
}

/// One request's reads and writes.
pub enum Session {
    Files {
        files: JsonFiles,
        _cycle: Option<OwnedMutexGuard<()>>,
    },
    Sqlite(SqliteTransaction),
}

impl Session {
    pub async fn load_orders(&mut self) -> Result<OrdersFile, NaiveError> {
        match self {
            Session::Files { files, .. } => files.load_orders().await,
            Session::Sqlite(transaction) => transaction.load_orders().await,
        }
    }

    pub async fn save_orders(&mut self, orders: OrdersFile) -> Result<(), NaiveError> {
        match self {
            Session::Files { files, .. } => files.save_orders(&orders).await,
            Session::Sqlite(transaction) => transaction.save_orders(orders).await,
        }
    }

    pub async fn load_inventory(&mut self) -> Result<InventoryFile, NaiveError> {
        match self {
            Session::Files { files, .. } => files.load_inventory().await,
            Session::Sqlite(transaction) => transaction.load_inventory().await,
        }
    }

    pub async fn save_inventory(&mut self, inventory: InventoryFile) -> Result<(), NaiveError> {
        match self {
            Session::Files { files, .. } => files.save_inventory(&inventory).await,
            Session::Sqlite(transaction) => transaction.save_inventory(inventory).await,
        }
    }

    /// Ends the session: commits the transaction, or releases the lock.
    pub async fn commit(self) -> Result<(), NaiveError> {
        match self {
            Session::Files { .. } => Ok(()),
            Session::Sqlite(transaction) => transaction.commit().await,
        }
    }
}
