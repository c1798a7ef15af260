//! The run summary: a JSON record of what one `runner run` did (`--summary path.json` or
//! `summary:` in the pipeline), written atomically, for success and failure alike, so a cron
//! job leaves a trace a script or a person can read. Facts are gathered as the run goes, so a
//! run that fails half-way still says what it knew.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{LoadedPipeline, Mode};
use crate::error::{Error, Result};
use crate::exec::counted::StageRows;
use crate::exec::BuiltPipeline;
use crate::sources::{BuiltSource, SourceCounters};

/// The JSON document.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// The pipeline's `name` (absent when the file could not be read).
    pub pipeline: Option<String>,
    /// The pipeline file as given.
    pub file: String,
    /// SHA-256 of the pipeline file's bytes, to tell which version ran.
    pub file_sha256: Option<String>,
    /// `batch` or `stream`; absent when the pipeline could not be loaded.
    pub mode: Option<&'static str>,
    /// Start and end, RFC 3339 in UTC.
    pub started: String,
    /// When the run ended, RFC 3339 in UTC.
    pub ended: String,
    /// Wall-clock time from start to end, in seconds (to the microsecond).
    pub duration_seconds: f64,
    /// `ok`, `failed` (exit 1) or `invalid` (exit 2).
    pub status: &'static str,
    /// The process's exit code: 0, 1 (failed) or 2 (invalid). A run refused by the lock (exit
    /// 3) writes no summary: the file belongs to the run holding the lock.
    pub exit_code: i32,
    /// The error message when the run failed.
    pub error: Option<String>,
    /// Worker threads the run used; absent when the pipeline was not built.
    pub cores: Option<usize>,
    /// Input bytes: a batch run's input files' sizes (absent for pipes); for a stream, the
    /// bytes of the rows' text its finished epochs took in, as the source hands them (not a CSV
    /// file's header, nor the events a replay or mastodon source leaves out).
    pub bytes_read: Option<u64>,
    /// Rows the source produced; absent where a fused loop reads bytes without making rows. A
    /// failed stream's `rows_in`, `rows_out`, `epochs` and stages' rows count the epochs that
    /// finished.
    pub rows_in: Option<u64>,
    /// Rows the sinks received (summed over epochs in a stream).
    pub rows_out: Option<u64>,
    /// Epochs run (streams only).
    pub epochs: Option<u64>,
    /// Set when the pipeline ran on Spark: where, and the steps Spark ran (they are not in
    /// `stages`, whose source is then Spark's result).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineSummary>,
    /// The source, each transform and each sink in order.
    pub stages: Vec<StageSummary>,
    /// Files the sinks wrote in this run.
    pub outputs: Vec<OutputSummary>,
    /// What the source repaired or dropped, and the warnings printed at the end.
    pub warnings: WarningsSummary,
}

/// The engine a pipeline ran on, when it was not runner's own.
#[derive(Debug, Clone, Serialize)]
pub struct EngineSummary {
    /// `spark`.
    #[serde(rename = "type")]
    pub type_name: &'static str,
    /// The Spark Connect address (without its token).
    pub remote: String,
    /// The steps Spark ran after reading the source.
    pub on_spark: Vec<String>,
}

/// One step of the run (the source, a transform or a sink) and the rows through it.
#[derive(Debug, Clone, Serialize)]
pub struct StageSummary {
    /// `source`, `transforms.N` or `sinks.N`, as in error messages.
    pub step: String,
    /// The step's YAML `type:` name (`spark` for a source replaced by Spark's result).
    #[serde(rename = "type")]
    pub type_name: &'static str,
    /// Rows the step received, summed over epochs; `None` when not known (inside a fused kernel, a
    /// failed run, the source).
    pub rows_in: Option<u64>,
    /// Rows the step gave out, summed over epochs; `None` when not known (inside a fused kernel, a
    /// failed run, a sink).
    pub rows_out: Option<u64>,
    /// Set when the stage ran inside a fused loop (its own rows are not materialised).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fused: Option<&'static str>,
}

