//! The Kafka wire protocol: framing, request headers and the error code
//! table. Message bodies are decoded and encoded with the `kafka-protocol`
//! crate; the APIs and versions ringlog serves are declared by their
//! handlers (`crate::api::APIS`).

pub mod error;
pub mod fetch_response;
pub mod frame;
pub mod request;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// The fixed part of every request header, read without trusting the rest.
#[derive(Debug, Clone, Copy)]
pub struct HeaderPrefix {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

impl HeaderPrefix {
    pub fn peek(frame: &[u8]) -> Option<HeaderPrefix> {
        let b = frame.get(..8)?;
        Some(HeaderPrefix {
            api_key: i16::from_be_bytes([b[0], b[1]]),
            api_version: i16::from_be_bytes([b[2], b[3]]),
            correlation_id: i32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        })
    }
}

/// Decode the full request header; the body follows in `frame`.
pub fn decode_header(key: ApiKey, version: i16, frame: &mut Bytes) -> anyhow::Result<RequestHeader> {
    let header_version = key.request_header_version(version);
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        RequestHeader::decode(frame, header_version)
    }))
    .unwrap_or_else(|_| Err(anyhow::anyhow!("request header decoder panicked")))
}

/// Encode a response (size prefix, header, body) ready for the socket.
pub fn encode_response<T: Encodable>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> anyhow::Result<Bytes> {
    let header_version = if key == ApiKey::ApiVersions {
        0
    } else {
        key.response_header_version(version)
    };
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let size = header.compute_size(header_version)? + body.compute_size(version)?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.extend_from_slice(&(size as i32).to_be_bytes());
    header.encode(&mut buf, header_version)?;
    body.encode(&mut buf, version)?;
    Ok(buf.freeze())
}

/// Decode a request body of type `T`. A panic inside the decoder (it is
/// third-party code fed with client bytes) is turned into an error so the
/// connection is closed instead of the shard dying.
pub fn decode_body<T: Decodable>(body: &mut Bytes, version: i16) -> anyhow::Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| T::decode(body, version)))
        .unwrap_or_else(|_| Err(anyhow::anyhow!("request decoder panicked")))
}

pub fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}
