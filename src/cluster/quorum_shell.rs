//! The controller quorum's shell on shard 0 of a voter
//! (docs/design/replication.md, Sections 5.1–5.6): the thin async part
//! around the pure cores. It ticks the [`RaftNode`], feeds it what the
//! other voters sent over the controller listener, and carries out each
//! [`Output`] in order: persist ([`RaftDisk`], fsynced), send (one queue
//! and one connection per peer voter), apply committed batches to the
//! [`MetadataImage`]. The voter that leads, once it has applied every entry
//! of earlier terms, runs the active controller ([`QuorumController`]):
//! BrokerRegistration and BrokerHeartbeat come to it, its decisions are
//! proposed as record batches and answered once committed.
//!
//! What the image says reaches the shards as `MetaUpdate`s (today the
//! broker table; topics follow with placement across brokers).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::AsyncWriteExt;
use raft::eraftpb::{Entry, Message};

use super::raft_log::RaftDisk;
use super::raft_node::{RaftNode, Timing};
use super::status::{QuorumStatus, ReplicaStatus};
use crate::io::notify::Notify;
use crate::io::sync::{oneshot, LocalMutex, OneshotSender};
use crate::io::time::now_ms;
use crate::metadata::image::MetadataImage;
use crate::metadata::quorum::{ControllerSettings, Decision, QuorumController};
use crate::metadata::records::{decode_batch, encode_batch};
use crate::metadata::BrokerMeta;
use crate::protocol::error::{self as ec, ApiError};

/// Messages waiting for one peer beyond this are dropped, oldest first
/// (raft sends again what matters).
const OUTBOX_LIMIT: usize = 4096;

/// How long a decision waits for its entry to commit.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// The controller ticks its session timers every this many raft ticks.
const CONTROLLER_TICK_EVERY: u64 = 5;

struct Outbox {
    addr: SocketAddr,
    queue: RefCell<VecDeque<Message>>,
    ready: Notify,
}

struct State {
    node: RaftNode,
    image: MetadataImage,
    applied: u64,
    controller: Option<QuorumController>,
    /// (raft index, term) of a proposed batch → who waits for its commit.
    pending: BTreeMap<(u64, u64), OneshotSender<()>>,
    /// Wall-clock ms of the last message from each peer voter.
    heard: BTreeMap<u64, i64>,
}

pub struct QuorumShell {
    me: u64,
    cluster_id: String,
    settings: ControllerSettings,
    tick: Duration,
    state: RefCell<State>,
    disk: RefCell<Option<RaftDisk>>,
    /// One drive at a time: persist, send and apply stay in raft's order.
    driving: LocalMutex,
    outboxes: BTreeMap<u64, Rc<Outbox>>,
    /// Set when the raft log cannot be persisted: this voter stops taking
    /// part (as if it had crashed) rather than vote on what it lost.
    dead: Cell<bool>,
    /// The broker table last handed to the shards.
    published: RefCell<Option<BTreeMap<i32, BrokerMeta>>>,
    /// Woken when the broker table changes.
    pub brokers_changed: Notify,
    /// Woken when entries are applied.
    pub applied_changed: Notify,
}

/// What a voter needs to start its part of the quorum.
pub struct QuorumSpec {
    pub me: i32,
    pub cluster_id: String,
    /// Every voter's id and controller address (this one included).
    pub voters: Vec<(i32, SocketAddr)>,
    pub data_dir: std::path::PathBuf,
    pub election_timeout_ms: u64,
    pub tick_ms: u64,
    pub settings: ControllerSettings,
}

/// The directory of the metadata log (Kafka's name).
pub const METADATA_DIR: &str = "__cluster_metadata-0";

