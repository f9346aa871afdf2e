//! DeleteTopics: by name (all versions) or topic id (v6+).

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{ApiKey, DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use uuid::Uuid;

use super::{Api, Handler, Order, Reply, RequestContext};
use crate::protocol::error::{self as ec, ApiError};
use crate::protocol::str_bytes;
use crate::routing::ControllerOp;
use crate::shard::controller;

/// The DeleteTopics handler: versions 1-6, worked on out of order.
pub struct DeleteTopics;

impl Handler for DeleteTopics {
    const API: Api = Api {
        key: ApiKey::DeleteTopics,
        min_version: 1,
        max_version: 6,
        order: Order::OutOfOrder,
    };
    type Request = DeleteTopicsRequest;
    type Response = DeleteTopicsResponse;

    async fn start(ctx: &RequestContext, req: DeleteTopicsRequest) -> Reply<DeleteTopicsResponse> {
        Reply::Ready(handle(ctx, req).await)
    }
}

pub async fn handle(ctx: &RequestContext, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let shard = &ctx.shard;
    // (requested name, requested id, resolved name or error)
    let mut items: Vec<(Option<String>, Uuid, Result<String, ApiError>)> = Vec::new();
    if ctx.api_version >= 6 {
        let meta = shard.meta.borrow();
        for t in &req.topics {
            match &t.name {
                Some(n) => items.push((
                    Some(n.0.as_str().to_string()),
                    Uuid::nil(),
                    Ok(n.0.as_str().to_string()),
                )),
                None => match meta.topic_by_id(&t.topic_id) {
                    Some(m) => items.push((None, t.topic_id, Ok(m.name.clone()))),
                    None => items.push((
                        None,
                        t.topic_id,
                        Err(ApiError::with_message(
                            ec::UNKNOWN_TOPIC_ID,
                            "This server does not host this topic ID.",
                        )),
                    )),
                },
            }
        }
    } else {
        for n in &req.topic_names {
            items.push((
                Some(n.0.as_str().to_string()),
                Uuid::nil(),
                Ok(n.0.as_str().to_string()),
            ));
        }
    }
    let names: Vec<String> = items.iter().filter_map(|i| i.2.as_ref().ok().cloned()).collect();
    let mut results = if names.is_empty() {
        Vec::new()
    } else {
        controller::request(shard, ControllerOp::DeleteTopics { names: names.clone() }, names.len()).await
    }
    .into_iter();
    let responses = items
        .into_iter()
        .map(|(name, id, resolved)| {
            let outcome = match resolved {
                Ok(_) => results
                    .next()
                    .unwrap_or_else(|| Err(ApiError::with_message(ec::UNKNOWN_SERVER_ERROR, "missing result"))),
                Err(e) => Err(e),
            };
            let mut r = DeletableTopicResult::default()
                .with_name(name.as_deref().map(|n| TopicName(str_bytes(n))))
                .with_topic_id(id);
            match outcome {
                Ok(Some(t)) => {
                    r.topic_id = t.id;
                    if r.name.is_none() {
                        r.name = Some(TopicName(str_bytes(&t.name)));
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    r.error_code = e.code;
                    r.error_message = e.message.as_deref().map(str_bytes);
                }
            }
            r
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}
