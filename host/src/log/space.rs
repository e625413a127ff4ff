//! Free space on the filesystem that holds the log, and the low-water mark:
//! new records are refused while less than `[log] min_free_bytes` is free, so
//! the disk never fills with records alone and what drains it (pipelines
//! committing positions, retention deleting batches; both write) has room.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// After the disk filled up, new records wait for at least this much free
/// space, whatever the low-water mark: a disk at its last bytes would take one
/// request and fail the next, and the log's file may still take records into
/// pages it freed, while the landing on the same disk cannot write at all.
pub const RESUME_AFTER_FULL_BYTES: u64 = 16 << 20;

/// The low-water mark of one directory's filesystem.
pub struct LowWater {
    dir: PathBuf,
    min_free: u64,
    /// The count of full-disk failures (see [`LowWater::admit`]) already
    /// answered by enough free space.
    cleared_through: AtomicU64,
}

impl LowWater {
    pub fn new(dir: PathBuf, min_free: u64) -> Self {
        LowWater { dir, min_free, cleared_through: AtomicU64::new(0) }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn min_free(&self) -> u64 {
        self.min_free
    }

    /// Whether new records may be taken with `free` bytes free, after
    /// `full_failures` writes failed for lack of space (a count that only
    /// grows): above the mark, and after a new failure, above
    /// [`RESUME_AFTER_FULL_BYTES`] too. The refusal says what is free, what is
    /// needed and what to do.
    pub fn admit(&self, free: u64, full_failures: u64) -> Result<(), String> {
        let filled = full_failures > self.cleared_through.load(Ordering::Relaxed);
        let need = if filled { self.min_free.max(RESUME_AFTER_FULL_BYTES) } else { self.min_free };
        if free >= need {
            self.cleared_through.fetch_max(full_failures, Ordering::Relaxed);
            return Ok(());
        }
        if filled && free >= self.min_free {
            return Err(format!(
                "the disk holding the log ({}) filled up and has {} free now: new records are refused until {} is free again \
                 (free space on it; the log takes records again by itself)",
                self.dir.display(),
                human(free),
                human(need)
            ));
        }
        admit(&self.dir, free, self.min_free)
    }
}

/// Bytes an unprivileged writer may still use on the filesystem holding `path`
/// (what `df` calls available).
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(path)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// `n` bytes the way people read sizes: `1.5 GiB`, `37 MiB`, `512 B`.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value >= 100.0 || value.fract() < 0.05 { format!("{value:.0} {}", UNITS[unit]) } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// Whether `free` bytes leave room for new records above the low-water mark
/// `min_free`; the refusal says what is free, what the setting asks and what to do.
pub fn admit(dir: &Path, free: u64, min_free: u64) -> Result<(), String> {
    if free >= min_free {
        return Ok(());
    }
    Err(format!(
        "the disk holding the log ({}) has {} free, less than [log] min_free_bytes = {} ({min_free}): new records are refused until space is freed \
         (retention, a larger disk) or the setting is lowered",
        dir.display(),
        human(free),
        human(min_free)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(256 << 20), "256 MiB");
        assert_eq!(human(3 << 29), "1.5 GiB");
    }

    #[test]
    fn the_low_water_mark_refuses_with_a_message_naming_the_setting() {
        let dir = Path::new("/data");
        assert!(admit(dir, 300 << 20, 256 << 20).is_ok());
        assert!(admit(dir, 0, 0).is_ok(), "0 turns the check off");
        let refused = admit(dir, 10 << 20, 256 << 20).expect_err("below the mark");
        assert!(refused.contains("[log] min_free_bytes = 256 MiB") && refused.contains("10 MiB free") && refused.contains("/data"), "{refused}");
    }

    #[test]
    fn after_the_disk_filled_records_wait_for_more_than_the_mark() {
        let mark = LowWater::new("/data".into(), 0);
        assert!(mark.admit(0, 0).is_ok(), "no mark, never filled: taken");
        let refused = mark.admit(1 << 20, 1).expect_err("filled, 1 MiB free");
        assert!(refused.contains("filled up") && refused.contains("until 16 MiB is free again"), "{refused}");
        assert!(mark.admit(RESUME_AFTER_FULL_BYTES, 1).is_ok(), "enough space again");
        assert!(mark.admit(1 << 20, 1).is_ok(), "that fill was answered: the mark (0) rules again");
        assert!(mark.admit(1 << 20, 2).is_err(), "filled once more");

        let mark = LowWater::new("/data".into(), 256 << 20);
        let refused = mark.admit(100 << 20, 1).expect_err("below the mark");
        assert!(refused.contains("[log] min_free_bytes"), "below the mark, the refusal names the setting: {refused}");
        assert!(mark.admit(300 << 20, 1).is_ok());
    }

    #[test]
    fn free_bytes_of_an_existing_directory_is_known() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(free_bytes(dir.path()).expect("statvfs") > 0);
        assert!(free_bytes(&dir.path().join("absent")).is_err());
    }
}
