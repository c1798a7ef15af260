//! The pipeline file: its YAML model, loading, `${VAR}` and `--set`, and error reporting with
//! file, line and column.
//!
//! YAML is read with serde-saphyr (pure Rust, no panics, a location and snippet for every
//! error); serde_yaml is archived and loses locations inside `type:`-tagged blocks.

pub mod overrides;

pub use crate::settings::{duration, env, resolve_against, suggestion, tagged};

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::{Location, MessageFormatter, Spanned};

pub use overrides::Override;

use crate::error::{Error, Result};
use crate::registry::{SinkConfig, SourceConfig, TransformConfig};

/// A pipeline: one source, transforms applied in order, one or more sinks.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "runner pipeline")]
pub struct PipelineConfig {
    /// A short name, used in logs.
    #[serde(deserialize_with = "env::string")]
    pub name: String,
    /// What the pipeline does, for people reading it.
    #[serde(default, deserialize_with = "env::opt_string")]
    pub description: Option<String>,
    /// `batch` runs to the end of the input; `stream` runs micro-batches on a trigger.
    #[serde(default)]
    pub mode: Mode,
    /// Worker threads; 0 means every core, at most 1024. `--cores N` overrides it.
    #[serde(default)]
    pub cores: usize,
    /// Where records come from.
    #[schemars(with = "SourceConfig")]
    pub source: Spanned<SourceConfig>,
    /// Applied in order to every record.
    #[serde(default)]
    #[schemars(with = "Vec<TransformConfig>")]
    pub transforms: Vec<Spanned<TransformConfig>>,
    /// Where the result goes; every sink gets the same result.
    #[schemars(with = "Vec<SinkConfig>")]
    pub sinks: Vec<Spanned<SinkConfig>>,
    /// Streaming: when a micro-batch (epoch) runs. Omitted: as soon as the previous one ends.
    #[serde(default)]
    #[schemars(with = "Option<TriggerConfig>")]
    pub trigger: Option<Spanned<TriggerConfig>>,
    /// Streaming: what sinks receive each epoch (`complete`, `update` or `append`). Default:
    /// `complete` with an aggregation, else `append`.
    #[serde(default)]
    #[schemars(with = "Option<OutputMode>")]
    pub output_mode: Option<Spanned<OutputMode>>,
    /// Streaming: stop after this long (like `awaitTermination(timeout)`), e.g. `600s`, `10m`.
    #[serde(default, deserialize_with = "duration::opt")]
    #[schemars(with = "Option<String>")]
    pub stop_after: Option<std::time::Duration>,
    /// Streaming: stop after this many epochs (1 or more).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub max_epochs: Option<u64>,
    /// Streaming: run an epoch even when no new rows arrived.
    #[serde(default)]
    pub emit_empty: bool,
    /// Streaming: save the epoch id, the aggregation's state and the source position after
    /// epochs, so that a restarted run continues (`{dir: ../state/hashtags, every: 1}`).
    #[serde(default)]
    pub checkpoint: Option<CheckpointConfig>,
    /// When `runner schedule` runs this pipeline: a cron expression such as `0 3 * * *`
    /// (minute hour day-of-month month day-of-week; six fields put seconds first), in local
    /// time or after a time zone: `CRON_TZ=Europe/Paris 0 3 * * *`.
    #[serde(default)]
    pub schedule: Option<crate::schedule::Schedule>,
    /// Which engine runs the pipeline: runner's own (`local`, the default) or a Spark cluster
    /// through Spark Connect (`{type: spark, remote: "sc://host:15002"}`).
    #[serde(default)]
    pub engine: Option<crate::spark::EngineConfig>,
    /// Write a JSON summary of every run (status, times, rows per stage, outputs, warnings)
    /// to this file, relative to the pipeline file. `--summary` overrides it.
    #[serde(default, deserialize_with = "env::opt_path")]
    pub summary: Option<PathBuf>,
    /// Serve a live page of every run in the browser (`ui: {}` on 127.0.0.1:4040; `--ui`
    /// does the same for one run): the result's chart and table, the plan with rows per step,
    /// epochs, warnings, and `/metrics` for Prometheus.
    #[serde(default)]
    pub ui: Option<crate::ui::UiConfig>,
}

/// When epochs run.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerConfig {
    /// One epoch per interval, aligned to multiples of it (`10s`, `500ms`); a stream of files
    /// takes its files whole, so a trigger waits for the end of the files being read.
    #[serde(default, deserialize_with = "duration::opt")]
    #[schemars(with = "Option<String>")]
    pub processing_time: Option<std::time::Duration>,
    /// Process what the source has until it ends, in as many epochs as needed, then stop.
    #[serde(default)]
    pub available_now: bool,
}

/// What sinks receive each epoch, as in Spark Structured Streaming.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutputMode {
    /// The whole result table (needs an aggregation).
    Complete,
    /// Only the rows that changed in this epoch.
    Update,
    /// Only new rows (not allowed after an aggregation: counts change after being emitted).
    Append,
}

/// `checkpoint:` of a stream pipeline.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// The directory holding the checkpoint, relative to the pipeline file (created when
    /// missing). One directory per pipeline.
    #[serde(deserialize_with = "env::path")]
    #[schemars(with = "String")]
    pub dir: PathBuf,
    /// Save after every this many epochs (and always when the stream stops). Default 1.
    #[serde(default = "every_epoch")]
    #[schemars(with = "u64", range(min = 1))]
    pub every: std::num::NonZeroU64,
}

