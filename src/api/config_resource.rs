//! Config resources as AlterConfigs, IncrementalAlterConfigs and
//! DescribeConfigs name them, and the checks Kafka's brokers make on an
//! alter request before the changes go to the controller.
//!
//! TOPIC and GROUP changes are planned and committed by the controller.
//! ringlog has no dynamic broker configs: a BROKER resource with changes
//! gets INVALID_REQUEST (what Kafka answers for a config that cannot be
//! updated dynamically), and so does BROKER_LOGGER (log levels are set with
//! `--log-level` at start).

use crate::io::rand::HashSet;

use super::RequestContext;
use crate::metadata::controller::{ConfigChange, ConfigOp, ConfigTarget};
use crate::protocol::error::{self as ec, ApiError};
use crate::routing::ControllerOp;
use crate::shard::controller;

/// Kafka's config resource type codes.
pub const TOPIC: i8 = 2;
pub const BROKER: i8 = 4;
pub const BROKER_LOGGER: i8 = 8;
pub const GROUP: i8 = 32;

/// DescribeConfigs config sources.
pub const SOURCE_DYNAMIC_TOPIC: i8 = 1;
pub const SOURCE_STATIC_BROKER: i8 = 4;
pub const SOURCE_DEFAULT: i8 = 5;
pub const SOURCE_GROUP: i8 = 8;

/// One config of an alter request; AlterConfigs entries are SETs.
#[derive(Clone, Debug)]
pub struct AlterEntry {
    pub name: String,
    /// IncrementalAlterConfigs operation: 0 SET, 1 DELETE, 2 APPEND, 3 SUBTRACT.
    pub op: i8,
    pub value: Option<String>,
}

/// One resource of an alter request, decoded from either API.
#[derive(Clone, Debug)]
pub struct AlterResource {
    pub resource_type: i8,
    pub name: String,
    pub configs: Vec<AlterEntry>,
}

/// The API an alter request came by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlterApi {
    /// AlterConfigs: the entries replace all overrides of the resource.
    Replace,
    /// IncrementalAlterConfigs: the entries are operations.
    Incremental,
}

/// What becomes of a resource after the broker-side checks.
#[derive(Debug, PartialEq, Eq)]
pub enum Checked {
    /// Nothing to change (a BROKER resource without configs).
    Done,
    /// The controller plans and commits this change.
    Controller(ConfigTarget, ConfigChange),
}

fn invalid_request(message: impl Into<String>) -> ApiError {
    ApiError::with_message(ec::INVALID_REQUEST, message)
}

fn to_op(e: &AlterEntry) -> Result<ConfigOp, ApiError> {
    let value = || e.value.clone().unwrap_or_default();
    match e.op {
        0 => Ok(ConfigOp::Set(value())),
        1 => Ok(ConfigOp::Delete),
        2 => Ok(ConfigOp::Append(value())),
        3 => Ok(ConfigOp::Subtract(value())),
        other => Err(invalid_request(format!("Unknown operation type {other}"))),
    }
}

fn check_one(r: &AlterResource, api: AlterApi, node_id: i32) -> Result<Checked, ApiError> {
    let mut keys = HashSet::default();
    if !r.configs.iter().all(|c| keys.insert(c.name.as_str())) {
        return Err(invalid_request("Error due to duplicate config keys"));
    }
    let nulls: Vec<&str> = r
        .configs
        .iter()
        .filter(|c| c.value.is_none() && (api == AlterApi::Replace || c.op != 1))
        .map(|c| c.name.as_str())
        .collect();
    if !nulls.is_empty() {
        return Err(invalid_request(format!(
            "Null value not supported for : {}",
            nulls.join(", ")
        )));
    }
    let target = match r.resource_type {
        TOPIC => ConfigTarget::Topic(r.name.clone()),
        GROUP => ConfigTarget::Group(r.name.clone()),
        BROKER => {
            if !r.name.is_empty() {
                let Ok(id) = r.name.parse::<i32>() else {
                    return Err(invalid_request(format!(
                        "Node id must be an integer, but it is: {}",
                        r.name
                    )));
                };
                if id != node_id {
                    return Err(invalid_request(format!(
                        "Unexpected broker id, expected {node_id}, but received {}",
                        r.name
                    )));
                }
            }
            if r.configs.is_empty() {
                return Ok(Checked::Done);
            }
            let names: Vec<&str> = r.configs.iter().map(|c| c.name.as_str()).collect();
            return Err(invalid_request(format!(
                "Cannot update these configs dynamically: {}: ringlog does not support dynamic broker configs; \
                 set them in the broker's config file and restart",
                names.join(", ")
            )));
        }
        BROKER_LOGGER if api == AlterApi::Incremental => {
            return Err(invalid_request(
                "Changing log levels at runtime (BROKER_LOGGER) is not supported by ringlog; use --log-level at start",
            ));
        }
        other => return Err(invalid_request(format!("Unknown resource type {other}"))),
    };
    let change = match api {
        AlterApi::Replace => ConfigChange::Replace(
            r.configs
                .iter()
                .map(|c| (c.name.clone(), c.value.clone().unwrap_or_default()))
                .collect(),
        ),
        AlterApi::Incremental => ConfigChange::Incremental(
            r.configs
                .iter()
                .map(|c| Ok((c.name.clone(), to_op(c)?)))
                .collect::<Result<_, ApiError>>()?,
        ),
    };
    Ok(Checked::Controller(target, change))
}

