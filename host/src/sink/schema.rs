//! Table schemas: the built-in cleaned kinds, or columns named in the config.

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;
use std::sync::Arc;

/// A column type as written in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    Int64,
    Float64,
    Boolean,
    String,
    /// UTC timestamp with microsecond precision, from an RFC 3339 string or epoch microseconds.
    Timestamp,
    /// A list of float64 (e.g. coordinates).
    Float64List,
}

/// A column as written in the config file: `{ name = "ind", type = "int64", nullable = false }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ColumnType,
    #[serde(default = "yes")]
    pub nullable: bool,
    /// Dictionary-encode the column in Parquet. Good for repeated values
    /// (categories, countries); turn it off for unique ones (ids, free text),
    /// where building the dictionary costs time and saves nothing.
    #[serde(default = "yes")]
    pub dictionary: bool,
}

/// Field metadata key carrying [`ColumnSpec::dictionary`] into the Arrow schema.
pub const DICTIONARY_KEY: &str = "sluice.dictionary";

fn yes() -> bool {
    true
}

/// Microseconds, UTC. The zone is written as an offset so no time-zone database
/// is needed; Parquet records it as "adjusted to UTC" either way.
fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
}

impl ColumnType {
    fn data_type(self) -> DataType {
        match self {
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::String => DataType::Utf8,
            ColumnType::Timestamp => timestamp(),
            ColumnType::Float64List => DataType::List(Arc::new(Field::new("item", DataType::Float64, true))),
        }
    }
}

/// The columns the host puts first in every aggregate row.
fn window_columns() -> Vec<ColumnSpec> {
    let col = |name: &str, kind| ColumnSpec { name: name.into(), kind, nullable: false, dictionary: true };
    vec![col("window_start", ColumnType::Timestamp), col("window_end", ColumnType::Timestamp), col("revision", ColumnType::Int64)]
}

pub fn from_columns(columns: &[ColumnSpec]) -> SchemaRef {
    let fields: Vec<Field> = columns
        .iter()
        .map(|c| {
            let f = Field::new(&c.name, c.kind.data_type(), c.nullable);
            if c.dictionary { f } else { f.with_metadata([(DICTIONARY_KEY.to_owned(), "false".to_owned())].into()) }
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// The schema of a built-in output kind: the cleaned kinds (`pin-clean`,
/// `geo-clean`, `user-clean`) and the rows of the built-in aggregates
/// (`post-count` grouped by country and category, `follower-percentiles`).
pub fn builtin(kind: &str) -> Option<SchemaRef> {
    use ColumnType::*;
    let col = |name: &str, kind, nullable| ColumnSpec { name: name.into(), kind, nullable, dictionary: true };
    // Free text and ids: nearly every value is new.
    let unique = |name: &str| ColumnSpec { name: name.into(), kind: String, nullable: true, dictionary: false };
    let columns = match kind {
        "pin-clean" => vec![
            col("ind", Int64, false),
            unique("unique_id"),
            unique("title"),
            unique("description"),
            col("follower_count", Int64, true),
            col("poster_name", String, true),
            unique("tag_list"),
            col("is_image_or_video", String, true),
            unique("image_src"),
            col("save_location", String, true),
            col("category", String, true),
        ],
        "geo-clean" => vec![col("ind", Int64, false), col("country", String, true), col("coordinates", Float64List, true), col("timestamp", Timestamp, true)],
        "user-clean" => vec![col("ind", Int64, false), col("user_name", String, true), col("age", Int64, true), col("date_joined", Timestamp, true)],
        "post-count" => [window_columns(), vec![col("country", String, true), col("category", String, true), col("post_count", Int64, false)]].concat(),
        "follower-percentiles" => [
            window_columns(),
            vec![
                col("age_group", String, false),
                col("post_count", Int64, false),
                col("follower_count_p50", Int64, false),
                col("follower_count_p90", Int64, false),
                col("follower_count_p99", Int64, false),
            ],
        ]
        .concat(),
        _ => return None,
    };
    Some(from_columns(&columns))
}
