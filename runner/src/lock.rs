//! One run per pipeline at a time: `runner run` holds an exclusive lock on a file for the
//! pipeline (an OS file lock, released by the kernel if the process dies, so a stale lock never
//! blocks). The file records who holds it, for the message the next run prints.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// A held lock; released when dropped (or when the process ends).
pub struct RunLock {
    _file: File,
    pub path: PathBuf,
}

/// The lock file for `pipeline`: in `lock_dir`, or in the system's temporary directory, named
/// after the pipeline file and a hash of its full path (so equal names in different folders do
/// not collide).
pub fn lock_path(pipeline: &Path, lock_dir: Option<&Path>) -> PathBuf {
    let canonical = pipeline
        .canonicalize()
        .unwrap_or_else(|_| pipeline.to_path_buf());
    let stem = canonical
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pipeline".into());
    // FNV-1a: stable across runs and versions (the std hasher is not guaranteed to be).
    let hash = canonical
        .to_string_lossy()
        .bytes()
        .fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100000001b3)
        });
    let dir = lock_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| std::env::temp_dir().join("runner-locks"));
    dir.join(format!("{stem}-{hash:016x}.lock"))
}

/// Takes the lock, waiting up to `wait` for another run to finish.
pub fn acquire(
    pipeline: &Path,
    lock_dir: Option<&Path>,
    wait: Option<Duration>,
) -> Result<RunLock> {
    let path = lock_path(pipeline, lock_dir);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| Error::Output {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| Error::Output {
            path: path.clone(),
            source,
        })?;
    // A wait too long to represent is a wait without end.
    let deadline = wait.and_then(|w| Instant::now().checked_add(w));
    let forever = wait.is_some() && deadline.is_none();
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {
                if forever || deadline.is_some_and(|d| Instant::now() < d) {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                let mut holder = String::new();
                let _ = file.rewind().and_then(|_| file.read_to_string(&mut holder));
                let holder = holder.trim();
                return Err(Error::Locked(format!(
                    "another run of {} is in progress ({}); not starting a second one. Use --wait 5m to wait for it (lock file {})",
                    pipeline.display(),
                    if holder.is_empty() { "holder unknown".to_owned() } else { holder.to_owned() },
                    path.display()
                )));
            }
            Err(TryLockError::Error(source)) => return Err(Error::Output { path, source }),
        }
    }
    // Say who holds it: the next run quotes this.
    let note = format!(
        "pid {}, started {}",
        std::process::id(),
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
    );
    let _ = file
        .set_len(0)
        .and_then(|_| file.rewind())
        .and_then(|_| file.write_all(note.as_bytes()))
        .and_then(|_| file.flush());
    Ok(RunLock { _file: file, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_then_admitted_after_release() {
        let dir = tempfile::tempdir().unwrap();
        let pipeline = dir.path().join("p.yaml");
        std::fs::write(&pipeline, "name: t").unwrap();
        let first = acquire(&pipeline, Some(dir.path()), None).unwrap();
        let err = acquire(&pipeline, Some(dir.path()), None).err().unwrap();
        assert_eq!(err.exit_code(), 3);
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        acquire(&pipeline, Some(dir.path()), Some(Duration::from_secs(1))).unwrap();
    }

    #[test]
    fn lock_files_differ_per_pipeline_path() {
        let a = lock_path(Path::new("/srv/a/p.yaml"), None);
        let b = lock_path(Path::new("/srv/b/p.yaml"), None);
        assert_ne!(a, b);
        assert!(a.file_name().unwrap().to_string_lossy().starts_with("p-"));
    }
}
