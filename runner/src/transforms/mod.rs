//! Transforms: one file per component. A config's `build` checks it against the input schema
//! (so mistakes surface at validation, before data is read) and returns the runtime stage.

pub mod aggregate;
pub mod drop;
pub mod explode;
pub mod filter;
pub mod group_count;
pub mod limit;
pub mod lowercase;
pub mod parse_json;
pub mod plugin;
pub mod rename;
pub mod select;
pub mod sort;
pub mod stopwords;
pub mod tokenize;
pub mod window;
pub mod with_column;

use std::any::Any;
use std::path::Path;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use crate::error::Result;

/// What a transform config needs to build its runtime stage.
pub struct BuildContext<'a> {
    /// The schema of the batches the stage will receive.
    pub input: &'a SchemaRef,
    /// The pipeline file's directory, for relative paths.
    pub base_dir: &'a Path,
}

/// Implemented by every transform config.
pub trait BuildTransform: Send + Sync {
    /// Validates the config against the input schema and returns the stage.
    fn build(&self, ctx: &BuildContext) -> Result<Stage, String>;
    /// The file of code from outside runner that building the step loads and runs (a
    /// plugin's shared library), as written: `runner plan` stops before such a step.
    fn loads_code(&self) -> Option<&Path> {
        None
    }
    /// Where in the file the build error `message` points, when that is a value rather than
    /// the step (a `where:` expression, the `select` item it quotes); `None`: the step's
    /// `type:`.
    fn error_location(&self, message: &str) -> Option<serde_saphyr::Location> {
        let _ = message;
        None
    }
}

/// A built transform and the schema it produces.
pub struct Stage {
    /// The columns the stage gives out.
    pub output: SchemaRef,
    /// How the stage runs: row-wise, as an aggregation or on the whole input.
    pub kind: StageKind,
}

/// How a stage is executed, which decides how it can be parallelised.
pub enum StageKind {
    /// Batch in, batch out, no state: runs on every worker independently.
    Map(Box<dyn MapTransform>),
    /// Keeps per-worker partial state, merged once (Spark's combiner / reduceByKey).
    Aggregate(Box<dyn Aggregation>),
    /// Needs the whole input at once, in input order (sort, limit).
    Global(Box<dyn GlobalTransform>),
}

/// A stateless stage that turns each batch into another, on any worker.
pub trait MapTransform: Send + Sync {
    /// Transforms one batch; an error stops the run.
    fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch>;
    /// Called once after the last batch (batch mode); stateful transforms (plugins with
    /// `finish`) may return a last batch, which flows on like any other.
    fn finish(&self) -> Result<Option<RecordBatch>> {
        Ok(None)
    }
    /// What `runner plan` says about the stage beyond its type (a plugin: its name and file).
    fn describe(&self) -> Option<String> {
        None
    }
    /// What the run's warnings say about the rows the stage left out (`parse_json` with
    /// `on_error: skip`), one sentence each.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
    /// Whether `finish` may return rows (a stateful plugin): the plan says so.
    fn needs_finish(&self) -> bool {
        false
    }
    /// Declared when the stage splits a text column into one row per piece: a counting kernel
    /// may then read the pieces straight from the input's bytes.
    fn splits_text(&self) -> Option<TextSplit<'_>> {
        None
    }
    /// Declared when what the stage does to a row depends only on the value in one column:
    /// applied to the distinct values of that column it gives what it gives applied to every
    /// row, so it commutes with counting that column.
    fn per_value(&self) -> Option<PerValue> {
        None
    }
    /// `apply` on the distinct values of the column `per_value` names, as a counting kernel
    /// calls it once the values are counted: the same work, but not the stage's rows, so the
    /// run's row counters leave it out.
    fn apply_to_distinct(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        self.apply(batch)
    }
    /// For a step that keeps or drops rows (`PerValue::Keeps`): which rows of `batch` it keeps,
    /// exactly those `apply` would, without building them. `None` where the step does not
    /// say; a kernel then runs `apply`.
    fn keep_mask(&self, batch: &RecordBatch) -> Option<Result<arrow_array::BooleanArray>> {
        let _ = batch;
        None
    }
    /// How the step runs on Spark (`crate::spark`): `input` with the step applied, or why it
    /// cannot run there.
    fn spark(
        &self,
        input: crate::spark::frame::Frame,
    ) -> std::result::Result<crate::spark::frame::Frame, String> {
        let _ = input;
        Err(crate::spark::frame::NOT_TRANSLATED.into())
    }
}

