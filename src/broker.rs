//! Process start-up and shutdown: one pinned executor per shard, the mesh
//! between them, metadata loading and the clean-shutdown marker.

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use anyhow::Context;

use crate::cluster::identity;
use crate::config::BrokerConfig;
use crate::io::executor::{start_executor, ExecutorSpec};
use crate::io::mesh::MeshBuilder;
use crate::io::net::Listener;
use crate::io::signal::{Countdown, Flag};
use crate::log::checkpoint::TopicPartition;
use crate::metadata::{store, BrokerMeta, ClusterMeta};
use crate::routing::{Envelope, Router};
use crate::shard::Shard;

const CLEAN_SHUTDOWN_FILE: &str = ".clean-shutdown";
const LOCK_FILE: &str = ".lock";

/// Raise RLIMIT_MEMLOCK as far as allowed: io_uring buffers are locked.
fn raise_memlock() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) == 0 {
            let want = libc::rlimit {
                rlim_cur: libc::RLIM_INFINITY,
                rlim_max: libc::RLIM_INFINITY,
            };
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &want) != 0 {
                lim.rlim_cur = lim.rlim_max;
                libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim);
            }
        }
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Hold an exclusive lock on the data dir for the life of the process.
fn lock_data_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))
        .with_context(|| format!("opening lock file in {}", dir.display()))?;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        anyhow::bail!("data dir {} is in use by another broker", dir.display());
    }
    Ok(f)
}

/// Fail if another live process listens on `addr`. Every shard binds the
/// client port with SO_REUSEPORT, and Linux lets any socket of the same
/// user that also sets it share the port: a second broker started on the
/// port of a running one would silently get half of its connections (with
/// other data); Kafka's own start fails instead. Neither a plain bind nor a
/// connect tells: after a kill -9 the dead broker's connections hold the
/// port, and its listening socket outlives the process until the kernel has
/// torn its io_uring down. So this looks for a listening socket on the
/// address that a live process holds (see [`crate::io::net::live_listener`]).
fn probe_free(addr: std::net::SocketAddr, what: &str) -> anyhow::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    match crate::io::net::live_listener(addr) {
        Some((pid, name)) => anyhow::bail!(
            "{addr} ({what}) is already in use by process {pid} ({name}); stop it or choose another address"
        ),
        None => Ok(()),
    }
}

/// What start-up found in the data directory.
pub struct Prepared {
    pub meta: ClusterMeta,
    /// The previous run shut down cleanly (its marker file was there).
    pub clean_start: bool,
    /// Recovery points from the checkpoint files (see
    /// [`crate::shard::checkpoint::load_recovery_points`]).
    pub recovery_points: BTreeMap<TopicPartition, i64>,
}

/// Prepare the data directory: create it durably, consume the clean-shutdown
/// marker, load (or create) the cluster metadata and fit it to the shard
/// count. Runs on the main thread before the shards start (or inside a
/// simulation).
pub async fn prepare(config: &mut BrokerConfig) -> anyhow::Result<Prepared> {
    let dir = config.data_dir.clone();
    crate::io::fs::create_dir_durable(&dir)
        .await
        .with_context(|| format!("creating {}", dir.display()))?;
    let marker = dir.join(CLEAN_SHUTDOWN_FILE);
    let clean_start = crate::io::fs::exists(&marker).await;
    if clean_start {
        crate::io::fs::remove_file(&marker).await?;
    }
    // After a crash, entries created just before it (partition directories,
    // files) may be visible from the page cache without being durable: sync
    // them before anything is written into them and acknowledged.
    crate::io::fs::sync_dir(&dir).await?;
    // The directory's identity (meta.properties) and its metadata must
    // agree on the cluster, and the directory must be this node's.
    let props = identity::load(&dir).await?;
    let stored = store::load(&dir).await?;
    let cluster_id = identity::reconcile(
        config.node_id,
        stored.as_ref().map(|m| m.cluster_id.as_str()),
        props.as_ref(),
        config.cluster.cluster_id.as_deref(),
    )?;
    if props.is_none() {
        let props = identity::MetaProperties {
            cluster_id: cluster_id.clone(),
            node_id: config.node_id,
            directory_id: identity::new_directory_id(),
        };
        identity::store(&dir, &props)
            .await
            .with_context(|| format!("writing {}", identity::path(&dir).display()))?;
    }
    let mut meta = stored.unwrap_or_else(|| ClusterMeta::new(cluster_id));
    meta.fit_to_shards(config.shards);
    // Until the controller quorum exists (issue 10, M2) every node is a
    // cluster of one: it is the only broker and leads every partition.
    meta.adopt_single_node(BrokerMeta {
        id: config.node_id,
        host: config.advertised_host.clone(),
        port: config.advertised_port,
        rack: config.cluster.rack.clone(),
        fenced: false,
    });
    store::save(&dir, &meta).await?;
    config.cluster_id = meta.cluster_id.clone();
    // Partition directories of deleted topics whose removal a stop cut short.
    crate::log::dirs::remove_set_aside(crate::log::dirs::list_set_aside(&dir).await).await;
    let recovery_points = crate::shard::checkpoint::load_recovery_points(&dir, &meta, config.shards)
        .await
        .with_context(|| format!("recovery point checkpoints in {}", dir.display()))?;
    Ok(Prepared {
        meta,
        clean_start,
        recovery_points,
    })
}

