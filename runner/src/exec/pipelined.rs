//! A batch pipeline without an aggregation streams (the plan's `stream_to_sinks`): `cores`
//! workers decode morsels and run the row-wise stages on them, and this thread hands the
//! results to the sinks in input order as they complete. At most a window of morsels is between
//! reading and writing, so memory is bounded whatever the input's size; a `limit` that is
//! reached, or sinks that want no more (standard output closed), stop the reading. A `sort`
//! among the steps takes the rows instead, in bounded memory (`external_sort`), and hands them
//! on in key order once the input has ended, through the steps after it into the sinks or the
//! next sort. An aggregation spilled to disk hands the groups it
//! merges back through the steps after it in the same way (`deliver`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use arrow_array::RecordBatch;

use super::external_sort::ExternalSort;
use super::BuiltStage;
use crate::error::{Error, Result};
use crate::sinks::{Flow, Sink};
use crate::sources::{BatchSource, Morsel, Morsels};
use crate::transforms::StageKind;

/// The index a worker that failed outside a morsel sends its error with.
const FAILED: usize = usize::MAX;

/// Morsels between the one being written and the furthest one a worker may read.
fn window(cores: usize) -> usize {
    2 * cores + 2
}

/// The bytes of rows a worker gathers before it sends them on. A morsel's rows (a slice of a
/// Parquet row group can be tens of MB) are sent in parts of about this size; after each, the
/// worker waits until its morsel is being written and its parts before that one are written,
/// so that no more than about a part per morsel of the window waits to be written.
const PART_BYTES: usize = 8 << 20;

/// Some of a morsel's rows, in order, and whether they are its last (an error is).
struct Part {
    batches: Result<Vec<RecordBatch>>,
    last: bool,
}

/// Streams the source through `stages` into `sinks` (already begun); returns the rows the
/// sinks were given.
pub fn run(
    source: &dyn BatchSource,
    stages: &[BuiltStage],
    sinks: &mut [Box<dyn Sink>],
    cores: usize,
    bus: &crate::events::Bus,
) -> Result<u64> {
    run_to(source, stages, Output::new(sinks, bus), cores)
}

/// Streams the source through `stages` (see [`streams`]) into `take`, batch by batch in
/// input order, until the input ends or `take` returns `false` (an aggregation after a sort
/// or a limit takes its rows so).
pub(crate) fn run_into(
    source: &dyn BatchSource,
    stages: &[BuiltStage],
    cores: usize,
    take: &mut dyn FnMut(RecordBatch) -> Result<bool>,
) -> Result<()> {
    run_to(source, stages, Output::into_function(take), cores).map(|_| ())
}

fn run_to(
    source: &dyn BatchSource,
    stages: &[BuiltStage],
    output: Output,
    cores: usize,
) -> Result<u64> {
    let parallel = stages
        .iter()
        .take_while(|s| matches!(s.stage.kind, StageKind::Map(_)))
        .count();
    let (prefix, rest) = stages.split_at(parallel);
    let (mut tail, mut delivery, sort, after) = up_to_sort(rest, output);
    let feed = Feed::new(source, window(cores))?;
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Part)>();
    // A morsel through the row-wise steps, its rows sent in parts as they are made.
    let through_prefix = |index: usize, morsel: Morsel, tx: &std::sync::mpsc::Sender<_>| {
        let mut part = Vec::new();
        let mut bytes = 0;
        let mut parts = 0;
        let sent = super::batch::decode_through_each(source, prefix, morsel, &mut |batch| {
            bytes += crate::data::held_bytes(&batch);
            part.push(batch);
            if bytes >= PART_BYTES {
                bytes = 0;
                let batches = Ok(std::mem::take(&mut part));
                parts += 1;
                if tx
                    .send((
                        index,
                        Part {
                            batches,
                            last: false,
                        },
                    ))
                    .is_err()
                    || !feed.wait_for_parts(index, parts - 1)
                {
                    return Err(Error::runtime("stopped"));
                }
            }
            Ok(())
        });
        sent.map(|()| part)
    };
    let outcome = std::thread::scope(|scope| -> Result<bool> {
        for worker in 0..cores {
            let tx = tx.clone();
            let through_prefix = &through_prefix;
            let feed = &feed;
            let spawned = std::thread::Builder::new()
                .name(format!("runner-worker-{worker}"))
                .spawn_scoped(scope, move || {
                    // A panic anywhere in a worker is an error the writer sees at once: it must
                    // not wait for a morsel the worker will never send.
                    let worked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        while let Some((index, morsel)) = feed.take() {
                            let batches = morsel.and_then(|m| through_prefix(index, m, &tx));
                            let last = Part {
                                batches,
                                last: true,
                            };
                            if tx.send((index, last)).is_err() {
                                break;
                            }
                        }
                    }));
                    if let Err(payload) = worked {
                        // Sent before the feed stops: a worker the stop wakes sends its
                        // morsel's end after it, and the writer must see the panic first.
                        let failed = Err(crate::error::from_panic(payload.as_ref()));
                        let _ = tx.send((
                            FAILED,
                            Part {
                                batches: failed,
                                last: true,
                            },
                        ));
                        feed.stop();
                    }
                });
            if let Err(e) = spawned {
                feed.stop();
                return Err(Error::runtime(format!("cannot start a worker thread: {e}")));
            }
        }
        drop(tx);
        // Stops the feed should the writer panic (a sink, a step after a limit): the workers
        // waiting for it would wait forever, and the scope with them.
        let _stop = StopOnDrop(&feed);
        let written = write_in_order(&rx, &feed, &mut tail, &mut delivery);
        // Whatever happened, the workers stop taking morsels.
        feed.stop();
        drop(rx);
        written
    });
    let input_ended = outcome?;
    // The last rows of stateful row-wise stages (a plugin's `finish`), where they are still
    // wanted: after the whole input, or after a limit that was reached.
    if delivery.wants_more() {
        if input_ended && !tail.exhausted() {
            for batch in super::batch::finished_batches(prefix)? {
                if let Some(batch) = tail.push(batch)? {
                    delivery.deliver(batch)?;
                }
            }
        }
        for batch in tail.finish()? {
            delivery.deliver(batch)?;
        }
    }
    drain(delivery, sort, after)
}

