//! The landing's layout: every name and folder of landed data (raw topics,
//! tables, dead letters, reports) is spelled here and nowhere else. (Sources
//! keep their own bookkeeping, roll intents and shard leases, under `_sluice/`,
//! which no reader of the landing looks at.) Segment
//! names are a pure function of the input position they start at, so replays
//! overwrite rather than duplicate (SPEC section 4).

use crate::position::PartitionId;

/// Raw records, exactly as the Confluent S3 sink names them:
/// `topics/<topic>/partition=<p>/<topic>+<p>+<start offset, 10 digits>.json`.
/// A Parquet table file a finished segment wrote (what a Delta commit adds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFile {
    pub key: String,
    /// Its Hive partition folder (`dt=2020-08-28`), if the table is partitioned.
    pub hive: Option<String>,
    pub bytes: u64,
    pub rows: u64,
}

pub fn raw_object(p: &PartitionId, start: u64) -> String {
    format!("topics/{t}/partition={n}/{t}+{n}+{start:010}.json", t = p.topic, n = p.partition)
}

/// A table file: `tables/<table>/[<hive partition>/]<topic>+<p>+<start>.<ext>`.
pub fn table_object(table: &str, hive: Option<&str>, p: &PartitionId, start: u64, ext: &str) -> String {
    let dir = match hive {
        Some(h) => format!("tables/{table}/{h}"),
        None => format!("tables/{table}"),
    };
    format!("{dir}/{t}+{n}+{start:010}.{ext}", t = p.topic, n = p.partition)
}

/// Dead letters of a pipeline: `dead-letters/<pipeline>/<topic>/partition=<p>/<topic>+<p>+<start>.json`.
pub fn dead_letter_object(pipeline: &str, p: &PartitionId, start: u64) -> String {
    format!("dead-letters/{pipeline}/{t}/partition={n}/{t}+{n}+{start:010}.json", t = p.topic, n = p.partition)
}

/// The folder of a topic's raw objects.
pub fn raw_folder(topic: &str) -> String {
    format!("topics/{topic}/")
}

/// `topics/<topic>/partition=<p>/<topic>+<p>+<start>.json` → (partition, start).
pub fn parse_raw_object(topic: &str, key: &str) -> Option<(u32, u64)> {
    let name = key.rsplit('/').next()?.strip_suffix(".json")?;
    let rest = name.strip_prefix(topic)?.strip_prefix('+')?;
    let (p, start) = rest.split_once('+')?;
    Some((p.parse().ok()?, start.parse().ok()?))
}

/// The folder holding every table.
pub const TABLES: &str = "tables/";

/// The folder of a table's files.
pub fn table_folder(table: &str) -> String {
    format!("{TABLES}{table}/")
}

/// The table a key under [`TABLES`] belongs to.
pub fn table_of(key: &str) -> Option<&str> {
    key.strip_prefix(TABLES)?.split('/').next().filter(|name| !name.is_empty())
}

/// Whether `key` is a table file the pipeline wrote for the segment of `p`
/// starting at `start` (any hive partition, any format; not tagged replay output).
pub fn is_table_object_of(key: &str, p: &PartitionId, start: u64) -> bool {
    let stem = format!("{}+{}+{start:010}.", p.topic, p.partition);
    key.rsplit('/').next().and_then(|n| n.strip_prefix(&stem)).is_some_and(|ext| ext == "parquet" || ext == "json")
}

/// The folder of a pipeline's dead letters.
pub fn dead_letter_folder(pipeline: &str) -> String {
    format!("dead-letters/{pipeline}/")
}

/// The folder under [`dead_letter_folder`]'s pipeline level for dead letters of a backfill of `pipeline`.
pub fn backfill_dead_letter_dir(pipeline: &str) -> String {
    format!("{pipeline}/backfill")
}

/// `…/<topic>+<p>+<start>.json` → start: the first input position of the segment
/// a dead-letter object belongs to.
pub fn dead_letter_segment_start(key: &str) -> Option<u64> {
    key.rsplit('/').next()?.strip_suffix(".json")?.rsplit('+').next()?.parse().ok()
}

/// What kind of landed object a key names, for metrics: `raw`, `dead_letters` or `table`.
pub fn object_kind(key: &str) -> &'static str {
    if key.starts_with("topics/") {
        "raw"
    } else if key.starts_with("dead-letters/") {
        "dead_letters"
    } else {
        "table"
    }
}

/// A report's result file: `reports/<name>/run=<run id>/<name>.<ext>`.
pub fn report_object(name: &str, run_id: &str, ext: &str) -> String {
    format!("reports/{name}/run={run_id}/{name}.{ext}")
}

/// The folder of the reports' HTML summaries.
pub const REPORT_SUMMARIES: &str = "reports/summary/";

/// The HTML summary of a report run.
pub fn report_summary(run_id: &str) -> String {
    format!("{REPORT_SUMMARIES}run={run_id}/index.html")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_confluent_layout() {
        let p = PartitionId { topic: "0a1b.pin".into(), partition: 2 };
        assert_eq!(raw_object(&p, 1234), "topics/0a1b.pin/partition=2/0a1b.pin+2+0000001234.json");
        assert_eq!(table_object("pin", None, &p, 0, "parquet"), "tables/pin/0a1b.pin+2+0000000000.parquet");
        assert_eq!(table_object("geo", Some("dt=2020-08-28"), &p, 7, "parquet"), "tables/geo/dt=2020-08-28/0a1b.pin+2+0000000007.parquet");
        assert_eq!(dead_letter_object("pins", &p, 5), "dead-letters/pins/0a1b.pin/partition=2/0a1b.pin+2+0000000005.json");
    }

    #[test]
    fn names_parse_back() {
        let p = PartitionId { topic: "u.pin".into(), partition: 2 };
        assert_eq!(parse_raw_object("u.pin", &raw_object(&p, 42)), Some((2, 42)));
        assert_eq!(parse_raw_object("u.geo", &raw_object(&p, 42)), None);
        assert_eq!(dead_letter_segment_start(&dead_letter_object("pin", &p, 42)), Some(42));
        assert_eq!(dead_letter_segment_start("dead-letters/x/y.json"), None);
        assert!(is_table_object_of(&table_object("pin", Some("dt=2020-01-01"), &p, 7, "parquet"), &p, 7));
        assert!(!is_table_object_of("tables/pin/u.pin+2+0000000007.replay-0000000009.parquet", &p, 7));
        assert_eq!(table_of(&table_object("pin", None, &p, 7, "json")), Some("pin"));
        assert_eq!(object_kind(&raw_object(&p, 0)), "raw");
        assert_eq!(object_kind(&dead_letter_object("pin", &p, 0)), "dead_letters");
        assert_eq!(object_kind(&table_object("pin", None, &p, 0, "parquet")), "table");
    }
}
