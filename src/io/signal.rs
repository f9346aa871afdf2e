//! Signals between threads: a one-way [`Flag`] (stop requested, start-up
//! failed) and a [`Countdown`] (every shard is ready). Waiting tasks are
//! woken by the thread that sets them (glommio queues wakes from other
//! threads to the owning executor), so nothing polls.

use crate::io::rand::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// How often a task waiting on a cross-thread signal also re-checks it.
/// The wake-up from the setting thread is the mechanism; this is a safety
/// net: glommio 0.9 was seen to lose a wake-up sent from another thread
/// under load (a broker start hung with both shards idle), and a lost
/// start-up or stop signal must never hang the broker. The re-check costs
/// one timer per waiting task (the shard main task and start-up), not per
/// request.
const RECHECK: Duration = Duration::from_millis(100);

/// Wait for `fut`, re-checking `done` every [`RECHECK`] (not in a
/// simulation, where wake-ups cannot be lost and idle time must stay free).
async fn with_recheck(done: impl Fn() -> bool, fut: impl Future<Output = ()>) {
    if super::sim::active() {
        return fut.await;
    }
    let mut fut = std::pin::pin!(fut);
    loop {
        if done() {
            return;
        }
        if super::time::timeout(RECHECK, fut.as_mut()).await.is_some() {
            return;
        }
    }
}

#[derive(Default)]
struct Waiters {
    next: AtomicU64,
    map: Mutex<HashMap<u64, Waker>>,
}

impl Waiters {
    fn register(&self, id: &mut Option<u64>, cx: &Context<'_>) {
        let key = *id.get_or_insert_with(|| self.next.fetch_add(1, Ordering::Relaxed));
        if let Ok(mut m) = self.map.lock() {
            match m.get_mut(&key) {
                Some(w) => w.clone_from(cx.waker()),
                None => {
                    m.insert(key, cx.waker().clone());
                }
            }
        }
    }

    fn remove(&self, id: Option<u64>) {
        if let (Some(id), Ok(mut m)) = (id, self.map.lock()) {
            m.remove(&id);
        }
    }

    fn wake_all(&self) {
        let ws: Vec<Waker> = match self.map.lock() {
            Ok(mut m) => m.drain().map(|(_, w)| w).collect(),
            Err(_) => Vec::new(),
        };
        for w in ws {
            w.wake();
        }
    }
}

#[derive(Default)]
struct FlagInner {
    set: AtomicBool,
    waiters: Waiters,
}

/// A flag that is set once and can be awaited from any thread.
#[derive(Clone, Default)]
pub struct Flag(Arc<FlagInner>);

impl Flag {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(&self) {
        self.0.set.store(true, Ordering::SeqCst);
        self.0.waiters.wake_all();
    }

    pub fn is_set(&self) -> bool {
        self.0.set.load(Ordering::SeqCst)
    }

    /// Completes once the flag is set.
    pub async fn wait(&self) {
        let w = FlagWait {
            flag: self.clone(),
            id: None,
        };
        let flag = self.clone();
        with_recheck(move || flag.is_set(), w).await
    }

    /// The bare notification future (no re-check), for tests.
    pub fn wait_notified(&self) -> FlagWait {
        FlagWait {
            flag: self.clone(),
            id: None,
        }
    }

    /// Set the flag on SIGINT or SIGTERM (a thread waits for the signals).
    pub fn set_on_termination_signals(&self) -> anyhow::Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        let flag = self.clone();
        std::thread::Builder::new().name("signals".into()).spawn(move || {
            for sig in signals.forever() {
                if flag.is_set() {
                    tracing::info!(signal = sig, "already shutting down");
                } else {
                    tracing::info!(signal = sig, "shutdown requested");
                    flag.set();
                }
            }
        })?;
        Ok(())
    }
}

/// Future of [`Flag::wait`].
pub struct FlagWait {
    flag: Flag,
    id: Option<u64>,
}

impl Future for FlagWait {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.flag.is_set() {
            return Poll::Ready(());
        }
        let flag = self.flag.clone();
        flag.0.waiters.register(&mut self.id, cx);
        // Set between the check and the registration: do not sleep.
        if flag.is_set() {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl Drop for FlagWait {
    fn drop(&mut self) {
        self.flag.0.waiters.remove(self.id);
    }
}

struct CountdownInner {
    remaining: AtomicUsize,
    waiters: Waiters,
}

/// Completes for every waiter once `count_down` was called n times.
#[derive(Clone)]
pub struct Countdown(Arc<CountdownInner>);

impl Countdown {
    pub fn new(n: usize) -> Self {
        Countdown(Arc::new(CountdownInner {
            remaining: AtomicUsize::new(n),
            waiters: Waiters::default(),
        }))
    }

    pub fn count_down(&self) {
        let prev = self
            .0
            .remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| Some(v.saturating_sub(1)))
            .unwrap_or(0);
        if prev <= 1 {
            self.0.waiters.wake_all();
        }
    }

    pub fn done(&self) -> bool {
        self.0.remaining.load(Ordering::SeqCst) == 0
    }

    pub async fn wait(&self) {
        let mut id = None;
        let this = self.clone();
        let check = self.clone();
        let notified = futures::future::poll_fn(move |cx| {
            if this.done() {
                this.0.waiters.remove(id);
                return Poll::Ready(());
            }
            this.0.waiters.register(&mut id, cx);
            if this.done() {
                this.0.waiters.remove(id);
                return Poll::Ready(());
            }
            Poll::Pending
        });
        with_recheck(move || check.done(), notified).await
    }
}
