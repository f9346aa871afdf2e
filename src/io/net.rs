//! TCP listener and connections on the current shard.
//!
//! Every shard binds the same port with SO_REUSEPORT (glommio sets it), so
//! the kernel spreads incoming connections across shards. Every pending
//! accept, read and write goes through a [`WakeFilter`]: a connection task
//! may be polled for other reasons (a timer, a shutdown signal) as often as
//! it likes without growing anything inside the runtime.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::{TcpListener, TcpStream};

use super::guard::{filtered, WakeFilter};
use super::sim;
use super::sim::net::{SimListener, SimStream};

/// A live process (pid, command name) with a listening TCP socket on
/// `addr` (or on the same port of the wildcard address, or any address
/// when `addr` is the wildcard), from /proc/net/tcp{,6} and the processes'
/// fd tables. Sockets no live process holds (a killed process's, while the
/// kernel closes them) and processes this user cannot inspect are not
/// reported. Linux only; None elsewhere and on any read error.
pub fn live_listener(addr: SocketAddr) -> Option<(u32, String)> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        inodes.extend(listening_inodes(&text, addr));
    }
    if inodes.is_empty() {
        return None;
    }
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let target = target.to_string_lossy();
            let inode = target
                .strip_prefix("socket:[")
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok());
            if inode.is_some_and(|i| inodes.contains(&i)) {
                let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                return Some((pid, name.trim().to_string()));
            }
        }
    }
    None
}

/// Inodes of the LISTEN sockets of a /proc/net/tcp or tcp6 table that
/// conflict with `addr`.
fn listening_inodes(table: &str, addr: SocketAddr) -> Vec<u64> {
    let mut out = Vec::new();
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
        let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
            continue;
        };
        if *state != "0A" {
            continue;
        }
        let Some((ip_hex, port_hex)) = local.split_once(':') else {
            continue;
        };
        if u16::from_str_radix(port_hex, 16).ok() != Some(addr.port()) {
            continue;
        }
        let Some(ip) = proc_net_ip(ip_hex) else { continue };
        let ours = addr.ip();
        let conflicts = ip.is_unspecified() || ours.is_unspecified() || ip == ours || {
            // A v4-mapped v6 socket against a v4 address, or the reverse.
            let v4 = |a: std::net::IpAddr| match a {
                std::net::IpAddr::V4(v) => Some(v),
                std::net::IpAddr::V6(v) => v.to_ipv4_mapped(),
            };
            v4(ip).is_some() && v4(ip) == v4(ours)
        };
        if let (true, Ok(i)) = (conflicts, inode.parse::<u64>()) {
            out.push(i);
        }
    }
    out
}

