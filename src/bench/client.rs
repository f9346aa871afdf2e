//! The bench generator's view of a connection: the request versions it uses
//! with one broker, negotiated over the shared client layer
//! ([`crate::client`]: framing, ApiVersions, TCP options). The producer's
//! pipelined hot path encodes and decodes frames itself with
//! [`encode_request`] / [`decode_response`] on the raw stream.

use std::net::TcpStream;

use anyhow::{anyhow, bail, Context};
use bytes::BytesMut;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable};

pub use crate::client::wire::{decode_response, tcp_connect, FrameReader, MAX_RESPONSE_BYTES, RESPONSE_TIMEOUT};

pub const CLIENT_ID: &str = "ringlog-bench";

/// Append a request (size prefix, header, body) to `buf`, as `ringlog-bench`.
#[inline]
pub fn encode_request<T: Encodable>(
    buf: &mut BytesMut,
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> anyhow::Result<()> {
    crate::client::wire::encode_request(buf, key, version, correlation_id, CLIENT_ID, body)
}

/// The request versions used with one broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    pub produce: i16,
    pub fetch: i16,
    pub metadata: i16,
    pub create_topics: i16,
    pub list_offsets: i16,
}

/// The version ranges this client speaks. Fetch stops at 12 and Produce at
/// 12: later versions name topics by id.
const OURS: [(ApiKey, i16, i16); 5] = [
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::ListOffsets, 1, 9),
];

impl Versions {
    /// Highest common version of each API, from the broker's
    /// `(api_key, min, max)` list.
    pub fn negotiate(broker: &[(i16, i16, i16)]) -> anyhow::Result<Versions> {
        let pick = |key: ApiKey, lo: i16, hi: i16| -> anyhow::Result<i16> {
            let (_, blo, bhi) = broker
                .iter()
                .find(|(k, _, _)| *k == key as i16)
                .ok_or_else(|| anyhow!("the broker does not implement {key:?}"))?;
            let v = hi.min(*bhi);
            if v < lo.max(*blo) {
                bail!("no common {key:?} version: broker speaks {blo}..={bhi}, ringlog bench {lo}..={hi}");
            }
            Ok(v)
        };
        let v = |i: usize| pick(OURS[i].0, OURS[i].1, OURS[i].2);
        Ok(Versions {
            produce: v(0)?,
            fetch: v(1)?,
            metadata: v(2)?,
            create_topics: v(3)?,
            list_offsets: v(4)?,
        })
    }
}

/// A connection used request by request (metadata, admin, consumers).
pub struct Conn {
    inner: crate::client::Conn,
    pub addr: String,
    pub versions: Versions,
}

impl Conn {
    /// Connect and negotiate API versions.
    pub fn connect(addr: &str) -> anyhow::Result<Conn> {
        let inner = crate::client::Conn::connect(addr, CLIENT_ID)?;
        let versions =
            Versions::negotiate(&inner.api_versions()).with_context(|| format!("API versions with {addr}"))?;
        Ok(Conn {
            inner,
            addr: addr.to_string(),
            versions,
        })
    }

    /// Write one request; returns its correlation id.
    pub fn send<T: Encodable>(&mut self, key: ApiKey, version: i16, body: &T) -> anyhow::Result<i32> {
        self.inner.send(key, version, body)
    }

    /// Send a request and wait for its response.
    pub fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        body: &Req,
    ) -> anyhow::Result<Resp> {
        self.inner.call(key, version, body)
    }

    /// The next correlation id (for a caller that takes over the stream).
    pub fn next_correlation(&self) -> i32 {
        self.inner.next_correlation()
    }

    /// The socket, for a caller that takes the connection over.
    pub fn into_stream(self) -> TcpStream {
        self.inner.into_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_picks_the_highest_common_version() {
        let broker = [(0, 3, 9), (1, 4, 18), (3, 0, 12), (19, 2, 7), (2, 1, 10), (18, 0, 4)];
        let v = Versions::negotiate(&broker).unwrap();
        assert_eq!(
            v,
            Versions {
                produce: 9,
                fetch: 12,
                metadata: 12,
                create_topics: 7,
                list_offsets: 9
            }
        );
    }

    #[test]
    fn negotiation_failures_are_explained() {
        let e = Versions::negotiate(&[(1, 4, 18)]).unwrap_err();
        assert!(e.to_string().contains("does not implement Produce"), "{e}");
        let broker = [(0, 13, 13), (1, 4, 18), (3, 0, 12), (19, 2, 7), (2, 1, 10)];
        let e = Versions::negotiate(&broker).unwrap_err();
        assert!(e.to_string().contains("no common Produce version"), "{e}");
    }
}
