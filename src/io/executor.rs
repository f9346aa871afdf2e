//! Pinned per-core executors and local task spawning.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

use super::sim;

thread_local! {
    /// Set on the threads of glommio executors started by [`start_executor`].
    static IN_EXECUTOR: Cell<bool> = const { Cell::new(false) };
}

/// Whether the current thread runs a production (glommio) executor.
pub(crate) fn in_glommio() -> bool {
    IN_EXECUTOR.with(|c| c.get())
}

enum Inner<T> {
    Glommio(glommio::Task<T>),
    Sim(sim::Task<T>),
}

/// A task spawned on the current shard. Dropping it cancels the task unless
/// it was detached.
pub struct Task<T>(Inner<T>);

impl<T> Task<T> {
    /// Let the task run to completion on its own.
    pub fn detach(self) {
        match self.0 {
            Inner::Glommio(t) => {
                t.detach();
            }
            Inner::Sim(t) => t.detach(),
        }
    }
}

impl<T> Future for Task<T> {
    type Output = T;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match &mut self.0 {
            Inner::Glommio(t) => Pin::new(t).poll(cx),
            Inner::Sim(t) => Pin::new(t).poll(cx),
        }
    }
}

/// Spawn a task on the current shard's executor.
pub fn spawn<T: 'static>(fut: impl Future<Output = T> + 'static) -> Task<T> {
    if sim::active() {
        return Task(Inner::Sim(sim::world().spawn(fut)));
    }
    Task(Inner::Glommio(glommio::spawn_local(fut)))
}

/// Spawn background work (the log cleaner) in its own task queue with a
/// small share of the core: when the shard is busy with requests, the
/// scheduler gives the queue about `shares / (shares + 1000)` of the time
/// (the default queue has 1000 shares), and all of it when idle. The queue
/// is created once per shard and name. In a simulation, a plain task.
pub fn spawn_background<T: 'static>(
    name: &'static str,
    shares: usize,
    fut: impl Future<Output = T> + 'static,
) -> Result<Task<T>, String> {
    if sim::active() {
        return Ok(Task(Inner::Sim(sim::world().spawn(fut))));
    }
    thread_local! {
        static QUEUES: std::cell::RefCell<Vec<(&'static str, glommio::TaskQueueHandle)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    let queue = QUEUES.with(|q| {
        let mut q = q.borrow_mut();
        if let Some((_, h)) = q.iter().find(|(n, _)| *n == name) {
            return *h;
        }
        let h = glommio::executor().create_task_queue(
            glommio::Shares::Static(shares.max(1)),
            glommio::Latency::NotImportant,
            name,
        );
        q.push((name, h));
        h
    });
    glommio::spawn_local_into(fut, queue)
        .map(|t| Task(Inner::Glommio(t)))
        .map_err(|e| format!("spawning into task queue {name}: {e}"))
}

/// Spawn a task and let it run to completion on its own.
pub fn spawn_detached<T: 'static>(fut: impl Future<Output = T> + 'static) {
    spawn(fut).detach();
}

/// Yield to other tasks if this one has run for longer than its time slice
/// (in a simulation: sometimes, as the seeded schedule decides).
pub async fn yield_if_needed() {
    if sim::active() {
        sim::maybe_yield().await
    } else {
        glommio::yield_if_needed().await
    }
}

thread_local! {
    /// Blocking-pool calls of this executor whose result has not yet come
    /// back, and a signal for when the count drops to zero.
    static BLOCKING_IN_FLIGHT: (Cell<usize>, super::notify::Notify) =
        (const { Cell::new(0) }, super::notify::Notify::new());
}

/// Counts one blocking-pool call as in flight until dropped.
struct InFlight;

impl InFlight {
    fn new() -> Self {
        BLOCKING_IN_FLIGHT.with(|(n, _)| n.set(n.get() + 1));
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        BLOCKING_IN_FLIGHT.with(|(n, done)| {
            n.set(n.get().saturating_sub(1));
            if n.get() == 0 {
                done.notify_all();
            }
        });
    }
}

/// Wait until every blocking-pool call of this executor has returned its
/// result. glommio 0.9's pool threads panic ("failed to send response") when
/// they finish a call after their executor is gone, so an executor must not
/// end while a call (even one whose caller was cancelled) is in flight.
async fn drain_blocking() {
    loop {
        let (pending, listener) = BLOCKING_IN_FLIGHT.with(|(n, done)| (n.get(), done.listen()));
        if pending == 0 {
            return;
        }
        listener.await;
    }
}

/// Run a blocking function off the shard thread (glommio's blocking pool),
/// or inline where no executor runs (start-up on the main thread).
///
/// The call runs in a detached task that owns it to the end, so cancelling
/// the caller never leaves a pool call the executor does not wait for.
pub(crate) async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    if !in_glommio() {
        return f();
    }
    pooled(async move { glommio::executor().spawn_blocking(f).await }).await
}