fn every_epoch() -> std::num::NonZeroU64 {
    std::num::NonZeroU64::MIN
}

/// How the pipeline runs: once over its input, or as a stream of micro-batches.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Runs once to the end of the input (the default).
    #[default]
    Batch,
    /// Runs micro-batches on a trigger until stopped.
    Stream,
}

/// A pipeline file read and parsed, not yet built into components.
#[derive(Debug)]
pub struct LoadedPipeline {
    /// The file as given on the command line.
    pub path: PathBuf,
    /// Relative paths in the file are resolved against this directory.
    pub base_dir: PathBuf,
    /// How messages name the file (notes `--set` when locations refer to the overridden text).
    pub display_name: String,
    /// The parsed pipeline, with `--set` overrides applied.
    pub config: PipelineConfig,
    /// The document as written (after `--set`), untyped: each step's settings in a canonical
    /// form (keys sorted, comments and layout gone), for checkpoint identity.
    pub document: serde_json::Value,
    /// With `--set` (or `--input`): the changed text, which the locations of values inside
    /// steps (a `where:`, a `select` item) refer to, and the option that changed it; steps,
    /// `trigger` and `output_mode` are placed in the file.
    pub rewritten: Option<(String, &'static str)>,
}

impl LoadedPipeline {
    /// `file:line:column` for a location in the pipeline file.
    pub fn at(&self, location: &Location) -> String {
        if location.line() == 0 {
            self.display_name.clone()
        } else {
            format!(
                "{}:{}:{}",
                self.display_name,
                location.line(),
                location.column()
            )
        }
    }

    /// `file:line:1` for a key of the pipeline (`cores:`) written on a line of its own, as in
    /// block YAML; the file's name alone when it is not found so (a flow-style file).
    pub fn key_at(&self, key: &str) -> String {
        let line = self.value_text().and_then(|(text, name)| {
            let at = text.lines().position(|line| {
                line.strip_prefix(key)
                    .is_some_and(|rest| rest.trim_start().starts_with(':'))
            })?;
            Some(format!("{name}:{}:1", at + 1))
        });
        line.unwrap_or_else(|| self.display_name.clone())
    }

    /// The lines of the pipeline file around `location`, framed as the parser's errors are,
    /// with a caret `offset` characters to the right of it; empty when the file cannot be
    /// read again or the location is unknown.
    pub fn snippet(&self, location: &Location, offset: usize, message: &str) -> String {
        self.snippet_at(
            location.line() as usize,
            location.column() as usize + offset,
            message,
        )
    }

    /// The text that the locations of values inside steps refer to, and how to name it: the
    /// file, or with `--set` the changed text (`p.yaml (with --set)`).
    pub fn value_text(&self) -> Option<(String, String)> {
        match &self.rewritten {
            Some((text, flag)) => {
                Some((text.clone(), format!("{} (with {flag})", self.display_name)))
            }
            None => read_pipeline_file(&self.path)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok())
                .map(|text| (text, self.display_name.clone())),
        }
    }

    /// [`LoadedPipeline::snippet`] at `line` and `column` (from 1) of a value inside a step
    /// (see [`LoadedPipeline::value_text`]).
    pub fn snippet_at(&self, line: usize, column: usize, message: &str) -> String {
        let Some((text, name)) = self.value_text() else {
            return String::new();
        };
        let lines: Vec<&str> = text.lines().collect();
        if line == 0 || line > lines.len() {
            return String::new();
        }
        let first = line.saturating_sub(2).max(1);
        let last = (line + 2).min(lines.len());
        let width = last.to_string().len();
        let mut out = format!(
            "{:width$}--> {}:{}:{}\n{:width$} |\n",
            "", name, line, column, ""
        );
        for number in first..=last {
            out.push_str(&format!("{number:>width$} | {}\n", lines[number - 1]));
            if number == line {
                let caret = column.saturating_sub(1);
                out.push_str(&format!(
                    "{:width$} | {}^ {message}\n",
                    "",
                    " ".repeat(caret)
                ));
            }
        }
        out.push_str(&format!("{:width$} |", ""));
        out
    }

    /// Resolves a path written in the pipeline file against the file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        resolve_against(&self.base_dir, path)
    }
}

/// The bytes of pipeline file `path`. One that is not a regular file (`runner run <(...)`, a
/// pipe) can be read once only: its bytes are kept for the rest of the process, so that the
/// run, its summary and its messages read the same text. A regular file is read each time
/// (`runner schedule` reads a file again for each run, edits included).
pub fn read_pipeline_file(path: &Path) -> std::io::Result<std::sync::Arc<[u8]>> {
    static PIPED: std::sync::Mutex<Vec<(PathBuf, std::sync::Arc<[u8]>)>> =
        std::sync::Mutex::new(Vec::new());
    if std::fs::metadata(path)?.is_file() {
        return Ok(std::fs::read(path)?.into());
    }
    let mut piped = PIPED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, bytes)) = piped.iter().find(|(p, _)| p == path) {
        return Ok(bytes.clone());
    }
    let bytes: std::sync::Arc<[u8]> = std::fs::read(path)?.into();
    piped.push((path.to_path_buf(), bytes.clone()));
    Ok(bytes)
}

