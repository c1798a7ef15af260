//! Sources: one file per component. A batch source is read sequentially in large morsels cut at
//! record boundaries; decoding a morsel into batches is independent and runs on any worker.

pub mod fetch;
pub mod file;

use std::path::Path;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use crate::error::Result;

/// What a source config needs to build its runtime.
pub struct SourceContext<'a> {
    /// The pipeline file's directory, for relative paths.
    pub base_dir: &'a Path,
}

/// Implemented by every source config.
pub trait BuildSource: Send + Sync {
    fn build(&self, ctx: &SourceContext) -> Result<Box<dyn BatchSource>, String>;
}

/// A raw piece of input, cut at a record boundary.
pub struct Morsel {
    pub bytes: Vec<u8>,
    /// Where it came from, for error messages.
    pub origin: std::sync::Arc<str>,
    /// The 1-based number of its first line in `origin`.
    pub first_line: u64,
}

pub trait BatchSource: Send + Sync {
    /// The columns every batch from this source has.
    fn schema(&self) -> SchemaRef;
    /// Opens the input (fetching it first if configured) and yields morsels in input order.
    fn open(&self) -> Result<Box<dyn Iterator<Item = Result<Morsel>> + Send + '_>>;
    /// Turns one morsel into record batches; called from any worker thread.
    fn decode(&self, morsel: Morsel) -> Result<Vec<RecordBatch>>;
    /// Things worth telling the user at the end (replaced or skipped bad lines, ...).
    fn warnings(&self) -> Vec<String>;
}
