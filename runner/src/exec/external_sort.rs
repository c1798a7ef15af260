//! A sort over an input of any size in bounded memory (the plan's `external_sort`), the way
//! DataFusion and Spark sort: rows are buffered up to a budget, each full buffer is sorted and
//! written to a temporary file (a sorted run, Arrow IPC), and at the end the runs are merged,
//! batch by batch, by the sort's keys. Before a `limit` of `k` rows only the first `k` rows of
//! each buffer are kept (a top-k), so a sort with a limit holds about `k` rows.
//!
//! Rows are compared by their keys encoded with `arrow-row` (nulls smallest, floats in IEEE
//! total order, text by bytes: the order of the `sort` step's own comparison), and rows equal
//! on every key keep their input order, as the step's stable sort does: runs are cut in input
//! order and a tie goes to the earlier run.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arrow_array::{RecordBatch, UInt32Array};
use arrow_row::{RowConverter, Rows, SortField};
use arrow_schema::{DataType, SchemaRef, SortOptions};

use crate::error::{Error, Result};
use crate::transforms::SortKey;

/// Bytes of buffered rows before a sorted run is written out. Sorting a buffer takes about
/// three times its size (the rows, their encoded keys, the sorted copy).
pub const MEMORY_BUDGET: usize = 16 << 20;

/// Rows per batch handed on from the sort (at most).
const BATCH_ROWS: usize = 4096;

/// Bytes per batch of a run on disk at most: the merge holds one batch of every run at once,
/// with its encoded keys and its file's read buffer (see `run_batch_bytes`).
const RUN_BATCH_BYTES: usize = 256 << 10;

/// Bytes per batch of a run on disk at least, however small the budget.
const MIN_RUN_BATCH_BYTES: usize = 8 << 10;

/// The most runs merged at once; more are first merged in groups (files open at once stay few).
pub(crate) const MERGE_WIDTH: usize = 64;

/// Orders every row pushed into it, in bounded memory.
pub struct ExternalSort {
    schema: SchemaRef,
    keys: Vec<SortKey>,
    /// Only the first rows are wanted (a `limit` follows).
    first: Option<usize>,
    budget: usize,
    /// Bytes per batch of a run written to disk (`run_batch_bytes`).
    run_batch_bytes: usize,
    /// The most bytes the merges' current batches and their keys took at once (the tests
    /// read it once the sort is finished).
    merge_peak: Arc<AtomicUsize>,
    buffered: Vec<RecordBatch>,
    buffered_rows: usize,
    buffered_bytes: usize,
    /// Sorted runs written so far, in input order.
    runs: Vec<Run>,
    /// Run files made so far (each takes the next number as its name).
    files_made: usize,
    /// Created with the first run; removed with everything in it when the sort is dropped.
    spill_dir: Option<tempfile::TempDir>,
    /// What the runs are for, in messages and in the folder's name.
    purpose: &'static str,
}

impl ExternalSort {
    /// A sort of rows of `schema` by `keys`; `first`: only that many rows are wanted.
    pub fn new(schema: SchemaRef, keys: Vec<SortKey>, first: Option<usize>) -> Self {
        Self::with_budget(schema, keys, first, MEMORY_BUDGET)
    }

    /// As `new`, with another memory budget (the tests make runs with small ones).
    pub fn with_budget(
        schema: SchemaRef,
        keys: Vec<SortKey>,
        first: Option<usize>,
        budget: usize,
    ) -> Self {
        ExternalSort {
            schema,
            keys,
            first,
            budget: budget.max(1),
            run_batch_bytes: run_batch_bytes(budget),
            merge_peak: Arc::default(),
            buffered: Vec::new(),
            buffered_rows: 0,
            buffered_bytes: 0,
            runs: Vec::new(),
            files_made: 0,
            spill_dir: None,
            purpose: "sort",
        }
    }

    /// The same sort, its runs for `purpose` (`aggregate`: an aggregation's spilled groups).
    pub fn for_purpose(mut self, purpose: &'static str) -> Self {
        self.purpose = purpose;
        self
    }

