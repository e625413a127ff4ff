//! Object storage: a local directory or S3, behind one trait. Sinks land
//! segments in it; sources keep checkpoints and leases in it; reports read
//! tables from it and write their results back.

mod file;
pub mod local;
pub mod s3;
#[cfg(test)]
pub(crate) mod tmpfs;

pub use file::write_atomically;

use std::io;

/// An object store: keys are `/`-separated paths relative to the landing root.
pub trait ObjectStore: Send + Sync {
    /// Start writing the object `key`. Nothing is visible under `key` until
    /// [`ObjectWriter::finish`] returns; dropping the writer abandons it.
    fn create(&self, key: &str) -> io::Result<Box<dyn ObjectWriter>>;

    /// Keys of the visible objects under `prefix` (a folder path, `/`-terminated or not), sorted.
    fn list(&self, prefix: &str) -> io::Result<Vec<String>>;

    /// The whole content of an object.
    fn get(&self, key: &str) -> io::Result<Vec<u8>>;

    /// An object's content and its version tag for [`ObjectStore::put_if`];
    /// `None` when there is no such object.
    fn get_versioned(&self, key: &str) -> io::Result<Option<(Vec<u8>, String)>>;

    /// Write a small object only if nobody changed it since it was read at
    /// `expected` (`None`: only if there is no such object yet): a
    /// compare-and-swap, for checkpoints and leases that several processes share.
    /// `Ok(Some(version))` once written; `Ok(None)` when somebody else wrote first.
    fn put_if(&self, key: &str, bytes: &[u8], expected: Option<&str>) -> io::Result<Option<String>>;

    /// Remove an object; removing one that is not there is not an error.
    fn delete(&self, key: &str) -> io::Result<()>;

    /// Remove leftovers of writes that never finished (after a crash).
    fn clean_incomplete(&self) -> io::Result<usize>;

    /// Where this store is, for people: `/var/lib/sluice/landing`, `s3://bucket/prefix`.
    fn location(&self) -> String;

    /// The same place as an `object_store` store, for libraries that bring
    /// their own storage protocol (Delta tables: delta-rs commits its log with
    /// conditional puts through it). `None` for stores that have no such twin.
    fn native(&self) -> Option<Native> {
        None
    }
}

/// A landing store as `object_store` sees it: `store` rooted so that `url`'s
/// path names the landing root (`file:///var/lib/sluice/landing/`,
/// `s3://bucket/prefix/`). Keys of [`ObjectStore`] are paths under `url`.
#[derive(Clone, Debug)]
pub struct Native {
    pub store: std::sync::Arc<dyn object_store::ObjectStore>,
    pub url: url::Url,
}

impl Native {
    /// The URL of a folder (`tables/pin/`) of the landing.
    pub fn url_of(&self, folder: &str) -> io::Result<url::Url> {
        self.url.join(folder).map_err(|e| io::Error::other(format!("{folder} under {}: {e}", self.url)))
    }
}

/// An object being written.
pub trait ObjectWriter: io::Write + Send {
    /// Make the object durable and visible under its key, replacing any object
    /// of the same key. `metadata` is attached where the store supports it.
    fn finish(self: Box<Self>, metadata: &[(String, String)]) -> io::Result<()>;

    /// Bytes written so far.
    fn written(&self) -> u64;
}