/// How a row-wise stage splits a text column (see `MapTransform::splits_text`).
pub enum TextSplit<'a> {
    /// Into words, as `tokenizer` does (tokenize).
    Words {
        /// The index of the text column split.
        column: usize,
        /// The tokenizer whose words the stage emits.
        tokenizer: &'a tokenize::Tokenizer,
    },
    /// At every `separator` (explode of a text column).
    Separator {
        /// The index of the text column split.
        column: usize,
        /// The separator between pieces.
        separator: &'a str,
        /// Whether empty pieces are left out.
        drop_empty: bool,
    },
}

/// What a stage does to each row, from the value of one column alone (see
/// `MapTransform::per_value`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PerValue {
    /// Keeps or drops the row (filter, stopwords): its output rows are some of its input rows,
    /// in order, unchanged.
    Keeps {
        /// The index of the column the decision reads.
        column: usize,
    },
    /// Replaces the value with another, one row out per row in (lowercase).
    Maps {
        /// The index of the column whose value is replaced.
        column: usize,
    },
}

/// A stage that aggregates rows into groups: each worker fills its own state, and the states are
/// merged.
pub trait Aggregation: Send + Sync {
    /// An empty state, one per worker (and one per window for a windowed aggregation).
    fn new_state(&self) -> Box<dyn AggregateState>;
    /// How many leading output columns are the group's key (update mode emits the groups whose
    /// key an epoch touched).
    fn key_columns(&self) -> usize;
    /// Declared when the aggregation counts rows per value of these key columns
    /// (group_count): a counting kernel may feed its state through `text_counter`.
    fn counts_by(&self) -> Option<&[usize]> {
        None
    }
    /// Declared when every key and every aggregate's argument is an input column as it is (no
    /// expression): a kernel that reads those columns from the input itself may find the groups
    /// and add the rows through [`AggregateState::grouped`].
    fn plain_columns(&self) -> Option<PlainColumns> {
        None
    }
    /// The bytes a batch run's states of this aggregation may hold together before they are
    /// spilled to disk (states that report `spillable_bytes`); `None`: no limit.
    fn memory_limit(&self) -> Option<usize> {
        None
    }
    /// Whether a group's state holds its values (distinct values, a list), which grow with
    /// the group's rows: the memory limit bounds the groups held, not one group's values.
    fn holds_values(&self) -> bool {
        false
    }
    /// The order of the result's rows when it is not by key (a `group_count`: most frequent
    /// first): groups merged from disk by key are sorted into it.
    fn result_order(&self) -> Option<Vec<SortKey>> {
        None
    }
    /// How the aggregation runs in a batch run, when not as it is built (a stream keeps the
    /// built one: its checkpoints hold that one's state).
    fn batch_form(&self) -> Option<Box<dyn Aggregation>> {
        None
    }
    /// Declared by an aggregation whose states hold finer groups than its result (a
    /// `count_distinct` grouped by its value too): what turns their spilled runs, merged in
    /// key order, into result rows. `None`: each slice of merged runs is restored into an empty
    /// state, whose `result_of_sorted` is the result of those groups.
    fn sorted_fold(&self) -> Option<Box<dyn SortedFold + '_>> {
        None
    }
    /// Whether it counts distinct values by grouping on them (`sorted_fold`), for the plan.
    fn groups_distinct_values(&self) -> bool {
        false
    }
    /// Declared by an aggregation over event-time windows: its states are `EventTimeState`s,
    /// and a stream ends each epoch through them.
    fn windowed(&self) -> Option<Windowing> {
        None
    }
    /// How the step runs on Spark (`crate::spark`): `input` with the step applied, or why it
    /// cannot run there.
    fn spark(
        &self,
        input: crate::spark::frame::Frame,
    ) -> std::result::Result<crate::spark::frame::Frame, String> {
        let _ = input;
        Err(crate::spark::frame::NOT_TRANSLATED.into())
    }
}

/// Turns the merged runs of an aggregation whose groups are finer than its result (see
/// [`Aggregation::sorted_fold`]) into result rows, slice after slice.
pub trait SortedFold {
    /// The result rows of the groups `rows` completes: `rows` are states' `spill_snapshot`
    /// rows in key order, after those of the slices before. The last result group may go on
    /// in the next slice: it is held back until then.
    fn slice(&mut self, rows: &RecordBatch) -> Result<Option<RecordBatch>>;
    /// The rows held back, after the last slice.
    fn end(&mut self) -> Result<Option<RecordBatch>>;
}

/// What a windowed aggregation declares (for the stream settings' checks and the plan).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Windowing {
    /// The window, as people write it (`10m every 5m`).
    pub window: String,
    /// The event-time column.
    pub column: String,
    /// `watermark:`, the lateness a stream accepts.
    pub watermark: Option<std::time::Duration>,
}

