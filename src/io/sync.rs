//! Single-shard async primitives (no atomics, no cross-thread use).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// An async mutex for tasks of one shard, used to serialize rare
/// multi-step operations (metadata changes). Not for the data path.
#[derive(Default)]
pub struct LocalMutex(Semaphore1);

struct Semaphore1(Semaphore);

impl Default for Semaphore1 {
    fn default() -> Self {
        Semaphore1(Semaphore::new(1))
    }
}

impl LocalMutex {
    /// Wait for exclusive access; released when the guard is dropped.
    pub async fn lock(&self) -> Option<Permit> {
        Some(self.0 .0.acquire(1).await)
    }
}

struct Waiter {
    id: u64,
    want: usize,
    waker: Option<Waker>,
    granted: bool,
}

struct SemInner {
    available: usize,
    capacity: usize,
    waiters: VecDeque<Waiter>,
    next_id: u64,
}

impl SemInner {
    /// Grant waiters in arrival order while they fit.
    fn grant(&mut self) -> Vec<Waker> {
        let mut wake = Vec::new();
        for w in self.waiters.iter_mut() {
            if w.granted {
                continue;
            }
            if w.want > self.available {
                break; // FIFO: nobody overtakes the first waiter
            }
            self.available -= w.want;
            w.granted = true;
            wake.extend(w.waker.take());
        }
        wake
    }
}

/// A counting semaphore for the tasks of one shard: FIFO, no atomics. Used
/// for byte budgets (request memory) and as a mutex.
#[derive(Clone)]
pub struct Semaphore {
    inner: Rc<RefCell<SemInner>>,
}

impl Semaphore {
    pub fn new(units: usize) -> Self {
        Semaphore {
            inner: Rc::new(RefCell::new(SemInner {
                available: units,
                capacity: units,
                waiters: VecDeque::new(),
                next_id: 0,
            })),
        }
    }

    /// Units not handed out.
    pub fn available(&self) -> usize {
        self.inner.borrow().available
    }

    /// Units the semaphore was created with.
    pub fn capacity(&self) -> usize {
        self.inner.borrow().capacity
    }

    /// Tasks waiting for units.
    pub fn waiting(&self) -> usize {
        self.inner.borrow().waiters.len()
    }

    /// Take `n` units now if they are free and nobody waits before us.
    pub fn try_acquire(&self, n: usize) -> Option<Permit> {
        let mut s = self.inner.borrow_mut();
        let n = n.min(s.capacity);
        if s.waiters.is_empty() && s.available >= n {
            s.available -= n;
            drop(s);
            return Some(Permit {
                sem: self.clone(),
                units: n,
            });
        }
        None
    }

    /// Wait for `n` units (at most the capacity: a larger request waits for
    /// the whole semaphore). Waiters are served in arrival order.
    pub fn acquire(&self, n: usize) -> Acquire {
        Acquire {
            sem: self.clone(),
            want: n.min(self.capacity()),
            id: None,
        }
    }

    /// Take a place in the queue for `n` units now, not at the first poll
    /// as [`Semaphore::acquire`] does: callers that queue several requests
    /// one after the other get them granted in exactly that order, even if
    /// the returned futures are first polled later (by spawned tasks).
    pub fn enqueue(&self, n: usize) -> Acquire {
        let want = n.min(self.capacity());
        let (id, wake) = {
            let mut s = self.inner.borrow_mut();
            let id = s.next_id;
            s.next_id += 1;
            s.waiters.push_back(Waiter {
                id,
                want,
                waker: None,
                granted: false,
            });
            (id, s.grant())
        };
        for w in wake {
            w.wake();
        }
        Acquire {
            sem: self.clone(),
            want,
            id: Some(id),
        }
    }

    fn release(&self, n: usize) {
        let wake = {
            let mut s = self.inner.borrow_mut();
            s.available += n;
            debug_assert!(s.available <= s.capacity, "semaphore released more than it handed out");
            s.grant()
        };
        for w in wake {
            w.wake();
        }
    }
}

/// Units of a [`Semaphore`], given back when dropped.
pub struct Permit {
    sem: Semaphore,
    units: usize,
}

impl Permit {
    pub fn units(&self) -> usize {
        self.units
    }

    /// Give back part of the units early.
    pub fn release_part(&mut self, n: usize) {
        let n = n.min(self.units);
        self.units -= n;
        self.sem.release(n);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.units > 0 {
            self.sem.release(self.units);
        }
    }
}

/// Future of [`Semaphore::acquire`].
pub struct Acquire {
    sem: Semaphore,
    want: usize,
    id: Option<u64>,
}

