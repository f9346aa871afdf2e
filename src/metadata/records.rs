//! The records of the replicated metadata log (design: replication.md §5.2).
//!
//! Each raft entry carries one [`Record`]. Names follow KRaft's metadata
//! records so that the KIPs read across; the encoding is ringlog's own: a
//! version byte, then the record as JSON. JSON keeps `ringlog dump-log`
//! readable and serde defaults let a later version add optional fields;
//! a change that an older node could misread bumps [`RECORD_VERSION`], and
//! such a node refuses the entry instead of guessing.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Version byte in front of every encoded record.
pub const RECORD_VERSION: u8 = 0;

/// Largest encoded record accepted (a Partition record of a very wide
/// replica set, or a long config value, stays far below).
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// The kind of resource a [`Record::Config`] applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ResourceType {
    Topic,
    Broker,
    Group,
}

/// A listener a broker registers: its client listener, or the replication
/// listener of one of its shards.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// `PLAINTEXT`, or `REPLICATION-<shard>`.
    pub name: String,
    pub host: String,
    pub port: u16,
}

/// One entry of the metadata log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Record {
    /// Written once, first, by the first-listed voter.
    Bootstrap { cluster_id: String, metadata_version: u16 },
    /// A broker registered (or re-registered after a restart). It starts
    /// fenced; `broker_epoch` is the offset of this record.
    RegisterBroker {
        broker_id: i32,
        incarnation_id: Uuid,
        broker_epoch: i64,
        endpoints: Vec<Endpoint>,
        #[serde(default)]
        rack: Option<String>,
        shards: u32,
        fenced: bool,
    },
    /// `kafka-cluster unregister`: the broker is gone for good.
    UnregisterBroker { broker_id: i32, broker_epoch: i64 },
    /// Fence, unfence, controlled shutdown.
    BrokerRegistrationChange {
        broker_id: i32,
        broker_epoch: i64,
        #[serde(default)]
        fenced: Option<bool>,
        #[serde(default)]
        in_controlled_shutdown: Option<bool>,
    },
    /// A topic was created.
    Topic {
        name: String,
        topic_id: Uuid,
        #[serde(default)]
        internal: bool,
    },
    /// A partition was created, in full.
    Partition {
        topic_id: Uuid,
        partition: i32,
        replicas: Vec<i32>,
        /// The shard of each replica on its broker, parallel to `replicas`.
        shards: Vec<u32>,
        isr: Vec<i32>,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
    },
    /// Some of a partition's state changed. A new leader (even the same
    /// broker again) bumps the leader epoch; every change bumps the
    /// partition epoch.
    PartitionChange {
        topic_id: Uuid,
        partition: i32,
        #[serde(default)]
        leader: Option<i32>,
        #[serde(default)]
        isr: Option<Vec<i32>>,
        #[serde(default)]
        replicas: Option<Vec<i32>>,
        #[serde(default)]
        shards: Option<Vec<u32>>,
    },
    /// A config key of a topic, a broker (name "" for the cluster-wide
    /// default) or a group was set, or removed (`value: None`).
    Config {
        resource: ResourceType,
        name: String,
        key: String,
        #[serde(default)]
        value: Option<String>,
    },
    /// A topic and all its partitions were deleted.
    RemoveTopic { topic_id: Uuid },
    /// A block of producer ids went to a broker; ids below
    /// `next_producer_id` are never handed out again.
    ProducerIds {
        broker_id: i32,
        broker_epoch: i64,
        next_producer_id: i64,
    },
    /// A feature level changed (`ringlog.metadata.version`).
    FeatureLevel { name: String, level: u16 },
}

/// Why an entry could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("empty metadata record")]
    Empty,
    #[error(
        "metadata record version {0} is newer than this ringlog understands ({RECORD_VERSION}); upgrade this node"
    )]
    Version(u8),
    #[error("metadata record of {0} bytes is larger than the {MAX_RECORD_BYTES} allowed")]
    TooLarge(usize),
    #[error("malformed metadata record: {0}")]
    Malformed(String),
}

impl Record {
    /// The bytes stored in a raft entry.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![RECORD_VERSION];
        // Serializing these plain enums to JSON cannot fail: every map key
        // is a string and no value is a float.
        if serde_json::to_writer(&mut out, self).is_err() {
            out.truncate(1);
        }
        out
    }

    /// Inverse of [`Record::encode`]. Never panics, whatever the bytes.
    pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
        let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
        if version != RECORD_VERSION {
            return Err(DecodeError::Version(version));
        }
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(DecodeError::TooLarge(bytes.len()));
        }
        serde_json::from_slice(body).map_err(|e| DecodeError::Malformed(e.to_string()))
    }
}