/// Hands the batches `produce` makes (an aggregation's result merged from disk, in order)
/// through `stages` (row-wise steps, limits and sorts: see [`streams`]) into
/// `sinks` (already begun), until `produce` ends or nothing more is wanted (it is told so by
/// `false`). Returns the rows the sinks were given.
pub(crate) fn deliver(
    produce: impl FnOnce(&mut dyn FnMut(RecordBatch) -> Result<bool>) -> Result<()>,
    stages: &[BuiltStage],
    sinks: &mut [Box<dyn Sink>],
    bus: &crate::events::Bus,
) -> Result<u64> {
    deliver_to(produce, stages, Output::new(sinks, bus))
}

fn deliver_to(
    produce: impl FnOnce(&mut dyn FnMut(RecordBatch) -> Result<bool>) -> Result<()>,
    stages: &[BuiltStage],
    output: Output,
) -> Result<u64> {
    let (mut tail, mut delivery, sort, after) = up_to_sort(stages, output);
    produce(&mut |batch| {
        if let Some(batch) = tail.push(batch)? {
            delivery.deliver(batch)?;
        }
        Ok(!tail.exhausted() && delivery.wants_more())
    })?;
    if delivery.wants_more() {
        for batch in tail.finish()? {
            delivery.deliver(batch)?;
        }
    }
    drain(delivery, sort, after)
}

/// `deliver`, into `take` (another aggregation) instead of sinks.
pub(crate) fn deliver_into(
    produce: impl FnOnce(&mut dyn FnMut(RecordBatch) -> Result<bool>) -> Result<()>,
    stages: &[BuiltStage],
    take: &mut dyn FnMut(RecordBatch) -> Result<bool>,
) -> Result<()> {
    deliver_to(produce, stages, Output::into_function(take)).map(|_| ())
}

/// Whether `stages` can take their input batch by batch: row-wise steps, limits and sorts.
pub(crate) fn streams(stages: &[BuiltStage]) -> bool {
    stages.iter().all(|s| match &s.stage.kind {
        StageKind::Map(_) => true,
        StageKind::Global(global) if global.sort_keys().is_some() => true,
        StageKind::Global(global) => global.first_rows().is_some(),
        StageKind::Aggregate(_) => false,
    })
}

/// The steps up to the first sort of `stages`, where they deliver (that sort, or `output`),
/// the sort, and the steps after it.
fn up_to_sort<'s, 'o>(
    stages: &'s [BuiltStage],
    output: Output<'o>,
) -> (
    Tail<'s>,
    Delivery<'o>,
    Option<&'s BuiltStage>,
    &'s [BuiltStage],
) {
    let (before, sort, after) = split_at_sort(stages);
    let delivery = Delivery {
        output,
        sorter: sorter(sort, after),
        sorted_in: 0,
    };
    (Tail::new(before), delivery, sort, after)
}

