//! What the live page shows, kept up to date by the run's events: the run and its plan, the
//! recent epochs, the warnings, the current result and the figures `/metrics` exports. The
//! pipeline's thread only updates this (a lock held for a few field writes and an `Arc` clone
//! of the result) and hands a short message to the clients' broadcast channel, which never
//! waits for a client; serialising results for HTTP happens on the page server's thread.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use arrow_array::RecordBatch;
use arrow_schema::{DataType, SchemaRef};
use serde::Serialize;
use serde_json::json;

use crate::events::{Event, ResultChange, Subscriber};
use crate::exec::counted::{rows_out_of, StageRows};
use crate::render::bar_chart::{Bar, Palette};
use crate::sinks::chart::{first_bars, top_bars, BarOrder};

/// Epochs kept for `/api/epochs` and the page's plots.
pub const EPOCHS_KEPT: usize = 1000;
/// Warnings kept (the total is counted).
pub const WARNINGS_KEPT: usize = 200;
/// Rows of an appended result kept: the latest ones (the total is counted).
pub const TAIL_ROWS: usize = 10_000;
/// Bytes of an appended result kept: long values make few rows large.
pub const TAIL_BYTES: usize = 32 << 20;
/// Messages a client may fall behind by before it is told to fetch everything again.
pub const CLIENT_QUEUE: usize = 256;
/// The epoch duration histogram's upper bounds, in seconds (Prometheus' `le`).
pub const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// One message to every page: an SSE event's name and its JSON data.
#[derive(Debug, Clone)]
pub struct Update {
    /// The SSE event's name: `state`, `epoch`, `result` or `warning`.
    pub name: &'static str,
    /// The SSE event's id: the epoch, for `epoch` and `result` events; `None` for the others.
    pub id: Option<u64>,
    /// The event's data, as JSON text.
    pub data: Arc<str>,
}

/// What the run is, known before it starts.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    /// The pipeline's `name`.
    pub pipeline: String,
    /// The pipeline file, as given.
    pub file: String,
    /// `batch` or `stream`.
    pub mode: &'static str,
    /// Worker threads the run uses.
    pub cores: usize,
    /// Streams: the trigger (`continuous`, `processing_time 10s`, `available_now`); `None` in batch
    /// mode.
    pub trigger: Option<String>,
    /// Streams: the output mode (`complete`, `update`, `append`); `None` in batch mode.
    pub output_mode: Option<&'static str>,
    /// `local` or `spark`.
    pub engine: &'static str,
    /// The source's label (`source (file: /path)`).
    pub source: String,
    /// Each step's label (`transforms.0 (tokenize)`), in order.
    pub steps: Vec<String>,
    /// Each sink's label (`sinks.1 (csv)`).
    pub sinks: Vec<String>,
}

/// How the page draws its chart: the pipeline's first `chart` sink, else the result's first
/// text column against its last number column.
#[derive(Debug, Clone)]
pub struct ChartChoice {
    /// The category column (one bar per row).
    pub x: String,
    /// The numeric column (bar length).
    pub y: String,
    /// How many bars.
    pub top: usize,
    /// Which rows become bars, in which order.
    pub order: BarOrder,
    /// How the bars are coloured.
    pub palette: Palette,
    /// The chart's caption.
    pub title: String,
}

impl ChartChoice {
    /// The chart for rows of `schema` (`None` when it has no text and number columns).
    pub fn choose(
        schema: &SchemaRef,
        chart: Option<&crate::sinks::chart::ChartSinkConfig>,
    ) -> Option<ChartChoice> {
        if let Some(chart) = chart {
            return Some(ChartChoice {
                x: chart.x.clone(),
                y: chart.y.clone(),
                top: chart.top,
                order: chart.sort,
                palette: chart.palette,
                title: chart.title(),
            });
        }
        let fields = schema.fields();
        let x = fields.iter().find(|f| f.data_type() == &DataType::Utf8)?;
        let y = fields
            .iter()
            .rev()
            .find(|f| matches!(f.data_type(), DataType::Int64 | DataType::Float64))?;
        Some(ChartChoice {
            x: x.name().clone(),
            y: y.name().clone(),
            top: 20,
            order: BarOrder::Value,
            palette: Palette::Cool,
            title: format!("Top 20 {} values by {}", x.name(), y.name()),
        })
    }

