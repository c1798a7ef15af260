//! Counting byte strings fast: an open-addressing hash table (linear probing) whose 32-byte
//! slots hold words of up to 16 bytes inline, so finding a short word is one hash, usually one
//! cache line and two 8-byte compares, with no pointer to follow. Words are hashed from those
//! same two words with per-run random seeds. Used by the fused word count (`exec::fused`).

use foldhash::fast::RandomState;

/// Bytes of a word kept in the slot itself; longer words keep the rest in `long_tails`.
pub const INLINE: usize = 16;

/// Tables larger than this are looked up with prefetching (half of a typical L2 cache).
const LARGE_TABLE_BYTES: usize = 1 << 20;

/// `len` of a slot that holds no word.
const EMPTY: u32 = u32::MAX;

/// One slot: two per cache line.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct Slot {
    /// The first `INLINE` bytes, zero-padded, as two little-endian words.
    head: [u64; 2],
    count: u64,
    /// The word's length (capped below `EMPTY`; long words compare their whole tail too).
    len: u32,
    /// For words over `INLINE` bytes: index of bytes `INLINE..` in `long_tails`.
    tail: u32,
}

const VACANT: Slot = Slot {
    head: [0; 2],
    count: 0,
    len: EMPTY,
    tail: 0,
};

/// Short words hashed, their slots prefetched, waiting to be counted `PENDING_WORDS` at a time
/// (`WordCounts::add_short_soon`): a large table does not fit in any cache, and lookups that
/// start together overlap their misses instead of waiting for each in turn.
pub struct PendingWords {
    words: [([u64; 2], usize, u64, u64); PENDING_WORDS],
    len: usize,
}

const PENDING_WORDS: usize = 16;

impl Default for PendingWords {
    fn default() -> Self {
        PendingWords {
            words: [([0; 2], 0, 0, 0); PENDING_WORDS],
            len: 0,
        }
    }
}

/// The bytes after the first `INLINE` of the long words of a table, one after another, with
/// each long word's hash: a long word costs no allocation of its own, and growing the table
/// hashes none again (millions of long keys, such as timestamps, are common in aggregates).
#[derive(Default)]
struct Tails {
    bytes: Vec<u8>,
    /// Tail `i` ends at `ends[i]`.
    ends: Vec<usize>,
    hashes: Vec<u64>,
}

impl Tails {
    /// Keeps a tail and its word's hash; its index, for `get` and `hash`.
    fn push(&mut self, tail: &[u8], hash: u64) -> u32 {
        self.bytes.extend_from_slice(tail);
        self.ends.push(self.bytes.len());
        self.hashes.push(hash);
        (self.ends.len() - 1) as u32
    }

    fn get(&self, index: u32) -> &[u8] {
        let index = index as usize;
        let start = match index {
            0 => 0,
            _ => self.ends[index - 1],
        };
        &self.bytes[start..self.ends[index]]
    }

    fn hash(&self, index: u32) -> u64 {
        self.hashes[index as usize]
    }
}

/// A per-worker count table: words are looked up by bytes and copied only when first seen.
pub struct WordCounts {
    slots: Vec<Slot>,
    /// `slots.len() - 1`; the length is a power of two.
    mask: usize,
    used: usize,
    long_tails: Tails,
    hasher: WordHasher,
    /// The most slots the table grows to at its usual load (see `keep_within`).
    max_slots: usize,
}

/// Hashes words with per-run random seeds (the words may come from the internet, so the table
/// must not be predictable). Words up to 16 bytes, almost all of them, are hashed from the two
/// words already loaded for comparison with one folded multiply, as foldhash does for short
/// input; longer words go through foldhash itself.
#[derive(Clone)]
pub struct WordHasher {
    seeds: [u64; 2],
    long: RandomState,
}

