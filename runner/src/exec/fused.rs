//! The word-count kernel: `tokenize → [steps that decide by the word] → group_count` on a
//! source of raw text lines (the plan's `count_split_text` rule) runs as one loop from input
//! bytes into a per-worker hash table, with no batch, string or row in between.
//! Each token of up to 16 bytes is normalised in two registers (lowercase by arithmetic,
//! punctuation removed with `pext` where the CPU has BMI2), hashed, and its table slot
//! prefetched; lookups run in groups (`counts::PendingWords`) so their cache misses overlap.
//! Longer tokens and tokens with case-changing non-ASCII take the tokenizer's own path. On
//! AVX-512 CPUs `fused_avx512_blocks` normalises whole blocks instead. Steps that decide by the
//! word alone (stopwords, a filter on the word, lowercase) run once per distinct word after
//! counting (the same result either way, and the table is far smaller than the input).
//! Everything else uses the generic path;
//! `runner run --no-fusion` forces the generic path, and the tests compare the two.

use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch};
use arrow_schema::SchemaRef;

use super::BuiltStage;
use crate::counts::word_prefix;
pub use crate::counts::{WordCounts, WordHasher};
use crate::error::{Error, Result};
use crate::plan::Fusion;
use crate::tokenizer::{StripPunctuation, Tokenizer};
use crate::transforms::{Aggregation, PerValue, StageKind, TextSplit};

/// The parts of the pipeline the word-count kernel needs, read from what the fused steps
/// declare (see `plan::rules`).
pub struct WordCount<'a> {
    /// The split step's tokenizer, whose settings the kernel applies.
    pub tokenizer: &'a Tokenizer,
    /// Steps applied to the distinct words after counting, with what each declares.
    per_value: Vec<(&'a BuiltStage, PerValue)>,
    /// The columns of the words (the split step's output: the word alone).
    words_schema: SchemaRef,
    /// The columns the count emits (the word and its count).
    pub output: SchemaRef,
    /// Whether to sort the counts as `group_count` does (most frequent first, ties by word); false
    /// when a later step orders the rows anyway.
    pub order_rows: bool,
    /// The count step, whose memory limit the tables keep to (spilled past it).
    pub aggregation: &'a dyn Aggregation,
}

impl<'a> WordCount<'a> {
    /// `None` when the steps do not declare what the plan says they do (they always do).
    pub fn new(fusion: &Fusion, stages: &'a [BuiltStage]) -> Option<Self> {
        let map = |i: usize| match &stages.get(i)?.stage.kind {
            StageKind::Map(m) => Some(m.as_ref()),
            _ => None,
        };
        let Some(TextSplit::Words { tokenizer, .. }) = map(fusion.split?)?.splits_text() else {
            return None;
        };
        let StageKind::Aggregate(aggregation) = &stages.get(fusion.count)?.stage.kind else {
            return None;
        };
        let per_value = fusion
            .per_value
            .iter()
            .map(|&i| Some((&stages[i], map(i)?.per_value()?)))
            .collect::<Option<Vec<_>>>()?;
        Some(WordCount {
            tokenizer,
            per_value,
            words_schema: stages[fusion.split?].stage.output.clone(),
            output: stages[fusion.count].stage.output.clone(),
            order_rows: fusion.order_rows,
            aggregation: aggregation.as_ref(),
        })
    }

    /// One worker's `table` as a sorted run of the count's spill: its words after the
    /// per-value steps (a step that decides by the word alone gives the same on any part of
    /// the words; words that one maps to the same value are added up here within the run
    /// and across runs by the merge), distinct and in word order, nulls first.
    pub fn sorted_run(&self, table: WordCounts) -> Result<RecordBatch> {
        let mut words = StringBuilder::with_capacity(table.len(), table.len() * 8);
        let mut values = Vec::with_capacity(table.len());
        table.for_each_in_part(0, 1, None, |word, count, _| {
            words.append_value(word_text(word));
            values.push(count as i64);
        });
        drop(table);
        let (words, counts) =
            self.apply_per_value(Arc::new(words.finish()), Arc::new(Int64Array::from(values)))?;
        let (words, counts) = in_order(words, counts, false);
        RecordBatch::try_new(self.output.clone(), vec![words, counts])
            .map_err(|e| Error::runtime(format!("counted words: {e}")))
    }

