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
    /// The lock file, named in the message a second run prints.
    pub path: PathBuf,
}

/// The lock file for `pipeline`: in `lock_dir`, or in the system's temporary directory, named
/// after the pipeline file and a hash of its full path (so equal names in different folders do
/// not collide).
pub fn lock_path(pipeline: &Path, lock_dir: Option<&Path>) -> PathBuf {
    let canonical = pipeline
        .canonicalize()
        .unwrap_or_else(|_| pipeline.to_path_buf());
    // FNV-1a: stable across runs and versions (the std hasher is not guaranteed to be).
    let fnv = |bytes: &[u8]| {
        bytes.iter().fold(0xcbf29ce484222325u64, |h, &b| {
            (h ^ b as u64).wrapping_mul(0x100000001b3)
        })
    };
    // A pipeline given as a pipe (`runner run <(...)`) is named `/dev/fd/63` whatever it
    // holds: its lock is its text's and the folder its paths are read from (the working
    // directory's), so that two different pipelines so given do not hold each other off, and
    // the same one given twice does.
    let piped = !std::fs::metadata(pipeline).is_ok_and(|m| m.is_file());
    if let Some(text) = piped
        .then(|| crate::config::read_pipeline_file(pipeline).ok())
        .flatten()
    {
        let mut key = std::env::current_dir()
            .unwrap_or_default()
            .into_os_string()
            .into_encoded_bytes();
        key.push(0);
        key.extend_from_slice(&text);
        let dir = lock_dir.map(Path::to_path_buf).unwrap_or_else(default_dir);
        return dir.join(format!("piped-{:016x}.lock", fnv(&key)));
    }
    let stem = canonical
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pipeline".into());
    let hash = fnv(canonical.to_string_lossy().as_bytes());
    let dir = lock_dir.map(Path::to_path_buf).unwrap_or_else(default_dir);
    dir.join(format!("{stem}-{hash:016x}.lock"))
}

/// This user's own lock directory: `$XDG_RUNTIME_DIR/runner-locks` where the session has one,
/// else `runner-<uid>` in the system's temporary directory. Never a directory shared between
/// users: there a local user could plant a link where a root cron run writes its lock.
fn default_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(runtime) if runtime.is_absolute() && runtime.is_dir() => runtime.join("runner-locks"),
        // SAFETY: getuid cannot fail and has no preconditions.
        _ => std::env::temp_dir().join(format!("runner-{}", unsafe { libc::getuid() })),
    }
}

/// The run's lock cannot be taken at `path` (its directory or file), and why: an error of the
/// lock, not of an output.
fn lock_failure(path: &Path, source: std::io::Error) -> Error {
    Error::runtime(format!(
        "cannot take the run's lock at {}: {source} (--lock-dir or RUNNER_LOCK_DIR moves it)",
        crate::error::escape_path(path)
    ))
}

