//! The fused word count: `tokenize → [stopwords] → group_count` on a text source runs as one
//! loop from input bytes into a per-worker hash table, with no batch, string or row in between.
//! The stop-word filter runs once per distinct word after counting (a membership filter gives
//! the same result either way, and the table is far smaller than the input). Counting raw
//! tokens and normalising afterwards was tried: it is no faster on the play and multiplies the
//! table size on large vocabularies (every case and punctuation variant is a key). Everything else uses the generic path;
//! `runner run --no-fusion` forces the generic path, and the tests compare the two.

use std::sync::Arc;

use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::SchemaRef;
use foldhash::fast::RandomState;
use hashbrown::HashTable;

use super::BuiltStage;
use crate::transforms::group_count::GroupCount;
use crate::transforms::stopwords::Stopwords;
use crate::transforms::tokenize::{Tokenize, Tokenizer};
use crate::transforms::StageKind;

/// Which stages the fused loop replaces.
#[derive(Debug, Clone)]
pub struct Fusion {
    pub tokenize: usize,
    pub stopwords: Option<usize>,
    pub group_count: usize,
    /// Whether the counts must come out in group_count's order (no sort follows to order them).
    pub order_rows: bool,
}

/// Recognises `tokenize → [stopwords] → group_count by the word` at the start of `stages`,
/// reading the source's only column.
pub fn detect(stages: &[BuiltStage], source: &SchemaRef) -> Option<Fusion> {
    if source.fields().len() != 1 {
        return None;
    }
    let map = |i: usize| match stages.get(i).map(|s| &s.stage.kind) {
        Some(StageKind::Map(m)) => Some(m.as_any()),
        _ => None,
    };
    let tokenize = map(0)?.downcast_ref::<Tokenize>()?;
    if tokenize.input_column() != 0 {
        return None;
    }
    let (stopwords, next) = match map(1).and_then(|m| m.downcast_ref::<Stopwords>()) {
        Some(s) if s.column() == 0 => (Some(1), 2),
        Some(_) => return None,
        None => (None, 1),
    };
    let StageKind::Aggregate(aggregation) = &stages.get(next)?.stage.kind else {
        return None;
    };
    let group_count = aggregation.as_any().downcast_ref::<GroupCount>()?;
    if group_count.keys() != [0] {
        return None;
    }
    // Row-wise stages keep order; the first stage that cares about order decides.
    let order_rows = !matches!(
        stages[next + 1..].iter().find(|s| !matches!(s.stage.kind, StageKind::Map(_))),
        Some(s) if s.label.ends_with("(sort)")
    );
    Some(Fusion {
        tokenize: 0,
        stopwords,
        group_count: next,
        order_rows,
    })
}

/// The parts of the pipeline the fused loop needs, borrowed from the built stages.
pub struct WordCount<'a> {
    pub tokenizer: &'a Tokenizer,
    pub stopwords: Option<&'a Stopwords>,
    pub output: SchemaRef,
    pub order_rows: bool,
}

impl<'a> WordCount<'a> {
    pub fn new(fusion: &Fusion, stages: &'a [BuiltStage]) -> Option<Self> {
        let as_map = |i: usize| match &stages[i].stage.kind {
            StageKind::Map(m) => Some(m.as_any()),
            _ => None,
        };
        let tokenize = as_map(fusion.tokenize)?.downcast_ref::<Tokenize>()?;
        let stopwords = match fusion.stopwords {
            Some(i) => Some(as_map(i)?.downcast_ref::<Stopwords>()?),
            None => None,
        };
        Some(WordCount {
            tokenizer: tokenize.tokenizer(),
            stopwords,
            output: stages[fusion.group_count].stage.output.clone(),
            order_rows: fusion.order_rows,
        })
    }

