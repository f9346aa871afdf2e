//! A zero-copy encoder for Fetch responses (v4–v18).
//!
//! The generic encoder copies every record batch into one response buffer.
//! Fetch responses are almost all record bytes, so this one writes only the
//! framing into small buffers and hands the batches over as they are, for a
//! vectored socket write. Its output is checked against `kafka-protocol`'s
//! decoder for every version in the tests.

use bytes::{BufMut, Bytes, BytesMut};
use uuid::Uuid;

/// One partition of a Fetch response.
pub struct PartitionOut {
    pub partition: i32,
    pub error: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// Record batches (possibly split into pieces), sent back to back.
    pub records: Vec<Bytes>,
}

pub struct TopicOut {
    pub name: String,
    pub id: Uuid,
    pub partitions: Vec<PartitionOut>,
}

fn put_uvarint(b: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        b.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    b.put_u8(v as u8);
}

fn put_array_len(b: &mut BytesMut, flexible: bool, n: usize) {
    if flexible {
        put_uvarint(b, n as u64 + 1);
    } else {
        b.put_i32(n as i32);
    }
}

fn put_string(b: &mut BytesMut, flexible: bool, s: &str) {
    if flexible {
        put_uvarint(b, s.len() as u64 + 1);
    } else {
        b.put_i16(s.len() as i16);
    }
    b.put_slice(s.as_bytes());
}

/// Encode a full response frame (size prefix, header, body) as pieces.
pub fn encode(version: i16, correlation_id: i32, throttle_ms: i32, error: i16, topics: &[TopicOut]) -> Vec<Bytes> {
    let flexible = version >= 12;
    let mut out: Vec<Bytes> = Vec::with_capacity(2 + topics.iter().map(|t| t.partitions.len() * 3).sum::<usize>());
    let mut cur = BytesMut::with_capacity(256);
    cur.put_i32(0); // size, patched below
    cur.put_i32(correlation_id);
    if flexible {
        put_uvarint(&mut cur, 0); // header tagged fields
    }
    cur.put_i32(throttle_ms);
    if version >= 7 {
        cur.put_i16(error);
        cur.put_i32(0); // session id: sessions declined
    }
    put_array_len(&mut cur, flexible, topics.len());
    for t in topics {
        if version >= 13 {
            cur.put_slice(t.id.as_bytes());
        } else {
            put_string(&mut cur, flexible, &t.name);
        }
        put_array_len(&mut cur, flexible, t.partitions.len());
        for p in &t.partitions {
            cur.put_i32(p.partition);
            cur.put_i16(p.error);
            cur.put_i64(p.high_watermark);
            cur.put_i64(p.last_stable_offset);
            if version >= 5 {
                cur.put_i64(p.log_start_offset);
            }
            put_array_len(&mut cur, flexible, 0); // aborted transactions: none
            if version >= 11 {
                cur.put_i32(-1); // preferred read replica
            }
            let len: usize = p.records.iter().map(|r| r.len()).sum();
            if flexible {
                put_uvarint(&mut cur, len as u64 + 1);
            } else {
                cur.put_i32(len as i32);
            }
            if len > 0 {
                out.push(cur.split().freeze());
                out.extend(p.records.iter().filter(|r| !r.is_empty()).cloned());
            }
            if flexible {
                put_uvarint(&mut cur, 0); // partition tagged fields
            }
        }
        if flexible {
            put_uvarint(&mut cur, 0); // topic tagged fields
        }
    }
    if flexible {
        put_uvarint(&mut cur, 0); // response tagged fields
    }
    if !cur.is_empty() {
        out.push(cur.freeze());
    }
    let total: usize = out.iter().map(|b| b.len()).sum::<usize>() - 4;
    if let Some(first) = out.first_mut() {
        let mut patched = BytesMut::from(&first[..]);
        patched[..4].copy_from_slice(&(total as i32).to_be_bytes());
        *first = patched.freeze();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseHeader};
    use kafka_protocol::protocol::Decodable;

    fn sample() -> Vec<TopicOut> {
        vec![
            TopicOut {
                name: "orders".into(),
                id: Uuid::from_u128(7),
                partitions: vec![
                    PartitionOut {
                        partition: 0,
                        error: 0,
                        high_watermark: 10,
                        last_stable_offset: 10,
                        log_start_offset: 0,
                        records: vec![Bytes::from_static(b"head"), Bytes::from_static(b"body-bytes")],
                    },
                    PartitionOut {
                        partition: 3,
                        error: 1,
                        high_watermark: -1,
                        last_stable_offset: -1,
                        log_start_offset: -1,
                        records: vec![],
                    },
                ],
            },
            TopicOut {
                name: "b".into(),
                id: Uuid::from_u128(9),
                partitions: vec![],
            },
        ]
    }

    #[test]
    fn decodes_with_the_reference_decoder_at_every_version() {
        for version in 4..=18i16 {
            let parts = encode(version, 77, 5, 0, &sample());
            let mut frame = Bytes::from(parts.concat());
            let size = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
            assert_eq!(size, frame.len() - 4, "v{version} size prefix");
            let _ = frame.split_to(4);
            let hv = ApiKey::Fetch.response_header_version(version);
            let header = ResponseHeader::decode(&mut frame, hv).unwrap();
            assert_eq!(header.correlation_id, 77);
            let r = FetchResponse::decode(&mut frame, version).unwrap();
            assert!(frame.is_empty(), "v{version}: {} bytes left", frame.len());
            assert_eq!(r.throttle_time_ms, 5);
            assert_eq!(r.responses.len(), 2);
            let t = &r.responses[0];
            if version >= 13 {
                assert_eq!(t.topic_id, Uuid::from_u128(7));
            } else {
                assert_eq!(t.topic.0.as_str(), "orders");
            }
            assert_eq!(t.partitions.len(), 2);
            assert_eq!(t.partitions[0].records.as_deref(), Some(&b"headbody-bytes"[..]));
            assert_eq!(t.partitions[0].high_watermark, 10);
            assert_eq!(t.partitions[1].error_code, 1);
            assert_eq!(t.partitions[1].records.as_deref(), Some(&b""[..]));
            if version >= 5 {
                assert_eq!(t.partitions[1].log_start_offset, -1);
            }
            assert_eq!(t.partitions[0].preferred_read_replica.0, -1);
        }
    }
}
