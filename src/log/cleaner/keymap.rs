//! The cleaner's key → latest offset map (Kafka's `SkimpyOffsetMap`).
//!
//! Compaction needs, for every key of the dirty part of a log, the offset
//! of its latest record. Keys can be large and numerous, so the map stores
//! only a 16-byte hash of each key with the offset, in one table allocated
//! up front (`log.cleaner.dedupe.buffer.size`): memory use is fixed and
//! known, nothing is allocated per entry, and when the table is full the
//! cleaner simply compacts the part of the log it managed to map and maps
//! the rest in a later pass. A hash collision between two keys (odds of
//! about n²/2¹²⁹) would make the cleaner drop the older key's latest record;
//! Kafka accepts the same risk with MD5.

use twox_hash::XxHash3_128;

/// Bytes one entry takes: the 128-bit key hash and the offset.
pub const ENTRY_BYTES: usize = 24;

/// Kafka's default `log.cleaner.io.buffer.load.factor`.
pub const DEFAULT_LOAD_FACTOR: f64 = 0.9;

/// Slots tried at positions drawn from the hash before probing linearly
/// (Kafka's scheme: a few independent positions spread clusters, the linear
/// tail guarantees every slot is reached).
const HASHED_PROBES: usize = 4;

/// One slot: a hash of 0 marks it empty (a key hashing to 0 is stored as 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    hash: [u64; 2],
    offset: i64,
}

const EMPTY: Slot = Slot {
    hash: [0, 0],
    offset: -1,
};

/// A fixed-size open-addressing hash table from key (by 128-bit hash) to
/// the largest offset put for it.
#[derive(Clone, Debug)]
pub struct KeyMap {
    slots: Vec<Slot>,
    /// Entries at which [`KeyMap::is_full`] says stop (slots × load factor,
    /// at least 1, at most the slot count).
    capacity: usize,
    len: usize,
    latest_offset: Option<i64>,
}

impl KeyMap {
    /// A map using `bytes` of memory (at least one entry's worth), declared
    /// full once `load_factor` of its slots are used (clamped to `(0, 1]`;
    /// Kafka uses 0.9: linear probing slows down sharply as the table fills).
    pub fn with_memory(bytes: usize, load_factor: f64) -> KeyMap {
        let slots = (bytes / ENTRY_BYTES).max(1);
        let lf = if load_factor.is_finite() && load_factor > 0.0 {
            load_factor.min(1.0)
        } else {
            DEFAULT_LOAD_FACTOR
        };
        let capacity = ((slots as f64 * lf) as usize).clamp(1, slots);
        KeyMap {
            slots: vec![EMPTY; slots],
            capacity,
            len: 0,
            latest_offset: None,
        }
    }

    /// Record that `key` has a record at `offset`; the map keeps the largest
    /// offset per key. Returns false, changing nothing, when the key is new
    /// and the map [`is_full`](KeyMap::is_full): the caller stops mapping
    /// there. Updating a key already present always succeeds.
    pub fn put(&mut self, key: &[u8], offset: i64) -> bool {
        let hash = hash_key(key);
        let full = self.is_full();
        let Some(i) = self.find(hash) else {
            // Only reachable when every slot is used and the key is new.
            return false;
        };
        let slot = &mut self.slots[i];
        if slot.hash == hash {
            slot.offset = slot.offset.max(offset);
        } else {
            if full {
                return false;
            }
            *slot = Slot { hash, offset };
            self.len += 1;
        }
        self.latest_offset = Some(self.latest_offset.map_or(offset, |l| l.max(offset)));
        debug_assert!(self.len <= self.capacity);
        true
    }

    /// The largest offset put for `key`, if any.
    pub fn get(&self, key: &[u8]) -> Option<i64> {
        let hash = hash_key(key);
        let i = self.find(hash)?;
        let slot = &self.slots[i];
        (slot.hash == hash).then_some(slot.offset)
    }

    /// Raise [`KeyMap::latest_offset`] to `offset` without a key: the
    /// mapping covered records up to it (keyless records, control batches).
    pub fn note_offset(&mut self, offset: i64) {
        self.latest_offset = Some(self.latest_offset.map_or(offset, |l| l.max(offset)));
    }

    /// True once the map holds as many keys as its load factor allows: a
    /// new key is refused by [`KeyMap::put`].
    pub fn is_full(&self) -> bool {
        self.len >= self.capacity
    }

    /// Forget every entry (the memory stays allocated, for the next pass).
    pub fn clear(&mut self) {
        self.slots.fill(EMPTY);
        self.len = 0;
        self.latest_offset = None;
    }

