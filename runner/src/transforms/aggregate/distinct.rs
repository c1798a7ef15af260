//! `count_distinct` in a batch run, in bounded memory, as Spark plans it: rows are grouped by
//! the keys and the counted value together (each other aggregate's state kept per such finer
//! group), and the finer groups, merged in key order, are folded into the step's own groups: a
//! group's distinct values are its finer groups whose value is not null. The finer groups spill
//! past `memory_limit` like any others, so a group with millions of distinct values no longer
//! holds them all; the fold holds one group at a time.
//!
//! Only where every other aggregate merges whatever the order of its parts (`count`, `min`,
//! `max`, and `sum` and `avg` of integers) and every `count_distinct` counts the same value; otherwise (and in a
//! stream, whose checkpoints hold the step's own state) the step keeps each group's distinct
//! values.

use std::any::Any;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch};
use arrow_row::{RowConverter, SortField};
use arrow_schema::{Field, Schema, SchemaRef};

use super::{AccColumn, Agg, Aggregate};
use crate::data::ValueType;
use crate::error::{Error, Result};
use crate::expr::AggregateFunction;
use crate::transforms::{AggregateState, Aggregation, PlainColumns, SortedFold};

/// An `aggregate` whose `count_distinct` calls all count one value, run as two groupings.
pub(super) struct DistinctByGrouping {
    /// The step as written (its Spark translation).
    written: Aggregate,
    /// Grouped by the keys and the counted value; each `count_distinct` a `count` of it.
    finer: Aggregate,
    folding: Arc<Folding>,
}

/// What folds finer groups into the step's own.
struct Folding {
    /// The step's groups, each `count_distinct` a `count` of its finer groups with a value.
    outer: Aggregate,
    /// The step's key columns.
    key_count: usize,
    /// Per aggregate, how many columns its state spills as, and whether it is a
    /// `count_distinct`.
    spilled: Vec<(usize, bool)>,
    /// The outer state's spilled columns.
    spill_schema: SchemaRef,
}

impl DistinctByGrouping {
    /// The two groupings of `written`, where its aggregates allow them.
    pub(super) fn of(written: &Aggregate) -> Option<DistinctByGrouping> {
        use AggregateFunction as A;
        let mut value: Option<&crate::expr::Expr> = None;
        for agg in written.aggs.iter() {
            match agg.function {
                A::CountDistinct => {
                    let expr = agg.expr.as_ref()?;
                    if expr.value_type() == ValueType::TextList {
                        return None;
                    }
                    match value {
                        Some(seen) if seen.source() != expr.source() => return None,
                        _ => value = Some(expr),
                    }
                }
                // Floats add up to other last digits in another order: their sums stay as
                // the step as written adds them.
                A::Sum | A::Avg if agg.input == Some(ValueType::Float) => return None,
                A::Count | A::Sum | A::Min | A::Max | A::Avg => {}
                // They follow input order, which the finer groups do not keep.
                A::First | A::Last | A::CollectList => return None,
            }
        }
        let value = value?.clone();
        let as_counts: Vec<Agg> = written
            .aggs
            .iter()
            .map(|agg| Agg {
                function: match agg.function {
                    A::CountDistinct => A::Count,
                    other => other,
                },
                expr: agg.expr.clone(),
                input: agg.input,
            })
            .collect();
        let key_count = written.keys.len();
        let fields = written.output.fields();
        let finer_fields: Vec<Field> = fields[..key_count]
            .iter()
            .map(|f| f.as_ref().clone())
            .chain([Field::new("count_distinct value", value.data_type(), true)])
            .chain(fields[key_count..].iter().map(|f| f.as_ref().clone()))
            .collect();
        let mut keys = written.keys.clone();
        keys.push(value.clone());
        let mut key_fields = written.key_fields.clone();
        key_fields.push(SortField::new(value.data_type()));
        let finer = Aggregate {
            keys,
            key_fields,
            aggs: Arc::new(as_counts.clone()),
            output: Arc::new(Schema::new(finer_fields)),
            group_seed: written.group_seed,
            memory_limit: written.memory_limit,
        };
        let outer = Aggregate {
            aggs: Arc::new(as_counts),
            ..written.clone()
        };
        let spilled = outer
            .aggs
            .iter()
            .zip(written.aggs.iter())
            .map(|(agg, as_written)| {
                let width = AccColumn::new(agg).spill_fields("").len();
                (width, as_written.function == A::CountDistinct)
            })
            .collect();
        let spill_schema = Arc::new(outer.table().spill_schema());
        Some(DistinctByGrouping {
            written: written.clone(),
            finer,
            folding: Arc::new(Folding {
                outer,
                key_count,
                spilled,
                spill_schema,
            }),
        })
    }
}

