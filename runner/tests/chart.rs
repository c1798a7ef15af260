//! The chart sink through the binary: the romeo chart with no system fonts, compared with a
//! golden image; the empty chart; validation; atomic replacement under a reader.

mod common;
use common::*;
use predicates::prelude::*;

fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).expect("a PNG frame");
    assert_eq!(info.color_type, png::ColorType::Rgb);
    (info.width, info.height, pixels)
}

/// The most runs of bar-coloured pixels (the `cool` palette: blue 255, red + green 255) found on
/// any row: the number of vertical bars.
fn bar_count(width: u32, pixels: &[u8]) -> usize {
    pixels
        .chunks(width as usize * 3)
        .map(|row| {
            let mut runs = 0;
            let mut inside = false;
            for px in row.chunks(3) {
                let is_bar = px[2] == 255 && px[0] as u16 + px[1] as u16 == 255;
                runs += usize::from(is_bar && !inside);
                inside = is_bar;
            }
            runs
        })
        .max()
        .unwrap_or(0)
}

/// An empty fontconfig configuration: a process using fontconfig would find no fonts at all.
fn no_fonts(dir: &std::path::Path) -> std::path::PathBuf {
    write(
        dir,
        "fonts.conf",
        "<?xml version=\"1.0\"?>\n<fontconfig></fontconfig>\n",
    )
}

#[test]
fn romeo_chart_renders_without_system_fonts_and_matches_the_golden_image() {
    let Some(play) = romeo_text() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let png_path = dir.path().join("romeo_top20.png");
    runner()
        .args(["run", "pipelines/romeo.yaml", "--quiet"])
        .arg("--set")
        .arg(format!("source.path={}", play.display()))
        .arg("--set")
        .arg(format!(
            "sinks.1.path={}",
            dir.path().join("c.csv").display()
        ))
        .arg("--set")
        .arg(format!("sinks.2.path={}", png_path.display()))
        .env("FONTCONFIG_FILE", no_fonts(dir.path()))
        .env("FONTCONFIG_PATH", dir.path())
        .current_dir(repo_root())
        .assert()
        .success();
    let (w, h, pixels) = decode(&std::fs::read(&png_path).unwrap());
    assert_eq!((w, h), (1280, 720));
    assert_eq!(bar_count(w, &pixels), 20);
    let dark = pixels
        .chunks(3)
        .filter(|p| p.iter().all(|&c| c < 100))
        .count();
    assert!(dark > 2_000, "text is drawn ({dark} dark pixels)");

    let golden_path = repo_root().join("runner/tests/golden/romeo_top20.png");
    if std::env::var_os("RUNNER_UPDATE_GOLDEN").is_some() {
        std::fs::copy(&png_path, &golden_path).unwrap();
    }
    let (gw, gh, golden) = decode(&std::fs::read(&golden_path).unwrap());
    assert_eq!((gw, gh), (w, h));
    let differing = pixels
        .chunks(3)
        .zip(golden.chunks(3))
        .filter(|(a, b)| a.iter().zip(b.iter()).any(|(x, y)| x.abs_diff(*y) > 24))
        .count();
    let share = differing as f64 / (w * h) as f64;
    assert!(share < 0.002, "{:.3}% of pixels differ from the golden image (set RUNNER_UPDATE_GOLDEN=1 to accept a deliberate change)", share * 100.0);
}

const COUNTS: &str = "transforms:\n  - type: tokenize\n  - type: group_count\n    by: word\n";

#[test]
fn an_empty_result_draws_a_no_data_chart() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.txt", "a b c\n");
    let p = write(
        dir.path(),
        "p.yaml",
        &format!("name: t\nsource:\n  type: file\n  path: in.txt\n{COUNTS}  - type: filter\n    where: count > 100\nsinks:\n  - type: chart\n    path: out/empty.png\n    x: word\n    y: count\n"),
    );
    runner().arg("run").arg(&p).assert().success();
    let (w, h, pixels) = decode(&std::fs::read(dir.path().join("out/empty.png")).unwrap());
    assert_eq!((w, h), (1280, 720));
    assert_eq!(bar_count(w, &pixels), 0);
    assert!(pixels.iter().any(|&c| c < 128), "the message is drawn");
}

#[test]
fn non_ascii_labels_draw_and_missing_glyphs_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.txt", "café café i’ll 日本 日本 日本\n");
    let p = write(
        dir.path(),
        "p.yaml",
        &format!("name: t\nsource:\n  type: file\n  path: in.txt\n{COUNTS}sinks:\n  - type: chart\n    path: c.png\n    x: word\n    y: count\n    orientation: horizontal\n"),
    );
    // Told at the end with the run's other warnings, counted, and kept by the summary.
    let summary = dir.path().join("summary.json");
    runner()
        .arg("run")
        .arg(&p)
        .arg("--summary")
        .arg(&summary)
        .assert()
        .success()
        .stderr(predicate::str::contains("2 character(s) have no glyph"))
        .stderr(predicate::str::contains("; 1 warning(s)"));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let messages = summary["warnings"]["messages"].as_array().unwrap();
    assert!(
        messages.len() == 1 && messages[0].as_str().unwrap().contains("have no glyph"),
        "{summary}"
    );
    let (w, _, pixels) = decode(&std::fs::read(dir.path().join("c.png")).unwrap());
    assert!(w == 1280 && pixels.iter().any(|&c| c < 128));
}

