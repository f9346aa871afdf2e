//! The simulation backend of the IO layer.
//!
//! A [`World`] runs every task of a simulated deployment (the broker's
//! shards and the simulated clients) on one thread, in an order drawn from a
//! seeded RNG, on a virtual clock that jumps to the next timer whenever
//! nothing is runnable. Its disk ([`disk`]) and network ([`net`]) live in
//! memory and inject faults drawn from the same RNG (the shard mesh is the
//! production one, which works on one thread too).
//! Given the same seed and the same code, a run repeats exactly.
//!
//! The rest of the broker does not know: `crate::io` dispatches to this
//! backend whenever a world is running on the current thread, so the shard,
//! log, flusher, fetch and group code under test is the production code.
//!
//! Tasks carry a node tag (a broker process, a client): [`World::kill_node`]
//! drops every task of a node at once, which together with the disk's
//! power-loss model ([`disk::Disk::power_loss`]) simulates a crash.

pub mod disk;
pub mod net;

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use futures::future::LocalBoxFuture;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

thread_local! {
    static CURRENT: RefCell<Option<Rc<World>>> = const { RefCell::new(None) };
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
}

/// Whether a simulated world runs on this thread.
#[inline]
pub fn active() -> bool {
    ACTIVE.with(|a| a.get())
}

/// The world running on this thread.
pub fn current() -> Option<Rc<World>> {
    if !active() {
        return None;
    }
    CURRENT.with(|c| c.borrow().clone())
}

/// The world running on this thread; panics outside a simulation (callers
/// check [`active`] first).
pub fn world() -> Rc<World> {
    match current() {
        Some(w) => w,
        None => panic!("no simulated world on this thread"),
    }
}

/// A node of the simulation: a broker process or a client.
pub type NodeId = u32;

/// Settings of one simulation run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Virtual time charged per task poll (CPU time), at most.
    pub max_poll_cost: Duration,
    /// Stop with an error after this many task polls (a livelock).
    pub max_steps: u64,
    /// Real time a single poll may take before the run is aborted (a task
    /// that never yields holds its shard forever).
    pub max_poll_wall: Duration,
    pub disk: disk::DiskConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            max_poll_cost: Duration::from_micros(20),
            max_steps: 50_000_000,
            max_poll_wall: Duration::from_secs(20),
            disk: disk::DiskConfig::default(),
        }
    }
}

/// Why a run stopped before its root future completed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    #[error("deadlock: no task runnable and no timer pending at {0:?} virtual time")]
    Deadlock(Duration),
    #[error("livelock: {0} polls without finishing")]
    TooManySteps(u64),
}

struct Slot {
    fut: Option<LocalBoxFuture<'static, ()>>,
    node: NodeId,
    /// Cancelled while it was being polled: drop it after the poll.
    cancelled: bool,
}

#[derive(Default)]
struct ReadyQueue {
    order: Vec<u64>,
    set: HashSet<u64>,
}

struct TaskWaker {
    id: u64,
    ready: Arc<Mutex<ReadyQueue>>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if let Ok(mut q) = self.ready.lock() {
            if q.set.insert(self.id) {
                q.order.push(self.id);
            }
        }
    }
}

struct Timer {
    waker: Option<Waker>,
}

/// A simulated deployment: executor, clock, disk, network and mesh.
pub struct World {
    pub seed: u64,
    pub config: SimConfig,
    rng: RefCell<StdRng>,
    /// Virtual nanoseconds since the start of the run.
    clock: Cell<u64>,
    /// Wall-clock milliseconds at virtual time zero.
    epoch_ms: i64,
    tasks: RefCell<BTreeMap<u64, Slot>>,
    ready: Arc<Mutex<ReadyQueue>>,
    next_task: Cell<u64>,
    current_task: Cell<Option<(u64, NodeId)>>,
    timers: RefCell<BinaryHeap<Reverse<(u64, u64)>>>,
    timer_slots: RefCell<HashMap<u64, Timer>>,
    next_timer: Cell<u64>,
    steps: Cell<u64>,
    /// Real-time start of the poll in progress, for the watchdog.
    poll_started: Arc<Mutex<Option<(std::time::Instant, u64)>>>,
    pub disk: disk::Disk,
    pub net: net::Net,
}