    /// Sorted runs so far, on disk or in memory.
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    /// Sorted runs written to disk so far.
    pub fn runs_on_disk(&self) -> usize {
        self.runs
            .iter()
            .filter(|run| matches!(run, Run::File(_)))
            .count()
    }

    /// Takes rows in input order.
    pub fn push(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.buffered_rows += batch.num_rows();
        self.buffered_bytes += batch.get_array_memory_size();
        self.buffered.push(batch);
        if let Some(first) = self.first {
            // A top-k: the buffer is cut back to the first rows once it holds twice as many.
            if self.buffered_rows >= first.saturating_mul(2).saturating_add(BATCH_ROWS)
                && self.buffered_bytes <= self.budget
            {
                let kept = self.sorted_buffer()?;
                self.buffered_rows = kept.num_rows();
                self.buffered_bytes = kept.get_array_memory_size();
                self.buffered = vec![kept];
                return Ok(());
            }
        }
        if self.buffered_bytes > self.budget {
            self.spill()?;
        }
        Ok(())
    }

    /// Hands the sorted rows to `emit` batch by batch, until the end or until it returns
    /// `false` (nothing more is wanted).
    pub fn finish(mut self, mut emit: impl FnMut(RecordBatch) -> Result<bool>) -> Result<()> {
        if self.runs.is_empty() {
            let sorted = self.sorted_buffer()?;
            let mut offset = 0;
            while offset < sorted.num_rows() {
                let length = BATCH_ROWS.min(sorted.num_rows() - offset);
                if !emit(sorted.slice(offset, length))? {
                    break;
                }
                offset += length;
            }
            return Ok(());
        }
        if self.buffered_rows > 0 {
            self.spill()?;
        }
        let mut runs = std::mem::take(&mut self.runs);
        // Level by level: each group of `MERGE_WIDTH` runs becomes one, in input order, so a
        // row is written once per level. (Merging the first group again with the next 63
        // rewrote every row merged so far at each step: the sort into most-frequent-first of
        // 24 million counts under `memory_limit: 16MiB`, 360 runs, wrote them 2.6 times.)
        while runs.len() > MERGE_WIDTH {
            let mut merged = Vec::with_capacity(runs.len().div_ceil(MERGE_WIDTH));
            let mut left = runs.into_iter();
            loop {
                let group: Vec<Run> = left.by_ref().take(MERGE_WIDTH).collect();
                match group.len() {
                    0 => break,
                    1 => merged.extend(group),
                    _ => merged.push(self.merge_into_run(group)?),
                }
            }
            runs = merged;
        }
        self.merge(&runs, emit)
    }

    /// Merges `group` into one run on disk, in batches of about `run_batch_bytes` (a merged
    /// batch may hold a batch of every run in the group), and removes the group's files.
    fn merge_into_run(&mut self, group: Vec<Run>) -> Result<Run> {
        let path = self.next_run_path()?;
        let mut writer = RunWriter::create(&path, &self.schema)?;
        let batch_bytes = self.run_batch_bytes;
        self.merge(&group, |batch| {
            writer.write_in_batches(&batch, batch_bytes).map(|_| true)
        })?;
        writer.finish()?;
        for done in &group {
            if let Run::File(done) = done {
                let _ = std::fs::remove_file(done);
            }
        }
        Ok(Run::File(path))
    }

    /// The buffer in key order (only the first rows before a limit); empties the buffer.
    fn sorted_buffer(&mut self) -> Result<RecordBatch> {
        let batches = std::mem::take(&mut self.buffered);
        self.buffered_rows = 0;
        self.buffered_bytes = 0;
        let all = crate::data::concat(&self.schema, &batches);
        drop(batches);
        let rows = self.encode(&all)?;
        let mut order: Vec<u32> = (0..all.num_rows() as u32).collect();
        // Stable: rows equal on every key keep their input order.
        order.sort_by(|&a, &b| rows.row(a as usize).cmp(&rows.row(b as usize)));
        if let Some(first) = self.first {
            order.truncate(first);
        }
        arrow_select::take::take_record_batch(&all, &UInt32Array::from(order))
            .map_err(|e| Error::runtime(format!("sort: {e}")))
    }

