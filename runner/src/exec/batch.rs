//! The batch executor. Morsels of input are decoded and pushed through the leading per-row
//! stages on a rayon pool of `cores` threads, each feeding a thread-local partial aggregate
//! (or, without an aggregation, keeping its batches tagged with the morsel's position so input
//! order survives). Partials are merged once; the stages after that run on the small result.

use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use rayon::prelude::*;

use super::{BuiltPipeline, BuiltStage};
use crate::data::concat;
use crate::data::text;
use crate::error::{Error, Result};
use crate::events::{Bus, Event};
use crate::sources::BatchSource;
use crate::transforms::StageKind;

use super::fused::{WordCount, WordCounts, WordHasher};
use super::spilled_aggregate::{Aggregated, Spill, SpilledGroups};
use crate::plan::Fusion;

/// What a finished run did.
#[derive(Debug)]
pub struct RunReport {
    /// Rows of the result handed to the sinks.
    pub rows_out: usize,
    /// Wall-clock time of the run, sinks included.
    pub elapsed: Duration,
    /// The source's warnings (bad records, decode errors), one sentence each.
    pub warnings: Vec<String>,
}

/// Runs the pipeline to the end of its input and writes every sink.
pub fn run(pipeline: &mut BuiltPipeline, bus: &Bus) -> Result<RunReport> {
    let outcome = run_to_end(pipeline, bus);
    if outcome.is_err() {
        if let crate::sources::BuiltSource::Batch(source) = &pipeline.source {
            super::tell_warnings_of_failed_run(
                run_warnings(source.as_ref(), &pipeline.stages, &pipeline.sinks),
                bus,
            );
        }
    }
    outcome
}

