//! DescribeConfigs: topic and group configs (overrides and their broker
//! defaults) and broker configs, with sources and synonyms as Kafka reports
//! them. A group need not exist to be described (Kafka 4).

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{ApiKey, DescribeConfigsRequest, DescribeConfigsResponse};

use std::collections::BTreeMap;

use super::config_resource::{
    BROKER, GROUP, SOURCE_DEFAULT, SOURCE_DYNAMIC_TOPIC, SOURCE_GROUP, SOURCE_STATIC_BROKER, TOPIC,
};
use super::{Api, Handler, Order, Reply, RequestContext};
use crate::config::{BrokerConfig, TopicConfigDef, GROUP_CONFIGS, TOPIC_CONFIGS};
use crate::protocol::error as ec;
use crate::protocol::str_bytes;

/// The DescribeConfigs handler: versions 1-4, worked on out of order.
pub struct DescribeConfigs;

impl Handler for DescribeConfigs {
    const API: Api = Api {
        key: ApiKey::DescribeConfigs,
        min_version: 1,
        max_version: 4,
        order: Order::OutOfOrder,
    };
    type Request = DescribeConfigsRequest;
    type Response = DescribeConfigsResponse;

    async fn start(ctx: &RequestContext, req: DescribeConfigsRequest) -> Reply<DescribeConfigsResponse> {
        Reply::Ready(handle(ctx, req).await)
    }
}

fn wanted(keys: &Option<Vec<kafka_protocol::protocol::StrBytes>>, name: &str) -> bool {
    match keys {
        None => true,
        Some(k) if k.is_empty() => true,
        Some(k) => k.iter().any(|x| x.as_str() == name),
    }
}

fn entry(
    name: &str,
    value: &str,
    source: i8,
    ty: i8,
    synonyms: Vec<DescribeConfigsSynonym>,
    read_only: bool,
    doc: Option<&str>,
) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(str_bytes(name))
        .with_value(Some(str_bytes(value)))
        .with_read_only(read_only)
        .with_config_source(source)
        .with_config_type(ty)
        .with_synonyms(synonyms)
        .with_documentation(doc.map(str_bytes))
}

/// Entries for the properties `defs` of one topic or group: its override
/// (reported with `override_source`), else the broker's default from
/// `default`, which the broker's config file may set.
fn describe_defs(
    defs: &[TopicConfigDef],
    overrides: &BTreeMap<String, String>,
    override_source: i8,
    req: &DescribeConfigsRequest,
    keys: &Option<Vec<kafka_protocol::protocol::StrBytes>>,
    cfg: &BrokerConfig,
    default: impl Fn(&str) -> String,
) -> Vec<DescribeConfigsResourceResult> {
    let mut configs = Vec::new();
    for d in defs.iter().filter(|d| wanted(keys, d.name)) {
        let mut synonyms = Vec::new();
        let broker_set = (!d.broker_name.is_empty())
            .then(|| cfg.properties.get(d.broker_name).cloned())
            .flatten();
        let (value, source) = match overrides.get(d.name) {
            Some(v) => (v.clone(), override_source),
            None if broker_set.is_some() => (default(d.name), SOURCE_STATIC_BROKER),
            None => (default(d.name), SOURCE_DEFAULT),
        };
        if req.include_synonyms {
            if let Some(v) = overrides.get(d.name) {
                synonyms.push(
                    DescribeConfigsSynonym::default()
                        .with_name(str_bytes(d.name))
                        .with_value(Some(str_bytes(v)))
                        .with_source(override_source),
                );
            }
            if let Some(v) = &broker_set {
                synonyms.push(
                    DescribeConfigsSynonym::default()
                        .with_name(str_bytes(d.broker_name))
                        .with_value(Some(str_bytes(v)))
                        .with_source(SOURCE_STATIC_BROKER),
                );
            }
            if !d.broker_name.is_empty() {
                synonyms.push(
                    DescribeConfigsSynonym::default()
                        .with_name(str_bytes(d.broker_name))
                        .with_value(Some(str_bytes(d.default)))
                        .with_source(SOURCE_DEFAULT),
                );
            }
        }
        let doc = req.include_documentation.then_some(d.doc);
        configs.push(entry(d.name, &value, source, d.ty.kafka_code(), synonyms, false, doc));
    }
    configs
}

pub async fn handle(ctx: &RequestContext, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let shard = &ctx.shard;
    let cfg = &shard.config;
    let mut results = Vec::new();
    for r in &req.resources {
        let name = r.resource_name.as_str();
        let base = DescribeConfigsResult::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        match r.resource_type {
            TOPIC => {
                let Some(t) = shard.meta.borrow().topic(name).cloned() else {
                    results.push(
                        base.with_error_code(ec::UNKNOWN_TOPIC_OR_PARTITION)
                            .with_error_message(Some(str_bytes(&format!("Topic '{name}' does not exist.")))),
                    );
                    continue;
                };
                let configs = describe_defs(
                    TOPIC_CONFIGS,
                    &t.configs,
                    SOURCE_DYNAMIC_TOPIC,
                    &req,
                    &r.configuration_keys,
                    cfg,
                    |n| cfg.topic_default(n),
                );
                results.push(base.with_configs(configs));
            }
            GROUP => {
                if name.is_empty() {
                    results.push(
                        base.with_error_code(ec::INVALID_REQUEST)
                            .with_error_message(Some(str_bytes("Default group resources are not allowed."))),
                    );
                    continue;
                }
                let overrides = shard.meta.borrow().group_configs.get(name).cloned().unwrap_or_default();
                let configs = describe_defs(
                    GROUP_CONFIGS,
                    &overrides,
                    SOURCE_GROUP,
                    &req,
                    &r.configuration_keys,
                    cfg,
                    |n| cfg.group_default(n),
                );
                results.push(base.with_configs(configs));
            }
            BROKER => {
                if !name.is_empty() && name != cfg.node_id.to_string() {
                    results.push(
                        base.with_error_code(ec::INVALID_REQUEST)
                            .with_error_message(Some(str_bytes(&format!(
                                "Unexpected broker id, expected {} but received {name}",
                                cfg.node_id
                            )))),
                    );
                    continue;
                }
                let mut configs = Vec::new();
                for n in BrokerConfig::broker_config_names()
                    .into_iter()
                    .filter(|n| wanted(&r.configuration_keys, n))
                {
                    let Some((value, explicit)) = cfg.broker_value(n) else {
                        continue;
                    };
                    let source = if explicit { SOURCE_STATIC_BROKER } else { SOURCE_DEFAULT };
                    let synonyms = if req.include_synonyms {
                        vec![DescribeConfigsSynonym::default()
                            .with_name(str_bytes(n))
                            .with_value(Some(str_bytes(&value)))
                            .with_source(source)]
                    } else {
                        vec![]
                    };
                    configs.push(entry(
                        n,
                        &value,
                        source,
                        BrokerConfig::broker_config_type(n).kafka_code(),
                        synonyms,
                        true,
                        None,
                    ));
                }
                results.push(base.with_configs(configs));
            }
            other => results.push(
                base.with_error_code(ec::INVALID_REQUEST)
                    .with_error_message(Some(str_bytes(&format!("Unsupported resource type {other}")))),
            ),
        }
    }
    DescribeConfigsResponse::default().with_results(results)
}
