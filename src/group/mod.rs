//! Consumer group coordination.
pub mod error;
pub mod records;

/// A Kafka topic id (UUID bytes).
pub type TopicId = [u8; 16];
