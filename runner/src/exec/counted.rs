//! Rows in and out of each stage, for the run summary. Stages are wrapped rather than counted
//! inside the executors, so the executors stay as they are: a wrapper adds two atomic additions
//! per batch (thousands of rows), never per row. Wrappers forward what the wrapped stage
//! declares, so the plan is the same; a stage a kernel replaces is never called and reports
//! no rows.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow_array::RecordBatch;

use super::BuiltPipeline;
use crate::error::Result;
use crate::transforms::{AggregateState, Aggregation, GlobalTransform, MapTransform, StageKind};

/// Rows one stage received and emitted (summed over epochs in a stream).
#[derive(Debug, Default)]
pub struct StageRows {
    rows_in: AtomicU64,
    rows_out: AtomicU64,
    /// Whether the stage was called at all.
    called: AtomicU64,
    /// An aggregation: its output is what the next stage takes in (or the result).
    aggregate: bool,
}

impl StageRows {
    fn add_in(&self, rows: usize) {
        self.called.store(1, Ordering::Relaxed);
        self.rows_in.fetch_add(rows as u64, Ordering::Relaxed);
    }

    fn add_out(&self, rows: usize) {
        self.rows_out.fetch_add(rows as u64, Ordering::Relaxed);
    }

    /// Whether the stage was handed any batch; a stage a kernel replaced never is.
    pub fn was_called(&self) -> bool {
        self.called.load(Ordering::Relaxed) == 1
    }

    /// Rows the stage received, summed over epochs.
    pub fn rows_in(&self) -> u64 {
        self.rows_in.load(Ordering::Relaxed)
    }

    /// Rows the stage emitted, summed over epochs (an aggregation's stay 0: the next stage counts
    /// them).
    pub fn rows_out(&self) -> u64 {
        self.rows_out.load(Ordering::Relaxed)
    }

    /// Whether it was called, and its rows in and out, read together (a summary's snapshot).
    pub fn counts(&self) -> (bool, u64, u64) {
        (self.was_called(), self.rows_in(), self.rows_out())
    }

    /// Whether the stage is an aggregation, whose output the next stage counts.
    pub fn is_aggregate(&self) -> bool {
        self.aggregate
    }
}

/// Rows out of stage `index` of `stages`, `None` when not known: a stage never called (a
/// kernel ran it), or an aggregation whose next stage was not called. An aggregation's output
/// is what the next stage took in, the last one's the rows handed to the sinks (`result`).
pub fn rows_out_of(stages: &[Arc<StageRows>], index: usize, result: u64) -> Option<u64> {
    let stage = stages.get(index).filter(|s| s.was_called())?;
    if !stage.is_aggregate() {
        return Some(stage.rows_out());
    }
    match stages.get(index + 1) {
        Some(next) => next.was_called().then(|| next.rows_in()),
        None => Some(result),
    }
}

/// Wraps every stage of `pipeline` in a counter; returns the counters in stage order.
/// Aggregations count the rows they take in; what they emit is counted by the stage after
/// them (or the result), because a stream asks for their result once per epoch.
pub fn count_rows(pipeline: &mut BuiltPipeline) -> Vec<Arc<StageRows>> {
    pipeline
        .stages
        .iter_mut()
        .map(|built| {
            let rows = Arc::new(StageRows {
                aggregate: matches!(built.stage.kind, StageKind::Aggregate(_)),
                ..StageRows::default()
            });
            let placeholder = StageKind::Global(Box::new(Nothing));
            built.stage.kind = match std::mem::replace(&mut built.stage.kind, placeholder) {
                StageKind::Map(inner) => StageKind::Map(Box::new(CountedMap {
                    inner,
                    rows: rows.clone(),
                })),
                StageKind::Aggregate(inner) => StageKind::Aggregate(Box::new(CountedAggregation {
                    inner,
                    rows: rows.clone(),
                })),
                StageKind::Global(inner) => StageKind::Global(Box::new(CountedGlobal {
                    inner,
                    rows: rows.clone(),
                })),
            };
            rows
        })
        .collect()
}

/// Stands in for a stage for the instant it is being wrapped.
struct Nothing;

impl GlobalTransform for Nothing {
    fn apply(&self, batch: RecordBatch) -> Result<RecordBatch> {
        Ok(batch)
    }
}

struct CountedMap {
    inner: Box<dyn MapTransform>,
    rows: Arc<StageRows>,
}

impl MapTransform for CountedMap {
    fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        self.rows.add_in(batch.num_rows());
        let out = self.inner.apply(batch)?;
        self.rows.add_out(out.num_rows());
        Ok(out)
    }

    fn finish(&self) -> Result<Option<RecordBatch>> {
        let last = self.inner.finish()?;
        if let Some(batch) = &last {
            self.rows.add_out(batch.num_rows());
        }
        Ok(last)
    }

    fn describe(&self) -> Option<String> {
        self.inner.describe()
    }

    fn warnings(&self) -> Vec<String> {
        self.inner.warnings()
    }

    fn needs_finish(&self) -> bool {
        self.inner.needs_finish()
    }

    fn splits_text(&self) -> Option<crate::transforms::TextSplit<'_>> {
        self.inner.splits_text()
    }

    fn per_value(&self) -> Option<crate::transforms::PerValue> {
        self.inner.per_value()
    }

    fn apply_to_distinct(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        self.inner.apply_to_distinct(batch)
    }

    fn keep_mask(&self, batch: &RecordBatch) -> Option<Result<arrow_array::BooleanArray>> {
        let mask = self.inner.keep_mask(batch)?;
        if let Ok(mask) = &mask {
            self.rows.add_in(batch.num_rows());
            self.rows.add_out(mask.true_count());
        }
        Some(mask)
    }
}

