//! One client connection: frames in, responses out in request order.
//!
//! The reader decodes each request and starts it (routing happens in request
//! order, so appends from one connection keep their order) while earlier
//! requests are still being worked on; the writer sends the responses
//! strictly in request order (pipelining).
//!
//! Memory a client can make the broker hold is bounded (docs/design/memory.md):
//!
//! - A frame's memory is reserved as its bytes arrive, not at its announced
//!   size: the read buffer may grow only as far as what is reserved (one
//!   read chunk always), and the next step (a doubling) is reserved before
//!   it grows. Reservations come from the connection's own allowance
//!   (`CONNECTION_ALLOWANCE`: small requests never wait for other
//!   connections), then the shard's request budget (`queued.max.request.bytes`
//!   per shard, FIFO), and when that is full, the shard's one overdraft: a
//!   single frame per shard may grow past the budget to its whole size, so
//!   frames that each hold part of the budget cannot wait for each other
//!   for ever (and a frame larger than the whole budget is read). While no
//!   reservation is possible the connection reads nothing more: the
//!   socket's buffers fill and the client waits. A client that trickles a
//!   large frame holds about what it has sent. The reservation is given
//!   back when the request's handler is done (for produce: data durable or
//!   the wait timed out), not when its response is written: a client that
//!   does not read its responses holds no request memory.
//! - A frame must arrive whole within `ringlog.request.receive.timeout.ms`
//!   of its size prefix (waiting for memory included), so a client that
//!   announces a large frame and sends it slowly, or a frame that cannot
//!   get its next step of memory, is closed.
//! - At most `ringlog.max.inflight.requests.per.connection` requests are in
//!   flight (worked on or waiting to be written), and at most one Fetch: a
//!   client that never reads its responses holds at most that many.
//! - `connections.max.idle.ms`: a connection with no request being worked on
//!   that has received and sent nothing for that long is closed (a response
//!   the client does not read counts as nothing sent, as in Kafka).
//! - When the client goes away (EOF or a read/write error), its requests
//!   still in progress are dropped (cancelled) and their memory released;
//!   produce requests only stop waiting once their appends are durable, so
//!   staged data stays covered by a reservation.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;
use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};
use kafka_protocol::messages::ApiKey;

use super::limits::ConnectionSlot;
use crate::api::{self, PendingResponse, RequestContext};
use crate::io::net::{Connection, ReadHalf, WriteHalf};
use crate::io::notify::Notify;
use crate::io::sync::{Permit, Semaphore};
use crate::io::time::{sleep, sleep_until, timeout, Instant};
use crate::protocol::encode_response;
use crate::protocol::frame::{FrameError, FrameReader, READ_CHUNK};
use crate::protocol::request::{parse_request, BadRequest};
use crate::shard::Shard;

/// Response pieces smaller than this are copied together into one write.
const COALESCE_BELOW: usize = 16 * 1024;

/// Size prefix of a frame, reserved with its payload.
const PREFIX: usize = 4;

pub async fn serve(shard: Rc<Shard>, conn: Connection, slot: ConnectionSlot) {
    crate::metrics::with(|m| {
        m.connections_opened += 1;
        m.connections_active += 1;
    });
    serve_connection(shard, conn).await;
    drop(slot);
    crate::metrics::with(|m| m.connections_active -= 1);
}

/// Request memory a connection may hold without the shard's budget: its
/// small requests (the usual case: metadata, fetch, small produce) never
/// wait for memory that other connections hold.
const CONNECTION_ALLOWANCE: usize = 64 * 1024;

/// The memory a frame (then its request) holds: parts of its connection's
/// allowance and of the shard's request budget, and perhaps the shard's
/// overdraft. Given back when dropped.
#[derive(Default)]
struct Reservation {
    /// Bytes reserved from the allowance and the budget.
    units: usize,
    permits: Vec<Permit>,
    /// The shard's one frame past the budget: it may grow to its whole size.
    overdraft: Option<Permit>,
}

impl Reservation {
    fn add(&mut self, p: Permit) {
        self.units += p.units();
        self.permits.push(p);
    }

    /// Whether a frame of `total` bytes is covered.
    fn covers(&self, total: usize) -> bool {
        self.overdraft.is_some() || self.units >= total
    }