    /// Number of keys in the map.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keys the map takes before it is full.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Memory held by the table.
    pub fn memory_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Slot>()
    }

    /// The highest offset put (or noted) since the last clear.
    pub fn latest_offset(&self) -> Option<i64> {
        self.latest_offset
    }

    /// The slot holding `hash`, or the empty slot where it would go; `None`
    /// if every slot is taken by other keys.
    fn find(&self, hash: [u64; 2]) -> Option<usize> {
        let n = self.slots.len() as u64;
        let step = hash[1] | 1;
        let mut pos = 0;
        for attempt in 0..HASHED_PROBES as u64 {
            pos = (hash[0].wrapping_add(attempt.wrapping_mul(step)) % n) as usize;
            let s = &self.slots[pos];
            if s.hash == hash || s.hash == EMPTY.hash {
                return Some(pos);
            }
        }
        for _ in 0..self.slots.len() {
            pos += 1;
            if pos == self.slots.len() {
                pos = 0;
            }
            let s = &self.slots[pos];
            if s.hash == hash || s.hash == EMPTY.hash {
                return Some(pos);
            }
        }
        None
    }
}

/// The 128-bit xxh3 hash of a key, never the all-zero empty marker.
fn hash_key(key: &[u8]) -> [u64; 2] {
    let h = XxHash3_128::oneshot(key);
    let pair = [h as u64, (h >> 64) as u64];
    if pair == EMPTY.hash {
        [1, 0]
    } else {
        pair
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn put_keeps_the_largest_offset() {
        let mut m = KeyMap::with_memory(1024, DEFAULT_LOAD_FACTOR);
        assert!(m.is_empty());
        assert_eq!(m.get(b"a"), None);
        assert!(m.put(b"a", 5));
        assert!(m.put(b"a", 3));
        assert_eq!(m.get(b"a"), Some(5));
        assert!(m.put(b"a", 9));
        assert!(m.put(b"", 7));
        assert_eq!(m.get(b"a"), Some(9));
        assert_eq!(m.get(b""), Some(7));
        assert_eq!(m.len(), 2);
        assert_eq!(m.latest_offset(), Some(9));
        m.note_offset(20);
        assert_eq!(m.latest_offset(), Some(20));
        m.note_offset(10);
        assert_eq!(m.latest_offset(), Some(20));
    }

    #[test]
    fn memory_is_fixed_and_capacity_follows_the_load_factor() {
        let m = KeyMap::with_memory(24 * 100, 0.9);
        assert_eq!(m.memory_bytes(), 2400);
        assert_eq!(m.capacity(), 90);
        let m = KeyMap::with_memory(0, 0.9);
        assert_eq!((m.memory_bytes(), m.capacity()), (24, 1));
        let m = KeyMap::with_memory(240, 7.0);
        assert_eq!(m.capacity(), 10, "load factor clamped to 1");
        let m = KeyMap::with_memory(240, f64::NAN);
        assert_eq!(m.capacity(), 9, "nonsense load factor: Kafka's default");
    }

    #[test]
    fn full_map_refuses_new_keys_but_updates_old_ones() {
        let mut m = KeyMap::with_memory(24 * 10, 0.9);
        let before = m.memory_bytes();
        for i in 0..9u32 {
            assert!(!m.is_full());
            assert!(m.put(&i.to_be_bytes(), i64::from(i)));
        }
        assert!(m.is_full());
        assert!(!m.put(b"new", 100));
        assert_eq!(m.get(b"new"), None);
        assert_eq!(m.latest_offset(), Some(8));
        assert!(m.put(&3u32.to_be_bytes(), 50));
        assert_eq!(m.get(&3u32.to_be_bytes()), Some(50));
        assert_eq!(m.len(), 9);
        assert_eq!(m.memory_bytes(), before);
        m.clear();
        assert!(m.is_empty() && !m.is_full());
        assert_eq!(m.latest_offset(), None);
        assert_eq!(m.get(&3u32.to_be_bytes()), None);
    }

    #[test]
    fn a_completely_full_table_still_answers() {
        // Load factor 1: every slot used; lookups of absent keys must end.
        let mut m = KeyMap::with_memory(24 * 7, 1.0);
        for i in 0..7u8 {
            assert!(m.put(&[i], i64::from(i)));
        }
        assert!(m.is_full());
        assert_eq!(m.get(b"absent"), None);
        assert!(!m.put(b"absent", 1));
        for i in 0..7u8 {
            assert_eq!(m.get(&[i]), Some(i64::from(i)));
        }
    }

    #[test]
    fn matches_a_hashmap_at_high_load() {
        let mut m = KeyMap::with_memory(24 * 1000, 0.9);
        let mut model = HashMap::new();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for off in 0..5000i64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = format!("key-{}", x % 900);
            if m.put(key.as_bytes(), off) {
                model.insert(key, off);
            } else {
                assert!(m.is_full() && !model.contains_key(&key));
            }
        }
        assert_eq!(m.len(), model.len());
        for (k, &v) in &model {
            assert_eq!(m.get(k.as_bytes()), Some(v), "{k}");
        }
        assert_eq!(m.get(b"key-900"), None);
    }
}
