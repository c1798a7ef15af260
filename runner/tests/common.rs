//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use assert_cmd::Command;

pub fn runner() -> Command {
    let mut cmd = Command::cargo_bin("runner").expect("the runner binary is built");
    cmd.env_remove("RUST_LOG");
    // Tests run shared pipeline files at the same time; each run gets its own lock folder
    // (tests/locking.rs checks the lock itself).
    cmd.env("RUNNER_LOCK_DIR", unique_lock_dir());
    cmd
}

/// A fresh folder under target/ for one run's lock file.
pub fn unique_lock_dir() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    repo_root()
        .join("target")
        .join("test-locks")
        .join(format!("{}-{n}", std::process::id()))
}

/// The repository root (the workspace).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("runner/ is inside the workspace")
        .to_path_buf()
}

/// Romeo and Juliet from `data/` or `../shared/data/`, or `None` (the caller says it skipped).
/// Under `CI=true` a missing play fails the test instead: CI must never pass by skipping.
pub fn romeo_text() -> Option<PathBuf> {
    let root = repo_root();
    let found = [
        root.join("data/RomeoAndJuliet.txt"),
        root.join("../shared/data/RomeoAndJuliet.txt"),
    ]
    .into_iter()
    .find(|p| p.is_file());
    if found.is_none() {
        missing_input("RomeoAndJuliet.txt is not in data/ or ../shared/data/");
    }
    found
}

/// Says a test's input is missing: a failure under `CI=true`, else a note (the caller returns).
pub fn missing_input(what: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} (under CI=true a missing input fails the test instead of skipping it)");
    }
    eprintln!("SKIPPED: {what}");
}

/// A nested `cargo`, without the variables cargo set for this test binary (they describe the
/// runner package and must not leak into another build).
pub fn nested_cargo() -> std::process::Command {
    let mut command =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for (key, _) in
        std::env::vars().filter(|(k, _)| k.starts_with("CARGO_") || k.starts_with("RUSTC"))
    {
        command.env_remove(key);
    }
    command
}

/// `dir/romeo.yaml`: the chapter's word count (romeo.yaml's steps) over `play`, named `name`,
/// with `sinks` (YAML list items, each a line) in place of romeo.yaml's.
pub fn romeo_pipeline(dir: &Path, play: &Path, name: &str, sinks: &[&str]) -> PathBuf {
    let sinks: String = sinks.iter().map(|s| format!("  - {s}\n")).collect();
    write(
        dir,
        "romeo.yaml",
        &format!(
            "name: {name}\nsource: {{type: file, path: {}}}\ntransforms:\n  - {{type: tokenize, lowercase: true, strip_punctuation: all}}\n  - {{type: stopwords, language: english}}\n  - {{type: group_count, by: word}}\n  - {{type: filter, where: count >= 60}}\n  - {{type: sort, by: [count desc, word asc]}}\nsinks:\n{sinks}",
            play.display()
        ),
    )
}

/// The records of a CSV file the `csv` sink wrote, without its header, split at commas (for
/// results whose values hold none).
pub fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect()
}

/// Writes `text` as `name` in `dir` and returns its path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// A one-shot HTTP/1.1 server on 127.0.0.1 answering every request with `status` and `body`.
/// Returns its base URL; the server thread serves up to `requests` connections.
pub fn http_server(status: &'static str, body: Vec<u8>, requests: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buffer = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buffer[..n]),
                }
            }
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    format!("http://{address}")
}

/// `runner` as a plain process, for tests that send it signals or watch it run: its own lock
/// folder, no RUST_LOG from the test's environment.
pub fn runner_process() -> std::process::Command {
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("runner"));
    command
        .env_remove("RUST_LOG")
        .env("RUNNER_LOCK_DIR", unique_lock_dir());
    command
}

/// `runner run pipeline extra...`: exit code (-1 when a signal ended it), stdout, stderr.
pub fn run_pipeline(pipeline: &Path, extra: &[&str]) -> (i32, String, String) {
    let out = runner()
        .arg("run")
        .arg(pipeline)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A loopback port nothing listens on (it was free a moment ago).
/// Makes closing `stream` send a reset (RST) instead of a FIN: linger on, for 0 seconds.
pub fn reset_on_close(stream: &std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a correctly sized option value.
    let set = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::from_ref(&linger).cast::<libc::c_void>(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(set, 0, "setting SO_LINGER");
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits for `child` (already started): its exit code (`None` when a signal ended it) and its
/// peak resident memory in MB, as the kernel measured it.
pub fn wait_with_peak_rss(child: &std::process::Child) -> (Option<i32>, f64) {
    let mut status = 0;
    // SAFETY: plain structs filled by the kernel for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, writing into the two locals above.
    let waited = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(waited, child.id() as i32);
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (code, usage.ru_maxrss as f64 / 1024.0) // kilobytes on Linux
}

/// Runs `command` (a `runner_process()` with its arguments, and any input or folder) with
/// stdout dropped and stderr kept in `log`: its exit code (`None` when a signal ended it), its
/// stderr and its peak resident memory in MB.
#[allow(clippy::zombie_processes)] // reaped by wait4, which also gives its resource usage
pub fn run_with_peak_rss(
    mut command: std::process::Command,
    log: &Path,
) -> (Option<i32>, String, f64) {
    let child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let (code, peak_mb) = wait_with_peak_rss(&child);
    (code, std::fs::read_to_string(log).unwrap(), peak_mb)
}

/// A pipe whose reading end is already closed, as `| head` leaves it: its writing end.
pub fn closed_pipe() -> std::fs::File {
    use std::os::fd::FromRawFd;
    let mut ends = [0; 2];
    // SAFETY: `ends` has room for the two descriptors pipe(2) writes.
    assert_eq!(unsafe { libc::pipe(ends.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just opened and are owned here alone.
    let (read, write) = unsafe {
        (
            std::fs::File::from_raw_fd(ends[0]),
            std::fs::File::from_raw_fd(ends[1]),
        )
    };
    drop(read);
    write
}

/// `batch` as a Parquet file at `path`, one row group, compressed with `compression`.
pub fn write_parquet(
    path: &Path,
    batch: &arrow_array::RecordBatch,
    compression: parquet::basic::Compression,
) {
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(compression)
        .build();
    let file = std::fs::File::create(path).unwrap();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
}
