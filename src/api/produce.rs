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
use crate::metadata::controller::CreateTopic;
use crate::metadata::TopicMeta;
use crate::protocol::error as ec;
use crate::protocol::str_bytes;
use crate::routing::{ControllerOp, ProducePart, ProducePartResult, ShardRequest, ShardResponse};
use crate::shard::Shard;

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

/// Route the request's partitions to their shards (in order), returning a
/// future for the response (none for acks=0).
pub async fn route(
    ctx: &RequestContext,
    req: ProduceRequest,
) -> LocalBoxFuture<'static, MaybeResponse<ProduceResponse>> {
    let shard = ctx.shard.clone();
    let acks = req.acks;
    // results[topic][partition], filled either now (errors) or from shards
    let mut layout: Vec<TopicSlots> = Vec::with_capacity(req.topic_data.len());
    let mut per_shard: Vec<Vec<ProducePart>> = (0..shard.shards()).map(|_| Vec::new()).collect();
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
                    parts.push((p.index, None));
                    per_shard[s].push(ProducePart {
                        topic: name.clone(),
                        partition: p.index,
                        records: p.records.unwrap_or_default(),
                    });
                    slots[s].push((ti, pi));
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