/// Leave the marker that tells the next start the logs were closed cleanly.
pub async fn mark_clean_shutdown(data_dir: &Path) -> std::io::Result<()> {
    crate::io::file::write_file_atomic(&data_dir.join(CLEAN_SHUTDOWN_FILE), b"").await
}

/// Run a broker until SIGINT/SIGTERM.
pub fn run(mut config: BrokerConfig) -> anyhow::Result<()> {
    raise_memlock();
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating {}", config.data_dir.display()))?;
    let _lock = lock_data_dir(&config.data_dir)?;
    // Before recovery, which can take a while: a port held by another
    // process is an error now, not after minutes, and not a silent share.
    probe_free(config.listen, "the client listener (--listen)")?;
    if let Some(addr) = config.metrics_listen {
        probe_free(addr, "the metrics endpoint (--metrics-listen)")?;
    }
    let Prepared {
        meta,
        clean_start,
        recovery_points,
    } = futures::executor::block_on(prepare(&mut config))?;
    if !config.cluster.single_node() {
        if let Some(addr) = config.cluster.controller_listen {
            probe_free(addr, "the controller listener (--controller-listen)")?;
        }
        tracing::warn!(
            node_id = config.node_id,
            voters = config.cluster.voters.len(),
            "ringlog.cluster.experimental: the controller quorum runs and brokers register, \
             but topics stay on the node that created them (replication is not implemented yet)"
        );
    }
    tracing::info!(
        node_id = config.node_id,
        cluster_id = %meta.cluster_id,
        data_dir = %config.data_dir.display(),
        listen = %config.listen,
        shards = config.shards,
        clean_start,
        topics = meta.topics.len(),
        "starting ringlog"
    );

    let stall_ms = config.prop_i64("ringlog.stall.detector.ms", 0);
    crate::io::executor::set_stall_detection((stall_ms > 0).then(|| std::time::Duration::from_millis(stall_ms as u64)));
    let stop = Flag::new();
    stop.set_on_termination_signals()?;
    let ready = Countdown::new(config.shards);
    let failed = Flag::new();
    let mesh: MeshBuilder<Envelope> = MeshBuilder::full(config.shards, 1024);
    let cpus: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    let pin = config.shards <= cpus.len();
    let config = Arc::new(config);
    let mut threads = Vec::new();
    for id in 0..config.shards {
        let spec = ExecutorSpec {
            name: format!("shard-{id}"),
            cpu: if pin { cpus.get(id).copied() } else { None },
            io_memory: 2 << 20,
            spin_before_park: None,
        };
        let start = ShardStart {
            id,
            config: (*config).clone(),
            meta: meta.clone(),
            mesh: mesh.clone(),
            stop: stop.clone(),
            ready: ready.clone(),
            failed: failed.clone(),
            clean_start,
            recovery_points: recovery_points.clone(),
        };
        threads.push(start_executor(spec, move || run_shard(start))?);
    }
    let mut all_ok = true;
    for t in threads {
        all_ok &= t.join().unwrap_or(false);
    }
    if all_ok && !failed.is_set() {
        futures::executor::block_on(mark_clean_shutdown(&config.data_dir))?;
        tracing::info!("clean shutdown complete");
        Ok(())
    } else {
        anyhow::bail!("broker stopped after a shard failure")
    }
}

/// Everything a shard needs to start.
pub struct ShardStart {
    pub id: usize,
    pub config: BrokerConfig,
    pub meta: ClusterMeta,
    pub mesh: MeshBuilder<Envelope>,
    /// Set to stop the broker (signals; a failed shard sets it too).
    pub stop: Flag,
    /// Counted down by each shard once its partitions are open.
    pub ready: Countdown,
    /// Set when a shard fails.
    pub failed: Flag,
    pub clean_start: bool,
    /// Recovery points of every partition (each shard takes its own).
    pub recovery_points: BTreeMap<TopicPartition, i64>,
}

