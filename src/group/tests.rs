//! Scenario tests driving [`GroupCoordinatorState`] like the shell would.

use crate::io::rand::{HashMap, HashSet};
use std::collections::{BTreeMap, BTreeSet};

use bytes::{BufMut, Bytes, BytesMut};

use super::assignor::Assignment;
use super::classic::*;
use super::consumer::*;
use super::offsets::*;
use super::records::{Record, RecordKey, RecordValue, TopicPartitions};
use super::*;
use crate::protocol::error;

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

const SESSION: i32 = 10_000;
const REBALANCE: i32 = 30_000;
const INITIAL_DELAY: i32 = 100;

fn config() -> GroupConfig {
    let mut c = GroupConfig::default();
    c.classic.initial_rebalance_delay_ms = INITIAL_DELAY;
    c.offsets_retention_ms = 60_000;
    c.offsets_retention_check_interval_ms = 1_000;
    c
}

struct Harness {
    c: GroupCoordinatorState,
    now: i64,
    next_token: RequestToken,
    outstanding: HashSet<RequestToken>,
    joins: HashMap<RequestToken, JoinGroupResponse>,
    syncs: HashMap<RequestToken, SyncGroupResponse>,
    persisted: Vec<Record>,
    topics: StaticTopics,
}

impl Harness {
    fn new() -> Self {
        Harness::with_config(config())
    }

    fn with_config(cfg: GroupConfig) -> Self {
        Harness {
            c: GroupCoordinatorState::new(cfg, Box::new(SequentialIds::default()), 0),
            now: 0,
            next_token: 0,
            outstanding: HashSet::default(),
            joins: HashMap::default(),
            syncs: HashMap::default(),
            persisted: Vec::new(),
            topics: StaticTopics::default(),
        }
    }

    fn absorb(&mut self, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Persist(r) => self.persisted.push(r),
                Effect::CompleteJoin { token, response } => {
                    assert!(self.outstanding.remove(&token), "join token {token} completed twice");
                    self.joins.insert(token, response);
                }
                Effect::CompleteSync { token, response } => {
                    assert!(self.outstanding.remove(&token), "sync token {token} completed twice");
                    self.syncs.insert(token, response);
                }
            }
        }
    }

    fn token(&mut self) -> RequestToken {
        self.next_token += 1;
        self.outstanding.insert(self.next_token);
        self.next_token
    }

    fn join_req(
        &mut self,
        group: &str,
        member: &str,
        instance: Option<&str>,
        protocols: &[(&str, &[u8])],
        version: i16,
    ) -> RequestToken {
        let req = JoinGroupRequest {
            group_id: group.into(),
            session_timeout_ms: SESSION,
            rebalance_timeout_ms: REBALANCE,
            member_id: member.into(),
            group_instance_id: instance.map(String::from),
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|(n, m)| JoinProtocol {
                    name: n.to_string(),
                    metadata: Bytes::copy_from_slice(m),
                })
                .collect(),
            reason: None,
            api_version: version,
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
        };
        self.join_with(req)
    }

    fn join_with(&mut self, req: JoinGroupRequest) -> RequestToken {
        let t = self.token();
        let effects = self.c.join_group(t, req, self.now);
        self.absorb(effects);
        t
    }

    fn join(&mut self, group: &str, member: &str) -> RequestToken {
        self.join_req(group, member, None, &[("range", b"m")], 9)
    }

    /// KIP-394 two step join of a new dynamic member; returns its member id
    /// and the token of the second (parked) join.
    fn join_new(&mut self, group: &str) -> (String, RequestToken) {
        let t = self.join(group, "");
        let r = self.joins[&t].clone();
        assert_eq!(r.error_code, error::MEMBER_ID_REQUIRED);
        let id = r.member_id.clone();
        (id.clone(), self.join(group, &id))
    }

    fn sync(&mut self, group: &str, member: &str, generation: i32, assignments: &[(&str, &[u8])]) -> RequestToken {
        self.sync_instance(group, member, None, generation, assignments)
    }

    fn sync_instance(
        &mut self,
        group: &str,
        member: &str,
        instance: Option<&str>,
        generation: i32,
        assignments: &[(&str, &[u8])],
    ) -> RequestToken {
        let t = self.token();
        let req = SyncGroupRequest {
            group_id: group.into(),
            generation_id: generation,
            member_id: member.into(),
            group_instance_id: instance.map(String::from),
            protocol_type: Some("consumer".into()),
            protocol_name: None,
            assignments: assignments
                .iter()
                .map(|(m, a)| SyncGroupAssignment {
                    member_id: m.to_string(),
                    assignment: Bytes::copy_from_slice(a),
                })
                .collect(),
        };
        let effects = self.c.sync_group(t, req, self.now);
        self.absorb(effects);
        t
    }

    fn heartbeat(&mut self, group: &str, member: &str, generation: i32) -> ErrorCode {
        self.heartbeat_instance(group, member, None, generation)
    }

    fn heartbeat_instance(&mut self, group: &str, member: &str, instance: Option<&str>, generation: i32) -> ErrorCode {
        self.c
            .heartbeat(
                &HeartbeatRequest {
                    group_id: group.into(),
                    generation_id: generation,
                    member_id: member.into(),
                    group_instance_id: instance.map(String::from),
                },
                self.now,
            )
            .error_code
    }

    fn leave(&mut self, group: &str, members: &[(&str, Option<&str>)]) -> LeaveGroupResponse {
        let out = self.c.leave_group(
            &LeaveGroupRequest {
                group_id: group.into(),
                members: members
                    .iter()
                    .map(|(m, i)| LeaveMember {
                        member_id: m.to_string(),
                        group_instance_id: i.map(String::from),
                        reason: None,
                    })
                    .collect(),
            },
            self.now,
        );
        self.absorb(out.effects);
        out.response
    }

    /// Moves time forward, firing timers exactly when they are due.
    fn advance(&mut self, ms: i64) {
        let target = self.now + ms;
        while let Some(d) = self.c.next_deadline() {
            if d > target {
                break;
            }
            self.now = self.now.max(d);
            let effects = self.c.poll(self.now, &self.topics);
            self.absorb(effects);
        }
        self.now = target;
    }

    fn classic(&self, group: &str) -> &ClassicGroup {
        self.c.classic_group(group).expect("classic group")
    }

    fn done(&self, t: RequestToken) -> bool {
        !self.outstanding.contains(&t)
    }
}

fn subscription(topics: &[&str]) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(topics.len() as i32);
    for t in topics {
        b.put_i16(t.len() as i16);
        b.put_slice(t.as_bytes());
    }
    b.put_i32(-1);
    b.to_vec()
}

/// Three members join a fresh group and reach Stable; returns (leader,
/// followers, generation).
fn stable_group_of_three(h: &mut Harness, group: &str) -> (String, Vec<String>, i32) {
    let (a, ta) = h.join_new(group);
    let (b, tb) = h.join_new(group);
    let (c, tc) = h.join_new(group);
    assert!(!h.done(ta) && !h.done(tb) && !h.done(tc));
    h.advance(i64::from(INITIAL_DELAY) * 4);
    let ra = h.joins[&ta].clone();
    let gen = ra.generation_id;
    let leader = ra.leader.clone();
    assert_eq!(leader, a);
    let mut followers = vec![b.clone(), c.clone()];
    followers.sort();
    let ts = h.sync(group, &a, gen, &[(&a, b"A"), (&b, b"B"), (&c, b"C")]);
    assert!(h.done(ts));
    let tb = h.sync(group, &b, gen, &[]);
    let tc = h.sync(group, &c, gen, &[]);
    assert!(h.done(tb) && h.done(tc));
    (leader, followers, gen)
}

// ---------------------------------------------------------------------------
// Classic protocol
// ---------------------------------------------------------------------------

#[test]
fn classic_happy_path_three_members() {
    let mut h = Harness::new();
    let (a, ta) = h.join_new("g");
    assert!(a.starts_with("client-"));
    let (b, tb) = h.join_new("g");
    let (c, tc) = h.join_new("g");
    assert_eq!(h.classic("g").state(), ClassicGroupState::PreparingRebalance);
    // The initial rebalance delay is extended while members keep joining.
    h.advance(i64::from(INITIAL_DELAY) - 1);
    assert!(!h.done(ta));
    h.advance(i64::from(INITIAL_DELAY) * 3);
    for t in [ta, tb, tc] {
        let r = &h.joins[&t];
        assert_eq!(r.error_code, error::NONE);
        assert_eq!(r.generation_id, 1);
        assert_eq!(r.protocol_name.as_deref(), Some("range"));
        assert_eq!(r.protocol_type.as_deref(), Some("consumer"));
        assert_eq!(r.leader, a);
    }
    // Only the leader gets the members' metadata.
    assert_eq!(h.joins[&ta].members.len(), 3);
    assert!(h.joins[&tb].members.is_empty());
    assert_eq!(h.classic("g").state(), ClassicGroupState::CompletingRebalance);

    // Followers wait for the leader.
    let sb = h.sync("g", &b, 1, &[]);
    assert!(!h.done(sb));
    assert_eq!(h.heartbeat("g", &b, 1), error::NONE);
    let sa = h.sync("g", &a, 1, &[(&a, b"A"), (&b, b"B"), (&c, b"C")]);
    assert!(h.done(sa) && h.done(sb));
    assert_eq!(h.syncs[&sa].assignment, Bytes::from_static(b"A"));
    assert_eq!(h.syncs[&sb].assignment, Bytes::from_static(b"B"));
    assert_eq!(h.syncs[&sb].protocol_name.as_deref(), Some("range"));
    let sc = h.sync("g", &c, 1, &[]);
    assert_eq!(h.syncs[&sc].assignment, Bytes::from_static(b"C"));
    assert_eq!(h.classic("g").state(), ClassicGroupState::Stable);
    for m in [&a, &b, &c] {
        assert_eq!(h.heartbeat("g", m, 1), error::NONE);
    }
    // The assignment was persisted.
    let last = h
        .persisted
        .iter()
        .rev()
        .find(|r| matches!(r.key, RecordKey::GroupMetadata { .. }))
        .cloned()
        .unwrap();
    match last.value {
        Some(RecordValue::GroupMetadata(v)) => {
            assert_eq!(v.generation, 1);
            assert_eq!(v.members.len(), 3);
            assert_eq!(v.leader.as_deref(), Some(a.as_str()));
            assert_eq!(v.protocol.as_deref(), Some("range"));
            assert_eq!(v.members[1].assignment, Bytes::from_static(b"B"));
        }
        other => panic!("unexpected {other:?}"),
    }
    let d = h.c.describe_groups(&["g".into(), "nope".into()]);
    assert_eq!(d[0].group_state, "Stable");
    assert_eq!(d[0].protocol_data, "range");
    assert_eq!(d[0].members.len(), 3);
    assert_eq!(d[0].members[0].member_metadata, Bytes::from_static(b"m"));
    assert_eq!(d[1].group_state, "Dead");
    assert!(h.outstanding.is_empty());
}

