//! Cross-core channels: a full mesh of bounded single-producer
//! single-consumer queues between shards (glommio's channel mesh).

use glommio::channels::channel_mesh::{Full, MeshBuilder as GMesh};

/// Shared recipe for the mesh; each shard clones it and joins.
pub struct MeshBuilder<T: Send + 'static>(GMesh<T, Full>);

impl<T: Send + 'static> Clone for MeshBuilder<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T: Send + 'static> MeshBuilder<T> {
    /// A mesh between `shards` executors with `capacity` slots per channel.
    pub fn full(shards: usize, capacity: usize) -> Self {
        Self(GMesh::full(shards, capacity))
    }

    /// Join from the current executor. Completes once every shard joined.
    pub async fn join(self) -> anyhow::Result<(MeshSender<T>, Vec<(usize, MeshReceiver<T>)>)> {
        let (senders, mut receivers) = self
            .0
            .join()
            .await
            .map_err(|e| anyhow::anyhow!("joining the shard mesh failed: {e:?}"))?;
        let streams = receivers
            .streams()
            .into_iter()
            .map(|(peer, rx)| (peer, MeshReceiver(rx)))
            .collect();
        Ok((MeshSender(senders), streams))
    }
}

/// Sends to any other shard.
pub struct MeshSender<T: Send + 'static>(glommio::channels::channel_mesh::Senders<T>);

impl<T: Send + 'static> MeshSender<T> {
    /// This shard's index in the mesh.
    pub fn me(&self) -> usize {
        self.0.peer_id()
    }

    /// Number of shards in the mesh.
    pub fn shards(&self) -> usize {
        self.0.nr_consumers()
    }

    /// Send, waiting for room if the peer's queue is full. Fails if the peer
    /// is gone (shutdown) or is this shard; the message is dropped then.
    pub async fn send_to(&self, shard: usize, msg: T) -> Result<(), MeshClosed> {
        self.0.send_to(shard, msg).await.map_err(|_| MeshClosed(shard))
    }

    /// Close every outgoing channel (shutdown).
    pub fn close(&self) {
        self.0.close();
    }
}

/// The peer shard cannot receive any more (it shut down).
#[derive(Debug, thiserror::Error)]
#[error("shard {0} is not reachable")]
pub struct MeshClosed(pub usize);

/// Receives from one peer shard.
pub struct MeshReceiver<T: Send + 'static>(glommio::channels::shared_channel::ConnectedReceiver<T>);

impl<T: Send + 'static> MeshReceiver<T> {
    /// The next message, or None once the peer closed its side.
    pub async fn recv(&self) -> Option<T> {
        self.0.recv().await
    }
}