/// A file a sink wrote in this run (its modification time changed).
#[derive(Debug, Clone, Serialize)]
pub struct OutputSummary {
    /// The file's path, resolved against the pipeline file's directory.
    pub path: String,
    /// Its size in bytes at the end of the run.
    pub bytes: u64,
}

/// What the run repaired, dropped or warned about.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WarningsSummary {
    /// Input the source repaired or dropped, by cause (flattened into this object in JSON).
    #[serde(flatten)]
    pub counts: SourceCounters,
    /// A windowed stream's rows left out as later than the watermark in this run (not the
    /// earlier runs a checkpoint carries on from).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub late_rows: Option<u64>,
    /// The warnings as printed at the end of the run.
    pub messages: Vec<String>,
}

/// What the executors report back, for the summary.
#[derive(Debug, Default)]
pub struct RunFacts {
    /// Rows the source produced (streams); `None` in a batch run.
    pub source_rows: Option<u64>,
    /// Rows handed to the sinks, summed over epochs.
    pub rows_out: u64,
    /// Epochs run (streams); `None` in a batch run.
    pub epochs: Option<u64>,
    /// The warnings published at the end of the run, one sentence each.
    pub warnings: Vec<String>,
    /// A windowed stream's rows left out as later than the watermark; `None` without windows.
    pub late_rows: Option<u64>,
}

/// What a stream's finished epochs did, as their events told it: a failed stream's summary
/// still says what it wrote before the failure.
#[derive(Debug, Default, Clone, Copy)]
struct EpochsSoFar {
    epochs: u64,
    rows_in: u64,
    rows_out: u64,
    /// Bytes taken into the finished epochs (a stream's `InputRead`s before each
    /// `EpochFinished`, and at a normal end all of them).
    bytes: u64,
    /// Bytes taken into the epoch under way.
    bytes_pending: u64,
}

#[derive(Default)]
struct FeedState {
    warnings: Vec<String>,
    facts: Option<RunFacts>,
    so_far: EpochsSoFar,
    /// Each stage's counts (called, rows in, rows out) as the last finished epoch left them:
    /// what a failed stream's stages did in the epochs it finished.
    stages_so_far: Vec<(bool, u64, u64)>,
}

/// The summary's subscriber to the run's events: what the drivers publish as the run ends.
#[derive(Clone, Default)]
pub struct SummaryFeed {
    state: std::sync::Arc<std::sync::Mutex<FeedState>>,
    /// The stages' live counters (`Recorder::stage_rows`), read as each epoch finishes.
    stages: Vec<std::sync::Arc<crate::exec::counted::StageRows>>,
}

impl SummaryFeed {
    /// A feed that also keeps the counts of `stages` as each epoch finishes (see
    /// [`Recorder::stage_rows`]), for the summary of a stream that fails later.
    pub fn watching(stages: Vec<std::sync::Arc<crate::exec::counted::StageRows>>) -> Self {
        SummaryFeed {
            stages,
            ..Default::default()
        }
    }

    /// The warnings published so far (a failed run's, which has no `RunFinished`).
    fn warnings_so_far(&self) -> Vec<String> {
        self.state
            .lock()
            .map(|s| s.warnings.clone())
            .unwrap_or_default()
    }

    fn stages_so_far(&self) -> Vec<(bool, u64, u64)> {
        self.state
            .lock()
            .map(|s| s.stages_so_far.clone())
            .unwrap_or_default()
    }

    /// What the run reported at its end; `None` when it did not end normally.
    fn facts(&self) -> Option<RunFacts> {
        self.state.lock().ok()?.facts.take()
    }

    fn so_far(&self) -> EpochsSoFar {
        self.state.lock().map(|s| s.so_far).unwrap_or_default()
    }
}

