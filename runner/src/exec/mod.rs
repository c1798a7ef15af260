//! Wiring: turns a loaded pipeline file into built components (validating every step against
//! the schema flowing into it) and runs them. Only this module knows how the parts connect.

pub mod batch;
pub mod checkpoint;
pub mod counted;
pub mod csv_aggregate;
pub(crate) mod csv_scan;
pub mod external_sort;
pub mod fused;
#[cfg(target_arch = "x86_64")]
pub mod fused_avx512_blocks;
pub mod pipelined;
pub(crate) mod spilled_aggregate;
pub mod split_count;
pub mod stream;

use arrow_schema::SchemaRef;

use crate::config::{LoadedPipeline, Mode, OutputMode};
use crate::error::{Error, Result};
use crate::plan::{LogicalPlan, PhysicalPlan};
use crate::sinks::{Sink, SinkContext};
use crate::sources::{BuiltSource, SourceContext};
use crate::transforms::{BuildContext, StageKind};

pub use crate::plan::BuiltStage;

/// A validated pipeline, ready to run.
pub struct BuiltPipeline {
    /// The pipeline's `name`.
    pub name: String,
    /// The source, batch or stream.
    pub source: BuiltSource,
    /// The transforms, in pipeline order, each checked against its input columns.
    pub stages: Vec<BuiltStage>,
    /// The schema the sinks receive.
    pub output: SchemaRef,
    /// The sinks, in pipeline order; each receives the same result.
    pub sinks: Vec<Box<dyn Sink>>,
    /// Worker threads (already resolved: never 0).
    pub cores: usize,
    /// The pipeline as typed nodes with their declared capabilities.
    pub logical: LogicalPlan,
    /// How it runs: what the executors, `runner plan` and the summary all read.
    pub plan: PhysicalPlan,
    /// How epochs run, in stream mode.
    pub stream: Option<stream::StreamSettings>,
}

impl BuiltPipeline {
    /// Plans every step to run as itself, without the rules' kernels (`--no-fusion`, in batch
    /// and stream runs alike).
    pub fn without_rules(&mut self) {
        self.plan = crate::plan::rules::physical(&self.source, &self.stages, false);
    }
}

/// The rayon pool of `cores` worker threads a run computes on.
pub(crate) fn worker_pool(cores: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(cores)
        .thread_name(|i| format!("runner-worker-{i}"))
        .build()
        .map_err(|e| Error::runtime(format!("cannot start {cores} worker threads: {e}")))
}

/// The most worker threads a run starts (`cores:` and `--cores`): more than any machine has,
/// fewer than would exhaust the process's threads.
pub const MAX_CORES: usize = 1024;

