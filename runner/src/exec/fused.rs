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
use crate::counts::{head_of, PendingWords, INLINE};
pub use crate::counts::{WordCounts, WordHasher};
use crate::error::{Error, Result};
use crate::plan::Fusion;
use crate::tokenizer::{flags_of, split_tokens, StripPunctuation, TokenSink, Tokenizer};
use crate::transforms::{PerValue, StageKind, TextSplit};

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
        })
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
            let fail = |why: String| Error::runtime(format!("{}: {why}", built.label));
            let batch = RecordBatch::try_new(self.words_schema.clone(), vec![words.clone()])
                .map_err(|e| fail(e.to_string()))?;
            let out = map.apply(&batch).map_err(|e| fail(e.to_string()))?;
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
                    // Words are valid UTF-8: cut from valid text at ASCII bytes or whole
                    // characters (checked anyway: a wrong word must not become a wrong string).
                    let word = match std::str::from_utf8(word) {
                        Ok(word) => std::borrow::Cow::Borrowed(word),
                        Err(_) => String::from_utf8_lossy(word),
                    };
                    words.append_value(word);
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
            let (text, number) = (words.as_string::<i32>(), values.as_primitive::<Int64Type>());
            let mut order: Vec<u32> = (0..text.len() as u32).collect();
            order.sort_unstable_by(|&a, &b| {
                let (a, b) = (a as usize, b as usize);
                number
                    .value(b)
                    .cmp(&number.value(a))
                    .then_with(|| text.value(a).cmp(text.value(b)))
            });
            let order = arrow_array::UInt32Array::from(order);
            let take = |array: &ArrayRef| {
                arrow_select::take::take(array.as_ref(), &order, None)
                    .expect("indices are in bounds")
            };
            (words, values) = (take(&words), take(&values));
        }
        Ok(
            RecordBatch::try_new(self.output.clone(), vec![words, values])
                .expect("word and count columns match group_count's output"),
        )
    }
}

/// The kernels `count_text` chooses from, fastest first. They count the same; the tests and
/// the fuzz target compare every one this CPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountKernel {
    /// AVX-512 BW/VL/VBMI2 normalising whole blocks (`fused_avx512_blocks`), with `Avx512Words`
    /// for the segments it hands on.
    Avx512Blocks,
    /// AVX-512 BW/VL/VBMI2 word by word (`fused_avx512`).
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
            if super::fused_avx512::available() {
                kernels.push(CountKernel::Avx512Blocks);
                kernels.push(CountKernel::Avx512Words);
            }
            if bmi2_available() {
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
            if super::fused_avx512::available() {
                return CountKernel::Avx512Blocks;
            }
            if bmi2_available() {
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
        && super::fused_avx512::available()
    {
        use super::fused_avx512::count_text as words;
        use super::fused_avx512_blocks::count_text as blocks;
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
    #[cfg(target_arch = "x86_64")]
    if kernel != CountKernel::Portable && bmi2_available() {
        // SAFETY: the CPU has every feature the kernel enables, checked just above.
        return unsafe { count_text_bmi2(counts, tokenizer, text, scratch) };
    }
    // SAFETY: without PEXT the kernel needs no CPU feature.
    unsafe { count_text_with::<false>(counts, tokenizer, text, scratch) }
}

/// Whether this CPU has every feature `count_text_bmi2` enables.
#[cfg(target_arch = "x86_64")]
fn bmi2_available() -> bool {
    std::arch::is_x86_feature_detected!("bmi2") && std::arch::is_x86_feature_detected!("popcnt")
}

/// The kernel compiled with BMI2, whose `pext` removes punctuation bytes from a word held in
/// two registers in a few cycles.
///
/// # Safety
/// The CPU must have BMI2 and POPCNT (`bmi2_available`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "bmi2,popcnt")]
unsafe fn count_text_bmi2(
    counts: &mut WordCounts,
    tokenizer: &Tokenizer,
    text: &str,
    scratch: &mut Vec<u8>,
) {
    // SAFETY: the caller guarantees BMI2.
    unsafe { count_text_with::<true>(counts, tokenizer, text, scratch) }
}

/// # Safety
/// With `PEXT`, the CPU must have BMI2 (the kernel it builds calls `pext`).
#[inline(always)]
unsafe fn count_text_with<const PEXT: bool>(
    counts: &mut WordCounts,
    tokenizer: &Tokenizer,
    text: &str,
    scratch: &mut Vec<u8>,
) {
    let mut kernel = Kernel::<PEXT> {
        counts,
        tokenizer,
        text,
        scratch,
        lowercase: tokenizer.lowercase(),
        strip: tokenizer.strip() == StripPunctuation::All,
        drop_empty: tokenizer.drop_empty(),
        pending: PendingWords::default(),
    };
    split_tokens(text, &mut kernel);
    kernel.counts.count_pending(&mut kernel.pending);
}

/// Normalises each token of up to 16 bytes in two registers (lowercase by arithmetic,
/// punctuation removed by compaction) and counts it without copying it anywhere. Longer tokens,
/// and tokens with non-ASCII characters other than general punctuation such as `’`, take the
/// tokenizer's own path.
struct Kernel<'a, const PEXT: bool> {
    counts: &'a mut WordCounts,
    tokenizer: &'a Tokenizer,
    text: &'a str,
    scratch: &'a mut Vec<u8>,
    lowercase: bool,
    strip: bool,
    drop_empty: bool,
    pending: PendingWords,
}

impl<const PEXT: bool> TokenSink for Kernel<'_, PEXT> {
    /// The kernel finds what it needs from the word's own registers.
    const FLAGS: bool = false;

    #[inline(always)]
    fn token(&mut self, start: usize, end: usize, flags: u8) {
        let bytes = self.text.as_bytes();
        let len = end - start;
        if len <= INLINE {
            let head = match bytes.get(start..).and_then(|b| b.first_chunk::<INLINE>()) {
                // One 16-byte load, masked to the token: cheaper than assembling it.
                Some(wide) => {
                    let wide = u128::from_le_bytes(*wide) & (u128::MAX >> (128 - 8 * len));
                    [wide as u64, (wide >> 64) as u64]
                }
                None => head_of(&bytes[start..end]),
            };
            if (head[0] | head[1]) & HIGH_BITS == 0 || only_general_punctuation(&bytes[start..end])
            {
                let (head, len) = self.normalise(head, len);
                if len > 0 || !self.drop_empty {
                    self.counts.add_short_soon(&mut self.pending, head, len, 1);
                }
                return;
            }
        }
        let counts = &mut *self.counts;
        let token = &self.text[start..end];
        debug_assert_eq!(flags, 0, "FLAGS is false");
        self.tokenizer.token(
            token,
            flags_of(token.as_bytes()),
            self.scratch,
            &mut |word| counts.add(word, 1),
        );
    }
}