/// Run a future that waits on glommio's blocking pool (`spawn_blocking`, or
/// a glommio file operation glommio runs there, such as truncate) in a
/// detached task counted as in flight until it completes, so the executor
/// outlives the pool call even when the caller is cancelled. The future must
/// own what the pool call uses (an `Rc` of the file, not a borrow).
pub(crate) async fn pooled<R: 'static>(fut: impl Future<Output = R> + 'static) -> R {
    if !in_glommio() {
        return fut.await;
    }
    let (tx, rx) = futures::channel::oneshot::channel();
    let guard = InFlight::new();
    glommio::spawn_local(async move {
        let _guard = guard;
        let r = fut.await;
        let _ = tx.send(r);
    })
    .detach();
    match rx.await {
        Ok(r) => r,
        // The detached task is only dropped with its executor, which then
        // drops this caller too: it cannot observe the cancellation.
        Err(_) => std::future::pending().await,
    }
}

/// Handle of a running shard thread.
pub struct ShardThread<T: Send + 'static> {
    inner: glommio::ExecutorJoinHandle<()>,
    result: std::sync::mpsc::Receiver<T>,
}

impl<T: Send + 'static> ShardThread<T> {
    /// Wait for the shard's future to finish (its executor then idles until
    /// the process exits: see [`start_executor`]).
    pub fn join(self) -> anyhow::Result<T> {
        match self.result.recv() {
            Ok(out) => Ok(out),
            // The thread ended without a result: it panicked.
            Err(_) => match self.inner.join() {
                Ok(()) => Err(anyhow::anyhow!("shard thread ended without a result")),
                Err(e) => Err(anyhow::anyhow!("shard thread failed: {e}")),
            },
        }
    }
}

/// Settings for one shard's executor.
#[derive(Clone, Debug)]
pub struct ExecutorSpec {
    pub name: String,
    /// CPU to pin to, or None to let the OS place the thread.
    pub cpu: Option<usize>,
    /// Memory reserved for io_uring registered buffers.
    pub io_memory: usize,
    /// How long the executor spins before parking when idle.
    pub spin_before_park: Option<Duration>,
}

/// Threshold (ms past the 10 ms preemption slice) above which a task that
/// keeps its shard busy without yielding is reported; 0 = off.
static STALL_THRESHOLD_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Report tasks that hold their shard longer than the preemption slice plus
/// `threshold` (glommio's stall detector: a timer signal samples the
/// shard's stack). For diagnosis: it costs a timer syscall per task-queue
/// run. Applies to executors started afterwards.
pub fn set_stall_detection(threshold: Option<Duration>) {
    let ms = threshold
        .map(|d| d.as_millis().clamp(1, u64::MAX as u128) as u64)
        .unwrap_or(0);
    STALL_THRESHOLD_MS.store(ms, std::sync::atomic::Ordering::Relaxed);
}

/// Reports a stall: glommio's default handler logs a warning with the
/// shard's stack ("stall-detector … went over-budget").
#[derive(Debug)]
struct StallReporter {
    threshold: Duration,
}

impl glommio::StallDetectionHandler for StallReporter {
    fn threshold(&self, _q: glommio::TaskQueueHandle, _max: Duration) -> Option<Duration> {
        Some(self.threshold)
    }
}

/// Run `f` on a fresh, unpinned executor thread and wait for it (tests of
/// code that needs the executor: files, timers, tasks). Panics if `f` does.
#[cfg(test)]
pub fn run_test_executor<G, F>(name: &str, f: G)
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = ()> + 'static,
{
    let spec = ExecutorSpec {
        name: name.into(),
        cpu: None,
        io_memory: 1 << 20,
        spin_before_park: None,
    };
    start_executor(spec, f).unwrap().join().unwrap()
}

/// Start an executor on its own thread, pinned when `spec.cpu` is set.
pub fn start_executor<G, F, T>(spec: ExecutorSpec, fut_gen: G) -> anyhow::Result<ShardThread<T>>
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let placement = match spec.cpu {
        Some(cpu) => Placement::Fixed(cpu),
        None => Placement::Unbound,
    };
    let mut builder = LocalExecutorBuilder::new(placement)
        .name(&spec.name)
        .io_memory(spec.io_memory)
        .preempt_timer(Duration::from_millis(10));
    if let Some(spin) = spec.spin_before_park {
        builder = builder.spin_before_park(spin);
    }
    let stall_ms = STALL_THRESHOLD_MS.load(std::sync::atomic::Ordering::Relaxed);
    if stall_ms > 0 {
        builder = builder.detect_stalls(Some(Box::new(StallReporter {
            threshold: Duration::from_millis(stall_ms),
        })));
    }
    let (tx, result) = std::sync::mpsc::sync_channel(1);
    let inner = builder
        .spawn(move || {
            IN_EXECUTOR.with(|c| c.set(true));
            let fut = fut_gen();
            async move {
                let out = fut.await;
                drain_blocking().await;
                let _ = tx.send(out);
                // The executor is never torn down: glommio 0.9's blocking-pool
                // threads panic ("failed to send response") when a pool call
                // completes after their executor is dropped, and calls the
                // executor does not see (glommio's own) cannot all be waited
                // for. An idle executor parks in the kernel at no cost until
                // the process exits.
                std::future::pending::<()>().await
            }
        })
        .map_err(|e| anyhow::anyhow!("cannot start executor {}: {e}", spec.name))?;
    Ok(ShardThread { inner, result })
}

/// Time the current executor spent running tasks, for metrics.
pub fn executor_busy_time() -> Duration {
    if in_glommio() {
        glommio::executor().executor_stats().total_runtime()
    } else {
        Duration::ZERO
    }
}