/// Reads a pipeline file, applies `--set` overrides and parses it.
pub fn load(path: &Path, overrides: &[Override]) -> Result<LoadedPipeline> {
    if crate::testing::is_test_file(path) {
        return Err(Error::invalid(format!(
            "{} is a test file: `runner test {}` runs its tests (this command takes a pipeline file)",
            crate::error::escape_path(path),
            crate::error::escape_path(path)
        )));
    }
    let bytes = read_pipeline_file(path).map_err(|source| Error::PipelineFile {
        path: path.to_path_buf(),
        source,
    })?;
    let text = crate::error::utf8_text(bytes.to_vec(), path, "pipeline")?;
    let mut loaded = load_text(&text, path, overrides)?;
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        // A pipe's folder (`/dev/fd`) holds none of the paths the pipeline names.
        loaded.base_dir = PathBuf::from(".");
    }
    Ok(loaded)
}

/// [`load`] for text already read from `path`: applies `--set` overrides, parses and checks
/// what parsing cannot (an empty file, no sinks). Reads no file; the fuzz target's entry point.
pub fn load_text(text: &str, path: &Path, overrides: &[Override]) -> Result<LoadedPipeline> {
    let base_dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path.display().to_string();
    // `${VAR}` holding a number, a boolean, a duration or a size: in the text, so that a
    // number or boolean field can take it (the others are replaced by the field reading them).
    let substituted = crate::settings::env::substitute_plain_values(text);
    let text = substituted.as_str();
    if text.trim().is_empty() {
        return Err(Error::invalid(format!(
            "{file_name} is empty; a pipeline needs at least `name`, `source` and `sinks`"
        )));
    }
    let (config, rewritten) = if overrides.is_empty() {
        (parse(text, &file_name)?, None)
    } else {
        let changed = apply_overrides(text, &file_name, overrides)?;
        // Named by what changed it: `--input` alone, or `--set`.
        let flag = match overrides
            .iter()
            .all(|o| o.for_sources.is_some_and(|(flag, _)| flag == "--input"))
        {
            true => "--input",
            false => "--set",
        };
        // YAML errors in the changed text can only be located in that text.
        let mut config = parse(&changed, &format!("{file_name} (with {flag})"))?;
        relocate(&mut config, text);
        (config, Some((changed, flag)))
    };
    // It parsed as a pipeline, so it parses as a document.
    let mut document = from_yaml(
        rewritten
            .as_ref()
            .map_or(text, |(changed, _)| changed.as_str()),
    )
    .unwrap_or(serde_json::Value::Null);
    expand_shorthands(&mut document);
    let display_name = file_name;
    if config.sinks.is_empty() {
        return Err(Error::invalid(format!(
            "{display_name}: `sinks` is empty; a pipeline needs at least one sink (for example `- type: stdout`)"
        )));
    }
    Ok(LoadedPipeline {
        path: path.to_path_buf(),
        base_dir,
        display_name,
        config,
        document,
        rewritten,
    })
}

/// YAML read without a target type (for `--set` to change, and the plan's copy): YAML 1.2's
/// booleans only, so `on`, `off`, `y`, `n`, `yes` and `no` stay as written (a column renamed
/// to `off`) for the typed parse to read as its field wants.
pub fn from_yaml<'de, T: Deserialize<'de>>(
    text: &'de str,
) -> std::result::Result<T, serde_saphyr::Error> {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    serde_saphyr::from_str_with_options(text, options)
}

/// Parses pipeline YAML; errors name `source_name`, line and column, with a snippet.
pub fn parse(text: &str, source_name: &str) -> Result<PipelineConfig> {
    serde_saphyr::from_str::<PipelineConfig>(text).map_err(|e| {
        // Only a missing field: a misspelt one is told as unknown, with a suggestion.
        let missing = serde_saphyr::DefaultMessageFormatter
            .format_message(&e)
            .starts_with("missing field `");
        if missing {
            if let Some(error) = missing_top_level_field(text, source_name) {
                return error;
            }
            if let Some((step, _)) = step_of_error(text, &e) {
                return yaml_error_in(&e, source_name, Some(&step), None);
            }
        }
        // `- sort: {by: a}`: the options of a step whose type's key takes one option's value.
        if let Some((step, serde_json::Value::Object(block))) = step_of_error(text, &e) {
            if let Some(hint) = options_under_a_value_key(&step, &block) {
                return yaml_error_in(&e, source_name, Some(&step), Some(&hint));
            }
        }
        yaml_error_noting(&e, source_name, unreplaced(text, &e).as_deref())
    })
}

/// Why a step written as its type's key does not read, where it holds a map with that key's
/// own option in it (`sort: {by: a}`): the key takes the option's value, not the options.
fn options_under_a_value_key(
    step: &str,
    block: &serde_json::Map<String, serde_json::Value>,
) -> Option<String> {
    use crate::registry::{SinkConfig, SourceConfig, TransformConfig};
    use crate::settings::tagged::TaggedConfig;
    let (tag, serde_json::Value::Object(options)) =
        block.iter().next().filter(|_| block.len() == 1)?
    else {
        return None;
    };
    // The table of the step's own kind (`transforms.1 (sort)`, `sinks.0`, `source`).
    let all = match step.split('.').next() {
        Some("transforms") => TransformConfig::VALUE_OPTIONS,
        Some("sinks") => SinkConfig::VALUE_OPTIONS,
        _ => SourceConfig::VALUE_OPTIONS,
    };
    let &(_, option) = all.iter().find(|(name, _)| name == tag)?;
    options.contains_key(option).then(|| {
        format!("`{tag}:` takes the value of `{option}`, not a map of options: write `{tag}: VALUE`, or `type: {tag}` with `{option}:` and the other options beside it")
    })
}