struct CountedGlobal {
    inner: Box<dyn GlobalTransform>,
    rows: Arc<StageRows>,
}

impl GlobalTransform for CountedGlobal {
    fn apply(&self, batch: RecordBatch) -> Result<RecordBatch> {
        self.rows.add_in(batch.num_rows());
        let out = self.inner.apply(batch)?;
        self.rows.add_out(out.num_rows());
        Ok(out)
    }

    fn apply_first(&self, batch: RecordBatch, rows: usize) -> Result<RecordBatch> {
        self.rows.add_in(batch.num_rows());
        let out = self.inner.apply_first(batch, rows)?;
        self.rows.add_out(out.num_rows());
        Ok(out)
    }

    fn first_rows(&self) -> Option<usize> {
        self.inner.first_rows()
    }

    fn order_independent(&self) -> bool {
        self.inner.order_independent()
    }

    fn sort_keys(&self) -> Option<Vec<crate::transforms::SortKey>> {
        self.inner.sort_keys()
    }

    fn record_rows(&self, rows_in: usize, rows_out: usize) {
        self.rows.add_in(rows_in);
        self.rows.add_out(rows_out);
    }
}

struct CountedAggregation {
    inner: Box<dyn Aggregation>,
    rows: Arc<StageRows>,
}

impl Aggregation for CountedAggregation {
    fn new_state(&self) -> Box<dyn AggregateState> {
        Box::new(CountedState {
            inner: self.inner.new_state(),
            rows: self.rows.clone(),
        })
    }

    fn counts_by(&self) -> Option<&[usize]> {
        self.inner.counts_by()
    }

    fn key_columns(&self) -> usize {
        self.inner.key_columns()
    }

    fn windowed(&self) -> Option<crate::transforms::Windowing> {
        self.inner.windowed()
    }

    fn plain_columns(&self) -> Option<crate::transforms::PlainColumns> {
        self.inner.plain_columns()
    }

    fn memory_limit(&self) -> Option<usize> {
        self.inner.memory_limit()
    }

    fn result_order(&self) -> Option<Vec<crate::transforms::SortKey>> {
        self.inner.result_order()
    }

    fn holds_values(&self) -> bool {
        self.inner.holds_values()
    }

    fn sorted_fold(&self) -> Option<Box<dyn crate::transforms::SortedFold + '_>> {
        self.inner.sorted_fold()
    }

    fn groups_distinct_values(&self) -> bool {
        self.inner.groups_distinct_values()
    }
}

struct CountedState {
    inner: Box<dyn AggregateState>,
    rows: Arc<StageRows>,
}

impl AggregateState for CountedState {
    fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows.add_in(batch.num_rows());
        self.inner.update(batch)
    }

    fn merge(&mut self, other: Box<dyn AggregateState>) -> Result<()> {
        // `other` is a CountedState too; its `into_any` hands over the wrapped state, which is
        // what the inner merge expects.
        self.inner.merge(other)
    }

    fn begin_morsel(&mut self, index: u64) {
        self.inner.begin_morsel(index);
    }

    fn result(&self) -> Result<RecordBatch> {
        self.inner.result()
    }

    fn snapshot(&self) -> Result<RecordBatch> {
        self.inner.snapshot()
    }

    fn rows(&self) -> usize {
        self.inner.rows()
    }

    fn spillable_bytes(&self) -> Option<usize> {
        self.inner.spillable_bytes()
    }

    fn restore(&mut self, table: &RecordBatch) -> Result<()> {
        self.inner.restore(table)
    }

    fn spill_snapshot(&self) -> Result<RecordBatch> {
        self.inner.spill_snapshot()
    }

    fn spill_restore(&mut self, table: &RecordBatch) -> Result<()> {
        self.inner.spill_restore(table)
    }

    fn result_of_sorted(self: Box<Self>, table: &RecordBatch) -> Result<RecordBatch> {
        self.inner.result_of_sorted(table)
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self.inner.into_any()
    }

    fn text_counter(&mut self) -> Option<&mut dyn crate::transforms::TextCounter> {
        self.inner.text_counter()
    }

    fn event_time(&mut self) -> Option<&mut dyn crate::transforms::EventTimeState> {
        self.inner.event_time()
    }

    fn grouped(&mut self) -> Option<&mut dyn crate::transforms::GroupedRows> {
        // Rows a kernel adds are counted here, as `update`'s are.
        self.inner.grouped()?;
        Some(self)
    }
}

impl crate::transforms::GroupedRows for CountedState {
    fn groups_of(&mut self, keys: &[arrow_array::ArrayRef], rows: usize) -> Result<Vec<usize>> {
        self.inner_grouped()?.groups_of(keys, rows)
    }

    fn add_grouped(&mut self, ids: &[usize], args: &[Option<arrow_array::ArrayRef>]) -> Result<()> {
        self.rows.add_in(ids.len());
        self.inner_grouped()?.add_grouped(ids, args)
    }
}

impl CountedState {
    fn inner_grouped(&mut self) -> Result<&mut dyn crate::transforms::GroupedRows> {
        self.inner.grouped().ok_or_else(|| {
            crate::error::Error::runtime("the aggregation's state does not take grouped rows")
        })
    }
}
