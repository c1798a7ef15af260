//! Faults from outside, with the real binary: a full disk (a file-size limit) while writing
//! outputs. The previous outputs must stay whole and no temporary file may stay behind.

mod common;
use common::*;

/// The files in `dir` whose names end in `.tmp`.
fn temp_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".tmp"))
        .collect()
}

#[test]
fn a_file_size_limit_fails_the_write_cleanly_and_keeps_the_previous_output() {
    let dir = tempfile::tempdir().unwrap();
    let words: Vec<String> = (0..40).map(|i| format!("word{i} ").repeat(i + 1)).collect();
    write(dir.path(), "in.txt", &words.concat());
    let pipeline = write(
        dir.path(),
        "p.yaml",
        "name: t\nsource:\n  type: file\n  path: in.txt\ntransforms:\n  - type: tokenize\n  - type: group_count\n    by: word\nsinks:\n  - type: chart\n    path: out/chart.png\n    x: word\n    y: count\n",
    );
    let chart = dir.path().join("out/chart.png");
    runner().arg("run").arg(&pipeline).assert().success();
    let before = std::fs::read(&chart).unwrap();
    assert!(before.len() > 20 * 1024, "the chart must outgrow the limit");

    // Past `ulimit -f` the kernel would kill the process mid-write (SIGXFSZ); runner ignores
    // the signal, so the write fails with EFBIG and is reported.
    write(dir.path(), "in.txt", "other words entirely\n");
    let limited = std::process::Command::new("bash")
        .arg("-c")
        .arg("ulimit -f 20; exec \"$0\" \"$@\"")
        .arg(assert_cmd::cargo::cargo_bin("runner"))
        .arg("run")
        .arg(&pipeline)
        .env("RUNNER_LOCK_DIR", unique_lock_dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&limited.stderr);
    assert_eq!(limited.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot write output") && stderr.contains("File too large"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&chart).unwrap(),
        before,
        "previous chart intact"
    );
    assert!(temp_files(&dir.path().join("out")).is_empty());

    // Without the limit the next run replaces it.
    runner().arg("run").arg(&pipeline).assert().success();
    assert_ne!(std::fs::read(&chart).unwrap(), before);
    assert!(temp_files(&dir.path().join("out")).is_empty());
}
