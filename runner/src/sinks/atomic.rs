//! Replacing a file atomically: write a temporary file in the same directory, flush it to disk,
//! rename it over the target, then flush the directory. A reader (or a run killed half-way)
//! sees the old file or the new one, never a mix.

use std::io::Write;
use std::path::Path;

use tempfile::NamedTempFile;

use crate::error::{Error, Result};

/// Creates a temporary file beside `target` (creating the directory if needed).
pub fn temp_beside(target: &Path) -> Result<NamedTempFile> {
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|source| Error::Output {
        path: target.to_path_buf(),
        source,
    })?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    remove_leftovers(dir, &name);
    // Temporary files are private (0600); an output keeps the mode of the file it replaces,
    // or gets the usual 0644.
    let mode = std::fs::metadata(target).map_or(0o644, |m| {
        std::os::unix::fs::PermissionsExt::mode(&m.permissions())
    });
    tempfile::Builder::new()
        // The process id in the name tells a dead run's leftover from a live writer's file.
        .prefix(&format!(".{name}.{}.", std::process::id()))
        .suffix(".tmp")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777))
        .tempfile_in(dir)
        .map_err(|source| Error::Output {
            path: target.to_path_buf(),
            source,
        })
}

/// Removes temporary files of `name` that a killed run left behind (`kill -9` gives it no
/// chance to clean up): those whose process no longer exists. Files of live processes (another
/// run writing the same output at the same moment) are left alone.
fn remove_leftovers(dir: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{name}.");
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some((pid, random)) = file_name
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .and_then(|f| f.strip_suffix(".tmp"))
            .and_then(|f| f.split_once('.'))
        else {
            continue;
        };
        // Exactly what `temp_beside` makes: a process id, then 6 random letters or digits.
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if random.len() == 6
            && random.bytes().all(|b| b.is_ascii_alphanumeric())
            && !process_exists(pid)
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(unix)]
fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    alive || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(not(unix))]
fn process_exists(_pid: u32) -> bool {
    true
}

/// Flushes `temp` and renames it to `target`.
pub fn persist(mut temp: NamedTempFile, target: &Path) -> Result<()> {
    let fail = |source| Error::Output {
        path: target.to_path_buf(),
        source,
    };
    temp.flush().map_err(fail)?;
    temp.as_file().sync_all().map_err(fail)?;
    temp.persist(target).map_err(|e| fail(e.error))?;
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Makes the rename itself durable; not every filesystem supports it, so ignore errors.
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

/// Writes `bytes` to `target` atomically.
pub fn write(target: &Path, bytes: &[u8]) -> Result<()> {
    let mut temp = temp_beside(target)?;
    temp.write_all(bytes).map_err(|source| Error::Output {
        path: target.to_path_buf(),
        source,
    })?;
    persist(temp, target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("sub/out.csv");
        write(&target, b"old").unwrap();
        write(&target, b"new").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert_eq!(
            std::fs::read_dir(target.parent().unwrap()).unwrap().count(),
            1
        );
    }

    #[test]
    fn a_dropped_temp_file_leaves_the_old_file_alone() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.csv");
        write(&target, b"old").unwrap();
        let mut temp = temp_beside(&target).unwrap();
        temp.write_all(b"half").unwrap();
        drop(temp);
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn temp_files_of_dead_processes_are_removed_on_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.csv");
        // A process id above Linux's maximum stands for a process that died.
        let live = format!(".out.csv.{}.Zz9zZ9.tmp", std::process::id());
        for name in [
            ".out.csv.999999999.Ab3xY9.tmp",
            ".other.csv.999999999.Ab3xY9.tmp",
            ".out.csv.notes.tmp",
            &live,
        ] {
            std::fs::write(dir.path().join(name), b"half").unwrap();
        }
        write(&target, b"new").unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut expected = vec![
            ".other.csv.999999999.Ab3xY9.tmp".to_owned(),
            ".out.csv.notes.tmp".to_owned(),
            live,
            "out.csv".to_owned(),
        ];
        expected.sort();
        assert_eq!(left, expected);
    }
}