/// The step an error lies in (`transforms.1 (with_column)`) and the step as written, found by
/// where the steps start and where serde-saphyr placed the error (inside the step), so the
/// message names it as other step errors do.
fn step_of_error(text: &str, err: &serde_saphyr::Error) -> Option<(String, serde_json::Value)> {
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Steps {
        source: Option<Spanned<serde_json::Value>>,
        transforms: Vec<Spanned<serde_json::Value>>,
        sinks: Vec<Spanned<serde_json::Value>>,
    }
    let line = err.location()?.line();
    let steps: Steps = from_yaml(text).ok()?;
    let named = |what: String, step: &Spanned<serde_json::Value>| {
        // `type: with_column`, or the type's key of a block written so (`with_column: {…}`).
        let kind = match &step.value {
            serde_json::Value::Object(map) => match map.get("type") {
                Some(kind) => kind.as_str(),
                None if map.len() == 1 => map.keys().next().map(String::as_str),
                None => None,
            },
            // `- lowercase`: a type's bare name.
            serde_json::Value::String(kind) => Some(kind.as_str()),
            _ => None,
        };
        let kind = kind.map_or(String::new(), |k| {
            format!(" ({})", crate::error::escape_controls(k))
        });
        (
            step.referenced.line(),
            (format!("{what}{kind}"), step.value.clone()),
        )
    };
    steps
        .source
        .iter()
        .map(|s| named("source".into(), s))
        .chain(
            steps
                .transforms
                .iter()
                .enumerate()
                .map(|(i, s)| named(format!("transforms.{i}"), s)),
        )
        .chain(
            steps
                .sinks
                .iter()
                .enumerate()
                .map(|(i, s)| named(format!("sinks.{i}"), s)),
        )
        .filter(|(start, _)| *start > 0 && *start <= line)
        .max_by_key(|(start, _)| *start)
        .map(|(_, step)| step)
}

/// Why a `${VAR}` where a value failed to read was not replaced: only text fields replace
/// any value; a number or boolean needs the variable to hold one.
fn unreplaced(text: &str, err: &serde_saphyr::Error) -> Option<String> {
    let location = err.location()?;
    let line = text.lines().nth(location.line().checked_sub(1)? as usize)?;
    let at = line
        .char_indices()
        .nth(location.column().saturating_sub(1) as usize)
        .map_or(line.len(), |(at, _)| at);
    let value = line[at..].trim_start_matches(['"', '\'']);
    let name = value.strip_prefix("${")?;
    let name = &name[..name.find('}')?];
    Some(match std::env::var(name) {
        // A secret's value is never shown.
        Ok(_) if crate::redact::is_secret_name(name) => format!(
            "`${{{name}}}` holds a value that is not a number, `true`, `false` or a number with a unit"
        ),
        Ok(held) => format!(
            "`${{{name}}}` holds \"{}\", which is not a number, `true`, `false` or a number with a unit",
            crate::error::escape_controls(&crate::error::shortened(&held))
        ),
        Err(_) => format!("the environment variable `{name}` is not set"),
    })
}

/// A pipeline without `name`, `source` or `sinks`, said plainly: serde-saphyr places a field
/// missing from the top-level mapping at its last key, which reads as if that key were wrong.
fn missing_top_level_field(text: &str, source_name: &str) -> Option<Error> {
    // The keys written (a key without a value is there, and gets its own message).
    let top: std::collections::HashMap<String, serde::de::IgnoredAny> = from_yaml(text).ok()?;
    let (field, what) = if !top.contains_key("name") {
        ("name", "a short name, used in logs: `name: word_count`")
    } else if !top.contains_key("source") {
        (
            "source",
            "where rows come from, e.g. `source: {type: file, path: input.txt}`",
        )
    } else if !top.contains_key("sinks") {
        ("sinks", "where results go, e.g. `sinks: [{type: stdout}]`")
    } else {
        return None;
    };
    Some(Error::invalid(format!(
        "{source_name}: the pipeline has no `{field}:` ({what})"
    )))
}

fn apply_overrides(text: &str, file_name: &str, overrides: &[Override]) -> Result<String> {
    let mut doc: serde_json::Value = from_yaml(text).map_err(|e| yaml_error(&e, file_name))?;
    expand_shorthands(&mut doc);
    for ov in overrides {
        overrides::apply(&mut doc, ov).map_err(Error::invalid)?;
    }
    if let Some(source) = doc.get_mut("source") {
        type_first(source);
    }
    for key in ["transforms", "sinks"] {
        if let Some(serde_json::Value::Array(blocks)) = doc.get_mut(key) {
            blocks.iter_mut().for_each(type_first);
        }
    }
    // Written back with YAML 1.1's quoting (`'no'`, `'n'`): a text that a column name's
    // field, reading any scalar, would take for a boolean (`by: "n"`) stays a text, and a
    // bool field reads a quoted `'no'` as it read `no`.
    let mut options = serde_saphyr::SerializerOptions::default();
    options.yaml_12 = false;
    serde_saphyr::to_string_with_options(&doc, options)
        .map_err(|e| Error::invalid(format!("{file_name}: cannot apply --set: {e}")))
}

/// A source's, step's or sink's `type` made its first key: a block read with `type` first
/// has its settings read by their own types, where one read with `type` later is read
/// through a JSON value, which takes a quoted `'no'` for a text and refuses it in a bool
/// field. (Only the block's own keys: a column may be named `type`.)
fn type_first(block: &mut serde_json::Value) {
    if let serde_json::Value::Object(map) = block {
        if let Some(kind) = map.shift_remove("type") {
            let rest = std::mem::take(map);
            map.insert("type".to_owned(), kind);
            map.extend(rest);
        }
    }
}

