//! A local directory laid out exactly like the S3 bucket.

use super::{ObjectStore, ObjectWriter};
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Objects in progress are hidden files (`.name.inprogress`): Spark, Hive and
/// most readers skip names starting with a dot.
const IN_PROGRESS: &str = ".inprogress";
/// Unfinished objects older than this are removed at start. Younger ones may
/// belong to another sluice process landing in the same directory (a shared
/// volume, consumer-group members), so they are left alone.
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Distinguishes the in-progress files of writers that may land the same object
/// at once (a partition handed from one group member to another).
fn writer_tag() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!("{}-{}", std::process::id(), NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

/// A local object's version is its content's hash: documents written through
/// [`ObjectStore::put_if`] carry a counter, so equal content means no change.
fn content_version(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(bytes)[..12])
}

pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        Ok(LocalStore { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Keys come from the network (admin API): refuse anything that could leave the root.
    fn checked<'k>(&self, key: &'k str, may_be_empty: bool) -> io::Result<&'k str> {
        if (key.is_empty() && may_be_empty) || !key.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
            Ok(key)
        } else {
            Err(io::Error::new(io::ErrorKind::InvalidInput, format!("invalid object key `{key}`")))
        }
    }
}

impl ObjectStore for LocalStore {
    fn create(&self, key: &str) -> io::Result<Box<dyn ObjectWriter>> {
        let path = self.root.join(self.checked(key, false)?);
        let dir = path.parent().expect("a key has a parent under the root").to_path_buf();
        fs::create_dir_all(&dir)?;
        let name = path.file_name().expect("a key has a file name").to_string_lossy();
        let tmp = dir.join(format!(".{name}.{}{IN_PROGRESS}", writer_tag()));
        let file = File::create(&tmp)?;
        Ok(Box::new(LocalObject { out: Some(BufWriter::with_capacity(256 << 10, file)), tmp, path, dir, written: 0 }))
    }

    fn list(&self, prefix: &str) -> io::Result<Vec<String>> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> io::Result<()> {
            let entries = match fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let path = entry.path();
                if entry.file_type()?.is_dir() {
                    walk(root, &path, out)?;
                } else if !entry.file_name().to_string_lossy().starts_with('.')
                    && let Ok(rel) = path.strip_prefix(root)
                {
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
            Ok(())
        }
        let mut out = Vec::new();
        walk(&self.root, &self.root.join(self.checked(prefix.trim_end_matches('/'), true)?), &mut out)?;
        out.sort();
        Ok(out)
    }

    fn get(&self, key: &str) -> io::Result<Vec<u8>> {
        fs::read(self.root.join(self.checked(key, false)?))
    }

