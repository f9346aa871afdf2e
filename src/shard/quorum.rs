//! Shard 0's part in a multi-node cluster (docs/design/replication.md,
//! Section 5): on a voter, the controller quorum's shell and its listener;
//! on every node, registration and heartbeats with the active controller;
//! and the broker table of the quorum's image handed to every shard.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use anyhow::Context;

use super::Shard;
use crate::cluster::lifecycle::{self, BrokerIdentity};
use crate::cluster::quorum_shell::{QuorumShell, QuorumSpec};
use crate::io::net::Listener;
use crate::io::Task;
use crate::metadata::quorum::ControllerSettings;
use crate::metadata::{BrokerMeta, MetaUpdate};
use crate::routing::ShardRequest;

/// Start this node's cluster tasks (shard 0 of a node with
/// `controller.quorum.voters`); they stop when the returned tasks drop.
pub async fn start(shard: &Rc<Shard>) -> anyhow::Result<Vec<Task<()>>> {
    let cfg = shard.config.clone();
    let me = cfg.node_id;
    let mut voters: Vec<(i32, SocketAddr)> = Vec::new();
    for v in &cfg.cluster.voters {
        let addr = crate::cluster::settings::resolve(&format!("{}:{}", v.host, v.port))
            .with_context(|| format!("resolving controller {v}"))?;
        voters.push((v.id, addr));
    }
    let mut tasks = Vec::new();
    let local = if cfg.cluster.is_voter(me) {
        let spec = QuorumSpec {
            me,
            cluster_id: cfg.cluster_id.clone(),
            voters: voters.clone(),
            data_dir: cfg.data_dir.clone(),
            election_timeout_ms: cfg.prop_i64("controller.quorum.election.timeout.ms", 1000).max(1) as u64,
            tick_ms: cfg.prop_i64("ringlog.controller.tick.ms", 100).max(1) as u64,
            settings: ControllerSettings {
                session_timeout_ms: cfg.prop_i64("broker.session.timeout.ms", 9000),
                ..Default::default()
            },
        };
        let shell = QuorumShell::start(spec)
            .await
            .context("starting the controller quorum")?;
        let addr = cfg
            .cluster
            .controller_listen
            .context("a voter needs a controller listener (--controller-listen)")?;
        let l = Listener::bind(addr).with_context(|| format!("binding the controller listener {addr}"))?;
        tracing::info!(%addr, voters = voters.len(), "controller listener");
        tasks.push(crate::io::spawn(crate::cluster::controller_listener::serve(
            shell.clone(),
            l,
        )));
        tasks.push(crate::io::spawn(publish_brokers(shard.clone(), shell.clone())));
        *shard.quorum.borrow_mut() = Some(shell.clone());
        Some(shell)
    } else {
        None
    };
    let identity = BrokerIdentity {
        node_id: me,
        cluster_id: cfg.cluster_id.clone(),
        incarnation_id: crate::io::rand::uuid_v4(),
        client: (
            cfg.advertised_host.clone(),
            u16::try_from(cfg.advertised_port).unwrap_or(0),
        ),
        replication: (0..cfg.shards)
            .filter_map(|s| cfg.cluster.replication_addr(s))
            .map(|a| (cfg.advertised_host.clone(), a.port()))
            .collect(),
        rack: cfg.cluster.rack.clone(),
    };
    let interval = Duration::from_millis(cfg.prop_i64("broker.heartbeat.interval.ms", 2000).max(10) as u64);
    tasks.push(crate::io::spawn(lifecycle::run(identity, voters, local, interval)));
    Ok(tasks)
}

/// Hand the quorum's broker table to every shard whenever it changes.
/// Until topics are placed by the quorum (RF=1 across brokers) this node
/// leads its own partitions, so it always lists itself, unfenced.
async fn publish_brokers(shard: Rc<Shard>, shell: Rc<QuorumShell>) {
    loop {
        let wake = shell.brokers_changed.listen();
        if let Some(mut brokers) = shell.brokers() {
            let me = BrokerMeta {
                id: shard.config.node_id,
                host: shard.config.advertised_host.clone(),
                port: shard.config.advertised_port,
                rack: shard.config.cluster.rack.clone(),
                fenced: false,
            };
            brokers.insert(me.id, me);
            if shard.meta.borrow().brokers != brokers {
                let mut replies = Vec::new();
                for target in 0..shard.shards() {
                    replies.push(
                        shard
                            .dispatch(target, ShardRequest::Apply(MetaUpdate::Brokers(brokers.clone())))
                            .await,
                    );
                }
                for r in replies {
                    let _ = r.await;
                }
            }
        }
        wake.await;
    }
}