/// Blocks written as their type's key (`- select: [a]`) in `doc`, written as `type:` blocks.
fn expand_shorthands(doc: &mut serde_json::Value) {
    use crate::registry::{SinkConfig, SourceConfig, TransformConfig};
    use crate::settings::tagged::expand_shorthand;
    if let Some(source) = doc.get_mut("source") {
        expand_shorthand::<SourceConfig>(source);
    }
    for (key, expand) in [
        (
            "transforms",
            expand_shorthand::<TransformConfig> as fn(&mut serde_json::Value),
        ),
        ("sinks", expand_shorthand::<SinkConfig>),
    ] {
        if let Some(serde_json::Value::Array(items)) = doc.get_mut(key) {
            items.iter_mut().for_each(expand);
        }
    }
}

/// Points the step locations of a config parsed from `--set`-changed text back at the original
/// file (a step added by `--set` gets no location).
fn relocate(config: &mut PipelineConfig, original: &str) {
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Steps {
        source: Option<Spanned<serde::de::IgnoredAny>>,
        transforms: Vec<Spanned<serde::de::IgnoredAny>>,
        sinks: Vec<Spanned<serde::de::IgnoredAny>>,
        trigger: Option<Spanned<serde::de::IgnoredAny>>,
        output_mode: Option<Spanned<serde::de::IgnoredAny>>,
    }
    let steps: Steps = from_yaml(original).unwrap_or_default();
    let unknown = Location::UNKNOWN;
    config.source.referenced = steps.source.map_or(unknown, |s| s.referenced);
    for (i, step) in config.transforms.iter_mut().enumerate() {
        step.referenced = steps.transforms.get(i).map_or(unknown, |s| s.referenced);
    }
    for (i, sink) in config.sinks.iter_mut().enumerate() {
        sink.referenced = steps.sinks.get(i).map_or(unknown, |s| s.referenced);
    }
    if let Some(trigger) = &mut config.trigger {
        trigger.referenced = steps.trigger.map_or(unknown, |s| s.referenced);
    }
    if let Some(mode) = &mut config.output_mode {
        mode.referenced = steps.output_mode.map_or(unknown, |s| s.referenced);
    }
}

/// Turns a YAML error into `file:line:col: message` plus the snippet serde-saphyr draws.
pub(crate) fn yaml_error(err: &serde_saphyr::Error, source_name: &str) -> Error {
    yaml_error_noting(err, source_name, None)
}

/// [`yaml_error`] with `note` added to its message.
fn yaml_error_noting(err: &serde_saphyr::Error, source_name: &str, note: Option<&str>) -> Error {
    yaml_error_in(err, source_name, None, note)
}

/// [`yaml_error_noting`] with the step the error is in named before its message.
fn yaml_error_in(
    err: &serde_saphyr::Error,
    source_name: &str,
    step: Option<&str>,
    note: Option<&str>,
) -> Error {
    let formatter = SuggestingFormatter;
    let mut message = formatter.format_message(err).into_owned();
    // A note the message already makes (`${VAR}` not set, said by the substitution) is
    // not made twice.
    if let Some(note) = note.filter(|note| !message.contains(note.trim_start_matches("the "))) {
        message = format!("{message} ({note})");
    }
    if let Some(step) = step {
        message = format!("{step}: {message}");
    }
    let Some(location) = err.location().filter(|l| l.line() > 0) else {
        return Error::invalid(format!("{source_name}: {message}"));
    };
    let rendered = err.render_with_options(serde_saphyr::render_options! {
        formatter: &formatter,
        source_name: Some(source_name),
    });
    // serde-saphyr's first line repeats the message with its own location wording.
    let snippet: Vec<&str> = rendered.lines().skip(1).collect();
    Error::invalid(format!(
        "{source_name}:{}:{}: {message}\n{}",
        location.line(),
        location.column(),
        snippet.join("\n")
    ))
}

/// serde-saphyr's messages, with "did you mean ...?" added to unknown fields and variants.
struct SuggestingFormatter;