    fn get_versioned(&self, key: &str) -> io::Result<Option<(Vec<u8>, String)>> {
        match fs::read(self.root.join(self.checked(key, false)?)) {
            Ok(bytes) => {
                let version = content_version(&bytes);
                Ok(Some((bytes, version)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn put_if(&self, key: &str, bytes: &[u8], expected: Option<&str>) -> io::Result<Option<String>> {
        let path = self.root.join(self.checked(key, false)?);
        let dir = path.parent().expect("a key has a parent under the root");
        fs::create_dir_all(dir)?;
        let name = path.file_name().expect("a key has a file name").to_string_lossy();
        // An advisory lock beside the object serialises compare-and-swaps from
        // every process on this machine (and on NFS with working locks).
        let lock = File::options().create(true).truncate(false).write(true).open(dir.join(format!(".{name}.lock")))?;
        lock.lock()?;
        let current = match fs::read(&path) {
            Ok(b) => Some(content_version(&b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if current.as_deref() != expected {
            return Ok(None);
        }
        let mut w = self.create(key)?;
        w.write_all(bytes)?;
        w.finish(&[])?;
        Ok(Some(content_version(bytes)))
    }

    fn delete(&self, key: &str) -> io::Result<()> {
        match fs::remove_file(self.root.join(self.checked(key, false)?)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn clean_incomplete(&self) -> io::Result<usize> {
        self.remove_unfinished_older_than(ABANDONED_AFTER)
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn native(&self) -> Option<super::Native> {
        let root = std::path::absolute(&self.root).ok()?;
        let mut url = url::Url::from_directory_path(root).ok()?;
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        Some(super::Native { store: std::sync::Arc::new(object_store::local::LocalFileSystem::new()), url })
    }
}

impl LocalStore {
    /// Remove in-progress files not written to for `age`.
    pub fn remove_unfinished_older_than(&self, age: std::time::Duration) -> io::Result<usize> {
        fn walk(dir: &Path, age: std::time::Duration, removed: &mut usize) -> io::Result<()> {
            for entry in fs::read_dir(dir)? {
                let entry = entry?;
                let path = entry.path();
                if entry.file_type()?.is_dir() {
                    walk(&path, age, removed)?;
                } else if path.file_name().is_some_and(|n| n.to_string_lossy().ends_with(IN_PROGRESS))
                    && entry.metadata()?.modified()?.elapsed().is_ok_and(|idle| idle >= age)
                {
                    fs::remove_file(&path)?;
                    *removed += 1;
                }
            }
            Ok(())
        }
        let mut removed = 0;
        walk(&self.root, age, &mut removed)?;
        Ok(removed)
    }
}

struct LocalObject {
    out: Option<BufWriter<File>>,
    tmp: PathBuf,
    path: PathBuf,
    dir: PathBuf,
    written: u64,
}

impl Write for LocalObject {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.as_mut().ok_or_else(|| io::Error::other("object already finished"))?.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.as_mut().map_or(Ok(()), |o| o.flush())
    }
}

impl ObjectWriter for LocalObject {
    fn finish(mut self: Box<Self>, _metadata: &[(String, String)]) -> io::Result<()> {
        // `out` stays until the rename: if the last bytes or the fsync fail (a
        // full disk), dropping the object removes the temporary file, so a
        // failed roll neither shows a half-written object nor keeps its bytes.
        let out = self.out.as_mut().ok_or_else(|| io::Error::other("object already finished"))?;
        out.flush()?;
        out.get_ref().sync_all()?;
        fs::rename(&self.tmp, &self.path)?;
        self.out = None;
        // The rename is durable only once the directory entry is.
        File::open(&self.dir)?.sync_all()
    }

    fn written(&self) -> u64 {
        self.written
    }
}

impl Drop for LocalObject {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_if_is_a_compare_and_swap() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        let v1 = store.put_if("_sluice/lease.json", b"one", None).unwrap().expect("absent: written");
        assert_eq!(store.put_if("_sluice/lease.json", b"two", None).unwrap(), None, "exists: not written");
        assert_eq!(store.put_if("_sluice/lease.json", b"two", Some("stale")).unwrap(), None);
        let (bytes, seen) = store.get_versioned("_sluice/lease.json").unwrap().unwrap();
        assert_eq!((bytes.as_slice(), seen.as_str()), (&b"one"[..], v1.as_str()));
        let v2 = store.put_if("_sluice/lease.json", b"two", Some(&v1)).unwrap().expect("current version: written");
        assert_ne!(v1, v2);
        assert_eq!(store.put_if("_sluice/lease.json", b"three", Some(&v1)).unwrap(), None, "a writer that read v1 lost the race");
        assert_eq!(store.get("_sluice/lease.json").unwrap(), b"two");
        assert!(store.get_versioned("_sluice/absent.json").unwrap().is_none());
        assert!(store.list("_sluice").unwrap().iter().all(|k| !k.contains(".lock")), "lock files are hidden");
    }

    #[test]
    fn concurrent_increments_through_put_if_lose_no_update() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(LocalStore::new(dir.path()).unwrap());
        std::thread::scope(|s| {
            for _ in 0..8 {
                let store = store.clone();
                s.spawn(move || {
                    for _ in 0..50 {
                        loop {
                            let seen = store.get_versioned("counter").unwrap();
                            let n: u64 = seen.as_ref().map_or(0, |(b, _)| String::from_utf8_lossy(b).parse().unwrap());
                            let version = seen.as_ref().map(|(_, v)| v.as_str());
                            if store.put_if("counter", (n + 1).to_string().as_bytes(), version).unwrap().is_some() {
                                break;
                            }
                        }
                    }
                });
            }
        });
        assert_eq!(store.get("counter").unwrap(), b"400");
    }

    #[test]
    fn an_object_that_does_not_fit_on_the_disk_fails_and_leaves_nothing_behind() {
        let fs = match crate::store::tmpfs::Tmpfs::mount(1) {
            Ok(fs) => fs,
            Err(why) => {
                eprintln!("skipped: cannot mount a tmpfs here ({why}); run as root to fill a disk for real");
                return;
            }
        };
        let store = LocalStore::new(fs.path()).expect("store");
        // 900 KiB of the 1 MiB taken: the next object's bytes fit in the
        // writer's buffer but not on the disk, so its finish is what fails.
        fs::write(fs.path().join("filler"), vec![0u8; 900 << 10]).expect("filler");
        let mut w = store.create("topics/t/partition=0/t+0+0000000000.json").expect("create");
        for _ in 0..20 {
            w.write_all(&[b'x'; 10 << 10]).expect("buffered");
        }
        let failed = w.finish(&[]).expect_err("the disk is full");
        assert_eq!(failed.raw_os_error(), Some(28), "ENOSPC: {failed}");
        // A write that fails at once (larger than the buffer) too.
        let mut big = store.create("topics/t/partition=0/t+0+0000000001.json").expect("create");
        if big.write_all(&vec![b'y'; 1 << 20]).is_ok() {
            big.finish(&[]).expect_err("1 MiB does not fit");
        } else {
            drop(big);
        }
        assert_eq!(store.list("").expect("list"), vec!["filler".to_string()], "no half-written object is visible");
        assert_eq!(store.remove_unfinished_older_than(std::time::Duration::ZERO).expect("scan"), 0, "and no temporary file keeps the space");
    }

    #[test]
    fn objects_appear_only_when_finished() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::new(dir.path()).expect("store");
        let mut w = store.create("topics/t/partition=0/t+0+0000000000.json").expect("create");
        w.write_all(b"{\"a\":1}\n").expect("write");
        let visible = dir.path().join("topics/t/partition=0/t+0+0000000000.json");
        assert!(!visible.exists());
        assert_eq!(w.written(), 8);
        w.finish(&[]).expect("finish");
        assert_eq!(fs::read(&visible).expect("read"), b"{\"a\":1}\n");

        let abandoned = store.create("topics/t/partition=0/t+0+0000000001.json").expect("create");
        drop(abandoned);
        let leftover = store.create("x/y.json").expect("create");
        std::mem::forget(leftover); // as if the process died mid-write
        assert_eq!(store.clean_incomplete().expect("clean"), 0, "a young leftover may be another process's write in progress");
        assert_eq!(store.remove_unfinished_older_than(std::time::Duration::ZERO).expect("clean"), 1);

        // Two writers of one key (a partition changing owner) never share a file.
        let mut first = store.create("k/same.json").expect("create");
        let mut second = store.create("k/same.json").expect("create");
        first.write_all(b"first\n").expect("write");
        second.write_all(b"second\n").expect("write");
        first.finish(&[]).expect("finish");
        second.finish(&[]).expect("finish");
        assert_eq!(store.get("k/same.json").expect("get"), b"second\n");
        let names: Vec<_> = fs::read_dir(dir.path().join("topics/t/partition=0")).expect("dir").flatten().map(|e| e.file_name()).collect();
        assert_eq!(names.len(), 1);
        assert!(store.create("../escape.json").is_err());
        assert!(store.get("a/../../etc/passwd").is_err());
        assert_eq!(store.list("topics").expect("list"), vec!["topics/t/partition=0/t+0+0000000000.json".to_string()]);
        assert_eq!(store.list("nothing/here").expect("list"), Vec::<String>::new());
        assert_eq!(store.get("topics/t/partition=0/t+0+0000000000.json").expect("get"), b"{\"a\":1}\n");
        store.delete("topics/t/partition=0/t+0+0000000000.json").expect("delete");
        store.delete("topics/t/partition=0/t+0+0000000000.json").expect("deleting twice is fine");
        assert!(store.list("").expect("list").iter().all(|k| !k.starts_with("topics/")));
    }
}
