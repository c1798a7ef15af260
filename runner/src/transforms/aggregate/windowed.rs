//! A windowed aggregation (`window:` on `group_count` or `aggregate`): one table of groups per
//! event-time window, and in a stream Spark's watermark.
//!
//! Each row goes to every window holding its event time (`WindowSpec::starts`); each window
//! keeps its own table of the inner aggregation, so a final window leaves the state whole, in
//! one step, and memory stays bounded on an endless stream. In a stream, as in Spark:
//! - the watermark is the largest event time seen in earlier epochs (in milliseconds, as Spark
//!   keeps it) minus the delay; it only moves forward, between epochs;
//! - a row going to a window whose end is at or before the watermark is late: dropped from that
//!   window (a row dropped from all its windows is counted as a late row), except in
//!   `complete` mode, which keeps everything;
//! - `append` emits a window once, in the first epoch whose watermark has passed its end, and
//!   `update` emits the groups an epoch changed; both then evict the windows the watermark
//!   has passed;
//! - when the watermark moves past a window's end and no rows come, an epoch without rows
//!   emits it (Spark's no-data batch).

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{Array, ArrayRef, RecordBatch, TimestampMicrosecondArray, UInt32Array};
use arrow_schema::{Field, Schema, SchemaRef};

use crate::error::{Error, Result};
use crate::transforms::window::WindowConfig;
use crate::transforms::window::WindowSpec;
use crate::transforms::{
    rows_with_keys, AggregateState, Aggregation, BuildContext, Emit, EventTimeProgress,
    EventTimeState, Stage, StageKind, Windowing,
};

/// Schema metadata of a snapshot: the watermark, and the late rows counted so far.
const WATERMARK_KEY: &str = "runner.watermark_ms";
const LATE_KEY: &str = "runner.late_rows";
const LAST_EPOCH_WATERMARK_KEY: &str = "runner.last_epoch_watermark_ms";

/// Names of the two columns a windowed aggregation puts first.
pub const WINDOW_START: &str = "window_start";
/// The window's end, exclusive: `window_start` plus the window's size.
pub const WINDOW_END: &str = "window_end";

/// An aggregation over event-time windows (`window:`): the inner aggregation per window, with
/// Spark's watermark in a stream.
pub struct Windowed {
    shared: Arc<Shared>,
}

struct Shared {
    spec: WindowSpec,
    declared: Windowing,
    /// The input column holding event times.
    time: usize,
    /// `watermark:`, in milliseconds (a stream's allowed lateness).
    delay_ms: Option<i64>,
    /// The aggregation each window holds a table of.
    inner: Box<dyn Aggregation>,
    /// Orders each window's rows by this inner column, largest first (group_count's counts),
    /// then by key; `None`: by key.
    count_first: Option<usize>,
    output: SchemaRef,
}

/// The stage of `inner` (an aggregation giving `inner_output`) computed per window of
/// `window`: its output puts the window's start and end before `inner_output`'s columns.
/// `count_first`: order each window's rows by this column of `inner_output`, largest first.
pub fn stage(
    window: &WindowConfig,
    watermark: Option<std::time::Duration>,
    ctx: &BuildContext,
    inner: Box<dyn Aggregation>,
    inner_output: &SchemaRef,
    count_first: Option<usize>,
) -> Result<Stage, String> {
    let spec = window.spec()?;
    let time =
        crate::data::column_index(ctx.input, &window.column).map_err(|e| format!("window: {e}"))?;
    let data_type = ctx.input.field(time).data_type();
    if data_type != &crate::data::timestamp_type() {
        return Err(format!(
            "window: `{}` holds {}, not timestamps: read it as one (`columns: {{{}: timestamp}}`) or convert it with `with_column` and `cast(... as timestamp)`",
            window.column,
            crate::data::type_label(data_type),
            window.column
        ));
    }
    let declared = Windowing {
        window: spec.describe(),
        column: window.column.clone(),
        watermark,
    };
    let (windowed, output) = Windowed::new(spec, declared, time, inner, inner_output, count_first)?;
    Ok(Stage {
        output,
        kind: StageKind::Aggregate(Box::new(windowed)),
    })
}