/// A sort splits the steps: those before it stream into it, those after it get its rows.
fn split_at_sort(stages: &[BuiltStage]) -> (&[BuiltStage], Option<&BuiltStage>, &[BuiltStage]) {
    let sort_at = stages.iter().position(|s| match &s.stage.kind {
        StageKind::Global(global) => global.sort_keys().is_some(),
        _ => false,
    });
    match sort_at {
        Some(i) => (&stages[..i], Some(&stages[i]), &stages[i + 1..]),
        None => (stages, None, &stages[stages.len()..]),
    }
}

/// The sort `sort` stands for, keeping only the first rows when a limit follows it.
fn sorter(sort: Option<&BuiltStage>, after: &[BuiltStage]) -> Option<ExternalSort> {
    let StageKind::Global(global) = &sort?.stage.kind else {
        return None;
    };
    let first = after.first().and_then(|next| match &next.stage.kind {
        StageKind::Global(limit) => limit.first_rows(),
        _ => None,
    });
    Some(ExternalSort::new(
        sort?.stage.output.clone(),
        global.sort_keys()?,
        first,
    ))
}

/// After the input: the sort's rows through the steps after it, into the next sort or the
/// sinks, and so on for each sort after it. Returns the rows the sinks were given.
fn drain(delivery: Delivery, sort: Option<&BuiltStage>, after: &[BuiltStage]) -> Result<u64> {
    let Delivery {
        mut output,
        sorter: mut sorting,
        mut sorted_in,
    } = delivery;
    let (mut sort, mut after) = (sort, after);
    while let (Some(current), Some(stage)) = (sorting.take(), sort) {
        // The steps up to the next sort take this one's rows as it merges them.
        let (mut tail, mut next, next_sort, next_after) = up_to_sort(after, output);
        let mut sorted_out = 0;
        match current.runs() {
            0 => tracing::info!(step = %stage.label, "sort ordering its rows in memory"),
            runs => tracing::info!(
                step = %stage.label,
                runs,
                on_disk = current.runs_on_disk(),
                "sort merging its sorted runs"
            ),
        }
        // Sinks that want no more stop every sort still to merge.
        if next.output.wants_more() {
            // A later step's error names that step, not this sort.
            let mut later_error = None;
            current
                .finish(|batch| {
                    sorted_out += batch.num_rows();
                    let delivered = tail
                        .push(batch)
                        .and_then(|batch| batch.map_or(Ok(()), |batch| next.deliver(batch)));
                    match delivered {
                        Ok(()) => {
                            Ok(next.wants_more() && next.output.wants_more() && !tail.exhausted())
                        }
                        Err(e) => {
                            later_error = Some(e);
                            Ok(false)
                        }
                    }
                })
                .map_err(|e| stage.failed(e))?;
            if let Some(e) = later_error {
                return Err(e);
            }
            if next.wants_more() && next.output.wants_more() {
                for batch in tail.finish()? {
                    next.deliver(batch)?;
                }
            }
        }
        if let StageKind::Global(global) = &stage.stage.kind {
            global.record_rows(sorted_in, sorted_out);
        }
        Delivery {
            output,
            sorter: sorting,
            sorted_in,
        } = next;
        (sort, after) = (next_sort, next_after);
    }
    Ok(output.rows)
}

/// Where the writer hands the rows of the streamed steps: the sinks, or a sort.
struct Delivery<'a> {
    output: Output<'a>,
    sorter: Option<ExternalSort>,
    /// Rows handed to the sort.
    sorted_in: usize,
}

impl Delivery<'_> {
    fn deliver(&mut self, batch: RecordBatch) -> Result<()> {
        match self.sorter.as_mut() {
            Some(sorter) => {
                self.sorted_in += batch.num_rows();
                sorter.push(batch)
            }
            None => self.output.write(&batch),
        }
    }

    /// Whether more rows are wanted: a sort takes every row; the sinks until they stop.
    fn wants_more(&self) -> bool {
        self.sorter.is_some() || self.output.wants_more()
    }
}

/// Receives worker results and writes them in input order. Returns whether the whole input
/// was read (`false`: stopped early by a limit or the sinks).
fn write_in_order(
    rx: &std::sync::mpsc::Receiver<(usize, Part)>,
    feed: &Feed,
    tail: &mut Tail,
    output: &mut Delivery,
) -> Result<bool> {
    // Parts of the morsels after the one being written.
    let mut waiting: BTreeMap<usize, Vec<Part>> = BTreeMap::new();
    let mut next = 0usize;
    // Parts of morsel `next` written.
    let mut parts = 0usize;
    for (index, part) in rx {
        if index == FAILED {
            return part.batches.map(|_| false);
        }
        waiting.entry(index).or_default().push(part);
        while let Some(waiting_parts) = waiting.remove(&next) {
            let mut ended = false;
            for part in waiting_parts {
                ended = part.last;
                crate::error::failpoint("morsel-write");
                for batch in part.batches? {
                    if let Some(batch) = tail.push(batch)? {
                        output.deliver(batch)?;
                    }
                    if tail.exhausted() || !output.wants_more() {
                        return Ok(false);
                    }
                }
                parts += 1;
            }
            if !ended {
                // More of this morsel to come.
                feed.written(next, parts);
                break;
            }
            next += 1;
            parts = 0;
            feed.written(next, 0);
        }
    }
    Ok(true)
}

