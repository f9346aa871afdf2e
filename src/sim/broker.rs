//! A ringlog broker running inside a simulated world: the production
//! start-up ([`crate::broker::prepare`]) and one [`crate::broker::run_shard`]
//! task per shard, all on one node of the world, over the simulated disk and
//! network. It can be stopped cleanly (the stop flag, as SIGTERM does),
//! crashed (every task of its node dropped, as `kill -9` does; the page
//! cache survives) or hit by a power failure (a crash plus
//! [`crate::io::sim::disk::Disk::power_loss`]), and started again on the
//! same disk.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use crate::broker::{mark_clean_shutdown, prepare, run_shard, Prepared, ShardStart};
use crate::config::{BrokerConfig, Overrides};
use crate::io::file::IoMode;
use crate::io::mesh::MeshBuilder;
use crate::io::signal::{Countdown, Flag};
use crate::io::sim::{world, NodeId, Task};
use crate::routing::Envelope;

/// The broker's node in the world.
pub const BROKER_NODE: NodeId = 1;
/// The broker's data directory on the simulated disk.
pub const DATA_DIR: &str = "/sim/data";
/// Where the simulated broker listens.
pub const BROKER_ADDR: ([u8; 4], u16) = ([10, 0, 0, 1], 9092);

pub fn broker_addr() -> SocketAddr {
    SocketAddr::from(BROKER_ADDR)
}

/// Broker settings a seed chooses.
#[derive(Clone, Debug)]
pub struct BrokerSettings {
    pub shards: usize,
    pub io_mode: IoMode,
    pub segment_bytes: u64,
    /// Extra broker properties (Kafka names).
    pub properties: Vec<(String, String)>,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        BrokerSettings {
            shards: 2,
            io_mode: IoMode::Direct,
            segment_bytes: 64 << 10,
            properties: Vec::new(),
        }
    }
}

/// The configuration of the simulated broker: the production property
/// parsing ([`BrokerConfig::from_properties`]) of the seed's properties.
pub fn broker_config(s: &BrokerSettings) -> anyhow::Result<BrokerConfig> {
    let mut props: BTreeMap<String, String> = [
        ("log.segment.bytes", s.segment_bytes.to_string()),
        ("offsets.topic.num.partitions", "3".to_string()),
        ("num.partitions", "2".to_string()),
        ("group.initial.rebalance.delay.ms", "0".to_string()),
        ("ringlog.io.mode", s.io_mode.as_str().to_string()),
        ("ringlog.cache.bytes.per.shard", (4u64 << 20).to_string()),
        // Committed offsets must outlive the longest idle stretch of a run.
        ("offsets.retention.minutes", (60 * 24 * 60).to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, v) in &s.properties {
        props.insert(k.clone(), v.clone());
    }
    let overrides = Overrides {
        data_dir: Some(PathBuf::from(DATA_DIR)),
        listen: Some(format!("{}", broker_addr())),
        advertised_listener: Some(format!("{}", broker_addr())),
        shards: Some(s.shards),
        config_file: None,
        metrics_listen: None,
        ..Default::default()
    };
    BrokerConfig::from_properties(&overrides, props)
}

/// How a broker run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Stopped cleanly: every shard shut down and the clean marker was written.
    Clean,
    /// A shard failed (or start-up failed): the message says why.
    Failed(String),
}

/// One broker process on [`BROKER_NODE`]; restartable.
pub struct SimBroker {
    pub settings: BrokerSettings,
    run: RefCell<Option<Run>>,
    /// Starts so far (1 after the first boot).
    pub starts: std::cell::Cell<u32>,
}

struct Run {
    stop: Flag,
    ready: Countdown,
    failed: Flag,
    task: Task<Exit>,
}

impl SimBroker {
    pub fn new(settings: BrokerSettings) -> Rc<SimBroker> {
        Rc::new(SimBroker {
            settings,
            run: RefCell::new(None),
            starts: std::cell::Cell::new(0),
        })
    }

    /// Whether a broker process is running (started and not stopped or crashed).
    pub fn is_running(&self) -> bool {
        self.run.borrow().is_some()
    }

