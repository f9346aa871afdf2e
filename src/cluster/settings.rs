//! A node's place in a cluster, from Kafka's own settings (pure: parsing
//! and validation, no IO): `node.id`, `controller.quorum.voters`, the
//! controller listener, the per-shard replication ports and `broker.rack`.
//! See docs/design/replication.md, Section 3.

use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{bail, Context};

/// One member of the controller quorum, as `controller.quorum.voters`
/// names it: `id@host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Voter {
    pub id: i32,
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Voter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}@[{}]:{}", self.id, self.host, self.port)
        } else {
            write!(f, "{}@{}:{}", self.id, self.host, self.port)
        }
    }
}

/// Parse `controller.quorum.voters`: `1@host:9093,2@host:9193`. Ids must be
/// non-negative and distinct, and so must the addresses.
pub fn parse_voters(s: &str) -> anyhow::Result<Vec<Voter>> {
    let mut voters: Vec<Voter> = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (id, addr) = item
            .split_once('@')
            .with_context(|| format!("controller.quorum.voters: expected ID@HOST:PORT, got {item:?}"))?;
        let id: i32 = id
            .trim()
            .parse()
            .ok()
            .filter(|i| *i >= 0)
            .with_context(|| format!("controller.quorum.voters: bad node id in {item:?}"))?;
        let (host, port) = split_host_port(addr)
            .with_context(|| format!("controller.quorum.voters: expected ID@HOST:PORT, got {item:?}"))?;
        if host.is_empty() || port == 0 {
            bail!("controller.quorum.voters: {item:?} needs a host and a non-zero port");
        }
        if voters.iter().any(|v| v.id == id) {
            bail!("controller.quorum.voters: node id {id} is listed twice");
        }
        if voters.iter().any(|v| v.host == host && v.port == port) {
            bail!("controller.quorum.voters: {host}:{port} is listed twice");
        }
        voters.push(Voter { id, host, port });
    }
    if voters.is_empty() {
        bail!("controller.quorum.voters is empty");
    }
    Ok(voters)
}

