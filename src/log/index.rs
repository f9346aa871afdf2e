//! Sparse offset and time indexes of one segment (pure, no IO).
//!
//! On disk both use Kafka's layout: `.index` holds 8-byte entries
//! (relative offset u32, file position u32), `.timeindex` 12-byte entries
//! (timestamp i64, relative offset u32), big-endian. Entries are appended in
//! increasing order, so lookups are binary searches.

/// Offset index: relative offset → byte position of the batch containing it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OffsetIndex {
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    pub const ENTRY: usize = 8;

    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Add an entry; ignored unless both keys grow (keeps the index sorted).
    pub fn push(&mut self, relative_offset: u32, position: u32) {
        if let Some(&(o, p)) = self.entries.last() {
            if relative_offset <= o || position <= p {
                return;
            }
        }
        self.entries.push((relative_offset, position));
    }

    /// Position of the last indexed batch starting at or before
    /// `relative_offset` (0 when none is).
    pub fn lookup(&self, relative_offset: u32) -> u32 {
        let i = self.entries.partition_point(|&(o, _)| o <= relative_offset);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].1
        }
    }

    /// The last entry (relative offset, position).
    pub fn last(&self) -> Option<(u32, u32)> {
        self.entries.last().copied()
    }

    /// Keep only the entries for batches starting below `relative_offset`.
    pub fn truncate_to_relative_offset(&mut self, relative_offset: u32) {
        let i = self.entries.partition_point(|&(o, _)| o < relative_offset);
        self.entries.truncate(i);
    }

    /// Number of entries for batches starting below `relative_offset`.
    pub fn count_below(&self, relative_offset: u32) -> usize {
        self.entries.partition_point(|&(o, _)| o < relative_offset)
    }

    /// The first `n` entries in the file format.
    pub fn encode_prefix(&self, n: usize) -> Vec<u8> {
        let n = n.min(self.entries.len());
        let mut out = Vec::with_capacity(n * Self::ENTRY);
        for &(o, p) in &self.entries[..n] {
            out.extend_from_slice(&o.to_be_bytes());
            out.extend_from_slice(&p.to_be_bytes());
        }
        out
    }

    /// Drop entries at or past `position` (after truncating the log).
    pub fn truncate_to_position(&mut self, position: u32) {
        let i = self.entries.partition_point(|&(_, p)| p < position);
        self.entries.truncate(i);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * Self::ENTRY);
        for &(o, p) in &self.entries {
            out.extend_from_slice(&o.to_be_bytes());
            out.extend_from_slice(&p.to_be_bytes());
        }
        out
    }

    /// Decode an index file. `None` when it is not a well-formed index for a
    /// log of `log_size` bytes (then it must be rebuilt from the log).
    pub fn decode(data: &[u8], log_size: u64) -> Option<Self> {
        if !data.len().is_multiple_of(Self::ENTRY) {
            return None;
        }
        let mut idx = Self::new();
        for c in data.chunks_exact(Self::ENTRY) {
            let o = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
            let p = u32::from_be_bytes([c[4], c[5], c[6], c[7]]);
            if (o == 0 && p == 0) && idx.is_empty() {
                // Kafka never writes an entry for position 0; treat zeros as
                // preallocated space.
                break;
            }
            if u64::from(p) >= log_size {
                return None;
            }
            let before = idx.len();
            idx.push(o, p);
            if idx.len() == before {
                return None;
            }
        }
        Some(idx)
    }
}

