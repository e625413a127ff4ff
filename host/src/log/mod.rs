//! The embedded durable log: what ingest appends to and the embedded source
//! reads when no Kafka or Kinesis is configured. Topics with partitions and offsets, appends that are durable
//! (fsynced) before they are acknowledged, consumer positions that survive a
//! restart, and time-based retention — on redb, a crash-safe embedded store.

mod codec;
mod embedded;

pub use embedded::{AppendError, Appended, EmbeddedLog, EmbeddedLogConfig, READER_GROUP_PREFIX, TopicInfo, valid_name};

#[cfg(test)]
mod tests;
