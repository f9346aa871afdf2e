//! Pinned per-core executors and local task spawning.

use std::future::Future;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

/// A task spawned on the current shard. Dropping it cancels the task unless
/// it was detached.
pub struct Task<T>(glommio::Task<T>);

impl<T> Task<T> {
    /// Let the task run to completion on its own.
    pub fn detach(self) {
        self.0.detach();
    }
}

impl<T> Future for Task<T> {
    type Output = T;
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<T> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

/// Spawn a task on the current shard's executor.
pub fn spawn<T: 'static>(fut: impl Future<Output = T> + 'static) -> Task<T> {
    Task(glommio::spawn_local(fut))
}

/// Spawn a task and let it run to completion on its own.
pub fn spawn_detached<T: 'static>(fut: impl Future<Output = T> + 'static) {
    glommio::spawn_local(fut).detach();
}

/// Yield to other tasks if this one has run for longer than its time slice.
pub async fn yield_if_needed() {
    glommio::yield_if_needed().await
}

/// Handle of a running shard thread.
pub struct ShardThread<T: Send + 'static> {
    inner: glommio::ExecutorJoinHandle<T>,
}

impl<T: Send + 'static> ShardThread<T> {
    /// Wait for the shard's thread to finish.
    pub fn join(self) -> anyhow::Result<T> {
        self.inner
            .join()
            .map_err(|e| anyhow::anyhow!("shard thread failed: {e}"))
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
    let inner = builder
        .spawn(fut_gen)
        .map_err(|e| anyhow::anyhow!("cannot start executor {}: {e}", spec.name))?;
    Ok(ShardThread { inner })
}

/// Utilization figures of the current executor, for metrics.
pub fn executor_busy_time() -> Duration {
    glommio::executor().executor_stats().total_runtime()
}