    /// How large the read buffer may grow for a frame of `total` bytes: what
    /// is reserved, but at least one read chunk (a connection's read-ahead,
    /// counted per connection in docs/design/memory.md).
    fn buffer_limit(&self, total: usize) -> usize {
        if self.overdraft.is_some() {
            total.max(READ_CHUNK)
        } else {
            self.units.max(READ_CHUNK)
        }
    }

    /// What to have reserved before the buffer grows next: twice what it
    /// may hold now (the buffer grows by doubling), at most the frame.
    fn next_step(&self, total: usize) -> usize {
        (2 * self.units.max(READ_CHUNK)).min(total)
    }

    /// The frame is whole: if it went past the budget and the budget now
    /// has room for the rest, move it there and free the overdraft for
    /// another frame.
    fn settle(&mut self, budget: &Semaphore, total: usize) {
        if self.overdraft.is_none() {
            return;
        }
        let rest = total.saturating_sub(self.units);
        if rest > 0 {
            match budget.try_acquire(rest) {
                Some(p) if p.units() >= rest => self.add(p),
                _ => return,
            }
        }
        self.overdraft = None;
    }
}

/// Reserve memory until `reservation` holds `target` bytes: from the
/// connection's allowance, then the shard's request budget (FIFO). When the
/// budget has no room, the frame takes the shard's overdraft if it is free
/// (and may then grow to its whole size), else waits for whichever of the
/// two comes first. False if `deadline` passed first.
///
/// Why this cannot deadlock: frames that hold part of the budget and wait
/// for more all wait in line for the overdraft, and the frame holding it
/// waits for nobody: it completes (or its connection is closed at the
/// receive timeout) and its request finishes, giving the overdraft to the
/// next one. Small requests use the connection's allowance and need
/// neither.
async fn reserve(
    shard: &Shard,
    allowance: &Semaphore,
    reservation: &mut Reservation,
    target: usize,
    deadline: Instant,
) -> bool {
    while !reservation.covers(target) {
        let need = target - reservation.units;
        let own = need.min(allowance.available());
        if own > 0 {
            if let Some(p) = allowance.try_acquire(own) {
                reservation.add(p);
                continue;
            }
        }
        if let Some(p) = shard.request_budget.try_acquire(need) {
            reservation.add(p);
            continue;
        }
        if let Some(p) = shard.request_overdraft.try_acquire(1) {
            reservation.overdraft = Some(p);
            continue;
        }
        crate::metrics::with(|m| m.request_budget_waits += 1);
        let either = futures_lite::future::or(
            shard.request_budget.acquire(need).map(Ok),
            shard.request_overdraft.acquire(1).map(Err),
        );
        match timeout(deadline.remaining(), either).await {
            None => return false,
            Some(Ok(p)) => reservation.add(p),
            Some(Err(p)) => reservation.overdraft = Some(p),
        }
    }
    true
}

/// A request started and not yet finished by the writer.
struct InFlight {
    response: PendingResponse,
    fetch: bool,
    /// A produce request: on disconnect it is not cancelled but waited for
    /// (without writing its response), so its reservation covers its
    /// staged data until that is on disk.
    produce: bool,
}

/// State shared by a connection's reader, writer and idle watchdog.
struct Shared {
    /// Requests started, in order, not yet taken by the writer.
    queue: RefCell<VecDeque<InFlight>>,
    /// Requests counted against the in-flight limit: queued plus the one
    /// the writer holds.
    in_flight: Cell<usize>,
    /// Requests whose response is not ready yet (a handler still working,
    /// e.g. a long-poll fetch).
    working: Rc<Cell<usize>>,
    /// A Fetch is in flight (its response not yet written).
    fetch_in_flight: Cell<bool>,
    /// When bytes were last received or sent.
    last_activity: Rc<Cell<Instant>>,
    /// No more requests will be queued.
    reader_done: Cell<bool>,
    /// The client is gone (or must go): drop what is in progress and write
    /// nothing more.
    cancelled: Cell<bool>,
    /// Writing to the client failed.
    writer_failed: Cell<bool>,
    /// Woken on every change of the fields above.
    changed: Notify,
}

impl Shared {
    fn new() -> Self {
        Shared {
            queue: RefCell::new(VecDeque::new()),
            in_flight: Cell::new(0),
            working: Rc::new(Cell::new(0)),
            fetch_in_flight: Cell::new(false),
            last_activity: Rc::new(Cell::new(Instant::now())),
            reader_done: Cell::new(false),
            cancelled: Cell::new(false),
            writer_failed: Cell::new(false),
            changed: Notify::new(),
        }
    }

