//! Routing work to the shard that owns it.
//!
//! Requests for a partition owned by another shard travel over the
//! cross-core mesh as [`ShardRequest`]s; the reply comes back the same way
//! and is matched by id. Each shard runs one receive loop per peer. A
//! request's synchronous part (e.g. the append of a produce) runs in that
//! loop in arrival order, so per-connection ordering is preserved; only the
//! wait for completion runs as its own task.
//!
//! A [`Reply`] dropped before its answer came (the request's connection
//! closed, its fetch stopped waiting) tells the serving shard with an
//! [`Envelope::Cancel`], so that a long-running request there (a parked
//! fetch's watch, see [`ShardRequest::is_abortable`]) is dropped too instead
//! of waiting out its time.

pub mod messages;

use crate::io::rand::HashMap;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

pub use messages::*;

use crate::io::mesh::{MeshSender, TrySendError};
use crate::io::notify::Notify;
use crate::io::sync::{oneshot, OneshotReceiver, OneshotSender};

/// What travels between shards.
pub enum Envelope {
    Request {
        from: usize,
        id: u64,
        req: ShardRequest,
    },
    Response {
        id: u64,
        resp: ShardResponse,
    },
    /// Shard `from` no longer wants the answer to its request `id`.
    Cancel {
        from: usize,
        id: u64,
    },
}

struct Inner {
    mesh: MeshSender<Envelope>,
    next_id: Cell<u64>,
    pending: RefCell<HashMap<u64, OneshotSender<ShardResponse>>>,
    /// Cancels that found the peer's queue full, for [`Router::forward_cancels`].
    unsent_cancels: RefCell<Vec<(usize, u64)>>,
    cancels_queued: Notify,
}

/// One shard's side of the mesh: sends requests and matches replies.
pub struct Router {
    inner: Rc<Inner>,
}

impl Router {
    pub fn new(mesh: MeshSender<Envelope>) -> Self {
        Router {
            inner: Rc::new(Inner {
                mesh,
                next_id: Cell::new(1),
                pending: RefCell::new(HashMap::default()),
                unsent_cancels: RefCell::new(Vec::new()),
                cancels_queued: Notify::new(),
            }),
        }
    }

    pub fn me(&self) -> usize {
        self.inner.mesh.me()
    }

    pub fn shards(&self) -> usize {
        self.inner.mesh.shards()
    }

    /// Send a request to another shard. Completes once it is queued there;
    /// the returned [`Reply`] resolves when the answer arrives (None if that
    /// shard went away). Dropping the `Reply` unanswered cancels the request
    /// at the other shard.
    pub async fn send(&self, shard: usize, req: ShardRequest) -> Reply {
        let inner = &self.inner;
        let id = inner.next_id.get();
        inner.next_id.set(id + 1);
        let (tx, rx) = oneshot();
        inner.pending.borrow_mut().insert(id, tx);
        // Dropped while the send below waits for room: the request never
        // left, so only the pending entry goes.
        let mut guard = Unanswered {
            inner: inner.clone(),
            shard,
            id,
            queued: false,
        };
        let env = Envelope::Request {
            from: self.me(),
            id,
            req,
        };
        crate::metrics::with(|m| m.cross_shard_sent += 1);
        if inner.mesh.send_to(shard, env).await.is_ok() {
            guard.queued = true;
        } else {
            // The answer will never come: the receiver resolves to None.
            inner.pending.borrow_mut().remove(&id);
        }
        Reply { rx, guard: Some(guard) }
    }

    /// Send a reply back to the shard that asked.
    pub async fn respond(&self, shard: usize, id: u64, resp: ShardResponse) {
        if self
            .inner
            .mesh
            .send_to(shard, Envelope::Response { id, resp })
            .await
            .is_err()
        {
            tracing::debug!(shard, "reply dropped: shard gone");
        }
    }

    /// A reply arrived from a peer.
    pub fn complete(&self, id: u64, resp: ShardResponse) {
        let tx = self.inner.pending.borrow_mut().remove(&id);
        if let Some(tx) = tx {
            tx.send(resp);
        }
    }

    /// Requests sent and not answered yet (for tests and invariants).
    pub fn pending(&self) -> usize {
        self.inner.pending.borrow().len()
    }

    /// Send the cancels that found a peer's queue full, as room appears.
    /// Runs for the life of the shard (the broker races it with shutdown).
    pub async fn forward_cancels(&self) {
        loop {
            let queued = self.inner.cancels_queued.listen();
            let cancels = std::mem::take(&mut *self.inner.unsent_cancels.borrow_mut());
            for (shard, id) in cancels {
                let from = self.me();
                if self
                    .inner
                    .mesh
                    .send_to(shard, Envelope::Cancel { from, id })
                    .await
                    .is_err()
                {
                    tracing::debug!(shard, "cancel dropped: shard gone");
                }
            }
            if self.inner.unsent_cancels.borrow().is_empty() {
                queued.await;
            }
        }
    }

    pub fn close(&self) {
        self.inner.mesh.close();
    }
}

/// Cancels a request at the other shard when its [`Reply`] is dropped
/// before the answer came.
struct Unanswered {
    inner: Rc<Inner>,
    shard: usize,
    id: u64,
    /// The request reached the other shard's queue.
    queued: bool,
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        let Ok(mut pending) = self.inner.pending.try_borrow_mut() else {
            return;
        };
        if pending.remove(&self.id).is_none() {
            return; // answered (or never sent)
        }
        drop(pending);
        if !self.queued {
            return;
        }
        let cancel = Envelope::Cancel {
            from: self.inner.mesh.me(),
            id: self.id,
        };
        match self.inner.mesh.try_send_to(self.shard, cancel) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                if let Ok(mut q) = self.inner.unsent_cancels.try_borrow_mut() {
                    q.push((self.shard, self.id));
                    drop(q);
                    self.inner.cancels_queued.notify_all();
                }
            }
            Err(TrySendError::Closed(_)) => {}
        }
    }
}

/// A reply that is on its way: resolves to the answer, or None if the other
/// shard went away. Dropping it unanswered cancels the request there.
pub struct Reply {
    rx: OneshotReceiver<ShardResponse>,
    guard: Option<Unanswered>,
}

impl Future for Reply {
    type Output = Option<ShardResponse>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ShardResponse>> {
        let r = Pin::new(&mut self.rx).poll(cx);
        if r.is_ready() {
            // Answered (or the shard is gone): nothing to cancel.
            if let Some(mut g) = self.guard.take() {
                g.queued = false;
            }
        }
        r
    }
}