impl<const PEXT: bool> Kernel<'_, PEXT> {
    /// The word as the tokenizer would make it, for a token without case-changing non-ASCII.
    /// Both steps run on every word: they cost less than a mispredicted branch would.
    #[inline(always)]
    fn normalise(&self, mut head: [u64; 2], mut len: usize) -> ([u64; 2], usize) {
        let (upper, punct) = classify(head);
        if self.lowercase {
            head = [
                head[0] | (upper[0] & 0x2020_2020_2020_2020),
                head[1] | (upper[1] & 0x2020_2020_2020_2020),
            ];
        }
        if self.strip {
            len -= ((punct[0].count_ones() + punct[1].count_ones()) / 8) as usize;
            // 0xFF for every byte to keep (the zero padding included: it stays zero).
            let keep = [!punct[0], !punct[1]];
            let (low, high) = if PEXT {
                // SAFETY: a `Kernel::<true>` is only made by `count_text_with::<true>`, whose
                // caller guarantees BMI2.
                unsafe {
                    (
                        compact_pext(head[0], keep[0]),
                        compact_pext(head[1], keep[1]),
                    )
                }
            } else {
                (
                    compact_scalar(head[0], keep[0]),
                    compact_scalar(head[1], keep[1]),
                )
            };
            let joined = low as u128 | ((high as u128) << keep[0].count_ones());
            head = [joined as u64, (joined >> 64) as u64];
        }
        (head, len)
    }
}

const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// Byte masks (0xFF per matching byte) of the ASCII capitals and of the ASCII punctuation
/// (Python's `string.punctuation`) in a 16-byte word.
#[inline(always)]
fn classify(head: [u64; 2]) -> ([u64; 2], [u64; 2]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of the x86-64 baseline; no memory is touched.
        unsafe {
            let v = _mm_set_epi64x(head[1] as i64, head[0] as i64);
            let punct = crate::tokenizer::sse2_ascii_punctuation(v);
            let upper = crate::tokenizer::sse2_within(v, b'A', b'Z');
            let halves = |x: __m128i| {
                [
                    _mm_cvtsi128_si64(x) as u64,
                    _mm_cvtsi128_si64(_mm_unpackhi_epi64(x, x)) as u64,
                ]
            };
            (halves(upper), halves(punct))
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let bytes = |f: fn(u64) -> u64| head.map(|w| (f(w) >> 7) * 0xFF);
        (
            bytes(|w| swar::ascii_bytes_within(w, b'A', b'Z')),
            bytes(swar::ascii_punctuation),
        )
    }
}

