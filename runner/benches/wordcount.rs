//! Micro-benchmarks of the word-count hot path: the tokenizer alone, and counting into the
//! fused path's table and into the generic group_count state.
//! `cargo bench -p runner --bench wordcount` (reads the play from data/ or ../shared/data/).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use runner::exec::fused::{WordCounts, WordHasher};
use runner::tokenizer::{StripPunctuation, Tokenizer};

fn play() -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for path in [
        root.join("data/RomeoAndJuliet.txt"),
        root.join("../shared/data/RomeoAndJuliet.txt"),
    ] {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text.repeat(20);
        }
    }
    // Without the play, a synthetic text of similar shape.
    "Romeo, Romeo! wherefore art thou Romeo? I’ll deny thy father.\r\n".repeat(60_000)
}

fn tokenizer() -> Tokenizer {
    Tokenizer::new(true, StripPunctuation::All, true)
}

fn benches(c: &mut Criterion) {
    let text = play();
    let tokenizer = tokenizer();
    let mut group = c.benchmark_group("wordcount");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.sample_size(20);

    group.bench_function("tokenize only", |b| {
        let mut scratch = Vec::new();
        b.iter(|| {
            let mut words = 0usize;
            tokenizer.words(&text, &mut scratch, |_| words += 1);
            words
        })
    });

    group.bench_function("tokenize + count (fused table)", |b| {
        let hasher = WordHasher::default();
        let mut scratch = Vec::new();
        b.iter(|| {
            let mut counts = WordCounts::new(hasher.clone());
            runner::exec::fused::count_text(&mut counts, &tokenizer, &text, &mut scratch);
            counts.len()
        })
    });

    let words: Vec<String> = {
        let mut words = Vec::new();
        tokenizer.words(&text, &mut Vec::new(), |w| {
            words.push(String::from_utf8_lossy(w).into_owned())
        });
        words
    };
    group.throughput(Throughput::Elements(words.len() as u64));
    group.bench_function("count words (fused table)", |b| {
        let hasher = WordHasher::default();
        b.iter(|| {
            let mut counts = WordCounts::new(hasher.clone());
            for word in &words {
                counts.add(word.as_bytes(), 1);
            }
            counts.len()
        })
    });
    group.finish();
}

criterion_group!(wordcount, benches);
criterion_main!(wordcount);