    /// Writes rows already in key order out as a run of their own (an aggregation's groups,
    /// which its state sorts), after the runs written so far.
    pub fn push_sorted_run(&mut self, sorted: RecordBatch) -> Result<()> {
        if sorted.num_rows() == 0 {
            return Ok(());
        }
        self.write_run(sorted)
    }

    /// Keeps rows already in key order as a run in memory, merged with the others at the end
    /// (an aggregation's groups that fit in memory but merge faster in order).
    pub fn push_sorted_run_in_memory(&mut self, sorted: RecordBatch) {
        if sorted.num_rows() > 0 {
            self.runs.push(Run::Memory(sorted));
        }
    }

    /// Sorts the buffer and writes it out as a run.
    fn spill(&mut self) -> Result<()> {
        let sorted = self.sorted_buffer()?;
        self.write_run(sorted)
    }

    /// Writes `sorted` to a new run file, in batches of about `run_batch_bytes`.
    fn write_run(&mut self, sorted: RecordBatch) -> Result<()> {
        let path = self.next_run_path()?;
        let mut writer = RunWriter::create(&path, &self.schema)?;
        writer.write_in_batches(&sorted, self.run_batch_bytes)?;
        writer.finish()?;
        self.runs.push(Run::File(path));
        Ok(())
    }

    fn next_run_path(&mut self) -> Result<PathBuf> {
        if self.spill_dir.is_none() {
            let dir = tempfile::Builder::new()
                .prefix(&format!("runner-{}-", self.purpose))
                .tempdir()
                .map_err(|e| {
                    Error::runtime(format!(
                        "{}: cannot create a folder for sorted runs in {}: {e}",
                        self.purpose,
                        std::env::temp_dir().display()
                    ))
                })?;
            crate::io::atomic::register_temporary_folder(dir.path());
            self.spill_dir = Some(dir);
        }
        let dir = self.spill_dir.as_ref().expect("created above").path();
        // Names never repeat within one sort: every file made is counted.
        self.files_made += 1;
        Ok(dir.join(format!("run-{:06}.arrows", self.files_made)))
    }

    /// The sort keys of `batch`, encoded so that comparing the bytes compares the rows.
    /// The columns rows are encoded from: the keys (floats in Spark's order, where -0.0 ties
    /// with 0.0), then each float key as it is, which orders such ties as the in-memory sort
    /// does.
    fn key_columns(&self, batch: &RecordBatch) -> Vec<arrow_array::ArrayRef> {
        let keys = self
            .keys
            .iter()
            .map(|key| crate::data::float_keys(batch.column(key.column).clone()));
        let raw_floats = self
            .keys
            .iter()
            .filter(|key| self.schema.field(key.column).data_type() == &DataType::Float64)
            .map(|key| batch.column(key.column).clone());
        keys.chain(raw_floats).collect()
    }

    fn encode(&self, batch: &RecordBatch) -> Result<Rows> {
        let converter = self.converter()?;
        let columns = self.key_columns(batch);
        converter
            .convert_columns(&columns)
            .map_err(|e| Error::runtime(format!("sort: {e}")))
    }

    fn converter(&self) -> Result<RowConverter> {
        let raw_floats = self
            .keys
            .iter()
            .filter(|key| self.schema.field(key.column).data_type() == &DataType::Float64);
        let fields = self
            .keys
            .iter()
            .chain(raw_floats)
            .map(|key| {
                // A null is the smallest value: first ascending, last descending.
                let options = SortOptions {
                    descending: key.descending,
                    nulls_first: !key.descending,
                };
                SortField::new_with_options(
                    self.schema.field(key.column).data_type().clone(),
                    options,
                )
            })
            .collect();
        RowConverter::new(fields).map_err(|e| Error::runtime(format!("sort: {e}")))
    }

