//! Produce: validate, route each partition's batches to its owning shard,
//! and answer once they are acknowledged per `acks`.

use std::rc::Rc;

use futures::future::LocalBoxFuture;
use futures::FutureExt;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse};

use super::{Api, Handler, MaybeResponse, Order, Reply, RequestContext};
use crate::config::TopicConfig;
use crate::metadata::controller::CreateTopic;
use crate::metadata::TopicMeta;
use crate::protocol::error as ec;
use crate::protocol::str_bytes;
use crate::routing::{ControllerOp, ProducePart, ProducePartResult, ShardRequest, ShardResponse};
use crate::record;
use crate::shard::{ops, Shard};

/// The Produce handler: versions 3-12, routed in request order.
pub struct Produce;

impl Handler for Produce {
    const API: Api = Api {
        key: ApiKey::Produce,
        min_version: 3,
        max_version: 12,
        order: Order::InOrder,
    };
    type Request = ProduceRequest;
    type Response = MaybeResponse<ProduceResponse>;

    async fn start(ctx: &RequestContext, req: ProduceRequest) -> Reply<MaybeResponse<ProduceResponse>> {
        Reply::Pending(route(ctx, req).await)
    }
}

/// Create a topic with the broker's defaults (auto-creation). Returns the
/// topic, or the Kafka error code to report.
pub async fn auto_create(shard: &Rc<Shard>, name: &str) -> Result<TopicMeta, i16> {
    if let Some(t) = shard.meta.borrow().topic(name) {
        return Ok(t.clone());
    }
    let op = ControllerOp::CreateTopics {
        topics: vec![CreateTopic {
            name: name.to_string(),
            num_partitions: -1,
            replication_factor: -1,
            ..Default::default()
        }],
        validate_only: false,
    };
    let reply = shard.dispatch(0, ShardRequest::Controller(op)).await.await;
    match reply {
        Some(ShardResponse::Controller(mut results)) => match results.pop() {
            Some(Ok(Some(t))) => Ok(t),
            Some(Err(e)) if e.code == ec::TOPIC_ALREADY_EXISTS => {
                shard.meta.borrow().topic(name).cloned().ok_or(ec::LEADER_NOT_AVAILABLE)
            }
            Some(Err(e)) => Err(e.code),
            _ => Err(ec::UNKNOWN_SERVER_ERROR),
        },
        _ => Err(ec::UNKNOWN_SERVER_ERROR),
    }
}

fn partition_response(index: i32, r: &ProducePartResult) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(r.error)
        .with_base_offset(r.base_offset)
        .with_log_append_time_ms(r.log_append_time)
        .with_log_start_offset(r.log_start_offset)
        .with_error_message(r.message.as_deref().map(str_bytes))
        .with_record_errors(
            r.record_errors
                .iter()
                .map(|(index, message)| {
                    BatchIndexAndErrorMessage::default()
                        .with_batch_index(*index)
                        .with_batch_index_error_message(message.as_deref().map(str_bytes))
                })
                .collect(),
        )
}

fn error_result(code: i16) -> ProducePartResult {
    ProducePartResult {
        error: code,
        message: None,
        base_offset: -1,
        log_append_time: -1,
        log_start_offset: -1,
        record_errors: Vec::new(),
    }
}

/// A topic of the response: its name and, per partition in request order,
/// the index and the result once known.
type TopicSlots = (String, Vec<(i32, Option<ProducePartResult>)>);

/// The most a produce request's compressed batches may decompress to, all
/// together: the per-batch policy of [`record::decompression_limit`]
/// (64 x the compressed size, at least 16 MiB) applied to the whole request,
/// so a request cannot multiply the 16 MiB floor by sending many tiny
/// batches (a 100-byte batch of zeros may not expand to 16 MiB a thousand
/// times over). Beyond it the batch fails with CORRUPT_MESSAGE.
pub fn decompression_allowance(frame_len: usize) -> usize {
    frame_len
        .saturating_mul(record::MAX_DECOMPRESSION_RATIO)
        .max(record::MIN_DECOMPRESSION_LIMIT)
}