/// What a stream's epoch emits from event-time state, by output mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// `complete`: every window, every epoch; nothing is late or evicted.
    All,
    /// `update`: the groups the epoch changed.
    Changed,
    /// `append`: each window once, when the watermark has passed its end.
    Final,
}

/// A windowed aggregation's state in a stream: Spark's watermark, late rows and eviction.
pub trait EventTimeState {
    /// Called before the first row of a stream (a batch run never calls it: no watermark,
    /// every window final at the end).
    fn start_stream(&mut self, emit: Emit);
    /// Ends the epoch: the rows it emits and its progress (the watermark it ran under, its late
    /// rows); final windows are evicted, then the watermark advances.
    fn end_epoch(&mut self) -> Result<(RecordBatch, EventTimeProgress)>;
    /// Whether an epoch without new rows would emit or evict a window (Spark's no-data batch).
    fn wants_epoch(&self) -> bool;
    /// The event-time figures now.
    fn progress(&self) -> EventTimeProgress;
}

/// Event-time figures of a stream's epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct EventTimeProgress {
    /// The watermark in milliseconds since 1970 (with `watermark:` set).
    pub watermark_ms: Option<i64>,
    /// Rows dropped this epoch because every window they belong to had passed the watermark.
    pub late_rows: u64,
    /// The same late rows counted as Spark's `numRowsDroppedByWatermark` counts them: one per
    /// (window, key) group they would have gone to.
    pub late_groups: u64,
    /// The late rows since the stream started (checkpoints carry it over restarts).
    pub late_rows_total: u64,
    /// Rows left out because their event time is too far from 1970 for any window.
    pub unplaced_rows_total: u64,
    /// Windows held in the state.
    pub windows: usize,
}

/// A state that counts text keys, fed directly by a counting kernel.
pub trait TextCounter {
    /// Adds `count` occurrences of `key`.
    fn add_text(&mut self, key: &str, count: i64);
    /// Adds one occurrence of each of `keys` (valid UTF-8).
    fn add_each_text(&mut self, keys: &[&[u8]]);
}

/// The input columns an aggregation reads, when each key and argument is one column (see
/// [`Aggregation::plain_columns`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainColumns {
    /// The key columns, in key order.
    pub keys: Vec<usize>,
    /// Each aggregate's argument column, in the order written; `None` for `count()`.
    pub args: Vec<Option<usize>>,
}

/// An aggregate state fed by a kernel that reads the key and argument columns itself.
pub trait GroupedRows {
    /// The numbers of the groups of `rows` rows whose keys are `keys` (one array per key
    /// column), each created empty when new. A group keeps its number for the state's life.
    fn groups_of(&mut self, keys: &[arrow_array::ArrayRef], rows: usize) -> Result<Vec<usize>>;
    /// Adds rows whose groups are known: row `i` belongs to group `ids[i]`, and `args[a]` holds
    /// aggregate `a`'s argument for every row (`None` for `count()`). The rows come after those
    /// added before, in input order (see `AggregateState::begin_morsel`).
    fn add_grouped(&mut self, ids: &[usize], args: &[Option<arrow_array::ArrayRef>]) -> Result<()>;
}

