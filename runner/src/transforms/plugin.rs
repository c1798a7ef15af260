//! `plugin`: a custom transform from a shared library (see `plugins/sdk`). The library is
//! loaded, its ABI version checked and its `create` run with `config:` when the pipeline is
//! validated, so a bad config fails before any data is read. The output columns are learnt by
//! sending the plugin an empty batch of the input schema; every later batch must have them.

/// Why a plugin cannot run on Spark (after the aggregation it runs here, on the result).
pub const SPARK_REFUSAL: &str = "a plugin is native code for this machine, which Spark's executors cannot load; put it after the aggregation (it then runs here, on Spark's result) or run the pipeline with --engine local";

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use serde::Deserialize;

use super::{BuildContext, BuildTransform, MapTransform, Stage, StageKind};
use crate::error::{Error, Result};
use crate::plugin::Instance;

/// A custom transform from a shared library built with the runner-plugin SDK (see
/// [Plugins](../../plugins.md)). `runner validate` loads it, checks its ABI version, creates it
/// with `config` and learns its output columns from an empty batch (columns of other Arrow types
/// are converted to runner's, as a Parquet file's are). A call (`create`, a batch, `finish`)
/// that takes the plugin longer than `warn_after` is logged while it works; past `timeout` the
/// run fails with
/// exit 1 (a call into a plugin cannot be cancelled, so the process ends; outputs keep their
/// previous contents). A stateful plugin's `finish` runs after the input in a batch run, and as
/// one more epoch when a stream stops. A pipeline file is code: load only plugins you trust.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// The shared library (`.so`), relative to the pipeline file.
    #[serde(deserialize_with = "crate::settings::env::path")]
    pub path: PathBuf,
    /// Passed to the plugin's `create` as JSON.
    #[serde(default)]
    pub config: serde_json::Value,
    /// Log a warning when the plugin spends longer than this on one call: `create`, a batch,
    /// `finish` (default `10s`).
    #[serde(default, deserialize_with = "crate::settings::duration::opt")]
    #[schemars(with = "Option<String>")]
    pub warn_after: Option<Duration>,
    /// Fail the run (exit 1) when the plugin spends longer than this on one call: `create`, a
    /// batch, `finish`. A call into
    /// a plugin cannot be cancelled, so the process ends there; outputs keep their previous
    /// contents. Default: no limit.
    #[serde(default, deserialize_with = "crate::settings::duration::opt")]
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Duration>,
}

/// A batch taking this long is worth telling the user about.
const DEFAULT_WARN_AFTER: Duration = Duration::from_secs(10);

impl BuildTransform for PluginConfig {
    fn loads_code(&self) -> Option<&std::path::Path> {
        Some(&self.path)
    }

    fn build(&self, ctx: &BuildContext) -> Result<Stage, String> {
        let path = crate::settings::resolve_against(ctx.base_dir, &self.path);
        let plugin = crate::plugin::load(&path)?;
        let config = if self.config.is_null() {
            serde_json::json!({})
        } else {
            self.config.clone()
        };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        // Watched from its first call: `timeout` bounds `create` and the probe too.
        let watchdog = Watchdog::start(
            plugin.name,
            self.warn_after.unwrap_or(DEFAULT_WARN_AFTER),
            self.timeout,
        );
        let instance = {
            let _watched = watchdog.watch(Work::Create);
            plugin.create(&config, threads)?
        };
        let probe = {
            let _watched = watchdog.watch(Work::Probe);
            instance.transform(&RecordBatch::new_empty(ctx.input.clone()))?
        };
        let announced = probe.schema();
        // In runner's types (a plugin's int32 is an integer, its large_utf8 a text), every
        // column nullable (as every column of runner's own steps): a plugin's nullability
        // flags and field metadata are not held against its batches.
        let output = model_columns(plugin.name, &announced)?;
        Ok(Stage {
            output: output.clone(),
            kind: StageKind::Map(Box::new(PluginTransform {
                instance,
                name: plugin.name,
                path: path.clone(),
                announced,
                output,
                watchdog,
            })),
        })
    }
}

/// The built `plugin` transform: an instance of a plugin library, created when the pipeline is
/// validated.
pub struct PluginTransform {
    instance: Instance,
    name: &'static str,
    /// The library, as resolved from the pipeline file.
    path: PathBuf,
    /// The columns the plugin announced, in its own types: every batch must have them.
    announced: SchemaRef,
    /// The same columns in runner's types, as the stage gives them.
    output: SchemaRef,
    watchdog: Arc<Watchdog>,
}

/// Watches the batches a plugin is working on, from a thread of its own: a warning when one
/// takes longer than `warn_after`, and past `timeout` the run fails. A plugin stuck in a call
/// cannot be interrupted (it is foreign code on a worker thread), so that failure ends the
/// process; every output is written atomically, so none is left half-written.
struct Watchdog {
    name: &'static str,
    warn_after: Duration,
    timeout: Option<Duration>,
    calls: Mutex<Vec<Call>>,
    next_id: AtomicU64,
}

struct Call {
    id: u64,
    started: Instant,
    work: Work,
    warned: bool,
}

/// What a watched call into the plugin is doing, for messages.
#[derive(Clone, Copy)]
enum Work {
    /// `create`, with the step's config.
    Create,
    /// The empty batch whose answer tells the plugin's columns.
    Probe,
    /// A batch of this many rows.
    Batch(usize),
    /// `finish`, after the last batch.
    Finish,
}

