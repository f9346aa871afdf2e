//! What the simulated clients were told, and the invariants that follow from
//! it (docs/design/simulation.md, "Invariants").
//!
//! ringlog acknowledges acks=1 and acks=all only once the records are durable
//! (fsync), and its high watermark is the durable point: a consumer never
//! reads past it. So, whatever the faults (crash, power loss, full disk):
//! - an acknowledged record stays readable at the offset it was given;
//! - an offset, once a client saw what it holds (acknowledged or fetched),
//!   never holds anything else;
//! - the high watermark a client was told never goes back, also across
//!   restarts;
//! - offsets are dense from the log start (no gaps, no reuse);
//! - an idempotent producer's record is in the log at most once;
//! - a committed group offset survives restarts;
//! - the log start offset never goes back, and never below an acknowledged
//!   DeleteRecords offset (retention and DeleteRecords topics);
//! - on compacted topics, every key's latest acknowledged value stays
//!   readable at its offset unless a tombstone may have removed it.

use crate::io::rand::{HashMap, HashSet};
use std::collections::BTreeMap;

/// A partition: (topic index, partition).
pub type Tp = (usize, i32);

/// A record's identity: the part of its value before `|`.
pub type RecId = String;

#[derive(Default)]
pub struct PartitionModel {
    /// What each offset holds, as far as any client was told.
    pub known: BTreeMap<i64, RecId>,
    /// The highest high watermark any client was told (acknowledged
    /// records count: they are below the high watermark when acknowledged).
    pub hw_max: i64,
    /// Records an idempotent producer sent (acknowledged or not): each may
    /// be in the log at most once.
    pub idempotent: HashSet<RecId>,
    /// The lowest log start offset the partition may report now: the
    /// highest any client was told (Fetch, ListOffsets earliest,
    /// DeleteRecords' low watermark) and every acknowledged DeleteRecords
    /// offset. The log start never goes back.
    pub log_start_floor: i64,
    /// Keyed (compacted) topics: per key, the highest offset at which a
    /// record with it was acknowledged, and whether that record is a
    /// tombstone.
    pub latest_acked: BTreeMap<String, (i64, bool)>,
    /// Keyed topics: per key, the highest offset at which a tombstone for
    /// it was acknowledged.
    pub tombstone_acked: HashMap<String, i64>,
    /// Keyed topics: keys a tombstone was sent for whose outcome is unknown
    /// (acks=0, an error or a broken connection on some attempt): it may
    /// be anywhere in the log, and may have removed the key's older values.
    pub tombstone_unknown: HashSet<String>,
}

impl PartitionModel {
    /// A keyed record was acknowledged at `offset`.
    pub fn acked_key(&mut self, key: &str, offset: i64, tombstone: bool) {
        let e = self.latest_acked.entry(key.to_string()).or_insert((offset, tombstone));
        if offset >= e.0 {
            *e = (offset, tombstone);
        }
        if tombstone {
            let t = self.tombstone_acked.entry(key.to_string()).or_insert(offset);
            *t = (*t).max(offset);
        }
    }
}

/// A group offset commit's outcome.
#[derive(Default, Clone, Debug)]
pub struct CommitModel {
    /// The last commit the broker acknowledged.
    pub acked: Option<i64>,
    /// Commits sent after it whose outcome is unknown (timeout, broken
    /// connection): the stored offset may be any of them.
    pub maybe: Vec<i64>,
}

#[derive(Default)]
pub struct Model {
    pub parts: HashMap<Tp, PartitionModel>,
    pub commits: HashMap<Tp, CommitModel>,
    /// Invariant violations found (the first one fails the seed).
    pub violations: Vec<String>,
    /// Counters for the report.
    pub acked_records: u64,
    pub fetched_records: u64,
    pub produce_errors: BTreeMap<i16, u64>,
}

impl Model {
    pub fn violation(&mut self, what: String) {
        tracing::error!("simulation invariant violated: {what}");
        self.violations.push(what);
    }

    pub fn part(&mut self, tp: Tp) -> &mut PartitionModel {
        self.parts.entry(tp).or_default()
    }

    /// `offset` of `tp` holds `id` (acknowledged or read): it must not have
    /// held anything else before.
    pub fn observe(&mut self, tp: Tp, offset: i64, id: &str, how: &str) {
        let p = self.part(tp);
        match p.known.get(&offset) {
            Some(old) if old != id => {
                let msg = format!("{tp:?} offset {offset} holds {id:?} ({how}), but held {old:?} before");
                self.violation(msg);
            }
            Some(_) => {}
            None => {
                p.known.insert(offset, id.to_string());
            }
        }
    }

    /// The log start offset of `tp` clients were told so far: a request
    /// sent now must not be answered with a lower one.
    pub fn log_start_floor(&mut self, tp: Tp) -> i64 {
        self.part(tp).log_start_floor
    }

    /// A client was told that the log start offset of `tp` is `start`
    /// (`how`) in answer to a request sent when the floor was `floor`
    /// ([`Model::log_start_floor`]): an answer may reflect the log at any
    /// time after its request was sent (a long poll parked at shutdown
    /// completes with its first read), not before.
    pub fn saw_log_start(&mut self, tp: Tp, start: i64, floor: i64, how: &str) {
        if start < floor {
            let msg = format!(
                "{tp:?}: log start offset {start} ({how}), but it was {floor} before the request (the log start went back)"
            );
            self.violation(msg);
        }
        let p = self.part(tp);
        p.log_start_floor = p.log_start_floor.max(start);
    }

    /// A client was told the high watermark of `tp` is `hw`.
    pub fn saw_hw(&mut self, tp: Tp, hw: i64) {
        let p = self.part(tp);
        p.hw_max = p.hw_max.max(hw);
    }

    /// High watermarks every client was told so far (a new connection's
    /// floor: nothing it is told later may be lower).
    pub fn hw_floor(&self) -> HashMap<Tp, i64> {
        self.parts.iter().map(|(tp, p)| (*tp, p.hw_max)).collect()
    }
}

/// The identity of a record value (`id|padding`).
pub fn rec_id(value: &[u8]) -> String {
    let end = value.iter().position(|b| *b == b'|').unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end]).into_owned()
}
