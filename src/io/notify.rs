//! A single-threaded "something changed" signal for tasks on one shard.
//!
//! Used to wake long-poll fetches when a partition's high watermark moves and
//! to wake the group-commit loop when data is staged. It never crosses
//! threads, so it needs no atomics or locks.

use crate::io::rand::HashMap;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
struct Inner {
    generation: u64,
    next_id: u64,
    /// One waker per pending listener, replaced on every poll and removed
    /// when the listener completes or is dropped, so an idle loop that keeps
    /// re-listening never accumulates wakers.
    waiters: HashMap<u64, Waker>,
}

/// Wakes every task currently listening.
#[derive(Clone, Default)]
pub struct Notify {
    inner: Rc<RefCell<Inner>>,
}

impl Notify {
    pub fn new() -> Self {
        Self::default()
    }

    /// Wake every listener created before this call.
    pub fn notify_all(&self) {
        let waiters = {
            let mut inner = self.inner.borrow_mut();
            inner.generation = inner.generation.wrapping_add(1);
            std::mem::take(&mut inner.waiters)
        };
        for (_, w) in waiters {
            w.wake();
        }
    }

    /// A future that completes at the next `notify_all`.
    pub fn listen(&self) -> Listener {
        let mut inner = self.inner.borrow_mut();
        let id = inner.next_id;
        inner.next_id = inner.next_id.wrapping_add(1);
        Listener {
            inner: self.inner.clone(),
            generation: inner.generation,
            id,
        }
    }

    /// Listeners currently registered (for tests and metrics).
    pub fn waiting(&self) -> usize {
        self.inner.borrow().waiters.len()
    }
}

/// Completes once the [`Notify`] it came from has been notified.
pub struct Listener {
    inner: Rc<RefCell<Inner>>,
    generation: u64,
    id: u64,
}

impl Future for Listener {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.inner.borrow_mut();
        if inner.generation != self.generation {
            inner.waiters.remove(&self.id);
            return Poll::Ready(());
        }
        match inner.waiters.get_mut(&self.id) {
            Some(w) => w.clone_from(cx.waker()),
            None => {
                inner.waiters.insert(self.id, cx.waker().clone());
            }
        }
        Poll::Pending
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Ok(mut inner) = self.inner.try_borrow_mut() {
            inner.waiters.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;

    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn listener_completes_after_notify_only() {
        let n = Notify::new();
        let flag = std::sync::Arc::new(Flag(Default::default()));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let mut l = n.listen();
        assert!(Pin::new(&mut l).poll(&mut cx).is_pending());
        n.notify_all();
        assert!(flag.0.load(std::sync::atomic::Ordering::SeqCst));
        assert!(Pin::new(&mut l).poll(&mut cx).is_ready());
        // A listener created after the notification waits for the next one.
        let mut l2 = n.listen();
        assert!(Pin::new(&mut l2).poll(&mut cx).is_pending());
    }

    #[test]
    fn repeated_listening_does_not_accumulate_wakers() {
        let n = Notify::new();
        let flag = std::sync::Arc::new(Flag(Default::default()));
        for _ in 0..10_000 {
            // a fresh waker each time, as an executor may hand out
            let waker = Waker::from(flag.clone());
            let mut cx = Context::from_waker(&waker);
            let mut l = n.listen();
            assert!(Pin::new(&mut l).poll(&mut cx).is_pending());
            assert!(Pin::new(&mut l).poll(&mut cx).is_pending());
            drop(l); // e.g. a timeout won the race
        }
        assert_eq!(n.waiting(), 0);
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let mut l = n.listen();
        assert!(Pin::new(&mut l).poll(&mut cx).is_pending());
        assert_eq!(n.waiting(), 1);
        n.notify_all();
        assert_eq!(n.waiting(), 0);
        assert!(Pin::new(&mut l).poll(&mut cx).is_ready());
    }
}
