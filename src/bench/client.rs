//! A small blocking Kafka client over `std::net::TcpStream`: framing, request
//! headers, API version negotiation. Message bodies are encoded and decoded
//! with the `kafka-protocol` crate.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::protocol::error as ec;

pub const CLIENT_ID: &str = "ringlog-bench";
/// How long to wait for any response before giving up on a connection.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response frame accepted.
pub const MAX_RESPONSE_BYTES: usize = 512 << 20;

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

/// Append a request (size prefix, header, body) to `buf`.
pub fn encode_request<T: Encodable>(
    buf: &mut BytesMut,
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> anyhow::Result<()> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
    let hv = key.request_header_version(version);
    let size = header.compute_size(hv)? + body.compute_size(version)?;
    let size32 = i32::try_from(size).map_err(|_| anyhow!("{key:?} request of {size} bytes is too large"))?;
    buf.reserve(4 + size);
    buf.put_i32(size32);
    header.encode(buf, hv)?;
    body.encode(buf, version)?;
    Ok(())
}

/// Decode a response frame (without its size prefix), checking the
/// correlation id.
pub fn decode_response<T: Decodable>(
    mut frame: Bytes,
    key: ApiKey,
    version: i16,
    correlation_id: i32,
) -> anyhow::Result<T> {
    // ApiVersions responses always use header v0 (KIP-511).
    let hv = if key == ApiKey::ApiVersions {
        0
    } else {
        key.response_header_version(version)
    };
    let header =
        ResponseHeader::decode(&mut frame, hv).with_context(|| format!("malformed {key:?} response header"))?;
    if header.correlation_id != correlation_id {
        bail!(
            "{key:?} response has correlation id {}, expected {correlation_id}",
            header.correlation_id
        );
    }
    T::decode(&mut frame, version).with_context(|| format!("malformed {key:?} v{version} response"))
}

/// Reads size-prefixed frames into a reused buffer.
pub struct FrameReader {
    buf: BytesMut,
    max: usize,
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader {
            buf: BytesMut::new(),
            max: MAX_RESPONSE_BYTES,
        }
    }
}

impl FrameReader {
    /// Read the next frame's body. The buffer is reused once the previous
    /// frames (and everything sliced from them) are dropped.
    pub fn read(&mut self, r: &mut impl Read) -> anyhow::Result<Bytes> {
        let n = self.frame_len(r)?;
        self.buf.clear();
        self.buf.reserve(n);
        self.buf.resize(n, 0);
        read_exact(r, &mut self.buf[..])?;
        Ok(self.buf.split().freeze())
    }

    /// [`FrameReader::read`] from a socket, receiving straight into the
    /// buffer's spare capacity (no zeroing: fetch responses are large).
    pub fn read_socket(&mut self, s: &TcpStream) -> anyhow::Result<Bytes> {
        let n = self.frame_len(&mut &*s)?;
        self.buf.clear();
        self.buf.reserve(n);
        while self.buf.len() < n {
            let want = n - self.buf.len();
            let spare = self.buf.spare_capacity_mut();
            let want = want.min(spare.len());
            // SAFETY: recv(2) writes at most `want` bytes into the spare
            // capacity, which is at least that long; only the bytes it
            // reports written are then included in the buffer's length.
            let r = unsafe { libc::recv(s.as_raw_fd(), spare.as_mut_ptr().cast(), want, 0) };
            if r > 0 {
                let got = (r as usize).min(want);
                unsafe { self.buf.set_len(self.buf.len() + got) };
            } else if r == 0 {
                bail!("the broker closed the connection");
            } else {
                let e = std::io::Error::last_os_error();
                match e.kind() {
                    std::io::ErrorKind::Interrupted => continue,
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                        bail!("no response from the broker within {} s", RESPONSE_TIMEOUT.as_secs())
                    }
                    _ => bail!("reading from the broker: {e}"),
                }
            }
        }
        Ok(self.buf.split().freeze())
    }

    fn frame_len(&self, r: &mut impl Read) -> anyhow::Result<usize> {
        let mut len = [0u8; 4];
        read_exact(r, &mut len)?;
        let n = i32::from_be_bytes(len);
        let n = usize::try_from(n).map_err(|_| anyhow!("broker sent a frame of negative size {n}"))?;
        if n > self.max {
            bail!("broker sent a frame of {n} bytes (limit {})", self.max);
        }
        Ok(n)
    }
}

fn read_exact(r: &mut impl Read, buf: &mut [u8]) -> anyhow::Result<()> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => anyhow!("the broker closed the connection"),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            anyhow!("no response from the broker within {} s", RESPONSE_TIMEOUT.as_secs())
        }
        _ => anyhow!("reading from the broker: {e}"),
    })
}

/// Open a TCP connection with the options the generator uses.
pub fn tcp_connect(addr: &str) -> anyhow::Result<TcpStream> {
    let addrs: Vec<_> = addr
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {addr}"))?
        .collect();
    let mut last = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, CONNECT_TIMEOUT) {
            Ok(s) => {
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(RESPONSE_TIMEOUT))?;
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => Err(anyhow!("cannot connect to {addr}: {e}")),
        None => Err(anyhow!("{addr} resolves to no address")),
    }
}

/// A connection used request by request (metadata, admin, consumers).
pub struct Conn {
    pub stream: TcpStream,
    pub addr: String,
    pub versions: Versions,
    reader: FrameReader,
    wbuf: BytesMut,
    next_correlation: i32,
}