/// The partial result of an [`Aggregation`]: the groups seen so far.
pub trait AggregateState: Send {
    /// Adds a batch's rows to the groups; an error when a value cannot be added (a sum past i64).
    fn update(&mut self, batch: &RecordBatch) -> Result<()>;
    /// Says that the next `update`s hold the rows of morsel `index` (input order), so that
    /// order-keeping aggregates (`first`, `last`) agree however morsels reach workers.
    fn begin_morsel(&mut self, index: u64) {
        let _ = index;
    }
    /// Folds another partial state of the same aggregation into this one (an error when a
    /// checked sum overflows).
    fn merge(&mut self, other: Box<dyn AggregateState>) -> Result<()>;
    /// The aggregate so far, in a deterministic row order.
    /// An error when a value cannot be given (an integer sum past i64).
    fn result(&self) -> Result<RecordBatch>;
    /// How many rows (groups) the state holds.
    fn rows(&self) -> usize;
    /// For a state a batch run may spill to disk when it outgrows its memory limit: about how
    /// many bytes it holds. Such a state's `snapshot` is in key order (the key columns first,
    /// ordered as Arrow's row format orders them, ascending, nulls first) and `restore`
    /// merges rows of equal keys, so that snapshots written to disk merge back by key.
    /// `None`: the state stays in memory.
    fn spillable_bytes(&self) -> Option<usize> {
        None
    }
    /// What a checkpoint saves: by default the `result()`; states whose result does not hold
    /// all they need (an average's count) save more.
    fn snapshot(&self) -> Result<RecordBatch> {
        self.result()
    }
    /// Adds the groups of a `snapshot()` table (a checkpoint's state) to this state.
    fn restore(&mut self, table: &RecordBatch) -> Result<()>;
    /// What a spill writes to disk, read back only by `spill_restore` of the same run: by
    /// default the `snapshot`; a state may write a faster form (typed accumulators, not a
    /// checkpoint's JSON). Same order as `snapshot`.
    fn spill_snapshot(&self) -> Result<RecordBatch> {
        self.snapshot()
    }
    /// Adds the groups of a `spill_snapshot()` table to this state.
    fn spill_restore(&mut self, table: &RecordBatch) -> Result<()> {
        self.restore(table)
    }
    /// For an empty state: the result of a `spill_snapshot()`-form table whose rows are in key
    /// order (rows of equal keys next to each other, as runs merge), as `spill_restore` then
    /// `result` give it. A state may do it without a table of its groups.
    fn result_of_sorted(mut self: Box<Self>, table: &RecordBatch) -> Result<RecordBatch> {
        self.spill_restore(table)?;
        self.result()
    }
    /// For `merge`, which receives another state of its own aggregation.
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
    /// The state as a counter of text keys, when it is one (a group_count by one text column).
    fn text_counter(&mut self) -> Option<&mut dyn TextCounter> {
        None
    }
    /// The state as event-time state, when it is one (a windowed aggregation).
    fn event_time(&mut self) -> Option<&mut dyn EventTimeState> {
        None
    }
    /// The state fed by groups a kernel found, for aggregations that declare `plain_columns`.
    fn grouped(&mut self) -> Option<&mut dyn GroupedRows> {
        None
    }
}

/// One key of a sort: a column and its direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortKey {
    /// The column's index in the step's input.
    pub column: usize,
    /// Largest first (nulls then come last).
    pub descending: bool,
}

/// A stage that needs its whole input at once, in input order (sort, limit).
pub trait GlobalTransform: Send + Sync {
    /// Transforms the whole input, given as one batch.
    fn apply(&self, batch: RecordBatch) -> Result<RecordBatch>;

    /// `apply` where only the first `rows` rows of the output are used (a `limit` follows):
    /// may return only those. A sort then selects them instead of ordering every row.
    fn apply_first(&self, batch: RecordBatch, rows: usize) -> Result<RecordBatch> {
        let _ = rows;
        self.apply(batch)
    }

    /// `Some(n)` for a stage that keeps the first `n` rows and drops the rest (`limit`).
    fn first_rows(&self) -> Option<usize> {
        None
    }

    /// Declared when the output does not depend on the order of the input rows (a sort whose
    /// ties are broken by every column): what comes before it need not keep any order.
    fn order_independent(&self) -> bool {
        false
    }

    /// Declared by a step whose output is its input ordered by these keys, most significant
    /// first (nulls smallest, floats in total order, text by bytes), rows equal on every key
    /// in input order (`sort`). A driver may then sort an input larger than memory itself, in
    /// sorted runs merged by the keys, instead of calling `apply` on the whole input.
    fn sort_keys(&self) -> Option<Vec<SortKey>> {
        None
    }

    /// Told the rows a driver ordered on the step's behalf (through `sort_keys`), for the
    /// step's row counts.
    fn record_rows(&self, rows_in: usize, rows_out: usize) {
        let _ = (rows_in, rows_out);
    }
    /// How the step runs on Spark (`crate::spark`): `input` with the step applied, or why it
    /// cannot run there.
    fn spark(
        &self,
        input: crate::spark::frame::Frame,
    ) -> std::result::Result<crate::spark::frame::Frame, String> {
        let _ = input;
        Err(crate::spark::frame::NOT_TRANSLATED.into())
    }
}

/// Keeps every other column of `batch`, repeated for each output row, and puts `new_column`
/// (one value per entry of `parents`) where `replaced` was.
pub(crate) fn replace_column(
    output: &SchemaRef,
    batch: &RecordBatch,
    replaced: usize,
    parents: Vec<u32>,
    new_column: arrow_array::ArrayRef,
) -> RecordBatch {
    let columns = if batch.num_columns() == 1 {
        vec![new_column]
    } else {
        let indices = arrow_array::UInt32Array::from(parents);
        // The replaced column is not taken: repeated for each of its own pieces, a list of n
        // items would be copied n times (n² memory for one row of 200,000 tags).
        batch
            .columns()
            .iter()
            .enumerate()
            .map(|(index, c)| match index == replaced {
                true => new_column.clone(),
                false => arrow_select::take::take(c.as_ref(), &indices, None)
                    .expect("indices are in bounds"),
            })
            .collect()
    };
    RecordBatch::try_new(output.clone(), columns).expect("columns match the stage's output schema")
}

