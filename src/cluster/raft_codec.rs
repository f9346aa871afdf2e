//! The body of the private `RaftMessages` request (design: replication.md
//! §5.5): a batch of raft-rs messages from one voter to another.
//!
//! Layout, big-endian: `count: u32`, then per message `len: u32` and the
//! message in raft-rs's own protobuf encoding (`eraftpb.Message`). Decoding
//! never panics, bounds every length before allocating, and refuses what
//! raft would choke on (a message to or from node 0).

use protobuf::Message as _;
use raft::eraftpb::Message;

/// Most messages in one batch (raft-rs sends a handful per peer per tick).
pub const MAX_MESSAGES: usize = 4096;
/// Largest encoded batch (a batch of appends is bounded by raft-rs's
/// `max_size_per_msg`, which the node sets far below this).
pub const MAX_BATCH_BYTES: usize = 64 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("raft batch truncated at byte {0}")]
    Truncated(usize),
    #[error("raft batch of {0} messages (at most {MAX_MESSAGES})")]
    TooMany(usize),
    #[error("raft batch of {0} bytes (at most {MAX_BATCH_BYTES})")]
    TooLarge(usize),
    #[error("raft message {index} does not decode: {reason}")]
    Malformed { index: usize, reason: String },
    #[error("raft message {0} names node 0")]
    NoNode(usize),
    #[error("{0} trailing bytes after the raft batch")]
    Trailing(usize),
}

/// Encode a batch.
pub fn encode(messages: &[Message]) -> Result<Vec<u8>, CodecError> {
    if messages.len() > MAX_MESSAGES {
        return Err(CodecError::TooMany(messages.len()));
    }
    let mut out = Vec::with_capacity(64 * messages.len() + 4);
    out.extend_from_slice(&(messages.len() as u32).to_be_bytes());
    for (index, m) in messages.iter().enumerate() {
        let body = m.write_to_bytes().map_err(|e| CodecError::Malformed {
            index,
            reason: e.to_string(),
        })?;
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        if out.len() > MAX_BATCH_BYTES {
            return Err(CodecError::TooLarge(out.len()));
        }
    }
    Ok(out)
}

fn take_u32(bytes: &[u8], at: &mut usize) -> Result<usize, CodecError> {
    let end = at.checked_add(4).ok_or(CodecError::Truncated(*at))?;
    let b = bytes.get(*at..end).ok_or(CodecError::Truncated(*at))?;
    *at = end;
    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

/// Decode a batch.
pub fn decode(bytes: &[u8]) -> Result<Vec<Message>, CodecError> {
    if bytes.len() > MAX_BATCH_BYTES {
        return Err(CodecError::TooLarge(bytes.len()));
    }
    let mut at = 0;
    let count = take_u32(bytes, &mut at)?;
    if count > MAX_MESSAGES {
        return Err(CodecError::TooMany(count));
    }
    // Each message takes at least its 4-byte length.
    if count.saturating_mul(4) > bytes.len() - at {
        return Err(CodecError::Truncated(bytes.len()));
    }
    let mut out = Vec::with_capacity(count);
    for index in 0..count {
        let len = take_u32(bytes, &mut at)?;
        let end = at.checked_add(len).ok_or(CodecError::Truncated(at))?;
        let body = bytes.get(at..end).ok_or(CodecError::Truncated(at))?;
        at = end;
        let m = Message::parse_from_bytes(body).map_err(|e| CodecError::Malformed {
            index,
            reason: e.to_string(),
        })?;
        if m.from == 0 || m.to == 0 {
            return Err(CodecError::NoNode(index));
        }
        out.push(m);
    }
    if at != bytes.len() {
        return Err(CodecError::Trailing(bytes.len() - at));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::{Entry, MessageType, Snapshot};

    fn sample() -> Vec<Message> {
        let mut append = Message::default();
        append.set_msg_type(MessageType::MsgAppend);
        append.from = 1;
        append.to = 2;
        append.term = 7;
        append.log_term = 6;
        append.index = 41;
        append.commit = 40;
        let e = Entry {
            index: 42,
            term: 7,
            data: b"\x00{\"type\":\"FeatureLevel\"}".to_vec().into(),
            ..Default::default()
        };
        append.entries = vec![e].into();
        let mut vote = Message::default();
        vote.set_msg_type(MessageType::MsgRequestVote);
        vote.from = 3;
        vote.to = 1;
        vote.term = 8;
        let mut snap = Message::default();
        snap.set_msg_type(MessageType::MsgSnapshot);
        snap.from = 1;
        snap.to = 3;
        let mut s = Snapshot::default();
        s.mut_metadata().index = 100;
        s.mut_metadata().term = 5;
        s.data = vec![1, 2, 3].into();
        snap.set_snapshot(s);
        vec![append, vote, snap]
    }

    #[test]
    fn batches_round_trip() {
        let msgs = sample();
        let bytes = encode(&msgs).expect("encode");
        assert_eq!(decode(&bytes).expect("decode"), msgs);
        assert_eq!(
            decode(&encode(&[]).expect("empty")).expect("empty"),
            Vec::<Message>::new()
        );
    }

    #[test]
    fn damaged_batches_are_errors_not_panics() {
        let bytes = encode(&sample()).expect("encode");
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "a prefix of {n} bytes decoded");
            let mut b = bytes.clone();
            b[n] ^= 0xa5;
            let _ = decode(&b);
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(decode(&long), Err(CodecError::Trailing(1)));
        assert_eq!(
            decode(&[0xff, 0xff, 0xff, 0xff]),
            Err(CodecError::TooMany(u32::MAX as usize))
        );
        assert!(matches!(
            decode(&[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]),
            Err(CodecError::Truncated(_))
        ));
        let mut anon = sample();
        anon[1].from = 0;
        assert_eq!(decode(&encode(&anon).expect("encode")), Err(CodecError::NoNode(1)));
    }
}
