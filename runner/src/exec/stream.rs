//! The streaming executor: triggered micro-batches, as in Spark Structured Streaming.
//!
//! The source runs as tokio tasks pushing chunks of whole lines into a bounded channel (when
//! the engine falls behind, the source simply stops reading: backpressure, not buffering).
//! On each trigger the engine drains the channel, runs the transform chain over the new rows
//! (the aggregation's state persists across epochs), and hands every sink the epoch's result
//! according to the output mode. Epoch ids start at 0; an epoch with no new rows does not fire
//! unless `emit_empty` is set.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use rayon::prelude::*;

use super::checkpoint::{Checkpoint, EpochEnd};
use super::{BuiltPipeline, BuiltStage};
use crate::config::OutputMode;
use crate::data::{concat, BATCH_ROWS};
use crate::error::{Error, Result};
use crate::events::{Bus, EpochProgress, Event, ResultBatch, ResultChange};
use crate::sources::{BuiltSource, Chunk, Delivery, SourcePosition, StreamSource};
use crate::transforms::{
    rows_with_keys, AggregateState, Emit, EventTimeProgress, StageKind, TextSplit,
};

/// When epochs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The next epoch as soon as the previous one ends and new rows are there.
    Continuous,
    /// One epoch per interval, aligned to multiples of the interval since the start.
    ProcessingTime(Duration),
    /// Everything the source produces until it ends, then stop.
    AvailableNow,
}

/// The stream settings of a validated pipeline.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// When epochs run (`trigger:`; continuous when omitted).
    pub trigger: Trigger,
    /// What sinks receive each epoch, resolved: `output_mode:`, else `complete` with an aggregation
    /// and `append` without.
    pub output_mode: OutputMode,
    /// Stop this long after the start (`stop_after:`); `None` runs until the source ends or a
    /// signal.
    pub stop_after: Option<Duration>,
    /// Stop after this many epochs (`max_epochs:`); `None` for no limit.
    pub max_epochs: Option<u64>,
    /// Whether an epoch runs even when no new rows arrived (`emit_empty:`).
    pub emit_empty: bool,
    /// Where and how often to save the stream's progress; `None` without `checkpoint:`.
    pub checkpoint: Option<CheckpointSettings>,
}

/// `checkpoint:` with its directory resolved and the pipeline's identity.
#[derive(Debug, Clone)]
pub struct CheckpointSettings {
    /// The checkpoint directory, resolved against the pipeline file's directory.
    pub dir: std::path::PathBuf,
    /// Save after every this many epochs (and always when the stream stops).
    pub every: std::num::NonZeroU64,
    /// What a saved checkpoint must match to be continued.
    pub identity: super::checkpoint::Identity,
    /// The stream's id, set once the checkpoint is locked; the sinks' ledgers record it.
    pub stream_id: crate::sinks::StreamId,
    /// How long to wait for another stream to let go of the checkpoint (`--wait`).
    pub lock_wait: Option<std::time::Duration>,
}

pub use crate::events::Progress;

/// What a finished stream did.
#[derive(Debug)]
pub struct StreamReport {
    /// Epochs this run made (a resumed stream counts only its own).
    pub epochs: u64,
    /// Input rows this run took, summed over epochs.
    pub rows_in: u64,
    /// Rows handed to the sinks, summed over epochs.
    pub rows_out: u64,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
    /// The run's warnings (the source's, late or unplaced rows), one sentence each.
    pub warnings: Vec<String>,
    /// What the source read, in a line.
    pub source_summary: Option<String>,
    /// Why it stopped, for the log.
    pub reason: &'static str,
}

/// Chunks (of up to 64 KiB) the channel holds: the most input buffered between the source
/// and the engine, whatever the source sends.
const CHANNEL_CHUNKS: usize = 64;
/// The most input a continuous or available-now epoch takes (but a stream of files' epochs,
/// which end where the source marks them), and the most appended rows an epoch buffers before
/// the source is held back.
const EPOCH_MAX_BYTES: usize = 32 << 20;