impl World {
    pub fn new(seed: u64, config: SimConfig) -> Rc<World> {
        let mut rng = StdRng::seed_from_u64(seed);
        // Somewhere in 2026, so timestamps look like real ones.
        let epoch_ms = 1_767_225_600_000 + rng.gen_range(0..86_400_000i64);
        let disk = disk::Disk::new(config.disk.clone(), rng.gen());
        Rc::new(World {
            seed,
            config,
            rng: RefCell::new(rng),
            clock: Cell::new(0),
            epoch_ms,
            tasks: RefCell::new(BTreeMap::new()),
            ready: Arc::new(Mutex::new(ReadyQueue::default())),
            next_task: Cell::new(1),
            current_task: Cell::new(None),
            timers: RefCell::new(BinaryHeap::new()),
            timer_slots: RefCell::new(HashMap::new()),
            next_timer: Cell::new(1),
            steps: Cell::new(0),
            poll_started: Arc::new(Mutex::new(None)),
            disk,
            net: net::Net::default(),
        })
    }

    // ---- randomness -------------------------------------------------------

    /// A random number from the run's seeded generator.
    pub fn rand_u64(&self) -> u64 {
        self.rng.borrow_mut().gen()
    }

    /// True with probability `p`.
    pub fn chance(&self, p: f64) -> bool {
        p > 0.0 && self.rng.borrow_mut().gen_bool(p.min(1.0))
    }

    /// Uniform in `range`.
    pub fn rand_range(&self, range: std::ops::Range<u64>) -> u64 {
        if range.is_empty() {
            return range.start;
        }
        self.rng.borrow_mut().gen_range(range)
    }

    // ---- time -------------------------------------------------------------

    /// Task polls so far.
    pub fn steps(&self) -> u64 {
        self.steps.get()
    }