impl Conn {
    /// Connect and negotiate API versions.
    pub fn connect(addr: &str) -> anyhow::Result<Conn> {
        let stream = tcp_connect(addr)?;
        let mut conn = Conn {
            stream,
            addr: addr.to_string(),
            versions: Versions {
                produce: 3,
                fetch: 4,
                metadata: 1,
                create_topics: 2,
                list_offsets: 1,
            },
            reader: FrameReader::default(),
            wbuf: BytesMut::with_capacity(4096),
            next_correlation: 1,
        };
        conn.versions = conn.negotiate().with_context(|| format!("API versions with {addr}"))?;
        Ok(conn)
    }

    fn negotiate(&mut self) -> anyhow::Result<Versions> {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let corr = self.send(ApiKey::ApiVersions, 3, &req)?;
        let frame = self.reader.read(&mut self.stream)?;
        // A broker that does not speak v3 answers UNSUPPORTED_VERSION with a
        // v0 body that still lists its versions.
        let resp: ApiVersionsResponse = match decode_response(frame.clone(), ApiKey::ApiVersions, 3, corr) {
            Ok(r) => r,
            Err(_) => decode_response(frame, ApiKey::ApiVersions, 0, corr)?,
        };
        if resp.error_code != ec::NONE && resp.error_code != ec::UNSUPPORTED_VERSION {
            bail!("ApiVersions failed with error code {}", resp.error_code);
        }
        let list: Vec<(i16, i16, i16)> = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, k.min_version, k.max_version))
            .collect();
        Versions::negotiate(&list)
    }

    /// Write one request; returns its correlation id.
    pub fn send<T: Encodable>(&mut self, key: ApiKey, version: i16, body: &T) -> anyhow::Result<i32> {
        let corr = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1).max(1);
        self.wbuf.clear();
        encode_request(&mut self.wbuf, key, version, corr, body)?;
        self.stream
            .write_all(&self.wbuf)
            .with_context(|| format!("sending {key:?} to {}", self.addr))?;
        Ok(corr)
    }

    /// Send a request and wait for its response.
    pub fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        body: &Req,
    ) -> anyhow::Result<Resp> {
        let corr = self.send(key, version, body)?;
        let frame = self
            .reader
            .read_socket(&self.stream)
            .with_context(|| format!("waiting for the {key:?} response from {}", self.addr))?;
        decode_response(frame, key, version, corr)
    }

    /// The next correlation id (for a caller that takes over the stream).
    pub fn next_correlation(&self) -> i32 {
        self.next_correlation
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse};

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

    #[test]
    fn request_and_response_framing() {
        let mut buf = BytesMut::new();
        let req = MetadataRequest::default().with_topics(None);
        encode_request(&mut buf, ApiKey::Metadata, 12, 77, &req).unwrap();
        let size = i32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
        assert_eq!(size, buf.len() - 4);
        // Decode it back the way a broker would.
        let mut body = Bytes::copy_from_slice(&buf[4..]);
        let h = RequestHeader::decode(&mut body, ApiKey::Metadata.request_header_version(12)).unwrap();
        assert_eq!(
            (h.request_api_key, h.request_api_version, h.correlation_id),
            (3, 12, 77)
        );
        assert_eq!(h.client_id.as_deref(), Some(CLIENT_ID));

        // A response frame read through FrameReader.
        let resp = MetadataResponse::default();
        let hv = ApiKey::Metadata.response_header_version(12);
        let rh = ResponseHeader::default().with_correlation_id(77);
        let mut out = BytesMut::new();
        let n = rh.compute_size(hv).unwrap() + resp.compute_size(12).unwrap();
        out.put_i32(n as i32);
        rh.encode(&mut out, hv).unwrap();
        resp.encode(&mut out, 12).unwrap();
        let mut wire: &[u8] = &out;
        let mut fr = FrameReader::default();
        let frame = fr.read(&mut wire).unwrap();
        let back: MetadataResponse = decode_response(frame.clone(), ApiKey::Metadata, 12, 77).unwrap();
        assert_eq!(back, resp);
        let e = decode_response::<MetadataResponse>(frame, ApiKey::Metadata, 12, 78).unwrap_err();
        assert!(e.to_string().contains("correlation id 77"), "{e}");
    }

    #[test]
    fn frames_from_a_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut wire = Vec::new();
            for n in [3usize, 0, 200_000] {
                wire.extend_from_slice(&(n as i32).to_be_bytes());
                wire.extend((0..n).map(|i| i as u8));
            }
            // Dribble it out in small pieces.
            for chunk in wire.chunks(7000) {
                s.write_all(chunk).unwrap();
            }
        });
        let s = TcpStream::connect(addr).unwrap();
        let mut fr = FrameReader::default();
        let a = fr.read_socket(&s).unwrap();
        assert_eq!(&a[..], &[0, 1, 2]);
        assert!(fr.read_socket(&s).unwrap().is_empty());
        let c = fr.read_socket(&s).unwrap();
        assert_eq!(c.len(), 200_000);
        assert!(c.iter().enumerate().all(|(i, &b)| b == i as u8));
        drop(a);
        t.join().unwrap();
        let e = fr.read_socket(&s).unwrap_err();
        assert!(e.to_string().contains("closed"), "{e}");
    }

    #[test]
    fn bad_frames_are_errors() {
        let mut fr = FrameReader::default();
        let mut wire: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(fr.read(&mut wire).is_err());
        let mut wire: &[u8] = &[0x7f, 0xff, 0xff, 0xff];
        assert!(fr.read(&mut wire).is_err());
        let mut wire: &[u8] = &[0, 0, 0, 10, 1, 2];
        let e = fr.read(&mut wire).unwrap_err();
        assert!(e.to_string().contains("closed the connection"), "{e}");
        let mut wire: &[u8] = &[];
        assert!(fr.read(&mut wire).is_err());
    }
}