impl Future for Acquire {
    type Output = Permit;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Permit> {
        let want = self.want;
        let sem = self.sem.clone();
        let mut s = sem.inner.borrow_mut();
        match self.id {
            None => {
                if s.waiters.is_empty() && s.available >= want {
                    s.available -= want;
                    drop(s);
                    return Poll::Ready(Permit { sem, units: want });
                }
                let id = s.next_id;
                s.next_id += 1;
                s.waiters.push_back(Waiter {
                    id,
                    want,
                    waker: Some(cx.waker().clone()),
                    granted: false,
                });
                self.id = Some(id);
                Poll::Pending
            }
            Some(id) => {
                let Some(i) = s.waiters.iter().position(|w| w.id == id) else {
                    return Poll::Pending; // cannot happen: removed only here or on drop
                };
                if s.waiters[i].granted {
                    s.waiters.remove(i);
                    drop(s);
                    self.id = None;
                    return Poll::Ready(Permit { sem, units: want });
                }
                match &mut s.waiters[i].waker {
                    Some(w) => w.clone_from(cx.waker()),
                    slot => *slot = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for Acquire {
    fn drop(&mut self) {
        let Some(id) = self.id else { return };
        let (give_back, wake) = {
            let Ok(mut s) = self.sem.inner.try_borrow_mut() else {
                return;
            };
            let Some(i) = s.waiters.iter().position(|w| w.id == id) else {
                return;
            };
            let w = s.waiters.remove(i);
            let give_back = w.map(|w| w.granted).unwrap_or(false);
            // A waiter that left may have been blocking the ones behind it.
            let wake = if give_back { Vec::new() } else { s.grant() };
            (give_back, wake)
        };
        if give_back {
            self.sem.release(self.want);
        }
        for w in wake {
            w.wake();
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::task::Wake;

    struct Nop;
    impl Wake for Nop {
        fn wake(self: Arc<Self>) {}
    }

    fn poll<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
        let w = Waker::from(Arc::new(Nop));
        let mut cx = Context::from_waker(&w);
        Pin::new(f).poll(&mut cx)
    }

    #[test]
    fn semaphore_is_fifo_and_gives_back_on_drop() {
        let s = Semaphore::new(10);
        let p1 = s.try_acquire(6).expect("free");
        let mut big = s.acquire(8);
        assert!(poll(&mut big).is_pending());
        // A small request may not overtake the waiting big one.
        assert!(s.try_acquire(2).is_none());
        let mut small = s.acquire(2);
        assert!(poll(&mut small).is_pending());
        drop(p1);
        let p2 = match poll(&mut big) {
            Poll::Ready(p) => p,
            Poll::Pending => panic!("big should be granted"),
        };
        let p3 = match poll(&mut small) {
            Poll::Ready(p) => p,
            Poll::Pending => panic!("small should be granted after big"),
        };
        assert_eq!(s.available(), 0);
        drop(p2);
        assert_eq!(s.available(), 8);
        drop(p3);
        assert_eq!(s.available(), 10);
        // Requests above the capacity wait for the whole semaphore.
        let hold = s.try_acquire(1).expect("free");
        let mut huge = s.acquire(100);
        assert!(poll(&mut huge).is_pending());
        drop(hold);
        drop(huge); // granted but cancelled before it saw it: nothing leaks
        assert_eq!(s.waiting(), 0);
        assert_eq!(s.available(), 10);
    }

    #[test]
    fn enqueue_keeps_call_order_before_the_first_poll() {
        let s = Semaphore::new(10);
        let hold = s.try_acquire(8).expect("free");
        // `a` cannot be granted now; `b` would fit but must not overtake it,
        // although neither has been polled yet.
        let mut a = s.enqueue(5);
        let mut b = s.enqueue(2);
        assert!(s.try_acquire(1).is_none(), "nobody overtakes queued waiters");
        assert!(poll(&mut b).is_pending());
        drop(hold);
        let pa = match poll(&mut a) {
            Poll::Ready(p) => p,
            Poll::Pending => panic!("a is first"),
        };
        let pb = match poll(&mut b) {
            Poll::Ready(p) => p,
            Poll::Pending => panic!("b fits after a"),
        };
        assert_eq!((pa.units(), pb.units()), (5, 2));
        drop((pa, pb));
        // Granted at once when nothing waits; a dropped queued waiter leaves
        // nothing behind.
        let mut c = s.enqueue(10);
        assert!(matches!(poll(&mut c), Poll::Ready(_)));
        let hold = s.try_acquire(10).expect("free again");
        let d = s.enqueue(3);
        drop(d);
        drop(hold);
        assert_eq!((s.available(), s.waiting()), (10, 0));
    }

    #[test]
    fn a_cancelled_granted_waiter_returns_its_units() {
        let s = Semaphore::new(4);
        let p = s.try_acquire(4).expect("free");
        let mut a = s.acquire(3);
        assert!(poll(&mut a).is_pending());
        drop(p); // grants `a`
        drop(a); // but it is gone before it saw the grant
        assert_eq!(s.available(), 4);
    }
}
