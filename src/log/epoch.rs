//! The leader-epoch cache of one partition replica and its
//! `leader-epoch-checkpoint` file (pure: no IO; design §7.2).
//!
//! Every batch carries the epoch of the leader that appended it. The cache
//! keeps, in order, the first offset of every epoch the log holds: a list
//! of `(epoch, start_offset)` entries, both strictly increasing. It answers
//! the two questions replication asks:
//!
//! - "where does epoch *e* end?" ([`LeaderEpochCache::end_offset_for`],
//!   Kafka's OffsetForLeaderEpoch): the leader uses it to tell a follower
//!   where their logs diverge (KIP-101, KIP-320; design §7.3 step 2);
//! - "which epoch wrote offset *o*?" ([`LeaderEpochCache::epoch_for_offset`],
//!   ListOffsets' leader epoch, design §7.7).
//!
//! The semantics are those of Kafka's `LeaderEpochFileCache` (assign with
//! truncation of non-monotone entries, `endOffsetFor`, `truncateFromEnd`,
//! `truncateFromStart`, `epochForOffset`); the file is Kafka's
//! `leader-epoch-checkpoint` (`CheckpointFile` version 0):
//!
//! ```text
//! 0
//! <number of entries>
//! <epoch> <start offset>
//! ...
//! ```
//!
//! [`follower_truncation`] is the follower's half of divergence handling:
//! where to truncate when the leader answers a fetch with a diverging epoch.

use std::fmt;

/// Name of the checkpoint file in a partition directory.
pub const LEADER_EPOCH_CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";

/// Kafka's `UNDEFINED_EPOCH`: no epoch (also what a follower with an empty
/// log sends as its last fetched epoch).
pub const UNDEFINED_EPOCH: i32 = -1;

/// Kafka's `UNDEFINED_EPOCH_OFFSET`: no end offset known.
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;

/// One entry: `epoch` wrote the log from `start_offset` on (until the next
/// entry's start, or the log end for the last entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// Why a `leader-epoch-checkpoint` file (or a list of entries) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EpochFileError {
    #[error("leader-epoch-checkpoint: unsupported version line {0:?} (expected \"0\")")]
    Version(String),
    #[error("leader-epoch-checkpoint: bad entry count line {0:?}")]
    Count(String),
    #[error("leader-epoch-checkpoint: {announced} entries announced, {found} found")]
    CountMismatch { announced: usize, found: usize },
    #[error("leader-epoch-checkpoint: line {line}: malformed entry {text:?} (expected \"<epoch> <offset>\")")]
    Malformed { line: usize, text: String },
    #[error("leader-epoch-checkpoint: line {line}: negative epoch or offset in {text:?}")]
    Negative { line: usize, text: String },
    #[error(
        "leader-epoch-checkpoint: entry {index} ({epoch} {start_offset}) does not follow the previous one \
         (epochs and start offsets must strictly increase)"
    )]
    NotMonotone {
        index: usize,
        epoch: i32,
        start_offset: i64,
    },
    #[error("leader-epoch-checkpoint: lines after the announced entries")]
    TrailingLines,
}

