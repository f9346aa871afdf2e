//! The controller shell on shard 0: runs metadata operations one at a time,
//! persists the result, then has every shard apply it before answering.

use std::rc::Rc;

use crate::metadata::controller::{plan_alter_configs, plan_create, plan_create_partitions, plan_delete};
use crate::metadata::{store, MetaUpdate, TopicMeta};
use crate::protocol::error::{self as ec, ApiError};
use crate::routing::{ControllerOp, ShardRequest, ShardResponse};

use super::Shard;

type ItemResult = Result<Option<TopicMeta>, ApiError>;

/// Have the controller (shard 0) run `op`, which covers `items` items: one
/// result per item, in order. Each is an error if the controller did not
/// answer for it.
pub async fn request(shard: &Rc<Shard>, op: ControllerOp, items: usize) -> Vec<ItemResult> {
    let mut results = match shard.dispatch(0, ShardRequest::Controller(op)).await.await {
        Some(ShardResponse::Controller(r)) => r,
        _ => Vec::new(),
    };
    if results.len() != items {
        let failure = results
            .pop()
            .and_then(Result::err)
            .unwrap_or_else(|| ApiError::with_message(ec::UNKNOWN_SERVER_ERROR, "controller unavailable"));
        results = (0..items).map(|_| Err(failure.clone())).collect();
    }
    results
}

pub async fn run(shard: &Rc<Shard>, op: ControllerOp) -> Vec<ItemResult> {
    let Some(_guard) = shard.controller_lock.lock().await else {
        return vec![Err(ApiError::with_message(
            ec::UNKNOWN_SERVER_ERROR,
            "controller unavailable",
        ))];
    };
    match op {
        ControllerOp::CreateTopics { topics, validate_only } => {
            let mut out = Vec::with_capacity(topics.len());
            for t in topics {
                let planned = plan_create(&shard.meta.borrow(), &shard.config, &t);
                match planned {
                    Ok(meta) if validate_only => out.push(Ok(Some(meta))),
                    Ok(meta) => match commit(shard, MetaUpdate::Upsert(meta.clone())).await {
                        Ok(()) => out.push(Ok(Some(meta))),
                        Err(e) => out.push(Err(e)),
                    },
                    Err(e) => out.push(Err(e)),
                }
            }
            out
        }
        ControllerOp::DeleteTopics { names } => {
            let mut out = Vec::with_capacity(names.len());
            for n in names {
                let planned = plan_delete(&shard.meta.borrow(), &n);
                match planned {
                    Ok(update) => {
                        let meta = shard.meta.borrow().topic(&n).cloned();
                        out.push(commit(shard, update).await.map(|()| meta));
                    }
                    Err(e) => out.push(Err(e)),
                }
            }
            out
        }
        ControllerOp::CreatePartitions { topics, validate_only } => {
            let mut out = Vec::with_capacity(topics.len());
            for (name, count) in topics {
                let planned = plan_create_partitions(&shard.meta.borrow(), &shard.config, &name, count, false);
                match planned {
                    Ok(meta) if validate_only => out.push(Ok(Some(meta))),
                    Ok(meta) => out.push(
                        commit(shard, MetaUpdate::Upsert(meta.clone()))
                            .await
                            .map(|()| Some(meta)),
                    ),
                    Err(e) => out.push(Err(e)),
                }
            }
            out
        }
        ControllerOp::AlterConfigs {
            resources,
            validate_only,
        } => {
            let mut out = Vec::with_capacity(resources.len());
            for (target, change) in resources {
                let planned = plan_alter_configs(&shard.meta.borrow(), &shard.config, &target, &change);
                match planned {
                    Ok(_) if validate_only => out.push(Ok(None)),
                    Ok(update) => out.push(commit(shard, update).await.map(|()| None)),
                    Err(e) => out.push(Err(e)),
                }
            }
            out
        }
    }
}

/// Persist a change, then apply it on every shard (this one included).
async fn commit(shard: &Rc<Shard>, update: MetaUpdate) -> Result<(), ApiError> {
    let mut next = shard.meta.borrow().clone();
    next.apply(&update);
    store::save(&shard.config.data_dir, &next)
        .await
        .map_err(|e| ApiError::with_message(ec::KAFKA_STORAGE_ERROR, format!("cannot persist metadata: {e}")))?;
    let mut replies = Vec::with_capacity(shard.shards());
    for target in 0..shard.shards() {
        replies.push(shard.dispatch(target, ShardRequest::Apply(update.clone())).await);
    }
    for r in replies {
        if r.await.is_none() {
            return Err(ApiError::with_message(
                ec::UNKNOWN_SERVER_ERROR,
                "a shard did not apply the change",
            ));
        }
    }
    Ok(())
}

/// Producer ids are reserved in blocks recorded in the cluster metadata
/// before any id of the block is handed out.
pub const PRODUCER_ID_BLOCK: i64 = 1000;

/// Hand out a new producer id (idempotent producers).
pub async fn allocate_producer_id(shard: &Rc<Shard>) -> Result<i64, i16> {
    let Some(_guard) = shard.controller_lock.lock().await else {
        return Err(ec::COORDINATOR_NOT_AVAILABLE);
    };
    let end = shard.meta.borrow().producer_id_block_end;
    let mut next = shard.next_producer_id.get();
    if next < 0 {
        next = end; // first use since start: skip whatever was reserved before
    }
    if next >= end {
        let mut meta = shard.meta.borrow().clone();
        meta.producer_id_block_end = next + PRODUCER_ID_BLOCK;
        if let Err(e) = store::save(&shard.config.data_dir, &meta).await {
            tracing::error!("cannot persist producer id block: {e}");
            return Err(ec::COORDINATOR_NOT_AVAILABLE);
        }
        shard.meta.borrow_mut().producer_id_block_end = meta.producer_id_block_end;
    }
    shard.next_producer_id.set(next + 1);
    Ok(next)
}
