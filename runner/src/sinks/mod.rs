//! Sinks: one file per component. A sink receives the pipeline's result (once in batch mode,
//! once per epoch when streaming).

pub mod chart;
pub mod csv;
pub mod socket;
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
}

/// Implemented by every sink config.
pub trait BuildSink: Send + Sync {
    fn build(&self, ctx: &SinkContext) -> Result<Box<dyn Sink>, String>;
    /// The file the sink writes, as written in the pipeline (relative to its directory), for
    /// plans and run summaries; `None` for sinks that write no file.
    fn output_path(&self) -> Option<&Path> {
        None
    }
}

pub trait Sink: Send {
    /// Writes the result of epoch `epoch` (always 0 in batch mode). Files are replaced
    /// atomically: a reader sees the old or the new one.
    fn write(&mut self, result: &RecordBatch, epoch: u64) -> Result<()>;
}