/// Resolves `cores: 0` to the number of CPUs.
pub fn resolve_cores(requested: usize) -> usize {
    if requested > 0 {
        requested
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// Builds every component, checking each step against the columns it receives. Reads no data.
pub fn build(loaded: &LoadedPipeline, cores: Option<usize>) -> Result<BuiltPipeline> {
    build_until(loaded, cores, false).map(|(pipeline, _)| pipeline)
}

/// `build` for `runner plan`, which loads no code: the steps are built up to the first one
/// that would load a shared library (a plugin), whose index is returned; that step and those
/// after it, and the sinks, are left unbuilt (their columns depend on the plugin).
pub fn build_for_plan(
    loaded: &LoadedPipeline,
    cores: Option<usize>,
) -> Result<(BuiltPipeline, Option<usize>)> {
    build_until(loaded, cores, true)
}

fn build_until(
    loaded: &LoadedPipeline,
    cores: Option<usize>,
    stop_before_code: bool,
) -> Result<(BuiltPipeline, Option<usize>)> {
    let config = &loaded.config;
    if config.name.trim().is_empty() {
        return Err(Error::invalid(format!(
            "{}: `name` is empty: give the pipeline a short name (logs and summaries use it)",
            loaded.key_at("name")
        )));
    }
    let base_dir = loaded.base_dir.as_path();
    let source_context = SourceContext {
        base_dir,
        streaming: config.mode == Mode::Stream,
    };
    let builder = config.source.value.builder();
    let source = builder.build(&source_context).map_err(|e| {
        match builder.missing_input(&source_context) {
            Some((path, why)) if why == e => {
                // The message without its path, which the error names first.
                let reason = why
                    .strip_suffix(&format!(": {}", path.display()))
                    .unwrap_or(&why)
                    .to_owned();
                Error::Input {
                    path,
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, reason),
                }
            }
            // The input the columns are inferred from cannot be read: an input failure.
            _ if e.starts_with(crate::sources::file::INFERRED_FROM_INPUT)
                || e.starts_with(crate::sources::file::NOT_TEXT_INPUT) =>
            {
                Error::runtime(format!(
                    "{}: source ({}): {e}",
                    loaded.at(&config.source.referenced),
                    config.source.value.type_name()
                ))
            }
            _ => Error::invalid(format!(
                "{}: source ({}): {e}",
                loaded.at(&config.source.referenced),
                config.source.value.type_name()
            )),
        }
    })?;

    let mut schema = source.schema();
    let mut stages = Vec::new();
    let mut unbuilt = None;
    for (index, step) in config.transforms.iter().enumerate() {
        let label = format!("transforms.{index} ({})", step.value.type_name());
        let builder = step.value.builder();
        if stop_before_code && builder.loads_code().is_some() {
            unbuilt = Some(index);
            break;
        }
        let mut stage = builder
            .build(&BuildContext {
                input: &schema,
                base_dir,
            })
            .map_err(|e| located_error(loaded, builder, &step.referenced, &label, &e))?;
        if let StageKind::Aggregate(aggregation) = &stage.kind {
            match aggregation.batch_form() {
                Some(in_batch) if config.mode == Mode::Batch => {
                    stage.kind = StageKind::Aggregate(in_batch)
                }
                _ => {}
            }
        }
        schema = stage.output.clone();
        stages.push(BuiltStage {
            label,
            at: loaded.at(&step.referenced),
            type_name: step.value.type_name(),
            stage,
        });
    }

    let streaming = config.mode == Mode::Stream;
    let stream = stream_settings(loaded, &source, &stages, unbuilt.is_some())?;
    let mut sinks = Vec::new();
    let built_sinks = if unbuilt.is_some() {
        &[][..]
    } else {
        &config.sinks[..]
    };
    check_outputs_apart(loaded, built_sinks)?;
    for (index, sink) in built_sinks.iter().enumerate() {
        let built = sink
            .value
            .builder()
            .build(&SinkContext {
                input: &schema,
                base_dir,
                streaming,
                appending: stream
                    .as_ref()
                    .is_some_and(|s| s.output_mode == OutputMode::Append),
                updating: stream
                    .as_ref()
                    .is_some_and(|s| s.output_mode == OutputMode::Update),
                // Only a positioned source's epochs are redone after a restart, with the same
                // rows; a socket's epoch ids go on with new rows, which must not be skipped.
                checkpointed: stream.as_ref().is_some_and(|s| s.checkpoint.is_some())
                    && matches!(&source, BuiltSource::Stream(s) if s.positioned()),
                fresh_stream: stream
                    .as_ref()
                    .and_then(|s| s.checkpoint.as_ref())
                    .is_some_and(|c| !checkpoint::holds_epochs(&c.dir)),
                stream_id: stream
                    .as_ref()
                    .and_then(|s| s.checkpoint.as_ref())
                    .map(|c| c.stream_id.clone())
                    .unwrap_or_default(),
                pipeline: &config.name,
            })
            .map_err(|e| {
                Error::invalid(format!(
                    "{}: sinks.{index} ({}): {e}",
                    loaded.at(&sink.referenced),
                    sink.value.type_name()
                ))
            })?;
        sinks.push(built);
    }

    let requested_cores = cores.unwrap_or(config.cores);
    if requested_cores > MAX_CORES {
        // Said where it was given: on the command line, or in the file.
        let given = match cores {
            Some(_) => "--cores".to_owned(),
            None => format!("{}: cores:", loaded.key_at("cores")),
        };
        return Err(Error::invalid(format!(
            "{given} {requested_cores} is more than runner runs on ({MAX_CORES} at most; 0 means every core)"
        )));
    }
    let logical = LogicalPlan::new(config.source.value.type_name(), &source, &stages);
    let plan = crate::plan::rules::physical(&source, &stages, true);
    let pipeline = BuiltPipeline {
        logical,
        plan,
        stream,
        name: config.name.clone(),
        source,
        stages,
        output: schema,
        sinks,
        cores: resolve_cores(requested_cores),
    };
    Ok((pipeline, unbuilt))
}

/// Refuses two sinks that write one path: a `file` and a `csv` sink to `out.csv` (the last to
/// finish would replace the other's output without a word), or two `sqlite` sinks to one
/// database (the second waited for the first's lock, then failed). Paths are compared as
/// resolved (`out/../a.csv` is `a.csv`), and as files where they exist (links).
fn check_outputs_apart(
    loaded: &LoadedPipeline,
    sinks: &[serde_saphyr::Spanned<crate::registry::SinkConfig>],
) -> Result<()> {
    let mut written: Vec<(usize, std::path::PathBuf)> = Vec::new();
    for (index, sink) in sinks.iter().enumerate() {
        let Some(path) = sink.value.builder().output_path() else {
            continue;
        };
        let path = lexically_normal(&loaded.resolve(path));
        if let Some((first, _)) = written
            .iter()
            .find(|(_, other)| *other == path || crate::summary::same_file(other, &path))
        {
            return Err(Error::invalid(format!(
                "{}: sinks.{index} ({}): it writes {}, as sinks.{first} does: two sinks cannot share an output (one would replace the other, or wait for its lock); give each sink its own path",
                loaded.at(&sink.referenced),
                sink.value.type_name(),
                crate::error::escape_path(&path)
            )));
        }
        written.push((index, path));
    }
    // An output where the source reads would be read as input: in a stream by its next
    // epochs, in a batch run by the next run (a folder's or a glob's files). A batch run
    // that names the very file it reads replaces it in place: the output takes its place
    // only once the input has been read to its end.
    if let Some(read) = file_source_path(loaded) {
        let in_place = loaded.config.mode != Mode::Stream
            && !read.is_dir()
            && !crate::sources::file::is_pattern(&read);
        // A stream's output mode is `append` where it is not given and nothing aggregates.
        let aggregates = loaded
            .config
            .transforms
            .iter()
            .any(|step| matches!(step.value.type_name(), "aggregate" | "group_count"));
        let stream_appends = loaded.config.mode == Mode::Stream
            && match &loaded.config.output_mode {
                Some(mode) => mode.value == crate::config::OutputMode::Append,
                None => !aggregates,
            };
        for (index, path) in &written {
            // A folder of files (a stream's Parquet parts) is not listed by any source.
            let folder = sinks[*index]
                .value
                .builder()
                .writes_a_folder(stream_appends);
            if crate::sources::file::would_read(&read, path) && !in_place && !folder {
                let sink = &sinks[*index];
                return Err(Error::invalid(format!(
                    "{}: sinks.{index} ({}): it writes {}, where the source reads: its output would be read as input ({}); write it elsewhere",
                    loaded.at(&sink.referenced),
                    sink.value.type_name(),
                    crate::error::escape_path(path),
                    match loaded.config.mode {
                        Mode::Stream => "by the stream's next epochs",
                        _ => "by the next run",
                    }
                )));
            }
        }
    }
    Ok(())
}

/// The path a `file` source reads, resolved as the source resolves it; `None` for other
/// sources and for standard input.
pub(crate) fn file_source_path(loaded: &LoadedPipeline) -> Option<std::path::PathBuf> {
    if loaded.config.source.value.type_name() != "file" {
        return None;
    }
    let path = loaded.document["source"]["path"].as_str()?;
    (path != "-").then(|| {
        loaded.resolve(std::path::Path::new(
            &crate::settings::env::expanded_for_record(path),
        ))
    })
}

/// `path` made absolute (against the working directory) with `.` and `..` resolved by name.
fn lexically_normal(path: &std::path::Path) -> std::path::PathBuf {
    use std::path::Component;
    let absolute = match path.is_absolute() {
        true => path.to_path_buf(),
        false => std::env::current_dir().unwrap_or_default().join(path),
    };
    let mut normal = std::path::PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                normal.pop();
            }
            other => normal.push(other),
        }
    }
    normal
}