#[test]
fn member_id_required_and_old_versions() {
    let mut h = Harness::new();
    let t = h.join_req("g", "", None, &[("range", b"m")], 4);
    let r = &h.joins[&t];
    assert_eq!(r.error_code, error::MEMBER_ID_REQUIRED);
    assert_eq!(r.member_id, "client-00000000-0000-0000-0000-000000000001");
    assert!(h.classic("g").has_pending_member(&r.member_id));
    // The new group was persisted (empty).
    assert!(matches!(h.persisted[0].value, Some(RecordValue::GroupMetadata(ref v)) if v.members.is_empty()));
    // v3 joins directly.
    let t3 = h.join_req("g", "", None, &[("range", b"m")], 3);
    assert!(!h.done(t3));
    assert_eq!(h.classic("g").num_members(), 1);
    // The pending member never came back: it expires after its session
    // timeout and the join completes.
    h.advance(i64::from(SESSION) + 1);
    assert!(h.done(t3));
    assert_eq!(h.joins[&t3].error_code, error::NONE);
    assert_eq!(h.joins[&t3].members.len(), 1);
    // Unknown member id for a group that does not exist.
    let t = h.join("other", "ghost");
    assert_eq!(h.joins[&t].error_code, error::UNKNOWN_MEMBER_ID);
    assert!(h.c.group("other").is_none());
}

#[test]
fn join_validation_errors() {
    let mut h = Harness::new();
    let mut req = JoinGroupRequest {
        group_id: "".into(),
        session_timeout_ms: SESSION,
        rebalance_timeout_ms: REBALANCE,
        member_id: "".into(),
        group_instance_id: None,
        protocol_type: "consumer".into(),
        protocols: vec![],
        reason: None,
        api_version: 9,
        client_id: "c".into(),
        client_host: "h".into(),
    };
    let t = h.join_with(req.clone());
    assert_eq!(h.joins[&t].error_code, error::INVALID_GROUP_ID);
    req.group_id = "g".into();
    req.session_timeout_ms = 10;
    let t = h.join_with(req.clone());
    assert_eq!(h.joins[&t].error_code, error::INVALID_SESSION_TIMEOUT);
    req.session_timeout_ms = SESSION;
    let t = h.join_with(req.clone());
    assert_eq!(h.joins[&t].error_code, error::INCONSISTENT_GROUP_PROTOCOL);
    // Protocol type must match the group's.
    let (_a, _) = h.join_new("g2");
    let t = h.join_req("g2", "", None, &[("range", b"m")], 9);
    assert_eq!(h.joins[&t].error_code, error::MEMBER_ID_REQUIRED);
    let mut other = req.clone();
    other.group_id = "g2".into();
    other.protocol_type = "connect".into();
    other.protocols = vec![JoinProtocol {
        name: "range".into(),
        metadata: Bytes::new(),
    }];
    let t = h.join_with(other);
    assert_eq!(h.joins[&t].error_code, error::INCONSISTENT_GROUP_PROTOCOL);
    // No common protocol.
    let t = h.join_req("g2", "", None, &[("roundrobin", b"m")], 9);
    assert_eq!(h.joins[&t].error_code, error::INCONSISTENT_GROUP_PROTOCOL);
}

#[test]
fn protocol_selection_by_votes() {
    let mut h = Harness::new();
    let t1 = h.join_req("g", "", None, &[("range", b"1"), ("roundrobin", b"1")], 3);
    let t2 = h.join_req("g", "", None, &[("roundrobin", b"2"), ("range", b"2")], 3);
    let t3 = h.join_req(
        "g",
        "",
        None,
        &[("roundrobin", b"3"), ("range", b"3"), ("sticky", b"3")],
        3,
    );
    h.advance(1_000);
    for t in [t1, t2, t3] {
        assert_eq!(h.joins[&t].protocol_name.as_deref(), Some("roundrobin"));
    }
    // The leader gets each member's metadata for the selected protocol.
    let metas: Vec<Bytes> = h.joins[&t1].members.iter().map(|m| m.metadata.clone()).collect();
    assert_eq!(
        metas,
        vec![
            Bytes::from_static(b"1"),
            Bytes::from_static(b"2"),
            Bytes::from_static(b"3")
        ]
    );

    // Only protocols supported by everyone are candidates.
    let mut h = Harness::new();
    let t1 = h.join_req("g", "", None, &[("range", b"1"), ("roundrobin", b"1")], 3);
    let t2 = h.join_req("g", "", None, &[("range", b"2"), ("roundrobin", b"2")], 3);
    let t3 = h.join_req("g", "", None, &[("roundrobin", b"3")], 3);
    h.advance(1_000);
    for t in [t1, t2, t3] {
        assert_eq!(h.joins[&t].protocol_name.as_deref(), Some("roundrobin"));
    }
}

#[test]
fn new_member_triggers_rebalance() {
    let mut h = Harness::new();
    let (a, followers, gen) = stable_group_of_three(&mut h, "g");
    let (d, td) = h.join_new("g");
    assert_eq!(h.classic("g").state(), ClassicGroupState::PreparingRebalance);
    assert!(!h.done(td));
    // Existing members learn about the rebalance through heartbeats.
    assert_eq!(h.heartbeat("g", &a, gen), error::REBALANCE_IN_PROGRESS);
    let s = h.sync("g", &a, gen, &[]);
    assert_eq!(h.syncs[&s].error_code, error::REBALANCE_IN_PROGRESS);
    let ta = h.join("g", &a);
    let tb = h.join("g", &followers[0]);
    assert!(!h.done(ta));
    let tc = h.join("g", &followers[1]);
    // Everyone rejoined: the join completes immediately.
    for t in [ta, tb, tc, td] {
        assert_eq!(h.joins[&t].generation_id, gen + 1);
    }
    assert_eq!(h.joins[&ta].members.len(), 4);
    assert_eq!(h.joins[&td].member_id, d);
    assert_eq!(h.classic("g").state(), ClassicGroupState::CompletingRebalance);
}

#[test]
fn session_timeout_expiry_removes_member() {
    let mut h = Harness::new();
    let (a, followers, gen) = stable_group_of_three(&mut h, "g");
    let dead = followers[1].clone();
    for _ in 0..2 {
        h.advance(4_000);
        assert_eq!(h.heartbeat("g", &a, gen), error::NONE);
        assert_eq!(h.heartbeat("g", &followers[0], gen), error::NONE);
    }
    assert!(h.classic("g").member(&dead).is_some());
    h.advance(4_000);
    // `dead` stopped heartbeating: it is gone and a rebalance started.
    assert!(h.classic("g").member(&dead).is_none());
    assert_eq!(h.classic("g").state(), ClassicGroupState::PreparingRebalance);
    assert_eq!(h.heartbeat("g", &dead, gen), error::UNKNOWN_MEMBER_ID);
    assert_eq!(h.heartbeat("g", &a, gen), error::REBALANCE_IN_PROGRESS);
    let ta = h.join("g", &a);
    let tb = h.join("g", &followers[0]);
    assert_eq!(h.joins[&ta].generation_id, gen + 1);
    assert_eq!(h.joins[&tb].generation_id, gen + 1);
    assert_eq!(h.joins[&ta].members.len(), 2);
}

#[test]
fn rebalance_timeout_removes_members_that_did_not_rejoin() {
    let mut h = Harness::new();
    let (a, followers, gen) = stable_group_of_three(&mut h, "g");
    // The leader rejoins (forcing a rebalance); the followers keep
    // heartbeating but never rejoin.
    let ta = h.join("g", &a);
    assert!(!h.done(ta));
    let mut elapsed = 0;
    while elapsed < i64::from(REBALANCE) - 1_000 {
        h.advance(1_000);
        elapsed += 1_000;
        for f in &followers {
            assert_eq!(h.heartbeat("g", f, gen), error::REBALANCE_IN_PROGRESS);
        }
    }
    assert!(!h.done(ta));
    h.advance(1_000);
    assert!(h.done(ta));
    let r = &h.joins[&ta];
    assert_eq!(r.generation_id, gen + 1);
    assert_eq!(r.members.len(), 1);
    assert_eq!(h.classic("g").num_members(), 1);
    for f in &followers {
        assert_eq!(h.heartbeat("g", f, gen + 1), error::UNKNOWN_MEMBER_ID);
    }
}

