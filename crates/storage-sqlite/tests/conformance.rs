//! Runs the storage conformance suite against the SQLite backend, each test
//! on a fresh database in its own temporary directory.

use std::future::Future;
use std::sync::Arc;

use stockroom_storage::Maintenance;
use stockroom_storage::testing::TestStorage;
use stockroom_storage_sqlite::{SqliteStorage, WriterConfig};

/// Makes a fresh database, runs one conformance test on it, then closes the
/// database and removes the directory (also when the test fails).
async fn run<F, Fut>(name: &'static str, test: F)
where
    F: FnOnce(Arc<dyn TestStorage>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let directory = tempfile::Builder::new()
        .prefix(&format!("stockroom-conformance-{name}-"))
        .tempdir()
        .expect("create a temporary directory");
    let storage = Arc::new(
        SqliteStorage::open_in_directory(directory.path(), WriterConfig::default())
            .expect("open a fresh sqlite database"),
    );
    // The test runs as its own task so that a panic in it still lets the
    // database close cleanly before the failure is reported.
    let outcome = tokio::spawn(test(Arc::clone(&storage) as Arc<dyn TestStorage>)).await;
    storage.close().await;
    drop(directory);
    if let Err(error) = outcome {
        if error.is_panic() {
            std::panic::resume_unwind(error.into_panic());
        }
        panic!("conformance test {name} was cancelled: {error}");
    }
}

stockroom_storage_conformance::conformance_tests!(run);