/// A step's build error, located at the value it is about (a `where:` expression, at the
/// character the expression's error names) or at the step, with the file's lines around it.
fn located_error(
    loaded: &LoadedPipeline,
    builder: &dyn crate::transforms::BuildTransform,
    step: &serde_saphyr::Location,
    label: &str,
    message: &str,
) -> Error {
    let Some(value) = builder.error_location(message).filter(|l| l.line() > 0) else {
        return Error::invalid(format!("{}: {label}: {message}", loaded.at(step)));
    };
    // "in `EXPR` at character N: why" gives the offset inside the value.
    let at_character = message
        .split_once(" at character ")
        .and_then(|(_, rest)| rest.split_once(':'))
        .and_then(|(n, _)| n.trim().parse::<usize>().ok())
        .map_or(0, |n| n.saturating_sub(1));
    // Where that character is in the file: after a quote, on a block scalar's lines, past
    // escapes.
    let text = loaded.value_text();
    let (line, column) = text.as_ref().map_or(
        (
            value.line() as usize,
            value.column() as usize + at_character,
        ),
        |(text, _)| {
            position_in_scalar(
                text,
                value.line() as usize,
                value.column() as usize,
                at_character,
            )
        },
    );
    let why = message
        .split_once(" at character ")
        .and_then(|(_, rest)| rest.split_once(": "))
        .map_or_else(|| without_labels(message), |(_, why)| why);
    let snippet = loaded.snippet_at(line, column, why);
    // YAML ends a plain value at ` #` (a comment): a string cut there has no closing quote.
    let cut_by_comment = message.contains("has no closing quote")
        && text.as_ref().is_some_and(|(text, _)| {
            text.lines()
                .nth(value.line() as usize - 1)
                .is_some_and(|l| l.contains(" #"))
        });
    let message = if cut_by_comment {
        format!("{message} (YAML takes ` #` as the start of a comment: put the whole expression in double quotes)")
    } else {
        message.to_owned()
    };
    let name = text.map_or_else(|| loaded.display_name.clone(), |(_, name)| name);
    let at = format!("{name}:{line}:{column}");
    if snippet.is_empty() {
        Error::invalid(format!("{at}: {label}: {message}"))
    } else {
        Error::invalid(format!("{at}: {label}: {message}\n{snippet}"))
    }
}

