//! Replacing a file atomically: write a temporary file in the same directory, flush it to disk,
//! rename it over the target, then flush the directory. A reader (or a run killed half-way)
//! sees the old file or the new one, never a mix.
//!
//! Atomic replacement is for regular files only. A path that exists and is something else —
//! a device such as `/dev/null`, a FIFO, `/dev/stdout` — is written through (opened and
//! written, as a shell redirection would), never renamed over: renaming would turn the device
//! node into a regular file. A directory is an error. A symbolic link is followed: the file it
//! names is replaced, and the link stays a link. A descriptor of this process by name
//! (`/dev/stdout`, `/dev/fd/N`, `/proc/self/fd/N`) is written through whatever it is open on:
//! `runner run ... > out.txt` with an output `/dev/stdout` appends to `out.txt`, as the
//! process's own writes to its standard output would.

use std::io::Write;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::error::{Error, Result};

/// Symbolic links followed before an output path is given up on (as the system's own limit).
const MOST_LINKS: usize = 40;

/// Whether `path` names an open descriptor by number (`/dev/fd/1`, `/proc/self/fd/1`,
/// `/proc/123/fd/1`): its link reads as the file the descriptor is open on (or `pipe:[..]`),
/// and renaming over it would replace that file, not write to the descriptor.
fn names_a_descriptor(path: &Path) -> bool {
    let parts: Vec<&std::ffi::OsStr> = path.components().map(|c| c.as_os_str()).collect();
    match parts.as_slice() {
        [root, dev, fd, _] => *root == "/" && *dev == "dev" && *fd == "fd",
        [root, proc, _, fd, _] => *root == "/" && *proc == "proc" && *fd == "fd",
        _ => false,
    }
}

/// Where an output at `target` is written: `target` itself, or, when it is a symbolic link,
/// the path it finally names (a link into a descriptor stops there). A dangling link names
/// the file to create; a loop of links is left to the system's error when it is opened.
fn destination(target: &Path) -> PathBuf {
    let mut path = target.to_path_buf();
    for _ in 0..MOST_LINKS {
        if names_a_descriptor(&path) {
            break;
        }
        let is_link = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
        let Some(link) = is_link.then(|| std::fs::read_link(&path).ok()).flatten() else {
            break;
        };
        path = match path.parent() {
            Some(dir) if link.is_relative() => dir.join(link),
            _ => link,
        };
    }
    path
}

/// Whether `target` exists and is not a regular file (following symbolic links), or names a
/// descriptor: such a target is written through, not replaced. A directory is an error, which
/// names the output as written (`named`).
fn written_through(target: &Path, named: &Path) -> Result<bool> {
    if names_a_descriptor(target) {
        return Ok(true);
    }
    match std::fs::metadata(target) {
        Ok(meta) if meta.is_dir() => Err(Error::Output {
            path: named.to_path_buf(),
            source: std::io::Error::other("it is a directory; name a file"),
        }),
        Ok(meta) => Ok(!meta.is_file()),
        // Links that name each other: an error, not a link replaced by a file.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Err(Error::Output {
            path: named.to_path_buf(),
            source: e,
        }),
        Err(_) => Ok(false),
    }
}

/// Creates a temporary file beside `target` (creating the directory if needed). For a target
/// that is written through (a device, a FIFO), the temporary file is in the system's
/// temporary directory instead, and `persist` copies it.
pub fn temp_beside(target: &Path) -> Result<NamedTempFile> {
    let named = target;
    let target = &destination(named);
    if written_through(target, named)? {
        let temp = tempfile::Builder::new()
            .prefix(".runner-output.")
            .tempfile()
            .map_err(|source| Error::Output {
                path: named.to_path_buf(),
                source: without_temporary_name(source),
            })?;
        remember(temp.path());
        return Ok(temp);
    }
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    make_dirs(dir).map_err(|source| Error::Output {
        path: named.to_path_buf(),
        source,
    })?;
    let name = temporary_stem(target);
    remove_leftovers(dir, &name);
    // Temporary files are private (0600); an output keeps the mode of the file it replaces,
    // or gets the usual 0644.
    let mode = std::fs::metadata(target).map_or(0o644, |m| {
        std::os::unix::fs::PermissionsExt::mode(&m.permissions())
    });
    let temp = tempfile::Builder::new()
        // The process id in the name tells a dead run's leftover from a live writer's file.
        .prefix(&format!(".{name}.{}.", std::process::id()))
        .suffix(".tmp")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777))
        .tempfile_in(dir)
        .map_err(|source| Error::Output {
            path: named.to_path_buf(),
            source: without_temporary_name(source),
        })?;
    remember(temp.path());
    Ok(temp)
}