fn run_to_end(pipeline: &mut BuiltPipeline, bus: &Bus) -> Result<RunReport> {
    let started = Instant::now();
    crate::expr::start_query_time();
    super::spilled_aggregate::keep_to_memory_limits(&pipeline.stages);
    let pool = super::worker_pool(pipeline.cores)?;
    let source = match &pipeline.source {
        crate::sources::BuiltSource::Batch(source) => source.as_ref(),
        crate::sources::BuiltSource::Stream(_) => {
            return Err(Error::runtime(
                "a streaming source cannot run as a batch job",
            ))
        }
    };
    let stages = pipeline.stages.as_slice();
    let fusion = pipeline.plan.fusion.as_ref();
    bus.publish(Event::RunStarted {
        pipeline: pipeline.name.clone(),
        mode: "batch",
        cores: pipeline.cores,
    });
    bus.publish(Event::Planned {
        plan: pipeline.plan.clone(),
    });
    if pipeline.plan.streams_to_sinks {
        // No aggregation or sort: rows reach the sinks as they are produced.
        let cores = pipeline.cores;
        let rows_out = into_sinks(&mut pipeline.sinks, bus, |sinks| {
            crate::error::failpoint("batch-worker");
            super::pipelined::run(source, stages, sinks, cores, bus)
        })?;
        return Ok(finished(
            bus,
            rows_out,
            started,
            run_warnings(source, stages, &pipeline.sinks),
        ));
    }
    let mut computed = pool.install(|| {
        crate::error::failpoint("batch-worker");
        compute(source, stages, fusion)
    })?;
    let result = loop {
        computed = match computed {
            Computed::Whole(result) => break result,
            Computed::Spilled { groups, rest, .. } if super::pipelined::streams(rest) => {
                // The merged groups go through the steps after the aggregation to the sinks as
                // they are merged: the result is never held whole.
                log_merge(&groups);
                let rows_out = into_sinks(&mut pipeline.sinks, bus, |sinks| {
                    let groups = groups.only_first(first_rows(rest));
                    super::pipelined::deliver(|emit| groups.for_each(emit), rest, sinks, bus)
                })?;
                return Ok(finished(
                    bus,
                    rows_out,
                    started,
                    run_warnings(source, stages, &pipeline.sinks),
                ));
            }
            Computed::Spilled { groups, rest, .. } if next_aggregation(rest).is_some() => {
                log_merge(&groups);
                pool.install(|| aggregate_again(*groups, rest))?
            }
            Computed::Spilled {
                groups,
                rest,
                schema,
            } => {
                log_merge(&groups);
                break finish(groups.collect(&schema)?, rest)?;
            }
        };
    };
    tracing::info!(
        rows = result.num_rows(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "computed result"
    );
    if pipeline.sinks.iter().any(|sink| sink.prints_to_terminal()) {
        bus.publish(Event::OutputStarts);
    }
    // On the run's pool: a sink may render a large result on its cores.
    pool.install(|| {
        super::stream::write_sinks(
            &mut pipeline.sinks,
            &result,
            0,
            &crate::events::ResultChange::Replace,
            bus,
        )
    })?;
    Ok(finished(
        bus,
        result.num_rows() as u64,
        started,
        run_warnings(source, stages, &pipeline.sinks),
    ))
}

/// The source's warnings, then the steps', then the sinks'.
fn run_warnings(
    source: &dyn BatchSource,
    stages: &[crate::plan::BuiltStage],
    sinks: &[Box<dyn crate::sinks::Sink>],
) -> Vec<String> {
    let mut warnings = source.warnings();
    warnings.extend(crate::plan::stage_warnings(stages));
    warnings.extend(sinks.iter().flat_map(|sink| sink.warnings()));
    warnings
}

/// Begins every sink, lets `write` hand them rows as they come, and commits them; the rows
/// they were given.
fn into_sinks(
    sinks: &mut [Box<dyn crate::sinks::Sink>],
    bus: &Bus,
    write: impl FnOnce(&mut [Box<dyn crate::sinks::Sink>]) -> Result<u64>,
) -> Result<u64> {
    for sink in sinks.iter_mut() {
        sink.begin(0)?;
    }
    let rows_out = write(sinks)?;
    for (index, sink) in sinks.iter_mut().enumerate() {
        sink.commit()?;
        bus.publish(Event::SinkWrote {
            sink: index,
            epoch: 0,
            rows: rows_out,
        });
    }
    Ok(rows_out)
}

/// The report of a run that ended well, told to the bus too.
fn finished(bus: &Bus, rows_out: u64, started: Instant, warnings: Vec<String>) -> RunReport {
    for message in &warnings {
        bus.publish(Event::Warning {
            message: message.clone(),
        });
    }
    bus.publish(Event::RunFinished {
        rows_in: None,
        rows_out,
        epochs: None,
        seconds: started.elapsed().as_secs_f64(),
        reason: None,
        late_rows: None,
    });
    RunReport {
        rows_out: rows_out as usize,
        elapsed: started.elapsed(),
        warnings,
    }
}

/// Says how an aggregation's groups are merged in order.
fn log_merge(groups: &super::spilled_aggregate::SpilledGroups) {
    match groups.runs_on_disk() {
        0 => tracing::info!(
            runs = groups.runs(),
            "aggregate merging sorted runs in memory"
        ),
        _ => tracing::info!(runs = groups.runs(), "aggregate spilled to disk; merging"),
    }
}

/// What a batch pipeline computed, before its sinks.
pub(crate) enum Computed<'a> {
    /// The result.
    Whole(RecordBatch),
    /// An aggregation spilled to disk: its groups, merged as they are read, go through the
    /// steps after it (`rest`); `schema` is the aggregation's output.
    Spilled {
        groups: Box<SpilledGroups<'a>>,
        rest: &'a [BuiltStage],
        schema: arrow_schema::SchemaRef,
    },
}

/// The steps after an aggregation run on its result, unless it was spilled.
fn after_aggregation<'a>(
    aggregated: Aggregated<'a>,
    aggregation: &BuiltStage,
    rest: &'a [BuiltStage],
) -> Result<Computed<'a>> {
    Ok(match aggregated {
        Aggregated::Whole(result) => Computed::Whole(finish(result, rest)?),
        Aggregated::Spilled(groups) => Computed::Spilled {
            groups: Box::new(groups),
            rest,
            schema: aggregation.stage.output.clone(),
        },
    })
}