    /// The bars of `batches` (of one schema), as the `chart` sink picks them; a windowed
    /// result shows its latest window, as the sink does without `{window_start}`.
    fn bars(&self, batches: &[RecordBatch]) -> (Vec<Bar>, Option<(i64, i64)>) {
        let Some(schema) = batches.first().map(RecordBatch::schema) else {
            return (Vec::new(), None);
        };
        let (Ok(x), Ok(y)) = (schema.index_of(&self.x), schema.index_of(&self.y)) else {
            return (Vec::new(), None);
        };
        let window = latest_window(batches);
        let mut bars = Vec::new();
        for batch in batches {
            let batch = match window {
                Some((start, _)) => rows_of_window(batch, start),
                None => batch.clone(),
            };
            let more = match self.order {
                BarOrder::Value => top_bars(&batch, x, y, self.top),
                BarOrder::Input => first_bars(&batch, x, y, self.top - bars.len().min(self.top)),
            };
            bars.extend(more);
            if self.order == BarOrder::Value {
                bars.sort_by(|a: &Bar, b: &Bar| {
                    b.value
                        .total_cmp(&a.value)
                        .then_with(|| a.label.cmp(&b.label))
                });
                bars.truncate(self.top);
            }
        }
        (bars, window)
    }
}

use crate::transforms::aggregate::windowed::{WINDOW_END, WINDOW_START};

/// The latest (start, end) window of a windowed result.
fn latest_window(batches: &[RecordBatch]) -> Option<(i64, i64)> {
    let mut latest: Option<(i64, i64)> = None;
    for batch in batches {
        let (Ok(start), Ok(end)) = (
            batch.schema().index_of(WINDOW_START),
            batch.schema().index_of(WINDOW_END),
        ) else {
            return None;
        };
        for row in 0..batch.num_rows() {
            use crate::data::{cell, Cell};
            if let (Cell::Timestamp(s), Cell::Timestamp(e)) = (
                cell(batch.column(start).as_ref(), row),
                cell(batch.column(end).as_ref(), row),
            ) {
                if latest.is_none_or(|(l, _)| s > l) {
                    latest = Some((s, e));
                }
            }
        }
    }
    latest
}

fn rows_of_window(batch: &RecordBatch, start: i64) -> RecordBatch {
    use crate::data::{cell, Cell};
    let Ok(column) = batch.schema().index_of(WINDOW_START) else {
        return batch.clone();
    };
    let keep: arrow_array::BooleanArray = (0..batch.num_rows())
        .map(|row| {
            Some(matches!(cell(batch.column(column).as_ref(), row), Cell::Timestamp(s) if s == start))
        })
        .collect();
    arrow_select::filter::filter_record_batch(batch, &keep).unwrap_or_else(|_| batch.clone())
}

/// The result as the sinks last saw it, rebuilt from each epoch's rows and output mode.
#[derive(Debug, Default)]
struct ResultTable {
    epoch: Option<u64>,
    updated: Option<SystemTime>,
    batches: Vec<RecordBatch>,
    /// Rows held in `batches` (an upsert table may hold replaced rows until compacted).
    held: usize,
    /// Rows held after the last compaction.
    compacted: usize,
    /// The key columns of an upsert table.
    keys: Option<Vec<String>>,
    /// Rows of an appended result no longer held (only the latest `TAIL_ROWS` are).
    dropped: u64,
}

impl ResultTable {
    fn apply(&mut self, epoch: u64, change: &ResultChange, rows: &RecordBatch) {
        if self.epoch != Some(epoch) || *change == ResultChange::Replace {
            self.updated = Some(SystemTime::now());
        }
        self.epoch = Some(epoch);
        match change {
            ResultChange::Replace => {
                self.batches = vec![rows.clone()];
                self.held = rows.num_rows();
                self.keys = None;
            }
            ResultChange::Append => {
                self.keys = None;
                self.push(rows);
                self.trim_tail();
            }
            ResultChange::Upsert { keys } => {
                let named = keys.iter().all(|k| rows.schema().index_of(k).is_ok());
                if !named {
                    // The steps after the aggregation dropped a key: keep the rows as a tail.
                    return self.apply(epoch, &ResultChange::Append, rows);
                }
                self.keys = Some(keys.clone());
                self.push(rows);
                // Replaced rows are let go once they could double the table.
                if self.held > 2 * self.compacted + 1024 {
                    if let Ok(table) = latest_per_key(&self.batches, keys) {
                        self.held = table.num_rows();
                        self.batches = vec![table];
                    }
                    self.compacted = self.held;
                }
            }
        }
    }

