//! A filesystem store's staging files: object_store writes `<key>#<n>` beside the object and
//! renames it into place when the write completes, so only a write cut off by a crash leaves one.

use std::io;
use std::path::Path;
use std::time::SystemTime;

/// Whether `name` is a staging file's: `<object>#<digits>`.
fn is_staging(name: &str) -> bool {
    name.split_once('#').is_some_and(|(object, suffix)| {
        !object.is_empty() && !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Removes every staging file under `root` last modified before `before`, and the directories
/// that leaves empty (never `root`). Returns how many files it removed.
pub(crate) fn remove_older(root: &Path, before: SystemTime) -> io::Result<u64> {
    let mut removed = 0;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                dirs.push(entry.path());
                continue;
            }
            let stale = kind.is_file()
                && entry.file_name().to_str().is_some_and(is_staging)
                && entry.metadata()?.modified()? < before;
            if !stale {
                continue;
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                // Another replica's sweep on a shared volume got there first.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
            // Directories emptied by this: `remove_dir` refuses non-empty ones, which ends it.
            let mut parent = entry.path();
            while parent.pop() && parent.as_path() != root && std::fs::remove_dir(&parent).is_ok() {
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::is_staging;

    #[test]
    fn staging_names_are_object_hash_digits() {
        assert!(is_staging("0190f3a8-7b2c-7def-8abc-0123456789ab#1"));
        assert!(is_staging("x#42"));
        for name in ["x", "x#", "#1", "x#1a", "x#a", "x#1#"] {
            assert!(!is_staging(name), "{name}");
        }
    }
}