impl Aggregation for DistinctByGrouping {
    fn new_state(&self) -> Box<dyn AggregateState> {
        Box::new(DistinctState {
            finer: self.finer.new_state(),
            folding: self.folding.clone(),
        })
    }

    /// The finer groups' keys: the spilled runs are sorted and merged by them.
    fn key_columns(&self) -> usize {
        self.finer.key_columns()
    }

    fn plain_columns(&self) -> Option<PlainColumns> {
        self.finer.plain_columns()
    }

    fn memory_limit(&self) -> Option<usize> {
        self.finer.memory_limit()
    }

    fn sorted_fold(&self) -> Option<Box<dyn SortedFold + '_>> {
        Some(Box::new(Fold::new(self.folding.clone())))
    }

    fn groups_distinct_values(&self) -> bool {
        true
    }

    fn spark(
        &self,
        input: crate::spark::frame::Frame,
    ) -> std::result::Result<crate::spark::frame::Frame, String> {
        self.written.spark(input)
    }
}

impl Folding {
    /// Finer groups (states' `spill_snapshot` rows in key order, the rows of one finer group
    /// next to each other, as spilled runs merge) as the outer state spills its groups:
    /// without the counted value, each `count_distinct` counting 1 for a finer group's first
    /// row where the value is not null. `converter` encodes the finer keys.
    fn outer_rows(&self, finer: &RecordBatch, converter: &RowConverter) -> Result<RecordBatch> {
        let finer_keys = converter
            .convert_columns(&finer.columns()[..=self.key_count])
            .map_err(|e| Error::runtime(format!("aggregate: counting distinct values: {e}")))?;
        let value = finer.column(self.key_count);
        let present: ArrayRef = Arc::new(Int64Array::from_iter_values((0..finer.num_rows()).map(
            |row| {
                let first = row == 0 || finer_keys.row(row) != finer_keys.row(row - 1);
                i64::from(first && value.is_valid(row))
            },
        )));
        let mut columns: Vec<ArrayRef> = finer.columns()[..self.key_count].to_vec();
        let mut at = self.key_count + 1;
        for &(width, distinct) in &self.spilled {
            let theirs = finer
                .columns()
                .get(at..at + width)
                .ok_or_else(|| Error::runtime("aggregate: a spilled run has too few columns"))?;
            match distinct {
                true => columns.push(present.clone()),
                false => columns.extend_from_slice(theirs),
            }
            at += width;
        }
        RecordBatch::try_new_with_options(
            self.spill_schema.clone(),
            columns,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(finer.num_rows())),
        )
        .map_err(|e| Error::runtime(format!("aggregate: counting distinct values: {e}")))
    }
}

/// Folds the finer groups, in key order, into the step's groups, holding the last one back.
/// A finer group's rows from several runs lie in one slice (slices end where a key does).
struct Fold {
    folding: Arc<Folding>,
    /// The last group so far (the one group, without keys).
    current: Box<dyn AggregateState>,
    /// Encoders of the outer keys and of the finer ones, made with the first slice.
    converters: Option<(RowConverter, RowConverter)>,
}