/// The temporary files being written, for a run ended at once (`cancel::abort`) to remove:
/// each is dropped from the list when it is persisted (one dropped unpersisted removes its
/// file itself).
fn live_temporaries() -> std::sync::MutexGuard<'static, Vec<std::path::PathBuf>> {
    static LIVE: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());
    LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Adds a temporary folder (a sort's spilled runs) for an ended run to remove.
pub fn register_temporary_folder(path: &Path) {
    remember(path);
}

/// Adds `path` to the temporaries, forgetting those gone already (dropped, or removed by
/// their owner), so that the list stays as short as what exists.
fn remember(path: &Path) {
    let mut live = live_temporaries();
    live.retain(|known| known.exists());
    live.push(path.to_path_buf());
}

/// Removes the temporary files and folders still there (the process is about to exit
/// without running their destructors).
pub fn remove_live_temporaries() {
    for path in live_temporaries().drain(..) {
        if path.is_dir() {
            let _ = std::fs::remove_dir_all(&path);
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// The error without the temporary file's name that `tempfile` adds ("at path
/// .out.csv.123.x1Y2.tmp"): the message names the output, the file the user knows.
/// An error's text without the temporary file's name `tempfile` adds to its writes' errors
/// too (" at path ...": a full disk while a sink writes), for messages that name the output.
pub fn without_temporary_name_text(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at path \"") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

fn without_temporary_name(error: std::io::Error) -> std::io::Error {
    let text = without_temporary_name_text(&error);
    match text.len() == error.to_string().len() {
        true => error,
        false => std::io::Error::new(error.kind(), text),
    }
}

/// The output's name as its temporary files begin: cut to 200 bytes (at a character), so that
/// `.NAME.PID.RANDOM.tmp` fits the 255 bytes a file name may have where the output's name fits.
fn temporary_stem(target: &Path) -> String {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut end = name.len().min(200);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
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
pub fn persist(temp: NamedTempFile, target: &Path) -> Result<()> {
    // Off the list of temporaries once it is gone (renamed, or copied and removed).
    let temporary = temp.path().to_path_buf();
    let persisted = persist_named(temp, target);
    live_temporaries().retain(|path| *path != temporary);
    persisted
}

fn persist_named(mut temp: NamedTempFile, named: &Path) -> Result<()> {
    let fail = |source| Error::Output {
        path: named.to_path_buf(),
        source,
    };
    let target = &destination(named);
    temp.flush().map_err(fail)?;
    if written_through(target, named)? {
        return write_through(temp, target).map_err(fail);
    }
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

/// Copies `temp` into `target`, a device or FIFO, opened for writing without creating or
/// truncating anything. A FIFO without a reader is an error, not a wait without end.
fn write_through(temp: NamedTempFile, target: &Path) -> std::io::Result<()> {
    use std::io::Seek;
    use std::os::unix::fs::OpenOptionsExt;
    // A descriptor by name, open on a regular file (`> out.txt`, `>> log`), is written after
    // what the file holds (its own offset is not the descriptor's); a device or a FIFO from
    // its start, as before (a block device has no end to append at).
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .append(names_a_descriptor(target))
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(target)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ENXIO) {
                std::io::Error::other(
                    "nothing reads it (a FIFO without a reader, or a socket, which cannot be opened by its name)",
                )
            } else {
                e
            }
        })?;
    // Blocking writes from here on: the reader is there.
    set_blocking(&out)?;
    let mut file = temp.into_file();
    file.rewind()?;
    std::io::copy(&mut file, &mut out)?;
    out.flush()
}

/// Clears `O_NONBLOCK` on `file`.
fn set_blocking(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor this function borrows open; F_GETFL/F_SETFL touch flags only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
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

/// `std::fs::create_dir_all`, saying which file is in the way where a part of `dir` is a file
/// (the system says only "File exists").
pub fn make_dirs(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| {
        // A file, or a device such as /dev/null, where a directory must be.
        let in_the_way = dir
            .ancestors()
            .find(|part| part.exists() && !part.is_dir())
            .map(Path::to_path_buf);
        match in_the_way {
            Some(file) if file.is_file() => std::io::Error::new(
                e.kind(),
                format!("{} is a file, not a directory", file.display()),
            ),
            Some(other) => {
                std::io::Error::new(e.kind(), format!("{} is not a directory", other.display()))
            }
            None => e,
        }
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_device_where_a_directory_must_be_is_named() {
        let error = super::make_dirs(std::path::Path::new("/dev/null/state")).unwrap_err();
        assert_eq!(error.to_string(), "/dev/null is not a directory");
        let error = super::make_dirs(std::path::Path::new("/dev/null")).unwrap_err();
        assert_eq!(error.to_string(), "/dev/null is not a directory");
    }

    #[test]
    fn an_error_names_the_output_not_its_temporary_file() {
        let error = std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "Permission denied (os error 13) at path \"/out/.o.csv.1.aB3.tmp\"",
        );
        let shown = without_temporary_name(error);
        assert_eq!(shown.to_string(), "Permission denied (os error 13)");
        assert_eq!(shown.kind(), std::io::ErrorKind::PermissionDenied);
    }

    use super::*;

    #[test]
    fn a_file_in_the_way_of_a_directory_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = make_dirs(&file.join("sub")).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("{} is a file, not a directory", file.display())
        );
        make_dirs(&dir.path().join("a/b")).unwrap();
        assert!(dir.path().join("a/b").is_dir());
    }

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
    fn devices_and_fifos_are_written_through_never_replaced() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        // A character device (a null device of our own, made where root may; never the
        // host's /dev/null): it stays one.
        let device = dir.path().join("null");
        let name = std::ffi::CString::new(device.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path; makedev(1, 3) is the null device.
        let made =
            unsafe { libc::mknod(name.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
        if made == 0 {
            write(&device, b"gone").unwrap();
            assert!(std::fs::metadata(&device)
                .unwrap()
                .file_type()
                .is_char_device());
            std::fs::remove_file(&device).unwrap();
        }
        // A FIFO with a reader gets the bytes and stays a FIFO.
        let fifo = dir.path().join("out.fifo");
        let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path; mkfifo creates the node.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        // The reader may not have opened it yet: retry until it has (an event, not a guess).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match write(&fifo, b"through the pipe") {
                Ok(()) => break,
                Err(e) if std::time::Instant::now() < deadline => {
                    assert!(e.to_string().contains("nothing reads it"), "{e}");
                    std::thread::yield_now();
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(reader.join().unwrap(), b"through the pipe");
        assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
        // Without a reader: an error, not a hang.
        let error = write(&fifo, b"x").unwrap_err().to_string();
        assert!(error.contains("nothing reads it"), "{error}");
        // A directory is not an output.
        let error = write(dir.path(), b"x").unwrap_err().to_string();
        assert!(error.contains("it is a directory"), "{error}");
        // No temporary file left beside any of them.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_link_is_followed_and_stays_a_link() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::fs::write(dir.path().join("real/data.csv"), "old").unwrap();
        // Relative links, one to another: the file at the end is replaced.
        std::os::unix::fs::symlink("real/data.csv", dir.path().join("current.csv")).unwrap();
        std::os::unix::fs::symlink("current.csv", dir.path().join("latest.csv")).unwrap();
        write(&dir.path().join("latest.csv"), b"new").unwrap();
        for link in ["current.csv", "latest.csv"] {
            let meta = std::fs::symlink_metadata(dir.path().join(link)).unwrap();
            assert!(meta.file_type().is_symlink(), "{link}");
        }
        assert_eq!(
            std::fs::read(dir.path().join("real/data.csv")).unwrap(),
            b"new"
        );
        // Links that name each other: an error, and both stay links.
        std::os::unix::fs::symlink("b.csv", dir.path().join("a.csv")).unwrap();
        std::os::unix::fs::symlink("a.csv", dir.path().join("b.csv")).unwrap();
        assert!(write(&dir.path().join("a.csv"), b"x").is_err());
        let link = std::fs::symlink_metadata(dir.path().join("a.csv")).unwrap();
        assert!(link.file_type().is_symlink());
        // A dangling link names the file to create (its folder too).
        std::os::unix::fs::symlink("later/x.csv", dir.path().join("dangling.csv")).unwrap();
        write(&dir.path().join("dangling.csv"), b"made").unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("later/x.csv")).unwrap(),
            b"made"
        );
        // Names longer than a temporary name may add to: the output is still written.
        let long = dir.path().join(format!("{}.csv", "é".repeat(125)));
        write(&long, b"long").unwrap();
        assert_eq!(std::fs::read(&long).unwrap(), b"long");
    }

    #[test]
    fn a_descriptor_by_name_is_appended_to_never_renamed_over() {
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        std::fs::write(&path, "before\n").unwrap();
        // As a shell's `>> out.txt` leaves a descriptor open on the file.
        let open = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        let fd = open.as_raw_fd();
        for named in [format!("/dev/fd/{fd}"), format!("/proc/self/fd/{fd}")] {
            write(Path::new(&named), format!("{named}\n").as_bytes()).unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("before\n/dev/fd/{fd}\n/proc/self/fd/{fd}\n")
        );
        assert!(names_a_descriptor(Path::new("/proc/123/fd/4")));
        assert!(!names_a_descriptor(Path::new("/dev/fd")));
        assert!(!names_a_descriptor(Path::new("dev/fd/1")));
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
