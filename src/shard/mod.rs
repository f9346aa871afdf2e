//! A shard: one core's executor state. It owns the partitions placed on it,
//! a copy of the cluster metadata, its side of the mesh, and the
//! group-commit loop that writes and syncs its partitions' logs.

pub mod checkpoint;
pub mod cleaner;
pub mod controller;
pub mod flusher;
pub mod groups;
pub mod ops;
pub mod quorum;
pub mod retention;
pub mod space;

use crate::io::rand::HashMap;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;

use futures::future::LocalBoxFuture;
use futures::FutureExt;

use crate::config::{BrokerConfig, TopicConfig};
use crate::io::notify::Notify;
use crate::io::sync::{LocalMutex, Semaphore};
use crate::log::PartitionLog;
use crate::metadata::{partition_dir_name, ClusterMeta, MetaUpdate};
use crate::routing::{Router, ShardRequest, ShardResponse};

/// A partition owned by this shard.
pub struct Partition {
    pub topic: String,
    pub index: i32,
    pub log: RefCell<PartitionLog>,
    /// Queued for the group-commit loop.
    pub dirty: Cell<bool>,
    /// Removed (topic deleted): no more appends.
    pub deleted: Cell<bool>,
    /// The log cleaner is rewriting segments: retention waits.
    pub cleaning: Cell<bool>,
    /// The cleaner's first dirty offset (`cleaner-offset-checkpoint`), once
    /// read: `Some(None)` when there is none yet.
    pub cleaner_checkpoint: Cell<Option<Option<i64>>>,
}

impl Partition {
    pub fn new(topic: &str, index: i32, log: PartitionLog) -> Self {
        Partition {
            topic: topic.to_string(),
            index,
            log: RefCell::new(log),
            dirty: Cell::new(false),
            deleted: Cell::new(false),
            cleaning: Cell::new(false),
            cleaner_checkpoint: Cell::new(None),
        }
    }
}

pub type PartitionRef = Rc<Partition>;

pub struct Shard {
    pub id: usize,
    pub config: Rc<BrokerConfig>,
    pub meta: RefCell<ClusterMeta>,
    pub router: Router,
    partitions: RefCell<HashMap<String, Vec<Option<PartitionRef>>>>,
    /// Partitions with staged data, for the group-commit loop.
    dirty: RefCell<Vec<PartitionRef>>,
    pub flush_wanted: Notify,
    /// Serializes controller operations (shard 0 only).
    pub controller_lock: LocalMutex,
    /// This node's controller-quorum voter (shard 0 of a voter in a
    /// multi-node cluster only).
    pub quorum: RefCell<Option<Rc<crate::cluster::quorum_shell::QuorumShell>>>,
    /// Serializes writes of the partitions' log start offset checkpoints.
    pub log_start_lock: LocalMutex,
    /// Held by a recovery-point checkpoint of a partition (plan to done)
    /// and by the cleaner while it swaps segments: a checkpoint never
    /// writes index files planned from segments the cleaner replaced.
    pub segment_swap_lock: LocalMutex,
    pub clean_start: bool,
    pub shutting_down: Cell<bool>,
    /// Notified once when the shard starts shutting down.
    pub shutdown: Notify,
    /// Next producer id to hand out (controller, shard 0).
    pub next_producer_id: Cell<i64>,
    /// The data directory's filesystem, for one syncfs per busy round.
    pub filesystem: Option<crate::io::file::Filesystem>,
    /// Coordinator of the consumer groups whose offsets partitions this shard owns.
    pub groups: groups::Groups,
    /// Free space of the data directory and produce admission.
    pub space: space::SpaceState,
    /// Memory for requests read by this shard's connections
    /// (`queued.max.request.bytes` / shards): a connection reserves a
    /// frame's memory as its bytes arrive (beyond its own small allowance)
    /// and gives it back when the request's handler is done (for produce:
    /// data written to disk). See docs/design/memory.md.
    pub request_budget: Semaphore,
    /// The one frame of this shard that may grow past the request budget
    /// (one unit): a frame that finds the budget full takes it and reads
    /// the rest of itself without further reservation, so frames that each
    /// hold part of the budget cannot wait for each other for ever.
    pub request_overdraft: Semaphore,
    /// Bytes appended to this shard's partitions and not yet written and
    /// synced (same size as the request budget): client produce requests
    /// wait here, in arrival order, before appending, and hold their share
    /// until the data is on disk.
    pub staged_budget: Semaphore,
    /// Recovery points from the checkpoint files, taken by the partitions
    /// as they are opened.
    recovery_points: RefCell<BTreeMap<crate::log::checkpoint::TopicPartition, i64>>,
    /// Fetch requests of this shard's connections that are parked (waiting
    /// for min_bytes or their max_wait_ms).
    pub parked_fetches: Cell<usize>,
    /// Watches parked on this shard's partitions, for fetches of any shard.
    pub parked_watches: Cell<usize>,
    /// Long-running requests from other shards, by (shard, request id), so
    /// that a [`crate::routing::Envelope::Cancel`] can drop them.
    abortable: RefCell<HashMap<(usize, u64), futures::future::AbortHandle>>,
}