/// Stops its feed when dropped.
struct StopOnDrop<'f, 'a>(&'f Feed<'a>);

impl Drop for StopOnDrop<'_, '_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Hands morsels to workers, at most a window ahead of the writer.
struct Feed<'a> {
    /// Told to stop reading when the feed stops.
    source: &'a dyn BatchSource,
    morsels: FeedMorsels<'a>,
    window: usize,
    /// Morsels written so far (the writer's position), and the parts of the next one.
    written: Mutex<(usize, usize)>,
    moved: Condvar,
    stopped: AtomicBool,
}

type MorselIter<'a> = Box<dyn Iterator<Item = Result<Morsel>> + Send + 'a>;

enum FeedMorsels<'a> {
    /// Read one after another, under the lock, so indices follow input order.
    Sequential(Mutex<(usize, MorselIter<'a>)>),
    /// Read by whichever worker takes the index.
    Indexed {
        count: usize,
        next: AtomicUsize,
        read: Box<dyn Fn(usize) -> Result<Morsel> + Send + Sync + 'a>,
    },
}

impl<'a> Feed<'a> {
    /// Opens `source`, to hand its morsels a `window` ahead of the writer.
    fn new(source: &'a dyn BatchSource, window: usize) -> Result<Self> {
        Ok(Feed {
            source,
            morsels: match source.open()? {
                Morsels::Sequential(iter) => FeedMorsels::Sequential(Mutex::new((0, iter))),
                Morsels::Indexed { count, read } => FeedMorsels::Indexed {
                    count,
                    next: AtomicUsize::new(0),
                    read,
                },
            },
            window,
            written: Mutex::new((0, 0)),
            moved: Condvar::new(),
            stopped: AtomicBool::new(false),
        })
    }

    /// The next morsel and its index; `None` at the end of the input or once stopped.
    fn take(&self) -> Option<(usize, Result<Morsel>)> {
        crate::error::failpoint("morsel-take");
        match &self.morsels {
            FeedMorsels::Sequential(iter) => {
                let mut iter = iter.lock().unwrap_or_else(|p| p.into_inner());
                let index = iter.0;
                if !self.wait_for_room(index) {
                    return None;
                }
                let morsel = iter.1.next()?;
                iter.0 += 1;
                Some((index, morsel))
            }
            FeedMorsels::Indexed { count, next, read } => {
                let index = next.fetch_add(1, Ordering::SeqCst);
                if index >= *count || !self.wait_for_room(index) {
                    return None;
                }
                Some((index, read(index)))
            }
        }
    }

    /// Waits until morsel `index` is within the window of the writer; `false` when stopped.
    fn wait_for_room(&self, index: usize) -> bool {
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        while index >= written.0 + self.window && !self.stopped.load(Ordering::SeqCst) {
            written = self.moved.wait(written).unwrap_or_else(|p| p.into_inner());
        }
        !self.stopped.load(Ordering::SeqCst)
    }

    /// Waits until morsel `index` is the one being written and `parts` of its parts are
    /// written; `false` when stopped.
    fn wait_for_parts(&self, index: usize, parts: usize) -> bool {
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        while (written.0, written.1) < (index, parts) && !self.stopped.load(Ordering::SeqCst) {
            written = self.moved.wait(written).unwrap_or_else(|p| p.into_inner());
        }
        !self.stopped.load(Ordering::SeqCst)
    }

    /// The writer's position: `morsels` written, and `parts` of the next one.
    fn written(&self, morsels: usize, parts: usize) {
        *self.written.lock().unwrap_or_else(|p| p.into_inner()) = (morsels, parts);
        self.moved.notify_all();
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.source.stop_reading();
        let _guard = self.written.lock().unwrap_or_else(|p| p.into_inner());
        self.moved.notify_all();
    }
}

/// The stages after the leading row-wise ones (limits, and the row-wise stages after them),
/// run in input order on the writing thread.
struct Tail<'a> {
    stages: &'a [BuiltStage],
    /// For each limit, the rows it still lets through.
    remaining: Vec<Option<usize>>,
}

