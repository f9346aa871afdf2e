//! What the broker does with a received request frame before a handler runs:
//! the header checks of [`parse_request`] (used by the connection loop) and
//! [`decode_request_body`], which decodes the body of any request the
//! dispatcher serves, by API key and version, without serving it (used by
//! the fuzz targets and their regression test).

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Encodable;

use super::{decode_header, HeaderPrefix};
use crate::api::supported_range;

/// A request whose header passed every check; the frame now holds the body.
#[derive(Debug)]
pub struct ParsedRequest {
    pub key: ApiKey,
    pub prefix: HeaderPrefix,
    pub header: RequestHeader,
}

/// Why a frame is not a request the broker can serve.
#[derive(Debug, thiserror::Error)]
pub enum BadRequest {
    #[error("frame shorter than a request header")]
    TooShort,
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    /// A known API at a version outside [`crate::api::APIS`]. ApiVersions
    /// gets an answer anyway (KIP-511); anything else closes the connection.
    #[error("unsupported version {} of {key:?}", prefix.api_version)]
    UnsupportedVersion { key: ApiKey, prefix: HeaderPrefix },
    #[error("bad request header: {0}")]
    BadHeader(anyhow::Error),
}

/// Check and decode the header of a request frame (without its size
/// prefix): API key known, version implemented, header well formed. On
/// success `frame` is left holding the body.
pub fn parse_request(frame: &mut Bytes) -> Result<ParsedRequest, BadRequest> {
    let prefix = HeaderPrefix::peek(frame).ok_or(BadRequest::TooShort)?;
    let key = ApiKey::try_from(prefix.api_key).map_err(|_| BadRequest::UnknownApiKey(prefix.api_key))?;
    let version_ok =
        matches!(supported_range(key), Some((lo, hi)) if prefix.api_version >= lo && prefix.api_version <= hi);
    if !version_ok {
        return Err(BadRequest::UnsupportedVersion { key, prefix });
    }
    let header = decode_header(key, prefix.api_version, frame).map_err(BadRequest::BadHeader)?;
    Ok(ParsedRequest { key, prefix, header })
}

/// Decode a request body as the dispatcher (`api::dispatch`) does for `key`
/// at `version`, with the same decoder and the same panic guard, and drop
/// the result. Every API in [`crate::api::APIS`] is covered (a unit test
/// checks it); other keys fail as dispatch refuses them.
pub fn decode_request_body(key: ApiKey, version: i16, body: &mut Bytes) -> anyhow::Result<()> {
    crate::api::decode_only(key as i16, version, body).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The default (empty) request body of `key` encoded at `version`, for
/// every API [`decode_request_body`] covers: minimal valid requests for
/// tests and fuzz seeds.
pub fn default_request_body(key: ApiKey, version: i16) -> anyhow::Result<Bytes> {
    crate::api::minimal_request(key, version).ok_or_else(|| anyhow::anyhow!("unsupported API {key:?} v{version}"))
}

/// A whole request frame (size prefix, header with `client_id`, default
/// body) for `key` at `version`.
pub fn default_request_frame(key: ApiKey, version: i16, correlation_id: i32) -> anyhow::Result<Bytes> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(super::str_bytes("fuzz")));
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&[0; 4]);
    header.encode(&mut buf, key.request_header_version(version))?;
    buf.extend_from_slice(&default_request_body(key, version)?);
    let size = i32::try_from(buf.len() - 4)?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::APIS;

    #[test]
    fn every_supported_api_and_version_decodes() {
        for (key, lo, hi) in APIS.iter().map(|a| (a.key, a.min_version, a.max_version)) {
            for version in lo..=hi {
                let mut body = default_request_body(key, version).unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
                decode_request_body(key, version, &mut body).unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
                assert!(body.is_empty(), "{key:?} v{version}: {} bytes left", body.len());
            }
        }
    }

    #[test]
    fn default_frames_parse() {
        for (key, lo, hi) in APIS.iter().map(|a| (a.key, a.min_version, a.max_version)) {
            for version in lo..=hi {
                let f = default_request_frame(key, version, 9).unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
                let mut frame = f.slice(4..);
                let req = parse_request(&mut frame).unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
                assert_eq!(
                    (req.key, req.prefix.api_version, req.prefix.correlation_id),
                    (key, version, 9)
                );
                decode_request_body(key, version, &mut frame).unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
            }
        }
    }

    #[test]
    fn unsupported_keys_are_refused() {
        let mut body = Bytes::new();
        assert!(decode_request_body(ApiKey::WriteTxnMarkers, 0, &mut body).is_err());
    }

    fn frame(key: i16, version: i16, rest: &[u8]) -> Bytes {
        let mut v = key.to_be_bytes().to_vec();
        v.extend_from_slice(&version.to_be_bytes());
        v.extend_from_slice(&7i32.to_be_bytes());
        v.extend_from_slice(rest);
        Bytes::from(v)
    }

    #[test]
    fn header_checks() {
        assert!(matches!(
            parse_request(&mut Bytes::from_static(&[0, 18, 0])),
            Err(BadRequest::TooShort)
        ));
        assert!(matches!(
            parse_request(&mut frame(-3, 0, &[])),
            Err(BadRequest::UnknownApiKey(-3))
        ));
        assert!(matches!(
            parse_request(&mut frame(18, 99, &[])),
            Err(BadRequest::UnsupportedVersion {
                key: ApiKey::ApiVersions,
                ..
            })
        ));
        // Metadata v1 (header v1): a client id string that runs past the frame.
        assert!(matches!(
            parse_request(&mut frame(3, 1, &[0, 9, b'x'])),
            Err(BadRequest::BadHeader(_))
        ));
        // Metadata v1 with client id "ab" and an empty (null) topic array.
        let mut f = frame(3, 1, &[0, 2, b'a', b'b', 0xff, 0xff, 0xff, 0xff]);
        let req = parse_request(&mut f).expect("valid header");
        assert_eq!(req.key, ApiKey::Metadata);
        assert_eq!(req.prefix.correlation_id, 7);
        assert_eq!(req.header.client_id.as_deref(), Some("ab"));
        assert_eq!(&f[..], &[0xff, 0xff, 0xff, 0xff]);
        decode_request_body(req.key, 1, &mut f).expect("body");
    }
}
