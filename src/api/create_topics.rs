//! CreateTopics: validated and applied by the controller (shard 0).

use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse};
use uuid::Uuid;

use super::config_resource::{SOURCE_DEFAULT, SOURCE_DYNAMIC_TOPIC, SOURCE_STATIC_BROKER};
use super::{Api, Handler, Order, Reply, RequestContext};
use crate::config::TOPIC_CONFIGS;
use crate::metadata::controller::CreateTopic;
use crate::protocol::error as ec;
use crate::protocol::str_bytes;
use crate::routing::ControllerOp;
use crate::shard::controller;

/// The CreateTopics handler: versions 2-7, worked on out of order.
pub struct CreateTopics;

impl Handler for CreateTopics {
    const API: Api = Api {
        key: ApiKey::CreateTopics,
        min_version: 2,
        max_version: 7,
        order: Order::OutOfOrder,
    };
    type Request = CreateTopicsRequest;
    type Response = CreateTopicsResponse;

    async fn start(ctx: &RequestContext, req: CreateTopicsRequest) -> Reply<CreateTopicsResponse> {
        Reply::Ready(handle(ctx, req).await)
    }
}

pub async fn handle(ctx: &RequestContext, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let shard = &ctx.shard;
    let topics: Vec<CreateTopic> = req
        .topics
        .iter()
        .map(|t| CreateTopic {
            name: t.name.0.as_str().to_string(),
            num_partitions: t.num_partitions,
            replication_factor: t.replication_factor,
            assignments: t
                .assignments
                .iter()
                .map(|a| (a.partition_index, a.broker_ids.iter().map(|b| b.0).collect()))
                .collect(),
            configs: t
                .configs
                .iter()
                .map(|c| {
                    (
                        c.name.as_str().to_string(),
                        c.value.as_ref().map(|v| v.as_str().to_string()),
                    )
                })
                .collect(),
        })
        .collect();
    // Kafka rejects duplicate names within one request.
    let mut seen = crate::io::rand::HashMap::default();
    for t in &topics {
        *seen.entry(t.name.clone()).or_insert(0) += 1;
    }
    let (dups, unique): (Vec<CreateTopic>, Vec<CreateTopic>) = topics.into_iter().partition(|t| seen[&t.name] > 1);
    let names: Vec<String> = unique.iter().map(|t| t.name.clone()).collect();
    let results = controller::request(
        shard,
        ControllerOp::CreateTopics {
            topics: unique,
            validate_only: req.validate_only,
        },
        names.len(),
    )
    .await;
    let mut out = Vec::new();
    for (name, r) in names.iter().zip(results) {
        let base = CreatableTopicResult::default().with_name(kafka_protocol::messages::TopicName(str_bytes(name)));
        out.push(match r {
            Ok(Some(t)) => {
                let configs = TOPIC_CONFIGS
                    .iter()
                    .map(|d| {
                        let (value, source) = match t.configs.get(d.name) {
                            Some(v) => (v.clone(), SOURCE_DYNAMIC_TOPIC),
                            // STATIC_BROKER_CONFIG when the broker's file sets the default.
                            None if !d.broker_name.is_empty()
                                && shard.config.properties.contains_key(d.broker_name) =>
                            {
                                (shard.config.topic_default(d.name), SOURCE_STATIC_BROKER)
                            }
                            None => (shard.config.topic_default(d.name), SOURCE_DEFAULT),
                        };
                        CreatableTopicConfigs::default()
                            .with_name(str_bytes(d.name))
                            .with_value(Some(str_bytes(&value)))
                            .with_config_source(source)
                    })
                    .collect();
                base.with_topic_id(if req.validate_only { Uuid::nil() } else { t.id })
                    .with_num_partitions(t.partitions.len() as i32)
                    .with_replication_factor(1)
                    .with_configs(if ctx.api_version >= 5 { Some(configs) } else { None })
            }
            Ok(None) => base,
            Err(e) => base
                .with_error_code(e.code)
                .with_error_message(e.message.as_deref().map(str_bytes))
                .with_num_partitions(-1)
                .with_replication_factor(-1),
        });
    }
    for d in dups {
        if out.iter().any(|r| r.name.0.as_str() == d.name) {
            continue;
        }
        out.push(
            CreatableTopicResult::default()
                .with_name(kafka_protocol::messages::TopicName(str_bytes(&d.name)))
                .with_error_code(ec::INVALID_REQUEST)
                .with_error_message(Some(str_bytes(&format!(
                    "Create topics request from client contains duplicate topic name: {}",
                    d.name
                ))))
                .with_num_partitions(-1)
                .with_replication_factor(-1),
        );
    }
    CreateTopicsResponse::default().with_topics(out)
}
