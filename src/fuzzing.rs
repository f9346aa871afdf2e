//! Entry points of the fuzz targets (`fuzz/`) and of their regression test
//! (`tests/fuzz_corpus.rs`). Each feeds arbitrary bytes through the broker's
//! real code, as it runs on received or stored data, and asserts what must
//! hold whatever the input. A panic here is a bug: either in the code under
//! test (it must return an error, not panic) or a broken invariant.
//!
//! - [`request_frame`]: a byte stream as a client sends it: framing
//!   ([`FrameReader`] with the broker's default `socket.request.max.bytes`),
//!   the header checks ([`parse_request`]), and the body decode of every API
//!   and version the dispatcher serves ([`decode_request_body`]); the record
//!   sets of a decoded Produce request then go through the produce-path
//!   validation ([`record_batch_payload`]).
//! - [`record_batch`]: one option byte, then a produce payload, validated
//!   with the options the produce path derives from topic configs; a valid
//!   payload must then read back whole as log data. The same bytes are also
//!   read as a segment (batch iteration, record decoding and decompression,
//!   as recovery, ListOffsets-by-time and the offsets-topic replay do).
//! - [`group_records`]: `__consumer_offsets` records (key and value as
//!   stored), decoded and replayed into a group coordinator, as at load.
//! - [`controller_messages`]: what one controller-quorum voter receives from
//!   another or reads back from its metadata log: a first byte choosing a
//!   `RaftMessages` batch ([`crate::cluster::raft_codec`]) or a sequence
//!   of metadata records (u16 length-prefixed, [`MetadataRecord`]) that are
//!   decoded and applied to a [`MetadataImage`], as a node replays its log.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, ProduceRequest};

use crate::api::supported_range;
use crate::cluster::raft_codec;
use crate::config::{BrokerConfig, Overrides, TopicConfig};
use crate::group::records::Record as GroupRecord;
use crate::group::{GroupConfig, GroupCoordinatorState, IdGenerator};
use crate::metadata::image::MetadataImage;
use crate::metadata::records::Record as MetadataRecord;
use crate::protocol::decode_body;
use crate::protocol::frame::FrameReader;
use crate::protocol::request::{decode_request_body, parse_request, BadRequest};
use crate::record::{self, BatchIter, RecordError, ValidateOptions, BATCH_HEADER_LEN};

/// The broker's configuration with every default (no file, no flags).
fn broker_defaults() -> &'static BrokerConfig {
    static CFG: OnceLock<BrokerConfig> = OnceLock::new();
    CFG.get_or_init(|| match BrokerConfig::load(&Overrides::default()) {
        Ok(c) => c,
        Err(e) => panic!("the default broker configuration does not load: {e}"),
    })
}

/// A topic's configuration, resolved from `overrides` as the broker does.
fn topic_config(overrides: &[(&str, &str)]) -> TopicConfig {
    let map: BTreeMap<String, String> = overrides.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    TopicConfig::resolve(&map, broker_defaults())
}

/// Topic configs whose produce-time options differ: the defaults, a
/// compacted topic (keys required), small and large `max.message.bytes`,
/// and `LogAppendTime`.
fn topic_variants() -> &'static [TopicConfig; 8] {
    static V: OnceLock<[TopicConfig; 8]> = OnceLock::new();
    V.get_or_init(|| {
        let compact = ("cleanup.policy", "compact");
        let append_time = ("message.timestamp.type", "LogAppendTime");
        [
            topic_config(&[]),
            topic_config(&[compact]),
            topic_config(&[("max.message.bytes", "100")]),
            topic_config(&[compact, ("max.message.bytes", "300")]),
            topic_config(&[append_time]),
            topic_config(&[compact, append_time]),
            topic_config(&[("max.message.bytes", "2147483647")]),
            topic_config(&[compact, ("max.message.bytes", "16384"), append_time]),
        ]
    })
}

/// The validation options the produce path (`shard::ops::produce`) uses for
/// a topic with `cfg`.
pub fn produce_options(cfg: &TopicConfig) -> ValidateOptions {
    ValidateOptions {
        require_keys: cfg.compact,
        timestamps: cfg.timestamp_policy(FUZZ_NOW_MS),
        ..ValidateOptions::new(cfg.max_message_bytes)
    }
}

