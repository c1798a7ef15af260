//! Input events and the progress bar. A batch source is wrapped so that each morsel read
//! publishes an `InputRead` event (once per MiB, never per row); the bar, on a terminal only,
//! is a subscriber that draws them for an input of known size. In a log file (stderr not a
//! terminal) nothing is drawn.

use std::io::IsTerminal;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::error::Result;
use crate::events::{Bus, Event, Subscriber};
use crate::exec::BuiltPipeline;
use crate::sources::{BatchSource, BuiltSource, Morsel, Morsels, SourceCounters};

/// Whether bars may be drawn: stderr is a terminal that can redraw a line.
pub fn enabled() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// Wraps a batch pipeline's source so that reading it publishes `InputSize` and `InputRead`
/// events (once per morsel of about 1 MiB, never per row). Does nothing for streams.
pub fn meter(pipeline: &mut BuiltPipeline, bus: &Bus) {
    if !matches!(pipeline.source, BuiltSource::Batch(_)) {
        return;
    }
    let placeholder = BuiltSource::Batch(Box::new(Detached));
    let BuiltSource::Batch(inner) = std::mem::replace(&mut pipeline.source, placeholder) else {
        unreachable!("checked above")
    };
    pipeline.source = BuiltSource::Batch(Box::new(WithProgress {
        inner,
        bus: bus.clone(),
        read: Default::default(),
    }));
}

/// The bar on a terminal: a subscriber to the input events, cleared when the run ends.
pub struct Bar {
    bar: ProgressBar,
}

impl Bar {
    /// A bar that stays hidden until the input's size is known.
    pub fn new() -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template(
                "reading {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Bar { bar }
    }
}

impl Default for Bar {
    fn default() -> Self {
        Bar::new()
    }
}

impl Subscriber for Bar {
    fn notify(&mut self, event: &Event) {
        match event {
            // Drawn only for an input of known size.
            Event::InputSize { bytes } if *bytes > 0 => {
                self.bar.set_length(*bytes);
                self.bar.set_draw_target(ProgressDrawTarget::stderr());
            }
            Event::InputRead { bytes } => self.bar.inc(*bytes),
            // Cleared before results print (on the same terminal) and at the end.
            Event::OutputStarts | Event::RunFinished { .. } => self.bar.finish_and_clear(),
            _ => {}
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        // A failed run publishes no end: clear the bar anyway.
        self.bar.finish_and_clear();
    }
}

struct WithProgress {
    inner: Box<dyn BatchSource>,
    bus: Bus,
    read: std::sync::Arc<Read>,
}

/// What the run took of its input.
#[derive(Default)]
struct Read {
    /// The bytes of the morsels handed on.
    bytes: std::sync::atomic::AtomicU64,
    /// Morsels handed on, of an input read by index.
    morsels: std::sync::atomic::AtomicUsize,
    /// Whether every morsel was handed on (a limit reached or a closed pipe stops before).
    ended: std::sync::atomic::AtomicBool,
}

impl BatchSource for WithProgress {
    fn raw_text_lines(&self) -> bool {
        self.inner.raw_text_lines()
    }

    fn raw_csv_records(&self) -> bool {
        self.inner.raw_csv_records()
    }

    fn csv_layout(&self) -> Option<crate::sources::records::CsvLayout> {
        self.inner.csv_layout()
    }

    fn stop_reading(&self) {
        self.inner.stop_reading()
    }

    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn open(&self) -> Result<Morsels<'_>> {
        let morsels = self.inner.open()?;
        // Known only now: opening may have downloaded the input.
        if let Some(total) = self.inner.input_bytes() {
            self.bus.publish(Event::InputSize { bytes: total });
        }
        use std::sync::atomic::Ordering::Relaxed;
        let bus = self.bus.clone();
        let taken = self.read.clone();
        taken.morsels.store(0, Relaxed);
        taken.ended.store(false, Relaxed);
        let advance = move |morsel: Result<Morsel>| {
            if let Ok(m) = &morsel {
                let bytes = m.bytes.len() as u64;
                taken.bytes.fetch_add(bytes, Relaxed);
                bus.publish(Event::InputRead { bytes });
            }
            morsel
        };
        let taken = self.read.clone();
        Ok(match morsels {
            Morsels::Sequential(iter) => Morsels::Sequential(Box::new(iter.map(advance).chain(
                std::iter::from_fn(move || {
                    taken.ended.store(true, Relaxed);
                    None
                }),
            ))),
            Morsels::Indexed { count, read } => {
                taken.ended.store(count == 0, Relaxed);
                Morsels::Indexed {
                    count,
                    read: Box::new(move |i| {
                        let morsel = advance(read(i));
                        if taken.morsels.fetch_add(1, Relaxed) + 1 == count {
                            taken.ended.store(true, Relaxed);
                        }
                        morsel
                    }),
                }
            }
        })
    }

    fn decode_each(
        &self,
        morsel: Morsel,
        emit: &mut dyn FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        self.inner.decode_each(morsel, emit)
    }

    fn recycle(&self, bytes: Vec<u8>) {
        self.inner.recycle(bytes)
    }

    fn warnings(&self) -> Vec<String> {
        self.inner.warnings()
    }

    fn counters(&self) -> SourceCounters {
        self.inner.counters()
    }

    fn input_bytes(&self) -> Option<u64> {
        self.inner.input_bytes()
    }

    /// The input's size once every morsel was handed on (or the bytes handed on, where the
    /// listed size is less); before, the bytes of those that were (a `limit` reached, or
    /// `| head -1`, reads a few MB of a large file).
    fn bytes_read(&self) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let whole = self.inner.input_bytes()?;
        let handed = self.read.bytes.load(Relaxed);
        // A file of the kernel's is listed smaller than what it gives (`/proc`: empty).
        Some(match self.read.ended.load(Relaxed) {
            true => whole.max(handed),
            false => handed,
        })
    }
}

/// Stands in for the source while it is being wrapped.
struct Detached;

impl BatchSource for Detached {
    fn schema(&self) -> SchemaRef {
        std::sync::Arc::new(arrow_schema::Schema::empty())
    }

    fn open(&self) -> Result<Morsels<'_>> {
        Ok(Morsels::Sequential(Box::new(std::iter::empty())))
    }

    fn decode_each(&self, _: Morsel, _: &mut dyn FnMut(RecordBatch) -> Result<()>) -> Result<()> {
        Ok(())
    }

    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}
