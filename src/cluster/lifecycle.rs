//! A broker's life in the cluster, on shard 0 of every node
//! (docs/design/replication.md, Section 5.6): register with the active
//! controller (fenced, a fresh incarnation id, the client listener and one
//! `REPLICATION-<shard>` listener per shard), then heartbeat every
//! `broker.heartbeat.interval.ms` with how far it has applied the metadata
//! log; the controller unfences it once it has caught up with its own
//! registration. A heartbeat refused for a stale or unknown epoch registers
//! again; NOT_CONTROLLER or a lost connection moves on to another voter.
//!
//! The pure part, [`Lifecycle`], decides what to send next from what came
//! back; [`run`] is its shell.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use kafka_protocol::messages::broker_registration_request::Listener as RegListener;
use kafka_protocol::messages::{
    ApiKey, BrokerHeartbeatRequest, BrokerHeartbeatResponse, BrokerId, BrokerRegistrationRequest,
    BrokerRegistrationResponse,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::quorum_shell::QuorumShell;
use super::rpc::RpcClient;
use crate::protocol::error as ec;

/// What this broker tells the controller about itself.
#[derive(Clone, Debug)]
pub struct BrokerIdentity {
    pub node_id: i32,
    pub cluster_id: String,
    pub incarnation_id: Uuid,
    pub client: (String, u16),
    /// One replication listener per shard.
    pub replication: Vec<(String, u16)>,
    pub rack: Option<String>,
}

impl BrokerIdentity {
    pub fn registration(&self) -> BrokerRegistrationRequest {
        let mut listeners = vec![RegListener::default()
            .with_name(StrBytes::from_static_str("PLAINTEXT"))
            .with_host(StrBytes::from_string(self.client.0.clone()))
            .with_port(self.client.1)
            .with_security_protocol(0)];
        for (s, (host, port)) in self.replication.iter().enumerate() {
            listeners.push(
                RegListener::default()
                    .with_name(StrBytes::from_string(format!("REPLICATION-{s}")))
                    .with_host(StrBytes::from_string(host.clone()))
                    .with_port(*port)
                    .with_security_protocol(0),
            );
        }
        BrokerRegistrationRequest::default()
            .with_broker_id(BrokerId(self.node_id))
            .with_cluster_id(StrBytes::from_string(self.cluster_id.clone()))
            .with_incarnation_id(self.incarnation_id)
            .with_listeners(listeners)
            .with_rack(self.rack.clone().map(StrBytes::from_string))
            .with_previous_broker_epoch(-1)
    }
}

/// Where the broker is in its registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not registered (or the registration was lost): register next.
    Unregistered,
    /// Registered with this epoch; heartbeat next.
    Registered { epoch: i64, fenced: bool },
}

/// What to do after an answer (or its absence).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Ask again now, of the same controller.
    Now,
    /// Wait for the heartbeat interval.
    Wait,
    /// Try another voter (after a short pause).
    OtherController,
}

/// The registration state machine (pure).
#[derive(Clone, Debug)]
pub struct Lifecycle {
    pub phase: Phase,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            phase: Phase::Unregistered,
        }
    }
}

impl Lifecycle {
    /// A registration's answer: an error code and the epoch.
    pub fn registered(&mut self, error: i16, epoch: i64) -> Next {
        match error {
            0 => {
                self.phase = Phase::Registered { epoch, fenced: true };
                Next::Now
            }
            ec::NOT_CONTROLLER => Next::OtherController,
            _ => Next::Wait,
        }
    }

    /// A heartbeat's answer.
    pub fn heartbeat(&mut self, error: i16, is_fenced: bool) -> Next {
        match (&mut self.phase, error) {
            (Phase::Registered { fenced, .. }, 0) => {
                *fenced = is_fenced;
                Next::Wait
            }
            (_, ec::STALE_BROKER_EPOCH | ec::BROKER_ID_NOT_REGISTERED) => {
                self.phase = Phase::Unregistered;
                Next::Now
            }
            (_, ec::NOT_CONTROLLER) => Next::OtherController,
            _ => Next::Wait,
        }
    }
}