impl crate::events::Subscriber for SummaryFeed {
    fn notify(&mut self, event: &crate::events::Event) {
        use crate::events::Event;
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        match event {
            Event::Warning { message } => state.warnings.push(message.clone()),
            Event::InputRead { bytes } => state.so_far.bytes_pending += bytes,
            Event::EpochFinished(progress) => {
                state.so_far.bytes += std::mem::take(&mut state.so_far.bytes_pending);
                state.so_far.epochs += 1;
                state.so_far.rows_in += progress.rows;
                state.so_far.rows_out += progress.out_rows as u64;
                // Published after the epoch's sinks wrote, before the next epoch's rows go in.
                state.stages_so_far = self.stages.iter().map(|rows| rows.counts()).collect();
            }
            Event::RunFinished {
                rows_in,
                rows_out,
                epochs,
                late_rows,
                ..
            } => {
                state.so_far.bytes += std::mem::take(&mut state.so_far.bytes_pending);
                let warnings = std::mem::take(&mut state.warnings);
                state.facts = Some(RunFacts {
                    source_rows: *rows_in,
                    rows_out: *rows_out,
                    epochs: *epochs,
                    warnings,
                    late_rows: *late_rows,
                });
            }
            _ => {}
        }
    }
}

/// The running recorder's last published copy, for `cancel::abort`.
static PUBLISHED: std::sync::Mutex<Option<Recorder>> = std::sync::Mutex::new(None);

/// Writes the running recorder's summary for a run ending with `error` (`cancel::abort`'s
/// handler, set when a recorder starts).
fn write_on_abort(error: &Error) {
    let recorder = PUBLISHED.lock().ok().and_then(|mut p| p.take());
    if let Some(mut recorder) = recorder {
        let summary = recorder.finish(Some(error));
        if let Some(target) = recorder.target() {
            if let Err(written) = summary.write(target) {
                tracing::warn!("the run summary was not written: {written}");
            }
        }
    }
}

/// Collects a run's facts as they become known.
#[derive(Clone)]
pub struct Recorder {
    file: PathBuf,
    started: SystemTime,
    /// From `--summary`, else from `summary:` once the pipeline is loaded.
    target: Option<PathBuf>,
    summary: RunSummary,
    /// Each sink's file and its modification time before the run (`None`: it did not exist).
    sink_outputs: Vec<(PathBuf, Option<SystemTime>)>,
    /// What a `file` source reads (a file, a folder, a glob), once the pipeline is loaded.
    input: Option<PathBuf>,
    counters: Vec<Arc<StageRows>>,
    /// Why the summary's path was refused (it is the pipeline file, an output, a folder):
    /// nothing is written there.
    refused_target: Option<String>,
}

impl Recorder {
    /// Starts the clock for a run of `file`.
    pub fn start(file: &Path, target: Option<PathBuf>) -> Self {
        // A run aborted from any thread still leaves its summary.
        crate::cancel::on_abort(write_on_abort);
        let started = SystemTime::now();
        let file_sha256 = crate::config::read_pipeline_file(file)
            .ok()
            .map(|bytes| crate::data::hex(&Sha256::digest(&bytes)));
        let mut recorder = Recorder {
            file: file.to_path_buf(),
            started,
            target,
            sink_outputs: Vec::new(),
            input: None,
            counters: Vec::new(),
            refused_target: None,
            summary: RunSummary {
                pipeline: None,
                file: file.display().to_string(),
                file_sha256,
                mode: None,
                started: rfc3339(started),
                ended: String::new(),
                duration_seconds: 0.0,
                status: "ok",
                exit_code: 0,
                error: None,
                cores: None,
                bytes_read: None,
                rows_in: None,
                rows_out: None,
                epochs: None,
                engine: None,
                stages: Vec::new(),
                outputs: Vec::new(),
                warnings: WarningsSummary::default(),
            },
        };
        recorder.check_target();
        recorder
    }

    /// Where the summary goes, if anywhere.
    pub fn target(&self) -> Option<&Path> {
        self.target.as_deref()
    }