/// The first aggregation of `stages` when only row-wise steps, sorts and limits come before
/// it: those steps can stream their rows into it.
fn next_aggregation(stages: &[BuiltStage]) -> Option<usize> {
    let at = stages
        .iter()
        .position(|s| matches!(s.stage.kind, StageKind::Aggregate(_)))?;
    super::pipelined::streams(&stages[..at]).then_some(at)
}

/// Another aggregation after a spilled one: the first's groups, merged from their runs a
/// slice at a time, go through the steps between (row-wise steps, sorts in their own bounded
/// memory, limits) into it, so the first's result is never held whole.
fn aggregate_again<'a>(groups: SpilledGroups<'a>, rest: &'a [BuiltStage]) -> Result<Computed<'a>> {
    let at = next_aggregation(rest)
        .ok_or_else(|| Error::runtime("no aggregation follows the spilled one"))?;
    let groups = groups.only_first(first_rows(rest));
    let aggregated = aggregate_as_it_comes(&rest[at], |take| {
        super::pipelined::deliver_into(|emit| groups.for_each(emit), &rest[..at], take)
    })?;
    after_aggregation(aggregated, &rest[at], &rest[at + 1..])
}

/// Aggregates the batches `feed` hands to the function it is given, in order, on this
/// thread: the aggregation keeps to its own memory limit, spilling in turn.
fn aggregate_as_it_comes<'a>(
    aggregating: &'a BuiltStage,
    feed: impl FnOnce(&mut dyn FnMut(RecordBatch) -> Result<bool>) -> Result<()>,
) -> Result<Aggregated<'a>> {
    let StageKind::Aggregate(aggregation) = &aggregating.stage.kind else {
        return Err(Error::runtime("the rows were to go into an aggregation"));
    };
    let spill = Spill::new(aggregation.as_ref(), 1);
    let mut state = aggregation.new_state();
    // Each batch as a morsel of its own, in order: `first` and `last` follow the rows' order.
    let mut order = 0;
    feed(&mut |batch| {
        state.begin_morsel(order);
        order += 1;
        state.update(&batch).map_err(|e| aggregating.failed(e))?;
        if let Some(full) = spill.take_full(&mut state, 0) {
            spill.write_full(full).map_err(|e| aggregating.failed(e))?;
        }
        Ok(true)
    })?;
    spill.finish(state).map_err(|e| aggregating.failed(e))
}

/// Where the first aggregation is when only row-wise steps, sorts and limits come before it,
/// a sort or a limit among them: the rows stream into it (`aggregate_streamed`).
pub(crate) fn streams_into_aggregation(stages: &[BuiltStage]) -> Option<usize> {
    let at = next_aggregation(stages)?;
    stages[..at]
        .iter()
        .any(|s| matches!(s.stage.kind, StageKind::Global(_)))
        .then_some(at)
}

/// An aggregation after a sort or a limit: the rows of the steps before it stream into it
/// in input order (`pipelined`: a sort in bounded memory, a limit reached stops the reading),
/// on this thread, where it keeps to its memory limit, spilling as after the source.
fn aggregate_streamed<'a>(
    source: &dyn BatchSource,
    stages: &'a [BuiltStage],
) -> Result<Computed<'a>> {
    let at = streams_into_aggregation(stages)
        .ok_or_else(|| Error::runtime("no aggregation takes the streamed rows"))?;
    let aggregated = aggregate_as_it_comes(&stages[at], |take| {
        super::pipelined::run_into(source, &stages[..at], rayon::current_num_threads(), take)
    })?;
    after_aggregation(aggregated, &stages[at], &stages[at + 1..])
}

/// Computes the pipeline's result (on the current rayon pool) without writing sinks. The
/// aggregation's own errors name its step in the pipeline file.
pub(crate) fn compute<'a>(
    source: &dyn BatchSource,
    stages: &'a [BuiltStage],
    fusion: Option<&Fusion>,
) -> Result<Computed<'a>> {
    let aggregation = stages
        .iter()
        .find(|s| matches!(s.stage.kind, StageKind::Aggregate(_)));
    compute_unlocated(source, stages, fusion).map_err(|e| match aggregation {
        Some(step) => step.locate(e),
        None => e,
    })
}

