//! `[kafka]` in the config file: the brokers, how consumer groups are named,
//! and librdkafka properties passed through (TLS, SASL, tuning).

use rdkafka::config::ClientConfig;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Properties sluice sets itself: the effectively-once protocol depends on them.
const OWNED_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "enable.partition.eof",
    "acks",
    "enable.idempotence",
    "message.timeout.ms",
];

/// Environment variables that override secrets, and the property each sets.
const SECRET_OVERRIDES: &[(&str, &str)] =
    &[("SLUICE_KAFKA_SASL_USERNAME", "sasl.username"), ("SLUICE_KAFKA_SASL_PASSWORD", "sasl.password"), ("SLUICE_KAFKA_SSL_KEY_PASSWORD", "ssl.key.password")];

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port[,host:port…]`.
    pub brokers: String,
    /// A pipeline reads as consumer group `<group_prefix><pipeline name>`.
    /// Several sluice processes with the same config share each group's
    /// partitions: that is how a pipeline scales past one machine.
    #[serde(default = "default_group_prefix")]
    pub group_prefix: String,
    /// Where a group with no committed offset starts: `earliest` or `latest`.
    #[serde(default)]
    pub start_from: StartFrom,
    /// How long the group waits for a silent member before handing its
    /// partitions to the others.
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u32,
    /// Heartbeats per member; keep it well under a third of the session timeout.
    #[serde(default = "default_heartbeat_interval_ms")]
    pub heartbeat_interval_ms: u32,
    /// How long the ingest API waits for the brokers to acknowledge a request's
    /// records before it answers 503 (nothing is acknowledged that is not stored).
    #[serde(default = "default_produce_timeout_ms")]
    pub produce_timeout_ms: u32,
    /// Records librdkafka prefetches per partition, at most, before the
    /// pipeline asks for them (librdkafka's `queued.min.messages`).
    #[serde(default = "default_read_ahead_records")]
    pub read_ahead_records: usize,
    /// MiB librdkafka prefetches per partition, at most (`queued.max.messages.kbytes`;
    /// one fetch response, `max.partition.fetch.bytes`, may overshoot it). With
    /// `read_ahead_records` this bounds the source's memory: partitions × the smaller of the two.
    #[serde(default = "default_read_ahead_mib")]
    pub read_ahead_mib: usize,
    /// librdkafka properties for consumers and producers alike, e.g.
    /// `"security.protocol" = "SASL_SSL"`, `"sasl.mechanisms" = "SCRAM-SHA-512"`,
    /// `"ssl.ca.location" = "/etc/ssl/certs/ca.pem"`. Secrets can come from
    /// SLUICE_KAFKA_SASL_USERNAME, SLUICE_KAFKA_SASL_PASSWORD and SLUICE_KAFKA_SSL_KEY_PASSWORD.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties for consumers only (e.g. `fetch.max.bytes`).
    #[serde(default)]
    pub consumer_properties: BTreeMap<String, String>,
    /// librdkafka properties for the ingest producer only (e.g. `linger.ms`, `compression.type`).
    #[serde(default)]
    pub producer_properties: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    #[default]
    Earliest,
    Latest,
}

fn default_group_prefix() -> String {
    "sluice-".into()
}
fn default_session_timeout_ms() -> u32 {
    10_000
}
fn default_heartbeat_interval_ms() -> u32 {
    1_000
}
fn default_produce_timeout_ms() -> u32 {
    30_000
}
fn default_read_ahead_records() -> usize {
    50_000
}
fn default_read_ahead_mib() -> usize {
    4
}

impl KafkaConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.brokers.trim().is_empty() {
            return Err("kafka.brokers is empty: give host:port of at least one broker".into());
        }
        for (section, props) in
            [("properties", &self.properties), ("consumer_properties", &self.consumer_properties), ("producer_properties", &self.producer_properties)]
        {
            if let Some(key) = props.keys().find(|k| OWNED_PROPERTIES.contains(&k.as_str())) {
                return Err(format!(
                    "kafka.{section}.\"{key}\" is set by sluice itself (offsets are committed only after landing); use kafka.brokers, kafka.start_from or kafka.produce_timeout_ms instead"
                ));
            }
        }
        if self.heartbeat_interval_ms == 0 || self.heartbeat_interval_ms.saturating_mul(3) > self.session_timeout_ms {
            return Err(format!(
                "kafka.heartbeat_interval_ms ({}) must be above 0 and at most a third of kafka.session_timeout_ms ({})",
                self.heartbeat_interval_ms, self.session_timeout_ms
            ));
        }
        if self.produce_timeout_ms < 1_000 {
            return Err("kafka.produce_timeout_ms must be at least 1000".into());
        }
        if !(1..=10_000_000).contains(&self.read_ahead_records) {
            return Err("kafka.read_ahead_records must be between 1 and 10000000".into());
        }
        if !(1..=2047).contains(&self.read_ahead_mib) {
            return Err("kafka.read_ahead_mib must be between 1 and 2047".into());
        }
        Ok(())
    }

    /// Client settings shared by consumers and producers: brokers, pass-through
    /// properties, then secrets from the environment.
    fn common(&self, specific: &BTreeMap<String, String>) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in self.properties.iter().chain(specific) {
            c.set(k, v);
        }
        for (var, key) in SECRET_OVERRIDES {
            if let Ok(v) = std::env::var(var) {
                c.set(*key, v);
            }
        }
        c
    }

    /// A consumer of group `group` that never commits by itself.
    pub fn consumer(&self, group: &str, client_id: &str) -> ClientConfig {
        let mut c = self.common(&self.consumer_properties);
        c.set("group.id", group)
            .set("client.id", client_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set(
                "auto.offset.reset",
                match self.start_from {
                    StartFrom::Earliest => "earliest",
                    StartFrom::Latest => "latest",
                },
            )
            .set("session.timeout.ms", self.session_timeout_ms.to_string())
            .set("heartbeat.interval.ms", self.heartbeat_interval_ms.to_string());
        set_default(&mut c, "queued.min.messages", self.read_ahead_records.to_string());
        set_default(&mut c, "queued.max.messages.kbytes", (self.read_ahead_mib * 1024).to_string());
        // A partition whose prefetch is full is looked at again after this;
        // librdkafka's 1 s leaves a partition that drains faster idle.
        set_default(&mut c, "fetch.queue.backoff.ms", "20".into());
        c
    }

    /// An idempotent producer whose acknowledgements mean every in-sync replica has the record.
    pub fn producer(&self) -> ClientConfig {
        let mut c = self.common(&self.producer_properties);
        c.set("acks", "all").set("enable.idempotence", "true").set("message.timeout.ms", self.produce_timeout_ms.to_string());
        set_default(&mut c, "linger.ms", "5".into());
        c
    }

    /// The consumer group of a pipeline.
    pub fn group(&self, pipeline: &str) -> String {
        format!("{}{pipeline}", self.group_prefix)
    }
}

/// Set `key` unless the config's pass-through properties did.
fn set_default(c: &mut ClientConfig, key: &str, value: String) {
    if c.get(key).is_none() {
        c.set(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> KafkaConfig {
        toml::from_str(text).expect("parses")
    }

    #[test]
    fn owned_properties_are_refused_with_their_key() {
        let c = parse("brokers = \"b:9092\"\n[properties]\n\"enable.auto.commit\" = \"true\"\n");
        let e = c.validate().expect_err("refused");
        assert!(e.contains("kafka.properties.\"enable.auto.commit\""), "{e}");
    }

    #[test]
    fn consumer_settings_keep_commits_manual_and_pass_properties_through() {
        let c = parse(
            "brokers = \"b:9092\"\nstart_from = \"latest\"\n[properties]\n\"security.protocol\" = \"SASL_SSL\"\n[consumer_properties]\n\"fetch.max.bytes\" = \"1000000\"\n",
        );
        c.validate().expect("valid");
        let cc = c.consumer(&c.group("pin"), "w0");
        assert_eq!(cc.get("group.id"), Some("sluice-pin"));
        assert_eq!(cc.get("enable.auto.commit"), Some("false"));
        assert_eq!(cc.get("auto.offset.reset"), Some("latest"));
        assert_eq!(cc.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(cc.get("fetch.max.bytes"), Some("1000000"));
        assert_eq!(cc.get("queued.min.messages"), Some("50000"));
        assert_eq!(cc.get("queued.max.messages.kbytes"), Some("4096"));
        let pc = c.producer();
        assert_eq!(pc.get("acks"), Some("all"));
        assert_eq!(pc.get("enable.idempotence"), Some("true"));
        assert_eq!(pc.get("fetch.max.bytes"), None);
    }

    #[test]
    fn the_read_ahead_defaults_give_way_to_passed_through_properties() {
        let c = parse(
            "brokers = \"b:9092\"\nread_ahead_records = 1000\n[consumer_properties]\n\"queued.max.messages.kbytes\" = \"2048\"\n[producer_properties]\n\"linger.ms\" = \"50\"\n",
        );
        c.validate().expect("valid");
        let cc = c.consumer("g", "w0");
        assert_eq!(cc.get("queued.min.messages"), Some("1000"));
        assert_eq!(cc.get("queued.max.messages.kbytes"), Some("2048"));
        assert_eq!(c.producer().get("linger.ms"), Some("50"));
    }

    #[test]
    fn heartbeat_must_fit_the_session() {
        let c = parse("brokers = \"b:9092\"\nsession_timeout_ms = 6000\nheartbeat_interval_ms = 3000\n");
        assert!(c.validate().expect_err("refused").contains("heartbeat_interval_ms"));
    }
}