impl Default for WordHasher {
    fn default() -> Self {
        let long = RandomState::default();
        let seed = |i: u64| std::hash::BuildHasher::hash_one(&long, i) | 1;
        WordHasher {
            seeds: [seed(1), seed(2)],
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
    /// One folded multiply of the seeded halves, as foldhash finishes short input: its low
    /// bits (the table index) depend on every input bit through the product's high half.
    #[inline(always)]
    fn hash_short(&self, head: [u64; 2], len: usize) -> u64 {
        folded_multiply(
            head[0] ^ self.seeds[0],
            head[1] ^ self.seeds[1] ^ len as u64,
        )
    }

    #[inline(always)]
    fn hash(&self, head: [u64; 2], word: &[u8]) -> u64 {
        if word.len() <= INLINE {
            self.hash_short(head, word.len())
        } else {
            std::hash::BuildHasher::hash_one(&self.long, word)
        }
    }
}

/// The first `INLINE` bytes of `word`, zero-padded, as two little-endian words, read with
/// overlapping loads rather than a byte copy (a copy followed by a wide load stalls the CPU).
#[inline(always)]
pub fn head_of(word: &[u8]) -> [u64; 2] {
    let n = word.len();
    let u64_at = |at: usize| u64::from_le_bytes(word[at..at + 8].try_into().unwrap_or([0; 8]));
    let u32_at =
        |at: usize| u32::from_le_bytes(word[at..at + 4].try_into().unwrap_or([0; 4])) as u64;
    if n >= 16 {
        [u64_at(0), u64_at(8)]
    } else if n > 8 {
        [u64_at(0), u64_at(n - 8) >> ((16 - n) * 8)]
    } else if n == 8 {
        [u64_at(0), 0]
    } else if n >= 4 {
        [u32_at(0) | ((u32_at(n - 4) >> ((8 - n) * 8)) << 32), 0]
    } else {
        [
            word.iter()
                .rev()
                .fold(0u64, |acc, &b| (acc << 8) | b as u64),
            0,
        ]
    }
}

impl WordCounts {
    /// All tables of one run must share `hasher` so they can be merged without rehashing.
    pub fn new(hasher: WordHasher) -> Self {
        let capacity = 4096;
        WordCounts {
            slots: vec![VACANT; capacity],
            mask: capacity - 1,
            used: 0,
            long_tails: Tails::default(),
            hasher,
            max_slots: usize::MAX,
        }
    }

    /// Keeps the table within about `bytes` while it grows (the old slots and the doubled
    /// ones are held together then): past the largest size that allows, it fills further
    /// instead (`is_full` says so), up to 7/8, where it must grow after all. A worker counting
    /// into it writes it out once it is full (a memory limit's share).
    pub fn keep_within(mut self, bytes: usize) -> Self {
        let slot = std::mem::size_of::<Slot>();
        let mut max_slots = self.slots.len();
        while (max_slots * 2 + max_slots) * slot <= bytes {
            max_slots *= 2;
        }
        self.max_slots = max_slots;
        self
    }

    /// Whether the table holds more words than its usual load, at the size `keep_within`
    /// keeps it to.
    pub fn is_full(&self) -> bool {
        self.used * 8 > self.slots.len() * 5
    }

    /// Counts a word of up to `INLINE` bytes given as its zero-padded head (see `head_of`).
    #[inline(always)]
    pub fn add_short(&mut self, head: [u64; 2], len: usize, count: u64) {
        let hash = self.hash_short(head, len);
        self.add_short_hashed(hash, head, len, count);
    }

    /// The hash `add_short_hashed` wants for this word.
    #[inline(always)]
    pub fn hash_short(&self, head: [u64; 2], len: usize) -> u64 {
        self.hasher.hash_short(head, len)
    }

    /// Asks the CPU to start loading the slot where a word with this hash is looked for, so a
    /// lookup a little later finds it in cache (large tables do not fit in any cache).
    #[inline(always)]
    pub fn prefetch(&self, hash: u64) {
        // No bounds check: a prefetch is only a hint, and the masked index is a slot anyway.
        prefetch(self.slots.as_ptr().wrapping_add(hash as usize & self.mask));
    }

    /// `add_short`, done once the words pending before it are counted: its slot is prefetched
    /// now. `count_pending` counts the rest at the end.
    #[inline(always)]
    pub fn add_short_soon(
        &mut self,
        pending: &mut PendingWords,
        head: [u64; 2],
        len: usize,
        count: u64,
    ) {
        let hash = self.hash_short(head, len);
        self.prefetch(hash);
        // `% PENDING_WORDS` (always below it) lets the compiler drop the bounds check.
        pending.words[pending.len % PENDING_WORDS] = (head, len, hash, count);
        pending.len += 1;
        if pending.len == PENDING_WORDS {
            self.count_pending(pending);
        }
    }

    /// Counts the words `add_short_soon` left pending.
    #[inline(always)]
    pub fn count_pending(&mut self, pending: &mut PendingWords) {
        for &(head, len, hash, count) in &pending.words[..pending.len] {
            self.add_short_hashed(hash, head, len, count);
        }
        pending.len = 0;
    }

    /// `add_short` with the hash `hash_short` gave.
    #[inline(always)]
    pub fn add_short_hashed(&mut self, hash: u64, head: [u64; 2], len: usize, count: u64) {
        if let Some(at) = self.find_or_insert_short(hash, head, len, count) {
            // SAFETY: `find_or_insert_short` gives the index of a slot.
            unsafe { self.slots.get_unchecked_mut(at) }.count += count;
        }
    }

    /// The value held for a word of up to `INLINE` bytes (its zero-padded head and length,
    /// hashed by `hash_short`), or `value` stored as its value if the word is new (then the
    /// flag is true): `get_or_insert_hashed` without the long words' tail.
    #[inline(always)]
    pub fn get_or_insert_short(
        &mut self,
        hash: u64,
        head: [u64; 2],
        len: usize,
        value: u64,
    ) -> (u64, bool) {
        match self.find_or_insert_short(hash, head, len, value) {
            Some(at) => (self.slots[at].count, false),
            None => (value, true),
        }
    }

    /// `find_or_insert` for a word of up to `INLINE` bytes: no tail to compare.
    #[inline(always)]
    fn find_or_insert_short(
        &mut self,
        hash: u64,
        head: [u64; 2],
        len: usize,
        value: u64,
    ) -> Option<usize> {
        debug_assert!(len <= INLINE);
        let len = len as u32;
        let mut at = hash as usize & self.mask;
        loop {
            // SAFETY: `mask` is `slots.len() - 1` (a power of two), so `at` is in bounds.
            let slot = unsafe { self.slots.get_unchecked_mut(at) };
            if slot.head == head && slot.len == len {
                return Some(at);
            }
            if slot.len == EMPTY {
                *slot = Slot {
                    head,
                    count: value,
                    len,
                    tail: 0,
                };
                self.inserted();
                return None;
            }
            at = (at + 1) & self.mask;
        }
    }

    /// Counts any word.
    #[inline]
    pub fn add(&mut self, word: &[u8], count: u64) {
        let head = head_of(word);
        if word.len() <= INLINE {
            return self.add_short(head, word.len(), count);
        }
        self.add_long(head, word, count);
    }

    #[cold]
    fn add_long(&mut self, head: [u64; 2], word: &[u8], count: u64) {
        let hash = self.hasher.hash(head, word);
        if let Some(at) = self.find_or_insert(hash, head, word.len(), true, &word[INLINE..], count)
        {
            self.slots[at].count += count;
        }
    }

    /// The value held for `word`, or `value` stored as its value if the word is new (then
    /// the flag is true). Gives words stable ids (see `TextCounts`).
    #[inline]
    pub fn get_or_insert(&mut self, word: &[u8], value: u64) -> (u64, bool) {
        let (hash, head) = self.hash_of(word);
        self.get_or_insert_hashed(hash, head, word, value)
    }

    /// The hash and head of any word, for `prefetch` and `get_or_insert_hashed`.
    #[inline(always)]
    pub fn hash_of(&self, word: &[u8]) -> (u64, [u64; 2]) {
        let head = head_of(word);
        (self.hasher.hash(head, word), head)
    }

    /// `hash_of` for the `len` bytes at `start` of `text`: where 16 bytes follow `start`, the
    /// head is one 16-byte load masked to the length, with no branch on it (word lengths in
    /// text are unpredictable, and `head_of` branches on them).
    #[inline(always)]
    pub fn hash_in(&self, text: &[u8], start: usize, len: usize) -> (u64, [u64; 2]) {
        match text.get(start..start + INLINE) {
            Some(sixteen) if len <= INLINE => {
                let all = u128::from_le_bytes(sixteen.try_into().expect("16 bytes"));
                // The low `len` bytes (none for the empty word: a shift by 128 is `None`).
                let mask = u128::MAX
                    .checked_shr(8 * (INLINE - len) as u32)
                    .unwrap_or(0);
                let word = all & mask;
                let head = [word as u64, (word >> 64) as u64];
                (self.hasher.hash_short(head, len), head)
            }
            _ => self.hash_of(&text[start..start + len]),
        }
    }

    /// Makes `value` the value held for `word` (stored if the word is new).
    pub fn set(&mut self, word: &[u8], value: u64) {
        let (hash, head) = self.hash_of(word);
        let long = word.len() > INLINE;
        let tail = if long { &word[INLINE..] } else { &[][..] };
        if let Some(at) = self.find_or_insert(hash, head, word.len(), long, tail, value) {
            self.slots[at].count = value;
        }
    }

    /// `get_or_insert` with what `hash_of` gave.
    #[inline(always)]
    pub fn get_or_insert_hashed(
        &mut self,
        hash: u64,
        head: [u64; 2],
        word: &[u8],
        value: u64,
    ) -> (u64, bool) {
        let long = word.len() > INLINE;
        let tail = if long { &word[INLINE..] } else { &[][..] };
        match self.find_or_insert(hash, head, word.len(), long, tail, value) {
            Some(at) => (self.slots[at].count, false),
            None => (value, true),
        }
    }

    /// The slot holding the word (head, length and, for `long` words, the bytes after the
    /// head), or `None` after storing it in an empty slot with `value`.
    #[inline(always)]
    fn find_or_insert(
        &mut self,
        hash: u64,
        head: [u64; 2],
        word_len: usize,
        long: bool,
        tail: &[u8],
        value: u64,
    ) -> Option<usize> {
        let len = word_len.min(EMPTY as usize - 1) as u32;
        let mut at = hash as usize & self.mask;
        loop {
            let slot = &self.slots[at];
            if slot.head == head
                && slot.len == len
                && (!long || self.long_tails.get(slot.tail) == tail)
            {
                return Some(at);
            }
            if slot.len == EMPTY {
                let tail = if long {
                    self.long_tails.push(tail, hash)
                } else {
                    0
                };
                self.slots[at] = Slot {
                    head,
                    count: value,
                    len,
                    tail,
                };
                self.inserted();
                return None;
            }
            at = (at + 1) & self.mask;
        }
    }

    /// Keeps the table at most 5/8 full, where linear probing stays short; at the size
    /// `keep_within` allows, at most 7/8 full.
    #[inline(always)]
    fn inserted(&mut self) {
        self.used += 1;
        if self.used * 8 > self.slots.len() * 5
            && (self.slots.len() < self.max_slots || self.used * 8 > self.slots.len() * 7)
        {
            self.grow();
        }
    }

    #[cold]
    fn grow(&mut self) {
        let doubled = vec![VACANT; self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, doubled);
        self.mask = self.slots.len() - 1;
        for slot in old.into_iter().filter(|s| s.len != EMPTY) {
            let hash = if slot.len as usize <= INLINE {
                self.hasher.hash_short(slot.head, slot.len as usize)
            } else {
                self.long_tails.hash(slot.tail)
            };
            let mut at = hash as usize & self.mask;
            while self.slots[at].len != EMPTY {
                at = (at + 1) & self.mask;
            }
            self.slots[at] = slot;
        }
    }

    fn word_of(slot: &Slot, long_tails: &Tails) -> Vec<u8> {
        let mut head = [0u8; INLINE];
        head[..8].copy_from_slice(&slot.head[0].to_le_bytes());
        head[8..].copy_from_slice(&slot.head[1].to_le_bytes());
        let mut word = head[..(slot.len as usize).min(INLINE)].to_vec();
        if slot.len as usize > INLINE {
            word.extend_from_slice(long_tails.get(slot.tail));
        }
        word
    }

    /// Whether the slots no longer fit in a core's L2 cache, so that lookups miss unless
    /// their slots are prefetched well ahead.
    #[inline]
    pub fn is_large(&self) -> bool {
        self.slots.len() * std::mem::size_of::<Slot>() > LARGE_TABLE_BYTES
    }

    /// Bytes the table and the long words' tails take.
    pub fn memory_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.long_tails.bytes.capacity()
            + (self.long_tails.ends.capacity() + self.long_tails.hashes.capacity()) * 8
    }

    /// The number of distinct words in the table.
    pub fn len(&self) -> usize {
        self.used
    }

    /// Whether no word has been counted yet.
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// Every word and its count, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = (Vec<u8>, u64)> + '_ {
        self.slots
            .iter()
            .filter(|s| s.len != EMPTY)
            .map(|slot| (Self::word_of(slot, &self.long_tails), slot.count))
    }

