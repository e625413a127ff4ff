//! Kafka through librdkafka (the `rdkafka` crate): a consumer-group member per
//! pipeline worker as a [`crate::source::Source`], and the idempotent producer
//! the ingest API writes through when Kafka is configured.

mod admin;
mod config;
mod source;

pub use admin::ensure_topic;
pub use config::{KafkaConfig, StartFrom};
pub use source::{KafkaSource, partition_count, partitions_of, topic_partitions};
