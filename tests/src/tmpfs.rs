//! A small tmpfs for a test's data dir, to fill a disk for real and grow it
//! again. Mounting needs root: [`Tmpfs::mount`] says why when it cannot, and
//! the test then skips with that message.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs, unmounted when dropped: at the end of the test, and when it fails.
/// Declare it before the [`crate::Server`] writing into it, so the process stops first.
pub struct Tmpfs {
    dir: PathBuf,
    // Keeps the mount point's parent until the tmpfs is unmounted.
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    /// Mount a tmpfs of `mib` MiB.
    pub fn mount(mib: u64) -> Result<Tmpfs, String> {
        let parent = tempfile::tempdir().map_err(|e| format!("creating a mount point: {e}"))?;
        let dir = parent.path().join("fs");
        std::fs::create_dir(&dir).map_err(|e| format!("creating a mount point: {e}"))?;
        run(Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"]).arg(&dir))?;
        Ok(Tmpfs { dir, _parent: parent })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Grow (or shrink) it to `mib` MiB; its files stay.
    pub fn resize(&self, mib: u64) -> Result<(), String> {
        run(Command::new("mount").args(["-o", &format!("remount,size={mib}m")]).arg(&self.dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a process that still holds a file open does not keep it mounted.
        if let Err(e) = run(Command::new("umount").arg("-l").arg(&self.dir)) {
            eprintln!("unmounting the test tmpfs at {}: {e}", self.dir.display());
        }
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() { Ok(()) } else { Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr).trim())) }
}