/// The broker clock the fuzz targets validate timestamps against.
pub const FUZZ_NOW_MS: i64 = 1_700_000_000_000;

// ---------------------------------------------------------------------------
// request_frame
// ---------------------------------------------------------------------------

/// Fuzz entry: `data` is what a client wrote on its connection.
pub fn request_frame(data: &[u8]) {
    let max = broker_defaults().socket_request_max_bytes;
    futures_lite::future::block_on(async {
        let mut frames = FrameReader::new(data, max);
        let mut consumed = 0usize;
        while let Ok(frame) = frames.next().await {
            assert!(frame.len() >= 8 && frame.len() <= max, "frame of {} bytes", frame.len());
            consumed += 4 + frame.len();
            assert!(consumed <= data.len(), "frames longer than the input");
            request(frame);
        }
    });
}

/// One received frame, through everything the connection loop does before
/// a handler runs.
fn request(mut frame: Bytes) {
    let len = frame.len();
    let req = match parse_request(&mut frame) {
        Ok(r) => r,
        Err(BadRequest::UnsupportedVersion { key, prefix }) => {
            assert!(!matches!(supported_range(key), Some((lo, hi)) if (lo..=hi).contains(&prefix.api_version)));
            return;
        }
        Err(_) => return,
    };
    let version = req.prefix.api_version;
    assert!(matches!(supported_range(req.key), Some((lo, hi)) if (lo..=hi).contains(&version)));
    assert!(frame.len() <= len - 8, "the header took no bytes");
    let body = frame.clone();
    let decoded = decode_request_body(req.key, version, &mut frame);
    if decoded.is_ok() && req.key == ApiKey::Produce {
        let mut again = body;
        let produce = match decode_body::<ProduceRequest>(&mut again, version) {
            Ok(p) => p,
            Err(e) => panic!("a Produce body decoded once and not twice: {e}"),
        };
        for topic in &produce.topic_data {
            for part in &topic.partition_data {
                if let Some(records) = &part.records {
                    for cfg in topic_variants() {
                        record_batch_payload(records, cfg);
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// record_batch
// ---------------------------------------------------------------------------

/// Fuzz entry: `data[0]` picks a topic configuration (low 7 bits) and
/// whether to fix up the batches' CRCs first (high bit: lets mutations get
/// past the CRC check into the record walk and the decompressors); the
/// rest is a produce payload (one partition's record set), then also read
/// as log data.
pub fn record_batch(data: &[u8]) {
    let Some((&pick, payload)) = data.split_first() else {
        return;
    };
    let variants = topic_variants();
    let cfg = &variants[usize::from(pick & 0x7f) % variants.len()];
    let mut payload = payload.to_vec();
    if pick & 0x80 != 0 {
        fix_crcs(&mut payload);
    }
    record_batch_payload(&payload, cfg);
    segment_data(&payload);
}

/// Recompute the CRC of each batch framed by its `batch_length`, from the
/// start of `buf` until one does not fit.
pub fn fix_crcs(buf: &mut [u8]) {
    let mut pos = 0usize;
    while let Some(rest) = buf.get_mut(pos..) {
        let Some(len) = rest.get(8..12).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]])) else {
            return;
        };
        let Ok(len) = usize::try_from(len) else { return };
        let end = record::LOG_OVERHEAD.saturating_add(len);
        let Some(batch) = rest.get_mut(..end) else { return };
        if !record::update_crc(batch) {
            return;
        }
        pos += end;
    }
}

/// Validate `payload` as the produce path does for a topic with `cfg` and
/// check the result; a valid payload is then rewritten as an append does and
/// must read back whole as log data.
pub fn record_batch_payload(payload: &[u8], cfg: &TopicConfig) {
    let opts = produce_options(cfg);
    let v = match record::validate_payload(payload, &opts) {
        Ok(v) => v,
        Err(e) => {
            let code = e.kafka_code();
            assert!(
                matches!(code, 2 | 10 | 32 | 76 | 87),
                "unexpected error code {code} for {e}"
            );
            if let RecordError::MissingKeys(idx) = &e {
                assert!(opts.require_keys && !idx.is_empty(), "{e:?}");
            }
            if let RecordError::InvalidTimestamp(issues) = &e {
                assert!(!issues.is_empty() && issues.len() <= record::MAX_RECORD_ERRORS, "{e:?}");
            }
            return;
        }
    };
    assert!(!v.batches.is_empty() && v.batches.len() <= opts.max_batches);
    let mut pos = 0usize;
    let mut records = 0u64;
    for span in &v.batches {
        assert_eq!(span.start, pos, "batches are contiguous");
        assert!(span.len <= opts.max_batch_bytes && span.len >= BATCH_HEADER_LEN);
        assert!(span.record_count >= 1 && span.last_offset_delta == span.record_count - 1);
        assert!(!span.is_control);
        pos += span.len;
        records += span.record_count as u64;
    }
    assert_eq!(pos, payload.len(), "the batches cover the payload");
    assert_eq!(records, v.total_records);

    // What the log stores reads back whole (recovery must keep all of it).
    assert_eq!(BatchIter::new(payload, true).scan_valid_len(), payload.len());

    let log_append_time = cfg.log_append_time.then_some(1_700_000_000_000i64);
    for (i, span) in v.batches.iter().enumerate() {
        let batch = &payload[span.range()];
        let decoded = match record::decode_records(batch) {
            Ok(r) => r,
            Err(e) => panic!("batch {i} passed validation but does not decode: {e}"),
        };
        assert_eq!(decoded.len(), span.record_count as usize);
        for (n, r) in decoded.iter().enumerate() {
            assert_eq!(r.offset_delta as usize, n, "offset deltas are sequential");
            if opts.require_keys {
                assert!(r.key.is_some(), "a keyless record passed on a compacted topic");
            }
        }

        // The append rewrites a copy of the header; the CRC must stay valid
        // and the in-place rewrite must agree.
        let base = 1_000_000i64 + i as i64;
        let (head, body) = batch.split_at(BATCH_HEADER_LEN);
        let mut new_head = head.to_vec();
        record::rewrite_header(&mut new_head, body, base, 7, log_append_time);
        let mut whole = new_head.clone();
        whole.extend_from_slice(body);
        assert!(record::verify_crc(&whole), "CRC broken by the append rewrite");
        let mut in_place = batch.to_vec();
        record::rewrite_batch(&mut in_place, base, 7, log_append_time);
        assert_eq!(in_place, whole, "rewrite_batch and rewrite_header disagree");
        if log_append_time.is_none() {
            // The append also writes the records' largest timestamp.
            let mut stamped = head.to_vec();
            record::set_max_timestamp(&mut stamped, body, span.max_timestamp);
            stamped.extend_from_slice(body);
            assert!(record::verify_crc(&stamped), "CRC broken by the max timestamp rewrite");
            let h = record::BatchHeader::parse(&stamped).map(|h| h.max_timestamp);
            assert_eq!(h, Some(span.max_timestamp));
        }
        let Some(h) = record::BatchHeader::parse(&whole) else {
            panic!("a validated batch has no header");
        };
        assert_eq!((h.base_offset, h.partition_leader_epoch), (base, 7));
        if let Some(ts) = log_append_time {
            assert_eq!(h.max_timestamp, ts);
            assert_eq!(h.timestamp_type(), record::TimestampType::LogAppendTime);
        }
        assert_eq!(
            record::decode_records(&whole).map(|r| r.len()).ok(),
            Some(decoded.len())
        );
    }
}

/// Read `buf` as data from a segment file: batch iteration with and
/// without CRC checks, and record decoding of what it yields.
pub fn segment_data(buf: &[u8]) {
    let mut lens = [0usize; 2];
    for (slot, verify) in [false, true].into_iter().enumerate() {
        let mut it = BatchIter::new(buf, verify);
        let mut pos = 0usize;
        for (at, h) in it.by_ref() {
            assert_eq!(at, pos, "batches are contiguous");
            pos = at + h.total_size();
            assert!(pos <= buf.len(), "a batch past the end of the data");
            assert!(h.base_offset >= 0 && h.record_count >= 0 && h.last_offset_delta >= 0);
            if verify {
                let batch = &buf[at..pos];
                assert!(record::verify_crc(batch));
                if let Ok(recs) = record::decode_records(batch) {
                    assert_eq!(recs.len(), h.record_count as usize);
                }
            }
        }
        assert!(it.is_done());
        assert_eq!(it.valid_len(), pos);
        lens[slot] = pos;
    }
    assert!(lens[1] <= lens[0], "checking CRCs can only shorten the valid prefix");
    // Arbitrary bytes as one batch (the offsets-topic replay decodes what
    // a read returned).
    let _ = record::decode_records(buf);
}

// ---------------------------------------------------------------------------
// group_records
// ---------------------------------------------------------------------------

struct CountingIds(u64);

impl IdGenerator for CountingIds {
    fn next_id(&mut self) -> String {
        self.0 += 1;
        format!("member-{}", self.0)
    }
}

/// Split the fuzz input into `__consumer_offsets` records: repeated
/// `key_len: u16 BE, key, value_len: i32 BE (negative: tombstone), value`.
pub fn split_group_records(mut data: &[u8]) -> Vec<(&[u8], Option<&[u8]>)> {
    let mut out = Vec::new();
    loop {
        let Some((klen, rest)) = data.split_first_chunk::<2>() else {
            return out;
        };
        let klen = usize::from(u16::from_be_bytes(*klen));
        let Some((key, rest)) = rest.split_at_checked(klen) else {
            return out;
        };
        let Some((vlen, rest)) = rest.split_first_chunk::<4>() else {
            out.push((key, None));
            return out;
        };
        let vlen = i32::from_be_bytes(*vlen);
        if vlen < 0 {
            out.push((key, None));
            data = rest;
            continue;
        }
        let Some((value, rest)) = rest.split_at_checked((vlen as usize).min(rest.len())) else {
            return out;
        };
        out.push((key, Some(value)));
        data = rest;
    }
}

/// The inverse of [`split_group_records`] (for building seeds).
pub fn join_group_records(records: &[(Vec<u8>, Option<Vec<u8>>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let klen = u16::try_from(k.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&klen.to_be_bytes());
        out.extend_from_slice(&k[..usize::from(klen)]);
        match v {
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(v) => {
                out.extend_from_slice(&i32::try_from(v.len()).unwrap_or(i32::MAX).to_be_bytes());
                out.extend_from_slice(v);
            }
        }
    }
    out
}

/// Fuzz entry: records of `__consumer_offsets`, decoded, re-encoded and
/// replayed into a group coordinator as when a shard loads its groups.
pub fn group_records(data: &[u8]) {
    let now = 1_700_000_000_000i64;
    let mut state = GroupCoordinatorState::new(GroupConfig::default(), Box::new(CountingIds(0)), now);
    for (key, value) in split_group_records(data) {
        if let Ok(r) = GroupRecord::decode(key, value) {
            // What the broker writes back for a record it loaded must load
            // as the same record.
            let (k2, v2) = r.encode();
            match GroupRecord::decode(&k2, v2.as_deref()) {
                Ok(again) => assert_eq!(again, r, "a re-encoded record decodes differently"),
                Err(e) => panic!("a re-encoded record does not decode: {e:?} ({r:?})"),
            }
        }
        let _ = state.replay_bytes(key, value);
    }
    let _ = state.on_loaded(now);
}

/// See the module docs: raft batches and metadata records.
pub fn controller_messages(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok(msgs) = raft_codec::decode(rest) {
            // What decoded encodes back to what decodes the same.
            match raft_codec::encode(&msgs).map(|b| raft_codec::decode(&b)) {
                Ok(Ok(again)) => assert_eq!(again, msgs, "a re-encoded raft batch decodes differently"),
                other => panic!("a decoded raft batch does not round-trip: {other:?}"),
            }
        }
        return;
    }
    let mut image = MetadataImage::new();
    let mut rest = rest;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let body = &rest[2..(2 + len).min(rest.len())];
        rest = &rest[(2 + len).min(rest.len())..];
        let Ok(r) = MetadataRecord::decode(body) else { continue };
        assert_eq!(
            MetadataRecord::decode(&r.encode()).as_ref(),
            Ok(&r),
            "a re-encoded record decodes differently"
        );
        let before = image.clone();
        if image.apply(image.offset + 1, &r).is_err() {
            assert_eq!(image, before, "a refused record changed the image");
        }
    }
    // The projections every shard and client sees are total.
    let meta = image.cluster_meta(1);
    assert_eq!(meta.topics.len(), image.topics.len());
}