    /// Calls `f` with each word held in the `part`th of `parts` equal ranges of slots, its
    /// count, and its count in `other` (0 if absent; a table of the same run), without
    /// allocating for words of up to `INLINE` bytes: results are built from several ranges at
    /// once, and two tables are joined without merging one into the other. The lookups in
    /// `other` go in prefetched groups (tables can be far larger than the caches).
    pub fn for_each_in_part(
        &self,
        part: usize,
        parts: usize,
        other: Option<&WordCounts>,
        mut f: impl FnMut(&[u8], u64, u64),
    ) {
        const GROUP: usize = 16;
        let n = self.slots.len();
        let mut group: [(&Slot, u64); GROUP] = [(&VACANT, 0); GROUP];
        let mut pending = 0;
        let mut long = Vec::new();
        let mut emit = |slot: &Slot, hash: u64| {
            let mut head = [0u8; INLINE];
            head[..8].copy_from_slice(&slot.head[0].to_le_bytes());
            head[8..].copy_from_slice(&slot.head[1].to_le_bytes());
            let word = if slot.len as usize <= INLINE {
                &head[..slot.len as usize]
            } else {
                long.clear();
                long.extend_from_slice(&head);
                long.extend_from_slice(self.long_tails.get(slot.tail));
                &long[..]
            };
            let elsewhere = other.map_or(0, |other| other.get_hashed(hash, slot.head, word));
            f(word, slot.count, elsewhere);
        };
        for slot in &self.slots[part * n / parts..(part + 1) * n / parts] {
            if slot.len == EMPTY {
                continue;
            }
            let Some(other) = other else {
                emit(slot, 0);
                continue;
            };
            let hash = if slot.len as usize <= INLINE {
                self.hasher.hash_short(slot.head, slot.len as usize)
            } else {
                let word = Self::word_of(slot, &self.long_tails);
                self.hasher.hash(slot.head, &word)
            };
            other.prefetch(hash);
            group[pending] = (slot, hash);
            pending += 1;
            if pending == GROUP {
                for &(slot, hash) in &group {
                    emit(slot, hash);
                }
                pending = 0;
            }
        }
        for &(slot, hash) in &group[..pending] {
            emit(slot, hash);
        }
    }