/// The input schema with column `index` renamed to `name` and given `data_type`.
pub(crate) fn schema_replacing(
    input: &SchemaRef,
    index: usize,
    name: &str,
    data_type: arrow_schema::DataType,
) -> Result<SchemaRef, String> {
    let mut fields: Vec<arrow_schema::Field> =
        input.fields().iter().map(|f| f.as_ref().clone()).collect();
    if let Some(clash) = fields
        .iter()
        .enumerate()
        .find(|(i, f)| *i != index && f.name() == name)
    {
        return Err(format!(
            "the output column `{}` already exists; pick another name with `as`",
            clash.1.name()
        ));
    }
    fields[index] = arrow_schema::Field::new(name, data_type, false);
    Ok(std::sync::Arc::new(arrow_schema::Schema::new(fields)))
}

/// The rows of `table` whose key (its first `key_columns` columns) appears in `keys`: the
/// groups an epoch changed, for `update` mode.
pub(crate) fn rows_with_keys(
    table: &RecordBatch,
    keys: &RecordBatch,
    key_columns: usize,
) -> Result<RecordBatch> {
    use std::collections::HashSet;
    if key_columns == 0 {
        // One group of all rows, which a key-less state always reports: whether it changed
        // is the caller's to know (the stream counts the rows that reached it).
        return Ok(table.clone());
    }
    let fields = table.schema().fields()[..key_columns]
        .iter()
        .map(|f| arrow_row::SortField::new(f.data_type().clone()))
        .collect();
    // Keys compare by their Arrow row encoding: exact per type, a null apart from every value
    // (as text, a null group and "" looked the same).
    let failed = |e: arrow_schema::ArrowError| {
        crate::error::Error::runtime(format!("update mode keys: {e}"))
    };
    let converter = arrow_row::RowConverter::new(fields).map_err(failed)?;
    let wanted_rows = converter
        .convert_columns(&keys.columns()[..key_columns])
        .map_err(failed)?;
    let wanted: HashSet<arrow_row::Row<'_>> = wanted_rows.iter().collect();
    let table_rows = converter
        .convert_columns(&table.columns()[..key_columns])
        .map_err(failed)?;
    let mask: arrow_array::BooleanArray = table_rows
        .iter()
        .map(|row| Some(wanted.contains(&row)))
        .collect();
    arrow_select::filter::filter_record_batch(table, &mask).map_err(failed)
}

#[cfg(test)]
pub(crate) mod compliance {
    //! Assertions every transform must pass.
    use super::*;

    /// Builds the step whose config is `yaml` against `input`'s columns.
    pub fn build<C: BuildTransform + serde::de::DeserializeOwned>(
        yaml: &str,
        input: &SchemaRef,
    ) -> std::result::Result<Stage, String> {
        let config: C = serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{e}"));
        config.build(&BuildContext {
            input,
            base_dir: std::path::Path::new("."),
        })
    }

    /// `build` against a word count's columns (`word`, `count`).
    pub fn build_on_word_counts<C: BuildTransform + serde::de::DeserializeOwned>(
        yaml: &str,
    ) -> std::result::Result<Stage, String> {
        build::<C>(yaml, &crate::data::word_counts(&["a"], &[1]).schema())
    }

    /// Runs `stage` on `input` (whatever its kind) and checks the output matches the declared
    /// schema; returns the output.
    pub fn run(stage: &Stage, input: RecordBatch) -> RecordBatch {
        let out = match &stage.kind {
            StageKind::Map(m) => m.apply(&input).unwrap(),
            StageKind::Aggregate(a) => {
                let mut state = a.new_state();
                state.update(&input).unwrap();
                state.result().unwrap()
            }
            StageKind::Global(g) => g.apply(input).unwrap(),
        };
        assert_eq!(
            out.schema(),
            stage.output,
            "output schema differs from the declared one"
        );
        out
    }

    pub fn texts(batch: &RecordBatch, column: &str) -> Vec<String> {
        let index = batch.schema().index_of(column).unwrap();
        (0..batch.num_rows())
            .map(|r| crate::data::cell(batch.column(index).as_ref(), r).to_text())
            .collect()
    }
}
