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

/// The general operators of the word count (`--no-fusion`), each on the play cut into the
/// chunks the batch driver runs them on (2048 lines), with the output of the one before.
fn unfused(c: &mut Criterion) {
    use runner::data::{text_batch, text_schema};
    use runner::transforms::{BuildContext, BuildTransform, StageKind};
    let text = play();
    let lines: Vec<&str> = text.lines().collect();
    let chunks: Vec<_> = lines.chunks(2048).map(|c| text_batch("line", c)).collect();
    let build = |config: &dyn BuildTransform, input| {
        config
            .build(&BuildContext {
                input,
                base_dir: std::path::Path::new("."),
            })
            .expect("builds")
    };
    let map = |stage: &runner::transforms::Stage, batches: &[arrow_array::RecordBatch]| {
        let StageKind::Map(map) = &stage.kind else {
            panic!("a row-wise step")
        };
        batches
            .iter()
            .map(|b| map.apply(b).expect("applies"))
            .collect::<Vec<_>>()
    };
    let tokenize: runner::transforms::tokenize::TokenizeConfig =
        serde_saphyr::from_str("{lowercase: true, strip_punctuation: all}").unwrap();
    let line_schema = text_schema("line");
    let tokenize = build(&tokenize, &line_schema);
    let stopwords: runner::transforms::stopwords::StopwordsConfig =
        serde_saphyr::from_str("{language: english}").unwrap();
    let stopwords = build(&stopwords, &tokenize.output);
    let group_count: runner::transforms::group_count::GroupCountConfig =
        serde_saphyr::from_str("{by: word}").unwrap();
    let group_count = build(&group_count, &stopwords.output);
    let words = map(&tokenize, &chunks);
    let kept = map(&stopwords, &words);

    let mut group = c.benchmark_group("unfused");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.sample_size(20);
    group.bench_function("tokenize", |b| b.iter(|| map(&tokenize, &chunks).len()));
    group.bench_function("stopwords", |b| b.iter(|| map(&stopwords, &words).len()));
    group.bench_function("group_count", |b| {
        let StageKind::Aggregate(aggregation) = &group_count.kind else {
            panic!("an aggregation")
        };
        b.iter(|| {
            let mut state = aggregation.new_state();
            for batch in &kept {
                state.update(batch).expect("counts");
            }
            state.result().expect("result").num_rows()
        })
    });
    group.finish();
}

criterion_group!(wordcount, benches, unfused);
criterion_main!(wordcount);