    /// Merges sorted runs (in input order) into `emit`, `BATCH_ROWS` rows at a time.
    fn merge(&self, runs: &[Run], mut emit: impl FnMut(RecordBatch) -> Result<bool>) -> Result<()> {
        let converter = self.converter()?;
        let mut cursors = Vec::with_capacity(runs.len());
        for run in runs {
            if let Some(cursor) = Cursor::open(run, self, &converter)? {
                cursors.push(cursor);
            }
        }
        // A binary heap of cursor indices, smallest current row on top; ties by run.
        let less = |cursors: &[Cursor], a: usize, b: usize| {
            let (x, y) = (&cursors[a], &cursors[b]);
            match x.rows.row(x.index).cmp(&y.rows.row(y.index)) {
                std::cmp::Ordering::Equal => a < b,
                ordering => ordering == std::cmp::Ordering::Less,
            }
        };
        let mut held: usize = cursors.iter().map(|c| c.bytes).sum();
        self.merge_peak.fetch_max(held, Ordering::Relaxed);
        let mut heap: Vec<usize> = (0..cursors.len()).collect();
        for start in (0..heap.len() / 2).rev() {
            sift_down(&mut heap, start, |a, b| less(&cursors, a, b));
        }
        let mut picks: Vec<(usize, usize)> = Vec::with_capacity(BATCH_ROWS);
        while let Some(&top) = heap.first() {
            picks.push((top, cursors[top].index));
            cursors[top].index += 1;
            let exhausted_batch = cursors[top].index == cursors[top].batch.num_rows();
            if picks.len() == BATCH_ROWS || exhausted_batch {
                // The picks point into the cursors' current batches: hand them on before a
                // cursor moves to its next batch.
                if !emit(interleave(&cursors, &picks)?)? {
                    return Ok(());
                }
                picks.clear();
            }
            let before = cursors[top].bytes;
            if exhausted_batch && cursors[top].advance(self, &converter)? {
                held = held - before + cursors[top].bytes;
                self.merge_peak.fetch_max(held, Ordering::Relaxed);
            } else if exhausted_batch {
                held -= before;
                let last = heap.pop().expect("the heap is not empty");
                if heap.is_empty() {
                    break;
                }
                heap[0] = last;
            }
            sift_down(&mut heap, 0, |a, b| less(&cursors, a, b));
        }
        if !picks.is_empty() {
            emit(interleave(&cursors, &picks)?)?;
        }
        Ok(())
    }
}

/// The rows picked from the cursors' current batches, as one batch.
fn interleave(cursors: &[Cursor], picks: &[(usize, usize)]) -> Result<RecordBatch> {
    let batches: Vec<&RecordBatch> = cursors.iter().map(|c| &c.batch).collect();
    arrow_select::interleave::interleave_record_batch(&batches, picks)
        .map_err(|e| Error::runtime(format!("sort: {e}")))
}

fn sift_down(heap: &mut [usize], mut at: usize, less: impl Fn(usize, usize) -> bool) {
    loop {
        let (left, right) = (2 * at + 1, 2 * at + 2);
        let mut smallest = at;
        if left < heap.len() && less(heap[left], heap[smallest]) {
            smallest = left;
        }
        if right < heap.len() && less(heap[right], heap[smallest]) {
            smallest = right;
        }
        if smallest == at {
            return;
        }
        heap.swap(at, smallest);
        at = smallest;
    }
}

/// Rows of `run` per batch of about `batch_bytes`.
fn rows_per_batch(run: &RecordBatch, batch_bytes: usize) -> usize {
    let row_bytes = run.get_array_memory_size() / run.num_rows().max(1);
    (batch_bytes / row_bytes.max(1)).clamp(1, BATCH_ROWS)
}

/// Bytes per batch of a run on disk for a sort of `budget` bytes: the merge of `MERGE_WIDTH`
/// runs, each holding a batch, its encoded keys (about as large) and a read buffer, then stays
/// within the budget. With 256 KiB batches whatever the budget, the merge of 64 runs took some
/// 40 MB: an aggregation under `memory_limit: 16MiB` peaked at about 100 MB.
fn run_batch_bytes(budget: usize) -> usize {
    (budget / (MERGE_WIDTH * 5 / 2)).clamp(MIN_RUN_BATCH_BYTES, RUN_BATCH_BYTES)
}

/// A sorted run: a file of Arrow IPC batches, or rows kept in memory.
enum Run {
    File(PathBuf),
    Memory(RecordBatch),
}

