//! The broker's one error model: the table of Kafka error codes it sends
//! (code, name, whether clients retry, a default message) and [`ApiError`],
//! the error every layer reports to a client with. Storage
//! (`log::partition::LogError`) and record (`record::RecordError`) errors
//! map into it (their `From` impls sit beside them), the group coordinator
//! reports it directly; handlers take codes from here instead of choosing
//! numbers.

/// A Kafka error code as it appears on the wire.
pub type ErrorCode = i16;

/// One row of the code table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeInfo {
    pub code: ErrorCode,
    /// Kafka's name of the code (`org.apache.kafka.common.protocol.Errors`).
    pub name: &'static str,
    /// Whether clients treat the error as transient and retry.
    pub retriable: bool,
    /// What the error means, for logs and for responses that carry Kafka's
    /// default text.
    pub message: &'static str,
}

/// Defines a constant per code and [`TABLE`] from one list.
macro_rules! codes {
    ($($name:ident = $code:literal, $retriable:literal, $message:literal;)*) => {
        $(
            #[doc = $message]
            pub const $name: ErrorCode = $code;
        )*

        /// Every error code the broker sends, and the few more its own
        /// clients (bench, cli) look for from other brokers, in code order.
        pub const TABLE: &[CodeInfo] = &[
            $(CodeInfo { code: $code, name: stringify!($name), retriable: $retriable, message: $message },)*
        ];
    };
}

