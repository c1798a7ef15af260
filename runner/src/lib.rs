//! runner: data pipelines declared in YAML, run as batch jobs or triggered micro-batch streams.
//!
//! Layout: `config` reads and validates pipeline files, `registry` maps YAML `type:` names to
//! components, `sources`/`transforms`/`sinks` hold one component per file, `exec` wires them.

pub mod cancel;
pub mod config;
pub mod counts;
pub mod data;
pub mod docs;
pub mod error;
pub mod events;
pub mod exec;
pub mod explain;
pub mod expr;
pub mod io;
pub mod lock;
pub mod plan;
pub mod plugin;
pub mod progress;
pub mod redact;
pub mod registry;
pub mod render;
pub mod schedule;
pub mod schema;
pub mod settings;
pub mod sinks;
pub mod sources;
pub mod spark;
pub mod summary;
pub mod testing;
pub mod tokenizer;
pub mod transforms;
pub mod ui;

pub use error::{Error, Result};
