//! What the controller quorum looks like from one voter: the answer to
//! DescribeQuorum (API 55) and `ringlog cluster quorum`. The quorum shell
//! on shard 0 keeps it current; in single-node mode it is this node alone.

/// One voter (or observer) as the leader sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub node_id: i32,
    /// The last metadata-log offset known to be on that replica (Kafka's
    /// `log_end_offset`: raft index − 1 is the offset of an entry; this is
    /// the next offset, i.e. the raft match index); −1 when unknown.
    pub log_end_offset: i64,
    /// Wall-clock ms of the last fetch / append acknowledged by it; −1 when
    /// unknown (Kafka reports −1 from non-leaders too).
    pub last_fetch_timestamp: i64,
    pub last_caught_up_timestamp: i64,
}

/// The quorum as one voter sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuorumStatus {
    /// The node answering.
    pub node_id: i32,
    /// The leader this node knows of; −1 when none.
    pub leader_id: i32,
    /// The current raft term (Kafka's leader epoch of the metadata log).
    pub leader_epoch: i32,
    /// Raft commit index (Kafka's high watermark of `__cluster_metadata`).
    pub high_watermark: i64,
    pub voters: Vec<ReplicaStatus>,
    pub observers: Vec<ReplicaStatus>,
}

impl QuorumStatus {
    /// A single node: the one voter, leading its own quorum of one.
    pub fn single_node(node_id: i32, log_end_offset: i64, now_ms: i64) -> QuorumStatus {
        QuorumStatus {
            node_id,
            leader_id: node_id,
            leader_epoch: 1,
            high_watermark: log_end_offset,
            voters: vec![ReplicaStatus {
                node_id,
                log_end_offset,
                last_fetch_timestamp: now_ms,
                last_caught_up_timestamp: now_ms,
            }],
            observers: Vec::new(),
        }
    }
}