/// Byte-parallel tests on a `u64` for targets without SSE2 (and the tests).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
mod swar {
    const ONES: u64 = 0x0101_0101_0101_0101;
    use super::HIGH_BITS;

    /// 0x80 in every byte of `word` that is ASCII and within `lo..=hi` (`lo` > 0), else 0. No
    /// carry crosses a byte because each sum stays below 0x100.
    #[inline(always)]
    pub fn ascii_bytes_within(word: u64, lo: u8, hi: u8) -> u64 {
        let low7 = word & !HIGH_BITS;
        let at_least_lo = low7 + ONES * (0x80 - lo as u64);
        let above_hi = low7 + ONES * (0x7f - hi as u64);
        at_least_lo & !above_hi & !word & HIGH_BITS
    }

    /// 0x80 in every byte of `word` that is ASCII punctuation.
    #[inline(always)]
    pub fn ascii_punctuation(word: u64) -> u64 {
        ascii_bytes_within(word, 0x21, 0x2f)
            | ascii_bytes_within(word, 0x3a, 0x40)
            | ascii_bytes_within(word, 0x5b, 0x60)
            | ascii_bytes_within(word, 0x7b, 0x7e)
    }
}

/// The bytes of `word` where `keep` is 0xFF, moved down to the low end, zeros above.
///
/// # Safety
/// The CPU must have BMI2.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "bmi2")]
unsafe fn compact_pext(word: u64, keep: u64) -> u64 {
    std::arch::x86_64::_pext_u64(word, keep)
}

/// Without `pext` (other architectures) the scalar compaction does the same.
///
/// # Safety
/// None: `unsafe` only to match the x86-64 signature.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
unsafe fn compact_pext(word: u64, keep: u64) -> u64 {
    compact_scalar(word, keep)
}

#[inline(always)]
fn compact_scalar(word: u64, keep: u64) -> u64 {
    let mut out = 0u64;
    let mut shift = 0;
    for i in 0..8 {
        if (keep >> (i * 8)) & 1 != 0 {
            out |= ((word >> (i * 8)) & 0xFF) << shift;
            shift += 8;
        }
    }
    out
}

/// Whether every non-ASCII character of `token` is in U+2000..U+203F (general punctuation and
/// spaces, none of which has a case): then ASCII rules normalise the token exactly, as Python
/// would. That covers the curly apostrophes and dashes of English text.
#[inline(always)]
pub(crate) fn only_general_punctuation(token: &[u8]) -> bool {
    let mut at = 0;
    while let Some(offset) = token[at..].iter().position(|&b| b >= 0x80) {
        at += offset;
        if token.get(at..at + 2) != Some(&[0xE2, 0x80]) {
            return false;
        }
        at += 3;
        if at >= token.len() {
            return true;
        }
    }
    true
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
        let _ = super::super::fused_avx512::tests::cpu_has_the_kernel_or_skip();
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

    #[test]
    fn results_of_several_tables_are_those_of_their_merge() {
        let tokenizer = tokenizer(true, StripPunctuation::All, true);
        let word_count = WordCount {
            tokenizer: &tokenizer,
            per_value: Vec::new(),
            words_schema: crate::data::text_schema("word"),
            output: crate::data::word_counts(&[], &[]).schema(),
            order_rows: true,
        };
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
        }
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

    #[test]
    fn compaction_keeps_the_marked_bytes_in_order() {
        let word = u64::from_le_bytes(*b"a,b.c!de");
        let keep = u64::from_le_bytes([0xFF, 0, 0xFF, 0, 0xFF, 0, 0xFF, 0xFF]);
        assert_eq!(
            compact_scalar(word, keep),
            u64::from_le_bytes(*b"abcde\0\0\0")
        );
        #[cfg(target_arch = "x86_64")]
        if bmi2_available() {
            // SAFETY: the CPU has BMI2, checked just above.
            let pext = unsafe { compact_pext(word, keep) };
            assert_eq!(pext, compact_scalar(word, keep));
        }
    }

    #[test]
    fn general_punctuation_is_the_only_non_ascii_fast_path() {
        assert!(only_general_punctuation("i’ll".as_bytes()));
        assert!(only_general_punctuation("—“a”".as_bytes()));
        assert!(!only_general_punctuation("été".as_bytes()));
        assert!(!only_general_punctuation("a’é".as_bytes()));
    }
}