#[test]
fn leader_leave_elects_new_leader() {
    let mut h = Harness::new();
    let (a, followers, gen) = stable_group_of_three(&mut h, "g");
    let r = h.leave("g", &[(&a, None)]);
    assert_eq!(r.members[0].error_code, error::NONE);
    assert_eq!(h.classic("g").state(), ClassicGroupState::PreparingRebalance);
    assert_ne!(h.classic("g").leader_id(), Some(a.as_str()));
    let tb = h.join("g", &followers[0]);
    let tc = h.join("g", &followers[1]);
    let rb = &h.joins[&tb];
    assert_eq!(rb.generation_id, gen + 1);
    assert!(followers.contains(&rb.leader));
    let leader_token = if rb.leader == followers[0] { tb } else { tc };
    assert_eq!(h.joins[&leader_token].members.len(), 2);
    // Unknown members in a batch are reported individually.
    let r = h.leave("g", &[("nobody", None), (&followers[0], None)]);
    assert_eq!(r.members[0].error_code, error::UNKNOWN_MEMBER_ID);
    assert_eq!(r.members[1].error_code, error::NONE);
    assert_eq!(r.v0_error(), error::UNKNOWN_MEMBER_ID);
    // Everyone leaves: the group becomes Empty and is persisted as such.
    h.leave("g", &[(&followers[1], None)]);
    assert_eq!(h.classic("g").state(), ClassicGroupState::Empty);
    assert!(matches!(
        h.persisted.last().and_then(|r| r.value.clone()),
        Some(RecordValue::GroupMetadata(ref v)) if v.members.is_empty()
    ));
    assert!(h.outstanding.is_empty());
}

fn static_group(h: &mut Harness) -> (String, String, i32) {
    let ta = h.join_req("g", "", Some("ia"), &[("range", b"a")], 9);
    let tb = h.join_req("g", "", Some("ib"), &[("range", b"b")], 9);
    h.advance(1_000);
    let a = h.joins[&ta].member_id.clone();
    let b = h.joins[&tb].member_id.clone();
    assert!(a.starts_with("ia-"));
    let gen = h.joins[&ta].generation_id;
    h.sync_instance("g", &a, Some("ia"), gen, &[(&a, b"A"), (&b, b"B")]);
    h.sync_instance("g", &b, Some("ib"), gen, &[]);
    assert_eq!(h.classic("g").state(), ClassicGroupState::Stable);
    (a, b, gen)
}

