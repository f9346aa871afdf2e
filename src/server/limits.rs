//! A shard's connection limits: `max.connections` and
//! `max.connections.per.ip`, each split per shard as ceil(limit / shards)
//! because shards accept connections independently (SO_REUSEPORT).
//!
//! As in Kafka: when a shard holds its share of `max.connections` it stops
//! accepting until one of its connections closes (new clients wait in the
//! listen backlog); a connection from an address that already holds its
//! share of `max.connections.per.ip` is accepted and closed at once.

use crate::io::rand::HashMap;
use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;

use crate::io::notify::Notify;

#[derive(Default)]
struct Counts {
    active: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Open connections of one shard, by peer address.
#[derive(Clone, Default)]
pub struct ConnectionLimits {
    counts: Rc<RefCell<Counts>>,
    /// Notified whenever a connection closes.
    pub closed: Notify,
}

/// A counted connection; dropping it gives the slot back.
pub struct ConnectionSlot {
    limits: ConnectionLimits,
    ip: Option<IpAddr>,
}

impl ConnectionLimits {
    pub fn new() -> Self {
        Self::default()
    }

    /// Connections open on this shard.
    pub fn active(&self) -> usize {
        self.counts.borrow().active
    }

    /// Connections open on this shard from `ip`.
    pub fn from_ip(&self, ip: IpAddr) -> usize {
        self.counts.borrow().per_ip.get(&ip).copied().unwrap_or(0)
    }

    /// Count a new connection from `ip` unless that address already holds
    /// `per_ip_limit` connections here (then None: close it).
    pub fn admit(&self, ip: Option<IpAddr>, per_ip_limit: usize) -> Option<ConnectionSlot> {
        let mut c = self.counts.borrow_mut();
        if let Some(ip) = ip {
            let n = c.per_ip.entry(ip).or_insert(0);
            if *n >= per_ip_limit {
                if *n == 0 {
                    c.per_ip.remove(&ip);
                }
                return None;
            }
            *n += 1;
        }
        c.active += 1;
        Some(ConnectionSlot {
            limits: self.clone(),
            ip,
        })
    }

    /// Wait until fewer than `limit` connections are open here.
    pub async fn below(&self, limit: usize) {
        loop {
            let listener = self.closed.listen();
            if self.active() < limit {
                return;
            }
            listener.await;
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        {
            let mut c = self.limits.counts.borrow_mut();
            c.active = c.active.saturating_sub(1);
            if let Some(ip) = self.ip {
                if let Some(n) = c.per_ip.get_mut(&ip) {
                    *n -= 1;
                    if *n == 0 {
                        c.per_ip.remove(&ip);
                    }
                }
            }
        }
        self.limits.closed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    #[test]
    fn per_ip_limit_refuses_and_slots_give_back() {
        let l = ConnectionLimits::new();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = l.admit(Some(a), 2).expect("first");
        let s2 = l.admit(Some(a), 2).expect("second");
        assert!(l.admit(Some(a), 2).is_none(), "third from the same address");
        let s3 = l.admit(Some(b), 2).expect("another address");
        assert_eq!(l.active(), 3);
        assert_eq!(l.from_ip(a), 2);
        drop(s1);
        assert_eq!(l.from_ip(a), 1);
        let s4 = l.admit(Some(a), 2).expect("room again");
        drop((s2, s3, s4));
        assert_eq!(l.active(), 0);
        assert_eq!(l.from_ip(a), 0);
        assert!(l.counts.borrow().per_ip.is_empty(), "no entries left behind");
        // A zero limit refuses without leaving an entry.
        assert!(l.admit(Some(a), 0).is_none());
        assert!(l.counts.borrow().per_ip.is_empty());
        // Connections without a known peer count only towards the total.
        let s = l.admit(None, 0).expect("no address");
        assert_eq!(l.active(), 1);
        drop(s);
    }

    #[test]
    fn below_waits_for_a_close() {
        let l = ConnectionLimits::new();
        let s1 = l.admit(None, usize::MAX).unwrap();
        let s2 = l.admit(None, usize::MAX).unwrap();
        let mut cx = Context::from_waker(Waker::noop());
        let mut wait = pin!(l.below(2));
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        assert_eq!(l.closed.waiting(), 1);
        drop(s1);
        assert_eq!(wait.as_mut().poll(&mut cx), Poll::Ready(()));
        drop(s2);
    }
}