/// The broker-side checks of an alter request, one result per resource:
/// a resource named twice, duplicate keys, null values, unknown operations
/// and resource types, broker ids, unsupported resources.
pub fn check(resources: &[AlterResource], api: AlterApi, node_id: i32) -> Vec<Result<Checked, ApiError>> {
    let mut seen = crate::io::rand::HashMap::default();
    for r in resources {
        *seen.entry((r.resource_type, r.name.as_str())).or_insert(0) += 1;
    }
    resources
        .iter()
        .map(|r| {
            if seen.get(&(r.resource_type, r.name.as_str())).copied().unwrap_or(0) > 1 {
                return Err(invalid_request("Each resource must appear at most once."));
            }
            check_one(r, api, node_id)
        })
        .collect()
}

/// Serve an alter request: check it, have the controller apply (or with
/// `validate_only` only validate) the accepted changes, and return one
/// result per resource in request order.
pub async fn alter(
    ctx: &RequestContext,
    resources: &[AlterResource],
    api: AlterApi,
    validate_only: bool,
) -> Vec<Result<(), ApiError>> {
    let mut out = Vec::with_capacity(resources.len());
    let mut work = Vec::new();
    for c in check(resources, api, ctx.shard.config.node_id) {
        match c {
            Ok(Checked::Done) => out.push(Some(Ok(()))),
            Ok(Checked::Controller(target, change)) => {
                out.push(None);
                work.push((target, change));
            }
            Err(e) => out.push(Some(Err(e))),
        }
    }
    let mut replies = if work.is_empty() {
        Vec::new()
    } else {
        let n = work.len();
        let op = ControllerOp::AlterConfigs {
            resources: work,
            validate_only,
        };
        controller::request(&ctx.shard, op, n).await
    }
    .into_iter();
    out.into_iter()
        .map(|o| {
            o.unwrap_or_else(|| {
                replies
                    .next()
                    .unwrap_or_else(|| Err(ApiError::with_message(ec::UNKNOWN_SERVER_ERROR, "missing result")))
                    .map(|_| ())
            })
        })
        .collect()
}

/// The body of the AlterConfigs and IncrementalAlterConfigs handlers, whose
/// request and response types differ only in name and in the operation
/// field: decode the resources (`$op` gives an entry's operation code),
/// serve them with [`alter`], answer with one `$resp` per resource.
macro_rules! alter_handler {
    ($ctx:expr, $req:expr, $api:expr, $op:expr, $resp:ty) => {{
        let req = $req;
        let resources: Vec<$crate::api::config_resource::AlterResource> = req
            .resources
            .iter()
            .map(|r| $crate::api::config_resource::AlterResource {
                resource_type: r.resource_type,
                name: r.resource_name.to_string(),
                configs: r
                    .configs
                    .iter()
                    .map(|c| $crate::api::config_resource::AlterEntry {
                        name: c.name.to_string(),
                        op: $op(c),
                        value: c.value.as_ref().map(|v| v.to_string()),
                    })
                    .collect(),
            })
            .collect();
        let results = $crate::api::config_resource::alter($ctx, &resources, $api, req.validate_only).await;
        req.resources
            .iter()
            .zip(results)
            .map(|(r, result)| {
                let base = <$resp>::default()
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name.clone());
                match result {
                    Ok(()) => base,
                    Err(e) => base
                        .with_error_code(e.code)
                        .with_error_message(e.message.as_deref().map($crate::protocol::str_bytes)),
                }
            })
            .collect::<Vec<_>>()
    }};
}
pub(crate) use alter_handler;

