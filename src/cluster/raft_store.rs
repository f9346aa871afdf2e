//! The controller quorum's Raft log as raft-rs reads it: the entries since
//! the last snapshot, the hard state and the membership, in memory (pure:
//! no IO). The shell makes each change durable (the metadata log,
//! `quorum-state`, snapshots; docs/design/replication.md 5.2 and 5.4)
//! before the messages that depend on it are sent; after a restart it
//! rebuilds this store from what it persisted ([`RaftStore::restore`]).
//!
//! Unlike raft-rs's `MemStorage` it has no lock (it is owned by the one
//! task that drives the node) and reports misuse as errors, not panics.

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

#[derive(Clone, Debug, Default)]
pub struct RaftStore {
    hard_state: HardState,
    conf_state: ConfState,
    /// Index and term of the last entry the snapshot covers.
    snapshot_meta: SnapshotMetadata,
    /// The snapshot's data (the serialized metadata image), if any.
    snapshot_data: bytes::Bytes,
    /// Entries after the snapshot, contiguous.
    entries: Vec<Entry>,
}

fn store_err(e: StorageError) -> raft::Error {
    raft::Error::Store(e)
}

impl RaftStore {
    /// A new, empty log whose membership is `voters`.
    pub fn new(voters: &[u64]) -> Self {
        let mut conf_state = ConfState::default();
        conf_state.set_voters(voters.to_vec());
        RaftStore {
            conf_state,
            ..Default::default()
        }
    }

