//! A small blocking Kafka protocol client over a std `TcpStream`, for the
//! command line tools. It negotiates versions with ApiVersions and works
//! against any Kafka-compatible broker.

use crate::io::rand::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// Largest response accepted (a sanity bound, not a protocol limit).
const MAX_RESPONSE_BYTES: usize = 256 << 20;
const CLIENT_ID: &str = "ringlog-cli";

/// One connection to one broker.
pub struct Client {
    addr: String,
    stream: TcpStream,
    next_correlation_id: i32,
    /// api key → (min, max) the broker supports.
    versions: HashMap<i16, (i16, i16)>,
}

impl Client {
    /// Connect to `addr` (HOST:PORT) and learn the broker's API versions.
    pub fn connect(addr: &str, timeout: Duration) -> anyhow::Result<Client> {
        let sockaddr = addr
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {addr}"))?
            .next()
            .ok_or_else(|| anyhow!("cannot resolve {addr}"))?;
        let stream =
            TcpStream::connect_timeout(&sockaddr, timeout).with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        let mut client = Client {
            addr: addr.to_string(),
            stream,
            next_correlation_id: 1,
            versions: HashMap::default(),
        };
        // v0 is understood by every broker since Kafka 0.10.
        let resp: ApiVersionsResponse = client.send(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default())?;
        if resp.error_code != 0 {
            bail!("{addr}: ApiVersions failed with error {}", resp.error_code);
        }
        client.versions = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(client)
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether the broker implements `key` in a version within `ours`.
    pub fn supports(&self, key: ApiKey, ours: (i16, i16)) -> bool {
        self.version(key, ours).is_ok()
    }

    /// The highest version of `key` both sides implement (ours: `lo..=hi`).
    pub fn version(&self, key: ApiKey, ours: (i16, i16)) -> anyhow::Result<i16> {
        let (lo, hi) = self
            .versions
            .get(&(key as i16))
            .copied()
            .ok_or_else(|| anyhow!("broker {} does not implement {key:?}", self.addr))?;
        let v = hi.min(ours.1);
        if v < lo.max(ours.0) {
            bail!(
                "broker {} implements {key:?} v{lo}-v{hi}, this tool needs v{}-v{}",
                self.addr,
                ours.0,
                ours.1
            );
        }
        Ok(v)
    }

    /// Send one request and wait for its response.
    pub fn send<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> anyhow::Result<Resp> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_string(CLIENT_ID.to_string())));
        let header_version = key.request_header_version(version);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0; 4]);
        header
            .encode(&mut buf, header_version)
            .with_context(|| format!("encoding {key:?} header"))?;
        req.encode(&mut buf, version)
            .with_context(|| format!("encoding {key:?} v{version}"))?;
        let size = i32::try_from(buf.len() - 4).context("request too large")?;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        self.stream
            .write_all(&buf)
            .with_context(|| format!("sending to {}", self.addr))?;

        let mut len = [0u8; 4];
        self.stream
            .read_exact(&mut len)
            .with_context(|| format!("reading from {}", self.addr))?;
        let len = usize::try_from(i32::from_be_bytes(len)).map_err(|_| anyhow!("negative response size"))?;
        if len > MAX_RESPONSE_BYTES {
            bail!("response of {len} bytes from {} is too large", self.addr);
        }
        let mut body = vec![0u8; len];
        self.stream
            .read_exact(&mut body)
            .with_context(|| format!("reading from {}", self.addr))?;
        let mut body = Bytes::from(body);
        // ApiVersions responses always use header v0 (KIP-511).
        let resp_header_version = if key == ApiKey::ApiVersions {
            0
        } else {
            key.response_header_version(version)
        };
        let rh: ResponseHeader = crate::protocol::decode_body(&mut body, resp_header_version)
            .with_context(|| format!("decoding {key:?} response header"))?;
        if rh.correlation_id != correlation_id {
            bail!(
                "{}: response correlation id {} for request {correlation_id}",
                self.addr,
                rh.correlation_id
            );
        }
        crate::protocol::decode_body(&mut body, version)
            .with_context(|| format!("decoding {key:?} v{version} response"))
    }
}