impl QuorumShell {
    /// Recover the raft log and start the voter's tasks (ticks, one sender
    /// per peer). Call on shard 0.
    pub async fn start(spec: QuorumSpec) -> anyhow::Result<Rc<QuorumShell>> {
        let ids: Vec<u64> = spec.voters.iter().map(|(id, _)| *id as u64).collect();
        let (disk, store) = RaftDisk::open(&spec.data_dir.join(METADATA_DIR), &ids).await?;
        let timing = Timing::from_ms(spec.election_timeout_ms, spec.tick_ms);
        let seed = crate::io::rand::uuid_v4().as_u128() as u64;
        let node = RaftNode::new(spec.me as u64, store, 0, timing, seed)?;
        let outboxes = spec
            .voters
            .iter()
            .filter(|(id, _)| *id != spec.me)
            .map(|(id, addr)| {
                (
                    *id as u64,
                    Rc::new(Outbox {
                        addr: *addr,
                        queue: RefCell::new(VecDeque::new()),
                        ready: Notify::new(),
                    }),
                )
            })
            .collect();
        let shell = Rc::new(QuorumShell {
            me: spec.me as u64,
            cluster_id: spec.cluster_id,
            settings: spec.settings,
            tick: Duration::from_millis(spec.tick_ms.max(1)),
            state: RefCell::new(State {
                node,
                image: MetadataImage::new(),
                applied: 0,
                controller: None,
                pending: BTreeMap::new(),
                heard: BTreeMap::new(),
            }),
            disk: RefCell::new(Some(disk)),
            driving: LocalMutex::default(),
            outboxes,
            dead: Cell::new(false),
            published: RefCell::new(None),
            brokers_changed: Notify::new(),
            applied_changed: Notify::new(),
        });
        for (peer, out) in &shell.outboxes {
            crate::io::executor::spawn_detached(shell.clone().send_loop(*peer, out.clone()));
        }
        crate::io::executor::spawn_detached(shell.clone().tick_loop());
        // Entries committed before a restart are applied again.
        shell.drive().await;
        Ok(shell)
    }

    pub fn node_id(&self) -> i32 {
        self.me as i32
    }

    pub fn is_dead(&self) -> bool {
        self.dead.get()
    }

    /// The leader this voter knows of.
    pub fn leader(&self) -> Option<i32> {
        self.state.borrow().node.leader_id().map(|l| l as i32)
    }

    /// The offset of the last record applied to this voter's image (−1:
    /// none).
    pub fn applied_offset(&self) -> i64 {
        self.state.borrow().image.offset
    }

    /// A copy of the committed image.
    pub fn image(&self) -> MetadataImage {
        self.state.borrow().image.clone()
    }

    /// The broker table clients should see, once the image has one.
    pub fn brokers(&self) -> Option<BTreeMap<i32, BrokerMeta>> {
        self.published.borrow().clone()
    }

    async fn tick_loop(self: Rc<Self>) {
        let mut n: u64 = 0;
        while !self.dead.get() {
            crate::io::time::sleep(self.tick).await;
            self.state.borrow_mut().node.tick();
            n += 1;
            if n.is_multiple_of(CONTROLLER_TICK_EVERY) {
                self.controller_tick();
            }
            self.drive().await;
        }
    }

    /// Raft messages from another voter.
    pub async fn receive(self: &Rc<Self>, msgs: Vec<Message>) {
        if self.dead.get() {
            return;
        }
        {
            let mut st = self.state.borrow_mut();
            let now = now_ms();
            for m in msgs {
                if m.to != self.me || !self.outboxes.contains_key(&m.from) {
                    tracing::debug!(from = m.from, to = m.to, "raft message not for this voter; dropped");
                    continue;
                }
                st.heard.insert(m.from, now);
                if let Err(e) = st.node.step(m) {
                    tracing::debug!("raft step: {e}");
                }
            }
        }
        self.drive().await;
    }

    /// Persist, send and apply whatever raft has ready, until nothing is.
    pub async fn drive(self: &Rc<Self>) {
        let Some(_turn) = self.driving.lock().await else {
            return;
        };
        while !self.dead.get() {
            let out = match self.state.borrow_mut().node.ready() {
                Ok(Some(out)) => out,
                Ok(None) => break,
                Err(e) => {
                    tracing::error!("raft: {e}");
                    break;
                }
            };
            if out.must_persist() {
                let Some(mut disk) = self.disk.borrow_mut().take() else {
                    break;
                };
                let r = disk.persist(&out).await;
                *self.disk.borrow_mut() = Some(disk);
                if let Err(e) = r {
                    tracing::error!(
                        "cannot persist the metadata log: {e}; this controller stops taking part in the quorum"
                    );
                    self.dead.set(true);
                    self.state.borrow_mut().pending.clear();
                    break;
                }
            }
            for m in out.messages {
                self.send(m);
            }
            self.apply(&out.committed);
        }
        self.after_drive();
    }

    fn send(&self, m: Message) {
        let Some(out) = self.outboxes.get(&m.to) else {
            return;
        };
        let mut q = out.queue.borrow_mut();
        if q.len() >= OUTBOX_LIMIT {
            q.pop_front();
        }
        q.push_back(m);
        drop(q);
        out.ready.notify_all();
    }