    /// Wait until `cond` holds (re-checked on every change).
    async fn until(&self, cond: impl Fn(&Shared) -> bool) {
        loop {
            let listener = self.changed.listen();
            if cond(self) {
                return;
            }
            listener.await;
        }
    }

    fn push(&self, entry: InFlight) {
        self.in_flight.set(self.in_flight.get() + 1);
        if entry.fetch {
            self.fetch_in_flight.set(true);
        }
        self.queue.borrow_mut().push_back(entry);
        self.changed.notify_all();
    }

    /// The writer is done with an entry (written, discarded or dropped).
    fn finished(&self, fetch: bool) {
        self.in_flight.set(self.in_flight.get().saturating_sub(1));
        if fetch {
            self.fetch_in_flight.set(false);
        }
        self.changed.notify_all();
    }

    /// No more requests: the writer finishes what is queued.
    fn stop_reading(&self) {
        self.reader_done.set(true);
        self.changed.notify_all();
    }

    /// Drop every request in progress except produce requests (which the
    /// writer waits for without writing).
    fn cancel(&self) {
        self.reader_done.set(true);
        self.cancelled.set(true);
        let dropped: Vec<InFlight> = {
            let mut q = self.queue.borrow_mut();
            let (keep, cancel): (VecDeque<InFlight>, VecDeque<InFlight>) = q.drain(..).partition(|e| e.produce);
            *q = keep;
            cancel.into_iter().collect()
        };
        if !dropped.is_empty() {
            crate::metrics::with(|m| m.requests_cancelled += dropped.len() as u64);
        }
        for e in dropped {
            let fetch = e.fetch;
            drop(e);
            self.finished(fetch);
        }
        self.changed.notify_all();
    }
}

/// Decrements a count when dropped (a handler finished or was cancelled).
struct Working(Rc<Cell<usize>>);

impl Working {
    fn start(count: &Rc<Cell<usize>>) -> Self {
        count.set(count.get() + 1);
        Working(count.clone())
    }
}

impl Drop for Working {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// A socket half that records when bytes last moved.
struct Tracked<T> {
    inner: T,
    activity: Rc<Cell<Instant>>,
}

impl AsyncRead for Tracked<ReadHalf> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            if *n > 0 {
                self.activity.set(Instant::now());
            }
        }
        r
    }
}

impl AsyncWrite for Tracked<WriteHalf> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            if *n > 0 {
                self.activity.set(Instant::now());
            }
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// How the reader stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Write the responses of the requests in flight, then close (shutdown,
    /// or a request the broker refuses to serve).
    Drain,
    /// The client is gone or must go: drop what is in progress.
    Cancel,
}

async fn serve_connection(shard: Rc<Shard>, conn: Connection) {
    let peer = conn.peer_addr();
    let shared = Rc::new(Shared::new());
    let (rd, wr) = conn.split();
    let writer = crate::io::spawn(write_responses(
        shared.clone(),
        Tracked {
            inner: wr,
            activity: shared.last_activity.clone(),
        },
    ));
    let mut writer = std::pin::pin!(writer);
    let mut frames = FrameReader::new(
        Tracked {
            inner: rd,
            activity: shared.last_activity.clone(),
        },
        shard.config.socket_request_max_bytes,
    );
    let idle = Duration::from_millis(shard.config.connections_max_idle_ms);
    let end = futures_lite::future::or(read_requests(&shard, &shared, &mut frames, peer), async {
        idle_watchdog(&shared, idle).await;
        tracing::debug!(peer = ?peer, "closing idle connection (connections.max.idle.ms)");
        crate::metrics::with(|m| m.connections_closed_idle += 1);
        End::Cancel
    })
    .await;
    drop(frames);
    match end {
        End::Drain => {
            shared.stop_reading();
            let idle_out = futures_lite::future::or(
                async {
                    (&mut writer).await;
                    false
                },
                async {
                    idle_watchdog(&shared, idle).await;
                    true
                },
            )
            .await;
            if idle_out {
                crate::metrics::with(|m| m.connections_closed_idle += 1);
                shared.cancel();
                writer.await;
            }
        }
        End::Cancel => {
            shared.cancel();
            writer.await;
        }
    }
}

