//! The socket source's line reader: bytes of one connection, read in pieces of any size, must
//! become the same lines as splitting the whole input at `\n` (the last line kept without one),
//! with lines longer than `max_line_bytes` skipped and counted; `decode` then gives one row per
//! line (a trailing `\r` removed, bad UTF-8 replaced). First byte: max_line_bytes; second: the
//! seed of the read sizes.
#![no_main]

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use libfuzzer_sys::fuzz_target;
use runner::data::cell;
use runner::sources::socket::{LineReader, SocketMode, SocketSourceConfig};
use runner::sources::{BuildSource, BuiltSource, SourceContext};

fuzz_target!(|data: &[u8]| {
    let [max, seed, input @ ..] = data else {
        return;
    };
    let max_line_bytes = 1 + *max as usize % 48;

    // The reader, fed in pseudo-random read sizes.
    let mut reader = LineReader::new(max_line_bytes);
    let long_lines = AtomicU64::new(0);
    let mut chunks = Vec::new();
    let mut state = u64::from(*seed) | 1;
    let mut rest = input;
    while !rest.is_empty() {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let n = (1 + (state >> 33) as usize % 24).min(rest.len());
        let chunk = reader.push(&rest[..n], &long_lines);
        if !chunk.is_empty() {
            chunks.push(chunk);
        }
        rest = &rest[n..];
    }
    chunks.extend(reader.finish());
    for chunk in &chunks {
        assert_eq!(chunk.last(), Some(&b'\n'), "chunks hold whole lines");
    }

    // The obvious way.
    let mut pieces: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
    if pieces.last().is_some_and(|last| last.is_empty()) {
        pieces.pop();
    }
    let skipped = pieces.iter().filter(|p| p.len() > max_line_bytes).count() as u64;
    let expected: Vec<String> = pieces
        .iter()
        .filter(|p| p.len() <= max_line_bytes)
        .map(|p| String::from_utf8_lossy(p.strip_suffix(b"\r").unwrap_or(p)).into_owned())
        .collect();
    assert_eq!(long_lines.load(Ordering::Relaxed), skipped, "skipped lines");

    let config = SocketSourceConfig {
        host: None,
        port: 1,
        mode: SocketMode::Connect,
        reconnect: false,
        max_line_bytes,
        max_clients: 64,
        idle_timeout: None,
        connect_timeout: None,
        column: "line".into(),
        format: Default::default(),
        columns: None,
        delimiter: None,
        on_error: Default::default(),
    };
    let context = SourceContext {
        base_dir: Path::new("."),
        streaming: false,
    };
    let Ok(BuiltSource::Stream(source)) = config.build(&context) else {
        panic!("a socket source builds");
    };
    let Ok(batch) = source.decode(&chunks) else {
        panic!("the socket source's decoding cannot fail")
    };
    let lines: Vec<String> = (0..batch.num_rows())
        .map(|row| cell(batch.column(0).as_ref(), row).to_text())
        .collect();
    assert_eq!(lines, expected);
});
