//! A small tmpfs of a test's own, to fill a filesystem for real (ENOSPC) and
//! grow it again. Mounting needs root; [`Tmpfs::mount`] says when it cannot.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs, unmounted when dropped (also when the test fails).
pub struct Tmpfs {
    dir: PathBuf,
    // Holds the mount point's parent until the tmpfs is unmounted.
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    /// Mount a tmpfs of `mib` MiB; `Err` with the reason when mounting is not permitted here.
    pub fn mount(mib: u64) -> Result<Tmpfs, String> {
        let parent = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let dir = parent.path().join("fs");
        std::fs::create_dir(&dir).map_err(|e| format!("mkdir: {e}"))?;
        run(Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"]).arg(&dir))?;
        Ok(Tmpfs { dir, _parent: parent })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Grow (or shrink) the filesystem to `mib` MiB, keeping its files.
    pub fn resize(&self, mib: u64) -> Result<(), String> {
        run(Command::new("mount").args(["-o", &format!("remount,size={mib}m")]).arg(&self.dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Err(e) = run(Command::new("umount").arg("-l").arg(&self.dir)) {
            eprintln!("unmounting the test tmpfs at {}: {e}", self.dir.display());
        }
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() { Ok(()) } else { Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr).trim())) }
}
