//! A simulated network of in-memory TCP-like streams.
//!
//! Listeners bind an address (several may bind the same one, as shards do
//! with SO_REUSEPORT; a connection goes to one of them at random). A
//! connection is a pair of bounded byte pipes. Reads return a random number
//! of the available bytes, so framing is exercised at every split; a full
//! pipe makes the writer wait (a slow reader); dropping one end makes the
//! other see end-of-file on reads and a broken pipe on writes. Streams know
//! the node that owns each end: killing a node closes its ends.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use futures_lite::{AsyncRead, AsyncWrite};

use super::{world, NodeId};

/// Bytes a pipe buffers before the writer waits (a socket buffer).
pub const PIPE_CAPACITY: usize = 256 * 1024;

#[derive(Default)]
struct Pipe {
    buf: VecDeque<u8>,
    /// The writer closed (FIN): reads drain then return 0.
    write_closed: bool,
    /// The reader is gone (RST): writes fail.
    read_closed: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

impl Pipe {
    fn wake_reader(&mut self) -> Option<Waker> {
        self.read_waker.take()
    }
    fn wake_writer(&mut self) -> Option<Waker> {
        self.write_waker.take()
    }
}

fn wake(w: Option<Waker>) {
    if let Some(w) = w {
        w.wake();
    }
}

fn store(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) => w.clone_from(cx.waker()),
        None => *slot = Some(cx.waker().clone()),
    }
}

struct ListenerState {
    backlog: VecDeque<SimStream>,
    waker: Option<Waker>,
    node: NodeId,
}

#[derive(Default)]
struct NetState {
    listeners: HashMap<SocketAddr, Vec<Rc<RefCell<ListenerState>>>>,
    /// Every live stream end, by owning node (to close them on a crash).
    ends: Vec<(NodeId, std::rc::Weak<End>)>,
    next_port: u16,
}

/// The network of a world.
#[derive(Default)]
pub struct Net {
    state: RefCell<NetState>,
}

impl Net {
    /// Close every stream end and listener owned by `node`.
    pub(super) fn kill_node(&self, node: NodeId) {
        let ends: Vec<Rc<End>> = {
            let mut st = self.state.borrow_mut();
            st.ends.retain(|(_, w)| w.strong_count() > 0);
            for ls in st.listeners.values_mut() {
                ls.retain(|l| l.borrow().node != node);
            }
            st.ends
                .iter()
                .filter(|(n, _)| *n == node)
                .filter_map(|(_, w)| w.upgrade())
                .collect()
        };
        for e in ends {
            e.close();
        }
    }

    /// Connection attempts to `addr` go to one of its listeners.
    pub fn connect(&self, addr: SocketAddr) -> io::Result<SimStream> {
        let w = world();
        let node = w.current_node();
        let listener = {
            let st = self.state.borrow();
            let ls = st.listeners.get(&addr).filter(|l| !l.is_empty());
            match ls {
                Some(ls) => {
                    let i = w.rand_range(0..ls.len() as u64) as usize;
                    ls[i].clone()
                }
                None => return Err(io::Error::from(io::ErrorKind::ConnectionRefused)),
            }
        };
        let (client_port, server_node) = {
            let mut st = self.state.borrow_mut();
            st.next_port = st.next_port.wrapping_add(1).max(1);
            (st.next_port, listener.borrow().node)
        };
        let client_addr = SocketAddr::from((
            [10, 0, (node >> 8) as u8, node as u8],
            30_000u16.wrapping_add(client_port),
        ));
        let a = Rc::new(RefCell::new(Pipe::default())); // client -> server
        let b = Rc::new(RefCell::new(Pipe::default())); // server -> client
        let client = SimStream::new(b.clone(), a.clone(), addr, node);
        let server = SimStream::new(a, b, client_addr, server_node);
        {
            let mut st = self.state.borrow_mut();
            st.ends.push((node, Rc::downgrade(&client.end)));
            st.ends.push((server_node, Rc::downgrade(&server.end)));
        }
        let waker = {
            let mut l = listener.borrow_mut();
            l.backlog.push_back(server);
            l.waker.take()
        };
        wake(waker);
        Ok(client)
    }