    /// Lets go of an appended result's oldest rows past `TAIL_ROWS` rows or `TAIL_BYTES`
    /// bytes (a single row larger than that is kept: it is the latest).
    fn trim_tail(&mut self) {
        let bytes = |batches: &[RecordBatch]| -> usize {
            batches.iter().map(RecordBatch::get_array_memory_size).sum()
        };
        loop {
            let Some(first) = self.batches.first() else {
                return;
            };
            let rows = first.num_rows();
            let over_rows = self.held.saturating_sub(TAIL_ROWS);
            let over_bytes = bytes(&self.batches) > TAIL_BYTES;
            let excess = match (over_rows, over_bytes) {
                (0, false) => return,
                (_, true) if self.batches.len() > 1 => rows,
                // One batch over the bound in bytes: its older half goes.
                (over, true) if rows > 1 => over.max(rows / 2),
                (0, true) => return,
                (over, _) => over.min(rows),
            };
            if excess == rows {
                self.batches.remove(0);
            } else {
                self.batches[0] = owned_slice(first, excess, rows - excess);
            }
            self.held -= excess;
            self.dropped += excess as u64;
        }
    }

    fn push(&mut self, rows: &RecordBatch) {
        if rows.num_rows() > 0 {
            self.held += rows.num_rows();
            self.batches.push(rows.clone());
        }
    }
}

