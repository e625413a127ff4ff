//! The log's redb database, reopened by itself after an I/O error.
//!
//! redb latches the first failed write (on a full disk, typically): from then
//! on every transaction, reads included, fails with "Previous I/O error
//! occurred. Please close and re-open the database". Closing the database and
//! opening it again is what recovers it: the open repairs the file back to its
//! last durable commit, as after a crash, so nothing acknowledged is lost and
//! nothing half-committed appears. [`LogDb`] does that without a restart: an
//! operation that fails with an I/O error marks the database broken, and the
//! next use (or the periodic storage check) closes and reopens it, at most once
//! per [`REOPEN_EVERY`] so a disk that stays full is not re-read in a loop.

use anyhow::Context;
use redb::{Database, StorageError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// The shortest wait between two attempts to reopen a broken database.
pub(super) const REOPEN_EVERY: Duration = Duration::from_secs(1);

/// What the log's writes cannot do now, carried in the error of an operation
/// refused because of it (so ingest can answer 507 rather than 503).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Unwritable {
    /// The filesystem holding the log is full (or below the low-water mark).
    pub no_space: bool,
    pub message: String,
}

/// Why the database is broken, and since when.
#[derive(Debug, Clone)]
pub(super) struct Broken {
    /// The I/O error that broke it (or the latest failed reopen).
    pub cause: String,
    pub no_space: bool,
    pub since: SystemTime,
}

/// Runs after every reopen, under the write lock: the in-memory state derived
/// from the database (where each partition ends) is loaded again from what the
/// file kept.
type OnReopen = Box<dyn Fn(&Database) -> anyhow::Result<()> + Send + Sync>;

pub(super) struct LogDb {
    path: PathBuf,
    cache_bytes: usize,
    /// `None` only while a broken database is closed and opening it again fails.
    /// Every operation holds the read lock for its whole transaction, so a
    /// reopen (the write lock) never closes the file under a live transaction.
    db: RwLock<Option<Database>>,
    broken: Mutex<Option<Broken>>,
    /// When a reopen was last tried. Kept across reopens: on a disk that stays
    /// full, each reopen that succeeds is broken again by the next write, and
    /// the file is not to be checked more than once per [`REOPEN_EVERY`].
    last_reopen: Mutex<Option<Instant>>,
    on_reopen: OnceCallback,
    reopens: AtomicU64,
    /// Operations that failed because the disk was full, since start.
    no_space_failures: AtomicU64,
}

/// Set once, after the state it reloads exists.
type OnceCallback = std::sync::OnceLock<OnReopen>;

impl LogDb {
    /// Open (or create) the database at `path`.
    pub fn open(path: &Path, cache_bytes: usize) -> anyhow::Result<Self> {
        let db = open_database(path, cache_bytes).with_context(|| format!("opening the embedded log at {}", path.display()))?;
        Ok(LogDb {
            path: path.to_owned(),
            cache_bytes,
            db: RwLock::new(Some(db)),
            broken: Mutex::new(None),
            last_reopen: Mutex::new(None),
            on_reopen: OnceCallback::new(),
            reopens: AtomicU64::new(0),
            no_space_failures: AtomicU64::new(0),
        })
    }