    /// Why the summary's path cannot be written (the run is refused), if it cannot.
    pub fn refused_target(&self) -> Option<&str> {
        self.refused_target.as_deref()
    }

    /// Refuses a summary path that would replace the pipeline file, one of its outputs or its
    /// input, or land where its source reads (a slip in a crontab, `--summary job.yaml`,
    /// would have lost the pipeline), or that is a folder: the target is dropped, and the run
    /// is refused with the reason.
    fn check_target(&mut self) {
        let Some(target) = self.target.as_deref() else {
            return;
        };
        let named = |what: &str| {
            format!(
                "the run summary would replace {what} {}: give `--summary` (or `summary:`) another file",
                crate::error::escape_path(target)
            )
        };
        let refused = if target.is_dir() {
            Some(format!(
                "the run summary cannot be written to {}: it is a folder",
                crate::error::escape_path(target)
            ))
        } else if same_file(target, &self.file) {
            Some(named("the pipeline file"))
        } else if self
            .sink_outputs
            .iter()
            .any(|(output, _)| same_file(target, output))
        {
            Some(named("the output"))
        } else {
            self.input
                .as_deref()
                .filter(|input| crate::sources::file::would_read(input, target))
                .map(|input| match same_file(input, target) {
                    true => named("the input"),
                    false => format!(
                        "the run summary {} would be where the source reads, and read as input by the next run: give `--summary` (or `summary:`) another file",
                        crate::error::escape_path(target)
                    ),
                })
        };
        if let Some(refused) = refused {
            self.target = None;
            self.refused_target = Some(refused);
        }
    }

    /// Notes the parsed pipeline: its name, mode, steps, outputs and `summary:` path.
    pub fn loaded(&mut self, loaded: &LoadedPipeline) {
        let config = &loaded.config;
        self.summary.pipeline = Some(config.name.clone());
        self.summary.mode = Some(match config.mode {
            Mode::Batch => "batch",
            Mode::Stream => "stream",
        });
        if self.target.is_none() {
            self.target = config.summary.as_deref().map(|p| loaded.resolve(p));
        }
        let step = |step: String, type_name| StageSummary {
            step,
            type_name,
            rows_in: None,
            rows_out: None,
            fused: None,
        };
        let mut stages = vec![step("source".into(), config.source.value.type_name())];
        stages.extend(
            config
                .transforms
                .iter()
                .enumerate()
                .map(|(i, t)| step(format!("transforms.{i}"), t.value.type_name())),
        );
        stages.extend(
            config
                .sinks
                .iter()
                .enumerate()
                .map(|(i, s)| step(format!("sinks.{i}"), s.value.type_name())),
        );
        self.summary.stages = stages;
        self.publish();
        self.sink_outputs = config
            .sinks
            .iter()
            .filter_map(|s| s.value.builder().output_path().map(|p| loaded.resolve(p)))
            .map(|path| {
                let before = modified(&path);
                (path, before)
            })
            .collect();
        self.input = crate::exec::file_source_path(loaded);
        self.check_target();
    }

    /// Notes that the source and the first steps run on Spark: they leave `stages` (Spark's
    /// result is the source of what runs here).
    pub fn on_spark(&mut self, plan: &crate::spark::SparkPlan) {
        let steps = plan.on_spark.len();
        if self.summary.stages.len() > steps {
            self.summary.stages.drain(1..1 + steps);
            self.summary.stages[0].type_name = "spark";
        }
        self.summary.engine = Some(EngineSummary {
            type_name: "spark",
            remote: plan.remote.clone(),
            on_spark: plan.on_spark.clone(),
        });
        self.publish();
    }

    /// Wraps the built pipeline's stages in row counters.
    pub fn built(&mut self, pipeline: &mut BuiltPipeline) {
        self.summary.cores = Some(pipeline.cores);
        self.counters = crate::exec::counted::count_rows(pipeline);
        self.publish();
    }

