//! What a pipeline test puts in place of the outside world: a stream source that hands the
//! real source's decoder the test's epochs (so rows are read as the source reads them), and
//! sinks that capture each epoch's result instead of writing anywhere.

use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use crate::error::Result;
use crate::sinks::{Flow, Sink};
use crate::sources::{Chunk, Delivery, SourcePosition, StreamSource};

/// A stream source's decoding with the test's input: each epoch's lines (whole lines, as the
/// source's reader would cut them) arrive as one delivery that ends the epoch.
pub struct FedStream {
    /// The pipeline's own source, whose decoder reads the lines.
    pub inner: Box<dyn StreamSource>,
    /// The lines of each epoch, in order: one delivery per epoch.
    pub epochs: Vec<Vec<String>>,
}

impl StreamSource for FedStream {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn start(
        &self,
        tx: tokio::sync::mpsc::Sender<Delivery>,
        _from: Option<SourcePosition>,
        _redo_until: Option<SourcePosition>,
    ) -> tokio::task::JoinHandle<std::result::Result<(), String>> {
        let chunks = self.inner.fed(&self.epochs);
        tokio::spawn(async move {
            let count = chunks.len();
            for (i, chunk) in chunks.into_iter().enumerate() {
                let delivery = Delivery {
                    chunk,
                    resume_at: None,
                    ends_epoch: true,
                    caught_up: i + 1 == count,
                };
                if tx.send(delivery).await.is_err() {
                    break;
                }
            }
            Ok(())
        })
    }

    fn decode(&self, chunks: &[Chunk]) -> Result<RecordBatch> {
        self.inner.decode(chunks)
    }

    fn passed(&self, chunks: &[Chunk]) {
        self.inner.passed(chunks)
    }

    fn marks_epochs(&self) -> bool {
        true
    }

    fn raw_text_lines(&self) -> bool {
        self.inner.raw_text_lines()
    }

    fn warnings(&self) -> Vec<String> {
        self.inner.warnings()
    }
}

/// One epoch's id and the rows a sink received in it.
type EpochRows = (u64, Vec<RecordBatch>);

/// Every epoch's result a sink would have received, in order.
#[derive(Clone, Default)]
pub struct Captured(pub Arc<Mutex<Vec<EpochRows>>>);

impl Captured {
    /// The epochs, each with its rows in one batch.
    pub fn epochs(&self, schema: &SchemaRef) -> Vec<(u64, RecordBatch)> {
        self.0
            .lock()
            .map(|epochs| {
                epochs
                    .iter()
                    .map(|(epoch, batches)| (*epoch, crate::data::concat(schema, batches)))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A sink that keeps what it is given.
pub struct CaptureSink(pub Captured);

impl Sink for CaptureSink {
    fn begin(&mut self, epoch: u64) -> Result<()> {
        if let Ok(mut epochs) = self.0 .0.lock() {
            epochs.push((epoch, Vec::new()));
        }
        Ok(())
    }

    fn write(&mut self, rows: &RecordBatch) -> Result<Flow> {
        if let Ok(mut epochs) = self.0 .0.lock() {
            if let Some((_, batches)) = epochs.last_mut() {
                batches.push(rows.clone());
            }
        }
        Ok(Flow::More)
    }

    fn commit(&mut self) -> Result<()> {
        Ok(())
    }
}