    /// The count of `word`, whose hash and head `hash_of` gave, or 0.
    fn get_hashed(&self, hash: u64, head: [u64; 2], word: &[u8]) -> u64 {
        let len = word.len().min(EMPTY as usize - 1) as u32;
        let long = word.len() > INLINE;
        let mut at = hash as usize & self.mask;
        loop {
            let slot = &self.slots[at];
            if slot.head == head
                && slot.len == len
                && (!long || self.long_tails.get(slot.tail) == &word[INLINE..])
            {
                return slot.count;
            }
            if slot.len == EMPTY {
                return 0;
            }
            at = (at + 1) & self.mask;
        }
    }

    /// Folds `other` into `self` (the larger table absorbs the smaller one), with prefetched
    /// lookups: both tables can be far larger than the caches.
    pub fn merge(mut self, mut other: WordCounts) -> WordCounts {
        if other.used > self.used {
            std::mem::swap(&mut self, &mut other);
        }
        let mut pending = PendingWords::default();
        for slot in other.slots.iter().filter(|s| s.len != EMPTY) {
            if slot.len as usize <= INLINE {
                self.add_short_soon(&mut pending, slot.head, slot.len as usize, slot.count);
            } else {
                let word = Self::word_of(slot, &other.long_tails);
                self.add_long(slot.head, &word, slot.count);
            }
        }
        self.count_pending(&mut pending);
        self
    }
}