/// `message` without the labels that say which setting it is about (`aggs: total: `), which
/// the snippet shows by pointing at it.
fn without_labels(message: &str) -> &str {
    let mut rest = message;
    while let Some((label, after)) = rest.split_once(": ") {
        if label.is_empty() || label.contains([' ', '`']) {
            break;
        }
        rest = after;
    }
    rest
}

/// The line and column (from 1) in `text` of character `at` of the value of the YAML scalar
/// that starts at `line`, `column`: plain, quoted (escapes and `''` count as the one character
/// they stand for) or a block scalar (`|` or `>`: its lines below, indentation left out).
fn position_in_scalar(text: &str, line: usize, column: usize, at: usize) -> (usize, usize) {
    let lines: Vec<&str> = text.lines().collect();
    let plain = (line, column + at);
    let Some(first) = lines.get(line.wrapping_sub(1)) else {
        return plain;
    };
    let raw: Vec<char> = first.chars().skip(column.saturating_sub(1)).collect();
    let before: String = first.chars().take(column.saturating_sub(1)).collect();
    // The parser may place a block scalar at its indicator or at its first line of text.
    let block_text_here = before.trim().is_empty()
        && line >= 2
        && lines[..line - 1]
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .is_some_and(|l| {
                let indicator = l
                    .trim_end()
                    .trim_end_matches(|c: char| c == '-' || c == '+' || c.is_ascii_digit());
                indicator.ends_with('|') || indicator.ends_with('>')
            });
    let block = match raw.first() {
        Some('|' | '>') => Some(line),
        _ if block_text_here => Some(line - 1),
        _ => None,
    };
    match raw.first() {
        _ if block.is_some() => {
            let line = block.unwrap_or(line);
            let content = &lines[line.min(lines.len())..];
            let indent = content
                .iter()
                .find(|l| !l.trim().is_empty())
                .map_or(0, |l| l.len() - l.trim_start_matches(' ').len());
            let mut left = at;
            for (index, content_line) in content.iter().enumerate() {
                let blank = content_line.trim().is_empty();
                if !blank
                    && content_line.len() - content_line.trim_start_matches(' ').len() < indent
                {
                    break;
                }
                // Each line is its characters and one more: the line break (or the space a
                // folded one becomes).
                let length = if blank {
                    0
                } else {
                    content_line.chars().count() - indent
                };
                if left < length {
                    return (line + 1 + index, indent + left + 1);
                }
                left -= (length + 1).min(left);
            }
            plain
        }
        Some(quote @ ('"' | '\'')) => {
            let mut raw_at = 1;
            for _ in 0..at {
                let step = match (quote, raw.get(raw_at), raw.get(raw_at + 1)) {
                    ('"', Some('\\'), Some('x')) => 4,
                    ('"', Some('\\'), Some('u')) => 6,
                    ('"', Some('\\'), Some('U')) => 10,
                    ('"', Some('\\'), _) => 2,
                    ('\'', Some('\''), Some('\'')) => 2,
                    (_, None, _) => return plain,
                    _ => 1,
                };
                raw_at += step;
            }
            (line, column + raw_at)
        }
        _ => plain,
    }
}