/// The leader-epoch cache: `(epoch, start_offset)` entries, epochs and
/// start offsets both strictly increasing (design §7.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// An empty cache (a new partition, or a log without epochs).
    pub fn new() -> Self {
        Self::default()
    }

    /// A cache holding exactly `entries`, which must be valid (non-negative,
    /// epochs and start offsets strictly increasing).
    pub fn from_entries(entries: Vec<EpochEntry>) -> Result<Self, EpochFileError> {
        for (index, e) in entries.iter().enumerate() {
            if e.epoch < 0 || e.start_offset < 0 {
                return Err(EpochFileError::Negative {
                    line: index + 3,
                    text: format!("{} {}", e.epoch, e.start_offset),
                });
            }
            if index > 0 {
                let prev = entries[index - 1];
                if e.epoch <= prev.epoch || e.start_offset <= prev.start_offset {
                    return Err(EpochFileError::NotMonotone {
                        index,
                        epoch: e.epoch,
                        start_offset: e.start_offset,
                    });
                }
            }
        }
        Ok(Self { entries })
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The newest entry.
    pub fn latest_entry(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// The oldest entry.
    pub fn earliest_entry(&self) -> Option<EpochEntry> {
        self.entries.first().copied()
    }

    /// The newest epoch: on a leader its current epoch (assigned when it
    /// became leader, before any batch of that epoch exists); on a follower
    /// the epoch of its last batch (its `last_fetched_epoch`, design §7.3).
    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// The epoch's entry, if the cache has it.
    pub fn entry(&self, epoch: i32) -> Option<EpochEntry> {
        self.entries.iter().find(|e| e.epoch == epoch).copied()
    }

    /// Record that `epoch` starts at `start_offset` (a new leader at its log
    /// end, or a fetched / recovered batch whose epoch is new). Returns
    /// whether the cache changed (and the checkpoint must be written).
    ///
    /// Kafka's `assign`: nothing happens when `epoch` is the latest epoch
    /// and `start_offset` is not below its start (the common case: every
    /// batch of the current epoch). Otherwise every trailing entry that the
    /// new one would make non-monotone (epoch ≥ `epoch` or start ≥
    /// `start_offset`) is removed and the new entry appended: an epoch that
    /// wrote nothing (same start as the new one) is replaced by the newer
    /// epoch, and the cache always describes the log as last written.
    /// Negative epochs or offsets (no epoch) are ignored.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || start_offset < 0 {
            return false;
        }
        if let Some(last) = self.entries.last() {
            if last.epoch == epoch && start_offset >= last.start_offset {
                return false;
            }
        }
        while let Some(last) = self.entries.last() {
            if last.epoch >= epoch || last.start_offset >= start_offset {
                self.entries.pop();
            } else {
                break;
            }
        }
        self.entries.push(EpochEntry { epoch, start_offset });
        true
    }

    /// Kafka's OffsetForLeaderEpoch answer for `requested` on a log ending
    /// at `log_end`: `(epoch, end_offset)` where `epoch` is the largest
    /// known epoch ≤ `requested` and `end_offset` where it ends (the start
    /// of the next known epoch, or `log_end` for the latest epoch).
    ///
    /// Edge cases, as Kafka answers them:
    /// - `requested` is [`UNDEFINED_EPOCH`], the cache is empty, or
    ///   `requested` is above every known epoch: `(-1, -1)` (undefined);
    /// - `requested` is below the earliest known epoch (the log start moved
    ///   past older epochs): `(requested, start of the earliest entry)`, so
    ///   a follower truncates to at most the leader's first known offset.
    pub fn end_offset_for(&self, requested: i32, log_end: i64) -> (i32, i64) {
        const UNDEFINED: (i32, i64) = (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        if requested == UNDEFINED_EPOCH {
            return UNDEFINED;
        }
        match self.latest_epoch() {
            None => return UNDEFINED,
            Some(latest) if latest == requested => return (requested, log_end),
            Some(_) => {}
        }
        // First entry with an epoch above the requested one.
        let higher = self.entries.partition_point(|e| e.epoch <= requested);
        let Some(next) = self.entries.get(higher) else {
            return UNDEFINED;
        };
        match higher.checked_sub(1).and_then(|i| self.entries.get(i)) {
            Some(floor) => (floor.epoch, next.start_offset),
            None => (requested, next.start_offset),
        }
    }

    /// The log was truncated to `end_offset` (everything at or past it
    /// removed): drop the entries starting at or past it (Kafka's
    /// `truncateFromEnd`). Returns whether the cache changed.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        if end_offset < 0 {
            return false;
        }
        let keep = self.entries.partition_point(|e| e.start_offset < end_offset);
        let changed = keep < self.entries.len();
        self.entries.truncate(keep);
        changed
    }

    /// The log start moved to `start_offset` (retention, DeleteRecords):
    /// the entries starting at or before it collapse into one, the epoch
    /// that holds `start_offset`, now starting there (Kafka's
    /// `truncateFromStart`; an entry starting exactly there is kept as it
    /// is). Returns whether the cache changed.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let removed = self.entries.partition_point(|e| e.start_offset <= start_offset);
        if removed == 0 {
            return false;
        }
        let holder = self.entries[removed - 1];
        let changed = removed > 1 || holder.start_offset != start_offset;
        self.entries.drain(..removed - 1);
        self.entries[0] = EpochEntry {
            epoch: holder.epoch,
            start_offset,
        };
        changed
    }

    /// The epoch that wrote `offset` (Kafka's `epochForOffset`): the
    /// latest entry starting at or before it; None when it lies before
    /// every entry.
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        let i = self.entries.partition_point(|e| e.start_offset <= offset);
        i.checked_sub(1).map(|i| self.entries[i].epoch)
    }

    /// The checkpoint file's text, as Kafka writes it.
    pub fn encode(&self) -> String {
        let mut out = format!("0\n{}\n", self.entries.len());
        for e in &self.entries {
            out.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        out
    }

    /// Read a checkpoint file. Like Kafka's reader it accepts any run of
    /// whitespace between the two fields; unlike Kafka (which re-assigns the
    /// entries and so silently drops non-monotone ones) a file whose
    /// entries are not strictly increasing is refused: it was not written
    /// by this cache, and recovery then rebuilds the cache from the batch
    /// headers (design §7.2).
    pub fn parse(text: &str) -> Result<Self, EpochFileError> {
        let mut lines = text.lines();
        let version = lines.next().unwrap_or("");
        if version.trim() != "0" {
            return Err(EpochFileError::Version(version.to_string()));
        }
        let count_line = lines.next().unwrap_or("");
        let count: usize = count_line
            .trim()
            .parse()
            .map_err(|_| EpochFileError::Count(count_line.to_string()))?;
        let mut entries = Vec::with_capacity(count.min(1024));
        for (i, line) in lines.by_ref().take(count).enumerate() {
            let line_no = i + 3;
            let mut fields = line.split_whitespace();
            let (Some(epoch), Some(offset), None) = (fields.next(), fields.next(), fields.next()) else {
                return Err(EpochFileError::Malformed {
                    line: line_no,
                    text: line.to_string(),
                });
            };
            let (Ok(epoch), Ok(start_offset)) = (epoch.parse::<i32>(), offset.parse::<i64>()) else {
                return Err(EpochFileError::Malformed {
                    line: line_no,
                    text: line.to_string(),
                });
            };
            if epoch < 0 || start_offset < 0 {
                return Err(EpochFileError::Negative {
                    line: line_no,
                    text: line.to_string(),
                });
            }
            entries.push(EpochEntry { epoch, start_offset });
        }
        if entries.len() != count {
            return Err(EpochFileError::CountMismatch {
                announced: count,
                found: entries.len(),
            });
        }
        if lines.any(|l| !l.trim().is_empty()) {
            return Err(EpochFileError::TrailingLines);
        }
        Self::from_entries(entries)
    }
}