/// A word's first 8 bytes, zero-padded, big-endian: ordered as the words' bytes are, up to
/// ties (which the words themselves then break). Sorts of millions of words compare these,
/// kept beside each word's id, instead of reading the words from all over memory.
#[inline]
pub fn word_prefix(word: &[u8]) -> u64 {
    let mut head = [0u8; 8];
    let n = word.len().min(8);
    head[..n].copy_from_slice(&word[..n]);
    u64::from_be_bytes(head)
}

/// Counts per text key with stable ids, for `group_count`: each word is stored once (the
/// inline-key table maps it to its id), counts live in a plain vector, and results come out
/// most frequent first, ties by word, sorted on integers: the words' lexical ranks are kept
/// between results and recomputed only when new words arrived. A stream's every epoch sorts
/// its whole state, so this keeps per-epoch work close to the new rows' own.
pub struct TextCounts {
    ids: WordCounts,
    words: Vec<Box<str>>,
    counts: Vec<i64>,
    /// `ranks[id]`: the position of `words[id]` in byte order; covers the first `ranks.len()`
    /// words. Behind a lock because results are made through `&self`.
    ranks: std::sync::Mutex<Vec<u32>>,
    /// The bytes of every word in `words`.
    word_bytes: usize,
}

impl Default for TextCounts {
    fn default() -> Self {
        TextCounts {
            ids: WordCounts::new(WordHasher::default()),
            words: Vec::new(),
            counts: Vec::new(),
            word_bytes: 0,
            ranks: Default::default(),
        }
    }
}