fn compute_unlocated<'a>(
    source: &dyn BatchSource,
    stages: &'a [BuiltStage],
    fusion: Option<&Fusion>,
) -> Result<Computed<'a>> {
    if let Some(fusion) = fusion {
        if let Some(word_count) = WordCount::new(fusion, stages) {
            let aggregated = fused_word_count(source, &word_count)?;
            return after_aggregation(
                aggregated,
                &stages[fusion.count],
                &stages[fusion.count + 1..],
            );
        }
        if let Some(kernel) = super::csv_aggregate::CsvAggregate::new(fusion, source, stages) {
            let aggregated = kernel.run(source)?;
            return after_aggregation(
                aggregated,
                &stages[fusion.count],
                &stages[fusion.count + 1..],
            );
        }
    }
    let parallel = stages
        .iter()
        .take_while(|s| matches!(s.stage.kind, StageKind::Map(_)))
        .count();
    let (prefix, rest) = stages.split_at(parallel);
    let schema_after_prefix = prefix
        .last()
        .map_or_else(|| source.schema(), |s| s.stage.output.clone());

    let through_prefix = |morsel| decode_through(source, prefix, morsel);

    let (result, rest) = match rest.split_first() {
        Some((first, after)) if matches!(first.stage.kind, StageKind::Aggregate(_)) => {
            let StageKind::Aggregate(aggregation) = &first.stage.kind else {
                unreachable!("matched above")
            };
            let states = PerWorker::new();
            let spill = Spill::new(aggregation.as_ref(), rayon::current_num_threads());
            source
                .open()?
                .into_par_iter()
                .try_for_each(|(index, morsel)| -> Result<()> {
                    let morsel = morsel?;
                    let full = states.with(
                        || aggregation.new_state(),
                        |state| -> Result<_> {
                            state.begin_morsel(index as u64);
                            for_each_through(source, prefix, morsel, |batch| state.update(batch))?;
                            Ok(spill.take_full(state, 0))
                        },
                    )?;
                    // Written with the worker's lock let go (see `Spill::take_full`).
                    match full {
                        Some(full) => spill.write_full(full),
                        None => Ok(()),
                    }
                })?;
            let mut state = spill.merge(states.into_iter())?;
            // Rows a plugin's `finish` returns come after every morsel's.
            state.begin_morsel(u64::MAX);
            for batch in finished_batches(prefix)? {
                state.update(&batch)?;
            }
            return after_aggregation(spill.finish(state)?, first, after);
        }
        _ if streams_into_aggregation(stages).is_some() => {
            return aggregate_streamed(source, stages);
        }
        _ => {
            let mut pieces: Vec<(usize, Vec<RecordBatch>)> = source
                .open()?
                .into_par_iter()
                .map(|(position, morsel)| Ok((position, through_prefix(morsel?)?)))
                .collect::<Result<_>>()?;
            pieces.sort_unstable_by_key(|(position, _)| *position);
            let mut batches: Vec<RecordBatch> = pieces.into_iter().flat_map(|(_, b)| b).collect();
            batches.extend(finished_batches(prefix)?);
            (concat(&schema_after_prefix, &batches), rest)
        }
    };

    Ok(Computed::Whole(finish(result, rest)?))
}

/// A morsel decoded into batches and run through the leading row-wise stages (on a worker);
/// a stage's error names the stage.
pub(crate) fn decode_through(
    source: &dyn BatchSource,
    prefix: &[BuiltStage],
    morsel: crate::sources::Morsel,
) -> Result<Vec<RecordBatch>> {
    let mut batches = Vec::new();
    decode_through_each(source, prefix, morsel, &mut |batch| {
        batches.push(batch);
        Ok(())
    })?;
    Ok(batches)
}

/// [`decode_through`], each non-empty batch handed to `emit` as it is made.
pub(crate) fn decode_through_each(
    source: &dyn BatchSource,
    prefix: &[BuiltStage],
    morsel: crate::sources::Morsel,
    emit: &mut dyn FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    source.decode_each(morsel, &mut |mut batch| {
        for stage in prefix {
            if let StageKind::Map(map) = &stage.stage.kind {
                batch = map.apply(&batch).map_err(|e| stage.failed(e))?;
            }
            if batch.num_rows() == 0 {
                return Ok(());
            }
        }
        emit(batch)
    })
}

