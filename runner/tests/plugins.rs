//! Plugins through the binary: real shared libraries, built here with their own `cargo build`
//! (into a separate target directory, so it never waits on the build running these tests).

mod common;
use common::*;

use predicates::prelude::*;
use std::path::PathBuf;
use std::sync::OnceLock;

/// Builds the example and fault-test plugins once; returns the folder holding the libraries.
fn plugin_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = repo_root().join("target").join("plugin-tests");
        let names = [
            "min_length",
            "faulty",
            "abi_v2",
            "stemmer",
            "distinct_count",
        ];
        let mut build = nested_cargo();
        build.arg("build").arg("--target-dir").arg(&target);
        for name in names {
            build.args(["-p", name]);
        }
        let out = build.current_dir(repo_root()).output().expect("cargo runs");
        assert!(
            out.status.success(),
            "building the test plugins failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dir = target.join("debug");
        for name in names {
            assert!(
                dir.join(format!("lib{name}.so")).exists(),
                "lib{name}.so was not built"
            );
        }
        dir
    })
}

fn lib(name: &str) -> String {
    plugin_dir()
        .join(format!("lib{name}.so"))
        .display()
        .to_string()
}

fn pipeline(dir: &std::path::Path, plugin: &str, config: &str) -> PathBuf {
    write(
        dir,
        "in.txt",
        &"Romeo wherefore art thou Romeo a an the balcony\n".repeat(3000),
    );
    write(
        dir,
        "p.yaml",
        &format!(
            "name: t\nsource:\n  type: file\n  path: in.txt\ntransforms:\n  - type: tokenize\n  - type: plugin\n    path: {plugin}\n    config: {config}\n  - type: group_count\n    by: word\n  - type: sort\n    by: [count desc, word]\nsinks:\n  - type: stdout\n    format: tsv\n"
        ),
    )
}

#[test]
fn a_plugin_filters_rows_identically_on_every_core_count() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &lib("min_length"), "{column: word, min: 5}");
    let expected = "word\tcount\nromeo\t6000\nbalcony\t3000\nwherefore\t3000\n";
    for cores in ["1", "2", "4"] {
        runner()
            .arg("run")
            .arg(&p)
            .args(["--cores", cores])
            .assert()
            .success()
            .stdout(expected);
    }
}

#[test]
fn bad_config_and_create_failures_are_reported_at_validation() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &lib("min_length"), "{column: word, min: many}");
    runner()
        .arg("validate")
        .arg(&p)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "transforms.1 (plugin): plugin min_length: `min` must be a whole number",
        ));
    let p = pipeline(dir.path(), &lib("faulty"), "{fault: create-error}");
    runner()
        .arg("validate")
        .arg(&p)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "plugin faulty: this plugin refuses to start",
        ));
    let p = pipeline(dir.path(), &lib("faulty"), "{fault: create-panic}");
    runner().arg("validate").arg(&p).assert().code(2).stderr(
        predicate::str::contains("plugin faulty: the plugin panicked: boom in create")
            .and(predicate::str::contains("RUST_BACKTRACE").not()),
    );
}

#[test]
fn errors_and_panics_while_transforming_fail_the_run_not_the_host() {
    let dir = tempfile::tempdir().unwrap();
    for (fault, message) in [
        (
            "transform-error",
            "plugin faulty: cannot transform this batch",
        ),
        (
            "transform-panic",
            "plugin faulty: the plugin panicked: boom in transform",
        ),
        ("wrong-schema", "columns here: n"),
        (
            "sometimes-wrong-schema",
            "plugin faulty returned columns (n Int64) but announced (word Utf8)",
        ),
    ] {
        let p = pipeline(dir.path(), &lib("faulty"), &format!("{{fault: {fault}}}"));
        let expected_code = if fault == "wrong-schema" { 2 } else { 1 };
        runner()
            .arg("run")
            .arg(&p)
            .assert()
            .code(expected_code)
            .stderr(predicate::str::contains(message));
    }
    // Without a fault the same library passes rows through.
    let p = pipeline(dir.path(), &lib("faulty"), "{}");
    runner()
        .arg("run")
        .arg(&p)
        .assert()
        .success()
        .stdout(predicate::str::contains("romeo\t6000"));
}