impl TextCounts {
    /// Adds `count` to `word`'s count, adding the word when it is new.
    #[inline]
    pub fn add(&mut self, word: &str, count: i64) {
        self.add_bytes(word.as_bytes(), count);
    }

    /// `add` for a word cut from valid UTF-8 at ASCII bytes (so it is valid UTF-8 itself; it
    /// is checked only when the word is new).
    #[inline]
    pub fn add_bytes(&mut self, word: &[u8], count: i64) {
        let (hash, head) = self.ids.hash_of(word);
        self.add_hashed(hash, head, word, count);
    }

    /// Adds one of each word, looking words up in groups whose table slots are prefetched
    /// together: a stream's table is cold at each epoch (sinks and the rest of the machine ran
    /// since the last), and overlapped cache misses cost a fraction of one-by-one ones.
    pub fn add_each(&mut self, words: &[&[u8]]) {
        const GROUP: usize = 16;
        let mut hashed = [(0u64, [0u64; 2]); GROUP];
        for group in words.chunks(GROUP) {
            for (word, slot) in group.iter().zip(hashed.iter_mut()) {
                *slot = self.ids.hash_of(word);
                self.ids.prefetch(slot.0);
            }
            for (word, &(hash, head)) in group.iter().zip(hashed.iter()) {
                self.add_hashed(hash, head, word, 1);
            }
        }
    }

    #[inline(always)]
    fn add_hashed(&mut self, hash: u64, head: [u64; 2], word: &[u8], count: i64) {
        let (id, new) = self
            .ids
            .get_or_insert_hashed(hash, head, word, self.words.len() as u64);
        if new {
            self.push_word(String::from_utf8_lossy(word).into(), count);
        } else {
            self.counts[id as usize] += count;
        }
    }

    /// Adds one of each value of a text column without nulls: heads read with `hash_in`, and
    /// the slots of 16 words prefetched before they are counted.
    pub fn add_column(&mut self, column: &arrow_array::StringArray) {
        const GROUP: usize = 16;
        let offsets = column.value_offsets();
        let rows = offsets.len() - 1;
        let text = column.value_data();
        let mut hashed = [(0u64, [0u64; 2]); GROUP];
        let mut row = 0;
        while row < rows {
            let group = GROUP.min(rows - row);
            for (i, slot) in hashed[..group].iter_mut().enumerate() {
                let (start, end) = (offsets[row + i] as usize, offsets[row + i + 1] as usize);
                *slot = self.ids.hash_in(text, start, end - start);
                self.ids.prefetch(slot.0);
            }
            for (i, &(hash, head)) in hashed[..group].iter().enumerate() {
                let (start, end) = (offsets[row + i] as usize, offsets[row + i + 1] as usize);
                if end - start > INLINE {
                    self.add_hashed(hash, head, &text[start..end], 1);
                    continue;
                }
                // Short words (almost all) skip the long words' tail compare.
                let (id, new) =
                    self.ids
                        .get_or_insert_short(hash, head, end - start, self.words.len() as u64);
                if new {
                    self.push_word(String::from_utf8_lossy(&text[start..end]).into(), 1);
                } else {
                    self.counts[id as usize] += 1;
                }
            }
            row += group;
        }
    }

    /// The id of `word`, added with a count of 0 when new: ids stay the same for the table's
    /// life (see `add_to`).
    pub fn id_of(&mut self, word: &str) -> usize {
        let (id, new) = self
            .ids
            .get_or_insert(word.as_bytes(), self.words.len() as u64);
        if new {
            self.push_word(word.into(), 0);
        }
        id as usize
    }

    /// Keeps a new word (its id is `len()` before the call) with its count.
    fn push_word(&mut self, word: Box<str>, count: i64) {
        self.word_bytes += word.len();
        self.words.push(word);
        self.counts.push(count);
    }

    /// About the bytes the table holds: its slots, the words (each its own allocation, with
    /// the allocator's 16 bytes of overhead) and the counts.
    pub fn memory_bytes(&self) -> usize {
        self.ids.memory_bytes()
            + self.words.capacity() * std::mem::size_of::<Box<str>>()
            + self.word_bytes
            + self.words.len() * 16
            + self.counts.capacity() * std::mem::size_of::<i64>()
    }

    /// Adds `count` to the word whose id `id_of` gave.
    #[inline]
    pub fn add_to(&mut self, id: usize, count: i64) {
        self.counts[id] += count;
    }