/// `HOST:PORT` or `[v6]:PORT` into its parts.
pub fn split_host_port(s: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = s
        .trim()
        .rsplit_once(':')
        .with_context(|| format!("expected HOST:PORT, got {s:?}"))?;
    let port: u16 = port.parse().with_context(|| format!("bad port in {s:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    Ok((host, port))
}

/// Resolve `HOST:PORT` to a socket address to bind (an empty host is every
/// interface).
pub fn resolve(s: &str) -> anyhow::Result<SocketAddr> {
    let (host, port) = split_host_port(s)?;
    let host = if host.is_empty() { "0.0.0.0".to_string() } else { host };
    (host.as_str(), port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .with_context(|| format!("unresolvable address {s:?}"))
}

/// What the command line and the config file say about the cluster, before
/// validation.
#[derive(Clone, Debug)]
pub struct ClusterInput {
    pub node_id: i32,
    /// `controller.quorum.voters`, if given.
    pub voters: Option<String>,
    /// The controller listener (`--controller-listen`, or the `CONTROLLER://`
    /// entry of `listeners`).
    pub controller_listen: Option<String>,
    /// `--replication-listen` / `ringlog.replication.listen`.
    pub replication_listen: Option<String>,
    /// `--cluster-id` / `cluster.id`.
    pub cluster_id: Option<String>,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// `ringlog.cluster.experimental`: start a node of a multi-node quorum
    /// although partitions are not replicated yet (development and tests
    /// only).
    pub experimental: bool,
    /// The client listener and the advertised address, for defaults and
    /// conflicts.
    pub listen: SocketAddr,
    pub advertised_host: String,
}

impl Default for ClusterInput {
    fn default() -> Self {
        ClusterInput {
            node_id: 0,
            voters: None,
            controller_listen: None,
            replication_listen: None,
            cluster_id: None,
            rack: None,
            experimental: false,
            listen: SocketAddr::from(([0, 0, 0, 0], 9092)),
            advertised_host: "127.0.0.1".into(),
        }
    }
}

/// A node's validated cluster settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSettings {
    /// The controller quorum. Empty: single-node mode (a quorum of this node
    /// alone, no controller listener).
    pub voters: Vec<Voter>,
    /// Where this node's controller listens (voters only).
    pub controller_listen: Option<SocketAddr>,
    /// First of the per-shard replication ports: shard `s` listens on
    /// `port + s`.
    pub replication_listen: SocketAddr,
    /// The cluster id a new cluster takes (first-listed voter only).
    pub cluster_id: Option<String>,
    pub rack: Option<String>,
}

impl ClusterSettings {
    /// Single-node mode: no `controller.quorum.voters`.
    pub fn single_node(&self) -> bool {
        self.voters.is_empty()
    }

    pub fn is_voter(&self, node_id: i32) -> bool {
        self.single_node() || self.voters.iter().any(|v| v.id == node_id)
    }

    /// Kafka's derived `process.roles`.
    pub fn process_roles(&self, node_id: i32) -> &'static str {
        if self.is_voter(node_id) {
            "broker,controller"
        } else {
            "broker"
        }
    }

    /// The replication port of shard `shard`.
    pub fn replication_addr(&self, shard: usize) -> Option<SocketAddr> {
        let port = u16::try_from(usize::from(self.replication_listen.port()) + shard).ok()?;
        Some(SocketAddr::new(self.replication_listen.ip(), port))
    }

    /// Validate the input. `shards` is the number of shards (each takes a
    /// replication port).
    pub fn validate(input: &ClusterInput, shards: usize) -> anyhow::Result<ClusterSettings> {
        if input.node_id < 0 {
            bail!("node.id must be 0 or more, got {}", input.node_id);
        }
        if let Some(rack) = &input.rack {
            if rack.trim().is_empty() {
                bail!("broker.rack must not be empty when set");
            }
        }
        if let Some(id) = &input.cluster_id {
            validate_cluster_id(id)?;
        }
        let voters = match &input.voters {
            Some(s) if !s.trim().is_empty() => parse_voters(s)?,
            _ => Vec::new(),
        };
        let controller_listen = input.controller_listen.as_deref().map(resolve).transpose()?;
        let in_quorum = voters.iter().find(|v| v.id == input.node_id);
        if voters.is_empty() {
            if controller_listen.is_some() {
                bail!("--controller-listen is only for a node listed in --controller-quorum-voters");
            }
        } else {
            match (in_quorum, controller_listen) {
                (Some(v), None) => bail!(
                    "node {} is a voter in --controller-quorum-voters ({v}): it needs --controller-listen",
                    input.node_id
                ),
                (None, Some(_)) => bail!(
                    "--controller-listen is given but node {} is not in --controller-quorum-voters; \
                     a broker-only node has no controller listener",
                    input.node_id
                ),
                (Some(v), Some(addr)) if addr.port() != v.port => bail!(
                    "--controller-listen port {} differs from this node's entry in --controller-quorum-voters ({v})",
                    addr.port()
                ),
                _ => {}
            }
            let multi = voters.len() > 1 || in_quorum.is_none();
            if multi && !input.experimental {
                bail!(
                    "a cluster of several nodes is not available yet: the controller quorum runs, but \
                     partitions are not replicated (issue 10); without --controller-quorum-voters ringlog \
                     runs as a single node. Set ringlog.cluster.experimental=true to join the quorum \
                     anyway (development only)"
                );
            }
            if input.advertised_host == "0.0.0.0" || input.advertised_host == "::" || input.advertised_host.is_empty() {
                bail!(
                    "the advertised listener ({}) must be an address other brokers can reach, not a wildcard",
                    input.advertised_host
                );
            }
        }
        let replication_listen = match &input.replication_listen {
            Some(s) => resolve(s)?,
            None => {
                let port = input.listen.port().checked_add(100).with_context(|| {
                    format!(
                        "no default replication port above client port {}: give --replication-listen",
                        input.listen.port()
                    )
                })?;
                SocketAddr::new(input.listen.ip(), port)
            }
        };
        let settings = ClusterSettings {
            voters,
            controller_listen,
            replication_listen,
            cluster_id: input.cluster_id.clone(),
            rack: input.rack.clone(),
        };
        let last = settings
            .replication_addr(shards.saturating_sub(1))
            .context("replication ports (one per shard) run past 65535: choose a lower --replication-listen")?;
        let ports = settings.replication_listen.port()..=last.port();
        if settings.replication_listen.port() != 0 {
            if ports.contains(&input.listen.port()) {
                bail!(
                    "replication ports {}-{} (one per shard) include the client port {}",
                    ports.start(),
                    ports.end(),
                    input.listen.port()
                );
            }
            if let Some(c) = controller_listen.filter(|c| ports.contains(&c.port())) {
                bail!(
                    "replication ports {}-{} (one per shard) include the controller port {}",
                    ports.start(),
                    ports.end(),
                    c.port()
                );
            }
        }
        if let Some(c) = controller_listen.filter(|c| c.port() == input.listen.port() && c.port() != 0) {
            bail!(
                "the controller listener and the client listener share port {}",
                c.port()
            );
        }
        Ok(settings)
    }
}

/// Kafka's cluster ids are 16 bytes in URL-safe base64 (22 characters);
/// ringlog's own are 32 hex digits. Accept any of [A-Za-z0-9_-], 1-64 long.
pub fn validate_cluster_id(id: &str) -> anyhow::Result<()> {
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        bail!("cluster id {id:?} must be 1-64 characters of A-Z, a-z, 0-9, '_' and '-'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> ClusterInput {
        ClusterInput {
            node_id: 1,
            listen: "127.0.0.1:19192".parse().expect("address"),
            advertised_host: "127.0.0.1".into(),
            ..Default::default()
        }
    }

    fn err(i: &ClusterInput) -> String {
        match ClusterSettings::validate(i, 2) {
            Ok(s) => panic!("expected an error, got {s:?}"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn voters_parse_and_reject_duplicates() {
        let v = parse_voters("1@127.0.0.1:9093, 2@[::1]:9193,3@node-3:9293").expect("parses");
        assert_eq!(v.len(), 3);
        assert_eq!(v[1].host, "::1");
        assert_eq!(v[1].to_string(), "2@[::1]:9193");
        assert_eq!(v[2].to_string(), "3@node-3:9293");
        for bad in [
            "",
            "1@h",
            "x@h:1",
            "-1@h:1",
            "1@h:1,1@g:2",
            "1@h:1,2@h:1",
            "1@:5",
            "1@h:0",
            "h:1",
        ] {
            assert!(parse_voters(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn single_node_by_default() {
        let s = ClusterSettings::validate(&input(), 2).expect("valid");
        assert!(s.single_node() && s.is_voter(1));
        assert_eq!(s.process_roles(1), "broker,controller");
        assert_eq!(s.replication_listen.port(), 19292);
        assert_eq!(s.replication_addr(1).map(|a| a.port()), Some(19293));
    }

    #[test]
    fn a_voter_needs_its_controller_listener() {
        let mut i = input();
        i.experimental = true;
        i.voters = Some("1@127.0.0.1:19193,2@127.0.0.1:29193".into());
        assert!(err(&i).contains("needs --controller-listen"));
        i.controller_listen = Some("127.0.0.1:19194".into());
        assert!(err(&i).contains("differs"));
        i.controller_listen = Some("127.0.0.1:19193".into());
        let s = ClusterSettings::validate(&i, 2).expect("valid");
        assert!(!s.single_node() && s.is_voter(1) && !s.is_voter(3));
        i.node_id = 3;
        assert!(err(&i).contains("not in --controller-quorum-voters"));
        i.controller_listen = None;
        let s = ClusterSettings::validate(&i, 2).expect("a broker-only node");
        assert_eq!(s.process_roles(3), "broker");
    }

    #[test]
    fn a_multi_node_quorum_waits_for_m2_unless_experimental() {
        let mut i = input();
        i.voters = Some("1@127.0.0.1:19193,2@127.0.0.1:29193".into());
        i.controller_listen = Some("127.0.0.1:19193".into());
        assert!(err(&i).contains("not available yet"));
        // A quorum of this node alone is a single node.
        i.voters = Some("1@127.0.0.1:19193".into());
        assert!(ClusterSettings::validate(&i, 2).is_ok());
    }

    #[test]
    fn ports_must_not_overlap_and_the_advertised_host_must_be_reachable() {
        let mut i = input();
        i.replication_listen = Some("127.0.0.1:19191".into());
        assert!(err(&i).contains("include the client port"));
        i.replication_listen = Some("127.0.0.1:65535".into());
        assert!(err(&i).contains("past 65535"));
        let mut i = input();
        i.experimental = true;
        i.voters = Some("1@127.0.0.1:19192".into());
        i.controller_listen = Some("127.0.0.1:19192".into());
        assert!(err(&i).contains("share port"));
        let mut i = input();
        i.voters = Some("1@127.0.0.1:19193".into());
        i.controller_listen = Some("127.0.0.1:19193".into());
        i.advertised_host = "0.0.0.0".into();
        assert!(err(&i).contains("wildcard"));
    }

    #[test]
    fn cluster_ids_and_racks() {
        assert!(validate_cluster_id("MkU3OEVBNTcwNTJENDM2Qk").is_ok());
        assert!(validate_cluster_id("3f2a").is_ok());
        assert!(validate_cluster_id("").is_err() && validate_cluster_id("a b").is_err());
        let mut i = input();
        i.rack = Some(" ".into());
        assert!(err(&i).contains("broker.rack"));
        i.rack = Some("rack-a".into());
        i.cluster_id = Some("bad id".into());
        assert!(err(&i).contains("cluster id"));
        i.cluster_id = None;
        assert_eq!(
            ClusterSettings::validate(&i, 2).expect("valid").rack.as_deref(),
            Some("rack-a")
        );
    }
}
