//! Process start-up and shutdown: one pinned executor per shard, the mesh
//! between them, metadata loading and the clean-shutdown marker.

use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::config::BrokerConfig;
use crate::io::executor::{start_executor, ExecutorSpec};
use crate::io::mesh::MeshBuilder;
use crate::io::net::Listener;
use crate::metadata::{store, ClusterMeta};
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

fn new_cluster_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Run a broker until SIGINT/SIGTERM.
pub fn run(mut config: BrokerConfig) -> anyhow::Result<()> {
    raise_memlock();
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating {}", config.data_dir.display()))?;
    let _lock = lock_data_dir(&config.data_dir)?;
    let marker = config.data_dir.join(CLEAN_SHUTDOWN_FILE);
    let clean_start = marker.exists();
    if clean_start {
        std::fs::remove_file(&marker)?;
        crate::io::file::sync_dir(&config.data_dir)?;
    }
    let mut meta = match store::load_blocking(&config.data_dir)? {
        Some(m) => m,
        None => ClusterMeta::new(new_cluster_id()),
    };
    meta.fit_to_shards(config.shards);
    store::save_blocking(&config.data_dir, &meta)?;
    config.cluster_id = meta.cluster_id.clone();
    tracing::info!(
        data_dir = %config.data_dir.display(),
        listen = %config.listen,
        shards = config.shards,
        clean_start,
        topics = meta.topics.len(),
        "starting ringlog"
    );

    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    let ready = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicBool::new(false));
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
        let (config, meta, mesh, stop, ready, failed) = (
            config.clone(),
            meta.clone(),
            mesh.clone(),
            stop.clone(),
            ready.clone(),
            failed.clone(),
        );
        threads.push(start_executor(spec, move || async move {
            let r = shard_main(
                id,
                (*config).clone(),
                meta,
                mesh,
                stop.clone(),
                ready,
                failed.clone(),
                clean_start,
            )
            .await;
            if let Err(e) = &r {
                tracing::error!("shard {id} failed: {e:#}");
                failed.store(true, Ordering::SeqCst);
                stop.store(true, Ordering::SeqCst);
            }
            r.is_ok()
        })?);
    }
    let mut all_ok = true;
    for t in threads {
        all_ok &= t.join().unwrap_or(false);
    }
    if all_ok && !failed.load(Ordering::SeqCst) {
        std::fs::write(&marker, b"")?;
        crate::io::file::sync_dir(&config.data_dir)?;
        tracing::info!("clean shutdown complete");
        Ok(())
    } else {
        anyhow::bail!("broker stopped after a shard failure")
    }
}

#[allow(clippy::too_many_arguments)]
async fn shard_main(
    id: usize,
    config: BrokerConfig,
    meta: ClusterMeta,
    mesh: MeshBuilder<Envelope>,
    stop: Arc<AtomicBool>,
    ready: Arc<AtomicUsize>,
    failed: Arc<AtomicBool>,
    clean_start: bool,
) -> anyhow::Result<()> {
    let shards = config.shards;
    let listen = config.listen;
    let (sender, receivers) = mesh.join().await?;
    let shard = Shard::new(id, Rc::new(config), meta, Router::new(sender), clean_start);
    for (_peer, rx) in receivers {
        crate::io::executor::spawn_detached(shard.clone().serve_peer(rx));
    }
    shard.open_owned_partitions().await?;
    let flusher = crate::io::spawn(crate::shard::flusher::run(shard.clone()));
    ready.fetch_add(1, Ordering::SeqCst);
    while ready.load(Ordering::SeqCst) < shards {
        if failed.load(Ordering::SeqCst) {
            anyhow::bail!("another shard failed to start");
        }
        crate::io::time::sleep(Duration::from_millis(2)).await;
    }
    // Consumer groups: creates __consumer_offsets (shard 0), loads, runs timers.
    let groups = crate::io::spawn(crate::shard::groups::run(shard.clone()));
    // Delete retention (retention.ms / retention.bytes) of this shard's logs.
    let retention = crate::io::spawn(crate::shard::retention::run(shard.clone()));
    let listener = Listener::bind(listen).with_context(|| format!("binding {listen}"))?;
    let acceptor = crate::io::spawn(crate::server::accept_loop(shard.clone(), listener));
    if id == 0 {
        if let Some(addr) = shard.config.metrics_listen {
            let l = Listener::bind(addr).with_context(|| format!("binding metrics endpoint {addr}"))?;
            tracing::info!(%addr, "serving Prometheus metrics at /metrics");
            crate::io::executor::spawn_detached(crate::metrics::http::serve(shard.clone(), l));
        }
    }
    {
        let s = shard.clone();
        crate::io::executor::spawn_detached(async move {
            crate::metrics::probe_task_queue_delay(|| s.shutting_down.get()).await
        });
    }
    tracing::info!(shard = id, partitions = shard.partition_count(), "shard ready");
    while !stop.load(Ordering::SeqCst) {
        crate::io::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::info!(shard = id, "shutting down");
    shard.shutting_down.set(true);
    shard.flush_wanted.notify_all();
    drop(groups);
    drop(retention);
    acceptor.await;
    flusher.await;
    crate::shard::flusher::close_logs(&shard).await;
    shard.router.close();
    Ok(())
}