codes! {
    UNKNOWN_SERVER_ERROR = -1, false, "The broker failed in a way it has no better code for.";
    NONE = 0, false, "No error.";
    OFFSET_OUT_OF_RANGE = 1, false, "The offset is outside the partition's log.";
    CORRUPT_MESSAGE = 2, true, "A record batch failed its CRC, length or structure checks.";
    UNKNOWN_TOPIC_OR_PARTITION = 3, true, "This broker has no such topic or partition.";
    LEADER_NOT_AVAILABLE = 5, true, "The partition has no leader yet.";
    NOT_LEADER_OR_FOLLOWER = 6, true, "This broker does not host the partition.";
    REQUEST_TIMED_OUT = 7, true, "The request timed out.";
    MESSAGE_TOO_LARGE = 10, false, "A record batch is larger than the broker accepts.";
    OFFSET_METADATA_TOO_LARGE = 12, false, "The committed offset's metadata is too long.";
    COORDINATOR_LOAD_IN_PROGRESS = 14, true, "The coordinator is still loading its state.";
    COORDINATOR_NOT_AVAILABLE = 15, true, "The coordinator is not available.";
    NOT_COORDINATOR = 16, true, "This broker is not the coordinator of the group.";
    INVALID_TOPIC_EXCEPTION = 17, false, "The topic name is invalid or the topic may not be written to.";
    RECORD_LIST_TOO_LARGE = 18, false, "The record batches are larger than a log segment.";
    NOT_ENOUGH_REPLICAS = 19, true, "Fewer replicas are in sync than the topic requires.";
    NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20, true, "Written, but to fewer in-sync replicas than required.";
    INVALID_REQUIRED_ACKS = 21, false, "The produce request's acks is not -1, 0 or 1.";
    ILLEGAL_GENERATION = 22, false, "The group generation is not the current one.";
    INCONSISTENT_GROUP_PROTOCOL = 23, false, "The member's protocols do not match the group's.";
    INVALID_GROUP_ID = 24, false, "The group id is invalid.";
    UNKNOWN_MEMBER_ID = 25, false, "The group has no such member.";
    INVALID_SESSION_TIMEOUT = 26, false, "The session timeout is outside the broker's allowed range.";
    REBALANCE_IN_PROGRESS = 27, false, "The group is rebalancing; the member must rejoin.";
    INVALID_COMMIT_OFFSET_SIZE = 28, false, "The offset commit could not be written to the offsets log.";
    INVALID_TIMESTAMP = 32, false, "A record timestamp is outside the accepted range.";
    UNSUPPORTED_VERSION = 35, false, "The broker does not implement this version of the API.";
    TOPIC_ALREADY_EXISTS = 36, false, "A topic with this name exists.";
    INVALID_PARTITIONS = 37, false, "The partition count is invalid.";
    INVALID_REPLICATION_FACTOR = 38, false, "The replication factor is invalid.";
    INVALID_REPLICA_ASSIGNMENT = 39, false, "The replica assignment is invalid.";
    INVALID_CONFIG = 40, false, "A config name or value is invalid.";
    NOT_CONTROLLER = 41, true, "This broker is not the controller.";
    INVALID_REQUEST = 42, false, "The request is malformed or not allowed.";
    POLICY_VIOLATION = 44, false, "The request breaks a configured policy.";
    OUT_OF_ORDER_SEQUENCE_NUMBER = 45, false, "The producer's sequence number is not the next one.";
    DUPLICATE_SEQUENCE_NUMBER = 46, false, "The producer's sequence number was already written.";
    INVALID_PRODUCER_EPOCH = 47, false, "The producer epoch is older than the current one.";
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53, false, "The transactional id may not be used.";
    OPERATION_NOT_ATTEMPTED = 55, false, "The operation was not attempted (another in the batch failed).";
    KAFKA_STORAGE_ERROR = 56, true, "The partition's log could not be read or written.";
    UNKNOWN_PRODUCER_ID = 59, false, "The broker has no state for this producer id.";
    NON_EMPTY_GROUP = 68, false, "The group has members.";
    GROUP_ID_NOT_FOUND = 69, false, "The group does not exist.";
    TOPIC_DELETION_DISABLED = 73, false, "Topic deletion is disabled on this broker.";
    FENCED_LEADER_EPOCH = 74, true, "The leader epoch in the request is older than the replica's.";
    UNKNOWN_LEADER_EPOCH = 75, true, "The leader epoch in the request is newer than the replica's.";
    UNSUPPORTED_COMPRESSION_TYPE = 76, false, "The compression codec is not supported.";
    STALE_BROKER_EPOCH = 77, false, "The broker epoch is not the broker's current one.";
    MEMBER_ID_REQUIRED = 79, false, "The member must rejoin with the member id it was given.";
    GROUP_MAX_SIZE_REACHED = 81, false, "The group has as many members as it may have.";
    FENCED_INSTANCE_ID = 82, false, "Another member holds this group instance id.";
    GROUP_SUBSCRIBED_TO_TOPIC = 86, false, "The group is subscribed to the topic.";
    INVALID_RECORD = 87, false, "A record breaks a rule of the topic or broker.";
    INVALID_UPDATE_VERSION = 95, false, "The partition epoch of the update is not the current one.";
    UNKNOWN_TOPIC_ID = 100, true, "This broker has no topic with this id.";
    DUPLICATE_BROKER_REGISTRATION = 101, false, "A live broker is registered with this id.";
    BROKER_ID_NOT_REGISTERED = 102, false, "No broker is registered with this id.";
    INCONSISTENT_TOPIC_ID = 103, true, "The topic id does not match the topic's.";
    INCONSISTENT_CLUSTER_ID = 104, false, "The cluster id does not match the cluster's.";
    INELIGIBLE_REPLICA = 107, false, "The new ISR contains a replica that may not join it.";
    NEW_LEADER_ELECTED = 108, false, "The ISR was updated, but the partition has a new leader.";
    FENCED_MEMBER_EPOCH = 110, false, "The member epoch is fenced; the member must rejoin.";
    UNRELEASED_INSTANCE_ID = 111, false, "Another member still holds this instance id.";
    UNSUPPORTED_ASSIGNOR = 112, false, "The group has no such assignor.";
    STALE_MEMBER_EPOCH = 113, false, "The member epoch is stale.";
    INVALID_REGULAR_EXPRESSION = 128, false, "The subscription's regular expression is invalid.";
}

/// The table's row for `code`, if the broker knows it.
pub fn info(code: ErrorCode) -> Option<&'static CodeInfo> {
    TABLE.iter().find(|c| c.code == code)
}

/// Kafka's name of `code` (UNKNOWN for a code not in the table).
pub fn name(code: ErrorCode) -> &'static str {
    info(code).map_or("UNKNOWN", |c| c.name)
}

/// Whether clients retry on `code`.
pub fn is_retriable(code: ErrorCode) -> bool {
    info(code).is_some_and(|c| c.retriable)
}

/// The table's message for `code`.
pub fn default_message(code: ErrorCode) -> &'static str {
    info(code).map_or("Unknown error code.", |c| c.message)
}

