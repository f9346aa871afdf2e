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