#[cfg(test)]
mod tests {
    use super::*;

    fn res(ty: i8, name: &str, configs: &[(&str, i8, Option<&str>)]) -> AlterResource {
        AlterResource {
            resource_type: ty,
            name: name.into(),
            configs: configs
                .iter()
                .map(|(n, op, v)| AlterEntry {
                    name: n.to_string(),
                    op: *op,
                    value: v.map(String::from),
                })
                .collect(),
        }
    }

    fn code(r: &Result<Checked, ApiError>) -> i16 {
        r.as_ref().err().map_or(ec::NONE, |e| e.code)
    }

    #[test]
    fn incremental_ops_are_decoded() {
        let r = check(
            &[res(
                TOPIC,
                "t",
                &[
                    ("a", 0, Some("1")),
                    ("b", 1, None),
                    ("c", 2, Some("x")),
                    ("d", 3, Some("y")),
                ],
            )],
            AlterApi::Incremental,
            0,
        );
        let expected = ConfigChange::Incremental(vec![
            ("a".into(), ConfigOp::Set("1".into())),
            ("b".into(), ConfigOp::Delete),
            ("c".into(), ConfigOp::Append("x".into())),
            ("d".into(), ConfigOp::Subtract("y".into())),
        ]);
        assert_eq!(
            r,
            vec![Ok(Checked::Controller(ConfigTarget::Topic("t".into()), expected))]
        );
        let r = check(&[res(GROUP, "g", &[("a", 0, Some("1"))])], AlterApi::Replace, 0);
        assert_eq!(
            r,
            vec![Ok(Checked::Controller(
                ConfigTarget::Group("g".into()),
                ConfigChange::Replace(vec![("a".into(), "1".into())])
            ))]
        );
    }

    #[test]
    fn request_errors_like_kafka() {
        let inc = |r: AlterResource| check(&[r], AlterApi::Incremental, 1).remove(0);
        assert_eq!(
            code(&inc(res(TOPIC, "t", &[("a", 0, Some("1")), ("a", 1, None)]))),
            ec::INVALID_REQUEST
        );
        assert_eq!(code(&inc(res(TOPIC, "t", &[("a", 0, None)]))), ec::INVALID_REQUEST);
        assert_eq!(code(&inc(res(TOPIC, "t", &[("a", 9, Some("1"))]))), ec::INVALID_REQUEST);
        assert_eq!(code(&inc(res(99, "t", &[]))), ec::INVALID_REQUEST);
        assert_eq!(
            code(&inc(res(BROKER_LOGGER, "1", &[("root", 0, Some("DEBUG"))]))),
            ec::INVALID_REQUEST
        );
        // Broker: only this broker's id (or the cluster default ""), and no
        // dynamic changes.
        assert_eq!(code(&inc(res(BROKER, "2", &[]))), ec::INVALID_REQUEST);
        assert_eq!(code(&inc(res(BROKER, "x", &[]))), ec::INVALID_REQUEST);
        assert_eq!(inc(res(BROKER, "1", &[])), Ok(Checked::Done));
        let e = inc(res(BROKER, "", &[("log.retention.ms", 0, Some("1"))])).unwrap_err();
        assert_eq!(e.code, ec::INVALID_REQUEST);
        assert!(e.message().contains("dynamic broker configs"), "{e}");
        // AlterConfigs: a null is never allowed, BROKER_LOGGER is unknown.
        let legacy = |r: AlterResource| check(&[r], AlterApi::Replace, 1).remove(0);
        assert_eq!(code(&legacy(res(TOPIC, "t", &[("a", 1, None)]))), ec::INVALID_REQUEST);
        assert_eq!(
            legacy(res(BROKER_LOGGER, "1", &[])).unwrap_err().message.as_deref(),
            Some("Unknown resource type 8")
        );
        // A resource named twice: both fail, the others are unaffected.
        let r = check(
            &[res(TOPIC, "t", &[]), res(GROUP, "t", &[]), res(TOPIC, "t", &[])],
            AlterApi::Incremental,
            1,
        );
        assert_eq!(
            r.iter().map(code).collect::<Vec<_>>(),
            vec![ec::INVALID_REQUEST, ec::NONE, ec::INVALID_REQUEST]
        );
    }
}