impl MessageFormatter for SuggestingFormatter {
    fn format_message<'a>(&self, err: &'a serde_saphyr::Error) -> Cow<'a, str> {
        let message = serde_saphyr::DefaultMessageFormatter.format_message(err);
        if let Some(better) = with_suggestion(&message) {
            return Cow::Owned(better);
        }
        // Number parse failures name Rust types; say what a user should write instead.
        match message.as_ref() {
            "invalid u64" | "invalid usize" | "invalid u32" => {
                Cow::Borrowed("expected a whole number (0 or more)")
            }
            // Ports are the only 16-bit settings.
            "invalid u16" => Cow::Borrowed("expected a whole number from 0 to 65535"),
            "invalid i64" => Cow::Borrowed("expected a whole number"),
            "invalid f64" => Cow::Borrowed("expected a number"),
            // The parser's words for a shape; say what to write.
            "expected mapping start" => Cow::Borrowed(
                "expected a map here: `key: value` lines indented below, or `{key: value, ...}`",
            ),
            "expected sequence start" => Cow::Borrowed(
                "expected a list here: `- item` lines indented below, or `[item, ...]`",
            ),
            // serde-saphyr's advice names its own API; say what to write instead.
            other if other.contains("cannot deserialize null") => {
                Cow::Borrowed("a value is missing here: write one after the colon")
            }
            // A tab where YAML wants indentation: the parser's words name no cure.
            other if other.contains("found a tab") || other.contains("found tab") => {
                Cow::Owned(format!(
                    "{other}: YAML indents with spaces, never tabs; replace the tabs at the start of this line or the next with spaces"
                ))
            }
            other if other.contains("did not find expected key")
                || other.contains("did not find expected '-' indicator") =>
            {
                Cow::Owned(format!(
                "{other}: a line here is indented differently from the keys beside it; line up each key of one map, and each `- ` of one list, in the same column"
            ))
            }
            // serde-saphyr's advice names its own API; say what to write instead.
            other if other.contains("multiple YAML documents") => Cow::Borrowed(
                "a second YAML document (after `---`) starts here: a pipeline file holds one pipeline; put each in a file of its own",
            ),
            other if other.contains("while parsing a flow") => Cow::Owned(format!(
                "{other}: a `{{` or `[` opened above is not closed; close it, or write the entries as indented lines instead"
            )),
            other if other.starts_with("duplicate mapping key") => {
                match other
                    .strip_prefix("duplicate mapping key: ")
                    .and_then(|rest| rest.split(", set DuplicateKeyPolicy").next())
                {
                    Some(key) => Cow::Owned(format!("`{key}` is given twice in this map")),
                    None => Cow::Borrowed("a key is given twice in this map"),
                }
            }
            _ => message,
        }
    }
}

/// Rewrites serde's `unknown field `x`, expected one of a, b` as
/// `unknown field `x`, did you mean `a`? (expected one of: a, b)`.
fn with_suggestion(message: &str) -> Option<String> {
    let (what, rest) = ["unknown field `", "unknown variant `"]
        .iter()
        .find_map(|p| message.find(p).map(|at| (*p, &message[at + p.len()..])))?;
    let (word, tail) = rest.split_once('`')?;
    let expected = tail.split_once("expected").map(|(_, e)| e).unwrap_or("");
    let candidates: Vec<&str> = expected
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .filter(|w| !w.is_empty() && !matches!(*w, "one" | "of" | "or"))
        .collect();
    let kind = if what.contains("field") {
        "field"
    } else {
        "variant"
    };
    let hint = match key_suggestion(word, &candidates) {
        Some(best) => format!(", did you mean `{best}`?"),
        None => String::new(),
    };
    let list = if candidates.is_empty() {
        String::from("no fields are allowed here")
    } else {
        format!("expected one of: {}", candidates.join(", "))
    };
    Some(format!("unknown {kind} `{word}`{hint} ({list})"))
}

/// Names other tools give to some of runner's keys: pandas' and Polars' `sep`, DuckDB's
/// `delim`, Polars' `schema`.
const OTHER_TOOLS_KEYS: &[(&str, &str)] = &[
    ("sep", "delimiter"),
    ("separator", "delimiter"),
    ("delim", "delimiter"),
    ("schema", "columns"),
    ("dtypes", "columns"),
    ("condition", "where"),
    ("predicate", "where"),
];