/// An address as /proc/net/tcp{,6} print it: 32-bit words in hex, each in
/// host (little-endian on the machines ringlog runs on) byte order.
fn proc_net_ip(hex: &str) -> Option<std::net::IpAddr> {
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    match hex.len() {
        8 => Some(std::net::IpAddr::V4(std::net::Ipv4Addr::from(word(0)?))),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Some(std::net::IpAddr::V6(std::net::Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

enum ListenerKind {
    Glommio(TcpListener),
    Sim(SimListener),
}

/// A listening socket owned by one shard.
pub struct Listener(ListenerKind);

impl Listener {
    /// Bind with SO_REUSEPORT so every shard can bind the same address.
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        if sim::active() {
            return Ok(Listener(ListenerKind::Sim(sim::world().net.bind(addr))));
        }
        TcpListener::bind(addr)
            .map(|l| Listener(ListenerKind::Glommio(l)))
            .map_err(|e| io::Error::other(e.to_string()))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.0 {
            ListenerKind::Glommio(l) => l.local_addr().map_err(|e| io::Error::other(e.to_string())),
            ListenerKind::Sim(l) => Ok(l.local_addr()),
        }
    }

    /// Accept the next connection.
    pub async fn accept(&self) -> io::Result<Connection> {
        match &self.0 {
            ListenerKind::Glommio(l) => {
                let stream = filtered(l.accept())
                    .await
                    .map_err(|e| io::Error::other(e.to_string()))?;
                let _ = stream.set_nodelay(true);
                let peer = stream.peer_addr().ok();
                Ok(Connection {
                    kind: ConnKind::Glommio(stream),
                    peer,
                })
            }
            ListenerKind::Sim(l) => {
                let s = futures::future::poll_fn(|cx| l.poll_accept(cx)).await?;
                let peer = Some(s.peer_addr());
                Ok(Connection {
                    kind: ConnKind::Sim(s),
                    peer,
                })
            }
        }
    }
}

enum ConnKind {
    Glommio(TcpStream),
    Sim(SimStream),
}

/// A TCP connection.
pub struct Connection {
    kind: ConnKind,
    peer: Option<SocketAddr>,
}

/// Connect to `addr` (simulated clients and tools running on an executor).
pub async fn connect(addr: SocketAddr) -> io::Result<Connection> {
    if sim::active() {
        let s = sim::world().net.connect(addr)?;
        return Ok(Connection {
            kind: ConnKind::Sim(s),
            peer: Some(addr),
        });
    }
    let stream = filtered(TcpStream::connect(addr))
        .await
        .map_err(|e| io::Error::other(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    Ok(Connection {
        kind: ConnKind::Glommio(stream),
        peer: Some(addr),
    })
}

impl Connection {
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Split into independently usable read and write halves. Both halves
    /// live on this shard; the stream keeps separate read and write sources,
    /// so a pending read never blocks a write.
    pub fn split(self) -> (ReadHalf, WriteHalf) {
        match self.kind {
            ConnKind::Glommio(s) => {
                let shared = Rc::new(RefCell::new(s));
                (
                    ReadHalf(Half::Glommio(shared.clone(), WakeFilter::new())),
                    WriteHalf(Half::Glommio(shared, WakeFilter::new())),
                )
            }
            ConnKind::Sim(s) => {
                let (r, w) = s.split();
                (ReadHalf(Half::Sim(r)), WriteHalf(Half::Sim(w)))
            }
        }
    }
}

enum Half {
    Glommio(Rc<RefCell<TcpStream>>, WakeFilter),
    Sim(SimStream),
}

impl Half {
    fn read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self {
            Half::Glommio(s, filter) => filter.poll(cx, |cx| {
                let mut s = s.borrow_mut();
                Pin::new(&mut *s).poll_read(cx, buf)
            }),
            Half::Sim(s) => Pin::new(s).poll_read(cx, buf),
        }
    }

    fn write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self {
            Half::Glommio(s, filter) => filter.poll(cx, |cx| {
                let mut s = s.borrow_mut();
                Pin::new(&mut *s).poll_write(cx, buf)
            }),
            Half::Sim(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Half::Glommio(s, filter) => filter.poll(cx, |cx| {
                let mut s = s.borrow_mut();
                Pin::new(&mut *s).poll_flush(cx)
            }),
            Half::Sim(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Half::Glommio(s, filter) => filter.poll(cx, |cx| {
                let mut s = s.borrow_mut();
                Pin::new(&mut *s).poll_close(cx)
            }),
            Half::Sim(s) => Pin::new(s).poll_close(cx),
        }
    }
}

/// The reading half of a connection.
pub struct ReadHalf(Half);
/// The writing half of a connection.
pub struct WriteHalf(Half);

impl AsyncRead for ReadHalf {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.get_mut().0.read(cx, buf)
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().0.write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().0.flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().0.close(cx)
    }
}

/// Both halves in one value, for protocols that read and write from one
/// task (the metrics endpoint, simulated clients).
pub struct Duplex {
    pub read: ReadHalf,
    pub write: WriteHalf,
}

impl From<Connection> for Duplex {
    fn from(c: Connection) -> Self {
        let (read, write) = c.split();
        Duplex { read, write }
    }
}

impl AsyncRead for Duplex {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.get_mut().read.0.read(cx, buf)
    }
}

impl AsyncWrite for Duplex {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().write.0.write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().write.0.flush(cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().write.0.close(cx)
    }
}

#[cfg(test)]
mod proc_net_tests {
    use super::{listening_inodes, proc_net_ip};

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:2384 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0
   1: 00000000:2385 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1002 1 0000000000000000 100 0 0 10 0
   2: 0100007F:2384 0100007F:D0F2 01 00000000:00000000 00:00000000 00000000     0        0 1003 1 0000000000000000 20 4 30 10 -1
   3: 0200007F:2386 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1004 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn proc_net_addresses_decode() {
        if cfg!(target_endian = "little") {
            assert_eq!(proc_net_ip("0100007F"), Some("127.0.0.1".parse().unwrap()));
            assert_eq!(
                proc_net_ip("00000000000000000000000001000000"),
                Some("::1".parse().unwrap())
            );
            assert_eq!(
                proc_net_ip("0000000000000000FFFF00000100007F"),
                Some("::ffff:127.0.0.1".parse().unwrap())
            );
        }
        assert_eq!(proc_net_ip("zz"), None);
    }

    #[test]
    fn only_conflicting_listeners_count() {
        if !cfg!(target_endian = "little") {
            return;
        }
        // 127.0.0.1:9092 listening (1001); the established one (1003) is not.
        assert_eq!(listening_inodes(TCP, "127.0.0.1:9092".parse().unwrap()), vec![1001]);
        // The wildcard listener on 9093 conflicts with any address.
        assert_eq!(listening_inodes(TCP, "10.0.0.1:9093".parse().unwrap()), vec![1002]);
        // Another address of the same port does not.
        assert!(listening_inodes(TCP, "127.0.0.1:9094".parse().unwrap()).is_empty());
        // Our wildcard conflicts with a listener on any address.
        assert_eq!(listening_inodes(TCP, "0.0.0.0:9094".parse().unwrap()), vec![1004]);
        assert!(listening_inodes(TCP, "127.0.0.1:1".parse().unwrap()).is_empty());
    }
}