/// An error to report to a client: a code from the table and, for the
/// responses that carry one, a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} ({}): {}", name(self.code), self.code, self.message())]
pub struct ApiError {
    pub code: ErrorCode,
    /// The message sent to the client; None sends none (null).
    pub message: Option<String>,
}

impl ApiError {
    /// An error without a message.
    pub fn new(code: ErrorCode) -> Self {
        ApiError { code, message: None }
    }

    pub fn with_message(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: Some(message.into()),
        }
    }

    /// The message, or the code's default one.
    pub fn message(&self) -> &str {
        self.message.as_deref().unwrap_or_else(|| default_message(self.code))
    }

    pub fn is_retriable(&self) -> bool {
        is_retriable(self.code)
    }
}

impl From<ErrorCode> for ApiError {
    fn from(code: ErrorCode) -> Self {
        ApiError::new(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::partition::LogError;
    use crate::record::RecordError;
    use kafka_protocol::error::ResponseError;

    /// `UnknownTopicOrPartition` -> `UNKNOWN_TOPIC_OR_PARTITION`.
    fn screaming(camel: &str) -> String {
        let mut out = String::new();
        for (i, c) in camel.chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_uppercase());
        }
        out
    }

    #[test]
    fn table_matches_the_kafka_protocol_crate() {
        for c in TABLE {
            if c.code == NONE {
                assert_eq!((c.name, c.retriable), ("NONE", false));
                assert_eq!(ResponseError::try_from_code(c.code), None);
                continue;
            }
            let Some(e) = ResponseError::try_from_code(c.code) else {
                panic!("{} ({}) is not an error code", c.name, c.code);
            };
            assert!(
                !matches!(e, ResponseError::Unknown(_)),
                "{} ({}) is unknown",
                c.name,
                c.code
            );
            assert_eq!(screaming(&e.to_string()), c.name, "name of {}", c.code);
            assert_eq!(e.is_retriable(), c.retriable, "retriable flag of {}", c.name);
            assert!(!c.message.is_empty());
        }
    }

    #[test]
    fn codes_and_names_are_unique_and_ordered() {
        for w in TABLE.windows(2) {
            assert!(w[0].code < w[1].code, "{} before {}", w[0].name, w[1].name);
        }
        let mut names: Vec<&str> = TABLE.iter().map(|c| c.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TABLE.len());
    }

    #[test]
    fn lookups() {
        assert_eq!(name(KAFKA_STORAGE_ERROR), "KAFKA_STORAGE_ERROR");
        assert!(is_retriable(KAFKA_STORAGE_ERROR));
        assert!(!is_retriable(INVALID_RECORD));
        assert!(!is_retriable(12345));
        assert_eq!(name(12345), "UNKNOWN");
        let e = ApiError::new(NOT_COORDINATOR);
        assert_eq!(e.message, None);
        assert_eq!(e.message(), default_message(NOT_COORDINATOR));
        assert_eq!(ApiError::with_message(INVALID_CONFIG, "x").message(), "x");
        assert_eq!(
            ApiError::with_message(INVALID_CONFIG, "bad").to_string(),
            "INVALID_CONFIG (40): bad"
        );
    }

    #[test]
    fn domain_errors_map_into_the_model() {
        let cases: Vec<(ApiError, ErrorCode)> = vec![
            (LogError::OffsetOutOfRange.into(), OFFSET_OUT_OF_RANGE),
            (LogError::Storage.into(), KAFKA_STORAGE_ERROR),
            (
                LogError::Producer(OUT_OF_ORDER_SEQUENCE_NUMBER).into(),
                OUT_OF_ORDER_SEQUENCE_NUMBER,
            ),
            (RecordError::CorruptMessage("crc".into()).into(), CORRUPT_MESSAGE),
            (RecordError::InvalidRecord("x".into()).into(), INVALID_RECORD),
            (RecordError::MissingKeys(vec![0]).into(), INVALID_RECORD),
            (RecordError::InvalidTimestamp(vec![]).into(), INVALID_TIMESTAMP),
            (RecordError::MessageTooLarge(10).into(), MESSAGE_TOO_LARGE),
            (
                RecordError::UnsupportedCompression(5).into(),
                UNSUPPORTED_COMPRESSION_TYPE,
            ),
        ];
        for (e, code) in cases {
            assert_eq!(e.code, code, "{e}");
            assert!(info(e.code).is_some(), "{e}: not in the table");
            assert!(e.message.is_some());
        }
    }
}