/// One raft entry: the records of one controller decision, applied all or
/// none (a topic with its partitions and configs, a fencing with the
/// leadership moves it causes).
pub fn encode_batch(records: &[Record]) -> Vec<u8> {
    let mut out = vec![RECORD_VERSION];
    if serde_json::to_writer(&mut out, records).is_err() {
        out.truncate(1);
    }
    out
}

/// Inverse of [`encode_batch`]. An empty entry (a new raft leader's no-op)
/// is an empty batch.
pub fn decode_batch(bytes: &[u8]) -> Result<Vec<Record>, DecodeError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if version != RECORD_VERSION {
        return Err(DecodeError::Version(version));
    }
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(DecodeError::TooLarge(bytes.len()));
    }
    serde_json::from_slice(body).map_err(|e| DecodeError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Record> {
        let id = Uuid::from_u128(0x1234);
        vec![
            Record::Bootstrap {
                cluster_id: "MkU3OEVBNTcwNTJENDM2Qk".into(),
                metadata_version: 1,
            },
            Record::RegisterBroker {
                broker_id: 2,
                incarnation_id: Uuid::from_u128(7),
                broker_epoch: 41,
                endpoints: vec![
                    Endpoint {
                        name: "PLAINTEXT".into(),
                        host: "10.0.0.2".into(),
                        port: 9092,
                    },
                    Endpoint {
                        name: "REPLICATION-0".into(),
                        host: "10.0.0.2".into(),
                        port: 9192,
                    },
                ],
                rack: Some("r1".into()),
                shards: 2,
                fenced: true,
            },
            Record::BrokerRegistrationChange {
                broker_id: 2,
                broker_epoch: 41,
                fenced: Some(false),
                in_controlled_shutdown: None,
            },
            Record::Topic {
                name: "t".into(),
                topic_id: id,
                internal: false,
            },
            Record::Partition {
                topic_id: id,
                partition: 0,
                replicas: vec![1, 2, 3],
                shards: vec![1, 1, 1],
                isr: vec![1, 2, 3],
                leader: 1,
                leader_epoch: 0,
                partition_epoch: 0,
            },
            Record::PartitionChange {
                topic_id: id,
                partition: 0,
                leader: Some(2),
                isr: Some(vec![2, 3]),
                replicas: None,
                shards: None,
            },
            Record::Config {
                resource: ResourceType::Topic,
                name: "t".into(),
                key: "retention.ms".into(),
                value: None,
            },
            Record::RemoveTopic { topic_id: id },
            Record::ProducerIds {
                broker_id: 1,
                broker_epoch: 3,
                next_producer_id: 2000,
            },
            Record::FeatureLevel {
                name: "ringlog.metadata.version".into(),
                level: 1,
            },
            Record::UnregisterBroker {
                broker_id: 3,
                broker_epoch: 9,
            },
        ]
    }

    #[test]
    fn every_record_round_trips() {
        for r in samples() {
            let bytes = r.encode();
            assert_eq!(bytes[0], RECORD_VERSION);
            assert_eq!(Record::decode(&bytes), Ok(r));
        }
    }

    #[test]
    fn batches_round_trip() {
        let all = samples();
        assert_eq!(decode_batch(&encode_batch(&all)), Ok(all));
        assert_eq!(decode_batch(&[]), Ok(Vec::new()));
        assert_eq!(decode_batch(&encode_batch(&[])), Ok(Vec::new()));
        assert!(decode_batch(&[RECORD_VERSION, b'{']).is_err());
    }

    #[test]
    fn optional_fields_may_be_absent() {
        let bytes = [
            &[RECORD_VERSION][..],
            br#"{"type":"PartitionChange","topic_id":"00000000-0000-0000-0000-000000000001","partition":3,"leader":5}"#,
        ]
        .concat();
        let Ok(Record::PartitionChange { leader, isr, .. }) = Record::decode(&bytes) else {
            panic!("decodes")
        };
        assert_eq!((leader, isr), (Some(5), None));
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        assert_eq!(Record::decode(&[]), Err(DecodeError::Empty));
        assert_eq!(Record::decode(&[9, b'{']), Err(DecodeError::Version(9)));
        assert!(matches!(Record::decode(&[0, b'{']), Err(DecodeError::Malformed(_))));
        assert!(matches!(
            Record::decode(&[0, b'{', b'"', b't', b'y']),
            Err(DecodeError::Malformed(_))
        ));
        let big = vec![0u8; MAX_RECORD_BYTES + 1];
        assert_eq!(Record::decode(&big), Err(DecodeError::TooLarge(MAX_RECORD_BYTES + 1)));
        // Every prefix and every single-byte corruption of a valid record
        // decodes or fails cleanly.
        for r in samples() {
            let bytes = r.encode();
            for n in 0..bytes.len() {
                let _ = Record::decode(&bytes[..n]);
                let mut b = bytes.clone();
                b[n] ^= 0x5a;
                let _ = Record::decode(&b);
            }
        }
    }
}