    /// The stages' row counters (after `built`), for watchers that read them live.
    pub fn stage_rows(&self) -> Vec<std::sync::Arc<crate::exec::counted::StageRows>> {
        self.counters.clone()
    }

    /// Leaves a copy of what is known so far for `cancel::abort`, which may be called from any
    /// thread while this recorder is busy on the main one.
    fn publish(&self) {
        if let Ok(mut published) = PUBLISHED.lock() {
            *published = Some(self.clone());
        }
    }

    /// Reads the counters, the source's statistics and what `feed` heard once the run is over
    /// (or failed).
    pub fn ran(&mut self, pipeline: &BuiltPipeline, feed: &SummaryFeed) {
        let so_far = feed.so_far();
        let (counters, bytes) = match &pipeline.source {
            BuiltSource::Batch(source) => (source.counters(), source.bytes_read()),
            // Spark reads a stream's input itself: its bytes are not known here.
            BuiltSource::Stream(source) => (
                source.counters(),
                self.summary.engine.is_none().then_some(so_far.bytes),
            ),
        };
        self.summary.warnings.counts = counters;
        self.summary.bytes_read = bytes;
        let facts = feed.facts();
        let failed_stream = facts.is_none() && pipeline.stream.is_some();
        let transforms = self.counters.len();
        let mut counted: Vec<(bool, u64, u64)> =
            self.counters.iter().map(|rows| rows.counts()).collect();
        if failed_stream {
            // A failed stream: the epochs that finished before the failure, not the rows the
            // failed epoch had taken in.
            self.summary.rows_in = Some(so_far.rows_in);
            self.summary.rows_out = Some(so_far.rows_out);
            self.summary.epochs = Some(so_far.epochs);
            self.summary.stages[0].rows_out = Some(so_far.rows_in);
            counted = feed.stages_so_far();
            counted.resize(transforms, (false, 0, 0));
            for sink in &mut self.summary.stages[1 + transforms..] {
                sink.rows_in = Some(so_far.rows_out);
            }
        }
        let fused = pipeline.plan.fused_steps();
        // Stages counted by their wrappers; the rest (fused, or never reached) stay unknown
        // until filled in from their neighbours below.
        for (i, &(called, rows_in, rows_out)) in counted.iter().enumerate() {
            let stage = &mut self.summary.stages[1 + i];
            if fused.contains(&i) {
                stage.fused = pipeline.plan.fusion.as_ref().map(|f| f.kernel.short_name());
            }
            // A kernel that calls a stage's own masks or state (the CSV aggregate) has its
            // rows counted too; the word count's stages are never called.
            if called {
                stage.rows_in = Some(rows_in);
                // An aggregation's output is counted by whatever takes it next.
                let aggregate = matches!(
                    pipeline.stages[i].stage.kind,
                    crate::transforms::StageKind::Aggregate(_)
                );
                stage.rows_out = (!aggregate).then_some(rows_out);
            }
        }
        // A failed run keeps what its stages counted and the warnings it gave, and claims
        // nothing more.
        let Some(facts) = facts else {
            self.summary.warnings.messages = feed.warnings_so_far();
            return;
        };
        let source_rows = facts.source_rows.or_else(|| match transforms {
            0 => Some(facts.rows_out),
            // Unknown (None) when a kernel replaced the first stage without counting.
            _ => self.summary.stages[1].rows_in,
        });
        self.summary.stages[0].rows_out = source_rows;
        // An aggregation emits what the next stage takes in; the last stage, the result.
        for i in 1..=transforms {
            let next_in = if i == transforms {
                Some(facts.rows_out)
            } else {
                self.summary.stages[i + 1].rows_in
            };
            let stage_fused = self.summary.stages[i].fused.is_some();
            let last_of_fusion = pipeline
                .plan
                .fusion
                .as_ref()
                .is_some_and(|f| f.count + 1 == i);
            if self.summary.stages[i].rows_out.is_none() && (!stage_fused || last_of_fusion) {
                self.summary.stages[i].rows_out = next_in;
            }
            let previous_out = self.summary.stages[i - 1].rows_out;
            if !stage_fused && self.summary.stages[i].rows_in.is_none() {
                self.summary.stages[i].rows_in = previous_out;
            }
        }
        // Streams in update mode feed two states per aggregation: take what was handed in.
        for i in 1..=transforms {
            let is_aggregate = matches!(
                pipeline.stages[i - 1].stage.kind,
                crate::transforms::StageKind::Aggregate(_)
            );
            if is_aggregate && self.summary.stages[i].fused.is_none() {
                if let Some(previous_out) = self.summary.stages[i - 1].rows_out {
                    self.summary.stages[i].rows_in = Some(previous_out);
                }
            }
        }
        let sinks = self.summary.stages.len() - 1 - transforms;
        for sink in 0..sinks {
            self.summary.stages[1 + transforms + sink].rows_in = Some(facts.rows_out);
        }
        self.summary.rows_in = source_rows;
        self.summary.rows_out = Some(facts.rows_out);
        self.summary.epochs = facts.epochs;
        self.summary.warnings.messages = facts.warnings;
        self.summary.warnings.late_rows = facts.late_rows;
    }