/// Counts something parked (a fetch, a watch) for as long as it lives.
pub struct Parked<'a>(&'a Cell<usize>);

impl<'a> Parked<'a> {
    pub fn new(count: &'a Cell<usize>) -> Self {
        count.set(count.get() + 1);
        Parked(count)
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        let n = self.0.get();
        invariant!(n > 0, "a parked fetch or watch left, but none was counted");
        self.0.set(n.saturating_sub(1));
    }
}

impl Shard {
    pub fn new(id: usize, config: Rc<BrokerConfig>, meta: ClusterMeta, router: Router, clean_start: bool) -> Rc<Self> {
        Self::with_recovery_points(id, config, meta, router, clean_start, BTreeMap::new())
    }

    /// A shard whose partitions recover from the given recovery points.
    pub fn with_recovery_points(
        id: usize,
        config: Rc<BrokerConfig>,
        meta: ClusterMeta,
        router: Router,
        clean_start: bool,
        recovery_points: BTreeMap<crate::log::checkpoint::TopicPartition, i64>,
    ) -> Rc<Self> {
        let groups = groups::Groups::new(&config);
        let budget = config.request_budget_per_shard();
        let filesystem = crate::io::file::Filesystem::open(&config.data_dir).ok();
        let storage_space = space::SpaceState::new(&config);
        Rc::new(Shard {
            id,
            config,
            meta: RefCell::new(meta),
            router,
            partitions: RefCell::new(HashMap::default()),
            dirty: RefCell::new(Vec::new()),
            flush_wanted: Notify::new(),
            controller_lock: LocalMutex::default(),
            quorum: RefCell::new(None),
            log_start_lock: LocalMutex::default(),
            segment_swap_lock: LocalMutex::default(),
            clean_start,
            shutting_down: Cell::new(false),
            shutdown: Notify::new(),
            next_producer_id: Cell::new(-1),
            filesystem,
            space: storage_space,
            groups,
            request_budget: Semaphore::new(budget),
            request_overdraft: Semaphore::new(1),
            staged_budget: Semaphore::new(budget),
            recovery_points: RefCell::new(recovery_points),
            parked_fetches: Cell::new(0),
            parked_watches: Cell::new(0),
            abortable: RefCell::new(HashMap::default()),
        })
    }

    pub fn shards(&self) -> usize {
        self.config.shards
    }

    /// Start shutting down: every task waiting on [`Shard::until_shutdown`]
    /// (acceptors, connections, parked fetches) and every waiter on a
    /// partition is woken.
    pub fn begin_shutdown(&self) {
        self.shutting_down.set(true);
        self.shutdown.notify_all();
        self.flush_wanted.notify_all();
        for p in self.all_partitions() {
            p.log.borrow().changed.notify_all();
        }
    }

