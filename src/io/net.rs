//! TCP listener and connections on the current shard.
//!
//! Every shard binds the same port with SO_REUSEPORT (glommio sets it), so
//! the kernel spreads incoming connections across shards.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::{TcpListener, TcpStream};

/// A listening socket owned by one shard.
pub struct Listener(TcpListener);

impl Listener {
    /// Bind with SO_REUSEPORT so every shard can bind the same address.
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        TcpListener::bind(addr)
            .map(Self)
            .map_err(|e| io::Error::other(e.to_string()))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr().map_err(|e| io::Error::other(e.to_string()))
    }

    /// Accept the next connection.
    pub async fn accept(&self) -> io::Result<Connection> {
        let stream = self.0.accept().await.map_err(|e| io::Error::other(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let peer = stream.peer_addr().ok();
        Ok(Connection { stream, peer })
    }
}

/// An accepted TCP connection.
pub struct Connection {
    stream: TcpStream,
    peer: Option<SocketAddr>,
}

impl Connection {
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Split into independently usable read and write halves. Both halves
    /// live on this shard; the stream keeps separate read and write sources,
    /// so a pending read never blocks a write.
    pub fn split(self) -> (ReadHalf, WriteHalf) {
        let shared = Rc::new(RefCell::new(self.stream));
        (ReadHalf(shared.clone()), WriteHalf(shared))
    }
}

impl AsyncRead for Connection {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_close(cx)
    }
}

pub struct ReadHalf(Rc<RefCell<TcpStream>>);
pub struct WriteHalf(Rc<RefCell<TcpStream>>);

impl AsyncRead for ReadHalf {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut s = self.0.borrow_mut();
        Pin::new(&mut *s).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut s = self.0.borrow_mut();
        Pin::new(&mut *s).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = self.0.borrow_mut();
        Pin::new(&mut *s).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = self.0.borrow_mut();
        Pin::new(&mut *s).poll_close(cx)
    }
}
