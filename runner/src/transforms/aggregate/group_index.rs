//! The groups of an `aggregate` state: every group's encoded key (Arrow's row format) one after
//! another in one buffer, with its hash, and a hash table from key to group number that keeps
//! each key's hash. Growing the table, or merging another state of the same aggregation,
//! hashes no key again, and a group costs no allocation of its own: with millions of groups
//! (grouping by a user or a timestamp) a map of boxed keys spent most of its time allocating,
//! freeing and rehashing.
//!
//! The table is open addressing with linear probing, at most half full, so that a lookup
//! mostly reads one cache line, and that line can be loaded ahead (`prefetch`) while earlier
//! keys are looked up: with millions of groups each lookup waited on memory, a third of the
//! time of a run (hashbrown's table has no way to ask for a slot early).

use std::hash::BuildHasher;

use foldhash::fast::FixedState;

/// The groups of one state; all states of one aggregation share `seed`.
pub(super) struct GroupIndex {
    /// Every group's key, in group order: group `g`'s ends at `ends[g]`.
    bytes: Vec<u8>,
    ends: Vec<usize>,
    /// Every group's key hash, in group order.
    hashes: Vec<u64>,
    /// Every group's number and the top bits of its hash (`slot`), or `EMPTY`; a power of two
    /// of slots, at most half used.
    slots: Vec<u64>,
    /// Seeds the hasher: random per aggregation (keys come from the input, so the table must
    /// not be predictable), shared by its states so that they can merge by hash.
    seed: u64,
}

impl GroupIndex {
    pub(super) fn new(seed: u64) -> GroupIndex {
        GroupIndex {
            bytes: Vec::new(),
            ends: Vec::new(),
            hashes: Vec::new(),
            slots: Vec::new(),
            seed,
        }
    }

    /// How many groups there are.
    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Group `group`'s encoded key.
    pub(super) fn key(&self, group: usize) -> &[u8] {
        key_in(&self.bytes, &self.ends, group)
    }

    /// The hash `find_or_insert` wants for `key`.
    pub(super) fn hash(&self, key: &[u8]) -> u64 {
        FixedState::with_seed(self.seed).hash_one(key)
    }

    /// The group of `key` (hashed by `hash`), and whether it is new: a new group is numbered
    /// `len()` as it was before the call.
    pub(super) fn find_or_insert(&mut self, hash: u64, key: &[u8]) -> (usize, bool) {
        if (self.ends.len() + 1) * 2 > self.slots.len() {
            self.grow(self.ends.len() + 1);
        }
        let mask = self.slots.len() - 1;
        let mut at = hash as usize & mask;
        loop {
            let found = self.slots[at];
            if found == EMPTY {
                break;
            }
            let group = (found & GROUP) as usize;
            if found & !GROUP == hash & !GROUP && key_in(&self.bytes, &self.ends, group) == key {
                return (group, false);
            }
            at = (at + 1) & mask;
        }
        let group = self.ends.len();
        self.slots[at] = slot(hash, group);
        self.bytes.extend_from_slice(key);
        self.ends.push(self.bytes.len());
        self.hashes.push(hash);
        (group, true)
    }

    /// Starts loading where group `group`'s key starts and ends are kept (see `prefetch_key`).
    pub(super) fn prefetch_ends(&self, group: usize) {
        crate::counts::prefetch(self.ends.as_ptr().wrapping_add(group.saturating_sub(1)));
    }

    /// Starts loading group `group`'s key (reading where it starts: prefetch that earlier).
    pub(super) fn prefetch_key(&self, group: usize) {
        let start = match group {
            0 => 0,
            _ => self.ends.get(group - 1).copied().unwrap_or(0),
        };
        crate::counts::prefetch(self.bytes.as_ptr().wrapping_add(start));
    }

    /// Asks the CPU to start loading the slot where a key of this hash is looked for.
    pub(super) fn prefetch(&self, hash: u64) {
        let mask = self.slots.len().wrapping_sub(1);
        crate::counts::prefetch(self.slots.as_ptr().wrapping_add(hash as usize & mask));
    }

    /// Room in the table for `groups` groups: twice as many slots (a power of two), every
    /// group put again where its kept hash says.
    fn grow(&mut self, groups: usize) {
        let size = groups.saturating_mul(2).next_power_of_two().max(16);
        if size <= self.slots.len() {
            return;
        }
        let mut slots = vec![EMPTY; size];
        let mask = size - 1;
        for (group, &hash) in self.hashes.iter().enumerate() {
            let mut at = hash as usize & mask;
            while slots[at] != EMPTY {
                at = (at + 1) & mask;
            }
            slots[at] = slot(hash, group);
        }
        self.slots = slots;
    }

