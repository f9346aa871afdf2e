//! One segment: a `.log` file of record batches plus its sparse indexes.
//!
//! The in-memory state tracks two sizes: `size` counts every appended byte
//! (the logical end, including bytes staged for the next write) and
//! `written` the bytes already handed to the file. Reads never look past
//! `written`; the partition's high watermark keeps them below it anyway.

use std::path::{Path, PathBuf};

use crate::io::file::LogFile;

use super::index::{OffsetIndex, TimeIndex};

/// File name of a segment: the 20-digit base offset and an extension.
pub fn segment_file_name(base_offset: i64, ext: &str) -> String {
    format!("{base_offset:020}.{ext}")
}

/// Parse `00000000000000001234.log` into 1234.
pub fn parse_segment_file_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

pub struct Segment {
    pub base_offset: i64,
    pub dir: PathBuf,
    /// Open once the first write reaches it (or at recovery).
    pub file: Option<LogFile>,
    /// Logical size, including staged bytes not yet written.
    pub size: u64,
    /// Bytes written to the file.
    pub written: u64,
    /// Content of the partial last block: bytes [align_down(written), written).
    pub tail: Vec<u8>,
    pub index: OffsetIndex,
    pub time_index: TimeIndex,
    pub bytes_since_index: u64,
    /// One past the last offset appended to this segment.
    pub next_offset: i64,
    pub max_timestamp: i64,
    /// Wall-clock time the segment was created (segment.ms rolling).
    pub created_ms: i64,
    /// Last append (or the file's mtime after recovery): retention's
    /// fallback for segments without timestamps.
    pub modified_ms: i64,
    /// Complete: a newer segment exists and this one's file was cut to its
    /// logical size and its index files written.
    pub sealed: bool,
    /// The sealing write is done (or the segment was recovered complete): no
    /// write of this segment is in flight or will come, so retention may
    /// delete it.
    pub seal_done: bool,
    /// The segment is sealed and its index files and final size are synced:
    /// the recovery point may pass it (recovery then trusts its index files).
    pub index_synced: bool,
    /// Index entries of this (active) segment written and synced by the
    /// last recovery-point checkpoint.
    pub index_checkpointed: usize,
    /// Unreadable regions found by recovery (bad CRC, garbage), in file order.
    /// Their offsets are never handed out again; reads get CORRUPT_MESSAGE.
    pub corrupt: Vec<CorruptRange>,
    /// The segment's state as of the last successful flush (or recovery),
    /// captured before the first append after it: what a rollback after a
    /// failed write restores. `None` while nothing was appended since.
    pub durable: Option<SegmentMark>,
}

/// A region of a segment file that recovery could not read: the offsets
/// `[from_offset, to_offset)` were (or may have been) stored in the bytes
/// `[position, end_position)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorruptRange {
    pub from_offset: i64,
    pub to_offset: i64,
    pub position: u64,
    pub end_position: u64,
}

/// What a segment looked like at a durable point (see [`Segment::durable`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentMark {
    pub size: u64,
    pub next_offset: i64,
    pub max_timestamp: i64,
    pub bytes_since_index: u64,
}

impl Segment {
    pub fn new(dir: &Path, base_offset: i64, now_ms: i64) -> Self {
        Segment {
            base_offset,
            dir: dir.to_path_buf(),
            file: None,
            size: 0,
            written: 0,
            tail: Vec::new(),
            index: OffsetIndex::new(),
            time_index: TimeIndex::new(),
            bytes_since_index: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            created_ms: now_ms,
            modified_ms: now_ms,
            sealed: false,
            seal_done: false,
            index_synced: false,
            index_checkpointed: 0,
            corrupt: Vec::new(),
            durable: None,
        }
    }

    /// The corrupt region holding `offset`, if any.
    pub fn corrupt_at(&self, offset: i64) -> Option<&CorruptRange> {
        self.corrupt
            .iter()
            .find(|c| c.from_offset <= offset && offset < c.to_offset)
    }

    /// Where a read starting at `position` must stop: the file's written
    /// end, or the start of the next corrupt region.
    pub fn readable_end(&self, position: u64) -> u64 {
        self.corrupt
            .iter()
            .filter(|c| c.position >= position)
            .map(|c| c.position)
            .min()
            .unwrap_or(self.written)
            .min(self.written)
    }