    /// Virtual time since the start of the run.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.clock.get())
    }

    /// Simulated wall clock, in ms since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        self.epoch_ms + (self.clock.get() / 1_000_000) as i64
    }

    fn advance(&self, ns: u64) {
        self.clock.set(self.clock.get().saturating_add(ns));
    }

    /// Register a timer firing at virtual time `deadline_ns`.
    fn add_timer(&self, deadline_ns: u64) -> u64 {
        let id = self.next_timer.get();
        self.next_timer.set(id + 1);
        self.timers.borrow_mut().push(Reverse((deadline_ns, id)));
        self.timer_slots.borrow_mut().insert(id, Timer { waker: None });
        id
    }

    fn fire_due_timers(&self) {
        let now = self.clock.get();
        loop {
            let due = {
                let mut heap = self.timers.borrow_mut();
                match heap.peek() {
                    Some(Reverse((at, _))) if *at <= now => heap.pop().map(|Reverse((_, id))| id),
                    _ => None,
                }
            };
            let Some(id) = due else { break };
            let waker = self.timer_slots.borrow_mut().get_mut(&id).and_then(|t| t.waker.take());
            self.timer_slots.borrow_mut().remove(&id);
            if let Some(w) = waker {
                w.wake();
            }
        }
    }

    fn next_timer_deadline(&self) -> Option<u64> {
        let mut heap = self.timers.borrow_mut();
        while let Some(Reverse((at, id))) = heap.peek().copied() {
            if self.timer_slots.borrow().contains_key(&id) {
                return Some(at);
            }
            heap.pop();
        }
        None
    }

    // ---- tasks ------------------------------------------------------------

    /// The node of the task being polled (0 outside any task).
    pub fn current_node(&self) -> NodeId {
        self.current_task.get().map(|(_, n)| n).unwrap_or(0)
    }

    /// Spawn a task on `node`.
    pub fn spawn_on<T: 'static>(&self, node: NodeId, fut: impl Future<Output = T> + 'static) -> Task<T> {
        let state = Rc::new(RefCell::new(JoinState::<T> {
            out: None,
            finished: false,
            waker: None,
        }));
        let st = state.clone();
        let wrapped = async move {
            let v = fut.await;
            let waker = {
                let mut s = st.borrow_mut();
                s.out = Some(v);
                s.finished = true;
                s.waker.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
        };
        let id = self.next_task.get();
        self.next_task.set(id + 1);
        self.tasks.borrow_mut().insert(
            id,
            Slot {
                fut: Some(Box::pin(wrapped)),
                node,
                cancelled: false,
            },
        );
        self.wake_task(id);
        Task {
            id,
            state,
            detached: false,
        }
    }

    /// Spawn on the current task's node.
    pub fn spawn<T: 'static>(&self, fut: impl Future<Output = T> + 'static) -> Task<T> {
        self.spawn_on(self.current_node(), fut)
    }

    fn wake_task(&self, id: u64) {
        if let Ok(mut q) = self.ready.lock() {
            if q.set.insert(id) {
                q.order.push(id);
            }
        }
    }

    fn cancel(&self, id: u64) {
        let removed = {
            let mut tasks = self.tasks.borrow_mut();
            match tasks.get_mut(&id) {
                Some(slot) if slot.fut.is_none() => {
                    slot.cancelled = true; // being polled right now
                    None
                }
                Some(_) => tasks.remove(&id),
                None => None,
            }
        };
        drop(removed); // outside the borrow: dropping may cancel others
    }

    /// Tasks of `node` that are alive.
    pub fn task_count(&self, node: NodeId) -> usize {
        self.tasks.borrow().values().filter(|s| s.node == node).count()
    }

    /// Drop every task of `node` (a process crash). Disk contents are left
    /// as the page cache had them; add [`disk::Disk::power_loss`] for a
    /// power failure.
    pub fn kill_node(&self, node: NodeId) {
        let current = self.current_task.get().map(|(id, _)| id);
        let removed: Vec<Slot> = {
            let mut tasks = self.tasks.borrow_mut();
            let ids: Vec<u64> = tasks
                .iter()
                .filter(|(id, s)| s.node == node && Some(**id) != current)
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter().filter_map(|id| tasks.remove(&id)).collect()
        };
        if let Some(id) = current {
            if let Some(slot) = self.tasks.borrow_mut().get_mut(&id) {
                if slot.node == node {
                    slot.cancelled = true;
                }
            }
        }
        self.net.kill_node(node);
        drop(removed);
    }

    fn pick_ready(&self) -> Option<u64> {
        let mut q = self.ready.lock().ok()?;
        if q.order.is_empty() {
            return None;
        }
        let i = self.rng.borrow_mut().gen_range(0..q.order.len());
        let id = q.order.swap_remove(i);
        q.set.remove(&id);
        Some(id)
    }

    fn poll_task(self: &Rc<Self>, id: u64) {
        let (mut fut, node) = {
            let mut tasks = self.tasks.borrow_mut();
            let Some(slot) = tasks.get_mut(&id) else { return };
            let Some(fut) = slot.fut.take() else { return };
            (fut, slot.node)
        };
        let waker = Waker::from(Arc::new(TaskWaker {
            id,
            ready: self.ready.clone(),
        }));
        let mut cx = Context::from_waker(&waker);
        let prev = self.current_task.replace(Some((id, node)));
        if let Ok(mut p) = self.poll_started.lock() {
            *p = Some((std::time::Instant::now(), self.seed));
        }
        let done = fut.as_mut().poll(&mut cx).is_ready();
        if let Ok(mut p) = self.poll_started.lock() {
            *p = None;
        }
        self.current_task.set(prev);
        let cost = self.config.max_poll_cost.as_nanos() as u64;
        if cost > 0 {
            let c = self.rng.borrow_mut().gen_range(0..=cost);
            self.advance(c);
        }
        {
            let mut tasks = self.tasks.borrow_mut();
            match tasks.get_mut(&id) {
                Some(slot) if done || slot.cancelled => {
                    tasks.remove(&id);
                }
                Some(slot) => {
                    slot.fut = Some(fut);
                    return;
                }
                None => {}
            }
        }
        // Dropped outside the borrow: dropping a future may cancel others.
        drop(fut);
    }

    /// Run the world until `root` (spawned on `node`) completes.
    pub fn run<T: 'static>(
        self: &Rc<Self>,
        node: NodeId,
        root: impl Future<Output = T> + 'static,
    ) -> Result<T, SimError> {
        let _guard = Enter::new(self.clone());
        let watchdog = Watchdog::start(self.poll_started.clone(), self.config.max_poll_wall);
        let mut task = self.spawn_on(node, root);
        task.detached = true; // never cancel the root on drop
        let trace = std::env::var_os("RINGLOG_SIM_TRACE").is_some();
        let result = loop {
            if let Some(v) = task.try_take() {
                break Ok(v);
            }
            self.fire_due_timers();
            if let Some(id) = self.pick_ready() {
                let n = self.steps.get() + 1;
                self.steps.set(n);
                if n > self.config.max_steps {
                    break Err(SimError::TooManySteps(n));
                }
                if trace {
                    eprintln!("sim step {n} task {id} at {}", self.clock.get());
                }
                self.poll_task(id);
                continue;
            }
            match self.next_timer_deadline() {
                Some(at) => {
                    if at > self.clock.get() {
                        self.clock.set(at);
                    }
                }
                None => break Err(SimError::Deadlock(self.elapsed())),
            }
        };
        drop(watchdog);
        result
    }

    /// Drop every task (end of a run), so that nothing outlives the world.
    pub fn shutdown(&self) {
        let all: Vec<Slot> = std::mem::take(&mut *self.tasks.borrow_mut()).into_values().collect();
        drop(all);
        self.timer_slots.borrow_mut().clear();
        self.timers.borrow_mut().clear();
    }
}

