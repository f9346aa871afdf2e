//! Single-shard async primitives (no atomics, no cross-thread use).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// An async mutex for tasks of one shard, used to serialize rare
/// multi-step operations (metadata changes). Not for the data path.
pub struct LocalMutex(glommio::sync::Semaphore);

impl Default for LocalMutex {
    fn default() -> Self {
        Self(glommio::sync::Semaphore::new(1))
    }
}

impl LocalMutex {
    /// Wait for exclusive access; released when the guard is dropped.
    pub async fn lock(&self) -> Option<impl Drop + '_> {
        self.0.acquire_permit(1).await.ok()
    }
}

struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
    closed: bool,
}

/// Sending side of a single-shard oneshot channel.
pub struct OneshotSender<T>(Rc<RefCell<Slot<T>>>);

/// Receiving side: a future resolving to the value, or None if the sender
/// was dropped without sending.
pub struct OneshotReceiver<T>(Rc<RefCell<Slot<T>>>);

pub fn oneshot<T>() -> (OneshotSender<T>, OneshotReceiver<T>) {
    let slot = Rc::new(RefCell::new(Slot {
        value: None,
        waker: None,
        closed: false,
    }));
    (OneshotSender(slot.clone()), OneshotReceiver(slot))
}

impl<T> OneshotSender<T> {
    pub fn send(self, value: T) {
        let waker = {
            let mut s = self.0.borrow_mut();
            s.value = Some(value);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Drop for OneshotSender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut s = self.0.borrow_mut();
            s.closed = true;
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Future for OneshotReceiver<T> {
    type Output = Option<T>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut s = self.0.borrow_mut();
        if let Some(v) = s.value.take() {
            return Poll::Ready(Some(v));
        }
        if s.closed {
            return Poll::Ready(None);
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}