    /// The segment's current logical state.
    pub fn mark(&self) -> SegmentMark {
        SegmentMark {
            size: self.size,
            next_offset: self.next_offset,
            max_timestamp: self.max_timestamp,
            bytes_since_index: self.bytes_since_index,
        }
    }

    /// Go back to `mark` (a durable point): later index entries are dropped.
    /// The caller truncates the file.
    pub fn restore(&mut self, mark: SegmentMark) {
        let position = u32::try_from(mark.size).unwrap_or(u32::MAX);
        self.index.truncate_to_position(position);
        let relative = self.relative(mark.next_offset);
        self.time_index.truncate_to_relative_offset(relative);
        self.size = mark.size;
        self.next_offset = mark.next_offset;
        self.max_timestamp = mark.max_timestamp;
        self.bytes_since_index = mark.bytes_since_index;
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join(segment_file_name(self.base_offset, "log"))
    }

    pub fn index_path(&self) -> PathBuf {
        self.dir.join(segment_file_name(self.base_offset, "index"))
    }

    pub fn time_index_path(&self) -> PathBuf {
        self.dir.join(segment_file_name(self.base_offset, "timeindex"))
    }

    /// Offset relative to the segment base, as stored in the indexes.
    pub fn relative(&self, offset: i64) -> u32 {
        (offset - self.base_offset).clamp(0, u32::MAX as i64) as u32
    }

    /// Record a batch of `len` bytes with offsets [base, last] appended at
    /// the current logical end; maintains the sparse indexes.
    pub fn note_append(&mut self, base: i64, last: i64, max_ts: i64, len: u64, interval: u64) {
        let position = self.size;
        if self.size > 0 && self.bytes_since_index >= interval {
            self.index.push(self.relative(base), position as u32);
            if self.max_timestamp >= 0 {
                self.time_index.push(self.max_timestamp, self.relative(base));
            }
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += len;
        self.size += len;
        self.next_offset = last + 1;
        if max_ts > self.max_timestamp {
            self.max_timestamp = max_ts;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// The segment's three files, index files first: the order in which
    /// retention renames them, so that a crash in between leaves a `.log`
    /// without indexes (rebuilt at recovery), never the reverse.
    pub fn file_paths(&self) -> [PathBuf; 3] {
        [self.index_path(), self.time_index_path(), self.log_path()]
    }
}

/// Suffix appended to the files of a segment deleted by retention; they are
/// removed after `file.delete.delay.ms`, or at the next start.
pub const DELETED_SUFFIX: &str = ".deleted";

/// Whether a directory entry is a segment index file (`.index`/`.timeindex`
/// named like a segment) and of which base offset.
pub fn parse_index_file_name(name: &str) -> Option<i64> {
    let stem = name
        .strip_suffix(".index")
        .or_else(|| name.strip_suffix(".timeindex"))?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(segment_file_name(42, "log"), "00000000000000000042.log");
        assert_eq!(parse_segment_file_name("00000000000000000042.log"), Some(42));
        assert_eq!(parse_segment_file_name("42.log"), None);
        assert_eq!(parse_segment_file_name("00000000000000000042.index"), None);
        assert_eq!(parse_segment_file_name("00000000000000000042.log.deleted"), None);
        assert_eq!(parse_index_file_name("00000000000000000042.timeindex"), Some(42));
        assert_eq!(parse_index_file_name("00000000000000000042.index"), Some(42));
        assert_eq!(parse_index_file_name("00000000000000000042.index.deleted"), None);
        assert_eq!(parse_index_file_name("00000000000000000042.log"), None);
    }

    #[test]
    fn index_every_interval() {
        let mut s = Segment::new(Path::new("/x"), 100, 0);
        for i in 0..10 {
            s.note_append(100 + i * 10, 100 + i * 10 + 9, 1000 + i, 1000, 2500);
        }
        // entries at the batches starting once 2500 bytes accumulated
        assert_eq!(s.index.lookup(0), 0);
        assert_eq!(s.index.lookup(30), 3000);
        assert_eq!(s.index.lookup(65), 6000);
        assert_eq!(s.next_offset, 200);
        assert_eq!(s.max_timestamp, 1009);
    }
}
