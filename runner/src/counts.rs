//! Counting byte strings fast: a hash table whose entries hold words of up to 16 bytes inline
//! (comparing a word is two 8-byte compares, no pointer to follow), hashed from those same two
//! words with per-run random seeds. Used by the fused word count (`exec::fused`).

use foldhash::fast::RandomState;
use hashbrown::HashTable;

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