impl<'a> Tail<'a> {
    fn new(stages: &'a [BuiltStage]) -> Self {
        let remaining = stages
            .iter()
            .map(|s| match &s.stage.kind {
                StageKind::Global(global) => global.first_rows(),
                _ => None,
            })
            .collect();
        Tail { stages, remaining }
    }

    /// Runs `batch` through the stages from `from` on.
    fn push_from(&mut self, from: usize, mut batch: RecordBatch) -> Result<Option<RecordBatch>> {
        for (i, stage) in self.stages.iter().enumerate().skip(from) {
            match (&stage.stage.kind, self.remaining[i].as_mut()) {
                (StageKind::Map(map), _) => {
                    batch = map.apply(&batch).map_err(|e| stage.failed(e))?;
                }
                (StageKind::Global(limit), Some(remaining)) => {
                    batch = limit
                        .apply_first(batch, *remaining)
                        .map_err(|e| stage.failed(e))?;
                    let kept = batch.num_rows().min(*remaining);
                    *remaining -= kept;
                    batch = batch.slice(0, kept);
                }
                _ => return Err(stage.failed("cannot stream")),
            }
            if batch.num_rows() == 0 {
                return Ok(None);
            }
        }
        Ok(Some(batch))
    }

    fn push(&mut self, batch: RecordBatch) -> Result<Option<RecordBatch>> {
        self.push_from(0, batch)
    }

    /// Whether a limit has let all its rows through: nothing before it is needed any more.
    fn exhausted(&self) -> bool {
        self.remaining.contains(&Some(0))
    }

    /// The last rows of the row-wise stages whose output is still wanted (those after the
    /// last exhausted limit), each through the stages after it.
    fn finish(&mut self) -> Result<Vec<RecordBatch>> {
        let first_live = self
            .remaining
            .iter()
            .rposition(|r| *r == Some(0))
            .map_or(0, |i| i + 1);
        let mut out = Vec::new();
        for i in first_live..self.stages.len() {
            let StageKind::Map(map) = &self.stages[i].stage.kind else {
                continue;
            };
            let last = map.finish().map_err(|e| self.stages[i].failed(e))?;
            if let Some(batch) = last {
                if let Some(batch) = self.push_from(i + 1, batch)? {
                    out.push(batch);
                }
            }
        }
        Ok(out)
    }
}

/// Where the rows end: the sinks of the run, each until it has enough, or a function.
struct Output<'a> {
    target: Target<'a>,
    rows: u64,
}

enum Target<'a> {
    Sinks {
        sinks: &'a mut [Box<dyn Sink>],
        /// Told each batch the sinks took, as rows appended to the result.
        bus: &'a crate::events::Bus,
        wanting: Vec<bool>,
    },
    /// Until it returns `false`.
    Into {
        take: &'a mut dyn FnMut(RecordBatch) -> Result<bool>,
        wanting: bool,
    },
}

impl<'a> Output<'a> {
    fn new(sinks: &'a mut [Box<dyn Sink>], bus: &'a crate::events::Bus) -> Self {
        let wanting = vec![true; sinks.len()];
        Output {
            target: Target::Sinks {
                sinks,
                bus,
                wanting,
            },
            rows: 0,
        }
    }

    fn into_function(take: &'a mut dyn FnMut(RecordBatch) -> Result<bool>) -> Self {
        Output {
            target: Target::Into {
                take,
                wanting: true,
            },
            rows: 0,
        }
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let first = self.rows == 0 && batch.num_rows() > 0;
        self.rows += batch.num_rows() as u64;
        match &mut self.target {
            Target::Sinks {
                sinks,
                bus,
                wanting,
            } => {
                if first && sinks.iter().any(|sink| sink.prints_to_terminal()) {
                    bus.publish(crate::events::Event::OutputStarts);
                }
                for (sink, wanting) in sinks.iter_mut().zip(wanting.iter_mut()) {
                    if *wanting && sink.write(batch)? == Flow::Enough {
                        *wanting = false;
                    }
                }
                bus.publish(crate::events::Event::ResultRows {
                    epoch: 0,
                    change: crate::events::ResultChange::Append,
                    rows: crate::events::ResultBatch(batch.clone()),
                });
            }
            Target::Into { take, wanting } => *wanting = take(batch.clone())?,
        }
        Ok(())
    }

    fn wants_more(&self) -> bool {
        match &self.target {
            Target::Sinks { wanting, .. } => wanting.iter().any(|w| *w),
            Target::Into { wanting, .. } => *wanting,
        }
    }
}
