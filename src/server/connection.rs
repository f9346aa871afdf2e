//! One client connection: frames in, responses out in request order.
//!
//! The reader decodes each request and starts it (routing happens in request
//! order, so appends from one connection keep their order) while earlier
//! requests are still being worked on; the writer sends the responses
//! strictly in request order (pipelining).
//!
//! Memory a client can make the broker hold is bounded (docs/design/memory.md):
//!
//! - Before reading a frame's body the reader reserves the announced size
//!   from the shard's request budget (`queued.max.request.bytes` per shard,
//!   FIFO; a frame larger than the whole budget waits for all of it). While
//!   no reservation is possible the connection reads nothing more: the
//!   socket's buffers fill and the client waits. The reservation is given
//!   back when the request is done: its response written, or for a produce
//!   request (acks=0 too) once its data is on disk.
//! - A frame must arrive whole within `ringlog.request.receive.timeout.ms`
//!   of its size prefix (waiting for the budget included), so a client that
//!   announces a large frame and sends it slowly cannot hold request memory.
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
use crate::io::sync::Permit;
use crate::io::time::{sleep, sleep_until, timeout, Instant};
use crate::protocol::encode_response;
use crate::protocol::frame::{FrameError, FrameReader};
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

/// A request started and not yet finished by the writer.
struct InFlight {
    response: PendingResponse,
    /// The request's share of the shard's request budget.
    permit: Option<Permit>,
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
        // Reserve the frame's memory before reading its body; while nothing
        // can be reserved, read nothing more.
        let want = PREFIX + size;
        let permit = match shard.request_budget.try_acquire(want) {
            Some(p) => p,
            None => {
                crate::metrics::with(|m| m.request_budget_waits += 1);
                let acquire = shard.request_budget.acquire(want);
                match interruptible(shard, shared, timeout(deadline.remaining(), acquire)).await {
                    None => return interrupted(shard),
                    Some(None) => return timed_out("given memory (queued.max.request.bytes)"),
                    Some(Some(p)) => p,
                }
            }
        };
        let body = if frames.buffered() >= want {
            frames.body().await
        } else {
            match interruptible(shard, shared, timeout(deadline.remaining(), frames.body())).await {
                None => return interrupted(shard),
                Some(None) => return timed_out("received"),
                Some(Some(r)) => r,
            }
        };
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
                if let Ok(bytes) = encode_response(ApiKey::ApiVersions, 0, prefix.correlation_id, &body) {
                    shared.push(InFlight {
                        response: async move { Some(vec![bytes]) }.boxed_local(),
                        permit: Some(permit),
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
            crate::metrics::request_done(api_name, started.elapsed());
            drop(working);
            r
        });
        shared.push(InFlight {
            response: task.boxed_local(),
            permit: Some(permit),
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
            permit,
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
                    crate::metrics::with(|m| m.requests_cancelled += 1);
                    drop(permit);
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
        // The request is done: its memory goes back to the shard.
        drop(permit);
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