    /// Completes once the shard is shutting down (at once if it already is).
    pub fn until_shutdown(&self) -> impl std::future::Future<Output = ()> + 'static {
        let listener = self.shutdown.listen();
        let already = self.shutting_down.get();
        async move {
            if !already {
                listener.await;
            }
        }
    }

    /// The partition if this shard owns it.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<PartitionRef> {
        let parts = self.partitions.borrow();
        let v = parts.get(topic)?;
        v.get(usize::try_from(partition).ok()?)?.clone()
    }

    pub fn all_partitions(&self) -> Vec<PartitionRef> {
        self.partitions.borrow().values().flatten().flatten().cloned().collect()
    }

    pub fn partition_count(&self) -> usize {
        self.partitions
            .borrow()
            .values()
            .map(|v| v.iter().flatten().count())
            .sum()
    }

    /// Queue a partition for the next group commit.
    pub fn mark_dirty(&self, p: &PartitionRef) {
        if !p.dirty.replace(true) {
            self.dirty.borrow_mut().push(p.clone());
            self.flush_wanted.notify_all();
        }
    }

    fn take_dirty(&self) -> Vec<PartitionRef> {
        let v = std::mem::take(&mut *self.dirty.borrow_mut());
        for p in &v {
            p.dirty.set(false);
        }
        v
    }

    pub fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.config.data_dir.join(partition_dir_name(topic, partition))
    }

    fn cache_limit_per_partition(&self) -> usize {
        let n = self.partition_count().max(1);
        (self.config.cache_bytes_per_shard / n).max(64 << 10)
    }

    fn rebalance_cache(&self) {
        let limit = self.cache_limit_per_partition();
        for p in self.all_partitions() {
            p.log.borrow_mut().set_cache_limit(limit);
        }
    }

    /// Open (recovering) every partition this shard owns per its metadata.
    pub async fn open_owned_partitions(self: &Rc<Self>) -> anyhow::Result<()> {
        let wanted: Vec<(String, i32, TopicConfig)> = {
            let meta = self.meta.borrow();
            meta.topics
                .values()
                .flat_map(|t| {
                    let cfg = TopicConfig::resolve(&t.configs, &self.config);
                    t.partitions
                        .iter()
                        .enumerate()
                        .filter(|(_, p)| p.shard as usize == self.id)
                        .map(move |(i, _)| (t.name.clone(), i as i32, cfg.clone()))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        for chunk in wanted.chunks(64) {
            let opened =
                futures::future::join_all(chunk.iter().map(|(t, p, cfg)| self.open_partition(t, *p, cfg.clone())))
                    .await;
            for r in opened {
                r?;
            }
        }
        self.rebalance_cache();
        Ok(())
    }

    async fn open_partition(self: &Rc<Self>, topic: &str, partition: i32, cfg: TopicConfig) -> anyhow::Result<()> {
        if self.partition(topic, partition).is_some() {
            return Ok(());
        }
        let dir = self.partition_dir(topic, partition);
        let recovery = crate::log::partition::Recovery {
            clean_shutdown: self.clean_start,
            recovery_point: self
                .recovery_points
                .borrow_mut()
                .remove(&(topic.to_string(), partition)),
            topic_id: self.meta.borrow().topics.get(topic).map(|t| t.id),
        };
        let log = crate::log::partition::open_with(
            &dir,
            topic,
            partition,
            cfg,
            self.config.io_mode,
            recovery,
            crate::io::time::now_ms(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("opening {}: {e}", dir.display()))?;
        let p = Rc::new(Partition::new(topic, partition, log));
        let mut parts = self.partitions.borrow_mut();
        let v = parts.entry(topic.to_string()).or_default();
        let i = partition as usize;
        if v.len() <= i {
            v.resize(i + 1, None);
        }
        v[i] = Some(p);
        Ok(())
    }

    /// Apply a metadata change sent by the controller.
    pub async fn apply(self: &Rc<Self>, update: MetaUpdate) {
        self.meta.borrow_mut().apply(&update);
        match update {
            MetaUpdate::Upsert(t) => {
                let cfg = TopicConfig::resolve(&t.configs, &self.config);
                for (i, p) in t.partitions.iter().enumerate() {
                    if p.shard as usize != self.id {
                        continue;
                    }
                    if let Some(existing) = self.partition(&t.name, i as i32) {
                        existing.log.borrow_mut().config = cfg.clone();
                        continue;
                    }
                    if let Err(e) = self.open_partition(&t.name, i as i32, cfg.clone()).await {
                        tracing::error!("cannot create partition {}-{i}: {e:#}", t.name);
                    }
                }
            }
            MetaUpdate::Delete { name, id } => {
                let removed = self.partitions.borrow_mut().remove(&name).unwrap_or_default();
                let mut aside = Vec::new();
                for p in removed.into_iter().flatten() {
                    p.deleted.set(true);
                    p.log.borrow().changed.notify_all();
                    // Renamed aside durably (Kafka's `-delete` directories),
                    // removed in the background; leftovers go at the next
                    // start. A recreated topic gets a fresh directory.
                    let dir = self.partition_dir(&p.topic, p.index);
                    match crate::log::dirs::set_aside(&self.config.data_dir, &dir, &p.topic, p.index, &id).await {
                        Ok(Some(to)) => aside.push(to),
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!("setting {} aside: {e}; removing it now", dir.display());
                            if let Err(e) = crate::io::fs::remove_dir_all(&dir).await {
                                if e.kind() != std::io::ErrorKind::NotFound {
                                    tracing::warn!("removing {}: {e}", dir.display());
                                }
                            }
                            let _ = crate::io::fs::sync_dir(&self.config.data_dir).await;
                        }
                    }
                }
                if !aside.is_empty() {
                    crate::io::executor::spawn_detached(crate::log::dirs::remove_set_aside(aside));
                }
                groups::on_topics_deleted(self, std::slice::from_ref(&name));
            }
            MetaUpdate::GroupConfigs { group, configs } => groups::on_group_configs(self, &group, &configs),
            MetaUpdate::Brokers(_) => {}
        }
        self.rebalance_cache();
    }

    /// Run a request on this shard. The synchronous part (appends) happens
    /// before this returns; the returned future completes the request.
    pub fn handle(self: &Rc<Self>, req: ShardRequest) -> LocalBoxFuture<'static, ShardResponse> {
        let shard = self.clone();
        match req {
            ShardRequest::Produce {
                parts,
                acks,
                timeout_ms,
            } => ops::produce_request(&shard, parts, acks, timeout_ms)
                .map(ShardResponse::Produce)
                .boxed_local(),
            ShardRequest::Fetch {
                parts,
                max_bytes,
                min_one,
            } => async move { ShardResponse::Fetch(ops::fetch(&shard, parts, max_bytes, min_one).await) }.boxed_local(),
            ShardRequest::Watch(spec) => {
                async move { ShardResponse::Watch(ops::watch(&shard, spec).await) }.boxed_local()
            }
            ShardRequest::ListOffsets { parts } => {
                async move { ShardResponse::ListOffsets(ops::list_offsets(&shard, parts).await) }.boxed_local()
            }
            ShardRequest::Controller(op) => {
                async move { ShardResponse::Controller(controller::run(&shard, op).await) }.boxed_local()
            }
            ShardRequest::Apply(update) => async move {
                shard.apply(update).await;
                ShardResponse::Applied
            }
            .boxed_local(),
            ShardRequest::Group(req) => groups::handle(&shard, req).map(ShardResponse::Group).boxed_local(),
            ShardRequest::AllocateProducerId => {
                async move { ShardResponse::ProducerId(controller::allocate_producer_id(&shard).await) }.boxed_local()
            }
            ShardRequest::Metrics => {
                let snap = shard.local_metrics();
                async move { ShardResponse::Metrics(Box::new(snap)) }.boxed_local()
            }
            ShardRequest::OfflinePartitions => {
                let offline = shard.offline_partitions();
                async move { ShardResponse::OfflinePartitions(offline) }.boxed_local()
            }
            ShardRequest::DeleteRecords { parts } => {
                async move { ShardResponse::DeleteRecords(ops::delete_records(&shard, parts).await) }.boxed_local()
            }
            ShardRequest::PartitionSizes { topics } => {
                let sizes = ops::partition_sizes(&shard, topics.as_deref());
                async move { ShardResponse::PartitionSizes(sizes) }.boxed_local()
            }
        }
    }

    /// (topic, partition) of this shard's partitions whose log is offline.
    pub fn offline_partitions(&self) -> Vec<(String, i32)> {
        self.all_partitions()
            .into_iter()
            .filter(|p| p.log.borrow().is_failed())
            .map(|p| (p.topic.clone(), p.index))
            .collect()
    }

    /// The offline partitions of every shard (a shard that does not answer,
    /// e.g. at shutdown, counts as having none).
    pub async fn offline_partitions_everywhere(self: &Rc<Self>) -> crate::io::rand::HashSet<(String, i32)> {
        let mut replies = Vec::with_capacity(self.shards());
        for s in 0..self.shards() {
            replies.push(self.dispatch(s, ShardRequest::OfflinePartitions).await);
        }
        let mut out = crate::io::rand::HashSet::default();
        for r in replies {
            if let Some(ShardResponse::OfflinePartitions(list)) = r.await {
                out.extend(list);
            }
        }
        out
    }

    /// Send a request to `target` (or run it here when it is this shard).
    /// Completes once the request is queued at the target, in call order;
    /// the returned future yields the reply (None if the shard went away).
    pub async fn dispatch(
        self: &Rc<Self>,
        target: usize,
        req: ShardRequest,
    ) -> LocalBoxFuture<'static, Option<ShardResponse>> {
        if target == self.id {
            self.handle(req).map(Some).boxed_local()
        } else {
            self.router.send(target, req).await.boxed_local()
        }
    }

    /// This shard's metrics, with gauges read now.
    pub fn local_metrics(&self) -> crate::metrics::Snapshot {
        let parts = self.all_partitions();
        let (segments, staged_bytes) = parts.iter().fold((0, 0), |(s, b), p| {
            let log = p.log.borrow();
            (s + log.segment_count(), b + log.staged_bytes())
        });
        crate::metrics::Snapshot {
            shard: self.id,
            metrics: crate::metrics::with(|m| m.clone()),
            partitions: parts.len(),
            segments,
            staged_bytes,
            fetches_parked: self.parked_fetches.get(),
            fetch_watches_parked: self.parked_watches.get(),
            busy: crate::io::executor::executor_busy_time(),
            request_budget_used: self.request_budget.capacity() - self.request_budget.available(),
            request_budget_waiting: self.request_budget.waiting(),
            staged_budget_used: self.staged_budget.capacity() - self.staged_budget.available(),
        }
    }

    /// Snapshots of every shard, for a scrape.
    pub async fn collect_metrics(self: &Rc<Self>) -> Vec<crate::metrics::Snapshot> {
        let mut replies = Vec::with_capacity(self.shards());
        for s in 0..self.shards() {
            replies.push(self.dispatch(s, ShardRequest::Metrics).await);
        }
        let mut out = Vec::with_capacity(replies.len());
        for r in replies {
            if let Some(ShardResponse::Metrics(s)) = r.await {
                out.push(*s);
            }
        }
        out
    }

    /// Serve requests arriving from one peer shard.
    pub async fn serve_peer(self: Rc<Self>, rx: crate::io::mesh::MeshReceiver<crate::routing::Envelope>) {
        use crate::routing::Envelope;
        while let Some(env) = rx.recv().await {
            match env {
                Envelope::Request { from, id, req } => self.serve_remote(from, id, req),
                Envelope::Response { id, resp } => self.router.complete(id, resp),
                Envelope::Cancel { from, id } => self.cancel_remote(from, id),
            }
        }
    }

    /// Start a request from shard `from`; the answer goes back when done.
    /// Long-running ones stay cancellable by (from, id) meanwhile.
    fn serve_remote(self: &Rc<Self>, from: usize, id: u64, req: ShardRequest) {
        let abortable = req.is_abortable();
        let fut = self.handle(req);
        let shard = self.clone();
        if !abortable {
            crate::io::executor::spawn_detached(async move {
                let resp = fut.await;
                shard.router.respond(from, id, resp).await;
            });
            return;
        }
        let (fut, handle) = futures::future::abortable(fut);
        let replaced = self.abortable.borrow_mut().insert((from, id), handle);
        invariant!(
            replaced.is_none(),
            "shard {}: request {id} from shard {from} started twice",
            self.id
        );
        crate::io::executor::spawn_detached(async move {
            let done = fut.await;
            let registered = shard.abortable.borrow_mut().remove(&(from, id)).is_some();
            if let Ok(resp) = done {
                invariant!(
                    registered,
                    "shard {}: request {id} from shard {from} finished but was not registered",
                    shard.id
                );
                shard.router.respond(from, id, resp).await;
            }
        });
    }

    /// The asker dropped its reply: drop the request if it is still running.
    fn cancel_remote(&self, from: usize, id: u64) {
        let handle = self.abortable.borrow_mut().remove(&(from, id));
        if let Some(h) = handle {
            h.abort();
        }
    }

    /// Long-running requests from other shards in progress here.
    pub fn remote_requests_running(&self) -> usize {
        self.abortable.borrow().len()
    }

    /// Forward cancels that found a peer's queue full, until shutdown.
    pub async fn forward_cancels(self: Rc<Self>) {
        futures_lite::future::or(self.router.forward_cancels(), self.until_shutdown()).await;
    }
}