/// Route the request's partitions to their shards (in order), returning a
/// future for the response (none for acks=0).
///
/// The record batches are validated here, on the connection's shard, before
/// routing: the connection reads its next request only once this returns,
/// so validation keeps the connection's order, and it yields to other tasks
/// as it goes ([`record::validate_payload_pausing`]), so a large or highly
/// compressed request does not hold the shard.
pub async fn route(
    ctx: &RequestContext,
    req: ProduceRequest,
) -> LocalBoxFuture<'static, MaybeResponse<ProduceResponse>> {
    let shard = ctx.shard.clone();
    let acks = req.acks;
    // results[topic][partition], filled either now (errors) or from shards
    let mut layout: Vec<TopicSlots> = Vec::with_capacity(req.topic_data.len());
    let mut per_shard: Vec<Vec<ProducePart>> = (0..shard.shards()).map(|_| Vec::new()).collect();
    let frame_len = ctx.frame_len;
    let mut allowance = decompression_allowance(frame_len);
    let mut slots: Vec<Vec<(usize, usize)>> = (0..shard.shards()).map(|_| Vec::new()).collect();
    for topic in req.topic_data {
        let name = topic.name.0.as_str().to_string();
        let ti = layout.len();
        let mut parts = Vec::with_capacity(topic.partition_data.len());
        // One metadata lookup: whether the topic exists, and whether it is
        // internal.
        let (mut topic_known, internal) = shard
            .meta
            .borrow()
            .topic(&name)
            .map_or((false, false), |t| (true, t.internal));
        let mut topic_error = if !matches!(acks, -1..=1) {
            Some(ec::INVALID_REQUIRED_ACKS)
        } else {
            None
        };
        // Like Kafka, clients cannot append to internal topics: only the
        // group coordinator writes `__consumer_offsets`, through the shard.
        if topic_error.is_none() && internal {
            topic_error = Some(ec::INVALID_TOPIC_EXCEPTION);
        }
        if topic_error.is_none() && !topic_known {
            if crate::metadata::topic_name::validate(&name).is_err() {
                topic_error = Some(ec::INVALID_TOPIC_EXCEPTION);
            } else if shard.config.auto_create_topics {
                match auto_create(&shard, &name).await {
                    Ok(_) => topic_known = true,
                    Err(code) => topic_error = Some(code),
                }
            } else {
                topic_error = Some(ec::UNKNOWN_TOPIC_OR_PARTITION);
            }
        }
        let mut topic_config: Option<TopicConfig> = None;
        for p in topic.partition_data {
            let pi = parts.len();
            if let Some(code) = topic_error {
                let mut r = error_result(code);
                if internal && code == ec::INVALID_TOPIC_EXCEPTION {
                    r.message = Some(format!("Cannot append to internal topic {name}"));
                }
                parts.push((p.index, Some(r)));
                continue;
            }
            let owner = if topic_known {
                shard.meta.borrow().owner(&name, p.index)
            } else {
                None
            };
            match owner {
                None => parts.push((p.index, Some(error_result(ec::UNKNOWN_TOPIC_OR_PARTITION)))),
                Some(s) => {
                    let records = p.records.unwrap_or_default();
                    let cfg = topic_config.get_or_insert_with(|| {
                        let overrides = shard.meta.borrow().topic(&name).map(|t| t.configs.clone());
                        TopicConfig::resolve(&overrides.unwrap_or_default(), &shard.config)
                    });
                    let opts = record::ValidateOptions {
                        // Compacted topics need a key on every record (Kafka: INVALID_RECORD).
                        require_keys: cfg.compact,
                        max_total_decompressed_bytes: allowance,
                        // message.timestamp.* (Kafka: INVALID_TIMESTAMP).
                        timestamps: cfg.timestamp_policy(crate::io::time::now_ms()),
                        ..record::ValidateOptions::new(cfg.max_message_bytes)
                    };
                    match record::validate_payload_pausing(&records, &opts, crate::io::yield_if_needed).await {
                        Ok(validated) => {
                            allowance = allowance.saturating_sub(validated.decompressed_bytes as usize);
                            parts.push((p.index, None));
                            per_shard[s].push(ProducePart {
                                topic: name.clone(),
                                partition: p.index,
                                records,
                                frame_len,
                                validated: Some(validated),
                            });
                            slots[s].push((ti, pi));
                        }
                        Err(e) => parts.push((p.index, Some(ops::validation_error(&e)))),
                    }
                }
            }
        }
        layout.push((name, parts));
    }
    let mut waits = Vec::new();
    for (s, parts) in per_shard.into_iter().enumerate() {
        if parts.is_empty() {
            continue;
        }
        let req = ShardRequest::Produce {
            parts,
            acks,
            timeout_ms: req.timeout_ms,
        };
        waits.push((s, shard.dispatch(s, req).await));
    }
    async move {
        for (s, w) in waits {
            let results = match w.await {
                Some(ShardResponse::Produce(r)) => r,
                _ => Vec::new(),
            };
            let mut results = results.into_iter();
            for &(ti, pi) in &slots[s] {
                let r = results.next().unwrap_or_else(|| error_result(ec::UNKNOWN_SERVER_ERROR));
                layout[ti].1[pi].1 = Some(r);
            }
        }
        if acks == 0 {
            return MaybeResponse(None);
        }
        let responses = layout
            .into_iter()
            .map(|(name, parts)| {
                TopicProduceResponse::default()
                    .with_name(kafka_protocol::messages::TopicName(str_bytes(&name)))
                    .with_partition_responses(
                        parts
                            .into_iter()
                            .map(|(i, r)| {
                                partition_response(i, &r.unwrap_or_else(|| error_result(ec::UNKNOWN_SERVER_ERROR)))
                            })
                            .collect(),
                    )
            })
            .collect();
        MaybeResponse(Some(ProduceResponse::default().with_responses(responses)))
    }
    .boxed_local()
}