#[test]
fn libraries_that_are_not_plugins_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &lib("abi_v2"), "{}");
    runner()
        .arg("validate")
        .arg(&p)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "speaks plugin ABI version 2, but this runner speaks version 1",
        ));
    let not_a_library = write(dir.path(), "fake.so", "this is text");
    let p = pipeline(dir.path(), &not_a_library.display().to_string(), "{}");
    runner()
        .arg("validate")
        .arg(&p)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is not a loadable shared library"));
    let p = pipeline(dir.path(), "libmissing.so", "{}");
    runner().arg("validate").arg(&p).assert().code(2).stderr(
        predicate::str::contains("cannot open plugin").and(predicate::str::contains(
            "help: build it first: a Rust plugin with `cargo build --release -p missing`",
        )),
    );
    // A real shared library without the plugin symbols.
    if let Some(libm) = [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
        "/lib64/libm.so.6",
    ]
    .iter()
    .find(|p| std::path::Path::new(p).exists())
    {
        let p = pipeline(dir.path(), libm, "{}");
        runner()
            .arg("validate")
            .arg(&p)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(
                "has no `runner_plugin_abi_version` symbol",
            ));
    }
}

#[test]
fn plugin_new_writes_a_crate_that_tests_builds_and_loads_from_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    runner()
        .args(["plugin", "new", "shout"])
        .arg("--dir")
        .arg(dir.path())
        .assert()
        .success()
        .stdout(
            predicate::str::contains("wrote").and(predicate::str::contains(format!(
                "next: cd {} && cargo test && cargo build --release",
                dir.path().join("shout").display()
            ))),
        );
    runner()
        .args(["plugin", "new", "shout"])
        .arg("--dir")
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already exists"));
    let manifest = dir.path().join("shout/Cargo.toml");
    let target = repo_root().join("target").join("plugin-tests");
    // Its own cargo build, outside the runner workspace: the template's test passes as is.
    let tested = nested_cargo()
        .args(["test", "-q", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .status()
        .unwrap();
    assert!(tested.success(), "the template's own test fails");
    // As the project's own code: formatted, and clean under clippy -D warnings.
    let formatted = nested_cargo()
        .args(["fmt", "--check", "--manifest-path"])
        .arg(&manifest)
        .status()
        .unwrap();
    assert!(formatted.success(), "the generated crate is not formatted");
    let linted = nested_cargo()
        .args(["clippy", "-q", "--all-targets", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .args(["--", "-D", "warnings"])
        .status()
        .unwrap();
    assert!(linted.success(), "the generated crate has clippy warnings");
    let built = nested_cargo()
        .args(["build", "-q", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .status()
        .unwrap();
    assert!(built.success());
    let p = pipeline(
        dir.path(),
        &target.join("debug/libshout.so").display().to_string(),
        "{suffix: '!'}",
    );
    runner()
        .arg("run")
        .arg(&p)
        .assert()
        .success()
        .stdout(predicate::str::contains("romeo!\t6000"));
}

#[test]
fn the_stemmed_romeo_pipeline_counts_word_forms_together() {
    let Some(play) = romeo_text() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = runner()
        .args(["run", "pipelines/romeo_stemmed.yaml", "--cores", "2"])
        .arg("--set")
        .arg(format!("source.path={}", play.display()))
        .arg("--set")
        .arg(format!("transforms.2.path={}", lib("stemmer")))
        .arg("--set")
        .arg(format!(
            "sinks.1.path={}",
            dir.path().join("s.csv").display()
        ))
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = std::fs::read_to_string(dir.path().join("s.csv")).unwrap();
    // "love" alone counts 136; with loved, loves, loving... it counts more.
    assert!(csv.contains("\nlove,147\n"), "{csv}");
    assert!(csv.contains("\nthi,170\n"), "{csv}");
}

#[test]
fn a_plugin_written_in_c_works_through_the_same_abi() {
    let dir = tempfile::tempdir().unwrap();
    let library = dir.path().join("libc_passthrough.so");
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let compiled = std::process::Command::new(&compiler)
        .args([
            "-shared",
            "-fPIC",
            "-O2",
            "-D_GNU_SOURCE",
            "-Wall",
            "-Werror",
            "-I",
        ])
        .arg(repo_root().join("plugins/sdk/include"))
        .arg("-o")
        .arg(&library)
        .arg(repo_root().join("plugins/c_passthrough/passthrough.c"))
        .status();
    match compiled {
        Ok(status) => assert!(status.success(), "the C plugin does not compile"),
        Err(e) => {
            missing_input(&format!("no C compiler ({compiler}: {e})"));
            return;
        }
    }
    let p = pipeline(dir.path(), &library.display().to_string(), "{}");
    runner()
        .arg("run")
        .arg(&p)
        .args(["--cores", "2"])
        .assert()
        .success()
        .stdout("word\tcount\nromeo\t6000\na\t3000\nan\t3000\nart\t3000\nbalcony\t3000\nthe\t3000\nthou\t3000\nwherefore\t3000\n");
    let p = pipeline(dir.path(), &library.display().to_string(), "{fail: true}");
    runner()
        .arg("validate")
        .arg(&p)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "plugin c_passthrough: asked to fail by its config",
        ));
}

#[test]
fn a_stateful_plugin_reports_through_finish_on_any_core_count() {
    let dir = tempfile::tempdir().unwrap();
    let words: String = (0..200_000).map(|i| format!("w{} ", i % 7919)).collect();
    write(dir.path(), "in.txt", &words);
    let p = write(
        dir.path(),
        "p.yaml",
        &format!("name: t\nsource:\n  type: file\n  path: in.txt\ntransforms:\n  - type: tokenize\n  - type: plugin\n    path: {}\n    config: {{column: word}}\nsinks:\n  - type: stdout\n    format: tsv\n", lib("distinct_count")),
    );
    for cores in ["1", "3"] {
        runner()
            .arg("run")
            .arg(&p)
            .args(["--cores", cores])
            .assert()
            .success()
            .stdout("column\tdistinct\nword\t7919\n");
    }
    // After a global stage (and after an aggregation) its finish runs too: it printed an
    // empty table there, exit 0.
    for before in [
        "  - {type: sort, by: word}\n",
        "  - {type: group_count, by: word}\n  - {type: limit, n: 5000}\n",
        // Streamed to the sinks: the limit stops the reading, the plugin still finishes.
        "  - {type: limit, n: 5000}\n",
    ] {
        let p = write(
            dir.path(),
            "p.yaml",
            &format!("name: t\nsource:\n  type: file\n  path: in.txt\ntransforms:\n  - type: tokenize\n{before}  - type: plugin\n    path: {}\n    config: {{column: word}}\nsinks:\n  - type: stdout\n    format: tsv\n", lib("distinct_count")),
        );
        let expected = if before.contains("limit") {
            "5000"
        } else {
            "7919"
        };
        runner()
            .arg("run")
            .arg(&p)
            .assert()
            .success()
            .stdout(format!("column\tdistinct\nword\t{expected}\n"));
    }
}

#[test]
fn a_stateful_plugin_finishes_when_a_stream_stops_and_its_rows_are_a_last_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let words: String = (0..50_000).map(|i| format!("w{} ", i % 7919)).collect();
    for (before, after) in [
        // Before the aggregation (none): its last rows are the last epoch.
        ("", ""),
        // After the aggregation: its finish runs on the last epoch's table.
        ("  - {type: group_count, by: word}\n", ""),
        // Before an aggregation: its last rows are counted into the state.
        ("", "  - {type: group_count, by: column}\n"),
    ] {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let text = words.clone();
        let server = std::thread::spawn(move || {
            let (mut client, _) = listener.accept().unwrap();
            std::io::Write::write_all(&mut client, text.as_bytes()).unwrap();
        });
        let p = write(
            dir.path(),
            "s.yaml",
            &format!("name: s\nmode: stream\ntrigger: {{available_now: true}}\nsource: {{type: socket, host: 127.0.0.1, port: {port}}}\ntransforms:\n  - type: tokenize\n{before}  - type: plugin\n    path: {}\n    config: {{column: word}}\n{after}sinks:\n  - type: stdout\n    format: tsv\n", lib("distinct_count")),
        );
        let out = runner().arg("run").arg(&p).output().unwrap();
        server.join().unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let last = stdout.lines().last().unwrap_or_default();
        let expected = if after.is_empty() {
            "\tword\t7919"
        } else {
            "\tword\t1"
        };
        assert!(last.ends_with(expected), "{before}{after}: {stdout}");
    }
}

#[test]
fn plan_loads_no_plugin_and_lists_the_steps_after_it_unchecked() {
    let dir = tempfile::tempdir().unwrap();
    // A plugin that fails as soon as it is created, and one whose file does not exist:
    // `validate` loads them and fails; `plan` loads neither.
    for (plugin, config, why) in [
        (
            lib("faulty"),
            "{fault: create-panic}",
            "the plugin panicked: boom in create",
        ),
        (
            dir.path().join("libmissing.so").display().to_string(),
            "{}",
            "libmissing.so",
        ),
    ] {
        let p = pipeline(dir.path(), &plugin, config);
        runner()
            .arg("validate")
            .arg(&p)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(why));
        let out = runner().arg("plan").arg(&p).output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("transforms.0    tokenize [")
                && text.contains("line: text -> word: text"),
            "{text}"
        );
        for step in ["transforms.1    plugin", "transforms.2    group_count"] {
            assert!(
                text.contains(&format!("{step} [not checked: runner plan loads no plugin")),
                "{text}"
            );
        }
    }
}

