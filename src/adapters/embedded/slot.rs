//! The open database, closed and opened again after a storage failure.
//!
//! redb refuses every transaction after an I/O error (a full disk, a failing device) until the file
//! is closed and opened again, which also repairs it to its last durable commit. The writer thread
//! does that after a failed group (`Writer::recover`); reads take the current handle for the few
//! microseconds they need, and answer `Unavailable` in the moment it is being replaced.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use redb::{Database, DatabaseError};

use super::tables::unavailable;
use crate::service::StoreError;

/// How long a reopen waits for reads still holding the old handle.
const READS_TIMEOUT: Duration = Duration::from_secs(1);

pub(super) struct DbSlot {
    path: PathBuf,
    cache_size: usize,
    db: RwLock<Option<Arc<Database>>>,
}

impl DbSlot {
    /// Opens the file (creating it if needed).
    pub(super) fn open(path: &Path, cache_size: usize) -> Result<Self, StoreError> {
        let db = open_database(path, cache_size)?;
        Ok(Self {
            path: path.to_owned(),
            cache_size,
            db: RwLock::new(Some(Arc::new(db))),
        })
    }

    /// The open database, or `Unavailable` while it is being reopened.
    pub(super) fn current(&self) -> Result<Arc<Database>, StoreError> {
        self.db
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| {
                StoreError::Unavailable(
                    "embedded store: the database is being reopened after a storage failure".into(),
                )
            })
    }

    /// Whether the database is open.
    pub(super) fn is_open(&self) -> bool {
        self.db
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Closes the database once no read holds it (waiting at most [`READS_TIMEOUT`]) and opens it
    /// again. On failure the slot stays closed (or keeps the old handle, if reads held it) and the
    /// caller tries again later.
    /// `prepare` runs on the new handle before anything else can read it.
    pub(super) fn reopen(
        &self,
        prepare: impl FnOnce(&Database) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let taken = self
            .db
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut old) = taken {
            let deadline = Instant::now() + READS_TIMEOUT;
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(held) if Instant::now() >= deadline => {
                        *self.db.write().unwrap_or_else(PoisonError::into_inner) = Some(held);
                        return Err(StoreError::Unavailable(
                            "embedded store: reads still hold the database; reopening later".into(),
                        ));
                    }
                    Err(held) => {
                        old = held;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        }
        let db = open_database(&self.path, self.cache_size)?;
        prepare(&db)?;
        *self.db.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(db));
        Ok(())
    }
}

/// Opens (or creates) the file, repairing it after an unclean shutdown or a storage failure.
fn open_database(path: &Path, cache_size: usize) -> Result<Database, StoreError> {
    let repairing = AtomicBool::new(false);
    Database::builder()
        .set_cache_size(cache_size)
        .set_repair_callback(move |_| {
            if !repairing.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "embedded store: repairing the database after an unclean shutdown or a storage failure"
                );
            }
        })
        .create(path)
        .map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => StoreError::Unavailable(format!(
                "embedded store: {} is already in use (another process, or another store in \
                 this process, has it open); stop it or use another data directory",
                path.display()
            )),
            other => unavailable(&format!("cannot open {}", path.display()), other),
        })
}
