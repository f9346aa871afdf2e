//! State shared by the generator's threads: the clock, the run's time
//! window, stop flags and counters.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::config::Settings;

/// Wall-clock nanoseconds since the Unix epoch, advancing monotonically
/// (read from a monotonic clock anchored once at start).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
    base_unix_ns: u64,
}

impl Clock {
    pub fn new() -> Clock {
        let base_unix_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Clock {
            base: Instant::now(),
            base_unix_ns,
        }
    }

    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.base_unix_ns.saturating_add(self.base.elapsed().as_nanos() as u64)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// Counters summed over all connections.
#[derive(Debug, Default)]
pub struct Counters {
    /// Produce: acknowledged (or sent, with acks=0) messages and payload bytes.
    pub produced_msgs: AtomicU64,
    pub produced_bytes: AtomicU64,
    /// ... of which acknowledged inside the measured window.
    pub produced_window_msgs: AtomicU64,
    pub produced_window_bytes: AtomicU64,
    pub last_ack_ns: AtomicU64,
    /// Messages that got an error code.
    pub produce_errors: AtomicU64,
    pub consumed_msgs: AtomicU64,
    pub consumed_bytes: AtomicU64,
    pub consumed_window_msgs: AtomicU64,
    pub consumed_window_bytes: AtomicU64,
    pub last_consume_ns: AtomicU64,
    pub consume_errors: AtomicU64,
}

/// Everything the threads of a run share.
#[derive(Debug)]
pub struct Shared {
    pub settings: Settings,
    pub topics: Vec<String>,
    pub clock: Clock,
    /// When producers start; the measured window is `warm_ns .. end_ns`.
    start_ns: AtomicU64,
    warm_ns: AtomicU64,
    end_ns: AtomicU64,
    /// Abort: a connection failed, everything stops.
    pub abort: AtomicBool,
    /// Consumers stop (set once everything produced was read, or on timeout).
    pub stop_consumers: AtomicBool,
    pub counters: Counters,
}

impl Shared {
    pub fn new(settings: Settings, topics: Vec<String>) -> Shared {
        Shared {
            settings,
            topics,
            clock: Clock::new(),
            start_ns: AtomicU64::new(u64::MAX),
            warm_ns: AtomicU64::new(u64::MAX),
            end_ns: AtomicU64::new(u64::MAX),
            abort: AtomicBool::new(false),
            stop_consumers: AtomicBool::new(false),
            counters: Counters::default(),
        }
    }

    /// Fix the run's window: start in `lead` from now, then warmup, then
    /// the measured duration (unbounded for a zero duration).
    pub fn set_window(&self, lead: Duration) {
        let s = &self.settings;
        let start = self.clock.now_ns().saturating_add(lead.as_nanos() as u64);
        let warm = start.saturating_add(s.warmup.as_nanos() as u64);
        let end = if s.duration.is_zero() {
            u64::MAX
        } else {
            warm.saturating_add(s.duration.as_nanos() as u64)
        };
        self.start_ns.store(start, Relaxed);
        self.warm_ns.store(warm, Relaxed);
        self.end_ns.store(end, Relaxed);
    }

    pub fn start_ns(&self) -> u64 {
        self.start_ns.load(Relaxed)
    }
    pub fn warm_ns(&self) -> u64 {
        self.warm_ns.load(Relaxed)
    }
    pub fn end_ns(&self) -> u64 {
        self.end_ns.load(Relaxed)
    }

    /// True if `t` is inside the measured window.
    #[inline]
    pub fn in_window(&self, t: u64) -> bool {
        t >= self.warm_ns() && t <= self.end_ns()
    }

    pub fn aborted(&self) -> bool {
        self.abort.load(Relaxed)
    }

    pub fn fail(&self) {
        self.abort.store(true, Relaxed);
    }
}

/// Sleep until the clock reads `t_ns` (or `stop` says so), in slices of at
/// most 50 ms.
pub fn sleep_until(clock: &Clock, t_ns: u64, stop: &dyn Fn() -> bool) {
    loop {
        let now = clock.now_ns();
        if now >= t_ns || stop() {
            return;
        }
        let d = (t_ns - now).min(50_000_000);
        std::thread::sleep(Duration::from_nanos(d));
    }
}

/// Counts requests in flight on one connection.
#[derive(Debug)]
pub struct Permits {
    state: Mutex<(usize, bool)>,
    cv: Condvar,
    max: usize,
}

impl Permits {
    pub fn new(max: usize) -> Permits {
        Permits {
            state: Mutex::new((0, false)),
            cv: Condvar::new(),
            max: max.max(1),
        }
    }

    /// Wait for a free slot. False if the permits were closed or `stop()`.
    pub fn acquire(&self, stop: &dyn Fn() -> bool) -> bool {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if g.1 || stop() {
                return false;
            }
            if g.0 < self.max {
                g.0 += 1;
                return true;
            }
            g = match self.cv.wait_timeout(g, Duration::from_millis(50)) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }

    pub fn release(&self) {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        g.0 = g.0.saturating_sub(1);
        self.cv.notify_one();
    }

    /// No more permits (the connection failed).
    pub fn close(&self) {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        g.1 = true;
        self.cv.notify_all();
    }

    pub fn in_flight(&self) -> usize {
        self.state.lock().map(|g| g.0).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn window() {
        let s = Settings {
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(2),
            ..Settings::default()
        };
        let sh = Shared::new(s, vec![]);
        assert!(!sh.in_window(0));
        sh.set_window(Duration::ZERO);
        assert_eq!(sh.warm_ns() - sh.start_ns(), 1_000_000_000);
        assert_eq!(sh.end_ns() - sh.warm_ns(), 2_000_000_000);
        assert!(sh.in_window(sh.warm_ns()));
        assert!(!sh.in_window(sh.end_ns() + 1));
        let unbounded = Shared::new(
            Settings {
                duration: Duration::ZERO,
                ..Settings::default()
            },
            vec![],
        );
        unbounded.set_window(Duration::ZERO);
        assert_eq!(unbounded.end_ns(), u64::MAX);
    }

    #[test]
    fn clock_moves_forward() {
        let c = Clock::new();
        let a = c.now_ns();
        let b = c.now_ns();
        assert!(b >= a);
        assert!(a > 1_600_000_000_000_000_000);
    }

    #[test]
    fn permits_limit_and_close() {
        let p = Arc::new(Permits::new(2));
        let never = || false;
        assert!(p.acquire(&never));
        assert!(p.acquire(&never));
        assert_eq!(p.in_flight(), 2);
        // A third acquire waits until a release.
        let p2 = p.clone();
        let t = std::thread::spawn(move || p2.acquire(&|| false));
        std::thread::sleep(Duration::from_millis(20));
        p.release();
        assert!(t.join().unwrap());
        // Closing wakes waiters with false.
        let p3 = p.clone();
        let t = std::thread::spawn(move || p3.acquire(&|| false));
        std::thread::sleep(Duration::from_millis(20));
        p.close();
        assert!(!t.join().unwrap());
        assert!(!p.acquire(&never));
        let q = Permits::new(1);
        assert!(!q.acquire(&|| true));
    }
}
