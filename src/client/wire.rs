//! Framing shared by every client in the binary (the command line tools and
//! the bench generator): size-prefixed requests with their header, response
//! frames checked against the correlation id, and TCP connections with the
//! timeouts the clients use.

use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// How long to wait for any response before giving up on a connection.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response frame accepted.
pub const MAX_RESPONSE_BYTES: usize = 512 << 20;

/// Append a request (size prefix, header, body) to `buf`.
pub fn encode_request<T: Encodable>(
    buf: &mut BytesMut,
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: &'static str,
    body: &T,
) -> anyhow::Result<()> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(client_id)));
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

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
    use std::io::Write;

    #[test]
    fn request_and_response_framing() {
        let mut buf = BytesMut::new();
        let req = MetadataRequest::default().with_topics(None);
        encode_request(&mut buf, ApiKey::Metadata, 12, 77, "ringlog-bench", &req).unwrap();
        let size = i32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
        assert_eq!(size, buf.len() - 4);
        // Decode it back the way a broker would.
        let mut body = Bytes::copy_from_slice(&buf[4..]);
        let h = RequestHeader::decode(&mut body, ApiKey::Metadata.request_header_version(12)).unwrap();
        assert_eq!(
            (h.request_api_key, h.request_api_version, h.correlation_id),
            (3, 12, 77)
        );
        assert_eq!(h.client_id.as_deref(), Some("ringlog-bench"));

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