    /// What to reload after a reopen (see [`OnReopen`]).
    pub fn on_reopen(&self, f: impl Fn(&Database) -> anyhow::Result<()> + Send + Sync + 'static) {
        let _ = self.on_reopen.set(Box::new(f));
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How often the database was reopened since start.
    pub fn reopens(&self) -> u64 {
        self.reopens.load(Ordering::Relaxed)
    }

    /// How many operations failed because the disk was full, since start: a
    /// rise tells the low-water mark that the disk filled (see `space::LowWater`).
    pub fn no_space_failures(&self) -> u64 {
        self.no_space_failures.load(Ordering::Relaxed)
    }

    /// Why the database cannot be used now, if it cannot.
    pub fn broken(&self) -> Option<Broken> {
        self.broken.lock().ok()?.clone()
    }

    /// Run `f` on the database. A broken database is reopened first (when the
    /// last attempt is [`REOPEN_EVERY`] old); while it stays broken, `f` is not
    /// run and the error says why. An I/O error out of `f` marks it broken.
    pub fn with<T>(&self, f: impl FnOnce(&Database) -> anyhow::Result<T>) -> anyhow::Result<T> {
        self.heal();
        let guard = self.db.read().map_err(|_| anyhow::anyhow!("the embedded log's handle is poisoned"))?;
        let db = match (&*guard, self.broken()) {
            (Some(db), None) => db,
            (_, broken) => return Err(self.unwritable(broken.as_ref()).into()),
        };
        let result = f(db);
        drop(guard);
        if let Err(e) = &result
            && let Some(failure) = IoFailure::find(e)
        {
            self.mark_broken(failure);
        }
        result
    }

    /// Reopen the database if it is broken and the last attempt is old enough.
    /// Returns whether it is usable afterwards.
    pub fn heal(&self) -> bool {
        if !self.broken.lock().is_ok_and(|b| b.is_some()) {
            return true;
        }
        let Ok(mut last) = self.last_reopen.lock() else { return false };
        if last.is_some_and(|t| t.elapsed() < REOPEN_EVERY) {
            return false;
        }
        *last = Some(Instant::now());
        drop(last);
        self.reopen()
    }

    fn reopen(&self) -> bool {
        let Ok(mut slot) = self.db.write() else { return false };
        // Close first: the file stays locked while the old handle lives.
        if let Some(old) = slot.take()
            && let Err(e) = old.close()
        {
            tracing::debug!(error = %e, "closing the broken embedded log reported an error (expected after an I/O error)");
        }
        let opened = open_database(&self.path, self.cache_bytes).map_err(anyhow::Error::from).and_then(|db| {
            if let Some(reload) = self.on_reopen.get() {
                reload(&db).context("reloading where each partition ends")?;
            }
            Ok(db)
        });
        match opened {
            Ok(db) => {
                *slot = Some(db);
                self.reopens.fetch_add(1, Ordering::Relaxed);
                crate::telemetry::metrics().log_reopens.inc();
                let was = self.broken.lock().ok().and_then(|mut b| b.take());
                let down_for = was.and_then(|b| b.since.elapsed().ok()).unwrap_or_default();
                tracing::info!(path = %self.path.display(), down_for_ms = down_for.as_millis() as u64, "reopened the embedded log after an I/O error; it takes writes again");
                true
            }
            Err(e) => {
                let cause = format!("{e:#}");
                tracing::warn!(path = %self.path.display(), error = %cause, "reopening the embedded log failed; trying again");
                if let Ok(mut b) = self.broken.lock()
                    && let Some(b) = b.as_mut()
                {
                    b.no_space |= IoFailure::find(&e).is_some_and(|f| f.no_space);
                    b.cause = format!("reopening it failed: {cause}");
                }
                false
            }
        }
    }

    fn mark_broken(&self, failure: IoFailure) {
        if failure.no_space {
            self.no_space_failures.fetch_add(1, Ordering::Relaxed);
        }
        let Ok(mut b) = self.broken.lock() else { return };
        if b.is_none() {
            tracing::error!(path = %self.path.display(), error = %failure.cause, "the embedded log hit an I/O error; it refuses writes until it is reopened");
            *b = Some(Broken { cause: failure.cause, no_space: failure.no_space, since: SystemTime::now() });
        } else if let Some(b) = b.as_mut() {
            b.no_space |= failure.no_space;
        }
    }

    /// The error of an operation refused because the database is broken.
    fn unwritable(&self, broken: Option<&Broken>) -> Unwritable {
        let (cause, no_space) = broken.map_or(("it is closed".to_owned(), false), |b| (b.cause.clone(), b.no_space));
        let what = if no_space { "the disk holding it is full" } else { "it hit an I/O error" };
        Unwritable {
            no_space,
            message: format!(
                "the embedded log at {} is not usable: {what} ({cause}); it reopens itself every {} s until {}",
                self.path.display(),
                REOPEN_EVERY.as_secs(),
                if no_space { "space is freed" } else { "the error clears" }
            ),
        }
    }
}

fn open_database(path: &Path, cache_bytes: usize) -> Result<Database, redb::DatabaseError> {
    // `create` opens an existing file (repairing it if it was not closed
    // cleanly) or initializes a new one.
    Database::builder().set_cache_size(cache_bytes).create(path)
}

/// An I/O error found in an operation's error: the database needs a reopen.
#[derive(Debug)]
pub(super) struct IoFailure {
    pub cause: String,
    /// ENOSPC or EDQUOT: the filesystem (or the quota) is full.
    pub no_space: bool,
}

impl IoFailure {
    /// The I/O error in `e`'s chain of causes, if any: redb's own error types
    /// (which do not chain their sources), or a plain `std::io::Error`.
    pub fn find(e: &anyhow::Error) -> Option<IoFailure> {
        e.chain().find_map(|cause| {
            if let Some(io) = cause.downcast_ref::<std::io::Error>() {
                return Some(IoFailure::of_io(io));
            }
            storage_error(cause).and_then(|s| match s {
                StorageError::Io(io) => Some(IoFailure::of_io(io)),
                StorageError::PreviousIo => Some(IoFailure { cause: s.to_string(), no_space: false }),
                _ => None,
            })
        })
    }

    fn of_io(io: &std::io::Error) -> IoFailure {
        IoFailure { cause: io.to_string(), no_space: is_no_space(io) }
    }
}

/// The filesystem or the user's quota is full.
pub(super) fn is_no_space(io: &std::io::Error) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    io.kind() == std::io::ErrorKind::StorageFull || io.kind() == std::io::ErrorKind::QuotaExceeded || matches!(io.raw_os_error(), Some(ENOSPC | EDQUOT))
}

/// The storage error inside any of redb's error types.
fn storage_error<'e>(e: &'e (dyn std::error::Error + 'static)) -> Option<&'e StorageError> {
    if let Some(s) = e.downcast_ref::<StorageError>() {
        return Some(s);
    }
    if let Some(redb::TransactionError::Storage(s)) = e.downcast_ref() {
        return Some(s);
    }
    if let Some(redb::CommitError::Storage(s)) = e.downcast_ref() {
        return Some(s);
    }
    if let Some(redb::TableError::Storage(s)) = e.downcast_ref() {
        return Some(s);
    }
    if let Some(redb::DatabaseError::Storage(s)) = e.downcast_ref() {
        return Some(s);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_in_redb_errors_are_found_and_a_full_disk_is_told_apart() {
        let full = std::io::Error::from_raw_os_error(28);
        let e = anyhow::Error::from(redb::CommitError::Storage(StorageError::Io(full))).context("appending");
        let f = IoFailure::find(&e).expect("an I/O error");
        assert!(f.no_space, "{f:?}");
        let latched = anyhow::Error::from(redb::TransactionError::Storage(StorageError::PreviousIo));
        assert!(IoFailure::find(&latched).is_some_and(|f| !f.no_space));
        let quota = anyhow::Error::from(std::io::Error::from_raw_os_error(122));
        assert!(IoFailure::find(&quota).is_some_and(|f| f.no_space));
        let other = anyhow::Error::from(redb::TableError::TableDoesNotExist("t".into()));
        assert!(IoFailure::find(&other).is_none(), "not an I/O error: no reopen");
        assert!(IoFailure::find(&anyhow::anyhow!("corrupt batch")).is_none());
    }
}
