//! A data directory held by one process at a time.
//!
//! SQLite lets any number of processes open one database file, so nothing
//! stopped a second `stockroom up` (or `serve data`) from opening a
//! directory another process serves, and `--fresh` deleted `stockroom.db`
//! under a running data-service, whose acknowledged orders were then lost at
//! its next restart. Whoever opens a data directory now first takes an
//! exclusive lock on its `stockroom.lock` (`flock`, released by the kernel
//! when the process ends, however it ends) and writes its process id and
//! command line there, so that a second process is refused with one line
//! naming the first. Deleting the database is a method of the held
//! directory, so a store that another process has open is never deleted.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use stockroom_storage::{StorageError, cause};

use crate::DATABASE_FILE_NAME;

/// The file inside the data directory whose lock says who holds it.
pub const LOCK_FILE_NAME: &str = "stockroom.lock";

/// The most bytes of the holder's description kept in the lock file and
/// read back: a process id and a command line, cut short.
pub const MAX_HOLDER_DESCRIPTION_BYTES: usize = 512;

/// A data directory this process holds the lock of. Dropping it releases
/// the lock.
#[derive(Debug)]
pub struct DataDirectory {
    path: PathBuf,
    /// Kept open: the lock lives as long as the file handle.
    _lock: File,
}

impl DataDirectory {
    /// Creates `path` if needed and takes its lock, or fails with
    /// [`StorageError::Unavailable`] naming the process that holds it.
    pub fn lock(path: &Path) -> Result<DataDirectory, StorageError> {
        std::fs::create_dir_all(path).map_err(|error| StorageError::Unavailable {
            context: format!("cannot create {}", path.display()),
            source: Some(cause(error)),
        })?;
        let lock_path = path.join(LOCK_FILE_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|error| StorageError::Unavailable {
                context: format!("cannot open {}", lock_path.display()),
                source: Some(cause(error)),
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StorageError::unavailable(format!(
                    "{} is in use by {}; stop it first, or give this one another --data-dir",
                    path.display(),
                    holder(&mut file)
                )));
            }
            Err(TryLockError::Error(error)) => {
                return Err(StorageError::Unavailable {
                    context: format!("cannot lock {}", lock_path.display()),
                    source: Some(cause(error)),
                });
            }
        }
        describe_this_process(&mut file).map_err(|error| StorageError::Unavailable {
            context: format!("cannot write {}", lock_path.display()),
            source: Some(cause(error)),
        })?;
        Ok(DataDirectory {
            path: path.to_owned(),
            _lock: file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The database file inside the directory.
    pub fn database_path(&self) -> PathBuf {
        self.path.join(DATABASE_FILE_NAME)
    }

    /// Deletes the database and its write-ahead log, for `--fresh`. Safe
    /// only because this process holds the directory: no other process has
    /// the database open, and this one has not opened it yet.
    pub fn remove_database(&self) -> Result<(), StorageError> {
        for suffix in ["", "-wal", "-shm"] {
            let path = self.path.join(format!("{DATABASE_FILE_NAME}{suffix}"));
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    return Err(StorageError::Unavailable {
                        context: format!("cannot remove {}", path.display()),
                        source: Some(cause(error)),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Writes this process's id and command line into the held lock file.
fn describe_this_process(file: &mut File) -> std::io::Result<()> {
    let command: Vec<String> = std::env::args().collect();
    let mut description = format!("process {} ({})", std::process::id(), command.join(" "));
    if description.len() > MAX_HOLDER_DESCRIPTION_BYTES {
        let mut end = MAX_HOLDER_DESCRIPTION_BYTES;
        while !description.is_char_boundary(end) {
            end -= 1;
        }
        description.truncate(end);
    }
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(description.as_bytes())?;
    file.sync_all()
}

/// What the holder wrote into the lock file, or a plain phrase when it wrote
/// nothing readable.
fn holder(file: &mut File) -> String {
    let mut bytes = Vec::with_capacity(MAX_HOLDER_DESCRIPTION_BYTES);
    let read = file
        .rewind()
        .and_then(|()| {
            file.take(MAX_HOLDER_DESCRIPTION_BYTES as u64)
                .read_to_end(&mut bytes)
        })
        .is_ok();
    match String::from_utf8(bytes) {
        Ok(text) if read && !text.trim().is_empty() => text.trim().to_owned(),
        _ => "another process".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_directory_is_refused_with_its_holder_and_released_on_drop() {
        let directory = tempfile::tempdir().unwrap();
        let held = DataDirectory::lock(directory.path()).unwrap();
        let refused = DataDirectory::lock(directory.path()).unwrap_err();
        let message = refused.to_string();
        assert!(message.contains("is in use by process"), "{message}");
        assert!(
            message.contains(&std::process::id().to_string()),
            "{message}"
        );
        drop(held);
        DataDirectory::lock(directory.path()).expect("free once dropped");
    }

    #[test]
    fn removing_the_database_leaves_the_lock() {
        let directory = tempfile::tempdir().unwrap();
        let held = DataDirectory::lock(directory.path()).unwrap();
        std::fs::write(held.database_path(), b"x").unwrap();
        held.remove_database().unwrap();
        assert!(!held.database_path().exists());
        assert!(directory.path().join(LOCK_FILE_NAME).exists());
    }
}
