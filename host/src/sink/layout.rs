//! Object names. Every name is a pure function of the input position it starts
//! at, so replays overwrite rather than duplicate (SPEC section 4).

use crate::source::PartitionId;

/// Raw records, exactly as the Confluent S3 sink names them:
/// `topics/<topic>/partition=<p>/<topic>+<p>+<start offset, 10 digits>.json`.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_confluent_layout() {
        let p = PartitionId { topic: "0a1b.pin".into(), partition: 2 };
        assert_eq!(raw_object(&p, 1234), "topics/0a1b.pin/partition=2/0a1b.pin+2+0000001234.json");
        assert_eq!(table_object("pin", None, &p, 0, "parquet"), "tables/pin/0a1b.pin+2+0000000000.parquet");
        assert_eq!(
            table_object("geo", Some("dt=2020-08-28"), &p, 7, "parquet"),
            "tables/geo/dt=2020-08-28/0a1b.pin+2+0000000007.parquet"
        );
        assert_eq!(dead_letter_object("pins", &p, 5), "dead-letters/pins/0a1b.pin/partition=2/0a1b.pin+2+0000000005.json");
    }
}
