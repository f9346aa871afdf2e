//! Committed offsets of one group (OffsetCommit / OffsetFetch / OffsetDelete and
//! retention-based expiration).
//!
//! The store only keeps offsets; the group specific checks (generation /
//! member epoch validation, "is the group subscribed to this topic", which
//! timestamp expiration is measured from) are provided by the group through
//! [`OffsetPolicy`], mirroring Kafka's `Group.validateOffsetCommit`,
//! `isSubscribedToTopic` and `offsetExpirationCondition`.

use indexmap::IndexMap;

use super::records::{OffsetCommitValue, Record, RecordKey, RecordValue};
use crate::protocol::error::{self, ErrorCode};

/// `OffsetCommitRequest.DEFAULT_RETENTION_TIME`: no per-commit retention.
pub const DEFAULT_RETENTION_TIME: i64 = -1;
/// Offset returned by OffsetFetch when nothing is committed.
pub const INVALID_OFFSET: i64 = -1;

/// One committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetAndMetadata {
    pub committed_offset: i64,
    /// -1 when unknown.
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    /// Explicit expiration (OffsetCommit v2-v4 with a retention time).
    pub expire_timestamp_ms: Option<i64>,
}

impl OffsetAndMetadata {
    pub fn to_value(&self) -> OffsetCommitValue {
        OffsetCommitValue {
            offset: self.committed_offset,
            leader_epoch: self.leader_epoch,
            metadata: self.metadata.clone(),
            commit_timestamp: self.commit_timestamp_ms,
            expire_timestamp: self.expire_timestamp_ms,
        }
    }

    pub fn from_value(v: &OffsetCommitValue) -> Self {
        OffsetAndMetadata {
            committed_offset: v.offset,
            leader_epoch: v.leader_epoch,
            metadata: v.metadata.clone(),
            commit_timestamp_ms: v.commit_timestamp,
            expire_timestamp_ms: v.expire_timestamp,
        }
    }
}

/// From which timestamp the retention of an offset is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpirationBase {
    /// Offsets of this group never expire in its current state.
    Never,
    /// Retention is measured from each offset's commit timestamp.
    CommitTimestamp,
    /// Retention is measured from a fixed instant (the time the classic group
    /// became Empty).
    Since(i64),
}

/// What the owning group contributes to offset management.
pub trait OffsetPolicy {
    /// Kafka's `Group.validateOffsetCommit` (non transactional).
    fn validate_offset_commit(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id_or_member_epoch: i32,
        api_version: i16,
    ) -> Result<(), ErrorCode>;
    /// Kafka's `Group.validateOffsetFetch`.
    fn validate_offset_fetch(&self, member_id: Option<&str>, member_epoch: i32) -> Result<(), ErrorCode>;
    /// Kafka's `Group.validateOffsetDelete`.
    fn validate_offset_delete(&self) -> Result<(), ErrorCode>;
    fn is_subscribed_to_topic(&self, topic: &str) -> bool;
    fn expiration_base(&self) -> ExpirationBase;
}