    /// The number of distinct words.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Whether no word has been added yet.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Every word and its count, in the order the words first came.
    pub fn iter(&self) -> impl Iterator<Item = (&str, i64)> {
        self.words
            .iter()
            .map(|w| &**w)
            .zip(self.counts.iter().copied())
    }

    /// Every word and its count, most frequent first, ties by word (byte order).
    pub fn sorted(&self) -> Vec<(&str, i64)> {
        let mut ranks = self.ranks.lock().unwrap_or_else(|p| p.into_inner());
        if ranks.len() != self.words.len() {
            // Each word's prefix lies beside its id, so that most comparisons read no word:
            // with millions of words they lie far apart in memory.
            let mut keyed: Vec<(u64, u32)> = (0..self.words.len())
                .map(|id| (word_prefix(self.words[id].as_bytes()), id as u32))
                .collect();
            keyed.sort_unstable_by(|a, b| {
                a.0.cmp(&b.0)
                    .then_with(|| self.words[a.1 as usize].cmp(&self.words[b.1 as usize]))
            });
            let by_word: Vec<u32> = keyed.into_iter().map(|(_, id)| id).collect();
            ranks.resize(self.words.len(), 0);
            for (rank, &id) in by_word.iter().enumerate() {
                ranks[id as usize] = rank as u32;
            }
        }
        let fits_u32 = self
            .counts
            .iter()
            .all(|&c| (0..=u32::MAX as i64).contains(&c));
        let ids: Vec<u32> = if fits_u32 {
            // The usual case: one integer per row, (count descending, rank) packed in a u64.
            let mut by_rank = vec![0u32; ranks.len()];
            for (id, &rank) in ranks.iter().enumerate() {
                by_rank[rank as usize] = id as u32;
            }
            let mut keys: Vec<u64> = (0..self.words.len())
                .map(|id| (u64::from(u32::MAX - self.counts[id] as u32) << 32) | ranks[id] as u64)
                .collect();
            keys.sort_unstable();
            keys.iter()
                .map(|&key| by_rank[key as u32 as usize])
                .collect()
        } else {
            let mut keyed: Vec<(std::cmp::Reverse<i64>, u32, u32)> = (0..self.words.len())
                .map(|id| (std::cmp::Reverse(self.counts[id]), ranks[id], id as u32))
                .collect();
            keyed.sort_unstable();
            keyed.into_iter().map(|(_, _, id)| id).collect()
        };
        ids.into_iter()
            .map(|id| (&*self.words[id as usize], self.counts[id as usize]))
            .collect()
    }
}