#[test]
fn static_member_rejoin_without_rebalance() {
    let mut h = Harness::new();
    let (a, b, gen) = static_group(&mut h);
    // "ib" restarts: unknown member id, same instance id and metadata.
    let t = h.join_req("g", "", Some("ib"), &[("range", b"b")], 9);
    let r = h.joins[&t].clone();
    assert_eq!(r.error_code, error::NONE);
    assert_ne!(r.member_id, b);
    assert_eq!(r.generation_id, gen);
    assert_eq!(r.leader, a);
    assert!(!r.skip_assignment);
    assert!(r.members.is_empty());
    assert_eq!(h.classic("g").state(), ClassicGroupState::Stable);
    // It gets its previous assignment.
    let s = h.sync_instance("g", &r.member_id, Some("ib"), gen, &[]);
    assert_eq!(h.syncs[&s].assignment, Bytes::from_static(b"B"));
    // The old incarnation is fenced.
    assert_eq!(
        h.heartbeat_instance("g", &b, Some("ib"), gen),
        error::FENCED_INSTANCE_ID
    );
    let s = h.sync_instance("g", &b, Some("ib"), gen, &[]);
    assert_eq!(h.syncs[&s].error_code, error::FENCED_INSTANCE_ID);
    let tj = h.join_req("g", &b, Some("ib"), &[("range", b"b")], 9);
    assert_eq!(h.joins[&tj].error_code, error::FENCED_INSTANCE_ID);
    let l = h.leave("g", &[(&b, Some("ib"))]);
    assert_eq!(l.members[0].error_code, error::FENCED_INSTANCE_ID);
    assert_eq!(h.heartbeat_instance("g", &a, Some("ia"), gen), error::NONE);
    // The replacement was persisted with the new member id.
    match h.persisted.last().and_then(|r| r.value.clone()) {
        Some(RecordValue::GroupMetadata(v)) => {
            assert!(v
                .members
                .iter()
                .any(|m| m.member_id == r.member_id && m.assignment == Bytes::from_static(b"B")));
            assert!(!v.members.iter().any(|m| m.member_id == b));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn static_leader_rejoin_skips_assignment() {
    let mut h = Harness::new();
    let (a, _b, gen) = static_group(&mut h);
    let t = h.join_req("g", "", Some("ia"), &[("range", b"a")], 9);
    let r = h.joins[&t].clone();
    assert_eq!(r.generation_id, gen);
    assert_eq!(r.leader, r.member_id);
    assert!(r.skip_assignment);
    assert_eq!(r.members.len(), 2);
    assert_ne!(r.member_id, a);
    // Before v9 the old leader id is returned so the member does not assign.
    let t = h.join_req("g", "", Some("ia"), &[("range", b"a")], 8);
    let r2 = h.joins[&t].clone();
    assert_eq!(r2.leader, r.member_id);
    assert_ne!(r2.member_id, r2.leader);
    assert!(!r2.skip_assignment);
    assert_eq!(h.classic("g").state(), ClassicGroupState::Stable);
}

#[test]
fn static_member_rejoin_with_new_protocol_rebalances() {
    let mut h = Harness::new();
    let (_a, _b, _gen) = static_group(&mut h);
    let t = h.join_req("g", "", Some("ib"), &[("roundrobin", b"b"), ("range", b"b")], 9);
    // Still "range" is the only common protocol: no rebalance.
    assert!(h.done(t));
    assert_eq!(h.classic("g").state(), ClassicGroupState::Stable);
    // Removal of a static member by instance id (admin LeaveGroup).
    let r = h.leave("g", &[("", Some("ia"))]);
    assert_eq!(r.members[0].error_code, error::NONE);
    assert_eq!(h.classic("g").state(), ClassicGroupState::PreparingRebalance);
    let r = h.leave("g", &[("", Some("zz"))]);
    assert_eq!(r.members[0].error_code, error::UNKNOWN_MEMBER_ID);
}

#[test]
fn static_members_survive_rebalance_without_rejoining() {
    let mut h = Harness::new();
    let (a, b, gen) = static_group(&mut h);
    let ta = h.join_req("g", &a, Some("ia"), &[("range", b"a")], 9);
    // "ib" keeps its session alive but does not rejoin.
    for _ in 0..(REBALANCE / 5_000) - 1 {
        h.advance(5_000);
        assert_eq!(
            h.heartbeat_instance("g", &b, Some("ib"), gen),
            error::REBALANCE_IN_PROGRESS
        );
    }
    h.advance(5_001);
    // The static member that did not rejoin stays in the group.
    let r = &h.joins[&ta];
    assert_eq!(r.generation_id, gen + 1);
    assert_eq!(r.members.len(), 2);
    assert!(h.classic("g").member(&b).is_some());
}

#[test]
fn sync_errors() {
    let mut h = Harness::new();
    let (a, followers, gen) = stable_group_of_three(&mut h, "g");
    let s = h.sync("g", &a, gen + 7, &[]);
    assert_eq!(h.syncs[&s].error_code, error::ILLEGAL_GENERATION);
    let s = h.sync("g", "nobody", gen, &[]);
    assert_eq!(h.syncs[&s].error_code, error::UNKNOWN_MEMBER_ID);
    let s = h.sync("nogroup", "nobody", gen, &[]);
    assert_eq!(h.syncs[&s].error_code, error::UNKNOWN_MEMBER_ID);
    let s = h.sync("", "nobody", gen, &[]);
    assert_eq!(h.syncs[&s].error_code, error::INVALID_GROUP_ID);
    let t = h.token();
    let effects = h.c.sync_group(
        t,
        SyncGroupRequest {
            group_id: "g".into(),
            generation_id: gen,
            member_id: followers[0].clone(),
            group_instance_id: None,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("roundrobin".into()),
            assignments: vec![],
        },
        h.now,
    );
    h.absorb(effects);
    assert_eq!(h.syncs[&t].error_code, error::INCONSISTENT_GROUP_PROTOCOL);
    assert_eq!(h.heartbeat("g", &a, gen + 1), error::ILLEGAL_GENERATION);
    assert_eq!(h.heartbeat("g", "x", gen), error::UNKNOWN_MEMBER_ID);
    assert_eq!(h.heartbeat("", "x", gen), error::INVALID_GROUP_ID);
}

#[test]
fn follower_that_never_syncs_is_removed() {
    let mut h = Harness::new();
    let (a, ta) = h.join_new("g");
    let (b, _tb) = h.join_new("g");
    h.advance(1_000);
    let gen = h.joins[&ta].generation_id;
    h.sync("g", &a, gen, &[(&a, b"A"), (&b, b"B")]);
    assert_eq!(h.classic("g").state(), ClassicGroupState::Stable);
    // b keeps heartbeating but never sends SyncGroup.
    for _ in 0..(REBALANCE / 5_000) {
        h.advance(5_000);
        h.heartbeat("g", &b, gen);
        h.heartbeat("g", &a, gen);
    }
    h.advance(10);
    assert!(h.classic("g").member(&b).is_none());
    assert_eq!(h.classic("g").state(), ClassicGroupState::PreparingRebalance);
}

#[test]
fn pending_requests_are_answered_on_unload() {
    let mut h = Harness::new();
    let (_a, ta) = h.join_new("g");
    assert!(!h.done(ta));
    let effects = h.c.unload();
    h.absorb(effects);
    assert_eq!(h.joins[&ta].error_code, error::NOT_COORDINATOR);
    assert!(h.outstanding.is_empty());
}

// ---------------------------------------------------------------------------
// Offsets
// ---------------------------------------------------------------------------

fn commit(
    h: &mut Harness,
    group: &str,
    member: &str,
    gen: i32,
    version: i16,
    partitions: &[(i32, i64)],
) -> Vec<ErrorCode> {
    let out = h.c.commit_offsets(
        &OffsetCommitRequest {
            group_id: group.into(),
            generation_id_or_member_epoch: gen,
            member_id: member.into(),
            group_instance_id: None,
            retention_time_ms: DEFAULT_RETENTION_TIME,
            topics: vec![OffsetCommitTopic {
                name: "t".into(),
                partitions: partitions
                    .iter()
                    .map(|(p, o)| OffsetCommitPartition {
                        partition_index: *p,
                        committed_offset: *o,
                        committed_leader_epoch: -1,
                        committed_metadata: None,
                    })
                    .collect(),
            }],
            api_version: version,
        },
        h.now,
    );
    h.absorb(out.effects);
    out.response.topics[0].partitions.iter().map(|p| p.error_code).collect()
}

fn fetch(h: &Harness, group: &str, partitions: &[i32]) -> Vec<i64> {
    let r = h.c.fetch_offsets(&OffsetFetchRequest {
        group_id: group.into(),
        member_id: None,
        member_epoch: -1,
        topics: Some(vec![OffsetFetchTopic {
            name: "t".into(),
            partition_indexes: partitions.to_vec(),
        }]),
        require_stable: false,
    });
    assert_eq!(r.error_code, error::NONE);
    r.topics[0].partitions.iter().map(|p| p.committed_offset).collect()
}

#[test]
fn offsets_simple_group_commit_fetch_expire() {
    let mut h = Harness::new();
    assert_eq!(commit(&mut h, "simple", "", -1, 8, &[(0, 5), (1, 7)]), vec![0, 0]);
    assert_eq!(fetch(&h, "simple", &[0, 1, 2]), vec![5, 7, -1]);
    assert_eq!(fetch(&h, "unknown", &[0]), vec![-1]);
    assert_eq!(h.persisted.len(), 2);
    // A member-less commit into an unknown group with a generation fails.
    assert_eq!(
        commit(&mut h, "nope", "m", 3, 8, &[(0, 1)]),
        vec![error::ILLEGAL_GENERATION]
    );
    assert_eq!(
        commit(&mut h, "nope", "m", 3, 9, &[(0, 1)]),
        vec![error::GROUP_ID_NOT_FOUND]
    );
    // Offsets of simple groups expire retention after their commit; the
    // empty group then disappears.
    h.advance(59_000);
    assert_eq!(fetch(&h, "simple", &[0]), vec![5]);
    h.advance(2_000);
    assert_eq!(fetch(&h, "simple", &[0]), vec![-1]);
    assert!(h.c.group("simple").is_none());
    assert!(h
        .persisted
        .iter()
        .any(|r| r.value.is_none() && matches!(r.key, RecordKey::OffsetCommit { partition: 1, .. })));
    assert!(h
        .persisted
        .iter()
        .any(|r| r.value.is_none() && matches!(r.key, RecordKey::GroupMetadata { .. })));
}

/// A classic group "`group`" of one member subscribed to "t", stable:
/// returns the member id and generation.
fn one_member_classic_group(h: &mut Harness, group: &str) -> (String, i32) {
    let sub = subscription(&["t"]);
    let ta = h.join_req(group, "", None, &[("range", &sub)], 3);
    h.advance(1_000);
    let a = h.joins[&ta].member_id.clone();
    let gen = h.joins[&ta].generation_id;
    h.sync(group, &a, gen, &[(&a, b"A")]);
    (a, gen)
}

#[test]
fn deleted_topics_lose_their_offsets() {
    let mut h = Harness::new();
    // "simple" only has offsets of the deleted topic: it goes away.
    commit(&mut h, "simple", "", -1, 8, &[(0, 5), (1, 7)]);
    // "g" is a live group: it keeps its other topic's offsets and stays.
    let (a, gen) = one_member_classic_group(&mut h, "g");
    commit(&mut h, "g", &a, gen, 8, &[(0, 3)]);
    h.persisted.clear();

    let effects = h.c.on_topics_deleted(&["unrelated".to_string()]);
    assert!(effects.is_empty());
    let effects = h.c.on_topics_deleted(&["t".to_string()]);
    h.absorb(effects);
    assert_eq!(fetch(&h, "g", &[0]), vec![-1]);
    assert!(h.c.group("g").is_some());
    assert!(h.c.group("simple").is_none());
    let tombstones: Vec<_> = h
        .persisted
        .iter()
        .filter(|r| r.value.is_none())
        .map(|r| r.key.clone())
        .collect();
    assert_eq!(tombstones.len(), 4, "{tombstones:?}");
    assert!(tombstones
        .iter()
        .any(|k| matches!(k, RecordKey::GroupMetadata { group } if group == "simple")));
    assert!(!tombstones
        .iter()
        .any(|k| matches!(k, RecordKey::GroupMetadata { group } if group == "g")));
}

#[test]
fn offsets_generation_checks_in_classic_group() {
    let mut h = Harness::new();
    let (a, followers, gen) = stable_group_of_three(&mut h, "g");
    assert_eq!(commit(&mut h, "g", &a, gen, 8, &[(0, 1)]), vec![0]);
    assert_eq!(
        commit(&mut h, "g", &a, gen + 1, 8, &[(0, 1)]),
        vec![error::ILLEGAL_GENERATION]
    );
    assert_eq!(
        commit(&mut h, "g", "x", gen, 8, &[(0, 1)]),
        vec![error::UNKNOWN_MEMBER_ID]
    );
    // Simple commits are only allowed into Empty groups.
    assert_eq!(
        commit(&mut h, "g", "", -1, 8, &[(0, 1)]),
        vec![error::UNKNOWN_MEMBER_ID]
    );
    // Rebalance: commits of the current generation are still accepted
    // during PreparingRebalance, refused during CompletingRebalance.
    let ta = h.join("g", &a);
    assert_eq!(commit(&mut h, "g", &followers[0], gen, 8, &[(1, 1)]), vec![0]);
    h.join("g", &followers[0]);
    h.join("g", &followers[1]);
    assert!(h.done(ta));
    assert_eq!(
        commit(&mut h, "g", &a, gen + 1, 8, &[(0, 2)]),
        vec![error::REBALANCE_IN_PROGRESS]
    );
    // Commits keep the session alive.
    let s = h.sync("g", &a, gen + 1, &[]);
    assert!(h.done(s));
    for _ in 0..5 {
        h.advance(i64::from(SESSION) / 2);
        assert_eq!(commit(&mut h, "g", &followers[0], gen + 1, 8, &[(0, 3)]), vec![0]);
        h.heartbeat("g", &a, gen + 1);
        h.heartbeat("g", &followers[1], gen + 1);
    }
    assert!(h.classic("g").member(&followers[0]).is_some());
    // DeleteGroups refuses non-empty groups.
    let out = h.c.delete_groups(&["g".into(), "missing".into()]);
    assert_eq!(out.response[0].error_code, error::NON_EMPTY_GROUP);
    assert_eq!(out.response[1].error_code, error::GROUP_ID_NOT_FOUND);
}

#[test]
fn offsets_of_empty_classic_group_expire_after_group_becomes_empty() {
    let mut h = Harness::new();
    let (a, ta) = h.join_new("g");
    h.advance(1_000);
    let gen = h.joins[&ta].generation_id;
    h.sync("g", &a, gen, &[(&a, b"A")]);
    assert_eq!(commit(&mut h, "g", &a, gen, 8, &[(0, 1)]), vec![0]);
    // Offsets do not expire while the (non-consumer-subscription-aware)
    // group is active.
    for _ in 0..20 {
        h.advance(5_000);
        h.heartbeat("g", &a, gen);
    }
    assert_eq!(fetch(&h, "g", &[0]), vec![1]);
    h.leave("g", &[(&a, None)]);
    assert_eq!(h.classic("g").state(), ClassicGroupState::Empty);
    h.advance(59_000);
    assert_eq!(fetch(&h, "g", &[0]), vec![1]);
    h.advance(2_000);
    assert_eq!(fetch(&h, "g", &[0]), vec![-1]);
    assert!(h.c.group("g").is_none());
}

#[test]
fn offset_delete_and_delete_groups() {
    let mut h = Harness::new();
    let (a, gen) = one_member_classic_group(&mut h, "g");
    commit(&mut h, "g", &a, gen, 8, &[(0, 1)]);
    let out = h.c.commit_offsets(
        &OffsetCommitRequest {
            group_id: "g".into(),
            generation_id_or_member_epoch: gen,
            member_id: a.clone(),
            group_instance_id: None,
            retention_time_ms: DEFAULT_RETENTION_TIME,
            topics: vec![OffsetCommitTopic {
                name: "other".into(),
                partitions: vec![OffsetCommitPartition {
                    partition_index: 0,
                    committed_offset: 9,
                    committed_leader_epoch: 2,
                    committed_metadata: Some("x".into()),
                }],
            }],
            api_version: 8,
        },
        h.now,
    );
    h.absorb(out.effects);
    let req = |topic: &str| OffsetDeleteRequest {
        group_id: "g".into(),
        topics: vec![OffsetDeleteTopic {
            name: topic.into(),
            partitions: vec![0],
        }],
    };
    let out = h.c.delete_offsets(&req("t"));
    assert_eq!(out.response.topics[0].1, vec![(0, error::GROUP_SUBSCRIBED_TO_TOPIC)]);
    assert!(out.effects.is_empty());
    let out = h.c.delete_offsets(&req("other"));
    assert_eq!(out.response.topics[0].1, vec![(0, error::NONE)]);
    assert_eq!(out.effects.len(), 1);
    let out = h.c.delete_offsets(&OffsetDeleteRequest {
        group_id: "nope".into(),
        topics: vec![],
    });
    assert_eq!(out.response.error_code, error::GROUP_ID_NOT_FOUND);
    // A non-consumer group that is not empty refuses deletes.
    let mut other = JoinGroupRequest {
        group_id: "conn".into(),
        session_timeout_ms: SESSION,
        rebalance_timeout_ms: REBALANCE,
        member_id: "".into(),
        group_instance_id: None,
        protocol_type: "connect".into(),
        protocols: vec![JoinProtocol {
            name: "default".into(),
            metadata: Bytes::new(),
        }],
        reason: None,
        api_version: 3,
        client_id: "c".into(),
        client_host: "h".into(),
    };
    h.join_with(other.clone());
    let out = h.c.delete_offsets(&OffsetDeleteRequest {
        group_id: "conn".into(),
        topics: vec![],
    });
    assert_eq!(out.response.error_code, error::NON_EMPTY_GROUP);
    other.group_id = "x".into();
    // DeleteGroups of an empty group removes the group and its offsets.
    h.leave("g", &[(&a, None)]);
    let out = h.c.delete_groups(&["g".into()]);
    assert_eq!(out.response[0].error_code, error::NONE);
    assert!(out.effects.iter().any(
        |e| matches!(e, Effect::Persist(r) if r.value.is_none() && matches!(r.key, RecordKey::OffsetCommit { .. }))
    ));
    assert!(
        matches!(out.effects.last(), Some(Effect::Persist(r)) if r.value.is_none() && matches!(r.key, RecordKey::GroupMetadata { .. }))
    );
    assert!(h.c.group("g").is_none());
    assert_eq!(fetch(&h, "g", &[0]), vec![-1]);
}

#[test]
fn list_groups_filters() {
    let mut h = Harness::new();
    stable_group_of_three(&mut h, "stable");
    commit(&mut h, "simple", "", -1, 8, &[(0, 1)]);
    h.topics = StaticTopics::default().with("t", [1; 16], 3);
    let topics = h.topics.clone();
    let out =
        h.c.consumer_group_heartbeat(&cg_join("cg", "m1", &["t"]), h.now, &topics);
    assert_eq!(out.response.error_code, 0);
    let all = h.c.list_groups(&[], &[]);
    assert_eq!(all.len(), 3);
    let stable = h.c.list_groups(&["STABLE ".into()], &[]);
    assert_eq!(stable.len(), 2);
    assert_eq!(stable[0].group_id, "cg");
    assert_eq!(stable[1].group_id, "stable");
    assert_eq!(stable[1].protocol_type, "consumer");
    assert_eq!(stable[1].group_type, "classic");
    let stable_classic = h.c.list_groups(&["stable".into()], &["CLASSIC".into()]);
    assert_eq!(stable_classic.len(), 1);
    let empty = h.c.list_groups(&["empty".into()], &[]);
    assert_eq!(empty[0].group_id, "simple");
    assert_eq!(empty[0].protocol_type, "");
    let consumer = h.c.list_groups(&[], &["Consumer".into()]);
    assert_eq!(consumer.len(), 1);
    assert_eq!(consumer[0].group_type, "consumer");
    assert_eq!(consumer[0].group_state, "Stable");
    assert_eq!(h.c.list_groups(&[], &["classic".into()]).len(), 2);
    assert!(h.c.list_groups(&["dead".into()], &[]).is_empty());
}

// ---------------------------------------------------------------------------
// Consumer protocol (KIP-848)
// ---------------------------------------------------------------------------

fn tid(n: u8) -> TopicId {
    [n; 16]
}

fn cg_join(group: &str, member: &str, topics: &[&str]) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest {
        group_id: group.into(),
        member_id: member.into(),
        member_epoch: 0,
        instance_id: None,
        rack_id: None,
        rebalance_timeout_ms: REBALANCE,
        subscribed_topic_names: Some(topics.iter().map(|t| t.to_string()).collect()),
        subscribed_topic_regex: None,
        server_assignor: None,
        topic_partitions: Some(vec![]),
        api_version: 1,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
    }
}

/// A simulated KIP-848 consumer: owns what the coordinator last assigned,
/// revokes immediately.
#[derive(Debug, Clone)]
struct Client {
    member_id: String,
    epoch: i32,
    owned: Assignment,
    instance_id: Option<String>,
}

impl Client {
    fn new(id: &str) -> Self {
        Client {
            member_id: id.into(),
            epoch: 0,
            owned: Assignment::new(),
            instance_id: None,
        }
    }

    fn owned_tps(&self) -> Vec<TopicPartitions> {
        to_topic_partitions(&self.owned)
    }
}

fn cg_heartbeat(h: &mut Harness, group: &str, c: &mut Client, topics: &[&str]) -> ConsumerGroupHeartbeatResponse {
    let mut req = cg_join(group, &c.member_id, topics);
    req.member_epoch = c.epoch;
    req.instance_id = c.instance_id.clone();
    if c.epoch != 0 {
        req.rebalance_timeout_ms = -1;
        req.subscribed_topic_names = None;
        req.topic_partitions = Some(c.owned_tps());
    }
    let t = h.topics.clone();
    let out = h.c.consumer_group_heartbeat(&req, h.now, &t);
    h.absorb(out.effects);
    let r = out.response;
    if r.error_code == error::NONE {
        c.epoch = r.member_epoch;
        if let Some(a) = &r.assignment {
            c.owned = from_topic_partitions(a);
        }
    }
    r
}

/// No partition is held (assigned or pending revocation) by two members,
/// neither in the coordinator nor on the simulated clients.
fn check_exclusive(h: &Harness, group: &str, clients: &[&Client]) {
    let g = h.c.consumer_group(group).expect("consumer group");
    let mut seen = HashSet::default();
    for m in g.members() {
        for a in [&m.assigned, &m.pending_revocation] {
            for (t, ps) in a {
                for p in ps {
                    assert!(seen.insert((*t, *p)), "partition {p} held twice in the coordinator");
                }
            }
        }
    }
    let mut owned = HashSet::default();
    for c in clients {
        for (t, ps) in &c.owned {
            for p in ps {
                assert!(owned.insert((*t, *p)), "partition {p} owned by two clients");
            }
        }
    }
}

fn count(a: &Assignment) -> usize {
    a.values().map(BTreeSet::len).sum()
}

#[test]
fn consumer_three_members_join_sequentially_uniform() {
    let mut h = Harness::new();
    h.topics = StaticTopics::default().with("foo", tid(1), 4).with("bar", tid(2), 5);
    let topics = ["foo", "bar"];
    let mut clients = vec![Client::new("m1"), Client::new("m2"), Client::new("m3")];
    let mut joined = 0;
    let mut last_epoch = 0;
    for round in 0..40 {
        if round % 8 == 0 && joined < 3 {
            joined += 1;
        }
        for i in 0..joined {
            let mut c = clients[i].clone();
            let r = cg_heartbeat(&mut h, "cg", &mut c, &topics);
            assert_eq!(r.error_code, error::NONE, "{:?}", r.error_message);
            assert_eq!(r.heartbeat_interval_ms, 5_000);
            clients[i] = c;
            let refs: Vec<&Client> = clients.iter().collect();
            check_exclusive(&h, "cg", &refs);
            let g = h.c.consumer_group("cg").unwrap();
            assert!(g.group_epoch() >= last_epoch);
            last_epoch = g.group_epoch();
        }
        h.advance(1_000);
    }
    let g = h.c.consumer_group("cg").unwrap();
    assert_eq!(g.state(), ConsumerGroupState::Stable);
    let mut counts: Vec<usize> = clients.iter().map(|c| count(&c.owned)).collect();
    counts.sort();
    assert_eq!(counts, vec![3, 3, 3]);
    for c in &clients {
        assert_eq!(c.epoch, g.group_epoch());
        assert_eq!(&c.owned, g.target_assignment(&c.member_id).unwrap());
    }
    let d = h.c.consumer_group_describe(&["cg".into(), "none".into()], &h.topics);
    assert_eq!(d[0].group_state, "Stable");
    assert_eq!(d[0].assignor_name, "uniform");
    assert_eq!(d[0].members.len(), 3);
    assert_eq!(
        d[0].members[0]
            .assignment
            .iter()
            .map(|t| t.partitions.len())
            .sum::<usize>(),
        3
    );
    assert!(d[0].members[0]
        .assignment
        .iter()
        .all(|t| t.topic_name == "foo" || t.topic_name == "bar"));
    assert_eq!(d[1].error_code, error::GROUP_ID_NOT_FOUND);
}

#[test]
fn consumer_revocation_before_reassignment() {
    let mut h = Harness::new();
    h.topics = StaticTopics::default().with("foo", tid(1), 6);
    let mut a = Client::new("a");
    let r = cg_heartbeat(&mut h, "cg", &mut a, &["foo"]);
    assert_eq!(r.member_epoch, 1);
    assert_eq!(count(&a.owned), 6);
    let mut b = Client::new("b");
    let r = cg_heartbeat(&mut h, "cg", &mut b, &["foo"]);
    // b is at the new epoch but its partitions are still owned by a.
    assert_eq!(r.member_epoch, 2);
    assert_eq!(count(&b.owned), 0);
    let g = h.c.consumer_group("cg").unwrap();
    assert_eq!(g.member("b").unwrap().state, MemberState::UnreleasedPartitions);
    assert_eq!(g.state(), ConsumerGroupState::Reconciling);
    check_exclusive(&h, "cg", &[&a, &b]);
    // a is asked to revoke: it stays at epoch 1 with 3 partitions.
    let r = cg_heartbeat(&mut h, "cg", &mut a, &["foo"]);
    assert_eq!(r.member_epoch, 1);
    assert_eq!(count(&a.owned), 3);
    let g = h.c.consumer_group("cg").unwrap();
    assert_eq!(g.member("a").unwrap().state, MemberState::UnrevokedPartitions);
    assert_eq!(count(&g.member("a").unwrap().pending_revocation), 3);
    // b still cannot get them.
    let r = cg_heartbeat(&mut h, "cg", &mut b, &["foo"]);
    assert!(r.assignment.is_none());
    assert_eq!(count(&b.owned), 0);
    check_exclusive(&h, "cg", &[&a, &b]);
    // a acknowledges the revocation (owned partitions no longer include them).
    let r = cg_heartbeat(&mut h, "cg", &mut a, &["foo"]);
    assert_eq!(r.member_epoch, 2);
    let r = cg_heartbeat(&mut h, "cg", &mut b, &["foo"]);
    assert_eq!(count(&b.owned), 3);
    assert_eq!(r.member_epoch, 2);
    check_exclusive(&h, "cg", &[&a, &b]);
    assert_eq!(h.c.consumer_group("cg").unwrap().state(), ConsumerGroupState::Stable);
}

#[test]
fn consumer_rebalance_timeout_fences_member_that_does_not_revoke() {
    let mut h = Harness::new();
    h.topics = StaticTopics::default().with("foo", tid(1), 4);
    let mut a = Client::new("a");
    cg_heartbeat(&mut h, "cg", &mut a, &["foo"]);
    let mut b = Client::new("b");
    cg_heartbeat(&mut h, "cg", &mut b, &["foo"]);
    // a learns it must revoke but keeps reporting the partitions.
    let mut req = cg_join("cg", "a", &["foo"]);
    req.member_epoch = 1;
    req.rebalance_timeout_ms = -1;
    req.subscribed_topic_names = None;
    req.topic_partitions = Some(a.owned_tps());
    let t = h.topics.clone();
    let out = h.c.consumer_group_heartbeat(&req, h.now, &t);
    h.absorb(out.effects);
    assert_eq!(out.response.member_epoch, 1);
    for _ in 0..(REBALANCE / 5_000) - 1 {
        h.advance(5_000);
        let out = h.c.consumer_group_heartbeat(&req, h.now, &t);
        h.absorb(out.effects);
        assert_eq!(out.response.error_code, error::NONE);
        cg_heartbeat(&mut h, "cg", &mut b, &["foo"]);
    }
    h.advance(5_001);
    // a was fenced; b gets everything.
    let out = h.c.consumer_group_heartbeat(&req, h.now, &t);
    assert_eq!(out.response.error_code, error::UNKNOWN_MEMBER_ID);
    cg_heartbeat(&mut h, "cg", &mut b, &["foo"]);
    cg_heartbeat(&mut h, "cg", &mut b, &["foo"]);
    assert_eq!(count(&b.owned), 4);
}

#[test]
fn consumer_session_timeout_and_leave() {
    let mut h = Harness::new();
    h.topics = StaticTopics::default().with("foo", tid(1), 4);
    let mut a = Client::new("a");
    let mut b = Client::new("b");
    let mut c = Client::new("c");
    for _ in 0..4 {
        for x in [&mut a, &mut b, &mut c] {
            cg_heartbeat(&mut h, "cg", x, &["foo"]);
        }
    }
    let epoch = h.c.consumer_group("cg").unwrap().group_epoch();
    // c leaves explicitly.
    let mut req = cg_join("cg", "c", &["foo"]);
    req.member_epoch = LEAVE_GROUP_MEMBER_EPOCH;
    let t = h.topics.clone();
    let out = h.c.consumer_group_heartbeat(&req, h.now, &t);
    assert_eq!(out.response.member_epoch, -1);
    assert_eq!(out.response.member_id.as_deref(), Some("c"));
    h.absorb(out.effects);
    assert_eq!(h.c.consumer_group("cg").unwrap().group_epoch(), epoch + 1);
    assert!(h.c.consumer_group("cg").unwrap().member("c").is_none());
    // b goes silent: fenced after the session timeout (45 s).
    for _ in 0..10 {
        h.advance(5_000);
        cg_heartbeat(&mut h, "cg", &mut a, &["foo"]);
    }
    assert!(h.c.consumer_group("cg").unwrap().member("b").is_none());
    cg_heartbeat(&mut h, "cg", &mut a, &["foo"]);
    assert_eq!(count(&a.owned), 4);
    let r = cg_heartbeat(&mut h, "cg", &mut b, &["foo"]);
    assert_eq!(r.error_code, error::UNKNOWN_MEMBER_ID);
}

#[test]
fn consumer_group_config_overrides_session_and_heartbeat() {
    let mut h = Harness::new();
    h.topics = StaticTopics::default().with("foo", tid(1), 2);
    h.c.set_group_config(
        "cg",
        GroupConfigOverrides {
            session_timeout_ms: Some(10_000),
            heartbeat_interval_ms: Some(2_000),
        },
    );
    let mut a = Client::new("a");
    let mut b = Client::new("b");
    let mut other = Client::new("o");
    for _ in 0..3 {
        for x in [&mut a, &mut b] {
            assert_eq!(cg_heartbeat(&mut h, "cg", x, &["foo"]).heartbeat_interval_ms, 2_000);
        }
        // Other groups keep the broker's settings.
        assert_eq!(
            cg_heartbeat(&mut h, "other", &mut other, &["foo"]).heartbeat_interval_ms,
            5_000
        );
    }
    // b goes silent: fenced after the group's 10 s, not the broker's 45 s.
    for _ in 0..6 {
        h.advance(2_000);
        cg_heartbeat(&mut h, "cg", &mut a, &["foo"]);
        cg_heartbeat(&mut h, "other", &mut other, &["foo"]);
    }
    assert!(h.c.consumer_group("cg").unwrap().member("b").is_none());
    // Cleared: back to the broker's interval.
    h.c.set_group_config("cg", GroupConfigOverrides::default());
    assert_eq!(
        cg_heartbeat(&mut h, "cg", &mut a, &["foo"]).heartbeat_interval_ms,
        5_000
    );
}

#[test]
fn consumer_epoch_validation_and_errors() {
    let mut h = Harness::new();
    h.topics = StaticTopics::default().with("foo", tid(1), 2);
    let t = h.topics.clone();
    let mut a = Client::new("a");
    cg_heartbeat(&mut h, "cg", &mut a, &["foo"]);
    let mut req = cg_join("cg", "a", &["foo"]);
    req.member_epoch = a.epoch + 5;
    req.rebalance_timeout_ms = -1;
    req.topic_partitions = None;
    let out = h.c.consumer_group_heartbeat(&req, h.now, &t);
    assert_eq!(out.response.error_code, error::FENCED_MEMBER_EPOCH);
    assert!(out.effects.is_empty());
    // The previous epoch is accepted with a subset of the assignment.
    let mut b = Client::new("b");
    cg_heartbeat(&mut h, "cg", &mut b, &["foo"]);
    cg_heartbeat(&mut h, "cg", &mut a, &["foo"]);
    cg_heartbeat(&mut h, "cg", &mut a, &["foo"]);
    let m = h.c.consumer_group("cg").unwrap().member("a").unwrap().clone();
    req.member_epoch = m.previous_member_epoch;
    req.topic_partitions = Some(vec![]);
    let out = h.c.consumer_group_heartbeat(&req, h.now, &t);
    assert_eq!(out.response.error_code, error::NONE);
    req.member_epoch = m.previous_member_epoch;
    req.topic_partitions = None;
    let out = h.c.consumer_group_heartbeat(&req, h.now, &t);
    assert_eq!(out.response.error_code, error::FENCED_MEMBER_EPOCH);

    let mut bad = cg_join("cg", "zz", &["foo"]);
    bad.member_epoch = 3;
    assert_eq!(
        h.c.consumer_group_heartbeat(&bad, h.now, &t).response.error_code,
        error::UNKNOWN_MEMBER_ID
    );
    bad.group_id = "missing".into();
    assert_eq!(
        h.c.consumer_group_heartbeat(&bad, h.now, &t).response.error_code,
        error::GROUP_ID_NOT_FOUND
    );
    let mut bad = cg_join("cg", "", &["foo"]);
    let r = h.c.consumer_group_heartbeat(&bad, h.now, &t).response;
    assert_eq!(r.error_code, error::INVALID_REQUEST);
    assert_eq!(r.error_message.as_deref(), Some("MemberId can't be empty."));
    bad.member_id = "n".into();
    bad.topic_partitions = None;
    assert_eq!(
        h.c.consumer_group_heartbeat(&bad, h.now, &t).response.error_code,
        error::INVALID_REQUEST
    );
    bad.topic_partitions = Some(vec![]);
    bad.rebalance_timeout_ms = -1;
    assert_eq!(
        h.c.consumer_group_heartbeat(&bad, h.now, &t).response.error_code,
        error::INVALID_REQUEST
    );
    bad.rebalance_timeout_ms = 1000;
    bad.subscribed_topic_regex = Some("foo.*".into());
    assert_eq!(
        h.c.consumer_group_heartbeat(&bad, h.now, &t).response.error_code,
        error::INVALID_REQUEST
    );
    bad.subscribed_topic_regex = None;
    bad.server_assignor = Some("sticky".into());
    assert_eq!(
        h.c.consumer_group_heartbeat(&bad, h.now, &t).response.error_code,
        error::UNSUPPORTED_ASSIGNOR
    );
    bad.server_assignor = None;
    bad.member_epoch = -3;
    assert_eq!(
        h.c.consumer_group_heartbeat(&bad, h.now, &t).response.error_code,
        error::INVALID_REQUEST
    );
    // v0: the coordinator generates the member id.
    let mut v0 = cg_join("cg", "", &["foo"]);
    v0.api_version = 0;
    let r = h.c.consumer_group_heartbeat(&v0, h.now, &t);
    assert_eq!(r.response.error_code, error::NONE);
    assert!(!r.response.member_id.unwrap().is_empty());
}

/// librdkafka sends an empty SubscribedTopicRegex alongside its topic
/// names: the coordinator treats it exactly like no regex.
#[test]
fn consumer_empty_regex_is_no_regex() {
    let run = |regex: Option<&str>| {
        let mut h = Harness::new();
        h.topics = StaticTopics::default().with("foo", tid(1), 2);
        let t = h.topics.clone();
        let send = |h: &mut Harness, mut req: ConsumerGroupHeartbeatRequest| {
            req.subscribed_topic_regex = regex.map(String::from);
            let out = h.c.consumer_group_heartbeat(&req, h.now, &t);
            h.absorb(out.effects);
            out.response
        };
        // Joining with topic names.
        let joined = send(&mut h, cg_join("cg", "a", &["foo"]));
        // No names: with a regex this would be a full request (and a
        // subscription change).
        let mut req = cg_join("cg", "a", &[]);
        req.member_epoch = joined.member_epoch;
        req.subscribed_topic_names = None;
        req.topic_partitions = joined.assignment.clone();
        let again = send(&mut h, req);
        // Joining with neither names nor a regex.
        let mut req = cg_join("cg", "b", &[]);
        req.subscribed_topic_names = None;
        let bare = send(&mut h, req);
        let member = h.c.consumer_group("cg").and_then(|g| g.member("a")).cloned();
        (vec![joined, again, bare], h.persisted, member)
    };
    let none = run(None);
    let (responses, _, member) = &none;
    assert_eq!(responses[0].error_code, error::NONE);
    assert_eq!(responses[1].error_code, error::NONE);
    assert_eq!(responses[1].assignment, None);
    assert_eq!(responses[2].error_code, error::INVALID_REQUEST);
    assert_eq!(
        responses[2].error_message.as_deref(),
        Some("Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when (re-)joining.")
    );
    assert_eq!(member.as_ref().map(|m| m.subscribed_topic_regex.clone()), Some(None));
    assert_eq!(run(Some("")), none);
    // A real regex is still refused.
    assert_eq!(run(Some("foo.*")).0[0].error_code, error::INVALID_REQUEST);
}

#[test]
fn consumer_static_member_leave_and_rejoin() {
    let mut h = Harness::new();
    h.topics = StaticTopics::default().with("foo", tid(1), 4);
    let t = h.topics.clone();
    let mut a = Client::new("a1");
    a.instance_id = Some("ia".into());
    let mut b = Client::new("b");
    for _ in 0..4 {
        cg_heartbeat(&mut h, "cg", &mut a, &["foo"]);
        cg_heartbeat(&mut h, "cg", &mut b, &["foo"]);
    }
    let epoch = h.c.consumer_group("cg").unwrap().group_epoch();
    let a_parts = a.owned.clone();
    assert_eq!(count(&a_parts), 2);
    // Another process with the same instance id cannot join while a1 is active.
    let mut dup = cg_join("cg", "a2", &["foo"]);
    dup.instance_id = Some("ia".into());
    assert_eq!(
        h.c.consumer_group_heartbeat(&dup, h.now, &t).response.error_code,
        error::UNRELEASED_INSTANCE_ID
    );
    // Temporary leave (-2).
    let mut leave = cg_join("cg", "a1", &["foo"]);
    leave.instance_id = Some("ia".into());
    leave.member_epoch = LEAVE_GROUP_STATIC_MEMBER_EPOCH;
    let out = h.c.consumer_group_heartbeat(&leave, h.now, &t);
    assert_eq!(out.response.member_epoch, -2);
    h.absorb(out.effects);
    assert_eq!(h.c.consumer_group("cg").unwrap().group_epoch(), epoch);
    // b cannot take a's partitions meanwhile.
    cg_heartbeat(&mut h, "cg", &mut b, &["foo"]);
    assert_eq!(count(&b.owned), 2);
    // The restarted process (new member id) gets the same partitions back
    // without a rebalance.
    let out = h.c.consumer_group_heartbeat(&dup, h.now, &t);
    h.absorb(out.effects);
    assert_eq!(out.response.error_code, error::NONE);
    assert_eq!(out.response.member_epoch, epoch);
    assert_eq!(
        from_topic_partitions(out.response.assignment.as_ref().unwrap()),
        a_parts
    );
    let g = h.c.consumer_group("cg").unwrap();
    assert_eq!(g.group_epoch(), epoch);
    assert!(g.member("a1").is_none());
    assert_eq!(g.state(), ConsumerGroupState::Stable);
    // The old incarnation is fenced.
    let mut old = cg_join("cg", "a1", &["foo"]);
    old.instance_id = Some("ia".into());
    old.member_epoch = epoch;
    old.rebalance_timeout_ms = -1;
    assert_eq!(
        h.c.consumer_group_heartbeat(&old, h.now, &t).response.error_code,
        error::FENCED_INSTANCE_ID
    );
}

#[test]
fn consumer_range_assignor_co_partitions() {
    let mut h = Harness::new();
    h.topics = StaticTopics::default().with("foo", tid(1), 3).with("bar", tid(2), 3);
    let topics = ["foo", "bar"];
    let t = h.topics.clone();
    let mut clients = [Client::new("m1"), Client::new("m2"), Client::new("m3")];
    for c in clients.iter_mut() {
        let mut req = cg_join("cg", &c.member_id, &topics);
        req.server_assignor = Some("range".into());
        let out = h.c.consumer_group_heartbeat(&req, h.now, &t);
        h.absorb(out.effects);
        c.epoch = out.response.member_epoch;
        c.owned = from_topic_partitions(out.response.assignment.as_ref().unwrap());
    }
    for _ in 0..6 {
        for i in 0..3 {
            let mut c = clients[i].clone();
            cg_heartbeat(&mut h, "cg", &mut c, &topics);
            clients[i] = c;
            let refs: Vec<&Client> = clients.iter().collect();
            check_exclusive(&h, "cg", &refs);
        }
    }
    for (i, c) in clients.iter().enumerate() {
        let p: BTreeSet<i32> = [i as i32].into();
        assert_eq!(c.owned.get(&tid(1)), Some(&p), "{}", c.member_id);
        assert_eq!(c.owned.get(&tid(2)), Some(&p));
    }
    let d = h.c.consumer_group_describe(&["cg".into()], &t);
    assert_eq!(d[0].assignor_name, "range");
}

#[test]
fn consumer_group_picks_up_partition_increase() {
    let mut h = Harness::new();
    h.topics = StaticTopics::default().with("foo", tid(1), 2);
    let mut a = Client::new("a");
    cg_heartbeat(&mut h, "cg", &mut a, &["foo"]);
    let e = h.c.consumer_group("cg").unwrap().group_epoch();
    h.topics = StaticTopics::default().with("foo", tid(1), 4);
    let r = cg_heartbeat(&mut h, "cg", &mut a, &["foo"]);
    assert_eq!(r.member_epoch, e + 1);
    assert_eq!(count(&a.owned), 4);
    // A subscription to a topic that does not exist yet.
    let r = cg_heartbeat(&mut h, "cg", &mut Client::new("b"), &["later"]);
    assert_eq!(r.error_code, 0);
    h.topics = StaticTopics::default().with("foo", tid(1), 4).with("later", tid(3), 1);
    let mut b = Client {
        member_id: "b".into(),
        epoch: r.member_epoch,
        owned: Assignment::new(),
        instance_id: None,
    };
    cg_heartbeat(&mut h, "cg", &mut b, &["later"]);
    cg_heartbeat(&mut h, "cg", &mut b, &["later"]);
    assert_eq!(b.owned.get(&tid(3)).map(BTreeSet::len), Some(1));
}

#[test]
fn consumer_offsets_member_epoch_checks() {
    let mut h = Harness::new();
    h.topics = StaticTopics::default().with("t", tid(1), 2);
    let mut a = Client::new("a");
    cg_heartbeat(&mut h, "cg", &mut a, &["t"]);
    assert_eq!(commit(&mut h, "cg", "a", a.epoch, 9, &[(0, 1)]), vec![0]);
    assert_eq!(
        commit(&mut h, "cg", "a", a.epoch + 1, 9, &[(0, 1)]),
        vec![error::STALE_MEMBER_EPOCH]
    );
    assert_eq!(
        commit(&mut h, "cg", "a", a.epoch, 8, &[(0, 1)]),
        vec![error::UNSUPPORTED_VERSION]
    );
    assert_eq!(
        commit(&mut h, "cg", "zz", a.epoch, 9, &[(0, 1)]),
        vec![error::UNKNOWN_MEMBER_ID]
    );
    let f = |member: Option<&str>, epoch| {
        h.c.fetch_offsets(&OffsetFetchRequest {
            group_id: "cg".into(),
            member_id: member.map(String::from),
            member_epoch: epoch,
            topics: None,
            require_stable: true,
        })
    };
    assert_eq!(f(Some("a"), a.epoch).topics[0].partitions[0].committed_offset, 1);
    assert_eq!(f(Some("a"), a.epoch + 3).error_code, error::STALE_MEMBER_EPOCH);
    assert_eq!(f(Some("q"), 1).error_code, error::UNKNOWN_MEMBER_ID);
    assert_eq!(f(None, -1).error_code, error::NONE);
    // The subscribed topic's offsets cannot be deleted.
    let out = h.c.delete_offsets(&OffsetDeleteRequest {
        group_id: "cg".into(),
        topics: vec![OffsetDeleteTopic {
            name: "t".into(),
            partitions: vec![0],
        }],
    });
    assert_eq!(out.response.topics[0].1, vec![(0, error::GROUP_SUBSCRIBED_TO_TOPIC)]);
    // Consumer groups cannot be deleted while they have members.
    assert_eq!(
        h.c.delete_groups(&["cg".into()]).response[0].error_code,
        error::NON_EMPTY_GROUP
    );
}

#[test]
fn group_protocol_conversion_of_empty_groups() {
    let mut h = Harness::new();
    h.topics = StaticTopics::default().with("t", tid(1), 2);
    let t = h.topics.clone();
    // An active classic group is not a consumer group.
    let (a, _) = h.join_new("g");
    let r = h.c.consumer_group_heartbeat(&cg_join("g", "m", &["t"]), h.now, &t);
    assert_eq!(r.response.error_code, error::GROUP_ID_NOT_FOUND);
    h.advance(1_000);
    h.leave("g", &[(&a, None)]);
    commit(&mut h, "g", "", -1, 8, &[(0, 42)]);
    // Empty: converted, offsets kept.
    let out = h.c.consumer_group_heartbeat(&cg_join("g", "m", &["t"]), h.now, &t);
    assert_eq!(out.response.error_code, error::NONE);
    assert!(
        matches!(&out.effects[0], Effect::Persist(r) if r.value.is_none() && matches!(r.key, RecordKey::GroupMetadata { .. }))
    );
    h.absorb(out.effects);
    assert!(h.c.consumer_group("g").is_some());
    assert_eq!(fetch(&h, "g", &[0]), vec![42]);
    // A classic join into the non-empty consumer group is refused.
    let tj = h.join("g", "");
    assert_eq!(h.joins[&tj].error_code, error::INCONSISTENT_GROUP_PROTOCOL);
    assert_eq!(h.heartbeat("g", "m", 1), error::UNKNOWN_MEMBER_ID);
    // Once empty again, a classic join converts it back.
    let mut leave = cg_join("g", "m", &["t"]);
    leave.member_epoch = -1;
    let out = h.c.consumer_group_heartbeat(&leave, h.now, &t);
    h.absorb(out.effects);
    let tj = h.join("g", "");
    assert_eq!(h.joins[&tj].error_code, error::MEMBER_ID_REQUIRED);
    assert!(h.c.classic_group("g").is_some());
    assert_eq!(fetch(&h, "g", &[0]), vec![42]);
}

// ---------------------------------------------------------------------------
// Persistence
// ---------------------------------------------------------------------------

fn replay_into_fresh(h: &Harness) -> GroupCoordinatorState {
    let mut fresh = GroupCoordinatorState::new(config(), Box::new(SequentialIds::default()), 0);
    for r in &h.persisted {
        let (k, v) = r.encode();
        fresh.replay_bytes(&k, v.as_deref()).expect("replay");
    }
    fresh
}

/// Latest value per key, like a compacted `__consumer_offsets`.
fn compacted(records: &[Record]) -> Vec<Record> {
    let mut latest: BTreeMap<Vec<u8>, (usize, Record)> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        latest.insert(r.key.encode().to_vec(), (i, r.clone()));
    }
    let mut v: Vec<(usize, Record)> = latest.into_values().filter(|(_, r)| r.value.is_some()).collect();
    v.sort_by_key(|(i, _)| *i);
    v.into_iter().map(|(_, r)| r).collect()
}

#[test]
fn replay_rebuilds_groups_and_offsets() {
    let mut h = Harness::new();
    let (a, followers, gen) = stable_group_of_three(&mut h, "classic");
    commit(&mut h, "classic", &a, gen, 8, &[(0, 10), (1, 11)]);
    commit(&mut h, "classic", &a, gen, 8, &[(0, 12)]);
    commit(&mut h, "simple", "", -1, 8, &[(3, 30)]);
    h.topics = StaticTopics::default().with("foo", tid(1), 5);
    let mut x = Client::new("x");
    let mut y = Client::new("y");
    for _ in 0..5 {
        cg_heartbeat(&mut h, "cg", &mut x, &["foo"]);
        cg_heartbeat(&mut h, "cg", &mut y, &["foo"]);
    }
    let mut z = Client::new("z");
    cg_heartbeat(&mut h, "cg", &mut z, &["foo"]);
    let mut leave = cg_join("cg", "z", &["foo"]);
    leave.member_epoch = -1;
    let t = h.topics.clone();
    let out = h.c.consumer_group_heartbeat(&leave, h.now, &t);
    h.absorb(out.effects);
    // A deleted group leaves only tombstones.
    commit(&mut h, "gone", "", -1, 8, &[(0, 1)]);
    let out = h.c.delete_groups(&["gone".into()]);
    h.absorb(out.effects);

    for fresh in [replay_into_fresh(&h), {
        let mut f = GroupCoordinatorState::new(config(), Box::new(SequentialIds::default()), 0);
        for r in compacted(&h.persisted) {
            f.replay(&r);
        }
        f
    }] {
        let g = fresh.classic_group("classic").expect("classic");
        assert_eq!(g.state(), ClassicGroupState::Stable);
        assert_eq!(g.generation_id(), gen);
        assert_eq!(g.leader_id(), Some(a.as_str()));
        assert_eq!(g.protocol_name(), Some("range"));
        assert_eq!(g.member(&followers[0]).unwrap().assignment.len(), 1);
        let offs = fresh.offsets("classic").unwrap();
        assert_eq!(offs.get("t", 0).unwrap().committed_offset, 12);
        assert_eq!(offs.get("t", 1).unwrap().committed_offset, 11);
        assert_eq!(
            fresh.offsets("simple").unwrap().get("t", 3).unwrap().committed_offset,
            30
        );
        assert!(fresh.group("gone").is_none());
        let orig = h.c.consumer_group("cg").unwrap();
        let cg = fresh.consumer_group("cg").expect("consumer group");
        assert_eq!(cg.group_epoch(), orig.group_epoch());
        assert_eq!(cg.assignment_epoch(), orig.assignment_epoch());
        assert_eq!(cg.num_members(), 2);
        for id in ["x", "y"] {
            let (m1, m2) = (orig.member(id).unwrap(), cg.member(id).unwrap());
            assert_eq!(m1.member_epoch, m2.member_epoch);
            assert_eq!(m1.assigned, m2.assigned);
            assert_eq!(m1.subscribed_topic_names, m2.subscribed_topic_names);
            assert_eq!(orig.target_assignment(id), cg.target_assignment(id));
        }
        assert_eq!(cg.state(), orig.state());
    }

    // After loading, the timers are armed again: silent members expire.
    let mut fresh = replay_into_fresh(&h);
    let effects = fresh.on_loaded(1_000_000);
    assert!(effects.is_empty());
    assert!(fresh.next_deadline().unwrap() <= 1_000_000 + 45_000);
    let effects = fresh.poll(1_000_000 + 46_000, &h.topics);
    assert!(!effects.is_empty());
    // Every member expired; the then empty consumer group (no offsets) was
    // removed by the periodic cleanup.
    assert!(fresh.consumer_group("cg").is_none());
    assert!(effects.iter().any(|e| matches!(e, Effect::Persist(r) if r.value.is_none() && matches!(r.key, RecordKey::ConsumerGroupMetadata { .. }))));
    assert!(fresh.classic_group("classic").unwrap().state() != ClassicGroupState::Stable);
}

#[test]
fn tokens_are_completed_exactly_once_under_churn() {
    // A pseudo-random mix of joins, syncs, heartbeats, leaves and time.
    let mut h = Harness::new();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut known: Vec<String> = Vec::new();
    for _ in 0..2_000 {
        let gen = h.c.classic_group("g").map_or(0, ClassicGroup::generation_id);
        match rand(6) {
            0 => {
                let t = h.join("g", "");
                if let Some(r) = h.joins.get(&t) {
                    if r.error_code == error::MEMBER_ID_REQUIRED {
                        known.push(r.member_id.clone());
                    }
                }
            }
            1 if !known.is_empty() => {
                let m = known[rand(known.len() as u64) as usize].clone();
                h.join("g", &m);
            }
            2 if !known.is_empty() => {
                let m = known[rand(known.len() as u64) as usize].clone();
                let leader = h.c.classic_group("g").and_then(|g| g.leader_id().map(String::from));
                if leader.as_deref() == Some(m.as_str()) {
                    let ids: Vec<String> = h.classic("g").members().map(|x| x.member_id.clone()).collect();
                    let asg: Vec<(&str, &[u8])> = ids.iter().map(|i| (i.as_str(), &b"x"[..])).collect();
                    h.sync("g", &m, gen, &asg);
                } else {
                    h.sync("g", &m, gen, &[]);
                }
            }
            3 if !known.is_empty() => {
                let m = known[rand(known.len() as u64) as usize].clone();
                h.heartbeat("g", &m, gen);
            }
            4 if !known.is_empty() && rand(4) == 0 => {
                let m = known.remove(rand(known.len() as u64) as usize);
                h.leave("g", &[(&m, None)]);
            }
            _ => h.advance(rand(3_000) as i64),
        }
        // Awaiting-join bookkeeping stays consistent.
        if let Some(g) = h.c.classic_group("g") {
            let parked = g.members().filter(|m| m.is_awaiting_join()).count();
            assert!(parked <= g.num_members());
        }
    }
    h.advance(10 * 60 * 1000);
    let effects = h.c.unload();
    h.absorb(effects);
    assert!(h.outstanding.is_empty(), "tokens never completed: {:?}", h.outstanding);
}

#[test]
fn initial_rebalance_delay_is_extended_by_new_members() {
    let mut h = Harness::new();
    let t1 = h.join_req("g", "", None, &[("range", b"m")], 3);
    h.advance(90);
    let t2 = h.join_req("g", "", None, &[("range", b"m")], 3);
    h.advance(10);
    // The first delay expired, but a member joined meanwhile: wait again.
    assert!(!h.done(t1) && !h.done(t2));
    h.advance(99);
    assert!(!h.done(t1));
    h.advance(1);
    assert!(h.done(t1) && h.done(t2));
    assert_eq!(h.joins[&t1].members.len(), 2);
    assert_eq!(h.joins[&t2].generation_id, 1);
}

#[test]
fn rejoin_during_completing_rebalance_returns_current_generation() {
    let mut h = Harness::new();
    let (a, ta) = h.join_new("g");
    let (b, _tb) = h.join_new("g");
    h.advance(1_000);
    let gen = h.joins[&ta].generation_id;
    // b lost its JoinGroup response and rejoins with the same metadata.
    let t = h.join("g", &b);
    assert_eq!(h.joins[&t].generation_id, gen);
    assert_eq!(h.joins[&t].leader, a);
    assert!(h.joins[&t].members.is_empty());
    assert_eq!(h.classic("g").state(), ClassicGroupState::CompletingRebalance);
    // The leader gets the members again.
    let t = h.join("g", &a);
    assert_eq!(h.joins[&t].members.len(), 2);
    // Changed metadata forces a new rebalance and fails parked syncs.
    let sb = h.sync("g", &b, gen, &[]);
    assert!(!h.done(sb));
    let t = h.join_req("g", &b, None, &[("range", b"changed")], 9);
    assert_eq!(h.syncs[&sb].error_code, error::REBALANCE_IN_PROGRESS);
    assert_eq!(h.classic("g").state(), ClassicGroupState::PreparingRebalance);
    let ta2 = h.join("g", &a);
    assert_eq!(h.joins[&t].generation_id, gen + 1);
    assert_eq!(h.joins[&ta2].members.len(), 2);
}