// --- OffsetCommit ---------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitPartition {
    pub partition_index: i32,
    pub committed_offset: i64,
    /// -1 when unknown (and for versions < 6).
    pub committed_leader_epoch: i32,
    pub committed_metadata: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitTopic {
    pub name: String,
    pub partitions: Vec<OffsetCommitPartition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitRequest {
    pub group_id: String,
    /// `GenerationIdOrMemberEpoch` (-1 for simple / admin commits).
    pub generation_id_or_member_epoch: i32,
    /// Empty for simple commits.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// v2-v4 `RetentionTimeMs`; [`DEFAULT_RETENTION_TIME`] otherwise.
    pub retention_time_ms: i64,
    pub topics: Vec<OffsetCommitTopic>,
    pub api_version: i16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitResponsePartition {
    pub partition_index: i32,
    pub error_code: ErrorCode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitResponseTopic {
    pub name: String,
    pub partitions: Vec<OffsetCommitResponsePartition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OffsetCommitResponse {
    pub topics: Vec<OffsetCommitResponseTopic>,
}

impl OffsetCommitResponse {
    /// Every requested partition fails with `error` (Kafka's
    /// `OffsetCommitRequest.getErrorResponse`).
    pub fn error(request: &OffsetCommitRequest, error: ErrorCode) -> Self {
        OffsetCommitResponse {
            topics: request
                .topics
                .iter()
                .map(|t| OffsetCommitResponseTopic {
                    name: t.name.clone(),
                    partitions: t
                        .partitions
                        .iter()
                        .map(|p| OffsetCommitResponsePartition {
                            partition_index: p.partition_index,
                            error_code: error,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

// --- OffsetFetch ----------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetchTopic {
    pub name: String,
    pub partition_indexes: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetchRequest {
    pub group_id: String,
    /// v9+ member id (None for admin / old clients).
    pub member_id: Option<String>,
    /// v9+ member epoch (-1 otherwise).
    pub member_epoch: i32,
    /// `None` fetches all committed offsets of the group.
    pub topics: Option<Vec<OffsetFetchTopic>>,
    /// There are no transactional offsets yet, so this has no effect.
    pub require_stable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetchResponsePartition {
    pub partition_index: i32,
    pub committed_offset: i64,
    pub committed_leader_epoch: i32,
    pub metadata: String,
    pub error_code: ErrorCode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetchResponseTopic {
    pub name: String,
    pub partitions: Vec<OffsetFetchResponsePartition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OffsetFetchResponse {
    pub group_id: String,
    /// Group level error (UNKNOWN_MEMBER_ID / STALE_MEMBER_EPOCH / ...).
    pub error_code: ErrorCode,
    pub topics: Vec<OffsetFetchResponseTopic>,
}

// --- OffsetDelete ---------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetDeleteTopic {
    pub name: String,
    pub partitions: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetDeleteRequest {
    pub group_id: String,
    pub topics: Vec<OffsetDeleteTopic>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OffsetDeleteResponse {
    pub error_code: ErrorCode,
    /// (topic, [(partition, error)])
    pub topics: Vec<(String, Vec<(i32, ErrorCode)>)>,
}

// --- Store ----------------------------------------------------------------

/// All committed offsets of a single group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetStore {
    offsets: IndexMap<String, IndexMap<i32, OffsetAndMetadata>>,
}

impl OffsetStore {
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Number of committed partitions.
    pub fn len(&self) -> usize {
        self.offsets.values().map(IndexMap::len).sum()
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<&OffsetAndMetadata> {
        self.offsets.get(topic).and_then(|p| p.get(&partition))
    }

    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.offsets.keys().map(String::as_str)
    }

    /// Every committed offset as (topic, partition, offset).
    pub fn iter(&self) -> impl Iterator<Item = (&str, i32, &OffsetAndMetadata)> {
        self.offsets
            .iter()
            .flat_map(|(t, ps)| ps.iter().map(move |(p, o)| (t.as_str(), *p, o)))
    }

    /// Applies a committed offset (used by commits and replay).
    pub fn put(&mut self, topic: &str, partition: i32, offset: OffsetAndMetadata) {
        self.offsets
            .entry(topic.to_string())
            .or_default()
            .insert(partition, offset);
    }

    /// Removes an offset (used by deletes, expiration and replay of tombstones).
    pub fn remove(&mut self, topic: &str, partition: i32) -> Option<OffsetAndMetadata> {
        let partitions = self.offsets.get_mut(topic)?;
        let removed = partitions.shift_remove(&partition);
        if partitions.is_empty() {
            self.offsets.shift_remove(topic);
        }
        removed
    }

    /// Stores the offsets of an already validated commit and returns the
    /// response together with the records to persist.
    pub fn commit(
        &mut self,
        request: &OffsetCommitRequest,
        now_ms: i64,
        max_metadata_bytes: usize,
    ) -> (OffsetCommitResponse, Vec<Record>) {
        let expire = if request.retention_time_ms == DEFAULT_RETENTION_TIME {
            None
        } else {
            Some(now_ms.saturating_add(request.retention_time_ms))
        };
        let mut records = Vec::new();
        let mut response = OffsetCommitResponse::default();
        for topic in &request.topics {
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for p in &topic.partitions {
                let metadata = p.committed_metadata.clone().unwrap_or_default();
                if metadata.len() > max_metadata_bytes {
                    partitions.push(OffsetCommitResponsePartition {
                        partition_index: p.partition_index,
                        error_code: error::OFFSET_METADATA_TOO_LARGE,
                    });
                    continue;
                }
                let offset = OffsetAndMetadata {
                    committed_offset: p.committed_offset,
                    leader_epoch: if p.committed_leader_epoch < 0 {
                        -1
                    } else {
                        p.committed_leader_epoch
                    },
                    metadata,
                    commit_timestamp_ms: now_ms,
                    expire_timestamp_ms: expire,
                };
                records.push(offset_record(
                    &request.group_id,
                    &topic.name,
                    p.partition_index,
                    &offset,
                ));
                self.put(&topic.name, p.partition_index, offset);
                partitions.push(OffsetCommitResponsePartition {
                    partition_index: p.partition_index,
                    error_code: error::NONE,
                });
            }
            response.topics.push(OffsetCommitResponseTopic {
                name: topic.name.clone(),
                partitions,
            });
        }
        (response, records)
    }

    /// OffsetFetch for an existing group (validation already done).
    pub fn fetch(&self, request: &OffsetFetchRequest) -> OffsetFetchResponse {
        let topics = match &request.topics {
            Some(topics) => topics
                .iter()
                .map(|t| OffsetFetchResponseTopic {
                    name: t.name.clone(),
                    partitions: t
                        .partition_indexes
                        .iter()
                        .map(|p| fetched(*p, self.get(&t.name, *p)))
                        .collect(),
                })
                .collect(),
            None => self
                .offsets
                .iter()
                .map(|(name, partitions)| OffsetFetchResponseTopic {
                    name: name.clone(),
                    partitions: partitions.iter().map(|(p, o)| fetched(*p, Some(o))).collect(),
                })
                .collect(),
        };
        OffsetFetchResponse {
            group_id: request.group_id.clone(),
            error_code: error::NONE,
            topics,
        }
    }

    /// OffsetFetch answer for a group that does not exist: every requested
    /// partition has no offset and "all" is empty.
    pub fn fetch_unknown_group(request: &OffsetFetchRequest) -> OffsetFetchResponse {
        OffsetStore::default().fetch(request)
    }

    /// OffsetDelete for an existing group whose `validate_offset_delete` passed.
    pub fn delete(
        &mut self,
        request: &OffsetDeleteRequest,
        is_subscribed: &dyn Fn(&str) -> bool,
    ) -> (OffsetDeleteResponse, Vec<Record>) {
        let mut records = Vec::new();
        let mut topics = Vec::with_capacity(request.topics.len());
        for topic in &request.topics {
            let subscribed = is_subscribed(&topic.name);
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for &p in &topic.partitions {
                if subscribed {
                    partitions.push((p, error::GROUP_SUBSCRIBED_TO_TOPIC));
                } else {
                    partitions.push((p, error::NONE));
                    if self.remove(&topic.name, p).is_some() {
                        records.push(offset_tombstone(&request.group_id, &topic.name, p));
                    }
                }
            }
            topics.push((topic.name.clone(), partitions));
        }
        (
            OffsetDeleteResponse {
                error_code: error::NONE,
                topics,
            },
            records,
        )
    }

    /// Removes every offset, returning their tombstones (DeleteGroups).
    pub fn delete_all(&mut self, group_id: &str) -> Vec<Record> {
        let mut records = Vec::new();
        for (topic, partitions) in &self.offsets {
            for p in partitions.keys() {
                records.push(offset_tombstone(group_id, topic, *p));
            }
        }
        self.offsets.clear();
        records
    }

    /// Removes the offsets of the given (deleted) topics, returning their
    /// tombstones.
    pub fn remove_topics(&mut self, group_id: &str, deleted: &dyn Fn(&str) -> bool) -> Vec<Record> {
        let mut records = Vec::new();
        self.offsets.retain(|topic, partitions| {
            if !deleted(topic) {
                return true;
            }
            records.extend(partitions.keys().map(|p| offset_tombstone(group_id, topic, *p)));
            false
        });
        records
    }

    /// Expires offsets per Kafka's `cleanupExpiredOffsets`: offsets of topics
    /// the group is not subscribed to, whose retention has passed. Returns the
    /// tombstones and whether the group has no offsets left.
    pub fn expire(
        &mut self,
        group_id: &str,
        base: ExpirationBase,
        retention_ms: i64,
        now_ms: i64,
        is_subscribed: &dyn Fn(&str) -> bool,
    ) -> (Vec<Record>, bool) {
        if self.offsets.is_empty() {
            return (Vec::new(), true);
        }
        if base == ExpirationBase::Never {
            return (Vec::new(), false);
        }
        let mut expired = Vec::new();
        for (topic, partitions) in &self.offsets {
            if is_subscribed(topic) {
                continue;
            }
            for (p, o) in partitions {
                if is_expired(o, base, retention_ms, now_ms) {
                    expired.push((topic.clone(), *p));
                }
            }
        }
        let records = expired
            .iter()
            .map(|(t, p)| {
                self.remove(t, *p);
                offset_tombstone(group_id, t, *p)
            })
            .collect();
        (records, self.offsets.is_empty())
    }
}

fn is_expired(o: &OffsetAndMetadata, base: ExpirationBase, retention_ms: i64, now_ms: i64) -> bool {
    if let Some(expire) = o.expire_timestamp_ms {
        return now_ms >= expire;
    }
    let since = match base {
        ExpirationBase::Never => return false,
        ExpirationBase::CommitTimestamp => o.commit_timestamp_ms,
        ExpirationBase::Since(ts) => ts,
    };
    now_ms.saturating_sub(since) >= retention_ms
}

fn fetched(partition: i32, o: Option<&OffsetAndMetadata>) -> OffsetFetchResponsePartition {
    match o {
        Some(o) => OffsetFetchResponsePartition {
            partition_index: partition,
            committed_offset: o.committed_offset,
            committed_leader_epoch: o.leader_epoch,
            metadata: o.metadata.clone(),
            error_code: error::NONE,
        },
        None => OffsetFetchResponsePartition {
            partition_index: partition,
            committed_offset: INVALID_OFFSET,
            committed_leader_epoch: -1,
            metadata: String::new(),
            error_code: error::NONE,
        },
    }
}

pub fn offset_key(group_id: &str, topic: &str, partition: i32) -> RecordKey {
    RecordKey::OffsetCommit {
        group: group_id.to_string(),
        topic: topic.to_string(),
        partition,
    }
}

pub fn offset_record(group_id: &str, topic: &str, partition: i32, o: &OffsetAndMetadata) -> Record {
    Record::new(
        offset_key(group_id, topic, partition),
        RecordValue::OffsetCommit(o.to_value()),
    )
}

pub fn offset_tombstone(group_id: &str, topic: &str, partition: i32) -> Record {
    Record::tombstone(offset_key(group_id, topic, partition))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit_req(topic: &str, partitions: &[(i32, i64)]) -> OffsetCommitRequest {
        OffsetCommitRequest {
            group_id: "g".into(),
            generation_id_or_member_epoch: -1,
            member_id: String::new(),
            group_instance_id: None,
            retention_time_ms: DEFAULT_RETENTION_TIME,
            topics: vec![OffsetCommitTopic {
                name: topic.into(),
                partitions: partitions
                    .iter()
                    .map(|(p, o)| OffsetCommitPartition {
                        partition_index: *p,
                        committed_offset: *o,
                        committed_leader_epoch: 1,
                        committed_metadata: Some("m".into()),
                    })
                    .collect(),
            }],
            api_version: 8,
        }
    }

    #[test]
    fn commit_fetch_delete() {
        let mut store = OffsetStore::default();
        let (resp, records) = store.commit(&commit_req("t", &[(0, 10), (1, 20)]), 100, 4096);
        assert_eq!(records.len(), 2);
        assert!(resp.topics[0].partitions.iter().all(|p| p.error_code == 0));
        assert_eq!(store.get("t", 1).unwrap().committed_offset, 20);
        assert_eq!(store.get("t", 1).unwrap().commit_timestamp_ms, 100);

        let fetch = store.fetch(&OffsetFetchRequest {
            group_id: "g".into(),
            member_id: None,
            member_epoch: -1,
            topics: Some(vec![OffsetFetchTopic {
                name: "t".into(),
                partition_indexes: vec![0, 5],
            }]),
            require_stable: true,
        });
        assert_eq!(fetch.topics[0].partitions[0].committed_offset, 10);
        assert_eq!(fetch.topics[0].partitions[0].committed_leader_epoch, 1);
        assert_eq!(fetch.topics[0].partitions[0].metadata, "m");
        assert_eq!(fetch.topics[0].partitions[1].committed_offset, INVALID_OFFSET);

        let all = store.fetch(&OffsetFetchRequest {
            group_id: "g".into(),
            member_id: None,
            member_epoch: -1,
            topics: None,
            require_stable: false,
        });
        assert_eq!(all.topics.len(), 1);
        assert_eq!(all.topics[0].partitions.len(), 2);

        let (resp, records) = store.delete(
            &OffsetDeleteRequest {
                group_id: "g".into(),
                topics: vec![OffsetDeleteTopic {
                    name: "t".into(),
                    partitions: vec![0, 7],
                }],
            },
            &|_| false,
        );
        assert_eq!(resp.topics[0].1, vec![(0, 0), (7, 0)]);
        assert_eq!(records, vec![offset_tombstone("g", "t", 0)]);
        assert!(store.get("t", 0).is_none());

        let (resp, records) = store.delete(
            &OffsetDeleteRequest {
                group_id: "g".into(),
                topics: vec![OffsetDeleteTopic {
                    name: "t".into(),
                    partitions: vec![1],
                }],
            },
            &|t| t == "t",
        );
        assert_eq!(resp.topics[0].1, vec![(1, error::GROUP_SUBSCRIBED_TO_TOPIC)]);
        assert!(records.is_empty());
        assert!(store.get("t", 1).is_some());
    }

    #[test]
    fn metadata_too_large() {
        let mut store = OffsetStore::default();
        let mut req = commit_req("t", &[(0, 1)]);
        req.topics[0].partitions[0].committed_metadata = Some("x".repeat(11));
        let (resp, records) = store.commit(&req, 0, 10);
        assert_eq!(
            resp.topics[0].partitions[0].error_code,
            error::OFFSET_METADATA_TOO_LARGE
        );
        assert!(records.is_empty());
        assert!(store.is_empty());
    }

    #[test]
    fn expiration_rules() {
        let mut store = OffsetStore::default();
        store.commit(&commit_req("a", &[(0, 1)]), 1_000, 4096);
        store.commit(&commit_req("b", &[(0, 1)]), 5_000, 4096);
        let mut explicit = commit_req("c", &[(0, 1)]);
        explicit.retention_time_ms = 100;
        store.commit(&explicit, 1_000, 4096);

        // Never: nothing expires, not even explicit retention.
        let (r, all) = store.expire("g", ExpirationBase::Never, 10, 1_000_000, &|_| false);
        assert!(r.is_empty() && !all);

        // Explicit expiration applies regardless of subscription base.
        let (r, all) = store.expire("g", ExpirationBase::CommitTimestamp, 10_000, 1_100, &|_| false);
        assert_eq!(r, vec![offset_tombstone("g", "c", 0)]);
        assert!(!all);

        // Commit timestamp based: "a" expires at 11_000, "b" at 15_000.
        let (r, _) = store.expire("g", ExpirationBase::CommitTimestamp, 10_000, 10_999, &|_| false);
        assert!(r.is_empty());
        let (r, all) = store.expire("g", ExpirationBase::CommitTimestamp, 10_000, 11_000, &|_| false);
        assert_eq!(r, vec![offset_tombstone("g", "a", 0)]);
        assert!(!all);
        // Subscribed topics never expire.
        let (r, _) = store.expire("g", ExpirationBase::CommitTimestamp, 10_000, 20_000, &|t| t == "b");
        assert!(r.is_empty());
        // Since a fixed instant (classic group became empty).
        let (r, all) = store.expire("g", ExpirationBase::Since(100_000), 10_000, 109_999, &|_| false);
        assert!(r.is_empty() && !all);
        let (r, all) = store.expire("g", ExpirationBase::Since(100_000), 10_000, 110_000, &|_| false);
        assert_eq!(r, vec![offset_tombstone("g", "b", 0)]);
        assert!(all);
    }
}
