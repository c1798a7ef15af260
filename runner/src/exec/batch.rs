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
use crate::sources::BatchSource;
use crate::transforms::{AggregateState, StageKind};

use super::fused::{Fusion, WordCount, WordCounts, WordHasher};

/// What a finished run did.
#[derive(Debug)]
pub struct RunReport {
    pub rows_out: usize,
    pub elapsed: Duration,
    pub warnings: Vec<String>,
}

/// Runs the pipeline to the end of its input and writes every sink.
pub fn run(pipeline: &mut BuiltPipeline) -> Result<RunReport> {
    let started = Instant::now();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(pipeline.cores)
        .thread_name(|i| format!("runner-worker-{i}"))
        .build()
        .map_err(|e| {
            Error::runtime(format!(
                "cannot start {} worker threads: {e}",
                pipeline.cores
            ))
        })?;
    let (source, stages) = (pipeline.source.as_ref(), pipeline.stages.as_slice());
    let fusion = pipeline.fusion.as_ref();
    let result = pool.install(|| compute(source, stages, fusion))?;
    tracing::info!(
        rows = result.num_rows(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "computed result"
    );
    for sink in &mut pipeline.sinks {
        sink.write(&result, 0)?;
    }
    Ok(RunReport {
        rows_out: result.num_rows(),
        elapsed: started.elapsed(),
        warnings: pipeline.source.warnings(),
    })
}

/// Computes the pipeline's result (on the current rayon pool) without writing sinks.
pub fn compute(
    source: &dyn BatchSource,
    stages: &[BuiltStage],
    fusion: Option<&Fusion>,
) -> Result<RecordBatch> {
    if let Some(fusion) = fusion {
        if let Some(word_count) = WordCount::new(fusion, stages) {
            let result = fused_word_count(source, &word_count)?;
            return finish(result, &stages[fusion.group_count + 1..]);
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

    let through_prefix = |morsel| -> Result<Vec<RecordBatch>> {
        let mut batches = source.decode(morsel)?;
        for stage in prefix {
            if let StageKind::Map(map) = &stage.stage.kind {
                batches = batches
                    .iter()
                    .map(|b| map.apply(b))
                    .collect::<Result<_>>()?;
                batches.retain(|b| b.num_rows() > 0);
            }
        }
        Ok(batches)
    };

    let (result, rest) = match rest.split_first() {
        Some((first, after)) if matches!(first.stage.kind, StageKind::Aggregate(_)) => {
            let StageKind::Aggregate(aggregation) = &first.stage.kind else {
                unreachable!("matched above")
            };
            let state = source
                .open()?
                .par_bridge()
                .try_fold(
                    || aggregation.new_state(),
                    |mut state, morsel| -> Result<Box<dyn AggregateState>> {
                        for batch in through_prefix(morsel?)? {
                            state.update(&batch)?;
                        }
                        Ok(state)
                    },
                )
                .try_reduce(
                    || aggregation.new_state(),
                    |mut left, right| {
                        left.merge(right);
                        Ok(left)
                    },
                )?;
            (state.result(), after)
        }
        _ => {
            let mut pieces: Vec<(usize, Vec<RecordBatch>)> = source
                .open()?
                .enumerate()
                .par_bridge()
                .map(|(position, morsel)| Ok((position, through_prefix(morsel?)?)))
                .collect::<Result<_>>()?;
            pieces.sort_unstable_by_key(|(position, _)| *position);
            let batches: Vec<RecordBatch> = pieces.into_iter().flat_map(|(_, b)| b).collect();
            (concat(&schema_after_prefix, &batches), rest)
        }
    };

    finish(result, rest)
}

/// Runs the stages after the parallel part on the (small) result.
fn finish(mut result: RecordBatch, rest: &[BuiltStage]) -> Result<RecordBatch> {
    for BuiltStage { label, stage } in rest {
        result = match &stage.kind {
            StageKind::Map(map) => map.apply(&result),
            StageKind::Aggregate(aggregation) => {
                let mut state = aggregation.new_state();
                state.update(&result).map(|_| state.result())
            }
            StageKind::Global(global) => global.apply(result),
        }
        .map_err(|e| Error::runtime(format!("{label}: {e}")))?;
    }
    Ok(result)
}

/// The fused loop: bytes of each morsel straight into a per-worker count table. Morsels that
/// are not valid UTF-8 go through the source's decoder first, which applies `encoding_errors`.
fn fused_word_count(source: &dyn BatchSource, word_count: &WordCount) -> Result<RecordBatch> {
    let hasher = WordHasher::default();
    let tokenizer = word_count.tokenizer;
    let counts = source
        .open()?
        .par_bridge()
        .try_fold(
            || (WordCounts::new(hasher.clone()), Vec::new()),
            |(mut counts, mut scratch), morsel| -> Result<(WordCounts, Vec<u8>)> {
                let morsel = morsel?;
                if let Ok(valid) = std::str::from_utf8(&morsel.bytes) {
                    counts.count_text(tokenizer, valid, &mut scratch);
                } else {
                    for batch in source.decode(morsel)? {
                        for line in text(&batch, 0).iter().flatten() {
                            counts.count_text(tokenizer, line, &mut scratch);
                        }
                    }
                }
                Ok((counts, scratch))
            },
        )
        .map(|partial| partial.map(|(counts, _)| counts))
        .try_reduce(|| WordCounts::new(hasher.clone()), |a, b| Ok(a.merge(b)))?;
    Ok(word_count.result(counts))
}
