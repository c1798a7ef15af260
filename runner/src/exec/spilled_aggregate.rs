//! An aggregation of a batch run in bounded memory, as DuckDB's and Spark's aggregates spill:
//! when a worker's groups outgrow its share of the aggregation's `memory_limit`, its state is
//! written to a temporary file as a run sorted by key (the state's `snapshot`, which keeps what
//! each group needs to go on: an average's sum and count, the distinct values) and the worker
//! starts an empty one. At the end the runs are merged by key (`ExternalSort`'s merge), a
//! slice of keys at a time: the rows of one slice, every run's rows of those keys, are restored
//! into an empty state, which merges equal keys, and its result is handed on. The answer is the
//! in-memory one, in the same key order; memory holds one slice and one batch of each run.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use arrow_array::RecordBatch;
use arrow_row::RowConverter;

use super::external_sort::ExternalSort;
use crate::error::{Error, Result};
use crate::transforms::aggregate::{key_converter, last_key_start};
use crate::transforms::{AggregateState, Aggregation, SortKey};

/// Rows of runs restored into one state at the end (more when the last key goes on).
const MERGE_ROWS: usize = 65_536;

/// Groups held by the workers together past which their states, none spilled, are merged as
/// sorted runs in memory rather than into one table (see `Spill::merge`).
const IN_ORDER_GROUPS: usize = 1 << 20;

/// The spilled runs of one aggregation in a batch run, shared by its workers.
pub(crate) struct Spill<'a> {
    aggregation: &'a dyn Aggregation,
    /// A worker's share of the limit; `None`: states stay in memory.
    share: Option<usize>,
    runs: Mutex<Option<ExternalSort>>,
    spilled: AtomicUsize,
    /// Whether the workers' states were kept as runs in memory at the end (nothing spilled).
    in_memory: std::sync::atomic::AtomicBool,
    /// `IN_ORDER_GROUPS` (tests make it small).
    in_order_groups: usize,
}