impl Windowed {
    fn new(
        spec: WindowSpec,
        declared: Windowing,
        time: usize,
        inner: Box<dyn Aggregation>,
        inner_output: &SchemaRef,
        count_first: Option<usize>,
    ) -> Result<(Windowed, SchemaRef), String> {
        let delay = declared.watermark;
        if let Some(clash) = inner_output
            .fields()
            .iter()
            .find(|f| f.name() == WINDOW_START || f.name() == WINDOW_END)
        {
            return Err(format!(
                "the column `{}` clashes with the window's own columns (`{WINDOW_START}`, `{WINDOW_END}`); rename it",
                clash.name()
            ));
        }
        let delay_ms = delay
            .map(|d| i64::try_from(d.as_millis()).map_err(|_| "watermark: too long".to_owned()))
            .transpose()?;
        let mut fields = vec![window_field(WINDOW_START), window_field(WINDOW_END)];
        fields.extend(inner_output.fields().iter().map(|f| f.as_ref().clone()));
        let output: SchemaRef = Arc::new(Schema::new(fields));
        Ok((
            Windowed {
                shared: Arc::new(Shared {
                    spec,
                    declared,
                    time,
                    delay_ms,
                    inner,
                    count_first,
                    output: output.clone(),
                }),
            },
            output,
        ))
    }
}

fn window_field(name: &str) -> Field {
    Field::new(name, crate::data::timestamp_type(), false)
}

impl Aggregation for Windowed {
    fn new_state(&self) -> Box<dyn AggregateState> {
        Box::new(WindowedState {
            shared: self.shared.clone(),
            windows: BTreeMap::new(),
            changed: None,
            emit: None,
            morsel: 0,
            watermark_ms: 0,
            epoch_max_ms: None,
            late_epoch: 0,
            late_total: 0,
            unplaced_total: 0,
            late_groups: BTreeMap::new(),
            last_epoch_watermark_ms: 0,
        })
    }

    fn key_columns(&self) -> usize {
        2 + self.shared.inner.key_columns()
    }

    fn windowed(&self) -> Option<Windowing> {
        Some(self.shared.declared.clone())
    }
}

/// One window's table and the last morsel it was told of.
struct Window {
    state: Box<dyn AggregateState>,
    morsel: Option<u64>,
}

/// A windowed aggregation's state: one inner state per window, by window start.
pub struct WindowedState {
    shared: Arc<Shared>,
    /// By window start (every window has the same size, so this is also end order).
    windows: BTreeMap<i64, Window>,
    /// `update` mode: the groups this epoch changed, per window.
    changed: Option<BTreeMap<i64, Window>>,
    /// How a stream's epochs end; `None`: a batch run (no watermark, everything final at
    /// the end).
    emit: Option<Emit>,
    morsel: u64,
    /// The watermark in effect for the epoch being read, in milliseconds since the epoch.
    watermark_ms: i64,
    /// The largest event time of this epoch, in milliseconds (truncated, as Spark's).
    epoch_max_ms: Option<i64>,
    late_epoch: u64,
    late_total: u64,
    /// Rows whose event time is too far from 1970 for a window to hold it (near year
    /// ±292,000): left out and counted.
    unplaced_total: u64,
    /// This epoch's late rows grouped as the windows group them (what Spark counts).
    late_groups: BTreeMap<i64, Box<dyn AggregateState>>,
    /// The watermark the last epoch ran under: late rows are those behind it, and when the
    /// watermark has moved since, a stream runs an epoch even without rows.
    last_epoch_watermark_ms: i64,
}

impl WindowedState {
    /// Windows ending at or before this (microseconds) are final: `append` emits them and
    /// both `append` and `update` evict them at the end of the epoch.
    fn final_limit(&self) -> Option<i64> {
        self.limit(self.watermark_ms)
    }