/// Asks the CPU to start loading the cache line at `at`, so that a read a little later finds it
/// in cache (tables of millions of entries fit in no cache). Any address will do: a prefetch
/// is only a hint.
#[inline(always)]
pub fn prefetch<T>(at: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching reads nothing the program sees and faults on no address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Words that share their first 8 bytes or are prefixes of one another, as `sorted`'s
    /// prefix keys must order them: counts descending, then bytes ascending.
    pub(crate) fn tricky_words() -> Vec<(String, i64)> {
        let mut words = Vec::new();
        let stems = [
            "",
            "a",
            "prefixed",
            "prefixed\0",
            "prefixed-",
            "prefixedz",
            "ünïcødé",
        ];
        for (i, stem) in stems.iter().enumerate() {
            for tail in ["", "\0", "a", "b", "long-tail", "éé"] {
                let word = format!("{stem}{tail}");
                if !words.iter().any(|(w, _)| *w == word) {
                    words.push((word, 1 + (i as i64 * 7 + tail.len() as i64) % 3));
                }
            }
        }
        words
    }

    #[test]
    fn sorted_is_most_frequent_first_then_by_bytes() {
        let words = tricky_words();
        let mut counts = TextCounts::default();
        for (word, count) in words.iter().rev() {
            counts.add(word, *count);
        }
        let mut expected: Vec<(&str, i64)> = words.iter().map(|(w, c)| (w.as_str(), *c)).collect();
        expected.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        assert_eq!(counts.sorted(), expected);
    }

    #[test]
    fn hash_in_a_buffer_is_hash_of_the_word() {
        let table = WordCounts::new(WordHasher::default());
        let text: Vec<u8> = (0..80u8).map(|i| i.wrapping_mul(37) | 1).collect();
        for start in [0, 3, 40, 63, 64] {
            for len in 0..=(80 - start).min(40) {
                assert_eq!(
                    table.hash_in(&text, start, len),
                    table.hash_of(&text[start..start + len]),
                    "start {start} len {len}"
                );
            }
        }
    }

    #[test]
    fn a_column_counts_as_its_words_do() {
        let words = [
            "a",
            "",
            "romeo",
            "a",
            "exceedingly-long-word-here",
            "romeo",
            "a",
        ];
        let column = arrow_array::StringArray::from(words.to_vec());
        let (mut by_column, mut by_word) = (TextCounts::default(), TextCounts::default());
        by_column.add_column(&column.slice(1, 6));
        for word in &words[1..] {
            by_word.add(word, 1);
        }
        let sorted = |t: &TextCounts| {
            let mut all: Vec<(String, i64)> = t.iter().map(|(w, c)| (w.to_string(), c)).collect();
            all.sort();
            all
        };
        assert_eq!(sorted(&by_column), sorted(&by_word));
        assert_eq!(sorted(&by_column).len(), 4);
    }

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
            assert_eq!(head_of(word), [expected.0, expected.1], "length {n}");
        }
    }

    #[test]
    fn grows_and_keeps_every_count() {
        let mut counts = WordCounts::new(WordHasher::default());
        let word = |i: u32| {
            if i.is_multiple_of(7) {
                format!("a-rather-long-word-number-{i}")
            } else {
                format!("w{i}")
            }
        };
        // Under Miri (about 1000 times slower) fewer words still make the table grow.
        let words = if cfg!(miri) { 3_000 } else { 50_000 };
        for round in 0..3u32 {
            for i in 0..words {
                if i % 3 <= round {
                    counts.add(word(i).as_bytes(), 1);
                }
            }
        }
        assert_eq!(counts.len(), words as usize);
        let found: std::collections::HashMap<Vec<u8>, u64> = counts.entries().collect();
        for i in 0..words {
            assert_eq!(found[word(i).as_bytes()], 3 - (i % 3) as u64, "word {i}");
        }
    }

    #[test]
    fn a_table_kept_within_a_size_fills_instead_of_growing_and_still_counts_every_word() {
        let slot = std::mem::size_of::<Slot>();
        // Room for 4,096 slots while they grow from 2,048, not for 8,192.
        let bytes = 4096 * slot * 3 / 2;
        let mut counts = WordCounts::new(WordHasher::default()).keep_within(bytes);
        let word = |i: u32| format!("w{i}");
        for i in 0..3_000 {
            counts.add(word(i).as_bytes(), 1);
        }
        // Past 5/8 of 4,096 slots it fills on: full, at the size it was kept to.
        assert!(counts.is_full());
        assert_eq!(counts.memory_bytes(), 4096 * slot);
        // Past 7/8 it must grow after all, and no count is lost on the way.
        for i in 0..10_000 {
            counts.add(word(i).as_bytes(), 1);
        }
        assert!(counts.memory_bytes() > 4096 * slot);
        assert_eq!(counts.len(), 10_000);
        let found: std::collections::HashMap<Vec<u8>, u64> = counts.entries().collect();
        for i in 0..10_000 {
            assert_eq!(
                found[word(i).as_bytes()],
                1 + u64::from(i < 3_000),
                "word {i}"
            );
        }
        // Without a size to keep to, a table grows at 5/8 and is never full.
        let mut unbounded = WordCounts::new(WordHasher::default());
        for i in 0..3_000 {
            unbounded.add(word(i).as_bytes(), 1);
        }
        assert!(!unbounded.is_full());
        assert_eq!(unbounded.memory_bytes(), 8192 * slot);
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

    #[test]
    fn text_counts_sort_by_count_then_word_as_words_arrive() {
        let mut counts = TextCounts::default();
        for w in ["b", "a", "b", "c", "a-long-word-over-sixteen-bytes"] {
            counts.add(w, 1);
        }
        assert_eq!(
            counts.sorted(),
            [
                ("b", 2),
                ("a", 1),
                ("a-long-word-over-sixteen-bytes", 1),
                ("c", 1)
            ]
        );
        // New words after a result: the cached ranks are recomputed.
        counts.add("aa", 5);
        counts.add("c", 1);
        assert_eq!(
            counts.sorted(),
            [
                ("aa", 5),
                ("b", 2),
                ("c", 2),
                ("a", 1),
                ("a-long-word-over-sixteen-bytes", 1)
            ]
        );
        assert_eq!(counts.len(), 5);
        assert_eq!(counts.iter().next(), Some(("b", 2)));
        // Counts past 32 bits take the general sort.
        counts.add("c", 1 << 40);
        assert_eq!(counts.sorted()[..2], [("c", (1 << 40) + 2), ("aa", 5)]);
    }
}