/// Time index: max timestamp seen so far → relative offset of that batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimeIndex {
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    pub const ENTRY: usize = 12;

    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Add an entry; ignored unless the timestamp grows.
    pub fn push(&mut self, timestamp: i64, relative_offset: u32) {
        if let Some(&(t, o)) = self.entries.last() {
            if timestamp <= t || relative_offset < o {
                return;
            }
        }
        self.entries.push((timestamp, relative_offset));
    }

    /// Relative offset from which to scan for the first record with a
    /// timestamp >= `ts`: the entry just before the first entry >= ts.
    pub fn lookup(&self, ts: i64) -> u32 {
        let i = self.entries.partition_point(|&(t, _)| t < ts);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].1
        }
    }

    /// The newest entry.
    pub fn last(&self) -> Option<(i64, u32)> {
        self.entries.last().copied()
    }

    pub fn truncate_to_relative_offset(&mut self, relative_offset: u32) {
        let i = self.entries.partition_point(|&(_, o)| o < relative_offset);
        self.entries.truncate(i);
    }

    /// The entries pointing below `relative_offset`, in the file format.
    pub fn encode_below(&self, relative_offset: u32) -> Vec<u8> {
        let n = self.entries.partition_point(|&(_, o)| o < relative_offset);
        let mut out = Vec::with_capacity(n * Self::ENTRY);
        for &(t, o) in &self.entries[..n] {
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&o.to_be_bytes());
        }
        out
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * Self::ENTRY);
        for &(t, o) in &self.entries {
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&o.to_be_bytes());
        }
        out
    }

    pub fn decode(data: &[u8]) -> Option<Self> {
        if !data.len().is_multiple_of(Self::ENTRY) {
            return None;
        }
        let mut idx = Self::new();
        for c in data.chunks_exact(Self::ENTRY) {
            let mut t = [0u8; 8];
            t.copy_from_slice(&c[..8]);
            let o = u32::from_be_bytes([c[8], c[9], c[10], c[11]]);
            let t = i64::from_be_bytes(t);
            if t == 0 && o == 0 {
                break;
            }
            idx.push(t, o);
        }
        Some(idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_lookup_finds_floor_entry() {
        let mut i = OffsetIndex::new();
        assert_eq!(i.lookup(5), 0);
        i.push(10, 4096);
        i.push(20, 8192);
        i.push(15, 9000); // out of order: ignored
        assert_eq!(i.len(), 2);
        assert_eq!(i.lookup(0), 0);
        assert_eq!(i.lookup(9), 0);
        assert_eq!(i.lookup(10), 4096);
        assert_eq!(i.lookup(19), 4096);
        assert_eq!(i.lookup(25), 8192);
        assert_eq!(i.last(), Some((20, 8192)));
        assert_eq!(i.count_below(20), 1);
        assert_eq!(i.count_below(21), 2);
        assert_eq!(
            OffsetIndex::decode(&i.encode_prefix(1), 10_000).map(|d| d.len()),
            Some(1)
        );
        let mut j = i.clone();
        j.truncate_to_relative_offset(20);
        assert_eq!(j.last(), Some((10, 4096)));
        i.truncate_to_position(8192);
        assert_eq!(i.lookup(25), 4096);
    }

    #[test]
    fn offset_index_round_trip_and_sanity() {
        let mut i = OffsetIndex::new();
        i.push(3, 100);
        i.push(7, 900);
        let bytes = i.encode();
        assert_eq!(OffsetIndex::decode(&bytes, 1000), Some(i.clone()));
        assert_eq!(OffsetIndex::decode(&bytes, 500), None, "points past the log");
        assert_eq!(OffsetIndex::decode(&bytes[..5], 1000), None, "torn entry");
        let mut unsorted = i.encode();
        unsorted.extend_from_slice(&2u32.to_be_bytes());
        unsorted.extend_from_slice(&950u32.to_be_bytes());
        assert_eq!(OffsetIndex::decode(&unsorted, 1000), None);
    }

    #[test]
    fn time_lookup() {
        let mut t = TimeIndex::new();
        t.push(1000, 0);
        t.push(2000, 10);
        t.push(1500, 20); // not increasing: ignored
        t.push(3000, 30);
        assert_eq!(t.lookup(500), 0);
        assert_eq!(t.lookup(1000), 0);
        assert_eq!(t.lookup(2500), 10);
        assert_eq!(t.lookup(9999), 30);
        assert_eq!(TimeIndex::decode(&t.encode()), Some(t.clone()));
        assert_eq!(TimeIndex::decode(&t.encode_below(30)).map(|d| d.len()), Some(2));
        t.truncate_to_relative_offset(10);
        assert_eq!(t.len(), 1);
    }
}
