//! The embedded durable log: what ingest appends to and the embedded source
//! reads when no Kafka or Kinesis is configured. Topics with partitions and offsets, appends that are durable
//! (fsynced) before they are acknowledged, consumer positions that survive a
//! restart, and time-based retention — on redb, a crash-safe embedded store.
//! A full disk refuses appends and heals by itself once space is back (`db`);
//! new records are refused before the disk is full (`space`).

mod codec;
mod db;
mod embedded;
mod space;

pub use embedded::{AppendError, Appended, DEFAULT_MIN_FREE_BYTES, EmbeddedLog, EmbeddedLogConfig, READER_GROUP_PREFIX, StorageState, TopicInfo, valid_name};
pub use space::human as human_bytes;

#[cfg(test)]
mod storage_tests;
#[cfg(test)]
mod tests;
