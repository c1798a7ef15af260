//! `runner test`: tests of whole pipelines, in `*.test.yaml` files beside them. A test names
//! a pipeline, gives its input inline (lines, JSON records, a file, or a stream's epochs, fed
//! to the pipeline's own source so rows are read as in a run) and states what its sinks
//! receive, or what a step gives out: exact rows, rows it contains, a row count, the columns;
//! for a stream, per epoch. Sinks are captured, never written: no file is touched, no socket
//! opened, no database needed.

pub mod compare;
pub mod feed;

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Deserialize;

use crate::config::{Mode, Override};
use crate::error::{Error, Result};
use feed::{CaptureSink, Captured, FedStream};

/// A `*.test.yaml` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// The pipeline file, relative to this file.
    pub pipeline: PathBuf,
    /// The tests, run in order.
    pub tests: Vec<TestCase>,
}

/// One test.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    /// The test's name, shown in the report.
    pub name: String,
    /// `--set` overrides for this test, e.g. `{"transforms.3.where": "count >= 2"}`.
    #[serde(default)]
    pub set: indexmap::IndexMap<String, serde_json::Value>,
    /// What the source reads instead of its own input.
    pub input: Input,
    /// What must hold of the result; at least one.
    pub expect: Vec<Expectation>,
}

/// What the source reads, in place of its file, socket or stream. One of the keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// Lines of text, as the source reads them (a CSV source's first line is its header).
    #[serde(default)]
    pub lines: Option<Vec<String>>,
    /// Records, each becoming one JSON line (a `jsonl` file source, or the rows of a
    /// `mastodon` or `replay` source: `{id, created_at, tags, ...}`).
    #[serde(default)]
    pub jsonl: Option<Vec<serde_json::Value>>,
    /// A file read in place of the source's input, relative to the test file (read as the
    /// source reads its own: a Parquet file for `format: parquet`).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// A stream's input, epoch by epoch: each a list of lines or records (for a stream of
    /// CSV files, a file of its own: its first line is its header).
    #[serde(default)]
    pub epochs: Option<Vec<Vec<serde_json::Value>>>,
}

/// What a sink receives (or a step gives out), for one epoch.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// The sink, by its index in `sinks` (default 0). Every sink receives the same result.
    #[serde(default)]
    pub sink: Option<usize>,
    /// Instead of a sink: what transform `step` (its index in `transforms`) gives out.
    #[serde(default)]
    pub step: Option<usize>,
    /// A stream's epoch (default: the last one).
    #[serde(default)]
    pub epoch: Option<u64>,
    /// Exactly these rows, in this order: each a list of values, or a map of some columns.
    #[serde(default)]
    pub rows: Option<Vec<serde_json::Value>>,
    /// These rows are among the rows (in any order).
    #[serde(default)]
    pub contains: Option<Vec<serde_json::Value>>,
    /// How many rows.
    #[serde(default)]
    pub row_count: Option<usize>,
    /// The column names, in order.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
}

/// How one test ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    /// The test file, as given.
    pub file: String,
    /// The test's `name`.
    pub name: String,
    /// Whether every expectation held.
    pub passed: bool,
    /// What did not hold (or the error that stopped the test).
    pub failures: Vec<String>,
    /// How long the test took, in seconds.
    pub seconds: f64,
}

/// Whether `path` is named as a test file (`*.test.yaml`), not a pipeline.
pub fn is_test_file(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().ends_with(".test.yaml"))
}

/// `runner validate` of a test file: it reads, its pipeline loads. Returns the pipeline's
/// path and the number of tests.
pub fn validate(path: &Path) -> Result<(PathBuf, usize)> {
    let file = read(path)?;
    let pipeline = path.parent().unwrap_or(Path::new(".")).join(&file.pipeline);
    crate::config::load(&pipeline, &[])?;
    Ok((pipeline, file.tests.len()))
}