/// Complete once the connection is idle: nothing received or sent for
/// `idle` and no request being worked on.
async fn idle_watchdog(shared: &Shared, idle: Duration) {
    loop {
        let due = shared.last_activity.get().add(idle);
        if due.remaining().is_zero() {
            if shared.working.get() == 0 {
                return;
            }
            // A request is being worked on (a long poll): look again later.
            sleep(idle).await;
        } else {
            sleep_until(due).await;
        }
    }
}

/// Run `fut` unless the shard shuts down or writing to the client fails
/// first (then None).
async fn interruptible<T>(shard: &Shard, shared: &Shared, fut: impl Future<Output = T>) -> Option<T> {
    let stop = shard.until_shutdown();
    futures_lite::future::or(async { Some(fut.await) }, async {
        futures_lite::future::or(stop, shared.until(|s| s.writer_failed.get())).await;
        None
    })
    .await
}

fn interrupted(shard: &Shard) -> End {
    if shard.shutting_down.get() {
        End::Drain
    } else {
        End::Cancel
    }
}

fn frame_error(peer: Option<std::net::SocketAddr>, e: FrameError) -> End {
    match e {
        FrameError::Closed => End::Cancel,
        FrameError::Io(e) => {
            tracing::debug!(peer = ?peer, "read from client failed: {e}");
            End::Cancel
        }
        e => {
            tracing::info!(peer = ?peer, "closing connection: {e}");
            crate::metrics::with(|m| m.closed_bad_requests += 1);
            End::Drain
        }
    }
}