    /// The counts as the group_count stage would emit them (stop words removed).
    pub fn result(&self, counts: WordCounts) -> RecordBatch {
        let mut rows: Vec<(String, u64)> = counts
            .entries()
            // Words are valid UTF-8: cut from valid text at ASCII bytes or whole characters.
            .map(|(word, count)| {
                (
                    String::from_utf8(word)
                        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
                    count,
                )
            })
            .filter(|(word, _)| self.stopwords.is_none_or(|stop| !stop.contains(word)))
            .collect();
        if self.order_rows {
            // As group_count orders them: most frequent first, ties by word.
            rows.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        }
        let words = StringArray::from_iter_values(rows.iter().map(|(w, _)| w));
        let counts = Int64Array::from_iter_values(rows.iter().map(|(_, c)| *c as i64));
        RecordBatch::try_new(self.output.clone(), vec![Arc::new(words), Arc::new(counts)])
            .expect("word and count columns match group_count's output")
    }
}

/// Bytes of a word kept in the table entry itself; longer words keep the rest in the arena.
const INLINE: usize = 16;

/// One entry. Comparing a short word is two 8-byte compares, with no pointer to follow.
struct Slot {
    hash: u64,
    count: u64,
    /// The first `INLINE` bytes, zero-padded, as two little-endian words.
    head: (u64, u64),
    len: u32,
    /// Where bytes `INLINE..len` start in the arena (long words only).
    tail: usize,
}

/// A per-worker count table: words are looked up by bytes and copied only when first seen.
pub struct WordCounts {
    table: HashTable<Slot>,
    arena: Vec<u8>,
    hasher: WordHasher,
}

/// Hashes words with per-run random seeds (the words may come from the internet, so the table
/// must not be predictable). Words up to 16 bytes, almost all of them, are hashed from the two
/// words already loaded for comparison with two folded multiplies, as foldhash does for short
/// input; longer words go through foldhash itself.
#[derive(Clone)]
pub struct WordHasher {
    seeds: [u64; 3],
    long: RandomState,
}

impl Default for WordHasher {
    fn default() -> Self {
        let long = RandomState::default();
        let seed = |i: u64| std::hash::BuildHasher::hash_one(&long, i) | 1;
        WordHasher {
            seeds: [seed(1), seed(2), seed(3)],
            long,
        }
    }
}

#[inline(always)]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = (a as u128).wrapping_mul(b as u128);
    (full as u64) ^ ((full >> 64) as u64)
}

impl WordHasher {
    #[inline(always)]
    fn hash(&self, head: (u64, u64), word: &[u8]) -> u64 {
        if word.len() <= INLINE {
            let mixed = folded_multiply(
                head.0 ^ self.seeds[0],
                head.1 ^ self.seeds[1] ^ word.len() as u64,
            );
            folded_multiply(mixed, self.seeds[2])
        } else {
            std::hash::BuildHasher::hash_one(&self.long, word)
        }
    }
}

/// The first `INLINE` bytes of `word`, zero-padded, as two little-endian words, read with
/// overlapping loads rather than a byte copy (a copy followed by a wide load stalls the CPU).
#[inline(always)]
fn head_of(word: &[u8]) -> (u64, u64) {
    let n = word.len();
    let u64_at = |at: usize| u64::from_le_bytes(word[at..at + 8].try_into().unwrap_or([0; 8]));
    let u32_at =
        |at: usize| u32::from_le_bytes(word[at..at + 4].try_into().unwrap_or([0; 4])) as u64;
    if n >= 16 {
        (u64_at(0), u64_at(8))
    } else if n > 8 {
        (u64_at(0), u64_at(n - 8) >> ((16 - n) * 8))
    } else if n == 8 {
        (u64_at(0), 0)
    } else if n >= 4 {
        (u32_at(0) | ((u32_at(n - 4) >> ((8 - n) * 8)) << 32), 0)
    } else {
        (
            word.iter()
                .rev()
                .fold(0u64, |acc, &b| (acc << 8) | b as u64),
            0,
        )
    }
}

impl WordCounts {
    /// All tables of one run must share `hasher` so they can be merged without rehashing.
    pub fn new(hasher: WordHasher) -> Self {
        WordCounts {
            table: HashTable::with_capacity(4096),
            arena: Vec::new(),
            hasher,
        }
    }