/// Run one shard until the broker stops; true if it stopped cleanly.
pub async fn run_shard(start: ShardStart) -> bool {
    let (id, stop, failed) = (start.id, start.stop.clone(), start.failed.clone());
    let r = shard_main(start).await;
    if let Err(e) = &r {
        tracing::error!("shard {id} failed: {e:#}");
        failed.set();
        stop.set();
    }
    r.is_ok()
}

async fn shard_main(start: ShardStart) -> anyhow::Result<()> {
    let ShardStart {
        id,
        config,
        meta,
        mesh,
        stop,
        ready,
        failed,
        clean_start,
        recovery_points,
    } = start;
    let listen = config.listen;
    tracing::debug!(shard = id, "joining the shard mesh");
    let (sender, receivers) = mesh.join(id).await?;
    tracing::debug!(shard = id, "joined the shard mesh");
    let shard = Shard::with_recovery_points(
        id,
        Rc::new(config),
        meta,
        Router::new(sender),
        clean_start,
        recovery_points,
    );
    for (_peer, rx) in receivers {
        crate::io::executor::spawn_detached(shard.clone().serve_peer(rx));
    }
    crate::io::executor::spawn_detached(shard.clone().forward_cancels());
    if id == 0 {
        let mode = crate::io::file::effective_mode(&shard.config.data_dir, shard.config.io_mode).await;
        tracing::info!(
            "storage io mode: requested={} effective={} dir={}",
            shard.config.io_mode.as_str(),
            mode.as_str(),
            shard.config.data_dir.display()
        );
    }
    shard.open_owned_partitions().await?;
    tracing::debug!(shard = id, "partitions open");
    let flusher = crate::io::spawn(crate::shard::flusher::run(shard.clone()));
    let checkpointer = crate::io::spawn(crate::shard::checkpoint::run(shard.clone()));
    let space = crate::io::spawn(crate::shard::space::run(shard.clone()));
    ready.count_down();
    futures_lite::future::or(ready.wait(), async {
        failed.wait().await;
    })
    .await;
    if failed.is_set() {
        anyhow::bail!("another shard failed to start");
    }
    tracing::debug!(shard = id, "every shard is ready");
    // Consumer groups: creates __consumer_offsets (shard 0), loads, runs timers.
    let groups = crate::io::spawn(crate::shard::groups::run(shard.clone()));
    // Delete retention (retention.ms / retention.bytes) of this shard's logs.
    let retention = crate::io::spawn(crate::shard::retention::run(shard.clone()));
    // Compaction of this shard's compacted logs, in its own task queue.
    let cleaner = crate::shard::cleaner::start(&shard);
    let listener = Listener::bind(listen).with_context(|| format!("binding {listen}"))?;
    let acceptor = crate::io::spawn(crate::server::accept_loop(shard.clone(), listener));
    let mut cluster = Vec::new();
    if id == 0 && !shard.config.cluster.single_node() {
        cluster = crate::shard::quorum::start(&shard).await?;
    }
    let mut metrics = None;
    if id == 0 {
        if let Some(addr) = shard.config.metrics_listen {
            let l = Listener::bind(addr).with_context(|| format!("binding metrics endpoint {addr}"))?;
            tracing::info!(%addr, "serving Prometheus metrics at /metrics");
            metrics = Some(crate::io::spawn(crate::metrics::http::serve(shard.clone(), l)));
        }
    }
    let probe = {
        let s = shard.clone();
        crate::io::spawn(async move { crate::metrics::probe_task_queue_delay(&s).await })
    };
    tracing::info!(shard = id, partitions = shard.partition_count(), "shard ready");
    stop.wait().await;
    tracing::info!(shard = id, "shutting down");
    shard.begin_shutdown();
    drop(groups);
    drop(retention);
    // A cleaning cut short here is finished or discarded by the next start
    // (see crate::log::partition::swap).
    drop(cleaner);
    drop(probe);
    drop(metrics);
    drop(cluster);
    drop(space);
    acceptor.await;
    flusher.await;
    checkpointer.await;
    crate::shard::flusher::close_logs(&shard).await;
    crate::shard::checkpoint::at_shutdown(&shard).await;
    shard.router.close();
    Ok(())
}