/// The `*.test.yaml` files of `paths` (files as given, folders searched), sorted.
pub fn find(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut stack = vec![path.clone()];
            while let Some(dir) = stack.pop() {
                let entries = std::fs::read_dir(&dir).map_err(|source| Error::Input {
                    path: dir.clone(),
                    source,
                })?;
                for entry in entries.flatten() {
                    let entry_path = entry.path();
                    if entry_path.is_dir() {
                        stack.push(entry_path);
                    } else if is_test_file(&entry_path) {
                        found.push(entry_path);
                    }
                }
            }
        } else if path.is_file() {
            found.push(path.clone());
        } else {
            return Err(Error::invalid(format!(
                "{}: no such test file or folder",
                path.display()
            )));
        }
    }
    found.sort();
    if found.is_empty() {
        return Err(Error::invalid(format!(
            "no *.test.yaml file in {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(found)
}

/// Reads a test file (an invalid one is an error with its location: exit 2).
pub fn read(path: &Path) -> Result<TestFile> {
    let bytes = std::fs::read(path).map_err(|source| Error::Input {
        path: path.to_path_buf(),
        source,
    })?;
    let text = crate::error::utf8_text(bytes, path, "test")?;
    // YAML 1.2's booleans: an expected `NO` (Norway) or `n` stays a text.
    let file: TestFile = crate::config::from_yaml(&text).map_err(|e| {
        // A pipeline given where its tests belong: say so, not "unknown field `name`".
        let keys: std::collections::HashMap<String, serde::de::IgnoredAny> =
            crate::config::from_yaml(&text).unwrap_or_default();
        if keys.contains_key("source") && keys.contains_key("sinks") && !keys.contains_key("tests")
        {
            return Error::invalid(format!(
                "{}: this is a pipeline, not a test file: a test file names its pipeline (`pipeline: p.yaml`) and lists `tests:` (runner test takes test files, `*.test.yaml`, or a folder of them)",
                crate::error::escape_path(path)
            ));
        }
        crate::config::yaml_error(&e, &path.display().to_string())
    })?;
    if file.tests.is_empty() {
        return Err(Error::invalid(format!(
            "{}: `tests` is empty: a test file must hold a test",
            path.display()
        )));
    }
    let mut names = std::collections::HashSet::new();
    for case in &file.tests {
        if !names.insert(case.name.as_str()) {
            return Err(Error::invalid(format!(
                "{}: two tests are named `{}`: name each test differently, so a failure says which",
                path.display(),
                case.name
            )));
        }
        let given = [
            case.input.lines.is_some(),
            case.input.jsonl.is_some(),
            case.input.file.is_some(),
            case.input.epochs.is_some(),
        ]
        .iter()
        .filter(|g| **g)
        .count();
        if given != 1 {
            return Err(Error::invalid(format!(
                "{}: test `{}`: `input` needs exactly one of `lines`, `jsonl`, `file`, `epochs`",
                path.display(),
                case.name
            )));
        }
        if case.expect.is_empty() {
            return Err(Error::invalid(format!(
                "{}: test `{}`: `expect` is empty: a test must state something",
                path.display(),
                case.name
            )));
        }
        for expectation in &case.expect {
            let states = expectation.rows.is_some()
                || expectation.contains.is_some()
                || expectation.row_count.is_some()
                || expectation.columns.is_some();
            if !states {
                return Err(Error::invalid(format!(
                    "{}: test `{}`: an expectation states none of `rows`, `contains`, `row_count`, `columns`",
                    path.display(),
                    case.name
                )));
            }
            if expectation.sink.is_some() && expectation.step.is_some() {
                return Err(Error::invalid(format!(
                    "{}: test `{}`: an expectation names a `sink` or a `step`, not both",
                    path.display(),
                    case.name
                )));
            }
        }
    }
    check_references(path, &file)?;
    Ok(file)
}

/// A test's `set:` as `--set` overrides.
fn case_overrides(case: &TestCase) -> Vec<Override> {
    case.set
        .iter()
        .map(|(path, value)| Override {
            path: path.split('.').map(str::to_owned).collect(),
            value: value.clone(),
            raw: format!("{path}={value}"),
            removes: None,
            for_sources: None,
        })
        .collect()
}

/// An error unless every test's pipeline (with its `set:`) can be read and has the steps and
/// sinks its expectations name: such a test file is invalid (exit 2), not a failed test.
fn check_references(path: &Path, file: &TestFile) -> Result<()> {
    let base = path.parent().unwrap_or(Path::new("."));
    for case in &file.tests {
        let invalid = |why: String| {
            Error::invalid(format!("{}: test `{}`: {why}", path.display(), case.name))
        };
        let loaded = crate::config::load(&base.join(&file.pipeline), &case_overrides(case))
            .map_err(|e| invalid(e.to_string()))?;
        if case.input.epochs.is_some() && loaded.config.mode != Mode::Stream {
            return Err(invalid(
                "`epochs` is for stream pipelines; give a batch pipeline `lines`, `jsonl` or `file`"
                    .into(),
            ));
        }
        let (steps, sinks) = (loaded.config.transforms.len(), loaded.config.sinks.len());
        for expectation in &case.expect {
            if let Some(step) = expectation.step.filter(|&s| s >= steps) {
                return Err(invalid(format!(
                    "`step: {step}`: the pipeline has {steps} transform(s), numbered from 0"
                )));
            }
            if let Some(sink) = expectation.sink.filter(|&s| s >= sinks) {
                return Err(invalid(format!(
                    "`sink: {sink}`: the pipeline has {sinks} sink(s), numbered from 0"
                )));
            }
        }
    }
    Ok(())
}

/// Runs every test of `file` (read from `path`), calling `report` after each.
pub fn run_file(path: &Path, file: &TestFile, report: &mut dyn FnMut(&Outcome)) {
    let base = path.parent().unwrap_or(Path::new("."));
    for case in &file.tests {
        let started = Instant::now();
        let failures = match run_case(base, &base.join(&file.pipeline), case) {
            Ok(failures) => failures,
            Err(error) => vec![crate::redact::redact(&error.to_string()).into_owned()],
        };
        report(&Outcome {
            file: path.display().to_string(),
            name: case.name.clone(),
            passed: failures.is_empty(),
            failures,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
}

/// The lines of an input item: a string as it is, anything else as one JSON line.
fn line_of(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Runs one test: the pipeline once for its sinks, once more per step named. Returns what
/// did not hold.
fn run_case(base: &Path, pipeline: &Path, case: &TestCase) -> Result<Vec<String>> {
    let mut overrides = case_overrides(case);
    let probe = crate::config::load(pipeline, &overrides)?;
    let streaming = probe.config.mode == Mode::Stream;
    let sinks = probe.config.sinks.len();
    drop(probe);
    let input = &case.input;
    // A batch run reads a file: the test's input is written to one, in a folder of its own.
    let scratch = tempfile::tempdir().map_err(|e| Error::runtime(e.to_string()))?;
    let epochs: Vec<Vec<String>> = match (streaming, input) {
        (
            _,
            Input {
                epochs: Some(epochs),
                ..
            },
        ) if streaming => epochs
            .iter()
            .map(|epoch| epoch.iter().map(line_of).collect())
            .collect(),
        (
            false,
            Input {
                epochs: Some(_), ..
            },
        ) => return Err(Error::invalid(
            "`epochs` is for stream pipelines; give a batch pipeline `lines`, `jsonl` or `file`",
        )),
        (
            _,
            Input {
                lines: Some(lines), ..
            },
        ) => vec![lines.clone()],
        (
            _,
            Input {
                jsonl: Some(records),
                ..
            },
        ) => vec![records.iter().map(line_of).collect()],
        (
            _,
            Input {
                file: Some(file), ..
            },
        ) if streaming => {
            let path = base.join(file);
            let text = std::fs::read_to_string(&path).map_err(|source| Error::Input {
                path: path.clone(),
                source,
            })?;
            vec![text.lines().map(str::to_owned).collect()]
        }
        // A batch run reads the file itself, as its source reads it (a Parquet file too).
        (
            false,
            Input {
                file: Some(file), ..
            },
        ) => {
            let path = base.join(file);
            if !path.is_file() {
                return Err(Error::Input {
                    path,
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
                });
            }
            Vec::new()
        }
        _ => return Err(Error::invalid("`input` is empty")),
    };
    if !streaming {
        let path = match &input.file {
            Some(file) => base.join(file),
            None => {
                let path = scratch.path().join("input");
                // Each line ended by a newline; no line, an empty file (not one blank line).
                let text: String = epochs
                    .concat()
                    .iter()
                    .map(|line| format!("{line}\n"))
                    .collect();
                std::fs::write(&path, text).map_err(|source| Error::Output {
                    path: path.clone(),
                    source,
                })?;
                path
            }
        };
        let absolute = std::path::absolute(&path).unwrap_or(path);
        overrides.push(Override::input(&absolute.to_string_lossy()));
    }
    let mut failures = Vec::new();
    let mut targets: Vec<Option<usize>> = case.expect.iter().map(|e| e.step).collect();
    targets.sort();
    targets.dedup();
    for target in targets {
        let captured = match run_pipeline(pipeline, &overrides, target, &epochs) {
            Ok(captured) => captured,
            Err(error) => {
                let at = target.map_or(String::new(), |s| format!("transforms.{s}: "));
                failures.push(format!("{at}{}", crate::redact::redact(&error.to_string())));
                continue;
            }
        };
        let before = failures.len();
        for expectation in case.expect.iter().filter(|e| e.step == target) {
            if let Some(sink) = expectation.sink.filter(|s| *s >= sinks) {
                failures.push(format!("sinks.{sink}: the pipeline has {sinks} sink(s)"));
                continue;
            }
            failures.extend(compare::check(expectation, &captured, streaming));
        }
        if failures.len() > before {
            // Input the run left out is the likeliest reason, so say it with the failures.
            failures.extend(
                captured
                    .warnings
                    .iter()
                    .map(|warning| format!("(the run warned: {warning})")),
            );
        }
    }
    Ok(failures)
}

/// What the pipeline (or its steps up to `step`) hands to its sinks, epoch by epoch, with the
/// result's columns.
fn run_pipeline(
    pipeline: &Path,
    overrides: &[Override],
    step: Option<usize>,
    epochs: &[Vec<String>],
) -> Result<compare::Run> {
    let mut loaded = crate::config::load(pipeline, overrides)?;
    // Nothing of the run leaves the process: no sink, checkpoint, summary or page.
    loaded.config.sinks.clear();
    loaded.config.checkpoint = None;
    loaded.config.summary = None;
    loaded.config.ui = None;
    loaded.config.engine = None;
    if let Some(step) = step {
        if step >= loaded.config.transforms.len() {
            return Err(Error::invalid(format!(
                "step {step}: the pipeline has {} transform(s)",
                loaded.config.transforms.len()
            )));
        }
        loaded.config.transforms.truncate(step + 1);
        // The steps kept may have no aggregation: their rows go out as the default says. With
        // the aggregation kept, its output mode is the pipeline's (an append stream's step
        // shows the final windows its sinks get, not the whole table).
        let aggregates = loaded
            .config
            .transforms
            .iter()
            .any(|t| matches!(t.value.type_name(), "aggregate" | "group_count"));
        if !aggregates {
            loaded.config.output_mode = None;
        }
    }
    let mut built = crate::exec::build(&loaded, None)?;
    let captured = Captured::default();
    built.sinks = vec![Box::new(CaptureSink(captured.clone()))];
    let bus = crate::events::Bus::new();
    let warnings = if let Some(stream) = built.stream.as_mut() {
        stream.trigger = crate::exec::stream::Trigger::AvailableNow;
        stream.stop_after = None;
        // `max_epochs` is the pipeline's own: it stops after that many epochs, as a run does
        // (the later ones fed are not taken).
        stream.checkpoint = None;
        let crate::sources::BuiltSource::Stream(source) =
            std::mem::replace(&mut built.source, placeholder())
        else {
            return Err(Error::runtime("a stream pipeline without a stream source"));
        };
        built.source = crate::sources::BuiltSource::Stream(Box::new(FedStream {
            inner: source,
            epochs: epochs.to_vec(),
        }));
        crate::exec::stream::run(&mut built, &bus)?.warnings
    } else {
        crate::exec::batch::run(&mut built, &bus)?.warnings
    };
    Ok(compare::Run {
        warnings,
        epochs: captured.epochs(&built.output),
        columns: crate::data::columns_names(&built.output),
        label: match step {
            Some(step) => format!("transforms.{step}"),
            None => "the sinks".to_owned(),
        },
    })
}

/// Stands in for the source while it is being wrapped.
fn placeholder() -> crate::sources::BuiltSource {
    crate::sources::BuiltSource::Stream(Box::new(FedStream {
        inner: Box::new(Nothing),
        epochs: Vec::new(),
    }))
}

struct Nothing;

impl crate::sources::StreamSource for Nothing {
    fn schema(&self) -> arrow_schema::SchemaRef {
        std::sync::Arc::new(arrow_schema::Schema::empty())
    }
    fn start(
        &self,
        _tx: tokio::sync::mpsc::Sender<crate::sources::Delivery>,
        _from: Option<crate::sources::SourcePosition>,
        _redo_until: Option<crate::sources::SourcePosition>,
    ) -> tokio::task::JoinHandle<std::result::Result<(), String>> {
        tokio::spawn(async { Ok(()) })
    }
    fn decode(&self, _chunks: &[crate::sources::Chunk]) -> Result<arrow_array::RecordBatch> {
        Ok(arrow_array::RecordBatch::new_empty(self.schema()))
    }
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_test_file_reads_yaml_1_2_booleans_so_no_and_n_stay_texts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.test.yaml");
        std::fs::write(
            dir.path().join("p.yaml"),
            "name: p\nsource: {type: file, path: in.txt}\nsinks:\n  - {type: stdout}\n",
        )
        .unwrap();
        std::fs::write(
            &path,
            "pipeline: p.yaml\ntests:\n  - name: countries\n    input: {lines: [\"NO\", \"n\"]}\n    expect:\n      - rows: [[NO, 1], [n, true]]\n",
        )
        .unwrap();
        let file = super::read(&path).unwrap();
        assert_eq!(
            file.tests[0].expect[0].rows,
            Some(vec![
                serde_json::json!(["NO", 1]),
                serde_json::json!(["n", true])
            ])
        );
        // A step or sink the pipeline does not have, or no pipeline: an invalid file.
        for (expect, why) in [
            (
                "{step: 0, row_count: 1}",
                "`step: 0`: the pipeline has 0 transform(s)",
            ),
            (
                "{sink: 1, row_count: 1}",
                "`sink: 1`: the pipeline has 1 sink(s)",
            ),
        ] {
            let text = format!("pipeline: p.yaml\ntests:\n  - name: x\n    input: {{lines: [a]}}\n    expect: [{expect}]\n");
            std::fs::write(&path, text).unwrap();
            let error = super::read(&path).unwrap_err();
            assert_eq!(error.exit_code(), 2);
            assert!(error.to_string().contains(why), "{error}");
        }
        let text = "pipeline: nosuch.yaml\ntests:\n  - name: x\n    input: {lines: [a]}\n    expect: [{row_count: 1}]\n";
        std::fs::write(&path, text).unwrap();
        let error = super::read(&path).unwrap_err().to_string();
        assert!(
            error.contains("t.test.yaml: test `x`:") && error.contains("nosuch.yaml"),
            "{error}"
        );
        std::fs::write(
            &path,
            "pipeline: p.yaml\ntests:\n  - name: x\n    expct: []\n",
        )
        .unwrap();
        let error = super::read(&path).unwrap_err().to_string();
        assert!(error.contains("t.test.yaml:4:5"), "{error}");
        assert!(!error.contains("<input>"), "{error}");
    }
}
