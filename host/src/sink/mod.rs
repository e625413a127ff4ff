//! Where records land: an object store (local directory, S3) laid out like the
//! Confluent S3 sink for raw topics and as Parquet/JSON-lines tables for
//! cleaned output.
//!
//! A [`Segment`] gathers every object derived from one input range of one
//! source partition (raw file, table files, dead letters). Objects are
//! invisible until the segment is finished; their names depend only on the
//! first input position, so a replay after a crash rewrites the same objects.

pub mod layout;
pub mod local;
pub mod parquet;
pub mod s3;
pub mod schema;
pub mod segment;
pub mod store;

pub use segment::{DeadLetter, Segment, SegmentSpec, TableSpec};
pub use store::{ObjectStore, ObjectWriter};