    /// The per-value steps applied to the distinct `words` and their `counts`: a step that
    /// keeps rows keeps their counts; a step that maps values adds up the counts of values
    /// that became one.
    fn apply_per_value(
        &self,
        mut words: ArrayRef,
        mut counts: ArrayRef,
    ) -> Result<(ArrayRef, ArrayRef)> {
        for (built, declared) in &self.per_value {
            let StageKind::Map(map) = &built.stage.kind else {
                continue;
            };
            let fail = |why: String| built.failed(why);
            let batch = RecordBatch::try_new(self.words_schema.clone(), vec![words.clone()])
                .map_err(|e| fail(e.to_string()))?;
            let out = map
                .apply_to_distinct(&batch)
                .map_err(|e| fail(e.to_string()))?;
            let before = words.as_string::<i32>();
            match *declared {
                PerValue::Keeps { column } => {
                    // The kept rows, in order: find each among the (distinct) words given.
                    let kept = out.column(column).as_string::<i32>();
                    let mut indices = Vec::with_capacity(kept.len());
                    let mut at = 0usize;
                    for word in kept.iter() {
                        while at < before.len() && Some(before.value(at)) != word {
                            at += 1;
                        }
                        if at == before.len() {
                            return Err(fail("it declared that it keeps or drops rows, but returned a row it was not given".into()));
                        }
                        indices.push(at as u32);
                        at += 1;
                    }
                    let indices = arrow_array::UInt32Array::from(indices);
                    let take = |array: &ArrayRef| {
                        arrow_select::take::take(array.as_ref(), &indices, None)
                            .expect("indices are in bounds")
                    };
                    (words, counts) = (take(&words), take(&counts));
                }
                PerValue::Maps { column } => {
                    let mapped = out.column(column).as_string::<i32>();
                    if mapped.len() != before.len() {
                        return Err(fail(
                            "it declared one row out per row in, but changed the number of rows"
                                .into(),
                        ));
                    }
                    let values = counts.as_primitive::<Int64Type>();
                    // Values that became equal: one row, counts added, first seen first.
                    let mut index: hashbrown::HashMap<&str, usize> = hashbrown::HashMap::new();
                    let mut merged_words: Vec<Option<&str>> = Vec::new();
                    let mut merged_counts: Vec<i64> = Vec::new();
                    for (row, word) in mapped.iter().enumerate() {
                        let slot = match word {
                            Some(word) => *index.entry(word).or_insert_with(|| {
                                merged_words.push(Some(word));
                                merged_counts.push(0);
                                merged_words.len() - 1
                            }),
                            None => {
                                merged_words.push(None);
                                merged_counts.push(0);
                                merged_words.len() - 1
                            }
                        };
                        merged_counts[slot] += values.value(row);
                    }
                    let new_words: ArrayRef =
                        Arc::new(arrow_array::StringArray::from(merged_words));
                    let new_counts: ArrayRef = Arc::new(Int64Array::from(merged_counts));
                    (words, counts) = (new_words, new_counts);
                }
            }
        }
        Ok((words, counts))
    }

    /// The counts of all `tables` (one per worker, same hasher) as the group_count stage would
    /// emit them (stop words removed). Built from several ranges of the tables at once, each
    /// word copied straight into the Arrow column; the last two tables are joined rather than
    /// merged (each word is emitted from the first table that has it, with both counts).
    pub fn result(&self, mut tables: Vec<WordCounts>) -> Result<RecordBatch> {
        use rayon::prelude::*;
        if tables.is_empty() {
            // No input at all (an empty file): one empty table gives the empty result.
            tables.push(WordCounts::new(WordHasher::default()));
        }
        while tables.len() > 2 {
            // Pairwise, in parallel.
            let mut pairs = Vec::new();
            while tables.len() >= 2 {
                let (a, b) = (tables.pop(), tables.pop());
                pairs.extend(a.zip(b));
            }
            tables.extend(
                pairs
                    .into_par_iter()
                    .map(|(a, b)| a.merge(b))
                    .collect::<Vec<_>>(),
            );
        }
        let words: usize = tables.iter().map(WordCounts::len).sum();
        let parts = if words < 1 << 14 {
            1
        } else {
            4 * rayon::current_num_threads()
        };
        let tasks: Vec<(usize, usize)> = (0..tables.len())
            .flat_map(|table| (0..parts).map(move |part| (table, part)))
            .collect();
        let pieces: Vec<(ArrayRef, ArrayRef)> = tasks
            .into_par_iter()
            .map(|(table, part)| {
                let mut words = StringBuilder::new();
                let mut values = Vec::new();
                let own = &tables[table];
                let other = match tables.len() {
                    2 => Some(&tables[1 - table]),
                    _ => None,
                };
                own.for_each_in_part(part, parts, other, |word, count, elsewhere| {
                    if table == 1 && elsewhere > 0 {
                        return; // emitted with table 0's
                    }
                    let total = if table == 0 { count + elsewhere } else { count };
                    words.append_value(word_text(word));
                    values.push(total as i64);
                });
                let words: ArrayRef = Arc::new(words.finish());
                let values: ArrayRef = Arc::new(Int64Array::from(values));
                (words, values)
            })
            .collect();
        let column = |pick: fn(&(ArrayRef, ArrayRef)) -> &ArrayRef| {
            let arrays: Vec<&dyn Array> = pieces.iter().map(|p| pick(p).as_ref()).collect();
            arrow_select::concat::concat(&arrays).expect("pieces of one column share a type")
        };
        let (mut words, mut values) = self.apply_per_value(column(|p| &p.0), column(|p| &p.1))?;
        if self.order_rows {
            // As group_count orders them: most frequent first, ties by word.
            (words, values) = in_order(words, values, true);
        }
        Ok(
            RecordBatch::try_new(self.output.clone(), vec![words, values])
                .expect("word and count columns match group_count's output"),
        )
    }
}