    /// Rows for windows ending at or before this are late. Spark (3.4 on, with several
    /// stateful operators allowed, the default) filters late rows by the previous epoch's
    /// watermark, so a row may still count in a window its epoch then finalises.
    fn late_limit(&self) -> Option<i64> {
        self.limit(self.last_epoch_watermark_ms)
    }

    fn limit(&self, watermark_ms: i64) -> Option<i64> {
        match self.emit {
            Some(Emit::Changed | Emit::Final) if self.shared.delay_ms.is_some() => {
                Some(watermark_ms.saturating_mul(1000))
            }
            _ => None,
        }
    }

    fn window_result(&self, start: i64, window: &Window) -> Result<RecordBatch> {
        let rows = window.state.result()?;
        self.with_window(start, order(rows, self.shared.count_first)?)
    }

    /// `rows` of the inner aggregation with the window's start and end put first.
    fn with_window(&self, start: i64, rows: RecordBatch) -> Result<RecordBatch> {
        let n = rows.num_rows();
        let end = self.shared.spec.end(start);
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(TimestampMicrosecondArray::from(vec![start; n]).with_timezone("UTC")),
            Arc::new(TimestampMicrosecondArray::from(vec![end; n]).with_timezone("UTC")),
        ];
        columns.extend(rows.columns().iter().cloned());
        RecordBatch::try_new(self.shared.output.clone(), columns)
            .map_err(|e| Error::runtime(format!("window: {e}")))
    }

    fn concat(&self, batches: Vec<RecordBatch>) -> RecordBatch {
        crate::data::concat(&self.shared.output, &batches)
    }

    fn new_window(&self) -> Window {
        Window {
            state: self.shared.inner.new_state(),
            morsel: None,
        }
    }
}

/// Orders a window's rows by `count_first` descending, then by key (the inner result's order).
fn order(rows: RecordBatch, count_first: Option<usize>) -> Result<RecordBatch> {
    let Some(count) = count_first else {
        return Ok(rows);
    };
    if rows.num_rows() < 2 {
        return Ok(rows);
    }
    let failed = |e: arrow_schema::ArrowError| Error::runtime(format!("window: {e}"));
    // The inner result is in key order: a stable sort by count keeps it among ties.
    let counts = rows
        .column(count)
        .as_primitive::<arrow_array::types::Int64Type>();
    let mut indices: Vec<u32> = (0..rows.num_rows() as u32).collect();
    indices.sort_by_key(|&i| std::cmp::Reverse(counts.value(i as usize)));
    arrow_select::take::take_record_batch(&rows, &UInt32Array::from(indices)).map_err(failed)
}

/// Rows of one batch per window.
#[derive(Default)]
struct Buckets {
    windows: Vec<(i64, Vec<u32>)>,
    /// Where each window's entry is in `windows` (a batch may meet many windows: sliding
    /// ones, thousands per row).
    index: std::collections::HashMap<i64, usize>,
    /// Where the last row went: rows of a tumbling window mostly follow each other.
    last: usize,
}

impl Buckets {
    fn push(&mut self, start: i64, row: u32) {
        if self
            .windows
            .get(self.last)
            .is_some_and(|(s, _)| *s == start)
        {
            self.windows[self.last].1.push(row);
            return;
        }
        match self.index.get(&start) {
            Some(&i) => {
                self.last = i;
                self.windows[i].1.push(row);
            }
            None => {
                self.last = self.windows.len();
                self.index.insert(start, self.last);
                self.windows.push((start, vec![row]));
            }
        }
    }
}

fn feed(
    windows: &mut BTreeMap<i64, Window>,
    start: i64,
    rows: &RecordBatch,
    morsel: u64,
    new: impl FnOnce() -> Window,
) -> Result<()> {
    let window = windows.entry(start).or_insert_with(new);
    if window.morsel != Some(morsel) {
        window.state.begin_morsel(morsel);
        window.morsel = Some(morsel);
    }
    window.state.update(rows)
}

impl AggregateState for WindowedState {
    fn begin_morsel(&mut self, index: u64) {
        self.morsel = index;
    }

    fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        let times = batch
            .column(self.shared.time)
            .as_primitive_opt::<TimestampMicrosecondType>()
            .ok_or_else(|| Error::runtime("window: the event-time column is not a timestamp"))?;
        let late_limit = self.late_limit();
        let spec = self.shared.spec;
        let mut buckets = Buckets::default();
        let mut late_buckets = Buckets::default();
        let mut epoch_max = self.epoch_max_ms;
        let mut late = 0u64;
        let mut unplaced = 0u64;
        for (row, t) in times.iter().enumerate() {
            let Some(t) = t else { continue };
            // Spark takes milliseconds by truncating division.
            let ms = t / 1000;
            epoch_max = Some(epoch_max.map_or(ms, |m: i64| m.max(ms)));
            let mut kept = false;
            let mut any = false;
            let placed = spec.starts(t, |start| {
                any = true;
                if late_limit.is_some_and(|limit| spec.end(start) <= limit) {
                    late_buckets.push(start, row as u32);
                    return;
                }
                kept = true;
                buckets.push(start, row as u32);
            });
            unplaced += u64::from(!placed);
            late += u64::from(any && !kept);
        }
        self.epoch_max_ms = epoch_max;
        self.late_epoch += late;
        self.late_total += late;
        self.unplaced_total += unplaced;
        for (start, rows) in late_buckets.windows {
            // Spark counts what it drops after grouping: (window, key) groups. Late rows are
            // few; grouping them apart is cheap.
            let part = arrow_select::take::take_record_batch(batch, &UInt32Array::from(rows))
                .map_err(|e| Error::runtime(format!("window: {e}")))?;
            let mut groups = self.shared.inner.new_state();
            groups.update(&part)?;
            let late_groups = self
                .late_groups
                .entry(start)
                .or_insert_with(|| self.shared.inner.new_state());
            late_groups.merge(groups)?;
        }
        let whole = batch.num_rows();
        for (start, rows) in buckets.windows {
            let part = if rows.len() == whole {
                // Every row, in order (a tumbling window): no copy.
                batch.clone()
            } else {
                arrow_select::take::take_record_batch(batch, &UInt32Array::from(rows))
                    .map_err(|e| Error::runtime(format!("window: {e}")))?
            };
            let morsel = self.morsel;
            let inner = &self.shared.inner;
            feed(&mut self.windows, start, &part, morsel, || Window {
                state: inner.new_state(),
                morsel: None,
            })?;
            if let Some(changed) = self.changed.as_mut() {
                feed(changed, start, &part, morsel, || Window {
                    state: inner.new_state(),
                    morsel: None,
                })?;
            }
        }
        Ok(())
    }

    fn merge(&mut self, other: Box<dyn AggregateState>) -> Result<()> {
        let other = other
            .into_any()
            .downcast::<WindowedState>()
            .map_err(|_| Error::runtime("window: states of different aggregations cannot merge"))?;
        let other = *other;
        for (start, theirs) in other.windows {
            match self.windows.get_mut(&start) {
                Some(mine) => mine.state.merge(theirs.state)?,
                None => {
                    self.windows.insert(start, theirs);
                }
            }
        }
        self.epoch_max_ms = match (self.epoch_max_ms, other.epoch_max_ms) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.late_epoch += other.late_epoch;
        self.late_total += other.late_total;
        self.unplaced_total += other.unplaced_total;
        for (start, theirs) in other.late_groups {
            match self.late_groups.get_mut(&start) {
                Some(mine) => mine.merge(theirs)?,
                None => {
                    self.late_groups.insert(start, theirs);
                }
            }
        }
        Ok(())
    }

    fn result(&self) -> Result<RecordBatch> {
        let batches = self
            .windows
            .iter()
            .map(|(start, window)| self.window_result(*start, window))
            .collect::<Result<Vec<_>>>()?;
        Ok(self.concat(batches))
    }

    fn rows(&self) -> usize {
        self.windows.values().map(|w| w.state.rows()).sum()
    }

    /// Every window's inner snapshot after its start; the watermark and the late rows in the
    /// schema's metadata.
    fn snapshot(&self) -> Result<RecordBatch> {
        let mut parts = Vec::new();
        for (start, window) in &self.windows {
            let inner = window.state.snapshot()?;
            let mut columns: Vec<ArrayRef> = vec![Arc::new(
                TimestampMicrosecondArray::from(vec![*start; inner.num_rows()])
                    .with_timezone("UTC"),
            )];
            columns.extend(inner.columns().iter().cloned());
            let mut fields = vec![window_field(WINDOW_START)];
            fields.extend(inner.schema().fields().iter().map(|f| f.as_ref().clone()));
            parts.push(
                RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
                    .map_err(|e| Error::runtime(format!("window: snapshot: {e}")))?,
            );
        }
        let metadata: std::collections::HashMap<String, String> = [
            (WATERMARK_KEY.to_owned(), self.watermark_ms.to_string()),
            (LATE_KEY.to_owned(), self.late_total.to_string()),
            (
                LAST_EPOCH_WATERMARK_KEY.to_owned(),
                self.last_epoch_watermark_ms.to_string(),
            ),
        ]
        .into();
        let schema = match parts.first() {
            Some(first) => first.schema().as_ref().clone(),
            None => {
                // No window: the inner snapshot's columns from an empty state.
                let empty = self.shared.inner.new_state().snapshot()?;
                let mut fields = vec![window_field(WINDOW_START)];
                fields.extend(empty.schema().fields().iter().map(|f| f.as_ref().clone()));
                Schema::new(fields)
            }
        }
        .with_metadata(metadata);
        let schema = Arc::new(schema);
        let parts: Vec<RecordBatch> = parts
            .into_iter()
            .map(|p| p.with_schema(schema.clone()))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::runtime(format!("window: snapshot: {e}")))?;
        Ok(crate::data::concat(&schema, &parts))
    }

    fn restore(&mut self, table: &RecordBatch) -> Result<()> {
        let damaged =
            |why: String| Error::runtime(format!("the saved window state is damaged: {why}"));
        let metadata = table.schema().metadata().clone();
        let number = |key: &str| -> Result<Option<i64>> {
            metadata
                .get(key)
                .map(|v| v.parse::<i64>().map_err(|e| damaged(format!("{key}: {e}"))))
                .transpose()
        };
        let watermark = number(WATERMARK_KEY)?.ok_or_else(|| {
            damaged("it has no watermark (saved by another kind of step?)".into())
        })?;
        let late = number(LATE_KEY)?.unwrap_or(0);
        let last_epoch_watermark = number(LAST_EPOCH_WATERMARK_KEY)?.unwrap_or(watermark);
        if table.num_columns() < 2
            || table.schema().field(0).data_type() != &crate::data::timestamp_type()
        {
            return Err(damaged("its first column is not the windows' start".into()));
        }
        let starts = table.column(0).as_primitive::<TimestampMicrosecondType>();
        if starts.null_count() > 0 {
            return Err(damaged("a window has no start".into()));
        }
        let inner = table
            .project(&(1..table.num_columns()).collect::<Vec<_>>())
            .map_err(|e| damaged(e.to_string()))?;
        let mut row = 0;
        while row < table.num_rows() {
            let start = starts.value(row);
            let run = starts.values()[row..]
                .iter()
                .take_while(|&&s| s == start)
                .count();
            let mut window = self.new_window();
            window.state.restore(&inner.slice(row, run))?;
            // Rows read from now on come after the restored ones, which the restored state
            // knows: it is not told of a new morsel (that would number rows from the start).
            window.morsel = Some(self.morsel);
            match self.windows.get_mut(&start) {
                Some(mine) => mine.state.merge(window.state)?,
                None => {
                    self.windows.insert(start, window);
                }
            }
            row += run;
        }
        self.watermark_ms = self.watermark_ms.max(watermark);
        self.last_epoch_watermark_ms = last_epoch_watermark;
        self.late_total += u64::try_from(late).unwrap_or(0);
        Ok(())
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }

    fn event_time(&mut self) -> Option<&mut dyn EventTimeState> {
        Some(self)
    }
}

