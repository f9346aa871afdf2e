//! Helpers shared by the integration tests that drive a `PartitionLog`
//! directly.

use bytes::Bytes;
use ringlog::log::partition::{select_batches, Selection};
use ringlog::log::{PartitionLog, ReadPlan};
use ringlog::record;

/// All (offset, value) pairs from `offset` to the high watermark, read the
/// way a fetch reads them (cache or file).
pub async fn read_from(log: &PartitionLog, mut offset: i64) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    while offset < log.high_watermark() {
        let batches: Vec<Bytes> = match log.plan_read(offset, 64 << 10).unwrap() {
            ReadPlan::Empty => break,
            ReadPlan::Cached(parts) => {
                let joined = Bytes::from(parts.concat());
                record::BatchIter::new(&joined, true)
                    .map(|(at, h)| joined.slice(at..at + h.total_size()))
                    .collect()
            }
            ReadPlan::File {
                file,
                position,
                len,
                file_end,
            } => {
                let data: Bytes = file
                    .read_at(position, len.max((file_end - position) as usize))
                    .await
                    .unwrap();
                match select_batches(&data, offset, log.high_watermark(), 64 << 10) {
                    Selection::Batches(b) => b,
                    other => panic!("unexpected selection {other:?}"),
                }
            }
        };
        assert!(!batches.is_empty());
        for b in batches {
            let h = record::BatchHeader::parse(&b).unwrap();
            for r in record::decode_records(&b).unwrap() {
                let off = h.base_offset + i64::from(r.offset_delta);
                if off >= offset {
                    out.push((off, String::from_utf8(r.value.unwrap().to_vec()).unwrap()));
                }
            }
            offset = h.last_offset() + 1;
        }
    }
    out
}