    fn apply(&self, committed: &[Entry]) {
        if committed.is_empty() {
            return;
        }
        let mut st = self.state.borrow_mut();
        for e in committed {
            if !e.data.is_empty() {
                match decode_batch(&e.data) {
                    Ok(batch) => {
                        for r in &batch {
                            let at = st.image.offset + 1;
                            if let Err(err) = st.image.apply(at, r) {
                                // The controller only proposes what its
                                // image takes: this is a bug, not input.
                                tracing::error!(index = e.index, "a committed metadata record does not apply: {err}");
                            }
                        }
                    }
                    Err(err) => tracing::error!(index = e.index, "a committed metadata entry does not decode: {err}"),
                }
            }
            st.applied = e.index;
            // Decisions waiting on this index: answered if their entry is
            // the one committed; dropped (not committed) otherwise.
            let keys: Vec<(u64, u64)> = st.pending.range(..=(e.index, u64::MAX)).map(|(k, _)| *k).collect();
            for k in keys {
                if let Some(tx) = st.pending.remove(&k) {
                    if k == (e.index, e.term) {
                        tx.send(());
                    }
                }
            }
        }
        drop(st);
        self.applied_changed.notify_all();
    }

    /// Start or stop the active controller, and publish the broker table.
    fn after_drive(self: &Rc<Self>) {
        let mut bootstrap = false;
        {
            let mut st = self.state.borrow_mut();
            if !st.node.is_leader() || self.dead.get() {
                st.controller = None;
            } else if st.controller.is_none() && st.node.committed_in_term() && st.applied == st.node.commit_index() {
                tracing::info!(
                    node = self.me,
                    term = st.node.term(),
                    offset = st.image.offset,
                    "this node is the active controller"
                );
                st.controller = Some(QuorumController::new(self.settings.clone(), &st.image, now_ms()));
                bootstrap = st.image.cluster_id.is_none();
            }
        }
        if bootstrap {
            let me = self.clone();
            let cluster_id = self.cluster_id.clone();
            crate::io::executor::spawn_detached(async move {
                if let Err(e) = me.decide(|c, _| c.bootstrap(&cluster_id)).await {
                    tracing::warn!("bootstrapping the metadata log: {}", e.message());
                }
            });
        }
        let brokers = {
            let st = self.state.borrow();
            st.image.cluster_id.as_ref().map(|_| st.image.broker_metas())
        };
        if brokers.is_some() && *self.published.borrow() != brokers {
            *self.published.borrow_mut() = brokers;
            self.brokers_changed.notify_all();
        }
    }