/// One row per key, the latest, in the order the keys were last written.
fn latest_per_key(batches: &[RecordBatch], keys: &[String]) -> Result<RecordBatch, String> {
    let Some(schema) = batches.first().map(RecordBatch::schema) else {
        return Err("no rows".into());
    };
    let table = crate::data::concat(&schema, batches);
    let columns = keys
        .iter()
        .map(|k| table.schema().index_of(k).map(|i| table.column(i).clone()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let fields = columns
        .iter()
        .map(|c| arrow_row::SortField::new(c.data_type().clone()))
        .collect();
    let converter = arrow_row::RowConverter::new(fields).map_err(|e| e.to_string())?;
    let rows = converter
        .convert_columns(&columns)
        .map_err(|e| e.to_string())?;
    let mut seen = hashbrown::HashSet::with_capacity(rows.num_rows());
    let mut keep: Vec<u32> = (0..rows.num_rows())
        .rev()
        .filter(|&i| seen.insert(rows.row(i)))
        .map(|i| i as u32)
        .collect();
    keep.reverse();
    arrow_select::take::take_record_batch(&table, &arrow_array::UInt32Array::from(keep))
        .map_err(|e| e.to_string())
}

/// One epoch, as the page plots it.
#[derive(Debug, Clone)]
struct EpochRecord {
    epoch: u64,
    progress: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
struct Warning {
    time: String,
    message: String,
}

/// Where the run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// The page is up; the run has not started yet.
    Starting,
    /// The run has started.
    Running,
    /// A batch run ended well.
    Finished,
    /// A stream stopped without an error.
    Stopped,
    /// The run failed.
    Failed,
}

struct Inner {
    info: RunInfo,
    started: SystemTime,
    clock: Instant,
    ended: Option<Instant>,
    state: RunState,
    exit_code: Option<i32>,
    error: Option<String>,
    stop_reason: Option<&'static str>,
    plan: Option<serde_json::Value>,
    fused: Vec<usize>,
    counters: Vec<Arc<StageRows>>,
    sink_rows: Vec<u64>,
    epochs: VecDeque<EpochRecord>,
    epochs_total: u64,
    input_rows: u64,
    output_rows: u64,
    input_bytes: u64,
    state_rows: u64,
    durations: [u64; DURATION_BUCKETS.len()],
    duration_sum: f64,
    warnings: VecDeque<Warning>,
    warnings_total: u64,
    result: ResultTable,
    chart: Option<ChartChoice>,
}

/// The live state of one run, shared by the bus subscriber and the page server.
pub struct Live {
    inner: Mutex<Inner>,
    updates: tokio::sync::broadcast::Sender<Update>,
}

impl Live {
    /// The live state of a run about to start, described by `info`, with the page's chart (`None`:
    /// no chart) and the stages' row counters.
    pub fn new(
        info: RunInfo,
        chart: Option<ChartChoice>,
        counters: Vec<Arc<StageRows>>,
    ) -> Arc<Live> {
        let sinks = info.sinks.len();
        let (updates, _) = tokio::sync::broadcast::channel(CLIENT_QUEUE);
        Arc::new(Live {
            inner: Mutex::new(Inner {
                info,
                started: SystemTime::now(),
                clock: Instant::now(),
                ended: None,
                state: RunState::Starting,
                exit_code: None,
                error: None,
                stop_reason: None,
                plan: None,
                fused: Vec::new(),
                counters,
                sink_rows: vec![0; sinks],
                epochs: VecDeque::new(),
                epochs_total: 0,
                input_rows: 0,
                output_rows: 0,
                input_bytes: 0,
                state_rows: 0,
                durations: [0; DURATION_BUCKETS.len()],
                duration_sum: 0.0,
                warnings: VecDeque::new(),
                warnings_total: 0,
                result: ResultTable::default(),
                chart,
            }),
            updates,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding it leaves plain figures: keep serving them.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether every client has taken every update sent (`false` while one is still queued
    /// for some client).
    pub fn delivered(&self) -> bool {
        self.updates.is_empty()
    }

    /// A new client's queue of updates.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Update> {
        self.updates.subscribe()
    }

    fn send(&self, name: &'static str, id: Option<u64>, data: serde_json::Value) {
        // No client listening is not an error.
        let _ = self.updates.send(Update {
            name,
            id,
            data: data.to_string().into(),
        });
    }

    /// A warning from the logs or the run (already redacted).
    pub fn warn(&self, message: &str) {
        let warning = Warning {
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            message: crate::error::escape_controls(message).into_owned(),
        };
        let data = serde_json::to_value(&warning).unwrap_or_default();
        {
            let mut inner = self.lock();
            inner.warnings_total += 1;
            if inner.warnings.len() == WARNINGS_KEPT {
                inner.warnings.pop_front();
            }
            inner.warnings.push_back(warning);
        }
        self.send("warning", None, data);
    }

    /// The run ended with `exit_code` (and `error`, when it failed).
    pub fn ended(&self, exit_code: i32, error: Option<String>) {
        let state = {
            let mut inner = self.lock();
            inner.exit_code = Some(exit_code);
            inner.ended.get_or_insert_with(Instant::now);
            inner.state = match (exit_code, inner.info.mode) {
                (0, "stream") => RunState::Stopped,
                (0, _) => RunState::Finished,
                _ => RunState::Failed,
            };
            inner.error = error.map(|e| crate::error::escape_controls(&e).into_owned());
            state_json(&inner)
        };
        self.send("state", None, state);
    }

    /// `GET /api/run`.
    pub fn run_json(&self) -> serde_json::Value {
        let inner = self.lock();
        let elapsed = inner.elapsed_seconds();
        let stages: Vec<serde_json::Value> = inner
            .info
            .steps
            .iter()
            .enumerate()
            .map(|(i, label)| {
                let counted = inner.counters.get(i);
                let fused = inner.fused.contains(&i);
                let called = counted.is_some_and(|c| c.was_called());
                let rows_in = counted.filter(|_| called).map(|c| c.rows_in());
                json!({
                    "step": label,
                    "fused": fused,
                    "rows_in": rows_in,
                    "rows_out": rows_out_of(&inner.counters, i, inner.output_rows),
                    "rows_per_second": rows_in.map(|r| (r as f64 / elapsed.max(1e-9)).round()),
                })
            })
            .collect();
        let sinks: Vec<serde_json::Value> = inner
            .info
            .sinks
            .iter()
            .zip(&inner.sink_rows)
            .map(|(label, rows)| json!({"sink": label, "rows": rows}))
            .collect();
        let mut run = serde_json::to_value(&inner.info).unwrap_or_default();
        run["started"] = humantime::format_rfc3339_millis(inner.started)
            .to_string()
            .into();
        run["elapsed_seconds"] = ((elapsed * 1000.0).round() / 1000.0).into();
        run["state"] = serde_json::to_value(inner.state).unwrap_or_default();
        run["exit_code"] = inner.exit_code.into();
        run["error"] = inner.error.clone().into();
        run["stop_reason"] = inner.stop_reason.into();
        run["plan"] = inner.plan.clone().unwrap_or_default();
        run["stages"] = stages.into();
        run["sink_rows"] = sinks.into();
        run["epochs"] = inner.epochs_total.into();
        run["input_rows"] = inner.input_rows().into();
        run["input_bytes"] = inner.input_bytes.into();
        run["output_rows"] = inner.output_rows.into();
        run["state_rows"] = inner.state_rows.into();
        run["warnings_total"] = inner.warnings_total.into();
        run["warnings"] = serde_json::to_value(&inner.warnings).unwrap_or_default();
        run
    }

    /// `GET /api/epochs`: the progress objects of the kept epochs after `since`.
    pub fn epochs_json(&self, since: Option<u64>) -> serde_json::Value {
        let inner = self.lock();
        inner
            .epochs
            .iter()
            .filter(|e| since.is_none_or(|s| e.epoch > s))
            .map(|e| e.progress.clone())
            .collect()
    }

    /// The current result: its epoch, when it changed, its rows (an upsert table reduced to
    /// one row per key) and how many appended rows are no longer held.
    pub fn result(&self) -> ResultSnapshot {
        let (epoch, updated, batches, keys, dropped, chart) = {
            let inner = self.lock();
            let r = &inner.result;
            (
                r.epoch,
                r.updated,
                r.batches.clone(),
                r.keys.clone(),
                r.dropped,
                inner.chart.clone(),
            )
        };
        let batches = match keys {
            Some(keys) if batches.len() > 1 => match latest_per_key(&batches, &keys) {
                Ok(table) => vec![table],
                Err(_) => batches,
            },
            _ => batches,
        };
        ResultSnapshot {
            epoch,
            updated,
            batches,
            dropped,
            chart,
        }
    }

    /// `GET /metrics`, in Prometheus' text format (version 0.0.4).
    pub fn metrics_text(&self) -> String {
        let inner = self.lock();
        let pipeline = label_value(&inner.info.pipeline);
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (labels, value) in samples {
                out.push_str(&format!(
                    "{name}{{pipeline=\"{pipeline}\"{labels}}} {value}\n"
                ));
            }
        };
        let one = |value: String| vec![(String::new(), value)];
        let states = [
            RunState::Starting,
            RunState::Running,
            RunState::Finished,
            RunState::Stopped,
            RunState::Failed,
        ];
        let state_samples: Vec<(String, String)> = states
            .iter()
            .map(|s| {
                let name = serde_json::to_value(s).unwrap_or_default();
                (
                    format!(",state=\"{}\"", name.as_str().unwrap_or("")),
                    u8::from(*s == inner.state).to_string(),
                )
            })
            .collect();
        family(
            "runner_run_state",
            "gauge",
            "1 for the state the run is in.",
            &state_samples,
        );
        let stage_samples = |rows: &dyn Fn(usize, &StageRows) -> u64| -> Vec<(String, String)> {
            inner
                .info
                .steps
                .iter()
                .zip(&inner.counters)
                .enumerate()
                .map(|(i, (label, counter))| {
                    (
                        format!(",stage=\"{i}\",step=\"{}\"", label_value(label)),
                        rows(i, counter).to_string(),
                    )
                })
                .collect()
        };
        family(
            "runner_stage_rows_in_total",
            "counter",
            "Rows each step took in (steps a fused kernel runs count none).",
            &stage_samples(&|_, stage| stage.rows_in()),
        );
        family(
            "runner_stage_rows_out_total",
            "counter",
            "Rows each step gave out (an aggregation: what the next step took in, or the result; steps a fused kernel runs count none).",
            &stage_samples(&|i, _| {
                rows_out_of(&inner.counters, i, inner.output_rows).unwrap_or(0)
            }),
        );
        family(
            "runner_input_rows_total",
            "counter",
            "Input rows taken (into epochs, in a stream).",
            &one(inner.input_rows().to_string()),
        );
        family(
            "runner_input_bytes_total",
            "counter",
            "Bytes of input read.",
            &one(inner.input_bytes.to_string()),
        );
        family(
            "runner_output_rows_total",
            "counter",
            "Rows handed to the sinks.",
            &one(inner.output_rows.to_string()),
        );
        family(
            "runner_epochs_total",
            "counter",
            "Epochs finished (a batch run is one).",
            &one(inner.epochs_total.to_string()),
        );
        family(
            "runner_state_rows",
            "gauge",
            "Rows in the aggregation's state after the last epoch.",
            &one(inner.state_rows.to_string()),
        );
        family(
            "runner_warnings_total",
            "counter",
            "Warnings logged or reported by the run.",
            &one(inner.warnings_total.to_string()),
        );
        let mut buckets: Vec<(String, String)> = Vec::new();
        let mut cumulative = 0;
        for (bound, count) in DURATION_BUCKETS.iter().zip(&inner.durations) {
            cumulative += count;
            buckets.push((format!(",le=\"{bound}\""), cumulative.to_string()));
        }
        buckets.push((",le=\"+Inf\"".into(), inner.epochs_total.to_string()));
        out.push_str("# HELP runner_epoch_duration_seconds Time from an epoch's trigger to its last sink write.\n# TYPE runner_epoch_duration_seconds histogram\n");
        for (labels, value) in &buckets {
            out.push_str(&format!(
                "runner_epoch_duration_seconds_bucket{{pipeline=\"{pipeline}\"{labels}}} {value}\n"
            ));
        }
        out.push_str(&format!(
            "runner_epoch_duration_seconds_sum{{pipeline=\"{pipeline}\"}} {}\nrunner_epoch_duration_seconds_count{{pipeline=\"{pipeline}\"}} {}\n",
            inner.duration_sum, inner.epochs_total
        ));
        out
    }

    /// The run's state for a new client (its first SSE event).
    pub fn state_json(&self) -> serde_json::Value {
        state_json(&self.lock())
    }
}

/// The current result, held without the lock.
pub struct ResultSnapshot {
    /// The epoch the result is from; `None` before the first result.
    pub epoch: Option<u64>,
    /// When the result last changed; `None` before the first result.
    pub updated: Option<SystemTime>,
    /// The result's rows (for an upsert result, the latest row per key).
    pub batches: Vec<RecordBatch>,
    /// Rows of an appended result no longer held (only the latest [`TAIL_ROWS`] are).
    pub dropped: u64,
    chart: Option<ChartChoice>,
}

impl ResultSnapshot {
    /// The number of rows held.
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// `GET /api/result`: the columns, the first `limit` rows and the chart's bars.
    pub fn to_json(&self, limit: usize) -> serde_json::Value {
        use crate::data::cell;
        let columns: Vec<serde_json::Value> = self.batches.first().map_or_else(Vec::new, |b| {
            b.schema()
                .fields()
                .iter()
                .map(|f| {
                    let kind = crate::data::ValueType::of(f.data_type()).map_or_else(
                        || crate::data::type_label(f.data_type()),
                        |t| t.name().to_owned(),
                    );
                    json!({"name": f.name(), "type": kind})
                })
                .collect()
        });
        let mut rows = Vec::new();
        'batches: for batch in &self.batches {
            for row in 0..batch.num_rows() {
                if rows.len() == limit {
                    break 'batches;
                }
                let values: Vec<serde_json::Value> = batch
                    .columns()
                    .iter()
                    .map(|c| cell(c.as_ref(), row).to_json())
                    .collect();
                rows.push(serde_json::Value::Array(values));
            }
        }
        let chart = self.chart.as_ref().map(|choice| {
            let (bars, window) = choice.bars(&self.batches);
            let mut title = crate::sinks::chart::caption(&choice.title, self.epoch.unwrap_or(0));
            title = match window {
                Some((start, end)) => {
                    title.replace("{window}", &crate::sinks::chart::window_caption(start, end))
                }
                // No window has rows yet: not the placeholder itself.
                None => title.replace("{window}", "(no window yet)"),
            };
            let count = bars.len();
            json!({
                "title": title,
                "x": choice.x,
                "y": choice.y,
                "bars": bars.iter().enumerate().map(|(i, bar)| {
                    let colour = choice.palette.colour(i, count);
                    json!({
                        "label": bar.label,
                        "value": bar.value,
                        "colour": format!("#{:02x}{:02x}{:02x}", colour.0, colour.1, colour.2),
                    })
                }).collect::<Vec<_>>(),
            })
        });
        json!({
            "epoch": self.epoch,
            "updated": self.updated.map(|t| humantime::format_rfc3339_millis(t).to_string()),
            "columns": columns,
            "total_rows": self.rows(),
            "rows": rows,
            "truncated": self.rows() > limit,
            "rows_no_longer_held": self.dropped,
            "chart": chart,
        })
    }
}

impl Inner {
    /// Input rows taken so far: a stream's epochs', or what the first step took in (a batch
    /// run's, which has no epochs; unknown when a kernel runs that step); without steps, the
    /// rows handed to the sinks.
    fn input_rows(&self) -> u64 {
        let first = match self.counters.first() {
            Some(stage) if stage.was_called() => stage.rows_in(),
            Some(_) => 0,
            None => self.output_rows,
        };
        self.input_rows.max(first)
    }

    fn elapsed_seconds(&self) -> f64 {
        self.ended
            .unwrap_or_else(Instant::now)
            .duration_since(self.clock)
            .as_secs_f64()
    }
}

fn state_json(inner: &Inner) -> serde_json::Value {
    json!({
        "state": inner.state,
        "exit_code": inner.exit_code,
        "error": inner.error,
        "stop_reason": inner.stop_reason,
        "elapsed_seconds": (inner.elapsed_seconds() * 1000.0).round() / 1000.0,
        "epochs": inner.epochs_total,
    })
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label_value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The bus subscriber that keeps a `Live` up to date.
pub struct LiveFeed(pub Arc<Live>);

impl Subscriber for LiveFeed {
    fn notify(&mut self, event: &Event) {
        let live = &self.0;
        match event {
            Event::RunStarted { .. } => {
                let state = {
                    let mut inner = live.lock();
                    inner.state = RunState::Running;
                    state_json(&inner)
                };
                live.send("state", None, state);
            }
            Event::Planned { plan } => {
                let mut inner = live.lock();
                inner.plan = serde_json::to_value(plan).ok();
                inner.fused = plan.fused_steps();
            }
            Event::InputRead { bytes } => live.lock().input_bytes += bytes,
            Event::EpochFinished(progress) => {
                let json = progress.spark_json();
                {
                    let mut inner = live.lock();
                    inner.epochs_total += 1;
                    inner.input_rows += progress.rows;
                    inner.state_rows = progress.state_rows as u64;
                    let seconds = (progress.engine + progress.sinks).as_secs_f64();
                    inner.duration_sum += seconds;
                    if let Some(bucket) = DURATION_BUCKETS.iter().position(|b| seconds <= *b) {
                        inner.durations[bucket] += 1;
                    }
                    if inner.epochs.len() == EPOCHS_KEPT {
                        inner.epochs.pop_front();
                    }
                    inner.epochs.push_back(EpochRecord {
                        epoch: progress.epoch,
                        progress: json.clone(),
                    });
                }
                live.send("epoch", Some(progress.epoch), json);
            }
            Event::SinkWrote { sink, rows, .. } => {
                if let Some(count) = live.lock().sink_rows.get_mut(*sink) {
                    *count += rows;
                }
            }
            Event::ResultRows {
                epoch,
                change,
                rows,
            } => {
                let message = {
                    let mut inner = live.lock();
                    inner.output_rows += rows.0.num_rows() as u64;
                    inner.result.apply(*epoch, change, &rows.0);
                    // The rows this epoch wrote (in update mode the table also holds rows
                    // replaced since, until they are let go: not a count to show).
                    json!({
                        "epoch": epoch,
                        "rows": rows.0.num_rows(),
                        "change": change,
                    })
                };
                live.send("result", Some(*epoch), message);
            }
            Event::Warning { message } => live.warn(&crate::redact::redact(message)),
            Event::RunFinished {
                reason, seconds, ..
            } => {
                let state = {
                    let mut inner = live.lock();
                    inner.stop_reason = *reason;
                    if inner.info.mode == "batch" && inner.epochs_total == 0 {
                        // A batch run is epoch 0: its figures, for the plots and `/metrics`.
                        inner.epochs_total = 1;
                        inner.duration_sum += seconds;
                        if let Some(bucket) = DURATION_BUCKETS.iter().position(|b| seconds <= b) {
                            inner.durations[bucket] += 1;
                        }
                    }
                    inner.ended = Some(Instant::now());
                    state_json(&inner)
                };
                live.send("state", None, state);
            }
            _ => {}
        }
    }
}

/// Rows `offset..offset + len` of `batch` in buffers of their own: a slice would keep the whole
/// batch's buffers alive.
fn owned_slice(batch: &RecordBatch, offset: usize, len: usize) -> RecordBatch {
    let slice = batch.slice(offset, len);
    let indices = arrow_array::UInt32Array::from_iter_values(0..len as u32);
    arrow_select::take::take_record_batch(&slice, &indices).unwrap_or(slice)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::word_counts;

    fn live() -> Arc<Live> {
        let info = RunInfo {
            pipeline: "p\"q".into(),
            file: "p.yaml".into(),
            mode: "stream",
            cores: 1,
            trigger: None,
            output_mode: Some("update"),
            engine: "local",
            source: "source (socket)".into(),
            steps: vec!["transforms.0 (group_count)".into()],
            sinks: vec!["sinks.0 (csv)".into()],
        };
        let schema = word_counts(&["a"], &[1]).schema();
        Live::new(info, ChartChoice::choose(&schema, None), Vec::new())
    }

    #[test]
    fn an_upsert_result_keeps_the_latest_row_per_key() {
        let live = live();
        let mut feed = LiveFeed(live.clone());
        let change = ResultChange::Upsert {
            keys: vec!["word".into()],
        };
        for (epoch, rows) in [
            word_counts(&["a", "b"], &[1, 1]),
            word_counts(&["b", "c"], &[2, 5]),
        ]
        .into_iter()
        .enumerate()
        {
            feed.notify(&Event::ResultRows {
                epoch: epoch as u64,
                change: change.clone(),
                rows: crate::events::ResultBatch(rows),
            });
        }
        let result = live.result().to_json(100);
        assert_eq!(result["epoch"], 1);
        assert_eq!(result["rows"], json!([["a", 1], ["b", 2], ["c", 5]]));
        let bars: Vec<_> = result["chart"]["bars"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["label"].as_str().unwrap().to_owned(),
                    b["value"].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            bars,
            [("c".into(), 5.0), ("b".into(), 2.0), ("a".into(), 1.0)]
        );
    }

    #[test]
    fn an_appended_result_keeps_its_latest_rows() {
        let mut table = ResultTable::default();
        let words: Vec<String> = (0..TAIL_ROWS + 5).map(|i| i.to_string()).collect();
        let counts = vec![1; words.len()];
        let refs: Vec<&str> = words.iter().map(String::as_str).collect();
        table.apply(0, &ResultChange::Append, &word_counts(&refs, &counts));
        assert_eq!(table.held, TAIL_ROWS);
        assert_eq!(table.dropped, 5);
        assert_eq!(
            crate::data::cell(table.batches[0].column(0).as_ref(), 0).to_text(),
            "5"
        );
    }

    #[test]
    fn an_appended_result_of_long_values_is_bounded_in_bytes_not_only_rows() {
        let mut table = ResultTable::default();
        let long = "x".repeat(1 << 20);
        for epoch in 0..100u64 {
            let words: Vec<String> = (0..4).map(|i| format!("{epoch}.{i}{long}")).collect();
            let refs: Vec<&str> = words.iter().map(String::as_str).collect();
            table.apply(epoch, &ResultChange::Append, &word_counts(&refs, &[1; 4]));
        }
        let held: usize = table
            .batches
            .iter()
            .map(RecordBatch::get_array_memory_size)
            .sum();
        assert!(held <= TAIL_BYTES, "{held} bytes held");
        assert_eq!(table.held as u64 + table.dropped, 400);
        // The latest rows are the ones kept.
        let last = table.batches.last().unwrap();
        let text = crate::data::cell(last.column(0).as_ref(), last.num_rows() - 1).to_text();
        assert!(text.starts_with("99.3x"));
        // One batch of many long rows keeps its latest, in buffers of their own.
        let mut one = ResultTable::default();
        let words: Vec<String> = (0..100).map(|i| format!("{i}.{long}")).collect();
        let refs: Vec<&str> = words.iter().map(String::as_str).collect();
        one.apply(0, &ResultChange::Append, &word_counts(&refs, &[1; 100]));
        let held: usize = one
            .batches
            .iter()
            .map(RecordBatch::get_array_memory_size)
            .sum();
        assert!(held <= TAIL_BYTES, "{held} bytes held");
        assert!(one.held >= 1 && one.held < 100);
    }

    #[test]
    fn metrics_are_prometheus_text_with_escaped_labels() {
        let live = live();
        let mut feed = LiveFeed(live.clone());
        feed.notify(&Event::EpochFinished(crate::events::EpochProgress {
            epoch: 0,
            rows: 10,
            since_previous: std::time::Duration::from_secs(1),
            engine: std::time::Duration::from_millis(30),
            sinks: std::time::Duration::from_millis(10),
            delay: None,
            state_rows: 3,
            out_rows: 3,
            event_time: None,
        }));
        let text = live.metrics_text();
        assert!(
            text.contains("runner_epochs_total{pipeline=\"p\\\"q\"} 1\n"),
            "{text}"
        );
        assert!(text.contains(
            "runner_epoch_duration_seconds_bucket{pipeline=\"p\\\"q\",le=\"0.025\"} 0\n"
        ));
        assert!(text
            .contains("runner_epoch_duration_seconds_bucket{pipeline=\"p\\\"q\",le=\"0.05\"} 1\n"));
        assert!(text.contains("runner_input_rows_total{pipeline=\"p\\\"q\"} 10\n"));
        // Every sample line is `name{labels} number`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
