//! Cross-core channels: a full mesh of bounded single-producer
//! single-consumer queues between shards (glommio's channel mesh, or the
//! simulated one).

use glommio::channels::channel_mesh::{Full, MeshBuilder as GMesh};

use super::guard::filtered;
use super::sim::mesh::SimMesh;

enum BuilderKind<T: Send + 'static> {
    Glommio(GMesh<T, Full>),
    Sim(SimMesh<T>),
}

/// Shared recipe for the mesh; each shard clones it and joins.
pub struct MeshBuilder<T: Send + 'static>(BuilderKind<T>);

impl<T: Send + 'static> Clone for MeshBuilder<T> {
    fn clone(&self) -> Self {
        match &self.0 {
            BuilderKind::Glommio(m) => Self(BuilderKind::Glommio(m.clone())),
            BuilderKind::Sim(m) => Self(BuilderKind::Sim(m.clone())),
        }
    }
}

impl<T: Send + 'static> MeshBuilder<T> {
    /// A mesh between `shards` executors with `capacity` slots per channel.
    pub fn full(shards: usize, capacity: usize) -> Self {
        Self(BuilderKind::Glommio(GMesh::full(shards, capacity)))
    }

    /// A mesh between `shards` shards of a simulated broker.
    pub fn simulated(shards: usize, capacity: usize) -> Self {
        Self(BuilderKind::Sim(SimMesh::new(shards, capacity)))
    }

    /// Join from the current executor as shard `me`. Completes once every
    /// shard joined.
    pub async fn join(self, me: usize) -> anyhow::Result<(MeshSender<T>, Vec<(usize, MeshReceiver<T>)>)> {
        match self.0 {
            BuilderKind::Glommio(m) => {
                let (senders, mut receivers) = m
                    .join()
                    .await
                    .map_err(|e| anyhow::anyhow!("joining the shard mesh failed: {e:?}"))?;
                if senders.peer_id() != me {
                    anyhow::bail!("shard {me} joined the mesh as peer {}", senders.peer_id());
                }
                let streams = receivers
                    .streams()
                    .into_iter()
                    .map(|(peer, rx)| (peer, MeshReceiver(RxKind::Glommio(rx))))
                    .collect();
                Ok((MeshSender(TxKind::Glommio(senders)), streams))
            }
            BuilderKind::Sim(m) => {
                m.join(me).await;
                let n = m.shards();
                let streams = (0..n)
                    .filter(|&p| p != me)
                    .map(|p| {
                        (
                            p,
                            MeshReceiver(RxKind::Sim {
                                mesh: m.clone(),
                                from: p,
                                me,
                            }),
                        )
                    })
                    .collect();
                Ok((MeshSender(TxKind::Sim { mesh: m, me }), streams))
            }
        }
    }
}

enum TxKind<T: Send + 'static> {
    Glommio(glommio::channels::channel_mesh::Senders<T>),
    Sim { mesh: SimMesh<T>, me: usize },
}

/// Sends to any other shard.
pub struct MeshSender<T: Send + 'static>(TxKind<T>);

impl<T: Send + 'static> MeshSender<T> {
    /// This shard's index in the mesh.
    pub fn me(&self) -> usize {
        match &self.0 {
            TxKind::Glommio(s) => s.peer_id(),
            TxKind::Sim { me, .. } => *me,
        }
    }

    /// Number of shards in the mesh.
    pub fn shards(&self) -> usize {
        match &self.0 {
            TxKind::Glommio(s) => s.nr_consumers(),
            TxKind::Sim { mesh, .. } => mesh.shards(),
        }
    }

    /// Send, waiting for room if the peer's queue is full. Fails if the peer
    /// is gone (shutdown) or is this shard; the message is dropped then.
    pub async fn send_to(&self, shard: usize, msg: T) -> Result<(), MeshClosed> {
        match &self.0 {
            TxKind::Glommio(s) => filtered(s.send_to(shard, msg)).await.map_err(|_| MeshClosed(shard)),
            TxKind::Sim { mesh, me } => {
                if shard == *me {
                    return Err(MeshClosed(shard));
                }
                let mut slot = Some(msg);
                futures::future::poll_fn(|cx| mesh.poll_send(*me, shard, &mut slot, cx))
                    .await
                    .map_err(|_| MeshClosed(shard))
            }
        }
    }

    /// Close every outgoing channel (shutdown).
    pub fn close(&self) {
        match &self.0 {
            TxKind::Glommio(s) => s.close(),
            TxKind::Sim { mesh, me } => mesh.close(*me),
        }
    }
}

/// The peer shard cannot receive any more (it shut down).
#[derive(Debug, thiserror::Error)]
#[error("shard {0} is not reachable")]
pub struct MeshClosed(pub usize);

enum RxKind<T: Send + 'static> {
    Glommio(glommio::channels::shared_channel::ConnectedReceiver<T>),
    Sim { mesh: SimMesh<T>, from: usize, me: usize },
}

/// Receives from one peer shard.
pub struct MeshReceiver<T: Send + 'static>(RxKind<T>);

impl<T: Send + 'static> MeshReceiver<T> {
    /// The next message, or None once the peer closed its side.
    pub async fn recv(&self) -> Option<T> {
        match &self.0 {
            RxKind::Glommio(rx) => filtered(rx.recv()).await,
            RxKind::Sim { mesh, from, me } => futures::future::poll_fn(|cx| mesh.poll_recv(*from, *me, cx)).await,
        }
    }
}