/// Register and heartbeat until the task is dropped. `voters` are the
/// controllers' addresses by id; `local` is this node's own quorum voter,
/// if it is one (it knows who leads, and how far this node has applied).
pub async fn run(
    identity: BrokerIdentity,
    voters: Vec<(i32, SocketAddr)>,
    local: Option<Rc<QuorumShell>>,
    interval: Duration,
) {
    let mut life = Lifecycle::default();
    let mut conn: Option<RpcClient> = None;
    let mut rotate = 0usize;
    loop {
        if conn.is_none() {
            let leader = local.as_ref().and_then(|q| q.leader());
            let pick = leader
                .and_then(|l| voters.iter().find(|(id, _)| *id == l))
                .or_else(|| voters.get(rotate % voters.len().max(1)))
                .map(|(_, a)| *a);
            let Some(addr) = pick else {
                return;
            };
            match RpcClient::connect(addr).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tracing::debug!("controller {addr}: {e:#}");
                    rotate += 1;
                    crate::io::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let next = match life.phase.clone() {
            Phase::Unregistered => {
                let req = identity.registration();
                match c
                    .call::<_, BrokerRegistrationResponse>(ApiKey::BrokerRegistration, 3, &req)
                    .await
                {
                    Ok(r) => {
                        let next = life.registered(r.error_code, r.broker_epoch);
                        if r.error_code == 0 {
                            tracing::info!(
                                node = identity.node_id,
                                epoch = r.broker_epoch,
                                "registered with the controller"
                            );
                        } else {
                            tracing::warn!(
                                node = identity.node_id,
                                "registration refused: {}",
                                crate::protocol::error::name(r.error_code)
                            );
                        }
                        next
                    }
                    Err(e) => {
                        tracing::debug!("registration: {e:#}");
                        Next::OtherController
                    }
                }
            }
            Phase::Registered { epoch, fenced } => {
                let offset = local.as_ref().map_or(-1, |q| q.applied_offset());
                let req = BrokerHeartbeatRequest::default()
                    .with_broker_id(BrokerId(identity.node_id))
                    .with_broker_epoch(epoch)
                    .with_current_metadata_offset(offset);
                match c
                    .call::<_, BrokerHeartbeatResponse>(ApiKey::BrokerHeartbeat, 1, &req)
                    .await
                {
                    Ok(r) => {
                        let next = life.heartbeat(r.error_code, r.is_fenced);
                        if fenced && !r.is_fenced && r.error_code == 0 {
                            tracing::info!(node = identity.node_id, epoch, "unfenced by the controller");
                        }
                        next
                    }
                    Err(e) => {
                        tracing::debug!("heartbeat: {e:#}");
                        Next::OtherController
                    }
                }
            }
        };
        match next {
            Next::Now => {}
            Next::Wait => crate::io::time::sleep(interval).await,
            Next::OtherController => {
                conn = None;
                rotate += 1;
                crate::io::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_then_heartbeats_and_back() {
        let mut l = Lifecycle::default();
        assert_eq!(l.registered(ec::NOT_CONTROLLER, -1), Next::OtherController);
        assert_eq!(l.phase, Phase::Unregistered);
        assert_eq!(l.registered(0, 17), Next::Now);
        assert_eq!(
            l.phase,
            Phase::Registered {
                epoch: 17,
                fenced: true
            }
        );
        assert_eq!(l.heartbeat(0, false), Next::Wait);
        assert_eq!(
            l.phase,
            Phase::Registered {
                epoch: 17,
                fenced: false
            }
        );
        // A controller that lost the registration (or a newer one): again.
        assert_eq!(l.heartbeat(ec::STALE_BROKER_EPOCH, true), Next::Now);
        assert_eq!(l.phase, Phase::Unregistered);
        assert_eq!(l.registered(0, 30), Next::Now);
        assert_eq!(l.heartbeat(ec::NOT_CONTROLLER, true), Next::OtherController);
        assert_eq!(
            l.phase,
            Phase::Registered {
                epoch: 30,
                fenced: true
            }
        );
        assert_eq!(l.heartbeat(ec::BROKER_ID_NOT_REGISTERED, true), Next::Now);
        assert_eq!(l.phase, Phase::Unregistered);
    }

    #[test]
    fn the_registration_names_every_shard() {
        let id = BrokerIdentity {
            node_id: 2,
            cluster_id: "c".into(),
            incarnation_id: Uuid::from_u128(5),
            client: ("127.0.0.1".into(), 29192),
            replication: vec![("127.0.0.1".into(), 29300), ("127.0.0.1".into(), 29301)],
            rack: Some("r1".into()),
        };
        let req = id.registration();
        let r = super::super::controller_listener::registration(&req);
        assert_eq!(r.broker_id, 2);
        assert_eq!(r.shards, 2);
        assert_eq!(r.endpoints.len(), 3);
        assert_eq!(r.endpoints[0].name, "PLAINTEXT");
        assert_eq!(r.endpoints[2].name, "REPLICATION-1");
        assert_eq!(r.rack.as_deref(), Some("r1"));
    }
}