async fn read_requests(
    shard: &Rc<Shard>,
    shared: &Rc<Shared>,
    frames: &mut FrameReader<Tracked<ReadHalf>>,
    peer: Option<std::net::SocketAddr>,
) -> End {
    let client_host = peer.map(|p| p.ip().to_string()).unwrap_or_default();
    let max_in_flight = shard.config.max_inflight_per_connection;
    let receive_timeout = Duration::from_millis(shard.config.request_receive_timeout_ms);
    let allowance = &Semaphore::new(CONNECTION_ALLOWANCE);
    loop {
        // Room for one more request in flight.
        if shared.in_flight.get() >= max_in_flight
            && interruptible(shard, shared, shared.until(|s| s.in_flight.get() < max_in_flight))
                .await
                .is_none()
        {
            return interrupted(shard);
        }
        // The next frame's size (an idle connection waits here).
        let size = match interruptible(shard, shared, frames.header()).await {
            None => return interrupted(shard),
            Some(Ok(size)) => size,
            Some(Err(e)) => return frame_error(peer, e),
        };
        let deadline = Instant::now().add(receive_timeout);
        let timed_out = |what: &str| {
            tracing::info!(
                peer = ?peer,
                size,
                "closing connection: a request of {size} bytes was not {what} within ringlog.request.receive.timeout.ms ({} ms)",
                receive_timeout.as_millis()
            );
            crate::metrics::with(|m| m.requests_receive_timeouts += 1);
            End::Cancel
        };
        // Reserve the frame's memory as its bytes arrive: read as far as the
        // reservation allows, then reserve the next step; while nothing can
        // be reserved, read nothing more.
        let total = PREFIX + size;
        let mut reservation = Reservation::default();
        loop {
            let complete = if frames.buffered() >= total {
                true
            } else {
                let limit = reservation.buffer_limit(total);
                match interruptible(shard, shared, timeout(deadline.remaining(), frames.fill_within(limit))).await {
                    None => return interrupted(shard),
                    Some(None) => return timed_out("received"),
                    Some(Some(Err(e))) => return frame_error(peer, e),
                    Some(Some(Ok(complete))) => complete,
                }
            };
            if complete && reservation.covers(total) {
                break;
            }
            let target = if complete { total } else { reservation.next_step(total) };
            match interruptible(
                shard,
                shared,
                reserve(shard, allowance, &mut reservation, target, deadline),
            )
            .await
            {
                None => return interrupted(shard),
                Some(false) => return timed_out("given memory (queued.max.request.bytes)"),
                Some(true) => {}
            }
        }
        reservation.settle(&shard.request_budget, total);
        let body = frames.body().await;
        let mut frame = match body {
            Ok(f) => {
                super::capture::frame(&f);
                f
            }
            Err(e) => return frame_error(peer, e),
        };
        let frame_len = frame.len();
        let (key, prefix, header) = match parse_request(&mut frame) {
            Ok(r) => (r.key, r.prefix, r.header),
            Err(BadRequest::TooShort) => return End::Drain,
            Err(BadRequest::UnknownApiKey(api_key)) => {
                tracing::info!(peer = ?peer, api_key, "closing connection: unknown API key");
                crate::metrics::with(|m| m.closed_bad_requests += 1);
                return End::Drain;
            }
            Err(BadRequest::UnsupportedVersion {
                key: ApiKey::ApiVersions,
                prefix,
            }) => {
                // Answer with v0 and the list we support (KIP-511).
                let body = api::api_versions::unsupported_version_reply();
                // Answered: the request's memory goes back at once.
                drop(reservation);
                if let Ok(bytes) = encode_response(ApiKey::ApiVersions, 0, prefix.correlation_id, &body) {
                    shared.push(InFlight {
                        response: async move { Some(vec![bytes]) }.boxed_local(),
                        fetch: false,
                        produce: false,
                    });
                }
                continue;
            }
            Err(BadRequest::UnsupportedVersion { key, prefix }) => {
                tracing::info!(peer = ?peer, api = ?key, version = prefix.api_version, "closing connection: unsupported version");
                crate::metrics::with(|m| m.closed_bad_requests += 1);
                return End::Drain;
            }
            Err(BadRequest::BadHeader(e)) => {
                tracing::info!(peer = ?peer, "closing connection: bad request header: {e}");
                crate::metrics::with(|m| m.closed_bad_requests += 1);
                return End::Drain;
            }
        };
        let fetch = key == ApiKey::Fetch;
        // One Fetch at a time per connection: its response may be as large
        // as fetch.max.bytes, and clients never pipeline fetches to one
        // broker anyway.
        if fetch
            && shared.fetch_in_flight.get()
            && interruptible(shard, shared, shared.until(|s| !s.fetch_in_flight.get()))
                .await
                .is_none()
        {
            return interrupted(shard);
        }
        let ctx = RequestContext {
            shard: shard.clone(),
            api_key: key,
            api_version: prefix.api_version,
            correlation_id: prefix.correlation_id,
            client_id: header.client_id.as_ref().map(|c| c.as_str().to_string()),
            client_host: client_host.clone(),
            frame_len,
        };
        let started = Instant::now();
        let pending = match api::dispatch(ctx, frame).await {
            Ok(p) => p,
            Err(e) => {
                tracing::info!(peer = ?peer, "closing connection: {e}");
                crate::metrics::with(|m| m.closed_bad_requests += 1);
                return End::Drain;
            }
        };
        let api_name = crate::metrics::api_name(key);
        // Run the handler as its own task so it makes progress while the
        // writer waits for earlier responses.
        let working = Working::start(&shared.working);
        let task = crate::io::spawn(async move {
            let r = pending.await;
            // The request is done (for produce: its data durable or its
            // wait timed out, the staged budget covering it until durable):
            // its memory goes back now, not when the response is written,
            // so a client that does not read its responses holds no
            // request memory; what waits to be written is bounded per
            // connection by the in-flight limit.
            drop(reservation);
            crate::metrics::request_done(api_name, started.elapsed());
            drop(working);
            r
        });
        shared.push(InFlight {
            response: task.boxed_local(),
            fetch,
            produce: key == ApiKey::Produce,
        });
    }
}

/// Write responses in request order until the reader is done and nothing
/// is left; after [`Shared::cancel`] write nothing, drop what is not a
/// produce request and wait for the produce requests' appends.
async fn write_responses(shared: Rc<Shared>, wr: Tracked<WriteHalf>) {
    let mut wr = Some(wr);
    let mut small = Vec::new();
    loop {
        let next = shared.queue.borrow_mut().pop_front();
        let Some(entry) = next else {
            if shared.reader_done.get() {
                break;
            }
            // Nothing to write: keep no coalescing buffer while waiting.
            small = Vec::new();
            let listener = shared.changed.listen();
            if shared.queue.borrow().is_empty() && !shared.reader_done.get() {
                listener.await;
            }
            continue;
        };
        let InFlight {
            response,
            fetch,
            produce,
        } = entry;
        let frame = if produce {
            response.await
        } else {
            let cancelled = shared.until(|s| s.cancelled.get());
            match futures_lite::future::or(response.map(Some), cancelled.map(|_| None)).await {
                Some(frame) => frame,
                None => {
                    // The request (its task) was dropped with the race.
                    crate::metrics::with(|m| m.requests_cancelled += 1);
                    shared.finished(fetch);
                    continue;
                }
            }
        };
        if shared.cancelled.get() {
            wr = None;
        }
        if let (Some(frame), Some(w)) = (frame, wr.as_mut()) {
            if let Err(e) = write_frame(w, &mut small, frame).await {
                tracing::debug!("write to client failed: {e}");
                wr = None;
                shared.writer_failed.set(true);
                shared.cancel();
            }
        }
        shared.finished(fetch);
    }
    if let Some(mut w) = wr {
        if !shared.cancelled.get() {
            let _ = w.flush().await;
            let _ = w.close().await;
        }
    }
}