impl<'a> Spill<'a> {
    /// For `workers` workers sharing the aggregation's `memory_limit`.
    pub fn new(aggregation: &'a dyn Aggregation, workers: usize) -> Spill<'a> {
        // Half the limit for the groups: writing a state out takes about as much again
        // while it lasts (its snapshot, the order of its keys). Without keys there is one
        // group: nothing to spill it by.
        let share = match aggregation.key_columns() {
            0 => None,
            _ => aggregation
                .memory_limit()
                .map(|limit| (limit / 2 / workers.max(1)).max(1)),
        };
        Spill {
            aggregation,
            share,
            runs: Mutex::new(None),
            spilled: AtomicUsize::new(0),
            in_memory: std::sync::atomic::AtomicBool::new(false),
            in_order_groups: IN_ORDER_GROUPS,
        }
    }

    /// After a morsel: when `state` (with `beside` more bytes the worker keeps for it, a
    /// kernel's lookup table) holds more than a worker's share, writes it out and leaves an
    /// empty state in its place. Returns whether it did (the worker then forgets what it
    /// kept for the old state).
    #[cfg(test)]
    pub fn check(&self, state: &mut Box<dyn AggregateState>, beside: usize) -> Result<bool> {
        match self.take_full(state, beside) {
            Some(full) => self.write_full(full).map(|()| true),
            None => Ok(false),
        }
    }

    /// The first half of a spill check, for a worker holding its state's lock: the full
    /// state, with an empty one left in its place. The worker writes it with `write_full`
    /// once the lock is let go: writing sorts on the pool, which may hand this very thread a
    /// morsel whose worker waits for the same lock (a deadlock with 3 or more threads).
    pub fn take_full(
        &self,
        state: &mut Box<dyn AggregateState>,
        beside: usize,
    ) -> Option<Box<dyn AggregateState>> {
        let (Some(share), Some(bytes)) = (self.share, state.spillable_bytes()) else {
            return None;
        };
        if bytes + beside <= share {
            return None;
        }
        Some(std::mem::replace(state, self.aggregation.new_state()))
    }

    /// Writes out a state `take_full` took.
    pub fn write_full(&self, full: Box<dyn AggregateState>) -> Result<()> {
        self.write(full)
    }

    /// Whether a worker's groups of `bytes` outgrow its share of the limit (asked by a kernel
    /// that counts in its own table, which then writes its groups with `write_snapshot`).
    pub fn exceeded(&self, bytes: usize) -> bool {
        self.share.is_some_and(|share| bytes > share)
    }

    /// A worker's share of the memory limit, if it has one.
    pub fn share(&self) -> Option<usize> {
        self.share
    }

    /// Runs written so far (or kept in memory).
    pub fn runs(&self) -> usize {
        self.spilled.load(Ordering::Relaxed)
    }

    fn write(&self, state: Box<dyn AggregateState>) -> Result<()> {
        if state.rows() == 0 {
            return Ok(());
        }
        let snapshot = state.spill_snapshot()?;
        drop(state);
        match self.in_memory.load(Ordering::Relaxed) {
            true => self.add_run(snapshot, false),
            false => self.write_snapshot(snapshot),
        }
    }

    /// Writes one more run: groups as a state's `snapshot` gives them, distinct and in key
    /// order (a kernel that counts in its own table writes its groups so).
    pub fn write_snapshot(&self, snapshot: RecordBatch) -> Result<()> {
        self.add_run(snapshot, true)
    }

    /// One more run, written to disk or kept in memory.
    fn add_run(&self, snapshot: RecordBatch, on_disk: bool) -> Result<()> {
        if snapshot.num_rows() == 0 {
            return Ok(());
        }
        let keys = self.aggregation.key_columns();
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        let sort = runs.get_or_insert_with(|| {
            let keys = (0..keys)
                .map(|column| SortKey {
                    column,
                    descending: false,
                })
                .collect();
            ExternalSort::with_budget(
                snapshot.schema(),
                keys,
                None,
                merge_budget(self.aggregation),
            )
            .for_purpose("aggregate")
        });
        match on_disk {
            true => sort
                .push_sorted_run(snapshot)
                .map_err(|e| Error::runtime(format!("spilling groups to disk: {e}")))?,
            false => sort.push_sorted_run_in_memory(snapshot),
        }
        self.spilled.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The workers' states as one: merged in memory when nothing was spilled, else each
    /// written out as one more run. Workers' states of more than `IN_ORDER_GROUPS` groups
    /// together (none spilled) are kept in memory as sorted runs, merged in order at the end
    /// like spilled ones: each worker's groups sorted apart on all cores, then merged and
    /// handed on a slice at a time on a thread of their own while the sinks write (with 9.4
    /// million groups, adding one table's groups into the other's took a core 1.7 s, and the
    /// whole result was sorted again and written after).
    pub fn merge(
        &self,
        states: impl IntoIterator<Item = Box<dyn AggregateState>>,
    ) -> Result<Box<dyn AggregateState>> {
        let states: Vec<_> = states.into_iter().filter(|s| s.rows() > 0).collect();
        let groups: usize = states.iter().map(|s| s.rows()).sum();
        let in_order = self.runs() == 0
            && self.share.is_some()
            && self.aggregation.result_order().is_none()
            && states.len() > 1
            // Few enough to merge at once: runs kept in memory are never written out (a run
            // that spills nothing must not need a folder to spill to).
            && states.len() < super::external_sort::MERGE_WIDTH
            && groups > self.in_order_groups
            && states.iter().all(|s| s.spillable_bytes().is_some());
        if in_order {
            self.in_memory.store(true, Ordering::Relaxed);
            for state in states {
                self.write(state)?;
            }
            return Ok(self.aggregation.new_state());
        }
        let mut merged = self.aggregation.new_state();
        for state in states {
            match self.runs() {
                0 => merged.merge(state)?,
                _ => self.write(state)?,
            }
        }
        Ok(merged)
    }

    /// The aggregate of everything `check` spilled and `state` (the merged rest).
    pub fn finish(self, state: Box<dyn AggregateState>) -> Result<Aggregated<'a>> {
        if self.runs() == 0 {
            return Ok(Aggregated::Whole(state.result()?));
        }
        self.write(state)?;
        if tighter_than_default(self.aggregation) {
            give_freed_memory_back();
        }
        let runs = self.runs();
        let sort = self
            .runs
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .expect("runs were written");
        Ok(Aggregated::Spilled(SpilledGroups {
            aggregation: self.aggregation,
            runs_on_disk: sort.runs_on_disk(),
            sort,
            runs,
            merge_rows: merge_rows(self.aggregation),
            first: None,
        }))
    }
}

/// The memory the merge of an aggregation's runs may take: half its limit (its groups are gone
/// by then; the slices restored from the runs take the rest).
fn merge_budget(aggregation: &dyn Aggregation) -> usize {
    aggregation
        .memory_limit()
        .map_or(super::external_sort::MEMORY_BUDGET, |limit| limit / 2)
}

/// Rows restored into one state at a time at the end: `MERGE_ROWS`, fewer under a limit below
/// 64 MiB (a slice is held three times over: its runs' rows, them joined, their result).
fn merge_rows(aggregation: &dyn Aggregation) -> usize {
    aggregation
        .memory_limit()
        .map_or(MERGE_ROWS, |limit| (limit >> 10).clamp(4096, MERGE_ROWS))
}

/// The buffer of the sort into a result order other than the keys' (`for_each`): a sort takes
/// about three times its buffer, beside the merge, so an eighth of the aggregation's limit, and
/// no more than any sort's buffer.
fn order_budget(aggregation: &dyn Aggregation) -> usize {
    aggregation
        .memory_limit()
        .map_or(super::external_sort::MEMORY_BUDGET, |limit| {
            (limit / 8).min(super::external_sort::MEMORY_BUDGET)
        })
}

/// Bytes from which glibc serves an allocation with its own mapping, given back when freed,
/// while a run keeps to a memory limit (see `keep_to_memory_limits`).
const OWN_MAPPING_FROM: usize = 4 << 20;

/// Before a batch run whose aggregation has a `memory_limit` below the default: asks glibc to
/// give large blocks back to the system as soon as they are freed. By default glibc raises that
/// threshold to the size of each large block freed (up to 32 MiB), then keeps such blocks in
/// its arenas; the spilled tables' memory stayed with the process and the merge's came on top
/// (`memory_limit: 512MiB`, 9.4 million groups: 580 MB at the peak, 470 MB with this). It costs
/// the big in-memory aggregations some 7 % (fresh pages for each large block), so only a run
/// that asked for less memory than the default pays it.
pub(crate) fn keep_to_memory_limits(stages: &[crate::plan::BuiltStage]) {
    let tighter = stages.iter().any(|built| match &built.stage.kind {
        crate::transforms::StageKind::Aggregate(aggregation) => {
            tighter_than_default(aggregation.as_ref())
        }
        _ => false,
    });
    if tighter {
        give_large_blocks_back();
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn give_large_blocks_back() {
    let bytes = libc::c_int::try_from(OWN_MAPPING_FROM).expect("4 MiB fits a c_int");
    // SAFETY: `mallopt` takes no pointer and has no precondition once the allocator is in use
    // (this process allocated long before); it sets one of glibc's parameters under the main
    // arena's lock, the same parameter glibc's own `free` moves on any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, bytes);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn give_large_blocks_back() {}

/// Whether `aggregation` asked for less memory than the default.
fn tighter_than_default(aggregation: &dyn Aggregation) -> bool {
    aggregation
        .memory_limit()
        .is_some_and(|limit| limit < crate::settings::size::default_memory_limit())
}

/// Once a spilled aggregation's groups are all written out, before its runs are merged (under
/// a limit below the default): has glibc give back to the system what the workers' tables and
/// their snapshots freed in its arenas, blocks under the own-mapping threshold that glibc keeps
/// for reuse. The merge's memory came on top of them: 9.4 million groups under
/// `memory_limit: 32MiB` peaked at 73 MB, 56 MB with this (22 MB of it the process itself).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn give_freed_memory_back() {
    // SAFETY: `malloc_trim` takes no pointer and has no precondition; it locks each arena in
    // turn while it returns that arena's free pages, as `free` does, so other threads may
    // allocate meanwhile.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn give_freed_memory_back() {}

/// An aggregation's result: whole, or to be merged from runs on disk.
pub(crate) enum Aggregated<'a> {
    Whole(RecordBatch),
    Spilled(SpilledGroups<'a>),
}

/// Groups spilled to disk in sorted runs, merged as they are handed on.
pub(crate) struct SpilledGroups<'a> {
    aggregation: &'a dyn Aggregation,
    sort: ExternalSort,
    runs: usize,
    runs_on_disk: usize,
    /// Rows restored into one state at a time (`MERGE_ROWS`; tests make it small).
    merge_rows: usize,
    /// Only the first rows of the result are wanted (a `limit` follows the aggregation).
    first: Option<usize>,
}

impl SpilledGroups<'_> {
    /// Only the first `rows` of the result are wanted (a `limit` right after): the sort into
    /// a result order other than the keys' keeps only them (a top-k). `group_count` under
    /// `memory_limit: 16MiB` then a limit, 24 million words: the whole sort took 4 of 24 s.
    pub fn only_first(mut self, rows: Option<usize>) -> Self {
        self.first = rows;
        self
    }

    /// Runs to merge (the last one is the groups held at the end).
    pub fn runs(&self) -> usize {
        self.runs
    }

    /// Of those, the runs written to disk (none: the workers' groups, sorted in memory).
    pub fn runs_on_disk(&self) -> usize {
        self.runs_on_disk
    }

    /// Hands the result to `emit` in the aggregation's order, a slice at a time, until the end
    /// or until `emit` returns `false`. Groups come merged in key order; an aggregation whose
    /// result has another order (`result_order`) has them sorted into it first, in bounded
    /// memory too.
    pub fn for_each(self, emit: impl FnMut(RecordBatch) -> Result<bool>) -> Result<()> {
        let Some(order) = self.aggregation.result_order() else {
            return self.in_key_order(emit);
        };
        let mut sort: Option<ExternalSort> = None;
        let (budget, first) = (order_budget(self.aggregation), self.first);
        self.in_key_order(|batch| {
            let sort = sort.get_or_insert_with(|| {
                ExternalSort::with_budget(batch.schema(), order.clone(), first, budget)
                    .for_purpose("aggregate")
            });
            sort.push(batch)?;
            Ok(true)
        })?;
        match sort {
            Some(sort) => sort.finish(emit),
            None => Ok(()),
        }
    }

    /// Hands the result to `emit` a slice of keys at a time, in key order, until the end or
    /// until `emit` returns `false`. The runs are merged and each slice's groups added up on a
    /// thread of their own, at most `AHEAD` slices ahead of `emit`: writing the result out
    /// (`emit`, on the caller's thread) took about as long as the merge on the records
    /// benchmark, and the two now overlap.
    fn in_key_order(self, mut emit: impl FnMut(RecordBatch) -> Result<bool>) -> Result<()> {
        const AHEAD: usize = 2;
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Result<RecordBatch>>(AHEAD);
        std::thread::scope(|scope| -> Result<()> {
            let merger = std::thread::Builder::new()
                .name("runner-merge".into())
                .spawn_scoped(scope, move || {
                    let merged = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        // A send fails once nothing more is wanted: the merge stops there.
                        self.merge_slices(|batch| Ok(sender.send(Ok(batch)).is_ok()))
                    }));
                    let failed = match merged {
                        Ok(Ok(())) => return,
                        Ok(Err(error)) => error,
                        Err(payload) => crate::error::from_panic(payload.as_ref()),
                    };
                    let _ = sender.send(Err(failed));
                })
                .map_err(|e| Error::runtime(format!("cannot start a thread to merge: {e}")))?;
            let emitted = (|| {
                for batch in &receiver {
                    if !emit(batch?)? {
                        break;
                    }
                }
                Ok(())
            })();
            // The merger's next send fails, whatever it was doing.
            drop(receiver);
            let joined = merger.join();
            emitted?;
            joined.map_err(|payload| crate::error::from_panic(payload.as_ref()))
        })
    }

    /// Merges the runs, handing `emit` the result a slice of keys at a time, in key order,
    /// until the end or until `emit` returns `false`.
    fn merge_slices(self, mut emit: impl FnMut(RecordBatch) -> Result<bool>) -> Result<()> {
        let keys = self.aggregation.key_columns();
        let aggregation = self.aggregation;
        let mut pending: Vec<RecordBatch> = Vec::new();
        let mut pending_rows = 0;
        let mut wanted = true;
        let mut converter: Option<RowConverter> = None;
        let mut fold = aggregation.sorted_fold();
        let mut finish_slice = |rows: &RecordBatch| -> Result<Option<RecordBatch>> {
            match &mut fold {
                Some(fold) => fold.slice(rows),
                None => aggregation.new_state().result_of_sorted(rows).map(Some),
            }
        };
        self.sort.finish(|batch| {
            pending_rows += batch.num_rows();
            pending.push(batch);
            if pending_rows < self.merge_rows {
                return Ok(true);
            }
            let all = crate::data::concat(&pending[0].schema(), &pending);
            pending.clear();
            // Rows of the last key may go on in the next batch: they wait for it.
            let converter = match &mut converter {
                Some(converter) => converter,
                None => converter.insert(key_converter(&all, keys)?),
            };
            let cut = last_key_start(converter, &all, keys)?;
            let rest = all.slice(cut, all.num_rows() - cut);
            pending_rows = rest.num_rows();
            pending.push(rest);
            if cut == 0 {
                return Ok(true);
            }
            crate::error::failpoint("spill-merge");
            if let Some(result) = finish_slice(&all.slice(0, cut))? {
                wanted = emit(result)?;
            }
            Ok(wanted)
        })?;
        if wanted && pending_rows > 0 {
            let all = crate::data::concat(&pending[0].schema(), &pending);
            if let Some(result) = finish_slice(&all)? {
                wanted = emit(result)?;
            }
        }
        // The rows a fold held back for a group that might have gone on.
        if let (true, Some(fold)) = (wanted, &mut fold) {
            if let Some(result) = fold.end()? {
                emit(result)?;
            }
        }
        Ok(())
    }

    /// The whole result as one batch (for steps after the aggregation that need all of it).
    pub fn collect(self, schema: &arrow_schema::SchemaRef) -> Result<RecordBatch> {
        let mut parts = Vec::new();
        self.for_each(|batch| {
            parts.push(batch);
            Ok(true)
        })?;
        Ok(crate::data::concat(schema, &parts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transforms::aggregate::AggregateConfig;
    use crate::transforms::compliance::{build, texts};
    use crate::transforms::StageKind;
    use arrow_array::{Float64Array, Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema, SchemaRef};
    use std::sync::Arc;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("user", DataType::Utf8, true),
            Field::new("tier", DataType::Int64, true),
            Field::new("city", DataType::Utf8, true),
            Field::new("amount", DataType::Int64, true),
            Field::new("price", DataType::Float64, true),
        ]))
    }

    /// Morsel `m` of the input: users repeat across morsels, with nulls and Unicode.
    fn morsel(m: usize) -> RecordBatch {
        let rows = 2_000;
        let at = |r: usize| m * rows + r;
        let users: StringArray = (0..rows)
            .map(|r| match at(r) % 97 {
                0 => None,
                _ => Some(format!("ü{}", at(r) * 104_729 % 7_001)),
            })
            .collect();
        let numbers: Int64Array = (0..rows)
            .map(|r| (at(r) % 13 != 0).then_some((at(r) % 3) as i64 - 1))
            .collect();
        let cities: StringArray = (0..rows)
            .map(|r| ["oslo", "tromsø", "", "ålesund"].get(at(r) % 5).copied())
            .collect();
        let amounts: Int64Array = (0..rows)
            .map(|r| (at(r) % 11 != 0).then_some(at(r) as i64 * 1_000_003 % 2_001 - 1_000))
            .collect();
        // Whole numbers: their sums do not depend on the order they are added in.
        let prices: Float64Array = (0..rows).map(|r| Some((at(r) % 17) as f64)).collect();
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(users),
                Arc::new(numbers),
                Arc::new(cities),
                Arc::new(amounts),
                Arc::new(prices),
            ],
        )
        .unwrap()
    }

    const MORSELS: usize = 40;

    fn aggregation(limit: &str) -> (Box<dyn Aggregation>, SchemaRef) {
        let yaml = format!(
            "{{by: [user, tier], memory_limit: {limit}, aggs: {{rows: count(), total: sum(amount), \
             mean: avg(price), low: min(city), high: max(city), cities: count_distinct(city), \
             first_city: first(city), last_amount: last(amount), all: collect_list(city), \
             spent: sum(price), mean_amount: avg(amount), priced: count(price)}}}}"
        );
        let stage = build::<AggregateConfig>(&yaml, &schema()).unwrap_or_else(|e| panic!("{e}"));
        let StageKind::Aggregate(aggregation) = stage.kind else {
            panic!("an aggregate stage")
        };
        (aggregation, stage.output)
    }

    /// Every column of `batch` as text, row by row.
    fn table(batch: &RecordBatch) -> Vec<Vec<String>> {
        let columns: Vec<Vec<String>> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| texts(batch, f.name()))
            .collect();
        (0..batch.num_rows())
            .map(|row| columns.iter().map(|c| c[row].clone()).collect())
            .collect()
    }

    /// The aggregate of every morsel in one state, in input order.
    fn in_memory() -> RecordBatch {
        let (aggregation, _) = aggregation("1GiB");
        let mut state = aggregation.new_state();
        for m in 0..MORSELS {
            state.begin_morsel(m as u64);
            state.update(&morsel(m)).unwrap();
        }
        state.result().unwrap()
    }

    /// Two workers taking morsels in turn, spilling past `limit`.
    fn spilled<'a>(aggregation: &'a dyn Aggregation, merge_rows: usize) -> SpilledGroups<'a> {
        let spill = Spill::new(aggregation, 2);
        let mut workers = [aggregation.new_state(), aggregation.new_state()];
        for m in 0..MORSELS {
            let state = &mut workers[m % 2];
            state.begin_morsel(m as u64);
            state.update(&morsel(m)).unwrap();
            spill.check(state, 0).unwrap();
        }
        assert!(spill.runs() > 2, "only {} runs", spill.runs());
        let state = spill.merge(workers).unwrap();
        match spill.finish(state).unwrap() {
            Aggregated::Spilled(mut groups) => {
                groups.merge_rows = merge_rows;
                groups
            }
            Aggregated::Whole(_) => panic!("nothing was spilled"),
        }
    }

    #[test]
    fn groups_spilled_in_runs_merge_into_the_in_memory_answer() {
        let expected = table(&in_memory());
        assert!(expected.len() > 5_000, "{} groups", expected.len());
        let (aggregation, output) = aggregation("200KiB");
        // Slices of keys smaller than a run's batch, and larger than the whole result.
        for merge_rows in [1_000, 1 << 20] {
            let groups = spilled(aggregation.as_ref(), merge_rows);
            let mut batches = 0;
            let mut parts = Vec::new();
            groups
                .for_each(|batch| {
                    batches += 1;
                    parts.push(batch);
                    Ok(true)
                })
                .unwrap();
            let result = crate::data::concat(&output, &parts);
            assert_eq!(table(&result), expected, "merge_rows {merge_rows}");
            if merge_rows == 1_000 {
                assert!(batches > 5, "{batches} batches");
            }
        }
    }

    /// A `group_count` by `by` over every morsel: in one state, and by two workers spilling
    /// past a small limit (`first`: only the first rows are wanted from them).
    fn group_counts(by: &str, first: Option<usize>) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
        let yaml = format!("{{by: {by}, memory_limit: 64KiB}}");
        let stage = build::<crate::transforms::group_count::GroupCountConfig>(&yaml, &schema())
            .unwrap_or_else(|e| panic!("{e}"));
        let StageKind::Aggregate(aggregation) = stage.kind else {
            panic!("an aggregate stage")
        };
        let mut whole = aggregation.new_state();
        for m in 0..MORSELS {
            whole.update(&morsel(m)).unwrap();
        }
        let merged = spilled(aggregation.as_ref(), 1_000)
            .only_first(first)
            .collect(&stage.output);
        (table(&merged.unwrap()), table(&whole.result().unwrap()))
    }

    #[test]
    fn group_counts_spilled_by_key_come_out_most_frequent_first_as_in_memory() {
        for by in ["user", "[user, tier]"] {
            let (spilled, whole) = group_counts(by, None);
            assert!(whole.len() > 5_000, "{by}: {} groups", whole.len());
            assert_eq!(spilled, whole, "{by}");
            // Most frequent first, which is not the keys' order.
            let count = |row: &Vec<String>| row.last().unwrap().parse::<i64>().unwrap();
            assert!(
                spilled.windows(2).all(|w| count(&w[0]) >= count(&w[1])),
                "{by}"
            );
            assert!(spilled.windows(2).any(|w| w[0][0] > w[1][0]), "{by}");
        }
    }

    #[test]
    fn a_limit_after_spilled_group_counts_takes_their_first_rows() {
        for first in [0, 1, 7, 100] {
            let (merged, whole) = group_counts("user", Some(first));
            // The top-k hands on each of its runs' first rows: the limit after it cuts them.
            assert!(
                merged.len() >= first && merged.len() < whole.len(),
                "{first}"
            );
            assert_eq!(merged[..first], whole[..first], "first {first}");
        }
    }

    #[test]
    fn many_groups_of_several_workers_merge_in_order_in_memory() {
        let expected = table(&in_memory());
        let (aggregation, output) = aggregation("1GiB");
        let mut spill = Spill::new(aggregation.as_ref(), 2);
        spill.in_order_groups = 1_000;
        let mut workers = [aggregation.new_state(), aggregation.new_state()];
        for m in 0..MORSELS {
            let state = &mut workers[m % 2];
            state.begin_morsel(m as u64);
            state.update(&morsel(m)).unwrap();
            assert!(!spill.check(state, 0).unwrap());
        }
        let state = spill.merge(workers).unwrap();
        let Aggregated::Spilled(groups) = spill.finish(state).unwrap() else {
            panic!("merged into one table")
        };
        assert_eq!((groups.runs(), groups.runs_on_disk()), (2, 0));
        assert_eq!(table(&groups.collect(&output).unwrap()), expected);
        // Fewer groups than that: one table, as before.
        let spill = Spill::new(aggregation.as_ref(), 2);
        let mut workers = [aggregation.new_state(), aggregation.new_state()];
        for m in 0..MORSELS {
            workers[m % 2].begin_morsel(m as u64);
            workers[m % 2].update(&morsel(m)).unwrap();
        }
        let state = spill.merge(workers).unwrap();
        let Aggregated::Whole(result) = spill.finish(state).unwrap() else {
            panic!("merged in order")
        };
        assert_eq!(table(&result), expected);
    }

    /// A step whose `count_distinct` a batch run counts by grouping on its value too, as written
    /// and in its batch form; `by` its keys (`""`: none).
    fn counting_distinct(by: &str, limit: &str) -> (Box<dyn Aggregation>, Box<dyn Aggregation>) {
        let yaml = format!(
            "{{{by} memory_limit: {limit}, aggs: {{rows: count(), kinds: count_distinct(amount), \
             total: sum(amount), low: min(city), high: max(city), \
             again: count_distinct(amount), cities: count(city), mean_amount: avg(amount)}}}}"
        );
        let stage = build::<AggregateConfig>(&yaml, &schema()).unwrap_or_else(|e| panic!("{e}"));
        let StageKind::Aggregate(written) = stage.kind else {
            panic!("an aggregate stage")
        };
        let in_batch = written
            .batch_form()
            .expect("counted by grouping on the value");
        assert!(in_batch.groups_distinct_values() && !written.groups_distinct_values());
        (written, in_batch)
    }

    #[test]
    fn distinct_values_beside_float_sums_or_order_are_kept_per_group() {
        // Floats add up to other last digits in another order; `first` follows input order.
        for other in ["sum(price)", "avg(price)", "first(city)"] {
            let yaml = format!("{{by: user, aggs: {{kinds: count_distinct(amount), o: {other}}}}}");
            let stage = build::<AggregateConfig>(&yaml, &schema()).unwrap();
            let StageKind::Aggregate(written) = stage.kind else {
                panic!("an aggregate stage")
            };
            assert!(written.batch_form().is_none(), "{other}");
        }
    }

    #[test]
    fn distinct_values_counted_by_grouping_give_the_answer_of_the_step_as_written() {
        for by in ["by: [user, tier],", "by: city,", ""] {
            let (written, in_batch) = counting_distinct(by, "1GiB");
            let mut state = written.new_state();
            for m in 0..MORSELS {
                state.begin_morsel(m as u64);
                state.update(&morsel(m)).unwrap();
            }
            let expected = table(&state.result().unwrap());
            assert!(!expected.is_empty());
            // One table in memory, two workers merged.
            let mut workers = [in_batch.new_state(), in_batch.new_state()];
            for m in 0..MORSELS {
                workers[m % 2].begin_morsel(m as u64);
                workers[m % 2].update(&morsel(m)).unwrap();
            }
            let [mut one, other] = workers;
            one.merge(other).unwrap();
            assert_eq!(table(&one.result().unwrap()), expected, "{by} in memory");
            // Spilled past the limit, merged in slices smaller than a group, and larger than
            // the result: a group's finer groups from every run, across slices, fold into one.
            let (_, spilling) = counting_distinct(by, "64KiB");
            for merge_rows in [7, 1_000, 1 << 20] {
                let groups = spilled(spilling.as_ref(), merge_rows);
                let folded = groups.collect(&state.result().unwrap().schema()).unwrap();
                assert_eq!(
                    table(&folded),
                    expected,
                    "{by} spilled, slices of {merge_rows}"
                );
            }
        }
    }

    #[test]
    fn a_spilled_run_of_other_columns_is_an_error_not_a_panic() {
        let (aggregation, _) = aggregation("1GiB");
        let mut state = aggregation.new_state();
        state.begin_morsel(0);
        state.update(&morsel(0)).unwrap();
        let run = state.spill_snapshot().unwrap();
        let mut other = aggregation.new_state();
        other.spill_restore(&run).unwrap();
        assert_eq!(
            table(&other.result().unwrap()),
            table(&state.result().unwrap())
        );
        // A run missing its last column, and one with two columns swapped.
        let short = run
            .project(&(0..run.num_columns() - 1).collect::<Vec<_>>())
            .unwrap();
        let mut swapped: Vec<usize> = (0..run.num_columns()).collect();
        swapped.swap(2, 3);
        let swapped = run.project(&swapped).unwrap();
        for damaged in [short, swapped, state.snapshot().unwrap()] {
            let error = aggregation
                .new_state()
                .spill_restore(&damaged)
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("spilled run of the aggregate is damaged"),
                "{error}"
            );
        }
    }

    #[test]
    fn an_error_while_merging_runs_reaches_the_caller() {
        let yaml = "{by: user, memory_limit: 1KiB, aggs: {total: sum(amount)}}";
        let stage = build::<AggregateConfig>(yaml, &schema()).unwrap_or_else(|e| panic!("{e}"));
        let StageKind::Aggregate(aggregation) = stage.kind else {
            panic!("an aggregate stage")
        };
        // Each user's amounts add up past i64 only once the runs are merged.
        let rows = 500;
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(
                    (0..rows)
                        .map(|r| Some(format!("u{r}")))
                        .collect::<StringArray>(),
                ),
                Arc::new(Int64Array::new_null(rows)),
                Arc::new(StringArray::new_null(rows)),
                Arc::new(Int64Array::from(vec![i64::MAX / 3; rows])),
                Arc::new(Float64Array::new_null(rows)),
            ],
        )
        .unwrap();
        let spill = Spill::new(aggregation.as_ref(), 1);
        let mut state = aggregation.new_state();
        for m in 0..4 {
            state.begin_morsel(m);
            state.update(&batch).unwrap();
            assert!(
                spill.check(&mut state, 0).unwrap(),
                "morsel {m} not spilled"
            );
        }
        let Aggregated::Spilled(groups) = spill.finish(state).unwrap() else {
            panic!("nothing was spilled")
        };
        let mut emitted = 0;
        let error = groups
            .for_each(|_| {
                emitted += 1;
                Ok(true)
            })
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("integer overflow in `sum(amount)` for the group user = 'u0':"),
            "{error}"
        );
        assert_eq!(emitted, 0);
    }

    #[test]
    fn merging_stops_when_nothing_more_is_wanted() {
        let (aggregation, _) = aggregation("200KiB");
        let groups = spilled(aggregation.as_ref(), 1_000);
        let mut calls = 0;
        groups
            .for_each(|_| {
                calls += 1;
                Ok(false)
            })
            .unwrap();
        assert_eq!(calls, 1);
    }

    #[test]
    fn states_under_the_limit_stay_in_memory() {
        let (aggregation, _) = aggregation("1GiB");
        let spill = Spill::new(aggregation.as_ref(), 2);
        let mut state = aggregation.new_state();
        state.begin_morsel(0);
        state.update(&morsel(0)).unwrap();
        assert!(!spill.check(&mut state, 0).unwrap());
        assert!(state.rows() > 0);
        let merged = spill.merge([state]).unwrap();
        let Aggregated::Whole(result) = spill.finish(merged).unwrap() else {
            panic!("spilled under the limit")
        };
        assert!(result.num_rows() > 0);
    }
}