/// Rows a chunk of a morsel holds while it goes through the row-wise stages: small enough
/// that every stage's output stays in the core's cache for the next one (a whole 1 MiB morsel
/// of lines becomes several MiB of words and offsets, read back from memory by each stage).
/// Measured on the romeo ×1000 word count without fusion, 2 cores: 1024 rows 0.44 s, 2048
/// 0.42 s, 4096 0.58 s, whole morsels 0.85 s.
const CHUNK_ROWS: usize = 2048;

/// A morsel decoded and run through the leading row-wise stages a cache-sized chunk at a time,
/// each chunk through every stage before the next chunk; `consume` gets the non-empty results
/// in input order. A stage's error names the stage.
pub(crate) fn for_each_through(
    source: &dyn BatchSource,
    prefix: &[BuiltStage],
    morsel: crate::sources::Morsel,
    mut consume: impl FnMut(&RecordBatch) -> Result<()>,
) -> Result<()> {
    source.decode_each(morsel, &mut |batch| {
        let mut start = 0;
        while start < batch.num_rows() {
            let len = CHUNK_ROWS.min(batch.num_rows() - start);
            let mut chunk = batch.slice(start, len);
            start += len;
            for stage in prefix {
                if let StageKind::Map(map) = &stage.stage.kind {
                    chunk = map.apply(&chunk).map_err(|e| stage.failed(e))?;
                }
                if chunk.num_rows() == 0 {
                    break;
                }
            }
            if chunk.num_rows() > 0 {
                consume(&chunk)?;
            }
        }
        Ok(())
    })
}

/// After the input: the last batches of stateful row-wise stages (their `finish`), each sent
/// through the row-wise stages after it.
pub(crate) fn finished_batches(prefix: &[BuiltStage]) -> Result<Vec<RecordBatch>> {
    let mut out = Vec::new();
    for (i, stage) in prefix.iter().enumerate() {
        let StageKind::Map(map) = &stage.stage.kind else {
            continue;
        };
        let Some(mut batch) = map.finish().map_err(|e| stage.failed(e))? else {
            continue;
        };
        for later in &prefix[i + 1..] {
            if let StageKind::Map(map) = &later.stage.kind {
                batch = map.apply(&batch).map_err(|e| later.failed(e))?;
            }
        }
        out.push(batch);
    }
    Ok(out)
}

/// Runs the stages after the parallel part on the (small) result, the whole input of each:
/// a row-wise stage's own last batch (its `finish`) follows its output, wherever it stands.
pub(crate) fn finish(result: RecordBatch, rest: &[BuiltStage]) -> Result<RecordBatch> {
    run_after_aggregation(result, rest, true)
}

/// The rows a `limit` first in `stages` takes.
fn first_rows(stages: &[BuiltStage]) -> Option<usize> {
    match &stages.first()?.stage.kind {
        StageKind::Global(global) => global.first_rows(),
        _ => None,
    }
}

/// The stages after the parallel part; `last_input` says the result is the last they see (a
/// batch run), so row-wise stages' `finish` runs. A stream's epochs are not.
pub(crate) fn run_after_aggregation(
    mut result: RecordBatch,
    rest: &[BuiltStage],
    last_input: bool,
) -> Result<RecordBatch> {
    for (i, built) in rest.iter().enumerate() {
        let stage = &built.stage;
        let first_rows = first_rows(&rest[i + 1..]);
        result = match &stage.kind {
            StageKind::Map(map) if last_input => map.apply(&result).and_then(|out| {
                Ok(match map.finish()? {
                    Some(last) => crate::data::concat(&stage.output, &[out, last]),
                    None => out,
                })
            }),
            StageKind::Map(map) => map.apply(&result),
            StageKind::Aggregate(aggregation) => {
                let mut state = aggregation.new_state();
                state.update(&result).and_then(|_| state.result())
            }
            StageKind::Global(global) => match first_rows {
                Some(rows) => global.apply_first(result, rows),
                None => global.apply(result),
            },
        }
        .map_err(|e| built.failed(e))?;
    }
    Ok(result)
}

