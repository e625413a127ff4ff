//! The embedded durable log: the default source when no Kafka or Kinesis is
//! configured. Topics with partitions and offsets, appends that are durable
//! (fsynced) before they are acknowledged, consumer positions that survive a
//! restart, and time-based retention — on redb, a crash-safe embedded store.

mod codec;
mod log;
mod source;

pub use log::{AppendError, EmbeddedLog, EmbeddedLogConfig, TopicInfo};
pub use source::EmbeddedSource;

#[cfg(test)]
mod tests;