/// Creates `dir` (mode 0700) if missing, and checks that it is a real directory owned by this
/// user that nobody else can write to.
fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let fail = |why: String| lock_failure(dir, std::io::Error::other(why));
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(source) => return Err(lock_failure(dir, source)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|source| lock_failure(dir, source))?;
    // SAFETY: getuid cannot fail and has no preconditions.
    let uid = unsafe { libc::getuid() };
    if !meta.file_type().is_dir() {
        return Err(fail(
            "the lock directory is not a directory (a link?): refusing to use it".into(),
        ));
    }
    if meta.uid() != uid || meta.mode() & 0o022 != 0 {
        return Err(fail(format!(
            "the lock directory belongs to uid {} with mode {:o}, not to this user (uid {uid}) alone: refusing to use it (remove it, or pass --lock-dir)",
            meta.uid(),
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Takes the lock, waiting up to `wait` for another run to finish.
pub fn acquire(
    pipeline: &Path,
    lock_dir: Option<&Path>,
    wait: Option<Duration>,
) -> Result<RunLock> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let path = lock_path(pipeline, lock_dir);
    if let Some(dir) = path.parent() {
        match lock_dir {
            // The default directory is made private and checked.
            None => private_dir(dir)?,
            Some(_) => std::fs::create_dir_all(dir).map_err(|source| {
                let source = match dir.exists() && !dir.is_dir() {
                    true => std::io::Error::other("it is a file, not a folder"),
                    false => source,
                };
                lock_failure(dir, source)
            })?,
        }
    }
    // Never through a link (a planted one would make this run write where it points), and
    // not inherited by the processes a run starts.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(&path)
        .map_err(|source| {
            lock_failure(
                &path,
                if source.raw_os_error() == Some(libc::ELOOP) {
                    std::io::Error::other("the lock file is a symbolic link: refusing to follow it")
                } else {
                    source
                },
            )
        })?;
    let meta = file
        .metadata()
        .map_err(|source| lock_failure(&path, source))?;
    // SAFETY: getuid cannot fail and has no preconditions.
    let uid = unsafe { libc::getuid() };
    if !meta.is_file() || meta.uid() != uid {
        return Err(lock_failure(
            &path,
            std::io::Error::other(format!(
                "the lock file is not a regular file of this user (uid {uid}): refusing to use it"
            )),
        ));
    }
    match take_waiting(&file, wait) {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(Error::Locked(format!(
                "another run of {} is in progress ({}); not starting a second one. {} (lock file {})",
                pipeline.display(),
                holder(&mut file),
                wait_advice(wait),
                path.display()
            )));
        }
        Err(TryLockError::Error(source)) => return Err(lock_failure(&path, source)),
    }
    note_holder(&mut file);
    Ok(RunLock { _file: file, path })
}

/// Takes `file`'s lock, trying again for up to `wait` while another process holds it;
/// `WouldBlock` once the wait is over.
pub(crate) fn take_waiting(file: &File, wait: Option<Duration>) -> Result<(), TryLockError> {
    // A wait too long to represent is a wait without end.
    let deadline = wait.and_then(|w| Instant::now().checked_add(w));
    let forever = wait.is_some() && deadline.is_none();
    loop {
        match file.try_lock() {
            Err(TryLockError::WouldBlock)
                if forever || deadline.is_some_and(|d| Instant::now() < d) =>
            {
                // An OS lock has no portable wait with a timeout: polled.
                std::thread::sleep(Duration::from_millis(100));
            }
            taken => return taken,
        }
    }
}

/// What a run refused for a held lock can do, after waiting `wait` (`--wait`).
pub(crate) fn wait_advice(wait: Option<Duration>) -> String {
    match wait {
        // What was left of --wait for this lock (a stream's checkpoint is waited for after
        // the run's own lock), in whole milliseconds.
        Some(waited) => format!(
            "It was still running after waiting {} (--wait)",
            humantime::format_duration(Duration::from_millis(
                u64::try_from(waited.as_millis()).unwrap_or(u64::MAX)
            ))
        ),
        None => "Use --wait 5m to wait for it".to_owned(),
    }
}

/// Who holds a lock, as its file says (`pid 12, started …`), for the message of a run that
/// finds it held.
pub(crate) fn holder(file: &mut File) -> String {
    let mut holder = String::new();
    let _ = file.rewind().and_then(|_| file.read_to_string(&mut holder));
    match holder.trim() {
        "" => "holder unknown".to_owned(),
        holder => crate::error::escape_controls(holder).into_owned(),
    }
}

/// Writes who holds a lock just taken into its file: the next run quotes it.
pub(crate) fn note_holder(file: &mut File) {
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
    fn a_lock_folder_that_is_a_file_is_said_to_be_one() {
        let dir = tempfile::tempdir().unwrap();
        let pipeline = dir.path().join("p.yaml");
        std::fs::write(&pipeline, "name: t").unwrap();
        let not_a_folder = dir.path().join("locks");
        std::fs::write(&not_a_folder, "").unwrap();
        let error = acquire(&pipeline, Some(&not_a_folder), None)
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("it is a file, not a folder"), "{error}");
    }

    #[test]
    fn a_planted_link_or_someone_elses_file_is_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let pipeline = dir.path().join("p.yaml");
        std::fs::write(&pipeline, "name: t").unwrap();
        let locks = dir.path().join("locks");
        std::fs::create_dir(&locks).unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let path = lock_path(&pipeline, Some(&locks));
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let error = acquire(&pipeline, Some(&locks), None)
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("symbolic link"), "{error}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        // A FIFO planted there is refused too, without blocking on it.
        std::fs::remove_file(&path).unwrap();
        let name = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let error = acquire(&pipeline, Some(&locks), None)
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("not a regular file"), "{error}");
    }

    #[test]
    fn the_default_directory_is_private_to_the_user() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("mine");
        private_dir(&private).unwrap();
        let mode = std::fs::metadata(&private).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let error = private_dir(&shared).unwrap_err().to_string();
        assert!(error.contains("refusing to use it"), "{error}");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&private, &link).unwrap();
        let error = private_dir(&link).unwrap_err().to_string();
        assert!(error.contains("not a directory"), "{error}");
        // Outside tests the default is per user.
        let default = default_dir();
        assert!(
            default.ends_with("runner-locks")
                // SAFETY: getuid has no preconditions.
                || default.ends_with(format!("runner-{}", unsafe { libc::getuid() })),
            "{}",
            default.display()
        );
    }

    #[test]
    fn lock_files_differ_per_pipeline_path() {
        let a = lock_path(Path::new("/srv/a/p.yaml"), None);
        let b = lock_path(Path::new("/srv/b/p.yaml"), None);
        assert_ne!(a, b);
        assert!(a.file_name().unwrap().to_string_lossy().starts_with("p-"));
    }
}