    /// The finished record of a run that ended with `error` (or succeeded).
    pub fn finish(&mut self, error: Option<&Error>) -> RunSummary {
        let ended = SystemTime::now();
        self.summary.ended = rfc3339(ended);
        self.summary.duration_seconds = ended
            .duration_since(self.started)
            .map_or(0.0, |d| (d.as_secs_f64() * 1e6).round() / 1e6);
        if let Some(error) = error {
            self.summary.exit_code = error.exit_code();
            self.summary.status = match error.exit_code() {
                crate::error::EXIT_INVALID => "invalid",
                _ => "failed",
            };
            self.summary.error = Some(error.to_string());
        }
        // A file counts as written in this run if its modification time changed (sinks replace
        // files by rename, so a rewrite is a new file). Not "newer than the start": file times
        // come from a coarse kernel clock and can read a few milliseconds earlier than that.
        self.summary.outputs = self
            .sink_outputs
            .iter()
            .filter_map(|(path, before)| {
                let meta = std::fs::metadata(path).ok()?;
                (meta.modified().ok() != *before).then(|| OutputSummary {
                    path: path.display().to_string(),
                    bytes: meta.len(),
                })
            })
            .collect();
        self.summary.clone()
    }

    /// The pipeline file this recorder is about.
    pub fn file(&self) -> &Path {
        &self.file
    }
}

/// Whether two paths name one file: the same file when both exist (links, `..`), else the
/// same absolute path once their folders are resolved.
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    if let (Ok(a), Ok(b)) = (std::fs::metadata(a), std::fs::metadata(b)) {
        use std::os::unix::fs::MetadataExt;
        return a.dev() == b.dev() && a.ino() == b.ino();
    }
    let resolved = |path: &Path| {
        let folder = match path.parent() {
            Some(folder) if !folder.as_os_str().is_empty() => folder,
            _ => Path::new("."),
        };
        std::fs::canonicalize(folder)
            .ok()
            .map(|folder| folder.join(path.file_name().unwrap_or_default()))
    };
    matches!((resolved(a), resolved(b)), (Some(a), Some(b)) if a == b)
}

