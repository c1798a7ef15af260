//! Input and output helpers every layer shares: replacing files atomically (sinks, fetch,
//! checkpoints and run summaries all write through it).

pub mod atomic;
pub mod console;
pub mod plain_log;