/// What a stage declares about its windows, when it is a windowed aggregation.
fn windowing(stage: &BuiltStage) -> Option<crate::transforms::Windowing> {
    match &stage.stage.kind {
        crate::transforms::StageKind::Aggregate(a) => a.windowed(),
        _ => None,
    }
}

/// Checks the streaming settings against the mode, the source and the transforms, as Spark
/// does when a query starts: an illegal combination never runs.
/// `partial`: the stages end early (`build_for_plan`), so the checks that need all of them
/// are left to `runner validate` and `run`.
fn stream_settings(
    loaded: &LoadedPipeline,
    source: &BuiltSource,
    stages: &[BuiltStage],
    partial: bool,
) -> Result<Option<stream::StreamSettings>> {
    let config = &loaded.config;
    let file = &loaded.display_name;
    let source_at = loaded.at(&config.source.referenced);
    let source_type = config.source.value.type_name();
    if config.mode == Mode::Batch {
        if let BuiltSource::Stream(_) = source {
            let why = match source_type {
                "replay" => "replays its tape as a stream, at the pace it was recorded",
                _ => "never ends",
            };
            return Err(Error::invalid(format!(
                "{source_at}: the `{source_type}` source {why}, so it needs `mode: stream`, not `mode: batch`"
            )));
        }
        let stream_only = [
            ("trigger", config.trigger.is_some()),
            ("output_mode", config.output_mode.is_some()),
            ("stop_after", config.stop_after.is_some()),
            ("max_epochs", config.max_epochs.is_some()),
            ("emit_empty", config.emit_empty),
            ("checkpoint", config.checkpoint.is_some()),
        ];
        if let Some((key, _)) = stream_only.iter().find(|(_, set)| *set) {
            return Err(Error::invalid(format!(
                "{}: `{key}` only applies to `mode: stream`",
                loaded.key_at(key)
            )));
        }
        return Ok(None);
    }
    if let BuiltSource::Batch(_) = source {
        return Err(Error::invalid(format!(
            "{source_at}: the `{source_type}` source reads a bounded input: use `mode: batch`, or a streaming source such as `socket`"
        )));
    }
    let aggregation = stages
        .iter()
        .find(|s| matches!(s.stage.kind, crate::transforms::StageKind::Aggregate(_)));
    let output_mode = match (&config.output_mode, aggregation) {
        (Some(mode), None) if partial => mode.value,
        (None, None) if partial => OutputMode::Append,
        (None, Some(_)) => OutputMode::Complete,
        (None, None) => OutputMode::Append,
        (Some(mode), Some(aggregation))
            if mode.value == OutputMode::Append && windowing(aggregation).is_some() =>
        {
            if windowing(aggregation).is_some_and(|w| w.watermark.is_none()) {
                return Err(Error::invalid(format!(
                    "{}: `output_mode: append` emits each window once, when it is final, and only a `watermark` makes windows final: add `watermark: 2m` (say) to {}, as Spark requires",
                    loaded.at(&mode.referenced),
                    aggregation.label
                )));
            }
            OutputMode::Append
        }
        (Some(mode), Some(aggregation)) if mode.value == OutputMode::Append => {
            return Err(Error::invalid(format!(
                "{}: `output_mode: append` cannot follow {}: its counts keep changing after they are emitted, so no row is ever final. Use `complete` (the whole table each epoch) or `update` (changed rows). Spark rejects this too, without a watermark.",
                loaded.at(&mode.referenced),
                aggregation.label
            )));
        }
        (Some(mode), None) if mode.value == OutputMode::Complete => {
            return Err(Error::invalid(format!(
                "{}: `output_mode: complete` needs an aggregation (such as group_count) to have a table to emit; use `append`",
                loaded.at(&mode.referenced)
            )));
        }
        (Some(mode), _) => mode.value,
    };
    if let Some((windowed, window)) = aggregation.and_then(|a| Some((a, windowing(a)?))) {
        let keeps_all = output_mode == OutputMode::Complete
            || (output_mode == OutputMode::Update && window.watermark.is_none());
        if keeps_all && !partial {
            tracing::warn!(
                "{}: every window is kept for ever (the state grows with the stream): only `append` or `update` with a `watermark` frees final windows",
                windowed.label
            );
        }
    }
    if aggregation.is_some() {
        let aggregations = stages
            .iter()
            .filter(|s| matches!(s.stage.kind, crate::transforms::StageKind::Aggregate(_)))
            .count();
        if aggregations > 1 {
            return Err(Error::invalid(format!("{file}: a stream can have one aggregation (`aggregate` or `group_count`), this one has {aggregations}")));
        }
    }
    if config.max_epochs == Some(0) {
        return Err(Error::invalid(format!(
            "{}: `max_epochs: 0` would run no epoch; give 1 or more, or leave it out",
            loaded.key_at("max_epochs")
        )));
    }
    let trigger = match &config.trigger {
        None => stream::Trigger::Continuous,
        Some(t) => match (t.value.processing_time, t.value.available_now) {
            (Some(_), true) => {
                return Err(Error::invalid(format!(
                    "{}: give either `processing_time` or `available_now`, not both",
                    loaded.at(&t.referenced)
                )))
            }
            (Some(interval), false) => stream::Trigger::ProcessingTime(interval),
            (None, true)
                if source_type == "file"
                    && !loaded.document["source"]["poll"].is_null() =>
            {
                return Err(Error::invalid(format!(
                    "{}: `available_now` reads until the source ends, and a `file` source with `poll` never ends: leave out `poll` to read the files there and stop",
                    loaded.at(&t.referenced)
                )))
            }
            (None, true) => stream::Trigger::AvailableNow,
            (None, false) => stream::Trigger::Continuous,
        },
    };
    if let (Some(c), Some(read)) = (&config.checkpoint, file_source_path(loaded)) {
        if crate::sources::file::would_read(&read, &loaded.resolve(&c.dir).join("commit.json")) {
            return Err(Error::invalid(format!(
                "{}: the checkpoint's folder `{}` is where the source reads: its files would be read as input; put the checkpoint elsewhere",
                loaded.key_at("checkpoint"),
                crate::error::escape_path(&c.dir)
            )));
        }
    }
    let checkpoint = config
        .checkpoint
        .as_ref()
        .map(|c| stream::CheckpointSettings {
            dir: loaded.resolve(&c.dir),
            every: c.every,
            identity: checkpoint_identity(loaded, source, stages, output_mode),
            stream_id: Default::default(),
            lock_wait: None,
        });
    Ok(Some(stream::StreamSettings {
        trigger,
        output_mode,
        stop_after: config.stop_after,
        max_epochs: config.max_epochs,
        emit_empty: config.emit_empty,
        checkpoint,
    }))
}

