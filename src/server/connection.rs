//! One client connection: frames in, responses out in request order.
//!
//! The read side decodes each request and starts it (routing happens in
//! request order, so appends from one connection keep their order) while
//! earlier requests are still being worked on; the write side sends the
//! responses strictly in request order (pipelining).
//!
//! When the client goes away (end of stream, a read error) or the
//! connection is closed for a bad request, the requests still in progress
//! are dropped with it, as Kafka drops them: a parked fetch releases its
//! watches (on other shards too, see [`crate::routing`]). Only at shutdown
//! are they finished (a parked fetch completes with what it has) and their
//! responses written.

use std::rc::Rc;

use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use futures_lite::AsyncWriteExt;
use kafka_protocol::messages::ApiKey;

use crate::api::{self, PendingResponse, RequestContext};
use crate::io::net::Connection;
use crate::protocol::encode_response;
use crate::protocol::frame::{FrameError, FrameReader};
use crate::protocol::request::{parse_request, BadRequest};
use crate::shard::Shard;

/// Requests in flight per connection before the reader stops reading.
const MAX_IN_FLIGHT: usize = 64;

/// Response pieces smaller than this are copied together into one write.
const COALESCE_BELOW: usize = 16 * 1024;

pub async fn serve(shard: Rc<Shard>, conn: Connection) {
    crate::metrics::with(|m| {
        m.connections_opened += 1;
        m.connections_active += 1;
    });
    serve_connection(shard, conn).await;
    crate::metrics::with(|m| m.connections_active -= 1);
}

async fn serve_connection(shard: Rc<Shard>, conn: Connection) {
    let peer = conn.peer_addr();
    let client_host = peer.map(|p| p.ip().to_string()).unwrap_or_default();
    let (rd, mut wr) = conn.split();
    let (mut tx, mut rx) = mpsc::channel::<PendingResponse>(MAX_IN_FLIGHT);
    let writer = crate::io::spawn(async move {
        let mut small = Vec::with_capacity(COALESCE_BELOW);
        while let Some(pending) = rx.next().await {
            if let Some(frame) = pending.await {
                // Small pieces are gathered into one write; large ones
                // (record batches) are written straight from where they are.
                for part in frame {
                    if part.len() < COALESCE_BELOW {
                        small.extend_from_slice(&part);
                        if small.len() < COALESCE_BELOW {
                            continue;
                        }
                    } else if !small.is_empty() {
                        if let Err(e) = wr.write_all(&small).await {
                            tracing::debug!("write to client failed: {e}");
                            return;
                        }
                        small.clear();
                    }
                    let piece: &[u8] = if small.is_empty() { &part } else { &small };
                    if let Err(e) = wr.write_all(piece).await {
                        tracing::debug!("write to client failed: {e}");
                        return;
                    }
                    small.clear();
                }
                if !small.is_empty() {
                    if let Err(e) = wr.write_all(&small).await {
                        tracing::debug!("write to client failed: {e}");
                        return;
                    }
                    small.clear();
                }
            }
        }
        let _ = wr.flush().await;
        let _ = wr.close().await;
    });
    let mut frames = FrameReader::new(rd, shard.config.socket_request_max_bytes);
    let mut shutting_down = false;
    loop {
        let stop = shard.until_shutdown();
        let next = futures_lite::future::or(async { Some(frames.next().await) }, async {
            stop.await;
            None
        })
        .await;
        let mut frame = match next {
            None => {
                shutting_down = true;
                break;
            }
            Some(Ok(f)) => {
                super::capture::frame(&f);
                f
            }
            Some(Err(FrameError::Closed)) => break,
            Some(Err(e)) => {
                tracing::info!(peer = ?peer, "closing connection: {e}");
                break;
            }
        };
        let (key, prefix, header) = match parse_request(&mut frame) {
            Ok(r) => (r.key, r.prefix, r.header),
            Err(BadRequest::TooShort) => break,
            Err(BadRequest::UnknownApiKey(api_key)) => {
                tracing::info!(peer = ?peer, api_key, "closing connection: unknown API key");
                crate::metrics::with(|m| m.closed_bad_requests += 1);
                break;
            }
            Err(BadRequest::UnsupportedVersion {
                key: ApiKey::ApiVersions,
                prefix,
            }) => {
                // Answer with v0 and the list we support (KIP-511).
                let body = api::api_versions::unsupported_version_reply();
                if let Ok(bytes) = encode_response(ApiKey::ApiVersions, 0, prefix.correlation_id, &body) {
                    let fut: PendingResponse = Box::pin(async move { Some(vec![bytes]) });
                    if tx.send(fut).await.is_err() {
                        break;
                    }
                }
                continue;
            }
            Err(BadRequest::UnsupportedVersion { key, prefix }) => {
                tracing::info!(peer = ?peer, api = ?key, version = prefix.api_version, "closing connection: unsupported version");
                crate::metrics::with(|m| m.closed_bad_requests += 1);
                break;
            }
            Err(BadRequest::BadHeader(e)) => {
                tracing::info!(peer = ?peer, "closing connection: bad request header: {e}");
                crate::metrics::with(|m| m.closed_bad_requests += 1);
                break;
            }
        };
        let ctx = RequestContext {
            shard: shard.clone(),
            api_key: key,
            api_version: prefix.api_version,
            correlation_id: prefix.correlation_id,
            client_id: header.client_id.as_ref().map(|c| c.as_str().to_string()),
            client_host: client_host.clone(),
        };
        let started = crate::io::time::Instant::now();
        let pending = match api::dispatch(ctx, frame).await {
            Ok(p) => p,
            Err(e) => {
                tracing::info!(peer = ?peer, "closing connection: {e}");
                crate::metrics::with(|m| m.closed_bad_requests += 1);
                break;
            }
        };
        let api_name = crate::metrics::api_name(key);
        // Run the handler as its own task so it makes progress while the
        // writer waits for earlier responses.
        let task = crate::io::spawn(async move {
            let r = pending.await;
            crate::metrics::request_done(api_name, started.elapsed());
            r
        });
        let fut: PendingResponse = Box::pin(task);
        if tx.send(fut).await.is_err() {
            break;
        }
    }
    drop(tx);
    if shutting_down {
        // Parked requests complete on the shutdown; write their responses.
        writer.await;
    }
    // Otherwise the client is gone (or is being disconnected): dropping the
    // writer drops every request still in progress.
}