    #[inline(always)]
    fn tail<'t>(arena: &'t [u8], slot: &Slot) -> &'t [u8] {
        if slot.len as usize > INLINE {
            &arena[slot.tail..slot.tail + slot.len as usize - INLINE]
        } else {
            &[]
        }
    }

    #[inline(always)]
    fn add_hashed(&mut self, hash: u64, head: (u64, u64), word: &[u8], count: u64) {
        let len = word.len() as u32;
        let arena = &self.arena;
        let found = self.table.find_mut(hash, |s| {
            s.hash == hash
                && s.len == len
                && s.head == head
                && (len as usize <= INLINE || Self::tail(arena, s) == &word[INLINE..])
        });
        match found {
            Some(slot) => slot.count += count,
            None => {
                let tail = self.arena.len();
                if word.len() > INLINE {
                    self.arena.extend_from_slice(&word[INLINE..]);
                }
                self.table.insert_unique(
                    hash,
                    Slot {
                        hash,
                        count,
                        head,
                        len,
                        tail,
                    },
                    |s| s.hash,
                );
            }
        }
    }

    #[inline(always)]
    pub fn add(&mut self, word: &[u8], count: u64) {
        let head = head_of(word);
        let hash = self.hasher.hash(head, word);
        self.add_hashed(hash, head, word, count);
    }

    /// Counts every word of `text`, normalised by `tokenizer`.
    #[inline]
    pub fn count_text(&mut self, tokenizer: &Tokenizer, text: &str, scratch: &mut Vec<u8>) {
        tokenizer.words(text, scratch, |word| self.add(word, 1));
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Every word and its count, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = (Vec<u8>, u64)> + '_ {
        self.table.iter().map(|slot| {
            let mut head = [0u8; INLINE];
            head[..8].copy_from_slice(&slot.head.0.to_le_bytes());
            head[8..].copy_from_slice(&slot.head.1.to_le_bytes());
            let mut word = head[..(slot.len as usize).min(INLINE)].to_vec();
            word.extend_from_slice(Self::tail(&self.arena, slot));
            (word, slot.count)
        })
    }

    /// Folds `other` into `self` (the larger table absorbs the smaller one).
    pub fn merge(mut self, mut other: WordCounts) -> WordCounts {
        if other.table.len() > self.table.len() {
            std::mem::swap(&mut self, &mut other);
        }
        for (word, count) in other.entries() {
            self.add(&word, count);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_merges() {
        let hasher = WordHasher::default();
        let mut a = WordCounts::new(hasher.clone());
        let mut b = WordCounts::new(hasher);
        for w in ["x", "y", "x"] {
            a.add(w.as_bytes(), 1);
        }
        for w in ["y", "z", "y", "y"] {
            b.add(w.as_bytes(), 1);
        }
        let merged = a.merge(b);
        let mut rows: Vec<(String, u64)> = merged
            .entries()
            .map(|(w, c)| (String::from_utf8(w).unwrap(), c))
            .collect();
        rows.sort();
        assert_eq!(rows, [("x".into(), 2), ("y".into(), 4), ("z".into(), 1)]);
        assert_eq!(merged.len(), 3);
    }

    #[test]
    fn head_reads_every_length_like_a_zero_padded_copy() {
        let text = b"abcdefghijklmnopqrstuvwxyz";
        for n in 0..=text.len() {
            let word = &text[..n];
            let mut padded = [0u8; 16];
            padded[..n.min(16)].copy_from_slice(&word[..n.min(16)]);
            let expected = (
                u64::from_le_bytes(padded[..8].try_into().unwrap()),
                u64::from_le_bytes(padded[8..].try_into().unwrap()),
            );
            assert_eq!(head_of(word), expected, "length {n}");
        }
    }

    #[test]
    fn long_words_keep_their_tail() {
        let mut counts = WordCounts::new(WordHasher::default());
        let long = "pneumonoultramicroscopicsilicovolcanoconiosis";
        let longer = "pneumonoultramicroscopicsilicovolcanoconiosis2";
        for w in [long, longer, long, "short", "exactly16bytes!!"] {
            counts.add(w.as_bytes(), 1);
        }
        let mut rows: Vec<(String, u64)> = counts
            .entries()
            .map(|(w, c)| (String::from_utf8(w).unwrap(), c))
            .collect();
        rows.sort();
        assert_eq!(
            rows,
            [
                ("exactly16bytes!!".into(), 1),
                (long.into(), 2),
                (longer.into(), 1),
                ("short".into(), 1)
            ]
        );
    }
}
