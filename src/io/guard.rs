//! A wake filter for runtime IO futures.
//!
//! glommio 0.9 keeps a clone of the task's waker for every pending poll of
//! some of its futures (`Source::collect_rw` behind accept, DMA reads and
//! writes, fsync; the shared channels behind the shard mesh), and never
//! removes duplicates. A future that stays pending for long while its task
//! is polled for other reasons (it is raced against a timer or a shutdown
//! signal, or sits in a `select`) therefore piles up waker clones until the
//! task's 16-bit reference count overflows and the executor panics: the
//! broker stopped accepting connections after 27 minutes that way.
//!
//! [`WakeFilter`] sits between the task and such a future: the runtime
//! future is polled only on the first poll and after it woke its own waker.
//! Polls of the task caused by anything else return `Pending` without
//! touching it, so the runtime sees one registration per wake-up however
//! often the task is polled. The task's waker is stored once (replaced only
//! if it changes).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;

struct State {
    woken: AtomicBool,
    outer: AtomicWaker,
}

impl Wake for State {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.outer.wake();
    }
}

/// Polls an inner poll function only when it asked to be polled.
pub struct WakeFilter {
    state: Arc<State>,
    waker: Waker,
}

impl Default for WakeFilter {
    fn default() -> Self {
        Self::new()
    }
}

impl WakeFilter {
    pub fn new() -> Self {
        let state = Arc::new(State {
            woken: AtomicBool::new(true),
            outer: AtomicWaker::new(),
        });
        let waker = Waker::from(state.clone());
        WakeFilter { state, waker }
    }

    /// Run `f` with this filter's waker if it was woken since the last
    /// `Pending` (or never polled); otherwise return `Pending` untouched.
    pub fn poll<R>(&self, cx: &mut Context<'_>, f: impl FnOnce(&mut Context<'_>) -> Poll<R>) -> Poll<R> {
        self.state.outer.register(cx.waker());
        if !self.state.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let mut inner = Context::from_waker(&self.waker);
        let r = f(&mut inner);
        if r.is_ready() {
            // The next operation through this filter starts afresh.
            self.state.woken.store(true, Ordering::Release);
        }
        r
    }
}

/// A future that polls `F` through a [`WakeFilter`].
pub struct Filtered<F> {
    filter: WakeFilter,
    fut: Pin<Box<F>>,
}

/// Wrap a runtime future so that re-polls without a wake-up never reach it.
pub fn filtered<F: Future>(fut: F) -> Filtered<F> {
    Filtered {
        filter: WakeFilter::new(),
        fut: Box::pin(fut),
    }
}

impl<F: Future> Future for Filtered<F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let fut = &mut this.fut;
        this.filter.poll(cx, |inner| fut.as_mut().poll(inner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    /// A future that, like glommio's sources, keeps every waker it is given.
    struct Hoarder {
        wakers: Rc<std::cell::RefCell<Vec<Waker>>>,
        ready: Rc<Cell<bool>>,
    }

    impl Future for Hoarder {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.ready.get() {
                return Poll::Ready(());
            }
            self.wakers.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        }
    }

    struct CountWake(std::sync::atomic::AtomicUsize);
    impl Wake for CountWake {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn repolls_without_wakeup_do_not_reach_the_inner_future() {
        let wakers = Rc::new(std::cell::RefCell::new(Vec::new()));
        let ready = Rc::new(Cell::new(false));
        let mut f = filtered(Hoarder {
            wakers: wakers.clone(),
            ready: ready.clone(),
        });
        let count = Arc::new(CountWake(Default::default()));
        let outer = Waker::from(count.clone());
        let mut cx = Context::from_waker(&outer);
        for _ in 0..100_000 {
            assert!(Pin::new(&mut f).poll(&mut cx).is_pending());
        }
        assert_eq!(wakers.borrow().len(), 1, "the inner future saw one poll");
        // Its wake-up reaches the task, and the next poll reaches it again.
        ready.set(true);
        let w = wakers.borrow_mut().pop();
        if let Some(w) = w {
            w.wake();
        }
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(Pin::new(&mut f).poll(&mut cx).is_ready());
    }
}
