//! A single-threaded "something changed" signal for tasks on one shard.
//!
//! Used to wake long-poll fetches when a partition's high watermark moves and
//! to wake the group-commit loop when data is staged. It never crosses
//! threads, so it needs no atomics or locks.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
struct Inner {
    generation: u64,
    waiters: Vec<Waker>,
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
        for w in waiters {
            w.wake();
        }
    }

    /// A future that completes at the next `notify_all`.
    pub fn listen(&self) -> Listener {
        Listener {
            inner: self.inner.clone(),
            generation: self.inner.borrow().generation,
        }
    }
}

/// Completes once the [`Notify`] it came from has been notified.
pub struct Listener {
    inner: Rc<RefCell<Inner>>,
    generation: u64,
}

impl Future for Listener {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.inner.borrow_mut();
        if inner.generation != self.generation {
            return Poll::Ready(());
        }
        if !inner.waiters.iter().any(|w| w.will_wake(cx.waker())) {
            inner.waiters.push(cx.waker().clone());
        }
        Poll::Pending
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
}