/// Write one response frame. Small pieces are gathered into one write;
/// large ones (record batches) are written straight from where they are.
async fn write_frame(wr: &mut Tracked<WriteHalf>, small: &mut Vec<u8>, frame: api::ResponseFrame) -> io::Result<()> {
    for part in frame {
        if part.len() < COALESCE_BELOW {
            small.extend_from_slice(&part);
            if small.len() < COALESCE_BELOW {
                continue;
            }
        } else if !small.is_empty() {
            wr.write_all(small).await?;
            small.clear();
        }
        let piece: &[u8] = if small.is_empty() { &part } else { small };
        wr.write_all(piece).await?;
        small.clear();
    }
    if !small.is_empty() {
        wr.write_all(small).await?;
        small.clear();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Request memory on a simulated network (virtual time): what trickled
    //! frames hold, and frames that share the budget all completing.

    use super::*;
    use crate::io::mesh::MeshBuilder;
    use crate::io::net::Listener;
    use crate::io::sim::{SimConfig, World};
    use crate::metadata::ClusterMeta;
    use crate::routing::Router;
    use futures_lite::AsyncReadExt;
    use std::net::SocketAddr;

    const KIB: usize = 1024;
    const MIB: usize = 1024 * KIB;
    /// A hang bound (virtual time): far below the receive timeout (30 s),
    /// so frames waiting for each other until it would fail.
    const BOUND: Duration = Duration::from_secs(5);

    fn addr() -> SocketAddr {
        SocketAddr::from(([10, 9, 9, 9], 9092))
    }

    async fn start(budget: usize) -> (Rc<Shard>, crate::io::Task<()>) {
        let mut c = crate::config::BrokerConfig::load(&Default::default()).expect("default config");
        c.shards = 1;
        c.queued_max_request_bytes = budget;
        c.auto_create_topics = false;
        let (sender, _) = MeshBuilder::simulated(1, 16).join(0).await.expect("mesh");
        let shard = Shard::new(0, Rc::new(c), ClusterMeta::default(), Router::new(sender), true);
        let listener = Listener::bind(addr()).expect("bind");
        let acceptor = crate::io::spawn(super::super::accept_loop(shard.clone(), listener));
        (shard, acceptor)
    }

    fn header(api_key: i16, version: i16, correlation_id: i32) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(&api_key.to_be_bytes());
        h.extend_from_slice(&version.to_be_bytes());
        h.extend_from_slice(&correlation_id.to_be_bytes());
        h.extend_from_slice(&(-1i16).to_be_bytes()); // no client id
        h
    }

    fn framed(body: Vec<u8>) -> Vec<u8> {
        let mut f = (body.len() as i32).to_be_bytes().to_vec();
        f.extend(body);
        f
    }

    fn api_versions(correlation_id: i32) -> Vec<u8> {
        framed(header(18, 0, correlation_id))
    }

    /// A Produce v3 request of `records` bytes to an unknown topic (the
    /// broker answers UNKNOWN_TOPIC_OR_PARTITION once it has read it).
    fn produce(correlation_id: i32, records: usize) -> Vec<u8> {
        let mut b = header(0, 3, correlation_id);
        b.extend_from_slice(&(-1i16).to_be_bytes()); // transactional id
        b.extend_from_slice(&1i16.to_be_bytes()); // acks
        b.extend_from_slice(&30_000i32.to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&1i16.to_be_bytes());
        b.push(b'u');
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
        b.extend_from_slice(&(records as i32).to_be_bytes());
        b.extend(std::iter::repeat_n(7u8, records));
        framed(b)
    }

    async fn response(rd: &mut ReadHalf) -> Vec<u8> {
        let mut size = [0u8; 4];
        rd.read_exact(&mut size).await.expect("response size");
        let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
        rd.read_exact(&mut body).await.expect("response body");
        body
    }

    fn correlation(resp: &[u8]) -> i32 {
        i32::from_be_bytes([resp[0], resp[1], resp[2], resp[3]])
    }

    fn budget_used(shard: &Shard) -> usize {
        shard.request_budget.capacity() - shard.request_budget.available()
    }

    fn run(seed: u64, f: impl Future<Output = ()> + 'static) {
        let w = World::new(seed, SimConfig::default());
        let out = w.run(1, f);
        w.shutdown();
        out.expect("simulation");
    }

    #[test]
    fn trickled_frames_hold_only_what_arrived() {
        run(1, async {
            let (shard, _acceptor) = start(MIB).await;
            // 20 connections announce 100 MB frames and send 1000 bytes each.
            let mut tricklers = Vec::new();
            for _ in 0..20 {
                let (rd, mut wr) = crate::io::net::connect(addr()).await.expect("connect").split();
                let mut start = (100_000_000i32).to_be_bytes().to_vec();
                start.extend(header(0, 3, 1));
                start.extend(std::iter::repeat_n(0u8, 1000));
                wr.write_all(&start).await.expect("write");
                tricklers.push((rd, wr));
            }
            sleep(Duration::from_secs(1)).await;
            assert_eq!(
                budget_used(&shard),
                0,
                "trickled frames hold none of the shard's budget"
            );
            assert_eq!(shard.request_overdraft.available(), 1);
            // Another client is served at once.
            let (mut rd, mut wr) = crate::io::net::connect(addr()).await.expect("connect").split();
            wr.write_all(&api_versions(42)).await.expect("write");
            let resp = timeout(BOUND, response(&mut rd)).await.expect("ApiVersions answered");
            assert_eq!(correlation(&resp), 42);
            // A frame of which 300 KiB arrived holds about that much (the
            // buffer grows by doubling: at most twice).
            let (big_rd, mut wr) = crate::io::net::connect(addr()).await.expect("connect").split();
            let mut part = (100_000_000i32).to_be_bytes().to_vec();
            part.extend(header(0, 3, 2));
            part.extend(std::iter::repeat_n(0u8, 300 * KIB));
            let sent = part.len();
            wr.write_all(&part).await.expect("write");
            sleep(Duration::from_secs(1)).await;
            let used = budget_used(&shard);
            assert!(used > 0, "a frame past the allowance reserves from the budget");
            assert!(used <= 2 * sent, "{used} bytes reserved for {sent} received");
            // Closing them gives everything back.
            drop(tricklers);
            drop((big_rd, wr));
            sleep(Duration::from_secs(1)).await;
            assert_eq!(budget_used(&shard), 0);
            shard.begin_shutdown();
        });
    }

    /// Frames that together need more than the budget, arriving
    /// interleaved, each holding part of it: all are read and answered
    /// (the overdraft lets one at a time past the budget), long before the
    /// receive timeout; one larger than the whole budget too.
    #[test]
    fn frames_sharing_the_budget_all_complete() {
        for seed in 1..4 {
            run(seed, async {
                let (shard, _acceptor) = start(MIB).await;
                let sizes = [700 * KIB, 700 * KIB, 700 * KIB, 1536 * KIB];
                let mut clients = Vec::new();
                for (i, &size) in sizes.iter().enumerate() {
                    let (rd, wr) = crate::io::net::connect(addr()).await.expect("connect").split();
                    let request = produce(i as i32, size);
                    clients.push(crate::io::spawn(async move {
                        let mut wr = wr;
                        let mut rd = rd;
                        // In 64 KiB pieces, so that the frames arrive interleaved.
                        for piece in request.chunks(64 * KIB) {
                            wr.write_all(piece).await.expect("write");
                            sleep(Duration::from_millis(1)).await;
                        }
                        let resp = response(&mut rd).await;
                        (correlation(&resp), wr, rd)
                    }));
                }
                for (i, c) in clients.into_iter().enumerate() {
                    let (corr, _wr, _rd) = timeout(BOUND, c).await.expect("every frame is read and answered");
                    assert_eq!(corr, i as i32);
                }
                assert_eq!(budget_used(&shard), 0, "every request gave its memory back");
                assert_eq!(shard.request_overdraft.available(), 1);
                shard.begin_shutdown();
            });
        }
    }
}