    /// Makes room for `groups` more groups of `bytes` key bytes in all.
    pub(super) fn reserve(&mut self, groups: usize, bytes: usize) {
        self.grow(self.len().saturating_add(groups));
        self.ends.reserve(groups);
        self.hashes.reserve(groups);
        self.bytes.reserve(bytes);
    }

    /// Bytes the keys, their hashes and the table take.
    pub(super) fn memory_bytes(&self) -> usize {
        self.bytes.capacity()
            + (self.ends.capacity() + self.hashes.capacity()) * 8
            + self.slots.capacity() * 8
    }

    /// How many bytes the keys take.
    pub(super) fn key_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// The seed of this table's hasher.
    pub(super) fn seed(&self) -> u64 {
        self.seed
    }

    /// Every group's key and hash, in group order, for a table seeded with `seed`: the hash
    /// is kept when both share a seed, computed again otherwise.
    pub(super) fn keys_hashed_for(&self, seed: u64) -> impl Iterator<Item = (&[u8], u64)> + '_ {
        let rehash = (seed != self.seed).then(|| FixedState::with_seed(seed));
        (0..self.len()).map(move |group| {
            let key = self.key(group);
            let hash = match &rehash {
                None => self.hashes[group],
                Some(hasher) => hasher.hash_one(key),
            };
            (key, hash)
        })
    }
}

/// A slot holds a group's number in its low 40 bits (a trillion groups: their keys' ends and
/// hashes alone would take 16 TB) and the top 24 bits of its key's hash, which tell most other
/// keys apart without reading them (the slot's place comes from the hash's low bits).
const GROUP: u64 = (1 << 40) - 1;

/// A slot of no group (its number would be the impossible `GROUP`).
const EMPTY: u64 = u64::MAX;

fn slot(hash: u64, group: usize) -> u64 {
    (hash & !GROUP) | (group as u64 & GROUP)
}

fn key_in<'a>(bytes: &'a [u8], ends: &[usize], group: usize) -> &'a [u8] {
    let start = match group {
        0 => 0,
        _ => ends[group - 1],
    };
    &bytes[start..ends[group]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_get_numbers_in_order_and_keep_them_as_the_table_grows() {
        let mut index = GroupIndex::new(7);
        let keys: Vec<Vec<u8>> = (0..20_000u32)
            .map(|i| format!("key-{i}").repeat(1 + i as usize % 3).into_bytes())
            .collect();
        for (number, key) in keys.iter().enumerate() {
            assert_eq!(index.find_or_insert(index.hash(key), key), (number, true));
        }
        // The empty key is a key too.
        assert_eq!(
            index.find_or_insert(index.hash(b""), b""),
            (keys.len(), true)
        );
        for (number, key) in keys.iter().enumerate() {
            assert_eq!(index.find_or_insert(index.hash(key), key), (number, false));
            assert_eq!(index.key(number), &key[..]);
        }
        assert_eq!(index.len(), keys.len() + 1);
    }

    #[test]
    fn keys_of_one_hash_or_one_slot_are_told_apart_by_their_bytes() {
        // Hashes chosen, not computed: every key collides in its slot and its tag, or only in
        // its slot, and the table grows through them.
        let mut index = GroupIndex::new(3);
        let keys: Vec<Vec<u8>> = (0..300u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let same_slot = |i: usize| {
            if i.is_multiple_of(2) {
                0
            } else {
                (i as u64) << 40
            }
        };
        for (number, key) in keys.iter().enumerate() {
            assert_eq!(index.find_or_insert(same_slot(number), key), (number, true));
        }
        for (number, key) in keys.iter().enumerate().rev() {
            assert_eq!(
                index.find_or_insert(same_slot(number), key),
                (number, false)
            );
        }
        assert_eq!(index.len(), keys.len());
    }

    #[test]
    fn keys_merge_into_a_table_with_another_seed_by_their_bytes() {
        let mut mine = GroupIndex::new(1);
        let mut same_seed = GroupIndex::new(1);
        let mut other_seed = GroupIndex::new(2);
        for key in [&b"a"[..], b"b", b"c"] {
            same_seed.find_or_insert(same_seed.hash(key), key);
            other_seed.find_or_insert(other_seed.hash(key), key);
        }
        mine.find_or_insert(mine.hash(b"b"), b"b");
        for from in [&same_seed, &other_seed] {
            let groups: Vec<(usize, bool)> = from
                .keys_hashed_for(mine.seed())
                .map(|(key, hash)| (key.to_vec(), hash))
                .collect::<Vec<_>>()
                .into_iter()
                .map(|(key, hash)| mine.find_or_insert(hash, &key))
                .collect();
            assert_eq!(mine.len(), 3);
            assert_eq!(groups[1], (0, false), "b was there first");
        }
    }
}
