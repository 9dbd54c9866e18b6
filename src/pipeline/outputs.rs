//! Where go's outputs live: one directory per binary in gantry's cache (or the run's
//! work directory), keyed by everything that shapes the binary, with a note of the
//! layer made from it last run. Kept between runs so that Go skips a link that is up
//! to date; trimmed as Go trims its own build cache, so it does not grow without end.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{io, BuildError};
use crate::config::BuildSettings;
use crate::image;

/// An output not used for this long is removed (Go keeps its build cache's entries
/// five days after their last use).
const KEEP_UNUSED: Duration = Duration::from_secs(5 * 24 * 3600);

/// The length of an output directory's name: hex digits of its key's hash.
const OUTPUT_NAME: usize = 24;

/// Trimming is tried at most this often; `bin/trim.txt` says when it last was.
const TRIM_EVERY: Duration = Duration::from_secs(24 * 3600);

/// What tells one output file from another: go writes a new binary to a new file.
pub(super) fn identity(path: &Path) -> Option<(u64, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino(), m.len()))
}

/// Records `digest` as the layer of the binary at `out`, in a file beside it, and
/// says whether it differs from the one recorded last run (outputs in gantry's cache
/// live on between runs; in the work directory every layer is new).
pub(super) fn note_layer(out: &Path, digest: &image::Digest) -> bool {
    let record = PathBuf::from(format!("{}.layer", out.display()));
    if std::fs::read_to_string(&record).is_ok_and(|last| last == digest.as_str()) {
        return false;
    }
    // Only a hint for next time: failing to keep it costs an early upload, no more.
    let _ = std::fs::write(&record, digest.as_str());
    true
}

/// The file one build writes: in a directory of gantry's cache keyed by everything that
/// shapes the binary (toolchain, package directory, platform, settings), so that a
/// rebuild finds the previous output and Go skips the link when it is up to date;
/// without a cache, in the run's work directory. The package's directory, not its
/// import path, names it, so that a build can start before `go list` answers.
pub(super) fn output_path(
    root: &Path,
    go_version: &str,
    package_dir: &Path,
    env: &[(&str, String)],
    settings: &BuildSettings,
    wasm: bool,
) -> Result<PathBuf, BuildError> {
    let package_dir = std::fs::canonicalize(package_dir).unwrap_or(package_dir.to_path_buf());
    let key = format!(
        "{go_version}\0{}\0{env:?}\0{:?}\0{:?}\0{:?}\0{:?}",
        package_dir.display(),
        settings.dir,
        settings.env,
        settings.flags,
        settings.ldflags
    );
    let hash = image::Digest::of(key.as_bytes());
    let dir = root.join("bin").join(&hash.hex()[..OUTPUT_NAME]);
    std::fs::create_dir_all(&dir).map_err(io("creating a work directory"))?;
    mark_used(&dir, SystemTime::now());
    Ok(dir.join(if wasm { "main.wasm" } else { "main" }))
}

/// Records a use of an output directory in its modification time (creating or
/// replacing the binary in it records one too), for [`trim`]. Only a hint: failing
/// to leave it risks a rebuild later, no more.
fn mark_used(dir: &Path, now: SystemTime) {
    let _ = std::fs::File::open(dir).and_then(|d| d.set_modified(now));
}

/// Removes the outputs under `root` not used for [`KEEP_UNUSED`], once a day at most,
/// except those in `in_use` (this run's, in case marking them failed). Only
/// directories named as [`output_path`] names them are touched, so a cache directory
/// set to somewhere shared loses nothing else. Nothing here can fail a build: a
/// directory that cannot be removed is left.
pub(super) fn trim(root: &Path, now: SystemTime, in_use: &[PathBuf]) {
    let bin = root.join("bin");
    let stamp = bin.join("trim.txt");
    let last = std::fs::read_to_string(&stamp)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .map(|secs| UNIX_EPOCH + Duration::from_secs(secs));
    if last.is_some_and(|last| now.duration_since(last).is_ok_and(|d| d < TRIM_EVERY)) {
        return;
    }
    let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let _ = std::fs::write(&stamp, secs.to_string());
    let Ok(entries) = std::fs::read_dir(&bin) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let ours = name.len() == OUTPUT_NAME
            && name
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        if !ours || in_use.contains(&entry.path()) {
            continue;
        }
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        let unused = meta
            .modified()
            .ok()
            .and_then(|used| now.duration_since(used).ok())
            .is_some_and(|idle| idle > KEEP_UNUSED);
        if meta.is_dir() && unused {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn used_at(dir: &Path, at: SystemTime) {
        std::fs::create_dir_all(dir).unwrap();
        mark_used(dir, at);
    }

    #[test]
    fn outputs_unused_for_five_days_are_trimmed_once_a_day() {
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join("bin");
        let now = SystemTime::now();
        let [old, recent, older, in_use] = ["0a", "1b", "2c", "3d"].map(|n| bin.join(n.repeat(12)));
        used_at(&old, now - 6 * DAY);
        used_at(&recent, now - 4 * DAY);
        used_at(&in_use, now - 9 * DAY);
        // Not named as gantry names outputs: never touched.
        used_at(&bin.join("tools"), now - 9 * DAY);
        trim(root.path(), now, std::slice::from_ref(&in_use));
        assert!(!old.exists());
        assert!(recent.exists() && in_use.exists());
        assert!(bin.join("tools").exists());

        // Within the day, no second pass; a day later, another.
        used_at(&older, now - 9 * DAY);
        trim(root.path(), now + DAY / 2, &[]);
        assert!(older.exists());
        trim(root.path(), now + DAY + Duration::from_secs(1), &[]);
        assert!(!older.exists());
        assert!(!recent.exists(), "unused for 5 days by then");
    }

    #[test]
    fn finding_an_output_marks_it_used() {
        let root = tempfile::tempdir().unwrap();
        let settings = BuildSettings::default();
        let out = output_path(root.path(), "go1.22.0", root.path(), &[], &settings, false).unwrap();
        let dir = out.parent().unwrap();
        mark_used(dir, SystemTime::now() - 30 * DAY);
        let again =
            output_path(root.path(), "go1.22.0", root.path(), &[], &settings, false).unwrap();
        assert_eq!(again, out);
        trim(root.path(), SystemTime::now(), &[]);
        assert!(dir.exists(), "a directory just used is kept");
    }
}
