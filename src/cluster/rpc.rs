//! The controller listener's wire (docs/design/replication.md, Section
//! 5.5): Kafka framing (size prefix, request header, body) between the
//! nodes of a cluster. Kafka's own schemas where Kafka has the API
//! (BrokerRegistration, BrokerHeartbeat, DescribeQuorum), and one private
//! API, `RaftMessages` (10001): a batch of raft-rs messages in
//! [`super::raft_codec`], sent one way (raft retransmits what is lost, so
//! it gets no response).
//!
//! This module is the framing and a small request/response client; what a
//! request does is up to the quorum shell ([`super::quorum_shell`]).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::{BufMut, Bytes, BytesMut};
use futures_lite::AsyncWriteExt;
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::io::net::{ReadHalf, WriteHalf};
use crate::protocol::frame::FrameReader;

/// The private API carrying raft-rs messages voter → voter.
pub const RAFT_MESSAGES: i16 = 10001;

/// The largest frame the controller listener takes: raft batches are cut
/// well below it (see [`MAX_RAFT_BATCH`]).
pub const MAX_FRAME: usize = 64 << 20;

/// A sender stops adding raft messages to a frame past this many bytes.
pub const MAX_RAFT_BATCH: usize = 8 << 20;

/// How long a request to another node may take before the caller gives up
/// on that connection.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

const CLIENT_ID: &str = "ringlog-controller";

/// A `RaftMessages` request frame (size prefix included): header v1 (key,
/// version 0, correlation id, client id), then the encoded batch.
pub fn raft_frame(correlation_id: i32, batch: &[u8]) -> Bytes {
    let header = 2 + 2 + 4 + 2 + CLIENT_ID.len();
    let size = header + batch.len();
    let mut b = BytesMut::with_capacity(4 + size);
    b.put_i32(size as i32);
    b.put_i16(RAFT_MESSAGES);
    b.put_i16(0);
    b.put_i32(correlation_id);
    b.put_i16(CLIENT_ID.len() as i16);
    b.put_slice(CLIENT_ID.as_bytes());
    b.put_slice(batch);
    b.freeze()
}

/// The body of a `RaftMessages` frame (the frame without its size
/// prefix): what follows the v1 header. None when the header is cut short.
pub fn raft_body(frame: &[u8]) -> Option<&[u8]> {
    let b = frame.get(8..10)?;
    let len = i16::from_be_bytes([b[0], b[1]]);
    let skip = if len < 0 { 0 } else { len as usize };
    frame.get(10 + skip..)
}

/// A Kafka request frame (size prefix included).
pub fn request_frame<T: Encodable>(key: ApiKey, version: i16, correlation_id: i32, body: &T) -> anyhow::Result<Bytes> {
    let header_version = key.request_header_version(version);
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
    let size = header.compute_size(header_version)? + body.compute_size(version)?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(size as i32);
    header.encode(&mut buf, header_version)?;
    body.encode(&mut buf, version)?;
    Ok(buf.freeze())
}

/// Decode a response frame (without its size prefix) to `correlation_id`.
pub fn decode_response<T: Decodable>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    mut frame: Bytes,
) -> anyhow::Result<T> {
    let header_version = key.response_header_version(version);
    let header = crate::protocol::decode_body::<ResponseHeader>(&mut frame, header_version)?;
    if header.correlation_id != correlation_id {
        bail!(
            "response to correlation id {} where {correlation_id} was expected",
            header.correlation_id
        );
    }
    crate::protocol::decode_body::<T>(&mut frame, version)
}

/// One connection to another node's controller listener, for requests
/// that get a response.
pub struct RpcClient {
    pub addr: SocketAddr,
    read: FrameReader<ReadHalf>,
    write: WriteHalf,
    correlation_id: i32,
}

impl RpcClient {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<RpcClient> {
        let conn = crate::io::time::timeout(CALL_TIMEOUT, crate::io::net::connect(addr))
            .await
            .with_context(|| format!("connecting to {addr}: timed out"))?
            .with_context(|| format!("connecting to {addr}"))?;
        let (r, w) = conn.split();
        Ok(RpcClient {
            addr,
            read: FrameReader::new(r, MAX_FRAME),
            write: w,
            correlation_id: 0,
        })
    }

    /// Send a request and wait (at most [`CALL_TIMEOUT`]) for its response.
    /// After an error the connection is no longer usable.
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> anyhow::Result<Resp> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let corr = self.correlation_id;
        let frame = request_frame(key, version, corr, req)?;
        let exchange = async {
            self.write.write_all(&frame).await?;
            self.write.flush().await?;
            let body = self.read.next().await?;
            anyhow::Ok(body)
        };
        let body = crate::io::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .with_context(|| format!("{key:?} to {}: timed out", self.addr))??;
        decode_response(key, version, corr, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{BrokerHeartbeatRequest, BrokerHeartbeatResponse, BrokerId};

    #[test]
    fn raft_frames_carry_their_batch() {
        let f = raft_frame(7, b"batch");
        let size = i32::from_be_bytes([f[0], f[1], f[2], f[3]]) as usize;
        assert_eq!(size, f.len() - 4);
        let prefix = crate::protocol::HeaderPrefix::peek(&f[4..]).expect("header");
        assert_eq!(prefix.api_key, RAFT_MESSAGES);
        assert_eq!(prefix.correlation_id, 7);
        assert_eq!(raft_body(&f[4..]), Some(&b"batch"[..]));
        // Cut short or with a client id longer than the frame: no body.
        assert_eq!(raft_body(&f[4..9]), None);
        let mut bad = f[4..].to_vec();
        bad[8] = 0x7f;
        assert_eq!(raft_body(&bad), None);
        // A null client id.
        let mut null = f[4..].to_vec();
        null[8] = 0xff;
        null[9] = 0xff;
        assert_eq!(raft_body(&null), Some(&null[10..]));
    }

    #[test]
    fn kafka_requests_and_responses_round_trip() {
        let req = BrokerHeartbeatRequest::default()
            .with_broker_id(BrokerId(3))
            .with_broker_epoch(42);
        let f = request_frame(ApiKey::BrokerHeartbeat, 1, 9, &req).expect("encode");
        let mut body = f.slice(4..);
        let prefix = crate::protocol::HeaderPrefix::peek(&body).expect("prefix");
        assert_eq!(
            (prefix.api_key, prefix.api_version),
            (ApiKey::BrokerHeartbeat as i16, 1)
        );
        crate::protocol::decode_header(ApiKey::BrokerHeartbeat, 1, &mut body).expect("header");
        let back: BrokerHeartbeatRequest = crate::protocol::decode_body(&mut body, 1).expect("body");
        assert_eq!(back, req);

        let resp = BrokerHeartbeatResponse::default().with_is_fenced(true);
        let f = crate::protocol::encode_response(ApiKey::BrokerHeartbeat, 1, 9, &resp).expect("encode");
        let got: BrokerHeartbeatResponse =
            decode_response(ApiKey::BrokerHeartbeat, 1, 9, f.slice(4..)).expect("decode");
        assert_eq!(got, resp);
        assert!(decode_response::<BrokerHeartbeatResponse>(ApiKey::BrokerHeartbeat, 1, 10, f.slice(4..)).is_err());
    }
}