impl std::fmt::Display for Work {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Work::Create => write!(f, "`create`"),
            Work::Probe => write!(f, "the empty batch that tells its columns"),
            Work::Batch(rows) => write!(f, "one batch of {rows} rows"),
            Work::Finish => write!(f, "`finish`"),
        }
    }
}

/// Removes its call from the watch list when the call returns or unwinds.
struct Watched<'a> {
    watchdog: &'a Watchdog,
    id: u64,
}

impl Drop for Watched<'_> {
    fn drop(&mut self) {
        if let Ok(mut calls) = self.watchdog.calls.lock() {
            calls.retain(|c| c.id != self.id);
        }
    }
}

impl Watchdog {
    fn start(name: &'static str, warn_after: Duration, timeout: Option<Duration>) -> Arc<Self> {
        let watchdog = Arc::new(Watchdog {
            name,
            warn_after,
            timeout,
            calls: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
        });
        let shortest = timeout.map_or(warn_after, |t| t.min(warn_after));
        let tick = (shortest / 10).clamp(Duration::from_millis(5), Duration::from_secs(1));
        let weak = Arc::downgrade(&watchdog);
        // The thread ends with the stage: it holds only a weak reference.
        let _ = std::thread::Builder::new()
            .name("runner-plugin-watchdog".into())
            .spawn(move || loop {
                std::thread::sleep(tick);
                match weak.upgrade() {
                    Some(watchdog) => watchdog.check(),
                    None => return,
                }
            });
        watchdog
    }

    fn watch(&self, work: Work) -> Watched<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(Call {
                id,
                started: Instant::now(),
                work,
                warned: false,
            });
        }
        Watched { watchdog: self, id }
    }

    fn check(&self) {
        let Ok(mut calls) = self.calls.lock() else {
            return;
        };
        for call in calls.iter_mut() {
            let spent = call.started.elapsed();
            if self.timeout.is_some_and(|limit| spent >= limit) {
                let limit = humantime::format_duration(self.timeout.unwrap_or_default());
                let message = format!(
                    "plugin {} has spent longer than its timeout ({limit}) on {}: stopping the run (outputs keep their previous contents)",
                    self.name,
                    call.work
                );
                tracing::error!("{message}");
                crate::cancel::abort(Error::runtime(message));
            }
            if spent >= self.warn_after && !call.warned {
                call.warned = true;
                tracing::warn!(
                    "plugin {} has spent {:.1} s on {} and is still working",
                    self.name,
                    spent.as_secs_f64(),
                    call.work
                );
            }
        }
    }
}

/// The columns a plugin announced, in runner's types (see `ValueType::convertible_from`), or
/// an error naming a column of a type runner has no place for, or a name given twice (each
/// step would pick another of the two).
fn model_columns(name: &str, announced: &arrow_schema::Schema) -> Result<SchemaRef, String> {
    let mut seen = std::collections::HashSet::new();
    for field in announced.fields() {
        if !seen.insert(field.name().as_str()) {
            return Err(format!(
                "plugin {name} returned two columns named `{}`; each column needs a name of its own",
                crate::error::shortened(field.name())
            ));
        }
    }
    crate::data::normalized_schema(announced).map_err(|e| format!("plugin {name} returned {e}"))
}

impl PluginTransform {
    /// Every batch must have the columns the plugin announced when it was built; it is given
    /// on in runner's types.
    fn check(&self, out: RecordBatch) -> Result<RecordBatch> {
        let same = |a: &arrow_schema::Field, b: &arrow_schema::Field| {
            a.name() == b.name() && a.data_type() == b.data_type()
        };
        let schema = out.schema();
        if schema.fields().len() != self.announced.fields().len()
            || !schema
                .fields()
                .iter()
                .zip(self.announced.fields())
                .all(|(a, b)| same(a, b))
        {
            let names = |s: &arrow_schema::Schema| {
                s.fields()
                    .iter()
                    .map(|f| format!("{} {}", f.name(), f.data_type()))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(Error::runtime(format!(
                "plugin {} returned columns ({}) but announced ({})",
                self.name,
                names(&out.schema()),
                names(&self.announced)
            )));
        }
        if schema.fields() == self.output.fields() {
            return Ok(out);
        }
        // Other types converted (or only nullability and metadata differ).
        crate::data::normalize(&out, &self.output)
            .map_err(|e| Error::runtime(format!("plugin {}: {e}", self.name)))
    }
}

impl MapTransform for PluginTransform {
    fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let watched = self.watchdog.watch(Work::Batch(batch.num_rows()));
        let out = self.instance.transform(batch).map_err(Error::runtime);
        drop(watched);
        self.check(out?)
    }

    fn finish(&self) -> Result<Option<RecordBatch>> {
        let watched = self.watchdog.watch(Work::Finish);
        let last = self.instance.finish().map_err(Error::runtime);
        drop(watched);
        match last? {
            Some(out) => self.check(out).map(Some),
            None => Ok(None),
        }
    }

    fn describe(&self) -> Option<String> {
        Some(format!("plugin {} from {}", self.name, self.path.display()))
    }

    fn spark(
        &self,
        input: crate::spark::frame::Frame,
    ) -> Result<crate::spark::frame::Frame, String> {
        let _ = input;
        Err(SPARK_REFUSAL.into())
    }

    fn needs_finish(&self) -> bool {
        self.instance.has_finish()
    }
}
