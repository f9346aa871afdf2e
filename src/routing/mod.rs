//! Routing work to the shard that owns it.
//!
//! Requests for a partition owned by another shard travel over the
//! cross-core mesh as [`ShardRequest`]s; the reply comes back the same way
//! and is matched by id. Each shard runs one receive loop per peer. A
//! request's synchronous part (e.g. the append of a produce) runs in that
//! loop in arrival order, so per-connection ordering is preserved; only the
//! wait for completion runs as its own task.

pub mod messages;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

pub use messages::*;

use crate::io::mesh::MeshSender;
use crate::io::sync::{oneshot, OneshotReceiver, OneshotSender};

/// What travels between shards.
pub enum Envelope {
    Request { from: usize, id: u64, req: ShardRequest },
    Response { id: u64, resp: ShardResponse },
}

/// One shard's side of the mesh: sends requests and matches replies.
pub struct Router {
    mesh: MeshSender<Envelope>,
    next_id: Cell<u64>,
    pending: RefCell<HashMap<u64, OneshotSender<ShardResponse>>>,
}

/// A reply that is on its way.
pub type Reply = OneshotReceiver<ShardResponse>;

impl Router {
    pub fn new(mesh: MeshSender<Envelope>) -> Self {
        Router {
            mesh,
            next_id: Cell::new(1),
            pending: RefCell::new(HashMap::new()),
        }
    }

    pub fn me(&self) -> usize {
        self.mesh.me()
    }

    pub fn shards(&self) -> usize {
        self.mesh.shards()
    }

    /// Send a request to another shard. Completes once it is queued there;
    /// the returned [`Reply`] resolves when the answer arrives (None if that
    /// shard went away).
    pub async fn send(&self, shard: usize, req: ShardRequest) -> Reply {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let (tx, rx) = oneshot();
        self.pending.borrow_mut().insert(id, tx);
        let env = Envelope::Request {
            from: self.me(),
            id,
            req,
        };
        crate::metrics::with(|m| m.cross_shard_sent += 1);
        if self.mesh.send_to(shard, env).await.is_err() {
            self.pending.borrow_mut().remove(&id);
        }
        rx
    }

    /// Send a reply back to the shard that asked.
    pub async fn respond(&self, shard: usize, id: u64, resp: ShardResponse) {
        if self.mesh.send_to(shard, Envelope::Response { id, resp }).await.is_err() {
            tracing::debug!(shard, "reply dropped: shard gone");
        }
    }

    /// A reply arrived from a peer.
    pub fn complete(&self, id: u64, resp: ShardResponse) {
        if let Some(tx) = self.pending.borrow_mut().remove(&id) {
            tx.send(resp);
        }
    }

    pub fn close(&self) {
        self.mesh.close();
    }
}