/// Sets the thread's current world for the duration of a run.
struct Enter {
    prev: Option<Rc<World>>,
    prev_active: bool,
}

impl Enter {
    fn new(world: Rc<World>) -> Self {
        let prev = CURRENT.with(|c| c.borrow_mut().replace(world));
        let prev_active = ACTIVE.with(|a| a.replace(true));
        Enter { prev, prev_active }
    }
}

impl Drop for Enter {
    fn drop(&mut self) {
        let prev = self.prev.take();
        CURRENT.with(|c| *c.borrow_mut() = prev);
        ACTIVE.with(|a| a.set(self.prev_active));
    }
}

/// Aborts the process when one poll runs for too long in real time (a task
/// that never yields): the seed is printed so the run can be replayed.
struct Watchdog {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    fn start(poll_started: Arc<Mutex<Option<(std::time::Instant, u64)>>>, limit: Duration) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sim-watchdog".into())
            .spawn(move || {
                while !s.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    let started = poll_started.lock().ok().and_then(|p| *p);
                    if let Some((at, seed)) = started {
                        if at.elapsed() > limit {
                            eprintln!(
                                "simulation seed {seed}: a task has been running for {:?} without \
                                 yielding (it holds its shard); aborting",
                                at.elapsed()
                            );
                            std::process::abort();
                        }
                    }
                }
            })
            .ok();
        Watchdog { stop, thread }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct JoinState<T> {
    out: Option<T>,
    finished: bool,
    waker: Option<Waker>,
}

/// Handle of a simulated task; dropping it cancels the task unless detached.
pub struct Task<T> {
    id: u64,
    state: Rc<RefCell<JoinState<T>>>,
    detached: bool,
}

impl<T> Task<T> {
    pub fn detach(mut self) {
        self.detached = true;
    }

    fn try_take(&self) -> Option<T> {
        self.state.borrow_mut().out.take()
    }
}

impl<T> Future for Task<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut s = self.state.borrow_mut();
        if let Some(v) = s.out.take() {
            return Poll::Ready(v);
        }
        match &mut s.waker {
            Some(w) => w.clone_from(cx.waker()),
            None => s.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        if self.detached || self.state.borrow().finished {
            return;
        }
        if let Some(w) = current() {
            w.cancel(self.id);
        }
    }
}

/// A virtual-time sleep.
pub struct Sleep {
    deadline: u64,
    timer: Option<u64>,
}

