//! The shard mesh of a simulated broker: bounded queues between every pair
//! of shards, with the production mesh's semantics (send waits for room,
//! close ends the peer's stream after what was queued).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

struct Chan<T> {
    queue: VecDeque<T>,
    closed: bool,
    recv_waker: Option<Waker>,
    send_wakers: Vec<Waker>,
}

struct State<T> {
    shards: usize,
    capacity: usize,
    /// chans[from][to]
    chans: Vec<Vec<Chan<T>>>,
    joined: Vec<bool>,
    join_wakers: Vec<Waker>,
}

/// A mesh between `shards` simulated shards.
pub struct SimMesh<T> {
    state: Arc<Mutex<State<T>>>,
}

impl<T> Clone for SimMesh<T> {
    fn clone(&self) -> Self {
        SimMesh {
            state: self.state.clone(),
        }
    }
}

impl<T> SimMesh<T> {
    pub fn new(shards: usize, capacity: usize) -> Self {
        let chans = (0..shards)
            .map(|_| {
                (0..shards)
                    .map(|_| Chan {
                        queue: VecDeque::new(),
                        closed: false,
                        recv_waker: None,
                        send_wakers: Vec::new(),
                    })
                    .collect()
            })
            .collect();
        SimMesh {
            state: Arc::new(Mutex::new(State {
                shards,
                capacity: capacity.max(1),
                chans,
                joined: vec![false; shards],
                join_wakers: Vec::new(),
            })),
        }
    }

    pub fn shards(&self) -> usize {
        self.state.lock().map(|s| s.shards).unwrap_or(0)
    }

    /// Join as shard `me`: completes once every shard joined.
    pub async fn join(&self, me: usize) {
        let wakers = match self.state.lock() {
            Ok(mut s) => {
                if let Some(j) = s.joined.get_mut(me) {
                    *j = true;
                }
                if s.joined.iter().all(|j| *j) {
                    std::mem::take(&mut s.join_wakers)
                } else {
                    Vec::new()
                }
            }
            Err(_) => Vec::new(),
        };
        for w in wakers {
            w.wake();
        }
        futures::future::poll_fn(|cx| match self.state.lock() {
            Ok(mut s) if !s.joined.iter().all(|j| *j) => {
                s.join_wakers.push(cx.waker().clone());
                Poll::Pending
            }
            _ => Poll::Ready(()),
        })
        .await
    }

    /// Send from `from` to `to`, waiting for room; Err(msg) when closed.
    pub fn poll_send(&self, from: usize, to: usize, msg: &mut Option<T>, cx: &mut Context<'_>) -> Poll<Result<(), ()>> {
        let Ok(mut s) = self.state.lock() else {
            return Poll::Ready(Err(()));
        };
        let cap = s.capacity;
        let Some(ch) = s.chans.get_mut(from).and_then(|v| v.get_mut(to)) else {
            return Poll::Ready(Err(()));
        };
        if ch.closed {
            return Poll::Ready(Err(()));
        }
        if ch.queue.len() >= cap {
            ch.send_wakers.push(cx.waker().clone());
            return Poll::Pending;
        }
        if let Some(m) = msg.take() {
            ch.queue.push_back(m);
        }
        let w = ch.recv_waker.take();
        drop(s);
        if let Some(w) = w {
            w.wake();
        }
        Poll::Ready(Ok(()))
    }

    /// Receive at `me` from `from`; None once `from` closed and the queue drained.
    pub fn poll_recv(&self, from: usize, me: usize, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let Ok(mut s) = self.state.lock() else {
            return Poll::Ready(None);
        };
        let Some(ch) = s.chans.get_mut(from).and_then(|v| v.get_mut(me)) else {
            return Poll::Ready(None);
        };
        if let Some(m) = ch.queue.pop_front() {
            let ws = std::mem::take(&mut ch.send_wakers);
            drop(s);
            for w in ws {
                w.wake();
            }
            return Poll::Ready(Some(m));
        }
        if ch.closed {
            return Poll::Ready(None);
        }
        ch.recv_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Close every channel out of `from`.
    pub fn close(&self, from: usize) {
        let mut wakers = Vec::new();
        if let Ok(mut s) = self.state.lock() {
            if let Some(row) = s.chans.get_mut(from) {
                for ch in row.iter_mut() {
                    ch.closed = true;
                    wakers.extend(ch.recv_waker.take());
                    wakers.append(&mut ch.send_wakers);
                }
            }
        }
        for w in wakers {
            w.wake();
        }
    }
}