#[test]
fn bad_columns_are_rejected_before_reading_data() {
    let dir = tempfile::tempdir().unwrap();
    let chart = |x: &str, y: &str| {
        write(
            dir.path(),
            "p.yaml",
            &format!("name: t\nsource:\n  type: file\n  path: missing.txt\n{COUNTS}sinks:\n  - type: chart\n    path: c.png\n    x: {x}\n    y: {y}\n"),
        )
    };
    runner()
        .arg("validate")
        .arg(chart("wrd", "count"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("sinks.0 (chart): x: there is no column `wrd`, did you mean `word`? (columns here: word, count)"));
    runner()
        .arg("run")
        .arg(chart("count", "word"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "y: column `word` holds text, but the bar length must be a number",
        ));
}

#[test]
fn the_image_is_replaced_atomically_under_a_reader() {
    use runner::sinks::chart::ChartSinkConfig;
    use runner::sinks::{BuildSink, SinkContext};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let schema = Arc::new(arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("word", arrow_schema::DataType::Utf8, false),
        arrow_schema::Field::new("count", arrow_schema::DataType::Int64, false),
    ]));
    let config: ChartSinkConfig =
        serde_saphyr::from_str("{path: live.png, x: word, y: count, title: 'epoch {epoch}'}")
            .unwrap();
    let mut sink = config
        .build(&SinkContext {
            input: &schema,
            base_dir: dir.path(),
            streaming: false,
            appending: false,
            updating: false,
            checkpointed: false,
            fresh_stream: false,
            stream_id: Default::default(),
            pipeline: "chart-test",
        })
        .unwrap();
    let target = dir.path().join("live.png");
    let words: Vec<String> = (0..20).map(|i| format!("w{i}")).collect();
    let first = arrow_array::RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(arrow_array::StringArray::from_iter_values(&words)),
            Arc::new(arrow_array::Int64Array::from_iter_values(1..=20)),
        ],
    )
    .unwrap();
    runner::sinks::write_result(sink.as_mut(), &first, 0).unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (done, target) = (done.clone(), target.clone());
        std::thread::spawn(move || {
            let mut reads = 0;
            while !done.load(Ordering::Relaxed) {
                let bytes = std::fs::read(&target).expect("the file is always there");
                decode(&bytes);
                reads += 1;
            }
            reads
        })
    };
    for epoch in 1..40u64 {
        let batch = arrow_array::RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(arrow_array::StringArray::from_iter_values(&words)),
                Arc::new(arrow_array::Int64Array::from_iter_values(
                    (1..=20).map(|v| v * epoch as i64),
                )),
            ],
        )
        .unwrap();
        runner::sinks::write_result(sink.as_mut(), &batch, epoch).unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let reads = reader.join().expect("every read decoded as a whole PNG");
    assert!(reads > 0);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers,
        [std::ffi::OsString::from("live.png")],
        "no temporary files left"
    );
}

#[test]
fn an_unwritable_image_path_fails_with_exit_1_and_keeps_the_old_image() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.txt", "a b\n");
    write(dir.path(), "out/c.png", "previous");
    let p = write(
        dir.path(),
        "p.yaml",
        &format!("name: t\nsource:\n  type: file\n  path: in.txt\n{COUNTS}sinks:\n  - type: chart\n    path: out/c.png\n    x: word\n    y: count\n"),
    );
    // Whoever runs the tests: a path whose directory is a regular file cannot be written.
    write(dir.path(), "blocker", "a file, not a directory");
    let blocked = write(
        dir.path(),
        "blocked.yaml",
        &format!("name: t\nsource:\n  type: file\n  path: in.txt\n{COUNTS}sinks:\n  - type: chart\n    path: blocker/c.png\n    x: word\n    y: count\n"),
    );
    runner().arg("run").arg(&blocked).assert().code(1).stderr(
        predicate::str::contains("cannot write output")
            .and(predicate::str::contains("blocker/c.png")),
    );

    let out = dir.path().join("out");
    let mut perms = std::fs::metadata(&out).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o555);
    std::fs::set_permissions(&out, perms.clone()).unwrap();
    if std::fs::File::create(out.join("probe")).is_ok() {
        eprintln!("SKIPPED: this user can write into read-only directories (root)");
        return;
    }
    runner()
        .arg("run")
        .arg(&p)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("cannot write output"));
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&out, perms).unwrap();
    assert_eq!(
        std::fs::read_to_string(out.join("c.png")).unwrap(),
        "previous"
    );
}