    fn controller_tick(self: &Rc<Self>) {
        let records = {
            let mut st = self.state.borrow_mut();
            let Some(c) = st.controller.as_mut() else {
                return;
            };
            match c.tick(now_ms()) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("controller tick: {}", e.message());
                    return;
                }
            }
        };
        if !records.is_empty() {
            let me = self.clone();
            crate::io::executor::spawn_detached(async move {
                if let Err(e) = me.propose(records, ()).await {
                    tracing::debug!("controller tick records: {}", e.message());
                }
            });
        }
    }

    /// Have the active controller decide `f`, and answer once the records
    /// it decided are committed. NOT_CONTROLLER when this voter is not the
    /// active controller (or stops being it before the commit).
    pub async fn decide<T>(
        self: &Rc<Self>,
        f: impl FnOnce(&mut QuorumController, i64) -> Result<Decision<T>, ApiError>,
    ) -> Result<T, ApiError> {
        let d = {
            let mut st = self.state.borrow_mut();
            let Some(c) = st.controller.as_mut() else {
                return Err(self.not_controller(st.node.leader_id()));
            };
            f(c, now_ms())?
        };
        self.propose(d.records, d.reply).await
    }

    async fn propose<T>(
        self: &Rc<Self>,
        records: Vec<crate::metadata::records::Record>,
        reply: T,
    ) -> Result<T, ApiError> {
        if records.is_empty() {
            return Ok(reply);
        }
        let rx = {
            let mut st = self.state.borrow_mut();
            let index = st.node.last_index() + 1;
            let term = st.node.term();
            if let Err(e) = st.node.propose(encode_batch(&records)) {
                // The working image holds records raft did not take: a new
                // controller starts from the committed image.
                st.controller = None;
                tracing::debug!("proposal refused: {e}");
                return Err(self.not_controller(st.node.leader_id()));
            }
            let (tx, rx) = oneshot();
            st.pending.insert((index, term), tx);
            rx
        };
        self.drive().await;
        match crate::io::time::timeout(COMMIT_TIMEOUT, rx).await {
            Some(Some(())) => Ok(reply),
            Some(None) => Err(self.not_controller(self.state.borrow().node.leader_id())),
            None => Err(ApiError::with_message(
                ec::REQUEST_TIMED_OUT,
                "the metadata change did not commit in time (is a majority of the controllers up?)",
            )),
        }
    }

    fn not_controller(&self, leader: Option<u64>) -> ApiError {
        ApiError::with_message(
            ec::NOT_CONTROLLER,
            match leader {
                Some(l) => format!(
                    "node {} is not the active controller; node {l} leads the quorum",
                    self.me
                ),
                None => format!(
                    "node {} is not the active controller; the quorum has no leader now",
                    self.me
                ),
            },
        )
    }

    /// Wait until this voter has applied the metadata log up to `offset`
    /// (or `within` passed): true when it has.
    pub async fn wait_applied(&self, offset: i64, within: Duration) -> bool {
        let until = crate::io::time::Instant::now().add(within);
        loop {
            let wake = self.applied_changed.listen();
            if self.applied_offset() >= offset {
                return true;
            }
            if crate::io::time::timeout(until.remaining(), wake).await.is_none() {
                return self.applied_offset() >= offset;
            }
        }
    }

    /// The quorum as this voter sees it (DescribeQuorum).
    pub fn status(&self) -> QuorumStatus {
        let st = self.state.borrow();
        let node = &st.node;
        let now = now_ms();
        let leader = node.leader_id().map_or(-1, |l| l as i32);
        let last = node.last_index() as i64;
        let mut voters = vec![ReplicaStatus {
            node_id: self.me as i32,
            log_end_offset: last,
            last_fetch_timestamp: if node.is_leader() { now } else { -1 },
            last_caught_up_timestamp: if node.is_leader() { now } else { -1 },
        }];
        for peer in self.outboxes.keys() {
            let (end, heard) = if node.is_leader() {
                (
                    node.match_index(*peer).map_or(-1, |m| m as i64),
                    st.heard.get(peer).copied().unwrap_or(-1),
                )
            } else {
                (-1, -1)
            };
            voters.push(ReplicaStatus {
                node_id: *peer as i32,
                log_end_offset: end,
                last_fetch_timestamp: heard,
                last_caught_up_timestamp: if end == last { heard } else { -1 },
            });
        }
        voters.sort_by_key(|v| v.node_id);
        QuorumStatus {
            node_id: self.me as i32,
            leader_id: leader,
            leader_epoch: node.term() as i32,
            high_watermark: node.commit_index() as i64,
            voters,
            observers: Vec::new(),
        }
    }

    /// One peer's sender: batches what is queued into `RaftMessages`
    /// frames over one connection, reconnecting when it breaks. What cannot
    /// be sent is dropped and the peer reported unreachable (raft sends it
    /// again).
    async fn send_loop(self: Rc<Self>, peer: u64, out: Rc<Outbox>) {
        let mut conn: Option<crate::io::net::WriteHalf> = None;
        let mut corr: i32 = 0;
        while !self.dead.get() {
            let wake = out.ready.listen();
            if out.queue.borrow().is_empty() {
                wake.await;
                continue;
            }
            if conn.is_none() {
                match crate::io::time::timeout(super::rpc::CALL_TIMEOUT, crate::io::net::connect(out.addr)).await {
                    Some(Ok(c)) => {
                        let (_read, write) = c.split();
                        conn = Some(write);
                    }
                    _ => {
                        out.queue.borrow_mut().clear();
                        self.state.borrow_mut().node.report_unreachable(peer);
                        crate::io::time::sleep(self.tick * 2).await;
                        continue;
                    }
                }
            }
            let batch: Vec<Message> = {
                let mut q = out.queue.borrow_mut();
                let mut size = 0usize;
                let mut batch = Vec::new();
                while let Some(m) = q.front() {
                    let n = protobuf::Message::compute_size(m) as usize;
                    if !batch.is_empty() && size + n > super::rpc::MAX_RAFT_BATCH {
                        break;
                    }
                    size += n;
                    if let Some(m) = q.pop_front() {
                        batch.push(m);
                    }
                }
                batch
            };
            let bytes = match super::raft_codec::encode(&batch) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!("encoding raft messages: {e}");
                    continue;
                }
            };
            corr = corr.wrapping_add(1);
            let frame = super::rpc::raft_frame(corr, &bytes);
            let Some(w) = conn.as_mut() else { continue };
            let sent = crate::io::time::timeout(super::rpc::CALL_TIMEOUT, async {
                w.write_all(&frame).await?;
                w.flush().await
            })
            .await;
            if !matches!(sent, Some(Ok(()))) {
                tracing::debug!(peer, "raft connection to {} lost", out.addr);
                conn = None;
                self.state.borrow_mut().node.report_unreachable(peer);
            }
        }
    }
}
