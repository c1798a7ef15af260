//! A plugin that hands back invalid Arrow data, bogus errors or an incomplete function table
//! (`plugins/c_hostile`, compiled here with the system C compiler): each is an error naming the
//! plugin, exit 1 (or 2 at validation), never a panic, an abort or a signal.

mod common;
use common::*;

use std::path::{Path, PathBuf};

/// Compiles `plugins/c_hostile/hostile.c` with `defines` into `dir`, or `None` without a C
/// compiler (a failure under `CI=true`).
fn hostile(dir: &Path, defines: &[&str]) -> Option<PathBuf> {
    let library = dir.join(format!("libc_hostile{}.so", defines.join("")));
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let compiled = std::process::Command::new(&compiler)
        .args([
            "-shared",
            "-fPIC",
            "-O1",
            "-D_GNU_SOURCE",
            "-Wall",
            "-Werror",
        ])
        .args(defines)
        .arg("-I")
        .arg(repo_root().join("plugins/sdk/include"))
        .arg("-o")
        .arg(&library)
        .arg(repo_root().join("plugins/c_hostile/hostile.c"))
        .status();
    match compiled {
        Ok(status) => {
            assert!(status.success(), "hostile.c does not compile");
            Some(library)
        }
        Err(e) => {
            missing_input(&format!("no C compiler ({compiler}: {e})"));
            None
        }
    }
}

fn pipeline(dir: &Path, library: &Path, config: &str) -> PathBuf {
    write(dir, "in.txt", &"romeo and juliet\n".repeat(50));
    write(
        dir,
        "p.yaml",
        &format!(
            "name: t\nsource:\n  type: file\n  path: in.txt\ntransforms:\n  - type: tokenize\n  - type: plugin\n    path: {}\n    config: {config}\n  - type: group_count\n    by: word\n  - type: sort\n    by: [count desc, word desc]\nsinks:\n  - type: stdout\n    format: tsv\n",
            library.display()
        ),
    )
}

/// Runs `p` and checks it failed with `code` and a message containing `expected`, cleanly.
fn fails_cleanly(p: &Path, command: &str, code: i32, expected: &str) {
    let out = runner().arg(command).arg(p).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{command} {}: {stderr}",
        p.display()
    );
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in:\n{stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{stderr}"
    );
    assert!(
        !stderr.contains('\x1b'),
        "a control sequence reached stderr: {stderr:?}"
    );
}

const FAULTS: &[(&str, &str)] = &[
    ("struct-longer-than-child", "returned an invalid batch"),
    ("null-row", "rows are null"),
    ("offsets-past-data", "returned an invalid batch"),
    ("large-offsets-past-data", "returned an invalid batch"),
    ("offsets-decreasing", "returned an invalid batch"),
    ("child-longer-than-buffers", "claims 1099511627776 rows"),
    ("negative-length", "has length -5"),
    ("huge-length", "claims 4611686018427387904 rows"),
    ("null-format", "a schema's format is NULL"),
    ("missing-buffers", "has 1 buffers instead of 3"),
    ("null-child-pointer", "not readable"),
    ("wrong-type", "instead of a batch (a struct array)"),
    ("dictionary", "dictionary"),
    ("huge-error", "[message cut: 1099511627776 bytes claimed]"),
    (
        "control-error",
        "bad \\u{1b}[31mred\\u{1b}[0m thing\\nerror: forged",
    ),
    (
        "status-error",
        "it returned status 7, which the ABI does not have (0 ok, 1 error, 2 a panic), and no message",
    ),
];

#[test]
fn invalid_batches_from_transform_are_errors_naming_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let Some(library) = hostile(dir.path(), &[]) else {
        return;
    };
    for (fault, expected) in FAULTS.iter().chain(&[("untouched", "returned no schema")]) {
        let p = pipeline(dir.path(), &library, &format!("{{fault: {fault}}}"));
        fails_cleanly(&p, "run", 1, expected);
        if !fault.ends_with("error") {
            fails_cleanly(&p, "run", 1, "plugin c_hostile returned an invalid batch: ");
        }
    }
}