/// What a stream's checkpoint must match to be continued: the source (its type and columns;
/// for a positioned source, whose positions are offsets into what it reads, its settings too),
/// and every step up to and including the aggregation: its type, its settings as written
/// (canonical: keys sorted, comments and layout ignored) and the columns it gives.
fn checkpoint_identity(
    loaded: &LoadedPipeline,
    source: &BuiltSource,
    stages: &[BuiltStage],
    output_mode: OutputMode,
) -> checkpoint::Identity {
    let config = &loaded.config;
    let mut source_identity = format!(
        "`{}` with columns [{}]",
        config.source.value.type_name(),
        crate::data::columns(&source.schema()).join(", ")
    );
    if let BuiltSource::Stream(stream) = source {
        if stream.positioned() {
            source_identity.push_str(&format!(
                " reading {}",
                canonical_json(&expanded(&checkpoint::without_pacing(
                    &loaded.document["source"]
                )))
            ));
        }
    }
    let through_aggregation = stages
        .iter()
        .position(|s| matches!(s.stage.kind, crate::transforms::StageKind::Aggregate(_)))
        .map_or(stages.len(), |i| i + 1);
    checkpoint::Identity {
        source: source_identity,
        stages: stages[..through_aggregation]
            .iter()
            .enumerate()
            .map(|(index, built)| checkpoint::StageIdentity {
                step: built.label.clone(),
                settings: canonical_json(&expanded(&loaded.document["transforms"][index])),
                output: crate::data::columns(&built.stage.output),
            })
            .collect(),
        output_mode: Some(
            match output_mode {
                OutputMode::Append => "append",
                OutputMode::Update => "update",
                OutputMode::Complete => "complete",
            }
            .to_owned(),
        ),
    }
}