/// Distinct `words` and their `counts` in word order (nulls first), or, `most_frequent_first`,
/// by count descending and then so. Each row's key (its count, then its word's first 8 bytes)
/// lies beside it, so that most comparisons read no word: with millions of words they lie far
/// apart in memory (24 million distinct words: 49 s comparing words, 11 s so).
fn in_order(words: ArrayRef, counts: ArrayRef, most_frequent_first: bool) -> (ArrayRef, ArrayRef) {
    let (text, number) = (words.as_string::<i32>(), counts.as_primitive::<Int64Type>());
    let mut keyed: Vec<(u64, bool, u64, u32)> = (0..text.len())
        .map(|row| {
            let rank = match most_frequent_first {
                true => u64::MAX - number.value(row).max(0) as u64,
                false => 0,
            };
            match text.is_valid(row) {
                true => (
                    rank,
                    true,
                    word_prefix(text.value(row).as_bytes()),
                    row as u32,
                ),
                false => (rank, false, 0, row as u32),
            }
        })
        .collect();
    let compare = |a: &(u64, bool, u64, u32), b: &(u64, bool, u64, u32)| {
        (a.0, a.1, a.2)
            .cmp(&(b.0, b.1, b.2))
            .then_with(|| text.value(a.3 as usize).cmp(text.value(b.3 as usize)))
    };
    if keyed.len() > 1 << 16 {
        use rayon::slice::ParallelSliceMut;
        keyed.par_sort_unstable_by(compare);
    } else {
        keyed.sort_unstable_by(compare);
    }
    let order = arrow_array::UInt32Array::from_iter_values(keyed.into_iter().map(|k| k.3));
    let take = |array: &ArrayRef| {
        arrow_select::take::take(array.as_ref(), &order, None).expect("indices are in bounds")
    };
    (take(&words), take(&counts))
}

/// A counted word as text. Words are valid UTF-8: cut from valid text at ASCII bytes or whole
/// characters (checked anyway: a wrong word must not become a wrong string).
fn word_text(word: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(word) {
        Ok(word) => std::borrow::Cow::Borrowed(word),
        Err(_) => String::from_utf8_lossy(word),
    }
}

/// The kernels `count_text` chooses from, fastest first. They count the same; the tests and
/// the fuzz target compare every one this CPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountKernel {
    /// AVX-512 BW/VL/VBMI2 normalising whole blocks (`fused_avx512_blocks`), with `Avx512Words`
    /// for the segments it hands on.
    Avx512Blocks,
    /// AVX-512 BW/VL/VBMI2 word by word (`short_words_avx512`).
    Avx512Words,
    /// The register kernel with BMI2's `pext`.
    Bmi2,
    /// The register kernel with a portable compaction.
    Portable,
}

