//! The controller listener on shard 0 of a voter (docs/design/replication.md,
//! Section 5.5): its own dispatch, separate from the client listener's, so
//! client ApiVersions never advertise these APIs. Raft messages go to the
//! quorum shell; BrokerRegistration and BrokerHeartbeat to the active
//! controller; anything else closes the connection.

use std::rc::Rc;

use bytes::Bytes;
use futures_lite::AsyncWriteExt;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerHeartbeatRequest, BrokerHeartbeatResponse, BrokerRegistrationRequest,
    BrokerRegistrationResponse,
};

use super::quorum_shell::QuorumShell;
use super::rpc::{self, RAFT_MESSAGES};
use crate::io::net::{Connection, Listener};
use crate::metadata::quorum::{Heartbeat, Registration};
use crate::metadata::records::Endpoint;
use crate::protocol::error as ec;
use crate::protocol::frame::FrameReader;
use crate::protocol::HeaderPrefix;

/// (API, min, max) served here.
const APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::BrokerRegistration, 0, 4),
    (ApiKey::BrokerHeartbeat, 0, 1),
];

/// Accept controller connections until the task is dropped.
pub async fn serve(shell: Rc<QuorumShell>, listener: Listener) {
    loop {
        match listener.accept().await {
            Ok(conn) => crate::io::executor::spawn_detached(serve_conn(shell.clone(), conn)),
            Err(e) => {
                tracing::warn!("controller listener: accept: {e}");
                crate::io::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_conn(shell: Rc<QuorumShell>, conn: Connection) {
    let peer = conn.peer_addr();
    let (r, mut w) = conn.split();
    let mut frames = FrameReader::new(r, rpc::MAX_FRAME);
    loop {
        let frame = match frames.next().await {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(?peer, "controller connection closed: {e}");
                return;
            }
        };
        match handle(&shell, frame).await {
            Ok(Some(resp)) => {
                if w.write_all(&resp).await.is_err() || w.flush().await.is_err() {
                    return;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(?peer, "controller listener: {e:#}; closing the connection");
                return;
            }
        }
    }
}

/// One request: the response frame to write, if it has one.
async fn handle(shell: &Rc<QuorumShell>, mut frame: Bytes) -> anyhow::Result<Option<Bytes>> {
    let Some(prefix) = HeaderPrefix::peek(&frame) else {
        anyhow::bail!("a frame too short for a request header");
    };
    if prefix.api_key == RAFT_MESSAGES {
        let body = rpc::raft_body(&frame).ok_or_else(|| anyhow::anyhow!("a RaftMessages header cut short"))?;
        let msgs = super::raft_codec::decode(body)?;
        shell.receive(msgs).await;
        return Ok(None);
    }
    let key = ApiKey::try_from(prefix.api_key)
        .map_err(|_| anyhow::anyhow!("API key {} is not served by the controller listener", prefix.api_key))?;
    let version = prefix.api_version;
    let Some(&(_, min, max)) = APIS.iter().find(|(k, _, _)| *k == key) else {
        anyhow::bail!("{key:?} is not served by the controller listener");
    };
    let corr = prefix.correlation_id;
    if key == ApiKey::ApiVersions {
        let resp = api_versions(!(min..=max).contains(&version));
        // Answered in v0 when the version is unknown, as Kafka does.
        let v = if (min..=max).contains(&version) { version } else { 0 };
        return Ok(Some(crate::protocol::encode_response(key, v, corr, &resp)?));
    }
    if !(min..=max).contains(&version) {
        anyhow::bail!("{key:?} v{version} is not supported (v{min}-v{max})");
    }
    crate::protocol::decode_header(key, version, &mut frame)?;
    let resp = match key {
        ApiKey::BrokerRegistration => {
            let req: BrokerRegistrationRequest = crate::protocol::decode_body(&mut frame, version)?;
            let r = registration(&req);
            let resp = match shell.decide(|c, now| c.register(&r, now)).await {
                Ok(epoch) => BrokerRegistrationResponse::default().with_broker_epoch(epoch),
                Err(e) => BrokerRegistrationResponse::default()
                    .with_error_code(e.code)
                    .with_broker_epoch(-1),
            };
            crate::protocol::encode_response(key, version, corr, &resp)?
        }
        ApiKey::BrokerHeartbeat => {
            let req: BrokerHeartbeatRequest = crate::protocol::decode_body(&mut frame, version)?;
            let h = Heartbeat {
                broker_id: req.broker_id.0,
                broker_epoch: req.broker_epoch,
                metadata_offset: req.current_metadata_offset,
                want_fence: req.want_fence,
                want_shut_down: req.want_shut_down,
            };
            let resp = match shell.decide(|c, now| c.heartbeat(&h, now)).await {
                Ok(reply) => BrokerHeartbeatResponse::default()
                    .with_is_caught_up(!reply.is_fenced)
                    .with_is_fenced(reply.is_fenced)
                    .with_should_shut_down(reply.should_shut_down),
                Err(e) => BrokerHeartbeatResponse::default()
                    .with_error_code(e.code)
                    .with_is_fenced(true),
            };
            crate::protocol::encode_response(key, version, corr, &resp)?
        }
        _ => anyhow::bail!("{key:?} is not served by the controller listener"),
    };
    Ok(Some(resp))
}

fn api_versions(unsupported: bool) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(if unsupported { ec::UNSUPPORTED_VERSION } else { 0 })
        .with_api_keys(
            APIS.iter()
                .map(|(k, min, max)| {
                    ApiVersion::default()
                        .with_api_key(*k as i16)
                        .with_min_version(*min)
                        .with_max_version(*max)
                })
                .collect(),
        )
}

/// The controller's view of a BrokerRegistration: the client listener
/// (`PLAINTEXT`) and one `REPLICATION-<shard>` listener per shard, whose
/// number is the broker's shard count.
pub fn registration(req: &BrokerRegistrationRequest) -> Registration {
    let endpoints: Vec<Endpoint> = req
        .listeners
        .iter()
        .map(|l| Endpoint {
            name: l.name.to_string(),
            host: l.host.to_string(),
            port: l.port,
        })
        .collect();
    let shards = endpoints
        .iter()
        .filter(|e| e.name.starts_with("REPLICATION-"))
        .count()
        .max(1) as u32;
    Registration {
        broker_id: req.broker_id.0,
        cluster_id: req.cluster_id.to_string(),
        incarnation_id: req.incarnation_id,
        endpoints,
        rack: req.rack.as_ref().map(|r| r.to_string()),
        shards,
    }
}