impl EventTimeState for WindowedState {
    fn start_stream(&mut self, emit: Emit) {
        self.emit = Some(emit);
        if emit == Emit::Changed {
            self.changed = Some(BTreeMap::new());
        }
    }

    fn end_epoch(&mut self) -> Result<(RecordBatch, EventTimeProgress)> {
        let limit = self.final_limit();
        let progress = self.progress();
        let output = match self.emit {
            Some(Emit::Changed) => {
                let changed = self.changed.replace(BTreeMap::new()).unwrap_or_default();
                let key_columns = 2 + self.shared.inner.key_columns();
                let mut batches = Vec::new();
                for (start, touched) in &changed {
                    let Some(window) = self.windows.get(start) else {
                        continue;
                    };
                    let all = self.window_result(*start, window)?;
                    let keys = self.with_window(*start, touched.state.result()?)?;
                    batches.push(rows_with_keys(&all, &keys, key_columns)?);
                }
                self.concat(batches)
            }
            Some(Emit::Final) => {
                let mut batches = Vec::new();
                if let Some(limit) = limit {
                    for (start, window) in &self.windows {
                        if self.shared.spec.end(*start) > limit {
                            break;
                        }
                        batches.push(self.window_result(*start, window)?);
                    }
                }
                self.concat(batches)
            }
            Some(Emit::All) | None => self.result()?,
        };
        if let Some(limit) = limit {
            // Final windows leave the state (`complete` keeps them: it has no limit).
            let spec = self.shared.spec;
            self.windows.retain(|start, _| spec.end(*start) > limit);
        }
        self.last_epoch_watermark_ms = self.watermark_ms;
        if let (Some(max), Some(delay)) = (self.epoch_max_ms, self.shared.delay_ms) {
            self.watermark_ms = self.watermark_ms.max(max.saturating_sub(delay));
        }
        self.epoch_max_ms = None;
        self.late_epoch = 0;
        self.late_groups.clear();
        Ok((output, progress))
    }