/// Sleep for `d` of virtual time.
pub fn sleep(d: Duration) -> Sleep {
    let w = world();
    Sleep {
        deadline: w.clock.get().saturating_add(d.as_nanos().min(u64::MAX as u128) as u64),
        timer: None,
    }
}

/// Sleep until virtual time `deadline` (as returned by [`World::elapsed`]).
pub fn sleep_until(deadline: Duration) -> Sleep {
    Sleep {
        deadline: deadline.as_nanos().min(u64::MAX as u128) as u64,
        timer: None,
    }
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let w = world();
        if w.clock.get() >= self.deadline {
            if let Some(id) = self.timer.take() {
                w.timer_slots.borrow_mut().remove(&id);
            }
            return Poll::Ready(());
        }
        let id = match self.timer {
            Some(id) => id,
            None => {
                let id = w.add_timer(self.deadline);
                self.timer = Some(id);
                id
            }
        };
        let mut slots = w.timer_slots.borrow_mut();
        match slots.get_mut(&id) {
            Some(t) => match &mut t.waker {
                Some(old) => old.clone_from(cx.waker()),
                None => t.waker = Some(cx.waker().clone()),
            },
            None => {
                // Fired but polled before the clock was read as past the
                // deadline cannot happen; re-arm defensively.
                drop(slots);
                let id = w.add_timer(self.deadline);
                self.timer = Some(id);
                if let Some(t) = w.timer_slots.borrow_mut().get_mut(&id) {
                    t.waker = Some(cx.waker().clone());
                }
            }
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(id) = self.timer.take() {
            if let Some(w) = current() {
                w.timer_slots.borrow_mut().remove(&id);
            }
        }
    }
}

/// Give other tasks a chance to run (sometimes: the choice is part of the
/// seeded schedule).
pub async fn maybe_yield() {
    let w = world();
    if w.chance(0.25) {
        YieldNow(false).await
    }
}

/// Yield to the scheduler once.
pub struct YieldNow(pub bool);

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_time_jumps_and_runs_repeat() {
        let trace = |seed| {
            let w = World::new(seed, SimConfig::default());
            let log = Rc::new(RefCell::new(Vec::new()));
            let l = log.clone();
            let out = w.run(1, async move {
                let mut tasks = Vec::new();
                for i in 0..5u64 {
                    let l = l.clone();
                    tasks.push(world().spawn(async move {
                        sleep(Duration::from_secs(3600 * (5 - i))).await;
                        l.borrow_mut().push(i);
                    }));
                }
                for t in tasks {
                    t.await;
                }
                world().elapsed()
            });
            w.shutdown();
            let order = log.borrow().clone();
            (out, order)
        };
        let (elapsed, order) = trace(7);
        let elapsed = elapsed.expect("run completes");
        assert!(elapsed >= Duration::from_secs(5 * 3600), "{elapsed:?}");
        assert_eq!(order, vec![4, 3, 2, 1, 0]);
        assert_eq!(trace(7).1, order);
    }

    #[test]
    fn deadlock_is_reported() {
        let w = World::new(1, SimConfig::default());
        let r = w.run(1, futures::future::pending::<()>());
        assert!(matches!(r, Err(SimError::Deadlock(_))));
        w.shutdown();
    }

    #[test]
    fn killing_a_node_drops_its_tasks() {
        let w = World::new(3, SimConfig::default());
        let dropped = Rc::new(Cell::new(0));
        struct D(Rc<Cell<i32>>);
        impl Drop for D {
            fn drop(&mut self) {
                self.0.set(self.0.get() + 1);
            }
        }
        let d = dropped.clone();
        let r = w.run(9, async move {
            for _ in 0..3 {
                let guard = D(d.clone());
                world()
                    .spawn_on(2, async move {
                        let _g = guard;
                        futures::future::pending::<()>().await;
                    })
                    .detach();
            }
            sleep(Duration::from_millis(5)).await;
            assert_eq!(world().task_count(2), 3);
            world().kill_node(2);
            world().task_count(2)
        });
        assert_eq!(r, Ok(0));
        assert_eq!(dropped.get(), 3);
        w.shutdown();
    }
}