/// The key `word` was likely meant as, among `candidates`: another tool's name for it, a key
/// it abbreviates (`col` for `column`), or one a typo away.
fn key_suggestion<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let other_tools = OTHER_TOOLS_KEYS
        .iter()
        .filter(|(other, _)| *other == word)
        .find_map(|(_, key)| candidates.iter().find(|c| *c == key));
    let abbreviated = || {
        candidates
            .iter()
            .filter(|c| word.len() >= 3 && c.starts_with(word))
            .min_by_key(|c| c.len())
    };
    other_tools
        .or_else(abbreviated)
        .copied()
        .or_else(|| crate::error::closest(word, candidates.iter().copied()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str =
        "name: t\nsource:\n  type: file\n  path: in.txt\nsinks:\n  - type: stdout\n";

    fn err(text: &str) -> String {
        parse(text, "p.yaml").unwrap_err().to_string()
    }

    #[test]
    fn a_missing_top_level_field_is_named_without_blaming_the_last_key() {
        assert_eq!(
            err("source:\n  type: file\n  path: in.txt\nsinks:\n  - type: stdout\n"),
            "p.yaml: the pipeline has no `name:` (a short name, used in logs: `name: word_count`)"
        );
        assert!(err("name: t\nsinks:\n  - type: stdout\n")
            .starts_with("p.yaml: the pipeline has no `source:`"));
        assert!(err("name: t\nsource:\n  type: file\n  path: in.txt\n")
            .starts_with("p.yaml: the pipeline has no `sinks:`"));
        // A misspelt one is unknown, with a suggestion.
        let misspelt =
            err("nmae: t\nsource:\n  type: file\n  path: in.txt\nsinks:\n  - type: stdout\n");
        assert!(misspelt.contains("did you mean `name`?"), "{misspelt}");
        let misspelt =
            err("name: t\nsource:\n  type: file\n  path: in.txt\nsink:\n  - type: stdout\n");
        assert!(misspelt.contains("did you mean `sinks`?"), "{misspelt}");
        // A field missing further in is still placed where it is missing.
        assert!(
            err("name: t\nsource:\n  type: file\nsinks:\n  - type: stdout\n")
                .starts_with("p.yaml:3:3: source (file): missing field `path`")
        );
        // In a step, the step is named as other step errors name it.
        let text = "name: t\nsource: {type: file, path: x}\ntransforms:\n  - type: tokenize\n  - type: with_column\n    name: n\nsinks:\n  - type: stdout\n";
        assert!(
            err(text).starts_with("p.yaml:6:5: transforms.1 (with_column): missing field `expr`"),
            "{}",
            err(text)
        );
        let text =
            "name: t\nsource: {type: file, path: x}\nsinks:\n  - type: stdout\n  - {type: csv}\n";
        assert!(
            err(text).starts_with("p.yaml:5:6: sinks.1 (csv): missing field `path`"),
            "{}",
            err(text)
        );
    }

    #[test]
    fn a_scalar_where_a_map_or_list_belongs_says_what_to_write() {
        let text = "name: t\nsource: {type: file, path: x}\nsinks: {type: stdout}\n";
        assert!(err(text).starts_with("p.yaml:3:8: expected a list here: `- item` lines"));
        let text = "name: t\nsource: in.txt\nsinks: [{type: stdout}]\n";
        assert!(err(text).starts_with("p.yaml:2:9: expected a map here: `key: value` lines"));
    }

    #[test]
    fn minimal_pipeline_parses_with_defaults() {
        let p = parse(MINIMAL, "p.yaml").unwrap();
        assert_eq!(p.name, "t");
        assert_eq!(p.mode, Mode::Batch);
        assert_eq!(p.cores, 0);
        assert!(p.transforms.is_empty());
        assert_eq!(p.source.referenced.line(), 3);
    }

    #[test]
    fn unknown_top_level_key_names_line_and_suggests() {
        let e = err(&format!("{MINIMAL}tranforms: []\n"));
        assert!(
            e.starts_with("p.yaml:7:1: unknown field `tranforms`, did you mean `transforms`?"),
            "{e}"
        );
    }

    #[test]
    fn unknown_key_inside_a_typed_block_points_at_the_key() {
        let text = "name: t\nsource:\n  type: file\n  path: in.txt\n  encodng_errors: skip\nsinks:\n  - type: stdout\n";
        let e = err(text);
        assert!(
            e.starts_with(
                "p.yaml:5:3: unknown field `encodng_errors`, did you mean `encoding_errors`?"
            ),
            "{e}"
        );
    }

    #[test]
    fn unknown_type_suggests_the_closest() {
        let e = err(&format!("{MINIMAL}transforms:\n  - type: tokenise\n"));
        assert!(e.starts_with("p.yaml:8:5: "), "{e}");
        assert!(
            e.contains("unknown transform type `tokenise`, did you mean `tokenize`?"),
            "{e}"
        );
    }

    #[test]
    fn plain_scalars_are_strings_where_strings_are_expected() {
        let p = parse(
            "name: 2024\nsource:\n  type: file\n  path: 12\nsinks:\n  - type: stdout\n",
            "p",
        )
        .unwrap();
        assert_eq!(p.name, "2024");
    }

    #[test]
    fn a_step_may_be_written_as_its_types_key() {
        let short = "name: t\nsource: {file: {path: in.csv, format: csv}}\ntransforms:\n  - filter: a > 1\n  - select: [a, \"a * 2 as b\"]\n  - rename: {b: c}\n  - drop: [a]\n  - with_column: {name: d, expr: c + 1}\n  - aggregate: {by: d, aggs: {n: count()}}\n  - sort: n desc\n  - limit: 3\n  - tokenize:\n  - lowercase: word\nsinks: [stdout, {csv: {path: o.csv}}]\n";
        let long = "name: t\nsource: {type: file, path: in.csv, format: csv}\ntransforms:\n  - {type: filter, where: a > 1}\n  - {type: select, columns: [a, \"a * 2 as b\"]}\n  - {type: rename, columns: {b: c}}\n  - {type: drop, columns: [a]}\n  - {type: with_column, name: d, expr: c + 1}\n  - {type: aggregate, by: d, aggs: {n: count()}}\n  - {type: sort, by: n desc}\n  - {type: limit, n: 3}\n  - {type: tokenize}\n  - {type: lowercase, column: word}\nsinks: [{type: stdout}, {type: csv, path: o.csv}]\n";
        let path = Path::new("p.yaml");
        let short = load_text(short, path, &[]).unwrap();
        let long = load_text(long, path, &[]).unwrap();
        // The same document, so a checkpoint goes on whichever form the file uses.
        assert_eq!(short.document, long.document);
        let types = |p: &LoadedPipeline| -> Vec<&str> {
            p.config
                .transforms
                .iter()
                .map(|t| t.value.type_name())
                .collect()
        };
        assert_eq!(types(&short), types(&long));
        match (
            &short.config.transforms[0].value,
            &short.config.transforms[7].value,
        ) {
            (TransformConfig::Filter(filter), TransformConfig::Limit(limit)) => {
                assert_eq!(filter.condition.value, "a > 1");
                // The expression's place is its own, as with `where:`.
                assert_eq!(filter.condition.referenced.line(), 4);
                assert_eq!(limit.n, 3);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(short.config.sinks[1].value.type_name(), "csv");
        // `--set` names the option, whichever form the step was written in.
        let set: Override = "transforms.0.where=a > 2".parse().unwrap();
        let changed = load_text(
            "name: t\nsource: {file: {path: in.csv}}\ntransforms:\n  - filter: a > 1\nsinks: [stdout]\n",
            path,
            &[set],
        )
        .unwrap();
        match &changed.config.transforms[0].value {
            TransformConfig::Filter(filter) => assert_eq!(filter.condition.value, "a > 2"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_step_written_as_its_types_key_with_more_says_how_to_write_it() {
        let step = |step: &str| {
            err(&format!("name: t\nsource: {{type: file, path: in.txt}}\ntransforms:\n  - {step}\nsinks: [stdout]\n"))
        };
        let beside = step("select: [line]\n    as: x");
        assert!(beside.contains("p.yaml:4:5: `select:` names this transform and holds its `columns`, so `as` cannot stand beside it"), "{beside}");
        let options = step("sort: {by: line}");
        assert!(
            options.contains("transforms.0 (sort): ")
                && options.contains("(`sort:` takes the value of `by`, not a map of options"),
            "{options}"
        );
        let options = step("lowercase: {column: line}");
        assert!(
            options.contains("(`lowercase:` takes the value of `column`, not a map of options"),
            "{options}"
        );
        let list = step("aggregate: [line]");
        assert!(
            list.contains("expected a map of the options of transform `aggregate`"),
            "{list}"
        );
        let among = step("{as: n, group_count: line}");
        assert!(
            among.contains("`group_count:` is one key among others"),
            "{among}"
        );
        let missing = step("lowercase");
        assert!(
            missing.contains("transforms.0 (lowercase): missing field `column`"),
            "{missing}"
        );
        // `lowercase` is also `tokenize`'s option: with `type:` after it, a tokenize step.
        let p = parse("name: t\nsource: {type: file, path: in.txt}\ntransforms:\n  - lowercase: false\n    type: tokenize\n  - lowercase: word\nsinks: [stdout]\n", "p.yaml").unwrap();
        let types: Vec<&str> = p.transforms.iter().map(|t| t.value.type_name()).collect();
        assert_eq!(types, ["tokenize", "lowercase"]);
        // A sink is told as a sink, without a transform's advice.
        let sink =
            err("name: t\nsource: {type: file, path: in.txt}\nsinks: [{sort: {by: line}}]\n");
        assert!(!sink.contains("takes the value of"), "{sink}");
        let unknown = step("lowercas");
        assert!(
            unknown.contains("unknown transform type `lowercas`, did you mean `lowercase`?"),
            "{unknown}"
        );
    }

    #[test]
    fn type_key_need_not_come_first() {
        let text = "name: t\nsource:\n  path: in.txt\n  type: file\nsinks:\n  - type: stdout\n";
        parse(text, "p.yaml").unwrap();
    }

    #[test]
    fn unset_environment_variable_is_located() {
        let text = "name: t\nsource:\n  type: file\n  path: ${RUNNER_TEST_SURELY_UNSET}/x\nsinks:\n  - type: stdout\n";
        let e = err(text);
        assert!(e.starts_with("p.yaml:4:"), "{e}");
        assert!(e.contains("`RUNNER_TEST_SURELY_UNSET` is not set"), "{e}");
    }

    #[test]
    fn a_variable_holding_a_number_fills_a_number_field() {
        // Names no other test reads (the environment is the process's).
        std::env::set_var("RUNNER_TEST_LIMIT_N", "2");
        std::env::set_var("RUNNER_TEST_LIMIT_WORD", "two");
        let text = |var: &str| {
            format!("name: t\nsource: {{type: file, path: in.txt}}\ntransforms:\n  - {{type: limit, n: ${{{var}}}}}\nsinks:\n  - type: stdout\n")
        };
        let loaded = load_text(&text("RUNNER_TEST_LIMIT_N"), Path::new("p.yaml"), &[]).unwrap();
        assert!(
            loaded.document.to_string().contains("\"n\":2"),
            "{}",
            loaded.document
        );
        let e = load_text(&text("RUNNER_TEST_LIMIT_WORD"), Path::new("p.yaml"), &[])
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with("p.yaml:4:") && e.contains("`${RUNNER_TEST_LIMIT_WORD}` holds \"two\""),
            "{e}"
        );
        let e = load_text(&text("RUNNER_TEST_SURELY_UNSET"), Path::new("p.yaml"), &[])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("`RUNNER_TEST_SURELY_UNSET` is not set"), "{e}");
    }

    #[test]
    fn relative_paths_resolve_against_the_pipeline_directory() {
        let base = Path::new("pipelines");
        assert_eq!(
            resolve_against(base, Path::new("../data/x.txt")),
            Path::new("data/x.txt")
        );
        assert_eq!(
            resolve_against(Path::new("."), Path::new("../x")),
            Path::new("../x")
        );
        assert_eq!(
            resolve_against(Path::new("/srv/p"), Path::new("./o/x.csv")),
            Path::new("/srv/p/o/x.csv")
        );
        assert_eq!(
            resolve_against(base, Path::new("/abs/x")),
            Path::new("/abs/x")
        );
        assert_eq!(resolve_against(base, Path::new("-")), Path::new("-"));
    }

    #[test]
    fn suggestion_rewrites_serde_messages() {
        for (word, meant) in [
            ("sep", "delimiter"),
            ("col", "column"),
            ("delimter", "delimiter"),
        ] {
            let m = with_suggestion(&format!(
                "unknown field `{word}`, expected one of `path`, `column`, `columns`, `delimiter`, `poll`"
            ))
            .unwrap();
            assert!(m.contains(&format!("did you mean `{meant}`?")), "{m}");
        }
        let m = with_suggestion("unknown field `lowercas`, expected one of `column`, `lowercase`")
            .unwrap();
        assert_eq!(m, "unknown field `lowercas`, did you mean `lowercase`? (expected one of: column, lowercase)");
        assert_eq!(with_suggestion("invalid type: integer"), None);
    }
}