/// The fused loop: bytes of each morsel straight into a per-worker count table. Morsels that
/// are not valid UTF-8 go through the source's decoder first, which applies `encoding_errors`.
/// A table that outgrows the worker's share of the count's memory limit is written out as a
/// sorted run, and the worker starts an empty one.
fn fused_word_count<'a>(
    source: &dyn BatchSource,
    word_count: &WordCount<'a>,
) -> Result<Aggregated<'a>> {
    let hasher = WordHasher::default();
    let tokenizer = word_count.tokenizer;
    let tables = PerWorker::new();
    let spill = Spill::new(word_count.aggregation, rayon::current_num_threads());
    let new_counts = || match spill.share() {
        Some(share) => WordCounts::new(hasher.clone()).keep_within(share),
        None => WordCounts::new(hasher.clone()),
    };
    let new_table = || (new_counts(), Vec::new());
    source
        .open()?
        .into_par_iter()
        .try_for_each(|(_, morsel)| -> Result<()> {
            let morsel = morsel?;
            // A full table is taken out under the worker's lock and written after it is let
            // go: writing sorts on the pool, which may hand this thread a morsel whose worker
            // waits for the same lock (a deadlock with 3 or more threads).
            let take_if_full = |counts: &mut WordCounts| {
                (spill.exceeded(counts.memory_bytes()) || counts.is_full())
                    .then(|| std::mem::replace(counts, new_counts()))
            };
            // SIMD validation: several times faster than `std::str::from_utf8` on text.
            let full = if let Ok(valid) = simdutf8::basic::from_utf8(&morsel.bytes) {
                let full = tables.with(new_table, |(counts, scratch)| {
                    super::fused::count_text(counts, tokenizer, valid, scratch);
                    take_if_full(counts)
                });
                source.recycle(morsel.bytes);
                full
            } else {
                let batches = source.decode(morsel)?;
                tables.with(new_table, |(counts, scratch)| {
                    for batch in &batches {
                        for line in text(batch, 0).iter().flatten() {
                            super::fused::count_text(counts, tokenizer, line, scratch);
                        }
                    }
                    take_if_full(counts)
                })
            };
            if let Some(full) = full {
                spill.write_snapshot(word_count.sorted_run(full)?)?;
            }
            Ok(())
        })?;
    let tables: Vec<WordCounts> = tables.into_iter().map(|(counts, _)| counts).collect();
    if spill.runs() == 0 {
        return Ok(Aggregated::Whole(word_count.result(tables)?));
    }
    for table in tables {
        spill.write_snapshot(word_count.sorted_run(table)?)?;
    }
    spill.finish(word_count.aggregation.new_state())
}

/// One accumulator per worker thread. rayon's `fold` makes one per split of the work, which
/// can be many more than threads; with large aggregation tables that multiplies memory.
pub(super) struct PerWorker<T> {
    slots: Vec<Padded<std::sync::Mutex<Option<T>>>>,
}

/// Keeps each worker's accumulator on its own cache lines: a hash table's header is read on
/// every lookup, and two headers sharing a line would bounce it between cores.
#[repr(align(128))]
struct Padded<T>(T);

impl<T> PerWorker<T> {
    /// Slots for the threads of the current rayon pool.
    pub(super) fn new() -> Self {
        PerWorker {
            slots: (0..rayon::current_num_threads())
                .map(|_| Padded(std::sync::Mutex::new(None)))
                .collect(),
        }
    }

    /// Runs `f` on this thread's accumulator, creating it with `init` on first use. Each slot
    /// is only ever locked by its own thread, so the lock is never contended.
    pub(super) fn with<R>(&self, init: impl FnOnce() -> T, f: impl FnOnce(&mut T) -> R) -> R {
        let index = rayon::current_thread_index().unwrap_or(0) % self.slots.len();
        let mut slot = self.slots[index]
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(slot.get_or_insert_with(init))
    }

    pub(super) fn into_iter(self) -> impl Iterator<Item = T> {
        self.slots
            .into_iter()
            .filter_map(|slot| slot.0.into_inner().unwrap_or_else(|p| p.into_inner()))
    }
}