#[test]
fn invalid_batches_from_finish_are_errors_naming_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let Some(library) = hostile(dir.path(), &[]) else {
        return;
    };
    for (fault, expected) in FAULTS {
        let p = pipeline(
            dir.path(),
            &library,
            &format!("{{fault: {fault}, in: finish}}"),
        );
        fails_cleanly(&p, "run", 1, expected);
    }
}

#[test]
fn a_function_table_with_null_entries_unreadable_pointers_or_too_short_is_refused_at_validation() {
    let dir = tempfile::tempdir().unwrap();
    for (define, expected) in [
        (
            "-DHOSTILE_NULL_CREATE",
            "invalid function table: its `create` entry is NULL",
        ),
        (
            "-DHOSTILE_NULL_TRANSFORM",
            "invalid function table: its `transform` entry is NULL",
        ),
        (
            "-DHOSTILE_SHORT_TABLE",
            "invalid function table: version 1 and size 8",
        ),
        (
            "-DHOSTILE_UNMAPPED_TABLE",
            "invalid function table: a pointer 0x1000 to memory that is not readable",
        ),
        (
            "-DHOSTILE_UNMAPPED_NAME",
            "invalid function table: its `name` points to memory that is not readable",
        ),
    ] {
        let Some(library) = hostile(dir.path(), &[define]) else {
            return;
        };
        let p = pipeline(dir.path(), &library, "{}");
        fails_cleanly(&p, "validate", 2, expected);
    }
}

#[test]
fn the_hostile_plugin_passes_rows_through_when_asked_for_no_fault() {
    let dir = tempfile::tempdir().unwrap();
    // Also when its batches' nullability flags differ from its empty probe's.
    for defines in [&[][..], &["-DHOSTILE_FLIP_NULLABLE"][..]] {
        let Some(library) = hostile(dir.path(), defines) else {
            return;
        };
        let p = pipeline(dir.path(), &library, "{}");
        runner()
            .arg("run")
            .arg(&p)
            .assert()
            .success()
            .stdout("word\tcount\nromeo\t50\njuliet\t50\nand\t50\n");
    }
}

#[test]
fn structs_copied_from_the_hosts_without_moving_them_are_refused_not_freed_twice() {
    let dir = tempfile::tempdir().unwrap();
    let Some(library) = hostile(dir.path(), &[]) else {
        return;
    };
    for (fault, expected) in [
        (
            "copied-input",
            "plugin c_hostile returned the input array as its own without taking it over",
        ),
        (
            "shared-schema",
            "plugin c_hostile returned the input schema as its own without taking it over",
        ),
    ] {
        let p = pipeline(dir.path(), &library, &format!("{{fault: {fault}}}"));
        fails_cleanly(&p, "run", 1, expected);
    }
}

#[test]
fn columns_in_other_arrow_types_are_converted_and_a_name_given_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let Some(library) = hostile(dir.path(), &[]) else {
        return;
    };
    // An int32 column is an integer (it was written out as null).
    let p = pipeline(dir.path(), &library, "{fault: int32-column}");
    runner()
        .arg("run")
        .arg(&p)
        .assert()
        .success()
        .stdout("word\tcount\n7\t150\n");
    let p = pipeline(dir.path(), &library, "{fault: duplicate-names}");
    fails_cleanly(
        &p,
        "validate",
        2,
        "plugin c_hostile returned two columns named `word`",
    );
}

#[test]
fn the_timeout_bounds_create_and_finish_too() {
    let dir = tempfile::tempdir().unwrap();
    let Some(library) = hostile(dir.path(), &[]) else {
        return;
    };
    for (hang, command, what) in [
        ("create", "validate", "`create`"),
        ("create", "run", "`create`"),
        ("finish", "run", "`finish`"),
    ] {
        write(dir.path(), "in.txt", "romeo\n");
        let p = write(
            dir.path(),
            "p.yaml",
            &format!(
                "name: t\nsource: {{type: file, path: in.txt}}\ntransforms:\n  - type: plugin\n    path: {}\n    timeout: 200ms\n    config: {{hang: {hang}}}\nsinks:\n  - type: stdout\n",
                library.display()
            ),
        );
        fails_cleanly(
            &p,
            command,
            1,
            &format!("plugin c_hostile has spent longer than its timeout (200ms) on {what}"),
        );
    }
}