    /// Rebuild what a node persisted: its last snapshot (if any), the
    /// entries after it and its hard state.
    pub fn restore(
        voters: &[u64],
        snapshot: Option<Snapshot>,
        entries: Vec<Entry>,
        hard_state: HardState,
    ) -> raft::Result<Self> {
        let mut s = RaftStore::new(voters);
        if let Some(snap) = snapshot {
            s.apply_snapshot(snap)?;
        }
        s.append(&entries)?;
        let last = s.last();
        if hard_state.commit > last {
            return Err(raft::Error::ConfigInvalid(format!(
                "persisted commit index {} is beyond the last persisted entry {last}",
                hard_state.commit
            )));
        }
        s.hard_state = hard_state;
        Ok(s)
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    pub fn set_commit(&mut self, commit: u64) {
        self.hard_state.commit = commit;
    }

    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    pub fn snapshot_index(&self) -> u64 {
        self.snapshot_meta.index
    }

    fn first(&self) -> u64 {
        self.entries.first().map_or(self.snapshot_meta.index + 1, |e| e.index)
    }

    fn last(&self) -> u64 {
        self.entries.last().map_or(self.snapshot_meta.index, |e| e.index)
    }

    /// Append entries, replacing any from the first new index on (a leader
    /// overwriting a follower's uncommitted suffix).
    pub fn append(&mut self, ents: &[Entry]) -> raft::Result<()> {
        let Some(head) = ents.first() else {
            return Ok(());
        };
        if head.index < self.first() {
            return Err(store_err(StorageError::Compacted));
        }
        if head.index > self.last() + 1 {
            return Err(store_err(StorageError::Other(
                format!(
                    "gap in the raft log: last index {}, appending {}",
                    self.last(),
                    head.index
                )
                .into(),
            )));
        }
        let keep = (head.index - self.first()) as usize;
        self.entries.truncate(keep);
        self.entries.extend_from_slice(ents);
        Ok(())
    }

    /// Replace the log by a snapshot (a follower far behind, or a restart).
    pub fn apply_snapshot(&mut self, mut snap: Snapshot) -> raft::Result<()> {
        let meta = snap.take_metadata();
        if meta.index < self.snapshot_meta.index {
            return Err(store_err(StorageError::SnapshotOutOfDate));
        }
        self.hard_state.term = self.hard_state.term.max(meta.term);
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
        // Entries the snapshot covers go; later ones stay only if they
        // agree with it (same term at its index), else the log restarts.
        let agrees = self
            .entries
            .iter()
            .find(|e| e.index == meta.index)
            .is_some_and(|e| e.term == meta.term);
        if agrees {
            self.entries.retain(|e| e.index > meta.index);
        } else {
            self.entries.clear();
        }
        self.conf_state = meta.get_conf_state().clone();
        self.snapshot_meta = meta;
        self.snapshot_data = snap.data;
        Ok(())
    }

    /// Record a snapshot the application made at `index` (at most the
    /// applied index) and drop the entries it covers.
    pub fn compact_to_snapshot(&mut self, index: u64, data: bytes::Bytes) -> raft::Result<()> {
        if index <= self.snapshot_meta.index {
            return Ok(());
        }
        if index > self.hard_state.commit {
            return Err(store_err(StorageError::Other(
                format!("snapshot at {index} beyond the commit index {}", self.hard_state.commit).into(),
            )));
        }
        let term = self.term(index)?;
        self.snapshot_meta.index = index;
        self.snapshot_meta.term = term;
        self.snapshot_meta.set_conf_state(self.conf_state.clone());
        self.snapshot_data = data;
        self.entries.retain(|e| e.index > index);
        Ok(())
    }

    /// The current snapshot as raft-rs sends it.
    pub fn current_snapshot(&self) -> Snapshot {
        let mut snap = Snapshot::default();
        snap.set_metadata(self.snapshot_meta.clone());
        snap.data = self.snapshot_data.clone();
        snap
    }

    pub fn entries_since_snapshot(&self) -> &[Entry] {
        &self.entries
    }
}

impl Storage for RaftStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hard_state.clone(), self.conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(store_err(StorageError::Compacted));
        }
        if high > self.last() + 1 || low > high {
            return Err(store_err(StorageError::Unavailable));
        }
        let base = self.first();
        let mut out: Vec<Entry> = self.entries[(low - base) as usize..(high - base) as usize].to_vec();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.snapshot_meta.index {
            return Ok(self.snapshot_meta.term);
        }
        if idx < self.first() {
            return Err(store_err(StorageError::Compacted));
        }
        if idx > self.last() {
            return Err(store_err(StorageError::Unavailable));
        }
        Ok(self.entries[(idx - self.first()) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        if self.snapshot_meta.index < request_index {
            return Err(store_err(StorageError::SnapshotTemporarilyUnavailable));
        }
        Ok(self.current_snapshot())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ent(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    #[test]
    fn append_overwrites_a_suffix_and_refuses_gaps() {
        let mut s = RaftStore::new(&[1, 2, 3]);
        s.append(&[ent(1, 1), ent(2, 1), ent(3, 1)]).expect("append");
        s.append(&[ent(2, 2)]).expect("overwrite");
        assert_eq!((s.first_index().ok(), s.last_index().ok()), (Some(1), Some(2)));
        assert_eq!(s.term(2).ok(), Some(2));
        assert!(s.append(&[ent(4, 2)]).is_err(), "gap");
        assert!(matches!(s.term(3), Err(raft::Error::Store(StorageError::Unavailable))));
        let got = s.entries(1, 3, None, GetEntriesContext::empty(false)).expect("entries");
        assert_eq!(
            got.iter().map(|e| (e.index, e.term)).collect::<Vec<_>>(),
            vec![(1, 1), (2, 2)]
        );
        assert!(
            s.entries(1, 5, None, GetEntriesContext::empty(false)).is_err(),
            "past the end: an error, no panic"
        );
    }

    #[test]
    fn snapshots_compact_and_restore() {
        let mut s = RaftStore::new(&[1]);
        s.append(&[ent(1, 1), ent(2, 1), ent(3, 2)]).expect("append");
        assert!(
            s.compact_to_snapshot(2, bytes::Bytes::from_static(b"img")).is_err(),
            "not committed yet"
        );
        s.set_commit(3);
        s.compact_to_snapshot(2, bytes::Bytes::from_static(b"img"))
            .expect("compact");
        assert_eq!(s.first_index().ok(), Some(3));
        assert_eq!(s.term(2).ok(), Some(1), "the snapshot's own term");
        assert!(matches!(s.term(1), Err(raft::Error::Store(StorageError::Compacted))));
        let snap = s.snapshot(2, 0).expect("snapshot");
        assert_eq!((snap.get_metadata().index, &snap.data[..]), (2, &b"img"[..]));

        let mut hs = HardState {
            term: 2,
            commit: 3,
            ..Default::default()
        };
        let r = RaftStore::restore(&[1], Some(snap.clone()), vec![ent(3, 2)], hs.clone()).expect("restore");
        assert_eq!((r.first_index().ok(), r.last_index().ok()), (Some(3), Some(3)));
        hs.commit = 9;
        assert!(
            RaftStore::restore(&[1], Some(snap), vec![ent(3, 2)], hs).is_err(),
            "commit past the log"
        );
    }

    #[test]
    fn a_snapshot_that_disagrees_with_the_log_replaces_it() {
        let mut s = RaftStore::new(&[1, 2]);
        s.append(&[ent(1, 1), ent(2, 1), ent(3, 1)]).expect("append");
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = 2;
        snap.mut_metadata().term = 3;
        snap.mut_metadata().mut_conf_state().set_voters(vec![1, 2]);
        s.apply_snapshot(snap).expect("apply");
        assert_eq!((s.first_index().ok(), s.last_index().ok()), (Some(3), Some(2)));
        assert_eq!(s.hard_state().commit, 2);
    }
}