    /// Start the broker process (on its own node). Returns once it was
    /// spawned; see [`SimBroker::wait_ready`].
    pub fn start(&self) {
        if self.is_running() {
            return;
        }
        self.starts.set(self.starts.get() + 1);
        let config = broker_config(&self.settings);
        let shards = self.settings.shards;
        let stop = Flag::new();
        let ready = Countdown::new(shards);
        let failed = Flag::new();
        let (s, r, f) = (stop.clone(), ready.clone(), failed.clone());
        let task = world().spawn_on(BROKER_NODE, async move {
            let mut config = match config {
                Ok(c) => c,
                Err(e) => {
                    f.set();
                    return Exit::Failed(format!("bad configuration: {e:#}"));
                }
            };
            let Prepared {
                meta,
                clean_start,
                recovery_points,
            } = match prepare(&mut config).await {
                Ok(p) => p,
                Err(e) => {
                    f.set();
                    return Exit::Failed(format!("start-up failed: {e:#}"));
                }
            };
            tracing::info!(clean_start, topics = meta.topics.len(), "simulated broker starting");
            let mesh: MeshBuilder<Envelope> = MeshBuilder::simulated(shards, 1024);
            let mut tasks = Vec::new();
            for id in 0..shards {
                let start = ShardStart {
                    id,
                    config: config.clone(),
                    meta: meta.clone(),
                    mesh: mesh.clone(),
                    stop: s.clone(),
                    ready: r.clone(),
                    failed: f.clone(),
                    clean_start,
                    recovery_points: recovery_points.clone(),
                };
                tasks.push(crate::io::spawn(run_shard(start)));
            }
            let mut all_ok = true;
            for t in tasks {
                all_ok &= t.await;
            }
            if !all_ok || f.is_set() {
                return Exit::Failed("a shard failed".to_string());
            }
            match mark_clean_shutdown(&config.data_dir).await {
                Ok(()) => Exit::Clean,
                Err(e) => Exit::Failed(format!("writing the clean-shutdown marker: {e}")),
            }
        });
        *self.run.borrow_mut() = Some(Run {
            stop,
            ready,
            failed,
            task,
        });
    }

    /// Wait until every shard is ready (partitions open, listening), or the
    /// start failed, or `limit` passed. Ok(false) on timeout.
    pub async fn wait_ready(&self, limit: Duration) -> Result<bool, String> {
        let (ready, failed) = match &*self.run.borrow() {
            Some(r) => (r.ready.clone(), r.failed.clone()),
            None => return Err("the broker is not running".to_string()),
        };
        let ok = crate::io::time::timeout(
            limit,
            futures_lite::future::or(
                async {
                    ready.wait().await;
                    true
                },
                async {
                    failed.wait().await;
                    false
                },
            ),
        )
        .await;
        match ok {
            Some(true) if !failed.is_set() => Ok(true),
            Some(_) => Err("the broker failed to start (see its log)".to_string()),
            None => Ok(false),
        }
    }

    /// Stop cleanly (as SIGTERM does) and wait up to `limit` for the exit.
    /// None: it did not stop in time (a shutdown hang).
    pub async fn stop(&self, limit: Duration) -> Option<Exit> {
        let run = self.run.borrow_mut().take()?;
        run.stop.set();
        let mut task = run.task;
        let r = crate::io::time::timeout(limit, &mut task).await;
        // The process exits: whatever it left running (detached tasks, open
        // connections) goes with it; a hung broker is killed.
        world().kill_node(BROKER_NODE);
        if r.is_none() {
            task.detach();
        }
        r
    }

    /// Crash: every task of the broker's node is dropped at once (kill -9;
    /// the page cache survives).
    pub fn crash(&self) {
        let run = self.run.borrow_mut().take();
        world().kill_node(BROKER_NODE);
        if let Some(r) = run {
            r.task.detach();
        }
    }

    /// Power failure: a crash, then the disk loses what was not durable.
    pub fn power_loss(&self) {
        self.crash();
        world().disk.power_loss();
    }

    /// Whether the running broker's process ended by itself (a failed shard
    /// stops the broker), and how.
    pub fn exited(&self) -> bool {
        match &*self.run.borrow() {
            Some(r) => r.failed.is_set(),
            None => false,
        }
    }
}