impl fmt::Display for LeaderEpochCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, e) in self.entries.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{}@{}", e.epoch, e.start_offset)?;
        }
        write!(f, "]")
    }
}

/// Where a follower truncates when its leader answered a fetch with
/// `diverging_epoch = (leader_epoch, leader_end)` (design §7.3 step 2;
/// Kafka's `AbstractFetcherThread` truncation on a diverging epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncation {
    /// Truncate the log to this offset (remove everything at or past it).
    pub offset: i64,
    /// True when the follower now agrees with the leader up to `offset`;
    /// false when it did not know the leader's epoch and truncated to the
    /// end of an older one: its next fetch may diverge again, further back.
    pub complete: bool,
}

/// The follower's side of divergence: with its own cache `local` and log
/// end `local_end`, and the leader's answer `(leader_epoch, leader_end)`:
///
/// - the leader's epoch undefined: truncate to `min(leader_end, local_end)`
///   (the follower's history is unknown to the leader);
/// - the follower's largest epoch ≤ `leader_epoch` is that same epoch:
///   both logs agree up to the end of it on both sides, truncate to
///   `min(leader_end, its local end, local_end)`, complete;
/// - the follower has an older epoch only: truncate to the end of that
///   older epoch, not complete (the next fetch, with that older epoch as
///   `last_fetched_epoch`, finds the divergence point further back);
/// - the follower has no epoch at or below it: `min(leader_end, local_end)`.
pub fn follower_truncation(local: &LeaderEpochCache, local_end: i64, leader_epoch: i32, leader_end: i64) -> Truncation {
    if leader_end == UNDEFINED_EPOCH_OFFSET || leader_epoch == UNDEFINED_EPOCH {
        let offset = if leader_end < 0 {
            local_end
        } else {
            leader_end.min(local_end)
        };
        return Truncation { offset, complete: true };
    }
    let (epoch, end) = local.end_offset_for(leader_epoch, local_end);
    if epoch == UNDEFINED_EPOCH {
        return Truncation {
            offset: leader_end.min(local_end),
            complete: true,
        };
    }
    if epoch != leader_epoch {
        Truncation {
            offset: end.min(local_end),
            complete: false,
        }
    } else {
        Truncation {
            offset: end.min(leader_end).min(local_end),
            complete: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        LeaderEpochCache::from_entries(
            entries
                .iter()
                .map(|&(epoch, start_offset)| EpochEntry { epoch, start_offset })
                .collect(),
        )
        .unwrap()
    }

    fn pairs(c: &LeaderEpochCache) -> Vec<(i32, i64)> {
        c.entries().iter().map(|e| (e.epoch, e.start_offset)).collect()
    }

    #[test]
    fn assign_appends_new_epochs_and_ignores_the_current_one() {
        let mut c = LeaderEpochCache::new();
        assert!(c.assign(0, 0));
        assert!(!c.assign(0, 5), "same epoch, later offset: no change");
        assert!(c.assign(2, 10));
        assert!(!c.assign(2, 12));
        assert_eq!(pairs(&c), vec![(0, 0), (2, 10)]);
        assert_eq!(c.latest_epoch(), Some(2));
        assert!(!c.assign(-1, 20), "no epoch");
        assert!(!c.assign(3, -1));
    }

    #[test]
    fn assign_replaces_an_epoch_that_wrote_nothing() {
        // Leader of epoch 2 at offset 10 wrote nothing before epoch 3 began.
        let mut c = cache(&[(0, 0), (2, 10)]);
        assert!(c.assign(3, 10));
        assert_eq!(pairs(&c), vec![(0, 0), (3, 10)]);
    }

    #[test]
    fn assign_removes_non_monotone_trailing_entries() {
        // Kafka: the new entry wins, entries it contradicts go.
        let mut c = cache(&[(0, 0), (2, 10), (4, 20)]);
        assert!(c.assign(3, 15));
        assert_eq!(pairs(&c), vec![(0, 0), (2, 10), (3, 15)]);
        let mut c = cache(&[(0, 0), (2, 10)]);
        assert!(c.assign(2, 5), "same epoch, earlier start moves the entry back");
        assert_eq!(pairs(&c), vec![(0, 0), (2, 5)]);
        let mut c = cache(&[(1, 0), (2, 10)]);
        assert!(c.assign(5, 3));
        assert_eq!(pairs(&c), vec![(1, 0), (5, 3)]);
    }

    #[test]
    fn end_offset_for_follows_kafka() {
        let c = cache(&[(1, 0), (3, 10), (5, 20)]);
        assert_eq!(c.end_offset_for(5, 27), (5, 27), "latest: the log end");
        assert_eq!(c.end_offset_for(3, 27), (3, 20));
        assert_eq!(c.end_offset_for(4, 27), (3, 20), "unknown epoch: the one before it");
        assert_eq!(c.end_offset_for(2, 27), (1, 10));
        assert_eq!(c.end_offset_for(1, 27), (1, 10));
        assert_eq!(c.end_offset_for(0, 27), (0, 0), "below the earliest: its start");
        assert_eq!(c.end_offset_for(6, 27), (-1, -1), "above the latest: undefined");
        assert_eq!(c.end_offset_for(UNDEFINED_EPOCH, 27), (-1, -1));
        assert_eq!(LeaderEpochCache::new().end_offset_for(0, 5), (-1, -1));
    }

    #[test]
    fn truncate_from_end_drops_entries_at_or_past_the_offset() {
        let mut c = cache(&[(1, 0), (3, 10), (5, 20)]);
        assert!(!c.truncate_from_end(25));
        assert!(c.truncate_from_end(20));
        assert_eq!(pairs(&c), vec![(1, 0), (3, 10)]);
        assert!(!c.truncate_from_end(11));
        assert!(c.truncate_from_end(0));
        assert!(c.is_empty());
        let mut c = cache(&[(1, 0)]);
        assert!(!c.truncate_from_end(-1));
    }

    #[test]
    fn truncate_from_start_clamps_the_first_entry() {
        let mut c = cache(&[(1, 0), (3, 10), (5, 20)]);
        assert!(c.truncate_from_start(15));
        assert_eq!(pairs(&c), vec![(3, 15), (5, 20)]);
        assert!(!c.truncate_from_start(15), "idempotent");
        assert!(c.truncate_from_start(20));
        assert_eq!(pairs(&c), vec![(5, 20)]);
        assert!(c.truncate_from_start(30));
        assert_eq!(pairs(&c), vec![(5, 30)]);
        let mut c = cache(&[(4, 10)]);
        assert!(!c.truncate_from_start(5), "start before every entry: unchanged");
        assert_eq!(pairs(&c), vec![(4, 10)]);
    }

    #[test]
    fn epoch_for_offset_finds_the_writer() {
        let c = cache(&[(1, 5), (3, 10), (5, 20)]);
        assert_eq!(c.epoch_for_offset(4), None);
        assert_eq!(c.epoch_for_offset(5), Some(1));
        assert_eq!(c.epoch_for_offset(9), Some(1));
        assert_eq!(c.epoch_for_offset(10), Some(3));
        assert_eq!(c.epoch_for_offset(1000), Some(5));
    }

    #[test]
    fn parses_kafkas_file() {
        // A leader-epoch-checkpoint as a Kafka 3.x broker leaves it.
        let text = "0\n3\n0 0\n2 1520\n5 98231\n";
        let c = LeaderEpochCache::parse(text).unwrap();
        assert_eq!(pairs(&c), vec![(0, 0), (2, 1520), (5, 98231)]);
        assert_eq!(c.encode(), text);
        assert_eq!(LeaderEpochCache::parse("0\n0\n").unwrap(), LeaderEpochCache::new());
        assert_eq!(LeaderEpochCache::new().encode(), "0\n0\n");
        // Kafka splits on any whitespace.
        assert_eq!(pairs(&LeaderEpochCache::parse("0\n1\n7  42\n").unwrap()), vec![(7, 42)]);
    }

    #[test]
    fn malformed_files_are_refused() {
        use EpochFileError as E;
        type Check = fn(&EpochFileError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("", |e| matches!(e, E::Version(_))),
            ("1\n0\n", |e| matches!(e, E::Version(_))),
            ("0\n", |e| matches!(e, E::Count(_))),
            ("0\nx\n", |e| matches!(e, E::Count(_))),
            ("0\n-1\n", |e| matches!(e, E::Count(_))),
            ("0\n2\n0 0\n", |e| {
                matches!(e, E::CountMismatch { announced: 2, found: 1 })
            }),
            ("0\n1\n0 0\n1 5\n", |e| matches!(e, E::TrailingLines)),
            ("0\n1\n0\n", |e| matches!(e, E::Malformed { line: 3, .. })),
            ("0\n1\n0 0 0\n", |e| matches!(e, E::Malformed { .. })),
            ("0\n1\na 0\n", |e| matches!(e, E::Malformed { .. })),
            ("0\n1\n0 99999999999999999999\n", |e| matches!(e, E::Malformed { .. })),
            ("0\n1\n-2 0\n", |e| matches!(e, E::Negative { .. })),
            ("0\n1\n2 -5\n", |e| matches!(e, E::Negative { .. })),
            ("0\n2\n3 0\n2 10\n", |e| matches!(e, E::NotMonotone { index: 1, .. })),
            ("0\n2\n1 10\n2 10\n", |e| matches!(e, E::NotMonotone { .. })),
            ("0\n2\n1 10\n1 20\n", |e| matches!(e, E::NotMonotone { .. })),
        ];
        for (text, ok) in cases {
            let err = LeaderEpochCache::parse(text).expect_err(text);
            assert!(ok(&err), "{text:?}: {err}");
            assert!(err.to_string().starts_with("leader-epoch-checkpoint"));
        }
        // Blank lines after the entries are tolerated.
        assert!(LeaderEpochCache::parse("0\n1\n0 0\n\n").is_ok());
    }

    #[test]
    fn follower_truncation_cases() {
        // Same epoch on both sides: the smaller end.
        let f = cache(&[(1, 0), (3, 10)]);
        assert_eq!(
            follower_truncation(&f, 15, 3, 12),
            Truncation {
                offset: 12,
                complete: true
            }
        );
        // An epoch above the follower's latest (a leader never answers so,
        // its answer is at most the follower's last fetched epoch): Kafka
        // truncates to the smaller end.
        assert_eq!(
            follower_truncation(&f, 15, 4, 12),
            Truncation {
                offset: 12,
                complete: true
            }
        );
        // Follower does not know epoch 3: end of its epoch 2, then again.
        let g = cache(&[(1, 0), (2, 5), (4, 10)]);
        assert_eq!(
            follower_truncation(&g, 15, 3, 12),
            Truncation {
                offset: 10,
                complete: false
            }
        );
        let f = cache(&[(1, 0), (2, 5), (3, 10)]);
        assert_eq!(
            follower_truncation(&f, 15, 2, 8),
            Truncation {
                offset: 8,
                complete: true
            }
        );
        assert_eq!(
            follower_truncation(&f, 15, -1, -1),
            Truncation {
                offset: 15,
                complete: true
            }
        );
        assert_eq!(
            follower_truncation(&LeaderEpochCache::new(), 15, 2, 8),
            Truncation {
                offset: 8,
                complete: true
            }
        );
    }

    // ---- model-based tests ----

    /// A log as the epoch of every offset from 0 (with `start` the log
    /// start: offsets below it are gone).
    #[derive(Debug, Clone)]
    struct ModelLog {
        start: i64,
        epochs: Vec<i32>,
        /// The current epoch when leader (may have written nothing yet).
        leader_epoch: Option<i32>,
    }

    impl ModelLog {
        fn end(&self) -> i64 {
            self.epochs.len() as i64
        }

        /// Kafka's answer computed from the offsets themselves.
        fn end_offset_for(&self, requested: i32) -> (i32, i64) {
            let known: Vec<(i32, i64)> = self.model_entries();
            if requested < 0 || known.is_empty() {
                return (-1, -1);
            }
            if known.last().map(|e| e.0) == Some(requested) {
                return (requested, self.end());
            }
            let floor = known.iter().rev().find(|e| e.0 <= requested);
            let next = known.iter().find(|e| e.0 > requested);
            match (floor, next) {
                (_, None) => (-1, -1),
                (None, Some(n)) => (requested, n.1),
                (Some(f), Some(n)) => (f.0, n.1),
            }
        }

        /// First offset of every epoch present at or past the log start,
        /// the first one clamped to the log start, plus the leader's epoch.
        fn model_entries(&self) -> Vec<(i32, i64)> {
            let mut out: Vec<(i32, i64)> = Vec::new();
            for (o, &e) in self.epochs.iter().enumerate() {
                let o = o as i64;
                if o < self.start {
                    continue;
                }
                if out.last().map(|l| l.0) != Some(e) {
                    out.push((e, o));
                }
            }
            if let Some(le) = self.leader_epoch {
                if out.last().map(|l| l.0) != Some(le) {
                    out.push((le, self.end()));
                }
            }
            out
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Append { n: usize },
        NewEpoch { bump: i32 },
        Truncate { back: usize },
        MoveStart { forward: usize },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1usize..5).prop_map(|n| Op::Append { n }),
            2 => (1i32..3).prop_map(|bump| Op::NewEpoch { bump }),
            1 => (0usize..6).prop_map(|back| Op::Truncate { back }),
            1 => (0usize..4).prop_map(|forward| Op::MoveStart { forward }),
        ]
    }

    proptest! {
        #[test]
        fn cache_matches_a_naive_model(ops in proptest::collection::vec(op(), 1..60), probes in proptest::collection::vec(-1i32..20, 1..20)) {
            let mut model = ModelLog { start: 0, epochs: Vec::new(), leader_epoch: None };
            let mut cache = LeaderEpochCache::new();
            let mut epoch = 0i32;
            for op in ops {
                match op {
                    Op::Append { n } => {
                        // The leader stamps its epoch; the cache already has it.
                        let e = model.leader_epoch.unwrap_or(epoch);
                        if model.leader_epoch.is_none() {
                            model.leader_epoch = Some(e);
                            cache.assign(e, model.end());
                        }
                        for _ in 0..n {
                            cache.assign(e, model.end());
                            model.epochs.push(e);
                        }
                    }
                    Op::NewEpoch { bump } => {
                        epoch = model.leader_epoch.unwrap_or(epoch) + bump;
                        model.leader_epoch = Some(epoch);
                        cache.assign(epoch, model.end());
                    }
                    Op::Truncate { back } => {
                        // Becoming a follower and truncating: no leader epoch.
                        let to = (model.end() - back as i64).max(model.start);
                        model.epochs.truncate(to as usize);
                        model.leader_epoch = None;
                        cache.truncate_from_end(to);
                        // The cache keeps epochs that wrote nothing only as a
                        // leader; drop a trailing empty entry like the model.
                        if let Some(last) = cache.latest_entry() {
                            if last.start_offset >= model.end() {
                                cache.truncate_from_end(model.end());
                            }
                        }
                    }
                    Op::MoveStart { forward } => {
                        let to = (model.start + forward as i64).min(model.end());
                        if to > model.start && to < model.end() {
                            model.start = to;
                            cache.truncate_from_start(to);
                        }
                    }
                }
                let entries: Vec<(i32, i64)> = pairs(&cache);
                prop_assert_eq!(&entries, &model.model_entries(), "cache {} vs model {:?}", cache, model);
                for w in cache.entries().windows(2) {
                    prop_assert!(w[0].epoch < w[1].epoch && w[0].start_offset < w[1].start_offset);
                }
                prop_assert_eq!(LeaderEpochCache::parse(&cache.encode()), Ok(cache.clone()));
            }
            for &p in &probes {
                prop_assert_eq!(cache.end_offset_for(p, model.end()), model.end_offset_for(p), "probe {}", p);
            }
            for o in model.start..model.end() {
                prop_assert_eq!(cache.epoch_for_offset(o), Some(model.epochs[o as usize]));
            }
        }

        #[test]
        fn parse_never_panics(text in "[0-9 \\-\n]{0,40}") {
            let _ = LeaderEpochCache::parse(&text);
        }

        #[test]
        fn encode_parse_round_trip(raw in proptest::collection::vec((0i32..1000, 0i64..1_000_000), 0..20)) {
            let mut c = LeaderEpochCache::new();
            let mut epochs: Vec<(i32, i64)> = raw;
            epochs.sort();
            for (e, o) in epochs {
                c.assign(e, o);
            }
            prop_assert_eq!(LeaderEpochCache::parse(&c.encode()), Ok(c));
        }
    }
}
