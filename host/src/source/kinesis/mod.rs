//! Kinesis through aws-sdk-kinesis: shard readers with leases and checkpoints
//! as a [`crate::source::Source`], and the producer the ingest API forwards to
//! when Kinesis is its destination.

mod client;
mod config;
mod lease;
mod source;

pub use client::{CallError, Kinesis, PutOutcome, ShardInfo, StartAt, shard_id, shard_number};
pub use config::{KinesisConfig, StartFrom};
pub use lease::{LeaseDoc, Resume};
pub use source::{KinesisSource, open_shard_count};
