//! Sinks: one file per component. A sink receives the pipeline's result (once in batch mode,
//! once per epoch when streaming).

pub mod chart;
pub mod csv;
pub mod database;
pub mod epoch_ledger;
pub mod file;
pub mod json_lines;
pub mod postgres;
pub mod socket;
pub mod sqlite;
pub mod stdout;

use std::path::Path;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use crate::error::Result;

/// What a sink config needs to build its runtime.
pub struct SinkContext<'a> {
    /// The schema of the result the sink will receive.
    pub input: &'a SchemaRef,
    /// The pipeline file's directory, for relative paths.
    pub base_dir: &'a Path,
    /// Whether the sink will receive one result per epoch (stream mode).
    pub streaming: bool,
    /// Whether each epoch's result holds only its new rows (a stream in `append` output
    /// mode): file sinks add them to what earlier epochs wrote instead of replacing it.
    pub appending: bool,
    /// Whether each epoch's result holds only the rows that changed (`update` output mode).
    pub updating: bool,
    /// Whether the stream keeps a checkpoint of a positioned source (a file, a replay tape),
    /// so that a restart redoes epochs a sink may have written already, with the same rows.
    pub checkpointed: bool,
    /// A checkpointed stream whose checkpoint holds no epoch yet (new, or removed to start
    /// over): what a sink's ledger says of epochs was written by an earlier stream, whose
    /// epochs this one does not redo (its ids start at 0 again).
    pub fresh_stream: bool,
    /// The checkpointed stream's id, known once its checkpoint is locked (before any epoch):
    /// a ledger records it, and one that names another id is an earlier stream's.
    pub stream_id: StreamId,
    /// The pipeline's name (database sinks record their epochs under it).
    pub pipeline: &'a str,
}

#[cfg(test)]
impl<'a> SinkContext<'a> {
    /// A context for tests: a stream in `append` mode when `appending` (a batch run
    /// otherwise), of a positioned source with a checkpoint when `checkpointed`.
    pub fn for_test(
        input: &'a SchemaRef,
        base_dir: &'a Path,
        appending: bool,
        checkpointed: bool,
    ) -> SinkContext<'a> {
        SinkContext {
            input,
            base_dir,
            streaming: appending,
            appending,
            updating: false,
            checkpointed,
            fresh_stream: false,
            stream_id: Default::default(),
            pipeline: "test",
        }
    }
}

/// The id of a checkpointed stream, set when its checkpoint is locked.
pub type StreamId = std::sync::Arc<std::sync::OnceLock<String>>;

/// Refuses a stream's `update` output mode for a sink that writes a file: each epoch hands
/// over only the rows it changed, so the file would hold the last epoch's changes alone (Spark's
/// file sinks refuse it too).
pub fn refuse_update_mode(ctx: &SinkContext) -> Result<(), String> {
    match ctx.updating {
        true => Err("this stream's `update` output mode hands over only the rows each epoch changed, so the file would hold the last epoch's changes alone: use `output_mode: complete` (the whole table, the file replaced each epoch), or a database sink with `mode: upsert`".into()),
        false => Ok(()),
    }
}

/// Implemented by every sink config.
pub trait BuildSink: Send + Sync {
    /// Builds the sink for a result with `ctx.input`'s columns; an `Err` (a sentence for the user)
    /// when the settings do not fit them.
    fn build(&self, ctx: &SinkContext) -> Result<Box<dyn Sink>, String>;
    /// The file the sink writes, as written in the pipeline (relative to its directory), for
    /// plans and run summaries; `None` for sinks that write no file.
    fn output_path(&self) -> Option<&Path> {
        None
    }
    /// Whether `output_path` names a folder the sink writes files into, in a stream that
    /// appends (`stream_appends`) or not.
    fn writes_a_folder(&self, _stream_appends: bool) -> bool {
        false
    }
}

/// Whether a sink wants more rows of the current result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// It takes more rows.
    More,
    /// It has all it will use (a `limit` reached, standard output closed, a stop requested):
    /// when every sink says so, the run stops reading its input.
    Enough,
}

/// A sink receives each result (the one of a batch run, or each epoch's) as a sequence of
/// batches between `begin` and `commit`, so a result larger than memory streams through.
pub trait Sink: Send {
    /// Checks what the sink needs from outside the pipeline (an environment variable) before
    /// the run reads any data, so that a run that cannot write fails before the other sinks
    /// have written; `runner validate` does not ask (it may run where the secret is not set).
    fn ready(&self) -> Result<()> {
        Ok(())
    }
    /// Starts the result of epoch `epoch` (always 0 in batch mode).
    fn begin(&mut self, epoch: u64) -> Result<()>;
    /// The next rows of the result, in order.
    fn write(&mut self, rows: &RecordBatch) -> Result<Flow>;
    /// The result is complete: publish it. Files are replaced atomically here, so a reader
    /// sees the old or the new one; a result that never commits leaves the old one.
    fn commit(&mut self) -> Result<()>;
    /// Closed for good (standard output closed by its reader): a stream whose every sink is
    /// closed stops, as a batch run stops reading.
    fn closed(&self) -> bool {
        false
    }
    /// It prints on the terminal (standard output is one): a progress bar there goes first.
    fn prints_to_terminal(&self) -> bool {
        false
    }
    /// It writes standard output, so it is closed once that pipe's reader goes: a stream of
    /// such sinks alone watches for it, to stop even while no rows come.
    fn closes_with_stdout(&self) -> bool {
        false
    }
    /// What the sink left out or drew otherwise than asked, told at the end of the run with
    /// the source's and the steps' warnings (and kept by the run summary).
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Rows handed to a sink at a time: a large result arrives in pieces, as it would streamed.
pub const WRITE_ROWS: usize = 1 << 16;

/// Writes a whole result as epoch `epoch`, in pieces of `WRITE_ROWS`, until the sink has
/// enough.
pub fn write_result(sink: &mut dyn Sink, result: &RecordBatch, epoch: u64) -> Result<()> {
    sink.begin(epoch)?;
    let mut start = 0;
    loop {
        let rows = WRITE_ROWS.min(result.num_rows() - start);
        if sink.write(&result.slice(start, rows))? == Flow::Enough {
            break;
        }
        start += rows;
        if start >= result.num_rows() {
            break;
        }
    }
    sink.commit()
}