#[test]
fn a_library_built_for_another_architecture_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(lib("min_length")).unwrap();
    // ELF e_machine (offset 18): claim AArch64 (183) or, on an AArch64 host, x86-64 (62).
    let other: u16 = if cfg!(target_arch = "aarch64") {
        62
    } else {
        183
    };
    bytes[18..20].copy_from_slice(&other.to_le_bytes());
    let foreign = dir.path().join("libforeign.so");
    std::fs::write(&foreign, bytes).unwrap();
    let p = pipeline(
        dir.path(),
        &foreign.display().to_string(),
        "{column: word, min: 2}",
    );
    runner()
        .arg("validate")
        .arg(&p)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is not a loadable shared library"));
}

#[test]
fn a_slow_plugin_is_reported_and_its_timeout_stops_the_run_with_outputs_intact() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.txt", "a b\nb\nc b\n");
    let slow = |seconds: f64, limits: &str| {
        write(
            dir.path(),
            "slow.yaml",
            &format!(
                "name: slow\nsource: {{type: file, path: in.txt}}\ntransforms:\n  - type: plugin\n    path: {}\n    config: {{fault: slow, seconds: {seconds}}}\n{limits}  - type: tokenize\n    column: line\n  - type: group_count\n    by: word\nsinks:\n  - {{type: csv, path: out.csv}}\n",
                lib("faulty")
            ),
        )
    };
    // Slower than `warn_after`: a warning while it works, then the run finishes normally.
    runner()
        .arg("run")
        .arg(slow(1.5, "    warn_after: 300ms\n"))
        .assert()
        .success()
        .stderr(predicate::str::contains("plugin faulty has spent 0."))
        .stderr(predicate::str::contains(
            "s on one batch of 3 rows and is still working",
        ));
    let counts = std::fs::read_to_string(dir.path().join("out.csv")).unwrap();
    assert_eq!(counts, "word,count\nb,3\na,1\nc,1\n");
    // Past `timeout`: the run fails with exit 1, the previous output stays as it was.
    runner()
        .arg("run")
        .arg(slow(30.0, "    timeout: 300ms\n"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "plugin faulty has spent longer than its timeout (300ms) on one batch of 3 rows: stopping the run",
        ));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.csv")).unwrap(),
        counts
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn plan_names_the_plugin_and_its_library() {
    let dir = tempfile::tempdir().unwrap();
    let library = lib("min_length");
    let p = pipeline(dir.path(), &library, "{column: word, min: 5}");
    // `plan` names the library without loading it.
    runner()
        .arg("plan")
        .arg(&p)
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "plugin from {library} (not loaded)"
        )));
    let out = runner()
        .args(["plan", "--format", "json"])
        .arg(&p)
        .output()
        .unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        plan["transforms"][1]["detail"],
        format!("plugin from {library} (not loaded)")
    );
}
