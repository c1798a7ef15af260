//! The Mastodon source's event handling: an SSE body, cut into pieces anywhere, becomes the
//! same row lines as the body in one piece, every line decodes into exactly one row, and
//! nothing panics. First byte: the filters and the seed of the cuts.
#![no_main]

use std::sync::atomic::Ordering;

use libfuzzer_sys::fuzz_target;
use runner::sources::mastodon::{body_to_lines, decode_rows, status_schema, EventStats, Filters};

fuzz_target!(|data: &[u8]| {
    let Some((&options, body)) = data.split_first() else {
        return;
    };
    let filters = Filters {
        only_with_tags: options & 1 != 0,
        languages: if options & 2 != 0 {
            vec!["en".into()]
        } else {
            vec![]
        },
    };

    let whole_stats = EventStats::default();
    let (whole, whole_error) = body_to_lines(&[body], &filters, &whole_stats, 1 << 20);

    let mut pieces = Vec::new();
    let mut state = u64::from(options >> 2) | 1;
    let mut rest = body;
    while !rest.is_empty() {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let n = (1 + (state >> 33) as usize % 32).min(rest.len());
        pieces.push(&rest[..n]);
        rest = &rest[n..];
    }
    let cut_stats = EventStats::default();
    let (cut, cut_error) = body_to_lines(&pieces, &filters, &cut_stats, 1 << 20);
    if whole_error.is_none() && cut_error.is_none() {
        assert_eq!(whole, cut, "the cuts changed the events");
    }
    // Invalid UTF-8 breaks the stream however the body is cut.
    assert_eq!(
        whole_error.is_some(),
        cut_error.is_some(),
        "{whole_error:?} vs {cut_error:?}"
    );

    for (lines, stats) in [(&whole, &whole_stats), (&cut, &cut_stats)] {
        assert_eq!(stats.updates.load(Ordering::Relaxed), lines.len() as u64);
        let decoding = EventStats::default();
        let batch = decode_rows(&status_schema(), lines, &decoding);
        assert_eq!(
            decoding.malformed.load(Ordering::Relaxed),
            0,
            "a row line did not decode"
        );
        assert_eq!(batch.num_rows(), lines.len());
    }
});
