//! Cross-core channels: a full mesh of bounded single-producer
//! single-consumer queues between shards.
//!
//! The mesh is built whole before the shards start, so joining it is
//! immediate: there is no connection handshake between executors. (glommio's
//! own channel mesh needs one, and it was seen to hang the broker's start-up
//! now and then on a busy machine: both shards idle, waiting for each other.)
//! Each channel is a lock-free bounded queue; the receiving task and a
//! sender waiting for room park on wakers that the other shard's thread
//! wakes (glommio forwards such wakes to the owning executor). The same
//! code runs in a simulation, where every shard lives on one thread.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use crossbeam_queue::ArrayQueue;
use futures::task::AtomicWaker;

struct Channel<T> {
    queue: ArrayQueue<T>,
    closed: AtomicBool,
    /// The receiving task, when it found the queue empty.
    receiver: AtomicWaker,
    /// A sending task, when it found the queue full.
    sender: AtomicWaker,
}

struct Mesh<T> {
    shards: usize,
    /// channels[from * shards + to]
    channels: Vec<Channel<T>>,
}

impl<T> Mesh<T> {
    fn channel(&self, from: usize, to: usize) -> Option<&Channel<T>> {
        if from >= self.shards || to >= self.shards || from == to {
            return None;
        }
        self.channels.get(from * self.shards + to)
    }
}

/// Shared recipe for the mesh; each shard clones it and joins.
pub struct MeshBuilder<T: Send + 'static>(Arc<Mesh<T>>);

impl<T: Send + 'static> Clone for MeshBuilder<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T: Send + 'static> MeshBuilder<T> {
    /// A mesh between `shards` shards with `capacity` slots per channel.
    pub fn full(shards: usize, capacity: usize) -> Self {
        let channels = (0..shards * shards)
            .map(|_| Channel {
                queue: ArrayQueue::new(capacity.max(1)),
                closed: AtomicBool::new(false),
                receiver: AtomicWaker::new(),
                sender: AtomicWaker::new(),
            })
            .collect();
        Self(Arc::new(Mesh { shards, channels }))
    }

    /// A mesh between the shards of a simulated broker (the same mesh: it
    /// works on one thread as well as across threads).
    pub fn simulated(shards: usize, capacity: usize) -> Self {
        Self::full(shards, capacity)
    }

    /// Join as shard `me`: a sender to every other shard and a receiver from
    /// each of them.
    pub async fn join(self, me: usize) -> anyhow::Result<(MeshSender<T>, Vec<(usize, MeshReceiver<T>)>)> {
        if me >= self.0.shards {
            anyhow::bail!("shard {me} is not part of a mesh of {} shards", self.0.shards);
        }
        let receivers = (0..self.0.shards)
            .filter(|&p| p != me)
            .map(|p| {
                (
                    p,
                    MeshReceiver {
                        mesh: self.0.clone(),
                        from: p,
                        me,
                    },
                )
            })
            .collect();
        Ok((MeshSender { mesh: self.0, me }, receivers))
    }
}

/// Sends to any other shard.
pub struct MeshSender<T: Send + 'static> {
    mesh: Arc<Mesh<T>>,
    me: usize,
}

impl<T: Send + 'static> MeshSender<T> {
    /// This shard's index in the mesh.
    pub fn me(&self) -> usize {
        self.me
    }

    /// Number of shards in the mesh.
    pub fn shards(&self) -> usize {
        self.mesh.shards
    }

    /// Send, waiting for room if the peer's queue is full. Fails if the
    /// channel was closed (shutdown) or `shard` is this shard; the message is
    /// dropped then.
    pub async fn send_to(&self, shard: usize, msg: T) -> Result<(), MeshClosed> {
        let Some(ch) = self.mesh.channel(self.me, shard) else {
            return Err(MeshClosed(shard));
        };
        let mut slot = Some(msg);
        futures::future::poll_fn(|cx| {
            if ch.closed.load(Ordering::Acquire) {
                return Poll::Ready(Err(MeshClosed(shard)));
            }
            let Some(m) = slot.take() else {
                return Poll::Ready(Ok(()));
            };
            match ch.queue.push(m) {
                Ok(()) => {
                    ch.receiver.wake();
                    Poll::Ready(Ok(()))
                }
                Err(m) => {
                    // Full: park, then look again (the receiver may have
                    // made room before we registered).
                    ch.sender.register(cx.waker());
                    match ch.queue.push(m) {
                        Ok(()) => {
                            ch.receiver.wake();
                            Poll::Ready(Ok(()))
                        }
                        Err(m) => {
                            slot = Some(m);
                            Poll::Pending
                        }
                    }
                }
            }
        })
        .await
    }

    /// Send without waiting: the message comes back when the peer's queue
    /// is full or the channel is closed (or `shard` is this shard).
    pub fn try_send_to(&self, shard: usize, msg: T) -> Result<(), TrySendError<T>> {
        let Some(ch) = self.mesh.channel(self.me, shard) else {
            return Err(TrySendError::Closed(msg));
        };
        if ch.closed.load(Ordering::Acquire) {
            return Err(TrySendError::Closed(msg));
        }
        match ch.queue.push(msg) {
            Ok(()) => {
                ch.receiver.wake();
                Ok(())
            }
            Err(m) => Err(TrySendError::Full(m)),
        }
    }

    /// Close every outgoing channel (shutdown): receivers see the end once
    /// they drained what was queued.
    pub fn close(&self) {
        for to in 0..self.mesh.shards {
            if let Some(ch) = self.mesh.channel(self.me, to) {
                ch.closed.store(true, Ordering::Release);
                ch.receiver.wake();
                ch.sender.wake();
            }
        }
    }
}

/// Why [`MeshSender::try_send_to`] gave the message back.
#[derive(Debug)]
pub enum TrySendError<T> {
    /// The peer's queue is full.
    Full(T),
    /// The channel is closed (shutdown), or there is no such peer.
    Closed(T),
}

/// The peer shard cannot receive any more (it shut down).
#[derive(Debug, thiserror::Error)]
#[error("shard {0} is not reachable")]
pub struct MeshClosed(pub usize);

/// Receives from one peer shard.
pub struct MeshReceiver<T: Send + 'static> {
    mesh: Arc<Mesh<T>>,
    from: usize,
    me: usize,
}

impl<T: Send + 'static> MeshReceiver<T> {
    /// The next message, or None once the peer closed its side and
    /// everything it sent was received.
    pub async fn recv(&self) -> Option<T> {
        futures::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let Some(ch) = self.mesh.channel(self.from, self.me) else {
            return Poll::Ready(None);
        };
        if let Some(m) = ch.queue.pop() {
            ch.sender.wake();
            return Poll::Ready(Some(m));
        }
        ch.receiver.register(cx.waker());
        // Look again: a message (or the close) may have come before the
        // registration.
        if let Some(m) = ch.queue.pop() {
            ch.sender.wake();
            return Poll::Ready(Some(m));
        }
        if ch.closed.load(Ordering::Acquire) {
            return match ch.queue.pop() {
                Some(m) => Poll::Ready(Some(m)),
                None => Poll::Ready(None),
            };
        }
        Poll::Pending
    }
}

impl<T: Send + 'static> futures::Stream for MeshReceiver<T> {
    type Item = T;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.poll_recv(cx)
    }
}
