//! Files and directories a run must not leave behind, whatever ends it: the build's
//! work directory, and a key the Action wrote from a secret. Dropping the guard
//! removes the path on the normal path; `remove_all` does it when a signal ends the
//! run early, since no destructor runs then.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

static PATHS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Removes its path when dropped, and until then is on the list `remove_all` clears.
#[derive(Debug)]
pub struct Removal(PathBuf);

impl Removal {
    pub fn new(path: &Path) -> Self {
        lock().push(path.to_path_buf());
        Removal(path.to_path_buf())
    }
}

impl Drop for Removal {
    fn drop(&mut self) {
        remove(&self.0);
        lock().retain(|p| p != &self.0);
    }
}

/// Removes `path` when the run ends, normally (`remove_all` at the end of `main`) or
/// by a signal.
pub fn remove_at_exit(path: &Path) {
    lock().push(path.to_path_buf());
}

/// Removes everything registered (on SIGINT/SIGTERM, before exiting).
pub fn remove_all() {
    for path in lock().drain(..) {
        remove(&path);
    }
}

fn remove(path: &Path) {
    if path.is_dir() {
        let _ = std::fs::remove_dir_all(path);
    } else {
        let _ = std::fs::remove_file(path);
    }
}

fn lock() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    PATHS.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_on_drop_and_on_remove_all() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::create_dir(&a).unwrap();
        std::fs::write(&b, "secret").unwrap();
        drop(Removal::new(&a));
        assert!(!a.exists());
        let guard = Removal::new(&b);
        remove_all();
        assert!(!b.exists());
        drop(guard);
    }
}
