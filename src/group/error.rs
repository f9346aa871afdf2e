//! Kafka protocol error codes used by the group coordinator.
//!
//! These are the wire values of `org.apache.kafka.common.protocol.Errors`; the
//! coordinator reports them as plain `i16` so the shell can copy them into any
//! response type without conversion.

/// A Kafka error code as it appears on the wire.
pub type ErrorCode = i16;

pub const NONE: ErrorCode = 0;
pub const UNKNOWN_SERVER_ERROR: ErrorCode = -1;
pub const OFFSET_METADATA_TOO_LARGE: ErrorCode = 12;
pub const COORDINATOR_LOAD_IN_PROGRESS: ErrorCode = 14;
pub const COORDINATOR_NOT_AVAILABLE: ErrorCode = 15;
pub const NOT_COORDINATOR: ErrorCode = 16;
pub const ILLEGAL_GENERATION: ErrorCode = 22;
pub const INCONSISTENT_GROUP_PROTOCOL: ErrorCode = 23;
pub const INVALID_GROUP_ID: ErrorCode = 24;
pub const UNKNOWN_MEMBER_ID: ErrorCode = 25;
pub const INVALID_SESSION_TIMEOUT: ErrorCode = 26;
pub const REBALANCE_IN_PROGRESS: ErrorCode = 27;
pub const UNSUPPORTED_VERSION: ErrorCode = 35;
pub const INVALID_REQUEST: ErrorCode = 42;
pub const NON_EMPTY_GROUP: ErrorCode = 68;
pub const GROUP_ID_NOT_FOUND: ErrorCode = 69;
pub const MEMBER_ID_REQUIRED: ErrorCode = 79;
pub const GROUP_MAX_SIZE_REACHED: ErrorCode = 81;
pub const FENCED_INSTANCE_ID: ErrorCode = 82;
pub const GROUP_SUBSCRIBED_TO_TOPIC: ErrorCode = 86;
pub const FENCED_MEMBER_EPOCH: ErrorCode = 110;
pub const UNRELEASED_INSTANCE_ID: ErrorCode = 111;
pub const UNSUPPORTED_ASSIGNOR: ErrorCode = 112;
pub const STALE_MEMBER_EPOCH: ErrorCode = 113;
pub const INVALID_REGULAR_EXPRESSION: ErrorCode = 128;

/// An error code together with an optional human readable message (for the
/// APIs whose responses carry an `ErrorMessage` field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode) -> Self {
        ApiError { code, message: None }
    }

    pub fn with_message(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: Some(message.into()),
        }
    }
}

impl From<ErrorCode> for ApiError {
    fn from(code: ErrorCode) -> Self {
        ApiError::new(code)
    }
}