    fn wants_epoch(&self) -> bool {
        // As Spark: in append and update modes, a watermark that moved calls for an epoch
        // that emits (append) or evicts what it passed, rows or not.
        self.final_limit().is_some() && self.watermark_ms > self.last_epoch_watermark_ms
    }

    fn progress(&self) -> EventTimeProgress {
        EventTimeProgress {
            watermark_ms: self.shared.delay_ms.map(|_| self.watermark_ms),
            late_rows: self.late_epoch,
            late_groups: self.late_groups.values().map(|g| g.rows() as u64).sum(),
            late_rows_total: self.late_total,
            unplaced_rows_total: self.unplaced_total,
            windows: self.windows.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transforms::compliance::{build, texts};
    use crate::transforms::group_count::GroupCountConfig;
    use arrow_array::StringArray;

    const MIN: i64 = 60_000_000;

    fn events(rows: &[(Option<i64>, &str)]) -> RecordBatch {
        let times: TimestampMicrosecondArray = rows.iter().map(|r| r.0).collect();
        let tags: StringArray = rows.iter().map(|r| Some(r.1)).collect();
        RecordBatch::try_from_iter([
            (
                "created_at",
                Arc::new(times.with_timezone("UTC")) as ArrayRef,
            ),
            ("tag", Arc::new(tags) as ArrayRef),
        ])
        .unwrap()
    }

    fn windowed(yaml_window: &str) -> Box<dyn Aggregation> {
        let schema = events(&[]).schema();
        let stage = build::<GroupCountConfig>(
            &format!("{{by: tag, window: {yaml_window}, watermark: 2m}}"),
            &schema,
        )
        .unwrap();
        match stage.kind {
            StageKind::Aggregate(a) => a,
            _ => panic!("an aggregation"),
        }
    }

    fn counts(batch: &RecordBatch) -> Vec<(i64, String, i64)> {
        let starts = batch.column(0).as_primitive::<TimestampMicrosecondType>();
        let counts = batch
            .column(3)
            .as_primitive::<arrow_array::types::Int64Type>();
        texts(batch, "tag")
            .into_iter()
            .enumerate()
            .map(|(i, tag)| (starts.value(i) / MIN, tag, counts.value(i)))
            .collect()
    }

    #[test]
    fn each_window_counts_its_rows_most_frequent_first() {
        let aggregation = windowed("{column: created_at, size: 10m, slide: 5m}");
        let mut state = aggregation.new_state();
        state
            .update(&events(&[
                (Some(MIN), "a"),
                (Some(6 * MIN), "b"),
                (Some(7 * MIN), "b"),
                (None, "no time"),
            ]))
            .unwrap();
        assert_eq!(
            counts(&state.result().unwrap()),
            [
                (-5, "a".into(), 1),
                (0, "b".into(), 2),
                (0, "a".into(), 1),
                (5, "b".into(), 2)
            ]
        );
        assert_eq!(aggregation.key_columns(), 3);
    }

    #[test]
    fn merged_states_equal_one_state_over_all_rows() {
        let aggregation = windowed("{column: created_at, size: 10m}");
        let rows = [
            (Some(MIN), "a"),
            (Some(12 * MIN), "b"),
            (Some(2 * MIN), "a"),
        ];
        let mut whole = aggregation.new_state();
        whole.update(&events(&rows)).unwrap();
        let mut left = aggregation.new_state();
        left.update(&events(&rows[..1])).unwrap();
        let mut right = aggregation.new_state();
        right.update(&events(&rows[1..])).unwrap();
        left.merge(right).unwrap();
        assert_eq!(left.result().unwrap(), whole.result().unwrap());
    }

    /// Runs epochs through a stream state, returning each epoch's emitted counts.
    fn epochs(
        state: &mut Box<dyn AggregateState>,
        batches: &[Vec<(Option<i64>, &str)>],
    ) -> Vec<Vec<(i64, String, i64)>> {
        batches
            .iter()
            .map(|rows| {
                state.update(&events(rows)).unwrap();
                let (out, _) = state.event_time().unwrap().end_epoch().unwrap();
                counts(&out)
            })
            .collect()
    }

    #[test]
    fn append_emits_a_window_once_the_watermark_passes_it_and_drops_late_rows() {
        let aggregation = windowed("{column: created_at, size: 10m}");
        let mut state = aggregation.new_state();
        state.event_time().unwrap().start_stream(Emit::Final);
        let out = epochs(
            &mut state,
            &[
                vec![(Some(MIN), "a"), (Some(13 * MIN), "b")],
                // The watermark is now 11m: [0, 10m) is final and emitted.
                vec![(Some(14 * MIN), "b")],
                // Late against the previous epoch's watermark (11m): dropped.
                vec![(Some(2 * MIN), "a")],
            ],
        );
        assert_eq!(out[0], []);
        assert_eq!(out[1], [(0, "a".into(), 1)]);
        assert_eq!(out[2], []);
        let progress = state.event_time().unwrap().progress();
        assert_eq!(progress.late_rows_total, 1);
        assert_eq!(progress.watermark_ms, Some(12 * MIN / 1000));
        // Only the open window is held.
        assert_eq!(state.rows(), 1);
    }

    #[test]
    fn update_emits_the_groups_an_epoch_changed() {
        let aggregation = windowed("{column: created_at, size: 10m}");
        let mut state = aggregation.new_state();
        state.event_time().unwrap().start_stream(Emit::Changed);
        let out = epochs(
            &mut state,
            &[
                vec![(Some(MIN), "a"), (Some(2 * MIN), "b")],
                vec![(Some(3 * MIN), "b")],
            ],
        );
        assert_eq!(out[1], [(0, "b".into(), 2)]);
    }

    #[test]
    fn complete_mode_keeps_late_rows_and_every_window() {
        let aggregation = windowed("{column: created_at, size: 10m}");
        let mut state = aggregation.new_state();
        state.event_time().unwrap().start_stream(Emit::All);
        let out = epochs(
            &mut state,
            &[
                vec![(Some(30 * MIN), "a")],
                vec![(Some(MIN), "late")],
                vec![],
            ],
        );
        assert_eq!(out[2], [(0, "late".into(), 1), (30, "a".into(), 1)]);
        assert!(!state.event_time().unwrap().wants_epoch());
    }

    #[test]
    fn a_snapshot_restores_windows_watermark_and_late_rows() {
        let aggregation = windowed("{column: created_at, size: 10m}");
        let script = [
            vec![(Some(MIN), "a"), (Some(25 * MIN), "b")],
            vec![(Some(2 * MIN), "late"), (Some(26 * MIN), "b")],
            vec![(Some(31 * MIN), "c")],
        ];
        let mut straight = aggregation.new_state();
        straight.event_time().unwrap().start_stream(Emit::Final);
        let expected = epochs(&mut straight, &script);

        let mut first = aggregation.new_state();
        first.event_time().unwrap().start_stream(Emit::Final);
        let mut got = epochs(&mut first, &script[..2]);
        let snapshot = first.snapshot().unwrap();
        let mut resumed = aggregation.new_state();
        resumed.event_time().unwrap().start_stream(Emit::Final);
        resumed.restore(&snapshot).unwrap();
        assert_eq!(
            resumed.event_time().unwrap().wants_epoch(),
            first.event_time().unwrap().wants_epoch()
        );
        got.extend(epochs(&mut resumed, &script[2..]));
        assert_eq!(got, expected);
        assert_eq!(
            resumed.event_time().unwrap().progress(),
            straight.event_time().unwrap().progress()
        );
    }

    #[test]
    fn a_damaged_snapshot_is_an_error() {
        let aggregation = windowed("{column: created_at, size: 10m}");
        let mut state = aggregation.new_state();
        // Rows of another step's state: no watermark, no window column.
        let err = state
            .restore(&crate::data::word_counts(&["a"], &[1]))
            .unwrap_err();
        assert!(err.to_string().contains("damaged"), "{err}");
    }

    #[test]
    fn aggregate_computes_its_aggregates_per_window_in_key_order() {
        let rows = events(&[
            (Some(MIN), "b"),
            (Some(2 * MIN), "a"),
            (Some(11 * MIN), "a"),
        ]);
        let amounts = arrow_array::Int64Array::from(vec![5, 7, 1]);
        let mut columns = rows.columns().to_vec();
        columns.push(Arc::new(amounts));
        let mut fields: Vec<Field> = rows
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("amount", arrow_schema::DataType::Int64, true));
        let rows = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        let stage = build::<crate::transforms::aggregate::AggregateConfig>(
            "{by: tag, aggs: {n: count(), total: sum(amount)}, window: {column: created_at, size: 10m}}",
            &rows.schema(),
        )
        .unwrap();
        let out = crate::transforms::compliance::run(&stage, rows);
        assert_eq!(
            crate::data::columns(&out.schema()),
            [
                "window_start: timestamp",
                "window_end: timestamp",
                "tag: text",
                "n: integer",
                "total: integer"
            ]
        );
        assert_eq!(texts(&out, "tag"), ["a", "b", "a"]);
        assert_eq!(texts(&out, "total"), ["7", "5", "1"]);
        assert_eq!(texts(&out, "window_start")[2], "1970-01-01T00:10:00Z");
    }

    #[test]
    fn windows_need_a_timestamp_column_and_their_own_names() {
        let schema = events(&[]).schema();
        let err = build::<GroupCountConfig>(
            "{by: created_at, window: {column: tag, size: 10m}}",
            &schema,
        )
        .err()
        .unwrap();
        assert!(err.contains("not timestamps"), "{err}");
        let err = build::<GroupCountConfig>(
            "{by: tag, as: window_end, window: {column: created_at, size: 10m}}",
            &schema,
        )
        .err()
        .unwrap();
        assert!(err.contains("clashes"), "{err}");
        let err = build::<GroupCountConfig>("{by: tag, watermark: 2m}", &schema)
            .err()
            .unwrap();
        assert!(err.contains("applies to windows"), "{err}");
    }
}