impl RunSummary {
    /// Writes the summary as pretty JSON to `path`, atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self)
            .map_err(|e| Error::runtime(format!("cannot encode the run summary: {e}")))?;
        let json = format!("{}\n", crate::redact::redact(&json));
        crate::io::atomic::write(path, json.as_bytes())
    }

    /// The line a batch run prints on stderr when it ends.
    pub fn one_line(&self) -> String {
        let mut line = format!(
            "{}: {} in {:.3} s",
            self.pipeline.as_deref().unwrap_or(&self.file),
            self.status,
            self.duration_seconds
        );
        if let Some(bytes) = self.bytes_read {
            line.push_str(&format!(", {} read", human_bytes(bytes)));
        }
        if let Some(rows) = self.rows_in {
            line.push_str(&format!(", {rows} rows in"));
        }
        if let Some(rows) = self.rows_out {
            line.push_str(&format!(", {rows} rows out"));
        }
        if !self.outputs.is_empty() {
            let paths: Vec<&str> = self.outputs.iter().map(|o| o.path.as_str()).collect();
            line.push_str(&format!("; wrote {}", paths.join(", ")));
        }
        let warnings = self.warnings.messages.len();
        if warnings > 0 {
            line.push_str(&format!("; {warnings} warning(s)"));
        }
        line
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).ok()?.modified().ok()
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KB", b as f64 / (1u64 << 10) as f64),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(dir: &Path, transforms: &str) -> PathBuf {
        std::fs::write(dir.join("in.txt"), "a b a\nc a\n").unwrap();
        let path = dir.join("p.yaml");
        std::fs::write(
            &path,
            format!("name: t\nsource:\n  type: file\n  path: in.txt\n{transforms}sinks:\n  - type: csv\n    path: out.csv\n"),
        )
        .unwrap();
        path
    }

    fn record(path: &Path, fusion: bool) -> RunSummary {
        let mut recorder = Recorder::start(path, None);
        let loaded = crate::config::load(path, &[]).unwrap();
        recorder.loaded(&loaded);
        let mut built = crate::exec::build(&loaded, Some(1)).unwrap();
        if !fusion {
            built.without_rules();
        }
        recorder.built(&mut built);
        // The summary learns how the run ended from its events.
        let bus = crate::events::Bus::new();
        let feed = SummaryFeed::default();
        bus.subscribe(feed.clone());
        crate::exec::batch::run(&mut built, &bus).unwrap();
        recorder.ran(&built, &feed);
        recorder.finish(None)
    }

    fn rows(summary: &RunSummary) -> Vec<(Option<u64>, Option<u64>)> {
        summary
            .stages
            .iter()
            .map(|s| (s.rows_in, s.rows_out))
            .collect()
    }

    #[test]
    fn counts_rows_through_every_stage_of_the_generic_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline(
            dir.path(),
            "transforms:\n  - type: tokenize\n  - type: group_count\n    by: word\n  - type: limit\n    n: 2\n",
        );
        let summary = record(&p, false);
        assert_eq!(
            rows(&summary),
            [
                (None, Some(2)),
                (Some(2), Some(5)),
                (Some(5), Some(3)),
                (Some(3), Some(2)),
                (Some(2), None)
            ]
        );
        assert_eq!(summary.bytes_read, Some(10));
        assert_eq!(summary.rows_in, Some(2));
        assert_eq!(summary.outputs.len(), 1);
        assert_eq!(summary.file_sha256.as_deref().map(str::len), Some(64));
    }

    #[test]
    fn fused_stages_are_marked_and_the_count_reports_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline(
            dir.path(),
            "transforms:\n  - type: tokenize\n  - type: group_count\n    by: word\n  - type: limit\n    n: 2\n",
        );
        let summary = record(&p, true);
        assert_eq!(summary.stages[1].fused, Some("word count"));
        assert_eq!(summary.stages[2].fused, Some("word count"));
        assert_eq!(
            rows(&summary),
            [
                (None, None),
                (None, None),
                (None, Some(3)),
                (Some(3), Some(2)),
                (Some(2), None)
            ]
        );
    }

    #[test]
    fn a_failure_records_its_exit_code_and_message() {
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline(dir.path(), "");
        let mut recorder = Recorder::start(&p, None);
        let summary = recorder.finish(Some(&Error::runtime("it broke")));
        assert_eq!(
            (summary.status, summary.exit_code),
            ("failed", crate::error::EXIT_RUNTIME)
        );
        assert_eq!(summary.error.as_deref(), Some("it broke"));
    }
}