/// Runs the stream until the source ends, `stop_after`, `max_epochs`, or SIGINT/SIGTERM.
pub fn run(pipeline: &mut BuiltPipeline, bus: &Bus) -> Result<StreamReport> {
    crate::expr::start_query_time();
    let settings = pipeline
        .stream
        .clone()
        .ok_or_else(|| Error::runtime("this pipeline is not a stream"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("runner-io")
        .enable_all()
        .build()
        .map_err(|e| Error::runtime(format!("cannot start the I/O runtime: {e}")))?;
    let pool = super::worker_pool(pipeline.cores)?;
    let report = runtime.block_on(run_epochs(pipeline, &settings, &pool, bus));
    if report.is_err() {
        if let crate::sources::BuiltSource::Stream(source) = &pipeline.source {
            let mut warnings = source.warnings();
            warnings.extend(crate::plan::stage_warnings(&pipeline.stages));
            warnings.extend(pipeline.sinks.iter().flat_map(|sink| sink.warnings()));
            super::tell_warnings_of_failed_run(warnings, bus);
        }
    }
    // A source's blocking read can outlive the stream (a tape that is a FIFO no one writes
    // to): dropping the runtime would wait for it, past SIGTERM and a second Ctrl-C.
    runtime.shutdown_timeout(SHUTDOWN_WAIT);
    report
}

/// How long a stopped stream waits for its sources' blocking reads and writes to end.
const SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The next delivery of `signal`; never, for a signal that could not be watched.
async fn next_signal(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

/// SIGINT/SIGTERM set the flag (finish the epoch, flush, exit 0); a second SIGINT exits now.
/// Both are watched from the call on, before the source starts.
fn watch_signals(stop: Arc<AtomicBool>, wake: Arc<tokio::sync::Notify>) {
    let watch = |kind: tokio::signal::unix::SignalKind, name: &str| {
        tokio::signal::unix::signal(kind)
            .map_err(|e| tracing::warn!("cannot watch {name}: {e}"))
            .ok()
    };
    let mut interrupt = watch(tokio::signal::unix::SignalKind::interrupt(), "SIGINT");
    let mut terminate = watch(tokio::signal::unix::SignalKind::terminate(), "SIGTERM");
    tokio::spawn(async move {
        loop {
            let interrupted = tokio::select! {
                Some(()) = next_signal(&mut interrupt) => true,
                Some(()) = next_signal(&mut terminate) => false,
            };
            if interrupted && stop.load(Ordering::SeqCst) {
                tracing::error!("interrupted again: exiting without finishing the epoch");
                std::process::exit(130);
            }
            tracing::info!("stopping: finishing the current epoch");
            stop.store(true, Ordering::SeqCst);
            crate::cancel::request();
            wake.notify_one();
        }
    });
}

async fn run_epochs(
    pipeline: &mut BuiltPipeline,
    settings: &StreamSettings,
    pool: &rayon::ThreadPool,
    bus: &Bus,
) -> Result<StreamReport> {
    let BuiltSource::Stream(source) = &pipeline.source else {
        return Err(Error::runtime("a batch source cannot run as a stream"));
    };
    let source: &dyn StreamSource = source.as_ref();
    let started = Instant::now();
    let deadline = settings.stop_after.and_then(|d| started.checked_add(d));
    let stop = Arc::new(AtomicBool::new(false));
    let wake = Arc::new(tokio::sync::Notify::new());
    watch_signals(stop.clone(), wake.clone());
    if !pipeline.sinks.is_empty() && pipeline.sinks.iter().all(|s| s.closes_with_stdout()) {
        let wake = wake.clone();
        crate::io::console::watch_stdout_reader(move || wake.notify_one());
    }

    let name = pipeline.name.clone();
    bus.publish(Event::RunStarted {
        pipeline: name.clone(),
        mode: "stream",
        cores: pipeline.cores,
    });
    bus.publish(Event::Planned {
        plan: pipeline.plan.clone(),
    });

    let engine = Engine::new(
        &pipeline.stages,
        pipeline.plan.fusion.as_ref(),
        source,
        settings.output_mode,
    );
    let aggregation = engine.aggregation;
    let mut state = aggregation.map(|a| a.new_state());
    if let Some(event_time) = state.as_mut().and_then(|s| s.event_time()) {
        event_time.start_stream(match settings.output_mode {
            OutputMode::Complete => Emit::All,
            OutputMode::Update => Emit::Changed,
            OutputMode::Append => Emit::Final,
        });
    }

    let positioned = source.positioned();
    let mut checkpoint = settings
        .checkpoint
        .as_ref()
        .map(|c| Checkpoint::new(c.dir.clone(), c.every, &name, c.identity.clone()));
    if let (Some(checkpoint), Some(c)) = (checkpoint.as_mut(), settings.checkpoint.as_ref()) {
        let id = checkpoint.lock(c.lock_wait)?;
        let _ = c.stream_id.set(id);
    }
    let ResumePoint {
        mut position,
        mut redo,
        mut committed,
        rows_before,
        next_epoch,
    } = resume(checkpoint.as_mut(), state.as_mut(), positioned, bus)?;
    // The late rows earlier runs counted (a checkpoint carries the total): this run's summary
    // and warning tell its own, as its rows and epochs are its own.
    let late_before = state
        .as_mut()
        .and_then(|s| s.event_time())
        .map_or(0, |e| e.progress().late_rows_total);
    let mut out = Emitter {
        sinks: &mut pipeline.sinks,
        bus,
        change: engine.change.clone(),
        epoch: next_epoch,
        ran: 0,
        rows_out: 0,
        previous_fire: started,
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Delivery>(CHANNEL_CHUNKS);
    let redo_until = redo.back().map(|e| e.end.clone()).filter(|_| positioned);
    let mut reader = Some(source.start(tx, position.clone().filter(|_| positioned), redo_until));
    let processing_time = match settings.trigger {
        Trigger::ProcessingTime(interval) => Some(interval),
        _ => None,
    };

    let mut rows_in = 0u64;
    let mut source_ended = false;
    // A source that says where epochs end (files) is followed, not the pauses in its input;
    // it also says when it has nothing more for now.
    let marked = source.marks_epochs();
    let mut caught_up = false;
    let mut next_fire = started;
    // Whether the last epoch was started by the processing-time trigger (not by the source
    // ending, a stop, or a moved watermark): only such an epoch can fall behind its schedule.
    let mut last_on_schedule = false;
    // The stream stopped within an epoch's files, leaving it undone (see `left_undone`).
    let mut stopped_undone = false;
    // Where the last epoch redone ended: a stop right after it (nothing taken since) is a
    // commit point, so a stream stopped by `max_epochs` while redoing moves on next time.
    let mut redone_end: Option<u64> = None;
    let reason;
    loop {
        // Rows are processed as they arrive (so memory stays bounded and the source is never
        // held back waiting for a trigger); the trigger decides when sinks see a result.
        let mut pending = Pending::new(aggregation, settings.output_mode);
        let mut chunks: Vec<Chunk> = Vec::new();
        let mut bytes = 0usize;
        // A recorded epoch being redone takes exactly its recorded input, then fires.
        let redo_target = redo.front().map(|e| (e.epoch, e.end.offset));
        let mut received_at = position.clone();
        let mut redo_reached =
            redo_target.is_some_and(|(_, end)| position.as_ref().is_some_and(|p| p.offset >= end));
        // The watermark moved past windows: an epoch is due even without rows (Spark's
        // no-data batch), unless rows are waiting to go into it.
        let wants_epoch = epoch_wanted(state.as_mut());
        let mut on_schedule = false;
        // A processing-time trigger over a source that marks epochs (files): the epoch's input
        // stops at the source's mark and waits for the trigger, as Spark takes at most
        // `maxFilesPerTrigger` files per trigger even with a backlog.
        let hold_at_marks = processing_time.is_some() && redo_target.is_none();
        let mut held = false;
        // The trigger fired while the source was between marks (within the files of an
        // epoch, or not yet started at a restart): the epoch waits for the mark, or for the
        // source to say it has nothing more, so that it takes whole files as Spark's batches
        // do (a restart's first trigger would otherwise run an epoch without its files).
        let mut due = false;
        // A stop (signal, `stop_after`) came while the epoch was within its files, and a
        // checkpoint will have the next run take them again: the epoch is left undone rather
        // than cut (a cut epoch moves the watermark mid-file, and a restart would then give
        // other windows than an uninterrupted run).
        let mut left_undone = false;
        if processing_time.is_some() && last_on_schedule && next_fire <= Instant::now() {
            tracing::warn!(
                "falling behind: epoch {} ended after the next trigger time",
                out.epoch - 1
            );
        }
        loop {
            let idle = !marked || caught_up || source_ended;
            if wants_epoch
                && processing_time.is_none()
                && redo_target.is_none()
                && idle
                && rx.is_empty()
                && chunks.is_empty()
            {
                break;
            }
            let deadline_sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            let fire = async {
                match processing_time {
                    Some(_) if redo_target.is_none() => {
                        tokio::time::sleep_until(next_fire.into()).await
                    }
                    _ => std::future::pending().await,
                }
            };
            let mut marked_end = false;
            // Appended rows wait for the trigger in memory: past a bound, stop reading.
            let room = pending.buffered_bytes < EPOCH_MAX_BYTES || redo_target.is_some();
            let between_marks = hold_at_marks && marked && !held && !caught_up && room;
            let fired = redo_reached
                || (due && !between_marks)
                || tokio::select! {
                    delivery = rx.recv(), if !source_ended && room && !held => {
                        match delivery {
                            Some(delivery) => {
                                bytes += delivery.chunk.len();
                                // A source's word that nothing is new (no bytes, no place)
                                // leaves nothing to absorb: an epoch the watermark calls for
                                // may then run at once.
                                if !delivery.chunk.is_empty() || delivery.resume_at.is_some() {
                                    chunks.push(delivery.chunk);
                                }
                                if delivery.resume_at.is_some() {
                                    received_at = delivery.resume_at;
                                }
                                redo_reached = redo_target.is_some_and(|(_, end)| {
                                    received_at.as_ref().is_some_and(|p| p.offset >= end)
                                });
                                caught_up = delivery.caught_up;
                                marked_end = delivery.ends_epoch;
                                held = marked_end && hold_at_marks;
                            }
                            None => source_ended = true,
                        }
                        // A redone epoch ends at its recorded end alone.
                        redo_reached
                            || (marked_end && !held && redo_target.is_none())
                            || (due && (held || caught_up))
                    }
                    _ = fire, if !due => {
                        on_schedule = true;
                        due = between_marks;
                        !due
                    }
                    _ = wake.notified() => true,
                    _ = deadline_sleep => true,
                };
            let stopping = stop.load(Ordering::SeqCst);
            let quiet =
                processing_time.is_none() && rx.is_empty() && redo_target.is_none() && !marked;
            let take = bytes >= PROCESS_BYTES || fired || source_ended || quiet || stopping || held;
            if !chunks.is_empty() && take {
                let batch = std::mem::take(&mut chunks);
                pending.bytes += bytes;
                bus.publish(Event::InputRead {
                    bytes: bytes as u64,
                });
                bytes = 0;
                let absorbing = Instant::now();
                if engine.fused_split().is_some() {
                    // One sequential loop: run it here, on the thread that owns the state,
                    // rather than pay a hand-over to a worker (and its colder cache).
                    engine.absorb(&batch, state.as_mut(), &mut pending)?;
                } else {
                    pool.install(|| engine.absorb(&batch, state.as_mut(), &mut pending))?;
                }
                pending.busy += absorbing.elapsed();
                position = received_at.clone();
                if crate::error::stop_in_epoch(out.epoch) {
                    stop.store(true, Ordering::SeqCst);
                }
            }
            let stop_asked =
                stop.load(Ordering::SeqCst) || deadline.is_some_and(|d| Instant::now() >= d);
            let within_files = marked
                && redo_target.is_none()
                && !held
                && !marked_end
                && !caught_up
                && !source_ended
                && (pending.bytes > 0 || !chunks.is_empty());
            if stop_asked && within_files && checkpoint.is_some() {
                left_undone = true;
                break;
            }
            if fired || source_ended || stopping {
                break;
            }
            // Continuous and available-now triggers: an epoch as soon as the data there is in,
            // or once it has taken a bounded amount of input (a source that never pauses would
            // otherwise keep one epoch open for ever). A stream of files ends its epochs where
            // the source marks them (whole files, as Spark's batches take them), so only rows
            // held for the sinks bound it.
            let full = (!marked && pending.bytes >= EPOCH_MAX_BYTES)
                || pending.buffered_bytes >= EPOCH_MAX_BYTES;
            let free_running = processing_time.is_none() && redo_target.is_none();
            if free_running && (pending.rows > 0 && quiet || full) {
                break;
            }
            // A processing-time epoch that holds as many rows for the sinks as it may fires
            // now rather than hold the source back until its time: its pace would otherwise
            // be the bound per interval (Spark's next batch, too, starts at once when one is
            // late).
            if processing_time.is_some()
                && redo_target.is_none()
                && pending.buffered_bytes >= EPOCH_MAX_BYTES
            {
                break;
            }
        }
        let fired_at = Instant::now();
        // The epoch's rows are transformed from here: `now()` is this time, as Spark's batch
        // timestamp.
        crate::expr::start_query_time();
        // How late the trigger fired against its schedule (processing-time triggers).
        let delay = processing_time.map(|_| fired_at.saturating_duration_since(next_fire));
        if let Some(interval) = processing_time {
            // The next boundary after now: aligned to the start, skipping missed ones.
            let periods = (fired_at - started).as_nanos() / interval.as_nanos().max(1) + 1;
            next_fire = started + interval.mul_f64(periods as f64);
        }
        let stopping = stop.load(Ordering::SeqCst) || deadline.is_some_and(|d| Instant::now() >= d);
        if left_undone {
            stopped_undone = true;
            tracing::warn!(
                "stopped within epoch {}'s files: it is left undone, and the next run takes them again from the checkpoint",
                out.epoch
            );
            reason = if stop.load(Ordering::SeqCst) {
                "interrupted"
            } else {
                "stop_after reached"
            };
            break;
        }
        if let Some((target_epoch, target_end)) = redo_target.filter(|_| !redo_reached) {
            if !source_ended {
                // Stopped before the recorded input was in: emitting now would give the epoch
                // other rows than its first run did. The next start redoes it.
                tracing::info!("stopped while redoing epoch {target_epoch}");
                reason = "interrupted";
                break;
            }
            // A source that failed says why; one that ended was shortened.
            if let Some(reader) = reader.take() {
                source_outcome(reader, true).await?;
            }
            tracing::warn!(
                "the source ended before epoch {target_epoch}'s recorded end (byte {target_end}): it was shortened"
            );
        }

        last_on_schedule = false;
        if pending.rows > 0 || settings.emit_empty || redo_target.is_some() || wants_epoch {
            last_on_schedule = on_schedule;
            let computing = Instant::now();
            let input_rows = pending.rows;
            let absorbed = pending.busy;
            rows_in += input_rows;
            if let (Some(checkpoint), Some(end), None) =
                (checkpoint.as_mut(), position.clone(), redo_target)
            {
                // Where this epoch's input ends, before any sink sees it (Spark's offset log).
                checkpoint.record_end(EpochEnd {
                    epoch: out.epoch,
                    end,
                })?;
            }
            let (result, event_time) = engine.result(state.as_mut(), pending, false)?;
            let engine_time = absorbed + computing.elapsed();
            let epoch = out.epoch;
            out.emit(
                &result,
                input_rows,
                engine_time,
                fired_at,
                delay,
                StateFigures {
                    rows: state.as_ref().map_or(0, |s| s.rows()),
                    event_time,
                },
            )?;
            if redo_target.is_some() {
                redone_end = redo.pop_front().map(|done| done.end.offset);
            }
            if let Some(checkpoint) = checkpoint.as_mut().filter(|c| c.due(epoch)) {
                checkpoint.commit(
                    epoch,
                    rows_before + rows_in,
                    position.clone(),
                    state.as_deref(),
                )?;
                committed = Some(epoch);
            }
        }

        if stopping {
            reason = if stop.load(Ordering::SeqCst) {
                "interrupted"
            } else {
                "stop_after reached"
            };
            break;
        }
        if settings.max_epochs.is_some_and(|max| out.ran >= max) {
            reason = "max_epochs reached";
            break;
        }
        if out.sinks.iter().all(|sink| sink.closed()) {
            reason = "its output was closed";
            break;
        }
        if source_ended && rx.is_empty() && !epoch_wanted(state.as_mut()) {
            reason = "the source ended";
            break;
        }
    }
    drop(rx);
    if engine.finishes() && redo.is_empty() {
        // Stateful steps give their last rows now that the stream has stopped: one more
        // epoch carries them (and what the steps after the aggregation make at their end).
        let computing = Instant::now();
        let mut pending = Pending::new(aggregation, settings.output_mode);
        let last_rows = pool.install(|| engine.absorb_finished(state.as_mut(), &mut pending))?;
        let (result, event_time) = engine.result(state.as_mut(), pending, true)?;
        if last_rows > 0 || result.num_rows() > 0 {
            let state_rows = state.as_ref().map_or(0, |s| s.rows());
            let engine_time = computing.elapsed();
            out.emit(
                &result,
                0,
                engine_time,
                Instant::now(),
                None,
                StateFigures {
                    rows: state_rows,
                    event_time,
                },
            )?;
        }
    }
    if let Some(checkpoint) = checkpoint.as_mut() {
        // A stop is a commit point whatever `every` says, unless it left an epoch undone: its
        // rows taken so far are in the state, or held for the sinks, and the position is past
        // them, so neither is the end of the last epoch written. The next run then redoes the
        // epochs written since the last commit, as after a crash (the offsets log has their
        // ends; the sinks' ledgers skip what they wrote).
        let last = out.epoch.checked_sub(1);
        let redone_whole = redo.is_empty()
            || redone_end.is_some() && position.as_ref().map(|p| p.offset) == redone_end;
        if last.is_some() && last != committed && redone_whole && !stopped_undone {
            checkpoint.commit(
                out.epoch - 1,
                rows_before + rows_in,
                position,
                state.as_deref(),
            )?;
        }
    }
    if let Some(reader) = reader {
        // What the source dropped before it failed is told by `run`.
        source_outcome(reader, source_ended).await?;
    }
    let mut warnings = source.warnings();
    warnings.extend(crate::plan::stage_warnings(&pipeline.stages));
    warnings.extend(out.sinks.iter().flat_map(|sink| sink.warnings()));
    let mut late_rows = None;
    if let Some(event_time) = state.as_mut().and_then(|s| s.event_time()) {
        let late = event_time
            .progress()
            .late_rows_total
            .saturating_sub(late_before);
        late_rows = Some(late);
        let unplaced = event_time.progress().unplaced_rows_total;
        if unplaced > 0 {
            warnings.push(format!(
                "{} row(s) had event times too far from 1970 for any window and were left out",
                crate::data::group_digits(unplaced)
            ));
        }
        if late > 0 {
            warnings.push(format!(
                "{} row(s) arrived behind the watermark, for windows already final, and were left out (raise `watermark:` to accept later rows)",
                crate::data::group_digits(late)
            ));
        }
    }
    for message in &warnings {
        bus.publish(Event::Warning {
            message: message.clone(),
        });
    }
    bus.publish(Event::RunFinished {
        rows_in: Some(rows_in),
        rows_out: out.rows_out,
        epochs: Some(out.ran),
        seconds: started.elapsed().as_secs_f64(),
        reason: Some(reason),
        late_rows,
    });
    Ok(StreamReport {
        epochs: out.ran,
        rows_in,
        rows_out: out.rows_out,
        elapsed: started.elapsed(),
        warnings,
        source_summary: source.summary(),
        reason,
    })
}

/// Where a stream starts: from nothing, or from its checkpoint.
struct ResumePoint {
    next_epoch: u64,
    /// Rows taken in by earlier runs.
    rows_before: u64,
    /// A positioned source's position to read from.
    position: Option<SourcePosition>,
    /// Epochs recorded but not committed, to redo first over the same input.
    redo: VecDeque<EpochEnd>,
    committed: Option<u64>,
}

/// A checkpoint from an earlier run: restores its state, continues its epoch ids, reads the
/// source from its position, and first redoes the epochs it recorded but did not commit.
fn resume(
    checkpoint: Option<&mut Checkpoint>,
    state: Option<&mut Box<dyn AggregateState>>,
    positioned: bool,
    bus: &Bus,
) -> Result<ResumePoint> {
    let mut point = ResumePoint {
        next_epoch: 0,
        rows_before: 0,
        position: positioned.then_some(SourcePosition::at(0, 0.0)),
        redo: VecDeque::new(),
        committed: None,
    };
    let Some(checkpoint) = checkpoint else {
        return Ok(point);
    };
    let Some(resume) = checkpoint.load()? else {
        return Ok(point);
    };
    let mut state_rows = 0;
    if let (Some(state), Some(table)) = (state, &resume.state) {
        state.restore(table)?;
        state_rows = state.rows();
    }
    point.next_epoch = resume.next_epoch;
    point.committed = resume.next_epoch.checked_sub(1);
    point.rows_before = resume.rows_in;
    if positioned {
        // A commit of a positioned source always records where it stood: without one, the
        // input would be taken again from the start and counted twice.
        if resume.position.is_none() && point.committed.is_some() {
            return Err(Error::runtime(format!(
                "the checkpoint in {} is damaged (its commit records no source position, and this source reads from one); move the directory away to start over",
                checkpoint.dir().display()
            )));
        }
        point.position = resume.position.or(point.position);
        point.redo = resume.redo.into();
    }
    bus.publish(Event::Resumed {
        dir: checkpoint.dir().display().to_string(),
        next_epoch: point.next_epoch,
        state_rows,
        from_byte: point
            .position
            .as_ref()
            .filter(|_| positioned)
            .map(|p| p.offset),
        redoing: point.redo.len(),
    });
    Ok(point)
}

/// The aggregation's state after an epoch, for its progress.
struct StateFigures {
    rows: usize,
    event_time: Option<EventTimeProgress>,
}

/// Hands each epoch's result to the sinks and its progress to the bus, and numbers epochs.
struct Emitter<'p> {
    sinks: &'p mut [Box<dyn crate::sinks::Sink>],
    bus: &'p Bus,
    change: ResultChange,
    /// The next epoch's id.
    epoch: u64,
    /// Epochs this run.
    ran: u64,
    rows_out: u64,
    previous_fire: Instant,
}

impl Emitter<'_> {
    fn emit(
        &mut self,
        result: &RecordBatch,
        input_rows: u64,
        engine: Duration,
        fired_at: Instant,
        delay: Option<Duration>,
        state: StateFigures,
    ) -> Result<()> {
        let writing = Instant::now();
        write_sinks(self.sinks, result, self.epoch, &self.change, self.bus)?;
        self.bus.publish(Event::EpochFinished(EpochProgress {
            epoch: self.epoch,
            rows: input_rows,
            since_previous: fired_at.saturating_duration_since(self.previous_fire),
            engine,
            sinks: writing.elapsed(),
            delay,
            state_rows: state.rows,
            out_rows: result.num_rows(),
            event_time: state.event_time,
        }));
        self.previous_fire = fired_at;
        self.rows_out += result.num_rows() as u64;
        self.epoch += 1;
        self.ran += 1;
        Ok(())
    }
}

/// When the source stopped by itself: was it a fatal error, or a panic? Otherwise it is told
/// to stop.
async fn source_outcome(
    reader: tokio::task::JoinHandle<Result<(), String>>,
    source_ended: bool,
) -> Result<()> {
    if !source_ended {
        reader.abort();
        return Ok(());
    }
    match reader.await {
        Ok(Err(message)) => Err(Error::runtime(message)),
        Err(failed) if failed.is_panic() => {
            Err(crate::error::from_panic(failed.into_panic().as_ref()))
        }
        _ => Ok(()),
    }
}

/// Input bytes gathered before they are processed, between triggers.
const PROCESS_BYTES: usize = 1 << 20;

/// What an epoch has gathered so far.
struct Pending {
    rows: u64,
    /// Input bytes taken into this epoch.
    bytes: usize,
    /// Time spent processing this epoch's rows as they arrived.
    busy: Duration,
    /// Update mode: the groups this epoch touched.
    changed: Option<Box<dyn AggregateState>>,
    /// Rows that reached the aggregation in this epoch (after the steps before it).
    aggregated: u64,
    /// Without an aggregation: the epoch's transformed rows, waiting for the trigger.
    appended: Vec<RecordBatch>,
    buffered_bytes: usize,
}

impl Pending {
    fn new(aggregation: Option<&dyn crate::transforms::Aggregation>, mode: OutputMode) -> Self {
        Pending {
            rows: 0,
            bytes: 0,
            busy: Duration::ZERO,
            // Windowed state tracks its own changes.
            changed: aggregation
                .filter(|a| mode == OutputMode::Update && a.windowed().is_none())
                .map(|a| a.new_state()),
            appended: Vec::new(),
            buffered_bytes: 0,
            aggregated: 0,
        }
    }
}

/// The transform chain of a stream, split around its aggregation.
struct Engine<'a> {
    source: &'a dyn StreamSource,
    prefix: &'a [BuiltStage],
    aggregation: Option<&'a dyn crate::transforms::Aggregation>,
    /// The aggregation's step, which its errors name.
    aggregation_step: Option<&'a BuiltStage>,
    suffix: &'a [BuiltStage],
    mode: OutputMode,
    /// The split-count kernel's separator and whether it drops empty pieces, when the plan
    /// runs the prefix and the count in it.
    split: Option<(&'a str, bool)>,
    change: ResultChange,
}

impl<'a> Engine<'a> {
    /// Splits the pipeline's stages at its aggregation.
    fn new(
        stages: &'a [BuiltStage],
        fusion: Option<&crate::plan::Fusion>,
        source: &'a dyn StreamSource,
        mode: OutputMode,
    ) -> Self {
        let split = stages
            .iter()
            .position(|s| !matches!(s.stage.kind, StageKind::Map(_)))
            .unwrap_or(stages.len());
        let (prefix, rest) = stages.split_at(split);
        let aggregation = match rest.first().map(|s| &s.stage.kind) {
            Some(StageKind::Aggregate(a)) => Some(a.as_ref()),
            _ => None,
        };
        let aggregation_step = aggregation.and(rest.first());
        let suffix = if aggregation.is_some() {
            &rest[1..]
        } else {
            rest
        };
        let split = fusion
            .filter(|f| f.kernel == crate::plan::Kernel::SplitCount && f.per_value.is_empty())
            .and_then(|f| match &stages.get(f.split?)?.stage.kind {
                StageKind::Map(map) => match map.splits_text()? {
                    TextSplit::Separator {
                        separator,
                        drop_empty,
                        ..
                    } => Some((separator, drop_empty)),
                    TextSplit::Words { .. } => None,
                },
                _ => None,
            });
        let change = result_change(stages, mode);
        Engine {
            source,
            prefix,
            aggregation,
            aggregation_step,
            suffix,
            mode,
            split,
            change,
        }
    }

    /// `error` named by the aggregation's step when it is the aggregation's own.
    fn located(&self, error: crate::error::Error) -> crate::error::Error {
        match self.aggregation_step {
            Some(step) => step.locate(error),
            None => error,
        }
    }
    /// Runs newly arrived chunks through the row-wise stages (in parallel over slices when
    /// there are many rows) into the aggregation state, or keeps them for the epoch.
    fn absorb(
        &self,
        chunks: &[Chunk],
        state: Option<&mut Box<dyn AggregateState>>,
        pending: &mut Pending,
    ) -> Result<()> {
        let mut state = state;
        if let (Some(separator), Some(state)) = (self.fused_split(), state.as_deref_mut()) {
            // Validated once here; invalid UTF-8 takes the decoding path, which replaces it.
            let texts: Option<Vec<&str>> = chunks
                .iter()
                .map(|c| simdutf8::basic::from_utf8(c).ok())
                .collect();
            if let Some(texts) = texts {
                let Some(counts) = state.text_counter() else {
                    return Err(Error::runtime(
                        "the split-count kernel expected a state that counts text keys",
                    ));
                };
                let changed = pending.changed.as_mut().and_then(|c| c.text_counter());
                super::split_count::absorb(
                    &texts,
                    separator,
                    self.drop_empty(),
                    counts,
                    changed,
                    &mut pending.rows,
                );
                self.source.passed(chunks);
                return Ok(());
            }
        }
        let input = self.source.decode(chunks)?;
        pending.rows += input.num_rows() as u64;
        let slices: Vec<RecordBatch> = (0..input.num_rows())
            .step_by(BATCH_ROWS)
            .map(|start| input.slice(start, BATCH_ROWS.min(input.num_rows() - start)))
            .collect();
        let run_prefix = |batch: &RecordBatch| -> Result<RecordBatch> {
            let mut batch = batch.clone();
            for stage in self.prefix {
                if let StageKind::Map(map) = &stage.stage.kind {
                    batch = map.apply(&batch).map_err(|e| stage.failed(e))?;
                }
            }
            Ok(batch)
        };
        let mapped: Vec<RecordBatch> = if slices.len() > 4 {
            slices.par_iter().map(run_prefix).collect::<Result<_>>()?
        } else {
            slices.iter().map(run_prefix).collect::<Result<_>>()?
        };
        match state {
            Some(state) => {
                for batch in &mapped {
                    state.update(batch).map_err(|e| self.located(e))?;
                    pending.aggregated += batch.num_rows() as u64;
                    if let Some(changed) = pending.changed.as_mut() {
                        changed.update(batch).map_err(|e| self.located(e))?;
                    }
                }
            }
            None => {
                // Slice sizes: counted by `get_array_memory_size`, an epoch was cut at a
                // sixteenth of its bound.
                pending.buffered_bytes += mapped.iter().map(crate::data::held_bytes).sum::<usize>();
                pending.appended.extend(mapped);
            }
        }
        Ok(())
    }

    /// The split-count kernel's separator, when the plan chose it.
    fn fused_split(&self) -> Option<&str> {
        self.split.map(|(separator, _)| separator)
    }

    fn drop_empty(&self) -> bool {
        self.split.is_some_and(|(_, drop_empty)| drop_empty)
    }

    /// What the sinks receive for the epoch.
    /// `last`: the stream has stopped, so the steps after the aggregation see their last input
    /// (their `finish` runs).
    fn result(
        &self,
        state: Option<&mut Box<dyn AggregateState>>,
        pending: Pending,
        last: bool,
    ) -> Result<(RecordBatch, Option<EventTimeProgress>)> {
        let mut state = state;
        if let Some(windowed) = state.as_mut().and_then(|s| s.event_time()) {
            let (rows, progress) = windowed.end_epoch()?;
            return Ok((
                super::batch::run_after_aggregation(rows, self.suffix, last)?,
                Some(progress),
            ));
        }
        let result = match (self.aggregation, state) {
            (Some(aggregation), Some(state)) => {
                let table = state.result().map_err(|e| self.located(e))?;
                match (self.mode, pending.changed) {
                    // One group of all rows (no keys): it changed only when rows reached it,
                    // not whenever the epoch ran (its rows may all have been filtered out).
                    (OutputMode::Update, Some(_)) if aggregation.key_columns() == 0 => {
                        if pending.aggregated > 0 {
                            table
                        } else {
                            table.slice(0, 0)
                        }
                    }
                    (OutputMode::Update, Some(changed)) => rows_with_keys(
                        &table,
                        &changed.result().map_err(|e| self.located(e))?,
                        aggregation.key_columns(),
                    )?,
                    _ => table,
                }
            }
            _ => {
                let schema = self
                    .prefix
                    .last()
                    .map_or_else(|| self.source.schema(), |s| s.stage.output.clone());
                concat(&schema, &pending.appended)
            }
        };
        Ok((
            super::batch::run_after_aggregation(result, self.suffix, last)?,
            None,
        ))
    }

    /// Whether a row-wise step may return rows from `finish` (a stateful plugin): the stream
    /// then ends with one more epoch that carries them.
    fn finishes(&self) -> bool {
        self.prefix
            .iter()
            .chain(self.suffix)
            .any(|s| matches!(&s.stage.kind, StageKind::Map(map) if map.needs_finish()))
    }

    /// The last rows of the row-wise steps before the aggregation (their `finish`), each sent
    /// through the steps after it, into the state or the epoch's rows. Returns how many.
    fn absorb_finished(
        &self,
        state: Option<&mut Box<dyn AggregateState>>,
        pending: &mut Pending,
    ) -> Result<usize> {
        let mut batches = Vec::new();
        for (i, stage) in self.prefix.iter().enumerate() {
            let StageKind::Map(map) = &stage.stage.kind else {
                continue;
            };
            let Some(mut batch) = map.finish().map_err(|e| stage.failed(e))? else {
                continue;
            };
            for later in &self.prefix[i + 1..] {
                if let StageKind::Map(map) = &later.stage.kind {
                    batch = map.apply(&batch).map_err(|e| later.failed(e))?;
                }
            }
            batches.push(batch);
        }
        let rows = batches.iter().map(RecordBatch::num_rows).sum();
        match state {
            Some(state) => {
                for batch in &batches {
                    state.update(batch).map_err(|e| self.located(e))?;
                    pending.aggregated += batch.num_rows() as u64;
                    if let Some(changed) = pending.changed.as_mut() {
                        changed.update(batch).map_err(|e| self.located(e))?;
                    }
                }
            }
            None => pending.appended.extend(batches),
        }
        Ok(rows)
    }
}

/// Whether event-time state wants an epoch now, rows or not (see `EventTimeState::wants_epoch`).
fn epoch_wanted(state: Option<&mut Box<dyn AggregateState>>) -> bool {
    state
        .and_then(|s| s.event_time())
        .is_some_and(|e| e.wants_epoch())
}

/// What each epoch's rows are to the result so far, under `mode`, for subscribers that keep
/// it: in `update` mode, the rows of the aggregation's groups by their key columns.
pub(crate) fn result_change(stages: &[BuiltStage], mode: OutputMode) -> ResultChange {
    let aggregation = stages.iter().find_map(|s| match &s.stage.kind {
        StageKind::Aggregate(a) => Some((a.key_columns(), &s.stage.output)),
        _ => None,
    });
    match (mode, aggregation) {
        (OutputMode::Complete, _) => ResultChange::Replace,
        (OutputMode::Update, Some((keys, output))) => ResultChange::Upsert {
            keys: output
                .fields()
                .iter()
                .take(keys)
                .map(|f| f.name().clone())
                .collect(),
        },
        _ => ResultChange::Append,
    }
}

/// Hands `result` to every sink as epoch `epoch`, telling the bus (the Spark stream driver
/// too): each sink's write, then the rows themselves as `change` to the result so far.
pub(crate) fn write_sinks(
    sinks: &mut [Box<dyn crate::sinks::Sink>],
    result: &RecordBatch,
    epoch: u64,
    change: &ResultChange,
    bus: &Bus,
) -> Result<()> {
    for (index, sink) in sinks.iter_mut().enumerate() {
        crate::sinks::write_result(sink.as_mut(), result, epoch)?;
        bus.publish(Event::SinkWrote {
            sink: index,
            epoch,
            rows: result.num_rows() as u64,
        });
    }
    bus.publish(Event::ResultRows {
        epoch,
        change: change.clone(),
        rows: ResultBatch(result.clone()),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_fusion_reaches_the_stream_split_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.yaml");
        std::fs::write(
            &path,
            "name: t\nmode: stream\nsource: {type: socket, host: 127.0.0.1, port: 9}\ntransforms:\n  - {type: explode, column: line, separator: ' ', as: word}\n  - {type: group_count, by: word}\nsinks:\n  - {type: stdout}\n",
        )
        .unwrap();
        let loaded = crate::config::load(&path, &[]).unwrap();
        let mut pipeline = crate::exec::build(&loaded, Some(1)).unwrap();
        let BuiltSource::Stream(source) = &pipeline.source else {
            panic!("a stream source")
        };
        let engine = Engine::new(
            &pipeline.stages,
            pipeline.plan.fusion.as_ref(),
            source.as_ref(),
            OutputMode::Complete,
        );
        assert_eq!(engine.fused_split(), Some(" "));
        // `runner run --no-fusion` plans without the rules; the engine reads the plan.
        pipeline.without_rules();
        assert!(pipeline.plan.fusion.is_none());
        let BuiltSource::Stream(source) = &pipeline.source else {
            panic!("a stream source")
        };
        let engine = Engine::new(
            &pipeline.stages,
            pipeline.plan.fusion.as_ref(),
            source.as_ref(),
            OutputMode::Complete,
        );
        assert_eq!(engine.fused_split(), None);
    }

    #[test]
    fn update_mode_tells_a_null_group_from_an_empty_one() {
        use arrow_array::{Int64Array, StringArray};
        let table = RecordBatch::try_from_iter([
            (
                "tag",
                Arc::new(StringArray::from(vec![None, Some(""), Some("a")])) as _,
            ),
            ("count", Arc::new(Int64Array::from(vec![1, 2, 3])) as _),
        ])
        .unwrap();
        let changed = table.slice(1, 1);
        let rows = rows_with_keys(&table, &changed, 1).unwrap();
        assert_eq!(rows, changed);
        let rows = rows_with_keys(&table, &table.slice(0, 1), 1).unwrap();
        assert_eq!(rows, table.slice(0, 1));
    }
}