impl Fold {
    fn new(folding: Arc<Folding>) -> Fold {
        Fold {
            current: folding.outer.new_state(),
            folding,
            converters: None,
        }
    }

    /// The result of finer groups `rows`, all of them, in key order.
    fn whole(folding: &Arc<Folding>, rows: &RecordBatch) -> Result<RecordBatch> {
        let mut fold = Fold::new(folding.clone());
        let parts: Vec<RecordBatch> = [fold.slice(rows)?, fold.end()?]
            .into_iter()
            .flatten()
            .collect();
        Ok(crate::data::concat(&folding.outer.output, &parts))
    }
}

impl SortedFold for Fold {
    fn slice(&mut self, rows: &RecordBatch) -> Result<Option<RecordBatch>> {
        use super::{key_converter, last_key_start};
        let keys = self.folding.key_count;
        if rows.num_rows() == 0 {
            return Ok(None);
        }
        let (outer, finer) = match &mut self.converters {
            Some(converters) => converters,
            None => self
                .converters
                .insert((key_converter(rows, keys)?, key_converter(rows, keys + 1)?)),
        };
        let rows = self.folding.outer_rows(rows, finer)?;
        if keys == 0 {
            self.current.spill_restore(&rows)?;
            return Ok(None);
        }
        let held = self.current.spill_snapshot()?;
        let all = crate::data::concat(&self.folding.spill_schema, &[held, rows]);
        let cut = last_key_start(outer, &all, keys)?;
        self.current = self.folding.outer.new_state();
        self.current
            .spill_restore(&all.slice(cut, all.num_rows() - cut))?;
        if cut == 0 {
            return Ok(None);
        }
        self.folding
            .outer
            .new_state()
            .result_of_sorted(&all.slice(0, cut))
            .map(Some)
    }

    fn end(&mut self) -> Result<Option<RecordBatch>> {
        let last = std::mem::replace(&mut self.current, self.folding.outer.new_state());
        if self.folding.key_count > 0 && last.rows() == 0 {
            return Ok(None);
        }
        last.result().map(Some)
    }
}

/// A worker's finer groups.
struct DistinctState {
    finer: Box<dyn AggregateState>,
    folding: Arc<Folding>,
}

impl AggregateState for DistinctState {
    fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        self.finer.update(batch)
    }

    fn begin_morsel(&mut self, index: u64) {
        self.finer.begin_morsel(index);
    }

    fn merge(&mut self, other: Box<dyn AggregateState>) -> Result<()> {
        let other = other.into_any().downcast::<DistinctState>().map_err(|_| {
            Error::runtime("aggregate: states of different aggregates cannot merge")
        })?;
        self.finer.merge(other.finer)
    }

    /// The finer groups in key order, folded.
    fn result(&self) -> Result<RecordBatch> {
        Fold::whole(&self.folding, &self.finer.spill_snapshot()?)
    }

    fn rows(&self) -> usize {
        self.finer.rows()
    }

    fn spillable_bytes(&self) -> Option<usize> {
        self.finer.spillable_bytes()
    }

    fn snapshot(&self) -> Result<RecordBatch> {
        self.finer.snapshot()
    }

    fn restore(&mut self, table: &RecordBatch) -> Result<()> {
        self.finer.restore(table)
    }

    fn spill_snapshot(&self) -> Result<RecordBatch> {
        self.finer.spill_snapshot()
    }

    fn spill_restore(&mut self, table: &RecordBatch) -> Result<()> {
        self.finer.spill_restore(table)
    }

    fn result_of_sorted(self: Box<Self>, table: &RecordBatch) -> Result<RecordBatch> {
        Fold::whole(&self.folding, table)
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }

    fn grouped(&mut self) -> Option<&mut dyn crate::transforms::GroupedRows> {
        self.finer.grouped()
    }
}
