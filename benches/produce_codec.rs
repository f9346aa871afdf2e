//! Produce request decode and response encode with the kafka-protocol crate,
//! for a 1 MiB request over 16 partitions (the broker's per-request
//! protocol cost; record bytes are sliced, not copied).

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use ringlog::record::{build_batch, Compression, Record};

fn request() -> Bytes {
    let v = vec![7u8; 1024];
    let recs: Vec<Record<'_>> = (0..62)
        .map(|i| Record {
            key: None,
            value: Some(&v),
            headers: &[],
            timestamp_delta: i,
        })
        .collect();
    let batch = Bytes::from(build_batch(0, 0, Compression::None, &recs));
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("bench")))
            .with_partition_data(
                (0..16)
                    .map(|p| {
                        PartitionProduceData::default()
                            .with_index(p)
                            .with_records(Some(batch.clone()))
                    })
                    .collect(),
            )]);
    let mut buf = BytesMut::new();
    req.encode(&mut buf, 9).expect("encode");
    buf.freeze()
}

fn codec(c: &mut Criterion) {
    let bytes = request();
    let mut g = c.benchmark_group("produce_codec");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("decode_v9_16_partitions", |b| {
        b.iter(|| {
            let mut buf = bytes.clone();
            black_box(ProduceRequest::decode(&mut buf, 9).expect("decode"))
        })
    });
    let resp = ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
        .with_name(TopicName(StrBytes::from_static_str("bench")))
        .with_partition_responses(
            (0..16)
                .map(|p| {
                    PartitionProduceResponse::default()
                        .with_index(p)
                        .with_base_offset(1 << 40)
                })
                .collect(),
        )]);
    g.bench_function("encode_response_v9_16_partitions", |b| {
        b.iter(|| {
            let mut buf = BytesMut::with_capacity(1024);
            resp.encode(&mut buf, 9).expect("encode");
            black_box(buf)
        })
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