impl CountKernel {
    /// The kernels this CPU can run, fastest first.
    pub fn available() -> Vec<CountKernel> {
        let mut kernels = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if crate::short_words_avx512::available() {
                kernels.push(CountKernel::Avx512Blocks);
                kernels.push(CountKernel::Avx512Words);
            }
            if crate::short_words::bmi2_available() {
                kernels.push(CountKernel::Bmi2);
            }
        }
        kernels.push(CountKernel::Portable);
        kernels
    }

    /// The fastest kernel this CPU runs.
    #[inline]
    pub fn best() -> CountKernel {
        #[cfg(target_arch = "x86_64")]
        {
            if crate::short_words_avx512::available() {
                return CountKernel::Avx512Blocks;
            }
            if crate::short_words::bmi2_available() {
                return CountKernel::Bmi2;
            }
        }
        CountKernel::Portable
    }
}

/// Counts every word of `text`, normalised by `tokenizer`, into `counts`.
#[inline]
pub fn count_text(
    counts: &mut WordCounts,
    tokenizer: &Tokenizer,
    text: &str,
    scratch: &mut Vec<u8>,
) {
    count_text_using(CountKernel::best(), counts, tokenizer, text, scratch)
}

/// [`count_text`] with a given kernel; one the CPU cannot run falls back to the portable one.
pub fn count_text_using(
    kernel: CountKernel,
    counts: &mut WordCounts,
    tokenizer: &Tokenizer,
    text: &str,
    scratch: &mut Vec<u8>,
) {
    let strip = tokenizer.strip();
    if strip == StripPunctuation::Edges {
        // Rare; the kernels only know "strip all" and "strip none".
        return tokenizer.words(text, scratch, |word| counts.add(word, 1));
    }
    #[cfg(target_arch = "x86_64")]
    if matches!(kernel, CountKernel::Avx512Blocks | CountKernel::Avx512Words)
        && crate::short_words_avx512::available()
    {
        use super::fused_avx512_blocks::count_text as blocks;
        use crate::short_words_avx512::count_text as words;
        let all = strip == StripPunctuation::All;
        // SAFETY: the CPU has the kernels' features, checked just above.
        unsafe {
            return match (kernel, tokenizer.lowercase(), all) {
                (CountKernel::Avx512Blocks, true, true) => {
                    blocks::<true, true>(counts, tokenizer, text, scratch)
                }
                (CountKernel::Avx512Blocks, true, false) => {
                    blocks::<true, false>(counts, tokenizer, text, scratch)
                }
                (CountKernel::Avx512Blocks, false, true) => {
                    blocks::<false, true>(counts, tokenizer, text, scratch)
                }
                (CountKernel::Avx512Blocks, false, false) => {
                    blocks::<false, false>(counts, tokenizer, text, scratch)
                }
                (_, true, true) => words::<true, true>(counts, tokenizer, text, scratch),
                (_, true, false) => words::<true, false>(counts, tokenizer, text, scratch),
                (_, false, true) => words::<false, true>(counts, tokenizer, text, scratch),
                (_, false, false) => words::<false, false>(counts, tokenizer, text, scratch),
            };
        }
    }
    let mut out = crate::short_words::Counting::new(counts);
    let pext = kernel != CountKernel::Portable;
    crate::short_words::split_words(tokenizer, text, scratch, &mut out, pext, |_| 0);
    out.finish();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer(lowercase: bool, strip: StripPunctuation, drop_empty: bool) -> Tokenizer {
        Tokenizer::new(lowercase, strip, drop_empty)
    }

    fn sorted(counts: &WordCounts) -> Vec<(Vec<u8>, u64)> {
        let mut rows: Vec<_> = counts.entries().collect();
        rows.sort();
        rows
    }

    /// The counts the tokenizer's own word-by-word path gives (what the generic path uses).
    fn reference(tokenizer: &Tokenizer, text: &str) -> Vec<(Vec<u8>, u64)> {
        let mut counts = std::collections::BTreeMap::<Vec<u8>, u64>::new();
        tokenizer.words(text, &mut Vec::new(), |w| {
            *counts.entry(w.to_vec()).or_default() += 1
        });
        counts.into_iter().collect()
    }

    fn kernel_counts(
        kernel: CountKernel,
        tokenizer: &Tokenizer,
        text: &str,
    ) -> Vec<(Vec<u8>, u64)> {
        let mut counts = WordCounts::new(WordHasher::default());
        count_text_using(kernel, &mut counts, tokenizer, text, &mut Vec::new());
        sorted(&counts)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// Every kernel this CPU runs (AVX-512, `pext`, portable) counts exactly what the
        /// tokenizer's reference path gives.
        #[test]
        fn kernel_agrees_with_the_tokenizer(
            text in "([a-zA-Z0-9'’—“,.;:!?()\\-_ \t\r\n\u{b}\u{c}\u{1c}\u{1f}\u{85}\u{a0}\u{2003}\u{2028}]|ΣΟΔΑσςİÉé日K\u{212a}|[a-z]{10,20}){0,60}",
            lowercase: bool,
            drop_empty: bool,
            strip_all: bool,
        ) {
            let strip = if strip_all { StripPunctuation::All } else { StripPunctuation::None };
            let tokenizer = tokenizer(lowercase, strip, drop_empty);
            let expected = reference(&tokenizer, &text);
            for kernel in CountKernel::available() {
                proptest::prop_assert_eq!(&kernel_counts(kernel, &tokenizer, &text), &expected, "{:?}", kernel);
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        /// Texts of several segments (4 KiB each, cut after ASCII whitespace): words with
        /// Unicode characters across 64-byte blocks, long words, runs without whitespace
        /// longer than a segment, non-ASCII whitespace, NUL bytes.
        #[test]
        fn kernels_agree_with_the_tokenizer_on_long_texts(
            pieces in proptest::collection::vec(
                "([a-zA-Z'’—,.!\\-]{1,12}|[ \n]|ÆsΣ\\.|\u{a0}|\u{2009}|\u{0}|é[a-z]{60,70}|[a-z]{17,40})",
                0..1500,
            ),
            long_run in proptest::option::of(5000usize..9000),
            lowercase: bool,
            drop_empty: bool,
            strip_all: bool,
        ) {
            let mut text = pieces.concat();
            if let Some(n) = long_run {
                let at = (0..=text.len() / 2).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
                text.insert_str(at, &"Ab,c".repeat(n / 4));
            }
            let strip = if strip_all { StripPunctuation::All } else { StripPunctuation::None };
            let tokenizer = tokenizer(lowercase, strip, drop_empty);
            let expected = reference(&tokenizer, &text);
            for kernel in CountKernel::available() {
                proptest::prop_assert_eq!(&kernel_counts(kernel, &tokenizer, &text), &expected, "{:?}", kernel);
            }
        }
    }

    #[test]
    fn kernels_agree_on_block_and_segment_edges() {
        #[cfg(target_arch = "x86_64")]
        let _ = crate::short_words_avx512::tests::cpu_has_the_kernel_or_skip();
        let pad = |n: usize| "a".repeat(n);
        let texts = [
            // A word with a Unicode letter whose first kept bytes are in the block before.
            format!("{} bcdÆf x y", pad(60)),
            format!("{} Bc,dÆ x", pad(58)),
            // ... whose bytes before the block edge are all punctuation.
            format!("{} ,,,Æf x", pad(60)),
            // Two such words in one block, and one running into the next block.
            format!("Æa bÆ {} cdÆ{} e", pad(50), pad(70)),
            // Non-ASCII whitespace inside a word with a Unicode letter, and at block edges.
            format!("Æ\u{a0}b {}\u{2028}c{}\u{2009}d", pad(61), pad(62)),
            format!("{}\u{85}x", pad(63)),
            // Words of 15 to 17 bytes, NUL bytes, a word ending the text.
            format!("{} {} {} a\0b \0 {}", pad(15), pad(16), pad(17), pad(16)),
            // A run without whitespace longer than a segment, then more words.
            format!("x {} y z", "Ab,c".repeat(2500)),
            // Segments cut exactly after whitespace at the segment size.
            format!("{} {}", pad(4095), pad(4096)),
            // Short words in the last 15 kept bytes of a segment's final block: their 16-byte
            // loads reach past the block's store (the kernel's debug assertion checks it).
            format!("{} hello", "x".repeat(55)),
            format!("{} hi", pad(60)),
            format!("{} abcdefghijklmno", pad(110)),
        ];
        for text in &texts {
            for (lowercase, strip, drop_empty) in [
                (true, StripPunctuation::All, true),
                (false, StripPunctuation::None, true),
                (true, StripPunctuation::All, false),
            ] {
                let tokenizer = tokenizer(lowercase, strip, drop_empty);
                let expected = reference(&tokenizer, text);
                for kernel in CountKernel::available() {
                    assert_eq!(
                        kernel_counts(kernel, &tokenizer, text),
                        expected,
                        "{kernel:?} on {text:?}"
                    );
                }
            }
        }
    }

    /// A `group_count` by word, counted by the kernel with `tokenizer`, given to `test`.
    fn with_word_count(tokenizer: &Tokenizer, test: impl FnOnce(&WordCount, &dyn Aggregation)) {
        let count = crate::transforms::compliance::build::<
            crate::transforms::group_count::GroupCountConfig,
        >("{by: word}", &crate::data::text_schema("word"))
        .unwrap();
        let StageKind::Aggregate(aggregation) = &count.kind else {
            panic!("group_count aggregates")
        };
        let word_count = WordCount {
            tokenizer,
            per_value: Vec::new(),
            words_schema: crate::data::text_schema("word"),
            output: count.output.clone(),
            order_rows: true,
            aggregation: aggregation.as_ref(),
        };
        test(&word_count, aggregation.as_ref());
    }

    #[test]
    fn results_of_several_tables_and_their_sorted_runs_are_those_of_their_merge() {
        let tokenizer = tokenizer(true, StripPunctuation::All, true);
        with_word_count(&tokenizer, |word_count, aggregation| {
            let hasher = WordHasher::default();
            // Enough distinct words for several parts per table; some only in one table.
            let texts: Vec<String> = (0..3)
                .map(|t| {
                    (0..30_000)
                        .map(|i| {
                            format!(
                                "w{} shared a-word-longer-than-sixteen-bytes{} ",
                                i * (t + 1),
                                i % 7
                            )
                        })
                        .collect()
                })
                .collect();
            let table = |text: &String| {
                let mut counts = WordCounts::new(hasher.clone());
                count_text(&mut counts, &tokenizer, text, &mut Vec::new());
                counts
            };
            for tables in 1..=3 {
                let result = word_count
                    .result(texts[..tables].iter().map(table).collect())
                    .unwrap();
                let merged = texts[..tables]
                    .iter()
                    .map(table)
                    .reduce(WordCounts::merge)
                    .unwrap();
                let expected = word_count.result(vec![merged]).unwrap();
                assert!(expected.num_rows() > 30_000);
                assert_eq!(result, expected, "{tables} tables");
                // As spilled: each table a run of distinct words in order, restored together.
                let mut state = aggregation.new_state();
                for text in &texts[..tables] {
                    let run = word_count.sorted_run(table(text)).unwrap();
                    let words = run.column(0).as_string::<i32>();
                    assert!((1..run.num_rows()).all(|i| words.value(i - 1) < words.value(i)));
                    state.restore(&run).unwrap();
                }
                assert_eq!(state.result().unwrap(), expected, "{tables} runs");
            }
        });
    }

    #[test]
    fn results_and_sorted_runs_order_words_that_share_a_prefix_by_their_bytes() {
        let tokenizer = tokenizer(true, StripPunctuation::All, true);
        with_word_count(&tokenizer, |word_count, _| {
            let words = crate::counts::tests::tricky_words();
            let table = || {
                let mut table = WordCounts::new(WordHasher::default());
                for (word, count) in &words {
                    table.add(word.as_bytes(), *count as u64);
                }
                table
            };
            let rows = |batch: &RecordBatch| -> Vec<(String, i64)> {
                let (text, counts) = (batch.column(0).as_string::<i32>(), batch.column(1));
                let counts = counts.as_primitive::<Int64Type>();
                (0..batch.num_rows())
                    .map(|i| (text.value(i).to_owned(), counts.value(i)))
                    .collect()
            };
            let mut most_first = words.clone();
            most_first.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            assert_eq!(rows(&word_count.result(vec![table()]).unwrap()), most_first);
            let mut by_word = words.clone();
            by_word.sort();
            assert_eq!(rows(&word_count.sorted_run(table()).unwrap()), by_word);
        });
    }

    #[test]
    fn kernel_handles_every_token_length_at_the_end_of_the_text() {
        // Tokens ending exactly at the text's end take the assembled (not the wide) load.
        let tokenizer = tokenizer(true, StripPunctuation::All, true);
        for n in 1..=40 {
            let word: String = "Ab,c’d".chars().cycle().take(n).collect();
            let text = format!("x {word}");
            for kernel in CountKernel::available() {
                assert_eq!(
                    kernel_counts(kernel, &tokenizer, &text),
                    reference(&tokenizer, &text),
                    "{kernel:?} {text:?}"
                );
            }
        }
    }
}
