//! What lands: segment formats for the landing store (raw JSON lines laid out
//! like the Confluent S3 sink, Parquet/JSON-lines tables, dead letters), and
//! [`layout`], the one place that knows the landing's paths. The store itself
//! (local directory, S3) is [`crate::store`].
//!
//! A [`Segment`] gathers every object derived from one input range of one
//! source partition (raw file, table files, dead letters). Objects are
//! invisible until the segment is finished; their names depend only on the
//! first input position, so a replay after a crash rewrites the same objects.

pub mod delta;
pub mod layout;
pub mod parquet;
pub mod schema;
pub mod segment;

pub use layout::TableFile;
pub use segment::{DeadLetter, Segment, SegmentSpec, SegmentSummary, TableSpec};