/// `value` with `${VAR}` replaced in its texts, as the fields reading them replace them: a
/// checkpoint made with `path: ${INDIR}` must not go on reading another directory (secrets
/// stay written as `${VAR}`).
fn expanded(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::String(text) => {
            serde_json::Value::String(crate::settings::env::expanded_for_record(text))
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(expanded).collect())
        }
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.iter()
                .map(|(key, value)| (key.clone(), expanded(value)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// JSON with every object's keys sorted: the same settings give the same text, whatever their
/// order in the file.
fn canonical_json(value: &serde_json::Value) -> String {
    fn sorted(value: &serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                serde_json::Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.clone(), sorted(v)))
                        .collect(),
                )
            }
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.iter().map(sorted).collect())
            }
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

/// What a run dropped or left out before it failed is still worth knowing: told as the end of
/// a run tells it, logged, and kept by the run summary and the live page.
pub(crate) fn tell_warnings_of_failed_run(warnings: Vec<String>, bus: &crate::events::Bus) {
    for message in warnings {
        tracing::warn!("{message}");
        bus.publish(crate::events::Event::Warning { message });
    }
}

#[cfg(test)]
mod tests {
    use super::{position_in_scalar, without_labels};

    #[test]
    fn labels_are_left_out_of_the_snippet() {
        assert_eq!(
            without_labels("aggs: m: `median` is not an aggregate function"),
            "`median` is not an aggregate function"
        );
        assert_eq!(
            without_labels("by: `word` is listed twice"),
            "`word` is listed twice"
        );
        assert_eq!(
            without_labels("there is no column `cnt`: see columns"),
            "there is no column `cnt`: see columns"
        );
        assert_eq!(without_labels("where: x"), "x");
    }

    #[test]
    fn an_expressions_character_is_found_in_any_yaml_style() {
        let text = "a:\n  where: |\n    i > 3\n      and bogus > 1\n  b: \"s == '\\u00e9\\u00e9' and boguz\"\n  c: 'it''s or bogy'\n  d: plain bogx\n";
        // `bogus` is character 12 of "i > 3\n  and bogus > 1" (from 0).
        assert_eq!(position_in_scalar(text, 2, 10, 12), (4, 11));
        assert_eq!(position_in_scalar(text, 2, 10, 0), (3, 5));
        // The same, located at the block's first line of text.
        assert_eq!(position_in_scalar(text, 3, 5, 12), (4, 11));
        assert_eq!(position_in_scalar(text, 3, 5, 2), (3, 7));
        // `boguz`: character 14 of "s == 'éé' and boguz"; each escape is 6 characters.
        assert_eq!(position_in_scalar(text, 5, 6, 14), (5, 6 + 25));
        // `bogy`: character 8 of "it's or bogy"; `''` is 2.
        assert_eq!(position_in_scalar(text, 6, 6, 8), (6, 6 + 1 + 9));
        assert_eq!(position_in_scalar(text, 7, 6, 6), (7, 12));
        // Past the text: the plain guess, no panic.
        assert_eq!(position_in_scalar(text, 99, 1, 3), (99, 4));
    }

    #[test]
    fn identity_ignores_key_order_comments_and_layout_but_not_settings() {
        let dir = tempfile::tempdir().unwrap();
        let identity = |transforms: &str| {
            let path = dir.path().join("p.yaml");
            std::fs::write(
                &path,
                format!("name: t\nmode: stream\nsource: {{type: socket, port: 9}}\ntransforms:\n{transforms}\ncheckpoint: {{dir: cp}}\nsinks:\n  - type: stdout\n"),
            )
            .unwrap();
            let loaded = crate::config::load(&path, &[]).unwrap();
            let built = super::build(&loaded, Some(1)).unwrap();
            built.stream.unwrap().checkpoint.unwrap().identity.hash()
        };
        let written = identity("  - {type: explode, column: line, separator: ' ', as: tag}\n  - {type: group_count, by: tag}");
        let reordered = identity("  - as: tag   # the pieces\n    separator: ' '\n    column: line\n    type: explode\n  - {by: tag, type: group_count}");
        assert_eq!(written, reordered);
        let changed = identity("  - {type: explode, column: line, separator: ',', as: tag}\n  - {type: group_count, by: tag}");
        assert_ne!(written, changed);
    }
}