/// Where a cursor's batches come from.
enum RunReader {
    File(arrow_ipc::reader::StreamReader<BufReader<File>>),
    /// The rest of a run in memory from `offset`, handed on `rows` rows at a time (as a run on
    /// disk is written).
    Memory {
        run: RecordBatch,
        offset: usize,
        rows: usize,
    },
}

impl Iterator for RunReader {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Result<RecordBatch>> {
        match self {
            RunReader::File(reader) => Some(
                reader
                    .next()?
                    .map_err(|e| Error::runtime(format!("sort: reading a run: {e}"))),
            ),
            RunReader::Memory { run, offset, rows } => {
                let length = (*rows).min(run.num_rows() - *offset);
                if length == 0 {
                    return None;
                }
                let batch = run.slice(*offset, length);
                *offset += length;
                Some(Ok(batch))
            }
        }
    }
}

/// One run being merged: its current batch and that batch's encoded keys.
struct Cursor {
    reader: RunReader,
    batch: RecordBatch,
    rows: Rows,
    index: usize,
    /// The bytes the batch's values and its keys take (a batch read from a run shares one
    /// buffer among its columns: `get_array_memory_size` would count it once per column).
    bytes: usize,
}

impl Cursor {
    /// The run's first batch; `None` for a run without rows.
    fn open(run: &Run, sort: &ExternalSort, converter: &RowConverter) -> Result<Option<Self>> {
        let reader = match run {
            Run::File(path) => {
                let file = File::open(path).map_err(|source| Error::Input {
                    path: path.clone(),
                    source,
                })?;
                let reader = arrow_ipc::reader::StreamReader::try_new(BufReader::new(file), None)
                    .map_err(|e| {
                    Error::runtime(format!("sort: reading {}: {e}", path.display()))
                })?;
                RunReader::File(reader)
            }
            Run::Memory(run) => RunReader::Memory {
                run: run.clone(),
                offset: 0,
                rows: rows_per_batch(run, sort.run_batch_bytes),
            },
        };
        let empty = RecordBatch::new_empty(sort.schema.clone());
        let mut cursor = Cursor {
            reader,
            rows: converter.empty_rows(0, 0),
            batch: empty,
            index: 0,
            bytes: 0,
        };
        Ok(cursor.advance(sort, converter)?.then_some(cursor))
    }

    /// Moves to the run's next batch with rows; `false` at the run's end.
    fn advance(&mut self, sort: &ExternalSort, converter: &RowConverter) -> Result<bool> {
        for batch in self.reader.by_ref() {
            let batch = batch?;
            if batch.num_rows() == 0 {
                continue;
            }
            let columns = sort.key_columns(&batch);
            self.rows = converter
                .convert_columns(&columns)
                .map_err(|e| Error::runtime(format!("sort: {e}")))?;
            self.bytes = crate::data::held_bytes(&batch) + self.rows.size();
            self.batch = batch;
            self.index = 0;
            return Ok(true);
        }
        Ok(false)
    }
}

/// Writes one sorted run.
struct RunWriter {
    path: PathBuf,
    writer: arrow_ipc::writer::StreamWriter<BufWriter<File>>,
}

impl RunWriter {
    fn create(path: &PathBuf, schema: &SchemaRef) -> Result<Self> {
        let output_error = |source| Error::Output {
            path: path.clone(),
            source,
        };
        let file = File::create(path).map_err(output_error)?;
        let writer = arrow_ipc::writer::StreamWriter::try_new(BufWriter::new(file), schema)
            .map_err(|e| Error::runtime(format!("sort: writing {}: {e}", path.display())))?;
        Ok(RunWriter {
            path: path.clone(),
            writer,
        })
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer.write(batch).map_err(|e| {
            Error::runtime(format!(
                "sort: writing a sorted run to {}: {e}",
                self.path.display()
            ))
        })
    }

