//! `[kinesis]` in the config file: where the streams are, where a new shard
//! starts, how often shards are listed and polled, how leases behave.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KinesisConfig {
    /// Region; default from the standard AWS chain (AWS_REGION, profile), else us-east-1.
    pub region: Option<String>,
    /// For Kinesis-compatible servers (kinesalite, LocalStack), e.g.
    /// `http://127.0.0.1:4567`. AWS_ENDPOINT_URL_KINESIS also works.
    pub endpoint_url: Option<String>,
    /// Where a shard with no checkpoint starts: `trim_horizon` (the oldest
    /// record kept), `latest` (records put from now on) or `at_timestamp`
    /// (with `start_timestamp`). Children of a split or merge always start at
    /// their beginning, after their parents.
    #[serde(default)]
    pub start_from: StartFrom,
    /// For `start_from = "at_timestamp"`: RFC 3339, e.g. `2026-11-24T00:00:00Z`.
    pub start_timestamp: Option<String>,
    /// Checkpoints and leases of a pipeline live in the landing store under
    /// `_sluice/kinesis/<application_prefix><pipeline>/`. Processes with the
    /// same prefix share the shards of a pipeline's streams.
    #[serde(default = "default_application_prefix")]
    pub application_prefix: String,
    /// Shards are listed this often, to find new ones (splits, merges).
    #[serde(default = "default_list_shards_every_ms")]
    pub list_shards_every_ms: u64,
    /// A shard whose holder has not renewed its lease for this long is taken
    /// over by another worker. Leases are renewed every third of it.
    #[serde(default = "default_lease_duration_ms")]
    pub lease_duration_ms: u64,
    /// A caught-up shard is polled this often (Kinesis allows 5 GetRecords
    /// calls per second per shard, shared by every consumer of the stream).
    #[serde(default = "default_idle_poll_ms")]
    pub idle_poll_ms: u64,
    /// Records per GetRecords call, at most (Kinesis caps it at 10000).
    #[serde(default = "default_records_per_call")]
    pub records_per_call: i32,
    /// The longest pause after `ProvisionedThroughputExceededException` (the
    /// pause doubles from 100 ms up to this).
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// How long the ingest API keeps retrying records Kinesis refused
    /// (throttling) before it answers 503.
    #[serde(default = "default_put_timeout_ms")]
    pub put_timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    #[default]
    TrimHorizon,
    Latest,
    AtTimestamp,
}

fn default_application_prefix() -> String {
    "sluice-".into()
}
fn default_list_shards_every_ms() -> u64 {
    10_000
}
fn default_lease_duration_ms() -> u64 {
    10_000
}
fn default_idle_poll_ms() -> u64 {
    1_000
}
fn default_records_per_call() -> i32 {
    10_000
}
fn default_max_backoff_ms() -> u64 {
    5_000
}
fn default_put_timeout_ms() -> u64 {
    10_000
}

impl KinesisConfig {
    /// A config for this endpoint with every other key at its default.
    pub fn for_endpoint(endpoint_url: Option<String>) -> Self {
        KinesisConfig {
            region: None,
            endpoint_url,
            start_from: StartFrom::default(),
            start_timestamp: None,
            application_prefix: default_application_prefix(),
            list_shards_every_ms: default_list_shards_every_ms(),
            lease_duration_ms: default_lease_duration_ms(),
            idle_poll_ms: default_idle_poll_ms(),
            records_per_call: default_records_per_call(),
            max_backoff_ms: default_max_backoff_ms(),
            put_timeout_ms: default_put_timeout_ms(),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        match (self.start_from, &self.start_timestamp) {
            (StartFrom::AtTimestamp, None) => return Err("kinesis.start_from is `at_timestamp` but kinesis.start_timestamp is missing".into()),
            (StartFrom::AtTimestamp, Some(t)) if self.start_time().is_none() => {
                return Err(format!("kinesis.start_timestamp `{t}` is not an RFC 3339 time such as 2026-11-24T00:00:00Z"));
            }
            (StartFrom::TrimHorizon | StartFrom::Latest, Some(_)) => {
                return Err("kinesis.start_timestamp is set but kinesis.start_from is not `at_timestamp`".into());
            }
            _ => {}
        }
        if !(1..=10_000).contains(&self.records_per_call) {
            return Err(format!("kinesis.records_per_call must be 1 to 10000, got {}", self.records_per_call));
        }
        if self.lease_duration_ms < 1_000 {
            return Err("kinesis.lease_duration_ms must be at least 1000".into());
        }
        if self.idle_poll_ms < 200 {
            return Err("kinesis.idle_poll_ms must be at least 200 (Kinesis allows 5 GetRecords calls per second per shard)".into());
        }
        if self.list_shards_every_ms < 1_000 {
            return Err("kinesis.list_shards_every_ms must be at least 1000".into());
        }
        if self.max_backoff_ms < 100 {
            return Err("kinesis.max_backoff_ms must be at least 100".into());
        }
        if self.put_timeout_ms < 1_000 {
            return Err("kinesis.put_timeout_ms must be at least 1000".into());
        }
        Ok(())
    }

    /// `start_timestamp` as seconds since the epoch.
    pub fn start_time(&self) -> Option<f64> {
        let t = chrono::DateTime::parse_from_rfc3339(self.start_timestamp.as_deref()?).ok()?;
        Some(t.timestamp_millis() as f64 / 1000.0)
    }

    /// A holder renews its leases, and workers look for shards to take, this often.
    pub fn renew_every(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.lease_duration_ms / 3)
    }

    /// The folder of a pipeline's checkpoints and leases in the landing store.
    pub fn lease_folder(&self, pipeline: &str) -> String {
        format!("_sluice/kinesis/{}{pipeline}", self.application_prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<KinesisConfig, String> {
        let c: KinesisConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn defaults_and_errors_name_the_key() {
        let c = parse("").unwrap();
        assert_eq!(c.start_from, StartFrom::TrimHorizon);
        assert_eq!(c.lease_folder("pin"), "_sluice/kinesis/sluice-pin");
        assert!(parse("start_from = \"at_timestamp\"").unwrap_err().contains("kinesis.start_timestamp"));
        assert!(parse("start_from = \"at_timestamp\"\nstart_timestamp = \"yesterday\"").unwrap_err().contains("RFC 3339"));
        let at = parse("start_from = \"at_timestamp\"\nstart_timestamp = \"2026-11-24T00:00:00Z\"").unwrap();
        assert_eq!(at.start_time(), Some(1_795_478_400.0));
        assert!(parse("records_per_call = 20000").unwrap_err().contains("kinesis.records_per_call"));
        assert!(parse("idle_poll_ms = 10").unwrap_err().contains("kinesis.idle_poll_ms"));
        assert!(parse("shards = 2").unwrap_err().contains("shards"), "unknown keys are named");
    }
}
