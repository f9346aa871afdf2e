//! The recovery-point checkpoint file, in Kafka's format (pure, no IO).
//!
//! Kafka's `recovery-point-offset-checkpoint` holds, per partition, the
//! offset below which the log is known to be on disk (synced, indexes
//! written): after an unclean shutdown only what lies past it is scanned.
//! The layout is Kafka's `CheckpointFile` version 0:
//!
//! ```text
//! 0
//! <number of entries>
//! <topic> <partition> <offset>
//! ...
//! ```
//!
//! ringlog writes one such file per shard (`recovery-point-offset-checkpoint.<shard>`,
//! each with the partitions that shard owns), so shards never share a file.
//! At start-up, before the shards run, the files are merged and written
//! again per the current placement (the shard count may have changed).

use std::collections::BTreeMap;

/// Base name of the checkpoint files.
pub const RECOVERY_POINT_FILE: &str = "recovery-point-offset-checkpoint";

/// A partition: topic and partition index.
pub type TopicPartition = (String, i32);

/// The log start offset checkpoint, one per partition directory (in the
/// same format, with the one entry of that partition). Kafka keeps one such
/// file per log directory; ringlog keeps it beside the partition's segments
/// so that it is written by the shard that owns the partition, goes with
/// the directory when a topic is deleted, and never names a partition of an
/// older incarnation of the topic. It matters only when the log start lies
/// inside the first segment (DeleteRecords): otherwise the first segment's
/// base offset is the log start.
pub const LOG_START_FILE: &str = "log-start-offset-checkpoint";

/// The log start offset checkpoint of one partition.
pub fn encode_log_start(topic: &str, partition: i32, offset: i64) -> Vec<u8> {
    let mut e = BTreeMap::new();
    e.insert((topic.to_string(), partition), offset);
    encode(&e)
}

/// Read the log start offset of `topic`-`partition` from its checkpoint
/// file; a malformed file, or one naming another partition, gives None
/// (the first segment's base offset is used).
pub fn decode_log_start(data: &[u8], topic: &str, partition: i32) -> Option<i64> {
    let entries = decode(data).ok()?;
    if entries.len() != 1 {
        return None;
    }
    entries.get(&(topic.to_string(), partition)).copied()
}

/// The checkpoint file of a shard.
pub fn file_name(shard: usize) -> String {
    format!("{RECOVERY_POINT_FILE}.{shard}")
}

/// The shard whose checkpoint file this is.
pub fn parse_file_name(name: &str) -> Option<usize> {
    let n = name.strip_prefix(RECOVERY_POINT_FILE)?.strip_prefix('.')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// Encode entries in Kafka's checkpoint format.
pub fn encode(entries: &BTreeMap<TopicPartition, i64>) -> Vec<u8> {
    let mut out = format!("0\n{}\n", entries.len());
    for ((topic, partition), offset) in entries {
        out.push_str(&format!("{topic} {partition} {offset}\n"));
    }
    out.into_bytes()
}

/// Decode a checkpoint file. Anything malformed (unknown version, a count
/// that does not match the lines, a bad line, a negative offset, a
/// partition listed twice) refuses the whole file: recovery then scans the
/// partitions as if no checkpoint existed.
pub fn decode(data: &[u8]) -> Result<BTreeMap<TopicPartition, i64>, String> {
    let text = std::str::from_utf8(data).map_err(|_| "not UTF-8".to_string())?;
    let mut lines = text.lines();
    match lines.next().map(str::trim) {
        Some("0") => {}
        other => return Err(format!("unsupported version {other:?}")),
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| "bad entry count".to_string())?;
    let mut out = BTreeMap::new();
    for line in lines.by_ref().take(count) {
        let mut parts = line.split(' ');
        let (Some(topic), Some(partition), Some(offset), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("bad line {line:?}"));
        };
        let partition: i32 = partition.parse().map_err(|_| format!("bad partition in {line:?}"))?;
        let offset: i64 = offset.parse().map_err(|_| format!("bad offset in {line:?}"))?;
        if topic.is_empty() || partition < 0 || offset < 0 {
            return Err(format!("bad line {line:?}"));
        }
        if out.insert((topic.to_string(), partition), offset).is_some() {
            return Err(format!("{topic}-{partition} listed twice"));
        }
    }
    if out.len() != count {
        return Err(format!("{count} entries announced, {} found", out.len()));
    }
    if lines.any(|l| !l.trim().is_empty()) {
        return Err("lines after the announced entries".to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_kafka_format() {
        let mut e = BTreeMap::new();
        e.insert(("orders".to_string(), 0), 1234);
        e.insert(("__consumer_offsets".to_string(), 17), 0);
        let data = encode(&e);
        assert_eq!(
            std::str::from_utf8(&data).unwrap(),
            "0\n2\n__consumer_offsets 17 0\norders 0 1234\n"
        );
        assert_eq!(decode(&data), Ok(e));
        assert_eq!(decode(b"0\n0\n"), Ok(BTreeMap::new()));
    }

    #[test]
    fn malformed_files_are_refused() {
        for bad in [
            &b""[..],
            b"1\n0\n",
            b"0\n",
            b"0\n2\nt 0 5\n",
            b"0\n1\nt 0 5\nu 1 6\n",
            b"0\n1\nt 0\n",
            b"0\n1\nt x 5\n",
            b"0\n1\nt 0 -5\n",
            b"0\n2\nt 0 5\nt 0 6\n",
            b"0\n1\nt 0 5 9\n",
            b"\xff\n",
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn log_start_file_names_its_one_partition() {
        let data = encode_log_start("t", 3, 42);
        assert_eq!(std::str::from_utf8(&data).unwrap(), "0\n1\nt 3 42\n");
        assert_eq!(decode_log_start(&data, "t", 3), Some(42));
        assert_eq!(decode_log_start(&data, "t", 2), None);
        assert_eq!(decode_log_start(&data, "u", 3), None);
        assert_eq!(decode_log_start(b"0\n1\nt 3", "t", 3), None);
        assert_eq!(decode_log_start(b"0\n2\nt 3 4\nt 4 4\n", "t", 3), None);
    }

    #[test]
    fn file_names() {
        assert_eq!(file_name(3), "recovery-point-offset-checkpoint.3");
        assert_eq!(parse_file_name("recovery-point-offset-checkpoint.3"), Some(3));
        assert_eq!(parse_file_name("recovery-point-offset-checkpoint.3.tmp"), None);
        assert_eq!(parse_file_name("recovery-point-offset-checkpoint"), None);
        assert_eq!(parse_file_name("recovery-point-offset-checkpoint."), None);
    }
}