    /// Writes `rows` in batches of about `batch_bytes`.
    fn write_in_batches(&mut self, rows: &RecordBatch, batch_bytes: usize) -> Result<()> {
        let rows_per_batch = rows_per_batch(rows, batch_bytes);
        let mut offset = 0;
        while offset < rows.num_rows() {
            let length = rows_per_batch.min(rows.num_rows() - offset);
            self.write(&rows.slice(offset, length))?;
            offset += length;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        self.writer.finish().map_err(|e| {
            Error::runtime(format!(
                "sort: writing a sorted run to {}: {e}",
                self.path.display()
            ))
        })?;
        let file = self
            .writer
            .into_inner()
            .map_err(|e| Error::runtime(format!("sort: {e}")))?;
        file.into_inner()
            .map_err(|e| Error::runtime(format!("sort: {}: {e}", self.path.display())))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    /// Random rows with many ties, nulls, NaN, -0.0 and Unicode, in batches of random sizes.
    fn input(seed: u64, rows: usize) -> (SchemaRef, Vec<RecordBatch>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("word", DataType::Utf8, true),
            Field::new("count", DataType::Int64, true),
            Field::new("score", DataType::Float64, true),
            Field::new("flag", DataType::Boolean, true),
            Field::new("id", DataType::Int64, false),
        ]));
        let mut state = seed;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let words = ["a", "b", "é", "ß", "Z", "", "zz", "日本"];
        let floats = [0.0, -0.0, 1.5, f64::NAN, -f64::NAN, f64::INFINITY, -2.0];
        let mut batches = Vec::new();
        let mut id = 0i64;
        while (id as usize) < rows {
            let size = (1 + next() % 300) as usize;
            let size = size.min(rows - id as usize);
            let mut word = Vec::new();
            let mut count = Vec::new();
            let mut score = Vec::new();
            let mut flag = Vec::new();
            let mut ids = Vec::new();
            for _ in 0..size {
                let r = next();
                word.push((r % 10 != 0).then(|| words[(r >> 8) as usize % words.len()]));
                count.push((r % 7 != 0).then_some(((r >> 16) % 5) as i64));
                score.push((r % 9 != 0).then_some(floats[(r >> 24) as usize % floats.len()]));
                flag.push((r % 11 != 0).then_some((r >> 32) % 2 == 0));
                ids.push(id);
                id += 1;
            }
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from(word)),
                Arc::new(Int64Array::from(count)),
                Arc::new(Float64Array::from(score)),
                Arc::new(BooleanArray::from(flag)),
                Arc::new(Int64Array::from(ids)),
            ];
            batches.push(RecordBatch::try_new(schema.clone(), columns).unwrap());
        }
        (schema, batches)
    }

    /// The `sort` step configured by `by` (YAML) on `schema`.
    fn sort_step(schema: &SchemaRef, by: &str) -> Box<dyn crate::transforms::GlobalTransform> {
        use crate::transforms::{BuildContext, BuildTransform, StageKind};
        let config: crate::transforms::sort::SortConfig = serde_saphyr::from_str(by).unwrap();
        let stage = config
            .build(&BuildContext {
                input: schema,
                base_dir: std::path::Path::new("."),
            })
            .unwrap();
        let StageKind::Global(sort) = stage.kind else {
            panic!("sort is global")
        };
        sort
    }

    /// The `sort` step itself on the whole input, as the batch path runs it.
    fn reference(
        schema: &SchemaRef,
        batches: &[RecordBatch],
        by: &str,
        first: Option<usize>,
    ) -> RecordBatch {
        let sort = sort_step(schema, by);
        let all = crate::data::concat(schema, batches);
        let sorted = match first {
            Some(n) => sort.apply_first(all, n).unwrap(),
            None => sort.apply(all).unwrap(),
        };
        let keep = first.unwrap_or(usize::MAX).min(sorted.num_rows());
        sorted.slice(0, keep)
    }

    fn external(
        schema: &SchemaRef,
        batches: &[RecordBatch],
        by: &str,
        first: Option<usize>,
        budget: usize,
    ) -> (RecordBatch, usize) {
        let keys = sort_step(schema, by)
            .sort_keys()
            .expect("a sort declares its keys");
        let mut external = ExternalSort::with_budget(schema.clone(), keys, first, budget);
        for batch in batches {
            external.push(batch.clone()).unwrap();
        }
        let runs = external.runs();
        let mut out = Vec::new();
        let mut taken = 0;
        external
            .finish(|batch| {
                taken += batch.num_rows();
                out.push(batch);
                Ok(first.is_none_or(|n| taken < n))
            })
            .unwrap();
        let all = crate::data::concat(schema, &out);
        let keep = first.unwrap_or(usize::MAX).min(all.num_rows());
        (all.slice(0, keep), runs)
    }

    #[test]
    fn sorted_runs_merge_into_the_sort_steps_own_order() {
        for (seed, by) in [
            (1, "by: word"),
            (2, "by: [count desc, word]"),
            (3, "by: [score, flag desc]"),
            (4, "by: [flag, score desc, word desc]"),
        ] {
            let (schema, batches) = input(seed, 20_000);
            let expected = reference(&schema, &batches, by, None);
            // In memory, a few runs, and more runs than one merge takes (merged in groups).
            for budget in [usize::MAX, 200_000, 6_000] {
                let (actual, runs) = external(&schema, &batches, by, None, budget);
                assert_eq!(actual, expected, "{by}, budget {budget}, {runs} runs");
                if budget == 6_000 {
                    assert!(runs > MERGE_WIDTH, "{runs} runs");
                }
            }
        }
    }

    #[test]
    fn the_first_rows_are_those_of_the_full_sort_whatever_the_budget() {
        let (schema, batches) = input(9, 30_000);
        for first in [0, 1, 7, 4_096, 25_000] {
            let expected = reference(&schema, &batches, "by: [count desc, word]", Some(first));
            for budget in [usize::MAX, 100_000] {
                let (actual, _) = external(
                    &schema,
                    &batches,
                    "by: [count desc, word]",
                    Some(first),
                    budget,
                );
                assert_eq!(actual, expected, "first {first}, budget {budget}");
            }
        }
    }

    #[test]
    fn the_merge_of_many_runs_keeps_within_the_budget() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("word", DataType::Utf8, false),
            Field::new("id", DataType::Int64, false),
        ]));
        let keys = vec![SortKey {
            column: 0,
            descending: false,
        }];
        // Past two groups of runs; wide rows (about 21 to a batch) in step across the runs, so
        // that a merged batch could hold a batch of every run in its group.
        let (runs, rows) = (2 * MERGE_WIDTH - 1, 100);
        let budget = 4 << 20;
        let mut external = ExternalSort::with_budget(schema.clone(), keys, None, budget);
        for run in 0..runs {
            // Each run in key order, its words interleaved with the other runs' words.
            let ids: Vec<i64> = (0..rows).map(|row| (row * runs + run) as i64).collect();
            let words: Vec<String> = ids.iter().map(|id| format!("{id:01200}")).collect();
            let sorted = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from(words)),
                    Arc::new(Int64Array::from(ids)),
                ],
            )
            .unwrap();
            assert!(sorted.get_array_memory_size() > 100 << 10);
            external.push_sorted_run(sorted).unwrap();
        }
        let peak = external.merge_peak.clone();
        let mut next = 0i64;
        let mut in_order = true;
        external
            .finish(|batch| {
                let ids = batch
                    .column(1)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap();
                for id in ids.values() {
                    in_order &= *id == next;
                    next += 1;
                }
                Ok(true)
            })
            .unwrap();
        assert!(in_order && next == (runs * rows) as i64, "{next} rows");
        // 127 runs merged in two levels (64 and 63 runs, then the two), each merge holding a
        // batch of up to 64 runs at once, the merged runs written in batches as small.
        let peak = peak.load(Ordering::Relaxed);
        assert!(peak > 0 && peak <= budget, "the merge held {peak} bytes");
    }

    #[test]
    fn the_run_files_go_with_the_sort() {
        let (schema, batches) = input(5, 5_000);
        let keys = vec![SortKey {
            column: 0,
            descending: false,
        }];
        let mut external = ExternalSort::with_budget(schema, keys, None, 10_000);
        for batch in batches {
            external.push(batch).unwrap();
        }
        let dir = external.spill_dir.as_ref().unwrap().path().to_path_buf();
        assert!(dir.is_dir() && external.runs() > 1);
        let mut rows = 0;
        external
            .finish(|batch| {
                rows += batch.num_rows();
                Ok(true)
            })
            .unwrap();
        assert_eq!(rows, 5_000);
        assert!(!dir.exists(), "{} is left behind", dir.display());
    }
}