    pub fn bind(&self, addr: SocketAddr) -> SimListener {
        let state = Rc::new(RefCell::new(ListenerState {
            backlog: VecDeque::new(),
            waker: None,
            node: world().current_node(),
        }));
        self.state
            .borrow_mut()
            .listeners
            .entry(addr)
            .or_default()
            .push(state.clone());
        SimListener { addr, state }
    }

    fn unbind(&self, addr: SocketAddr, state: &Rc<RefCell<ListenerState>>) {
        if let Some(ls) = self.state.borrow_mut().listeners.get_mut(&addr) {
            ls.retain(|l| !Rc::ptr_eq(l, state));
        }
    }
}

/// A bound listener.
pub struct SimListener {
    addr: SocketAddr,
    state: Rc<RefCell<ListenerState>>,
}

impl SimListener {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<SimStream>> {
        let mut st = self.state.borrow_mut();
        if let Some(s) = st.backlog.pop_front() {
            return Poll::Ready(Ok(s));
        }
        store(&mut st.waker, cx);
        Poll::Pending
    }
}

impl Drop for SimListener {
    fn drop(&mut self) {
        if let Some(w) = super::current() {
            w.net.unbind(self.addr, &self.state);
        }
        // Connections queued but never accepted are refused.
        let backlog = std::mem::take(&mut self.state.borrow_mut().backlog);
        drop(backlog);
    }
}

/// One end of a connection: reads `rx`, writes `tx`.
struct End {
    rx: Rc<RefCell<Pipe>>,
    tx: Rc<RefCell<Pipe>>,
}

impl End {
    fn close(&self) {
        let (r, w) = {
            let mut tx = self.tx.borrow_mut();
            tx.write_closed = true;
            let r = tx.wake_reader();
            let mut rx = self.rx.borrow_mut();
            rx.read_closed = true;
            rx.buf.clear();
            (r, rx.wake_writer())
        };
        wake(r);
        wake(w);
    }
}

impl Drop for End {
    fn drop(&mut self) {
        self.close();
    }
}

/// One end of a simulated TCP connection.
pub struct SimStream {
    end: Rc<End>,
    peer: SocketAddr,
}

impl SimStream {
    fn new(rx: Rc<RefCell<Pipe>>, tx: Rc<RefCell<Pipe>>, peer: SocketAddr, _node: NodeId) -> Self {
        SimStream {
            end: Rc::new(End { rx, tx }),
            peer,
        }
    }

    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Split into halves that share the connection.
    pub fn split(self) -> (SimStream, SimStream) {
        (
            SimStream {
                end: self.end.clone(),
                peer: self.peer,
            },
            self,
        )
    }

    /// Bytes waiting to be read by this end.
    pub fn readable(&self) -> usize {
        self.end.rx.borrow().buf.len()
    }
}

impl AsyncRead for SimStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut rx = self.end.rx.borrow_mut();
        if rx.read_closed {
            return Poll::Ready(Err(io::Error::from(io::ErrorKind::ConnectionReset)));
        }
        if rx.buf.is_empty() {
            if rx.write_closed {
                return Poll::Ready(Ok(0));
            }
            store(&mut rx.read_waker, cx);
            return Poll::Pending;
        }
        let avail = rx.buf.len().min(buf.len());
        let n = if world().chance(0.5) {
            1 + world().rand_range(0..avail as u64) as usize
        } else {
            avail
        };
        for (i, b) in rx.buf.drain(..n).enumerate() {
            buf[i] = b;
        }
        let w = rx.wake_writer();
        drop(rx);
        wake(w);
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut tx = self.end.tx.borrow_mut();
        if tx.read_closed {
            return Poll::Ready(Err(io::Error::from(io::ErrorKind::BrokenPipe)));
        }
        if tx.write_closed {
            return Poll::Ready(Err(io::Error::from(io::ErrorKind::NotConnected)));
        }
        let room = PIPE_CAPACITY.saturating_sub(tx.buf.len());
        if room == 0 {
            store(&mut tx.write_waker, cx);
            return Poll::Pending;
        }
        let n = room.min(buf.len());
        tx.buf.extend(&buf[..n]);
        let r = tx.wake_reader();
        drop(tx);
        wake(r);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = {
            let mut tx = self.end.tx.borrow_mut();
            tx.write_closed = true;
            tx.wake_reader()
        };
        wake(r);
        Poll::Ready(Ok(()))
    }
}
