//! The config file: one TOML document, every section beside the component it
//! configures. Unknown keys are refused with their name and line; cross-section
//! rules are checked once at start.

use crate::consume::{ConsumeConfig, ConsumeFrom};
use crate::ingest::DestinationKind;
use crate::ingest::IngestConfig;
use crate::log::EmbeddedLogConfig;
use crate::pipeline::config::{PipelineConfig, SourceKind, TableConfig, TableFormat};
use crate::pipeline::output::OutputKind;
use crate::runtime::SandboxLimits;
use crate::source::kafka::KafkaConfig;
use crate::source::kinesis::KinesisConfig;
use anyhow::Context;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tokens::TokenRole;

pub mod sql_stages;
pub mod tokens;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where sluice keeps its state: the embedded log, checkpoints, compiled components.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub ingest: IngestConfig,
    #[serde(default)]
    pub log: EmbeddedLogConfig,
    /// `[consume]`: reading over HTTP (REST Proxy v2 consumers, Kinesis GetRecords).
    #[serde(default)]
    pub consume: ConsumeConfig,
    /// Read from (and let the ingest API write to) Kafka instead of the embedded log.
    pub kafka: Option<KafkaConfig>,
    /// Read Kinesis streams (and let the ingest API's Kinesis shapes forward to them).
    pub kinesis: Option<KinesisConfig>,
    #[serde(default)]
    pub sandbox: SandboxLimits,
    #[serde(default)]
    pub landing: LandingConfig,
    #[serde(default, rename = "pipeline")]
    pub pipelines: Vec<PipelineConfig>,
    /// `[[transform]]`: SQL stages defined here, registered at start.
    #[serde(default, rename = "transform")]
    pub sql_stages: Vec<sql_stages::SqlStageConfig>,
    /// `[jobs]`: the built-in schedule of named jobs (reports, retention).
    #[serde(default)]
    pub jobs: crate::jobs::schedule::JobsConfig,
}

/// `[server]`: the HTTP listener for ingest, the admin API, health and the status page.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on. Port 0 picks a free port (printed at start).
    pub listen: SocketAddr,
    /// Bearer token of the admin API: at least 16 visible ASCII characters
    /// (surrounding whitespace is not part of it). The environment variable
    /// SLUICE_ADMIN_TOKEN overrides it, held to the same rule: set but empty or
    /// short, sluice refuses to start. Unset: a random token is generated once
    /// and kept in `<data_dir>/admin.token` (readable by the owner only).
    pub admin_token: Option<String>,
    /// Bearer token the ingest and consumer routes require, by the same rule
    /// (SLUICE_INGEST_TOKEN overrides). Unset: ingest is open, as the Kafka
    /// REST Proxy is by default.
    pub ingest_token: Option<String>,
    /// Serve the status page at `/` without a token (it shows counts and
    /// versions, no data), and the latest report summary at `/reports` (the
    /// reports' aggregates: countries, categories, poster names, counts).
    /// `/health` is always open.
    pub public_status_page: bool,
    /// Serve `/metrics` without a token (as Prometheus scrapes expect).
    pub public_metrics: bool,
    /// Also serve `/metrics` (only) on this address, e.g. to expose it on a
    /// network the rest of the API is not on. Always plain HTTP.
    pub metrics_listen: Option<SocketAddr>,
    /// `[server.tls]`: serve `listen` over HTTPS. Unset: plain HTTP.
    pub tls: Option<TlsConfig>,
}

/// `[server.tls]`: HTTPS on the listener (ingest, consumer and admin APIs,
/// status page, health), with a certificate and key read from PEM files. On
/// SIGHUP both files are read again and new connections get the new
/// certificate; the listener and open connections stay. A new pair that does
/// not load (a missing file, a key that is not the certificate's) is logged and
/// the previous pair kept.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the certificate chain: the server's certificate first,
    /// then any intermediates.
    pub cert: PathBuf,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_token: None,
            ingest_token: None,
            public_status_page: true,
            public_metrics: true,
            metrics_listen: None,
            tls: None,
        }
    }
}

/// The bearer tokens the listener requires, from the config file and the
/// environment, each held to the one rule of [`tokens`].
#[derive(Debug, Clone, PartialEq)]
pub struct ChosenTokens {
    /// `None`: use (or generate) the token file `<data_dir>/admin.token`.
    pub admin: Option<String>,
    /// `None`: the ingest routes are open.
    pub ingest: Option<String>,
}

impl ServerConfig {
    /// The tokens to use: SLUICE_ADMIN_TOKEN and SLUICE_INGEST_TOKEN (looked
    /// up with `env`) over the config file's. A variable that is set but
    /// breaks the rule is refused, named, rather than ignored or obeyed.
    pub fn tokens(&self, data_dir: &Path, env: impl Fn(&str) -> Option<std::ffi::OsString>) -> Result<ChosenTokens, String> {
        let choose = |role: TokenRole, configured: &Option<String>| -> Result<Option<String>, String> {
            let configured = configured.as_deref().map(|t| tokens::from_config(role, t, data_dir)).transpose()?;
            tokens::resolve(role, configured.as_deref(), env(role.env_var()), data_dir)
        };
        Ok(ChosenTokens { admin: choose(TokenRole::Admin, &self.admin_token)?, ingest: choose(TokenRole::Ingest, &self.ingest_token)? })
    }
}

/// `[landing]`: where data lands: a local directory, or S3 when `[landing.s3]` is set.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct LandingConfig {
    /// A local directory laid out like the S3 bucket. Default: `<data_dir>/landing`.
    pub dir: Option<PathBuf>,
    /// Land in S3 (or an S3-compatible store) instead, with the same layout.
    pub s3: Option<crate::store::s3::S3Config>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("sluice-data")
}

impl Config {
    /// Read, parse and validate a config file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("config file {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        // toml's errors name the offending key and show its line.
        let config: Config = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        config.validate().map_err(anyhow::Error::msg)?;
        Ok(config)
    }

    /// Where a pipeline reads: as configured, else Kafka when it is configured,
    /// else Kinesis when it is configured.
    pub fn source_of(&self, p: &PipelineConfig) -> SourceKind {
        p.source.unwrap_or(if self.kafka.is_some() {
            SourceKind::Kafka
        } else if self.kinesis.is_some() {
            SourceKind::Kinesis
        } else {
            SourceKind::Embedded
        })
    }

    /// Where the ingest API stores records: as configured, else Kafka when it is configured.
    pub fn ingest_destination(&self) -> DestinationKind {
        self.ingest.destination.unwrap_or(if self.kafka.is_some() { DestinationKind::Kafka } else { DestinationKind::Embedded })
    }

    /// Where a pipeline's output topic is: as configured, else Kafka when the pipeline reads Kafka.
    pub fn output_of(&self, p: &PipelineConfig) -> Option<OutputKind> {
        let out = p.output.as_ref()?;
        Some(out.to.unwrap_or(if self.source_of(p) == SourceKind::Kafka { OutputKind::Kafka } else { OutputKind::Embedded }))
    }

    /// Where the consumer API reads: as configured, else Kafka when ingest writes there.
    pub fn consume_from(&self) -> ConsumeFrom {
        self.consume.from.unwrap_or(if self.ingest_destination() == DestinationKind::Kafka { ConsumeFrom::Kafka } else { ConsumeFrom::Embedded })
    }

    pub fn landing_dir(&self) -> PathBuf {
        self.landing.dir.clone().unwrap_or_else(|| self.data_dir.join("landing"))
    }

    /// Rules that span sections.
    pub fn validate(&self) -> Result<(), String> {
        self.log.validate()?;
        for (i, t) in self.sql_stages.iter().enumerate() {
            t.validate()?;
            if self.sql_stages[..i].iter().any(|u| u.name == t.name) {
                return Err(format!("two [[transform]] sections are named `{}`", t.name));
            }
        }
        self.sandbox.validate().map_err(|e| format!("sandbox: {e}"))?;
        self.jobs.validate()?;
        if let Some(s3) = &self.landing.s3 {
            s3.validate()?;
            if self.landing.dir.is_some() {
                return Err("landing: give `dir` or `s3`, not both".into());
            }
        }
        for (role, token) in [(TokenRole::Admin, &self.server.admin_token), (TokenRole::Ingest, &self.server.ingest_token)] {
            if let Some(t) = token {
                tokens::from_config(role, t, &self.data_dir)?;
            }
        }
        if let Some(k) = &self.kafka {
            k.validate()?;
        }
        if self.ingest_destination() == DestinationKind::Kafka && self.kafka.is_none() {
            return Err("ingest.destination is `kafka` but there is no [kafka] section with the brokers".into());
        }
        if let Some(k) = &self.kinesis {
            k.validate()?;
        }
        if self.ingest_destination() == DestinationKind::Kinesis && self.kinesis.is_none() {
            return Err("ingest.destination is `kinesis` but there is no [kinesis] section".into());
        }
        self.consume.validate()?;
        if self.consume_from() == ConsumeFrom::Kafka && self.kafka.is_none() {
            return Err("consume.from is `kafka` but there is no [kafka] section with the brokers".into());
        }
        if self.ingest.max_body_bytes < 1024 {
            return Err("ingest.max_body_bytes must be at least 1024".into());
        }
        if !(self.log.retention_hours.is_finite() && self.log.retention_hours > 0.0) {
            return Err(format!("log.retention_hours must be above 0 (hours; 0.25 is 15 minutes), got {}", self.log.retention_hours));
        }
        let topics: BTreeSet<&str> = self.log.topics.iter().map(String::as_str).collect();
        let mut names = BTreeSet::new();
        let mut raw_landers: BTreeMap<&str, &str> = BTreeMap::new();
        let mut tables: BTreeMap<&str, &str> = BTreeMap::new();
        for p in &self.pipelines {
            p.validate()?;
            if !names.insert(p.name.as_str()) {
                return Err(format!("two pipelines are named `{}`", p.name));
            }
            let source = self.source_of(p);
            if source == SourceKind::Kafka && self.kafka.is_none() {
                return Err(format!("pipeline `{}` reads Kafka (source = \"kafka\") but there is no [kafka] section with the brokers", p.name));
            }
            if source == SourceKind::Kinesis && self.kinesis.is_none() {
                return Err(format!("pipeline `{}` reads Kinesis (source = \"kinesis\") but there is no [kinesis] section", p.name));
            }
            if let Some(out) = &p.output {
                if self.output_of(p) == Some(OutputKind::Kafka) {
                    if self.kafka.is_none() {
                        return Err(format!("pipeline `{}` writes its output to Kafka but there is no [kafka] section with the brokers", p.name));
                    }
                } else if !topics.contains(out.topic.as_str()) {
                    return Err(format!("pipeline `{}` writes its output to topic `{}`, which is not in log.topics; add it there", p.name, out.topic));
                }
                if p.topics.contains(&out.topic) {
                    return Err(format!(
                        "pipeline `{}` reads topic `{}` and writes its output to it: that would loop; pick another output topic",
                        p.name, out.topic
                    ));
                }
            }
            let internal = [
                p.aggregate.as_ref().map(|_| crate::pipeline::repartition::topic_name(&p.name)),
                p.join.as_ref().map(|_| crate::pipeline::repartition::join_topic_name(&p.name)),
            ];
            if let Some(t) = internal.iter().flatten().find(|t| topics.contains(t.as_str())) {
                return Err(format!("log.topics has `{t}`, the internal topic sluice keeps for pipeline `{}`; rename one of them", p.name));
            }
            for t in &p.topics {
                if source == SourceKind::Embedded && !topics.contains(t.as_str()) {
                    return Err(format!("pipeline `{}` reads topic `{t}`, which is not in log.topics", p.name));
                }
                if p.land_raw
                    && let Some(other) = raw_landers.insert(t, &p.name)
                {
                    return Err(format!("pipelines `{other}` and `{}` both land topic `{t}` raw; only one may", p.name));
                }
            }
            if let Some(t) = &p.table
                && let Some(other) = tables.insert(&t.name, &p.name)
            {
                return Err(format!("pipelines `{other}` and `{}` both write table `{}`", p.name, t.name));
            }
        }
        Ok(())
    }

    /// The reference deployment on one machine: topics `<user>.pin|geo|user`,
    /// one cleaning pipeline per kind landing raw and cleaned data.
    pub fn demo(data_dir: PathBuf, user_id: &str) -> Self {
        let pipeline = |kind: &str, partition_by: Option<&str>| PipelineConfig {
            name: kind.to_owned(),
            source: None,
            topics: vec![format!("{user_id}.{kind}")],
            transforms: vec![format!("clean-{kind}")],
            land_raw: true,
            table: Some(TableConfig {
                name: kind.to_owned(),
                formats: vec![TableFormat::Parquet],
                schema: None,
                columns: None,
                partition_by: partition_by.map(str::to_owned),
                delta: None,
            }),
            batch: Default::default(),
            roll: crate::pipeline::config::RollConfig { max_age_ms: 2_000, ..Default::default() },
            workers: None,
            auto_rollback: Default::default(),
            aggregate: None,
            join: None,
            watermark: Default::default(),
            actions: Vec::new(),
            output: None,
        };
        Config {
            data_dir,
            server: ServerConfig { listen: SocketAddr::from(([127, 0, 0, 1], 0)), ..Default::default() },
            ingest: IngestConfig::default(),
            log: EmbeddedLogConfig { topics: ["pin", "geo", "user"].iter().map(|k| format!("{user_id}.{k}")).collect(), ..Default::default() },
            consume: ConsumeConfig::default(),
            kafka: None,
            kinesis: None,
            sandbox: SandboxLimits::default(),
            landing: LandingConfig::default(),
            pipelines: vec![pipeline("pin", None), pipeline("geo", None), pipeline("user", None)],
            sql_stages: Vec::new(),
            jobs: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
data_dir = "/tmp/x"
[log]
topics = ["u.pin"]

[[pipeline]]
name = "pin"
topics = ["u.pin"]
transforms = ["clean-pin"]
land_raw = true
table = { name = "pin", formats = ["parquet", "jsonl"] }
"#;

    #[test]
    fn a_good_config_parses_with_defaults() {
        let c = Config::parse(GOOD).expect("valid");
        assert_eq!(c.log.partitions, 3);
        assert_eq!(c.pipelines[0].roll.max_age_ms, 10_000);
        assert_eq!(c.landing_dir(), PathBuf::from("/tmp/x/landing"));
        Config::demo("d".into(), "u").validate().expect("the demo config is valid");
    }

    #[test]
    fn a_delta_table_is_one_format_with_defaults() {
        use crate::pipeline::config::TableFormat;
        let c = Config::parse(&GOOD.replace("formats = [\"parquet\", \"jsonl\"]", "format = \"delta\"")).expect("valid");
        let t = c.pipelines[0].table.as_ref().expect("table");
        assert_eq!(t.formats, vec![TableFormat::Delta]);
        let spec = crate::pipeline::table_spec(&c.pipelines[0], Some("pin-clean".into()), None).expect("spec").expect("a table");
        let delta = spec.delta.expect("a Delta table");
        assert!(spec.parquet, "a Delta table's files are Parquet");
        assert_eq!((delta.checkpoint_interval, delta.schema_change), (10, crate::sink::delta::SchemaChange::Refuse));
    }

    #[test]
    fn the_shipped_example_config_is_valid() {
        let c = Config::parse(include_str!("../../deploy/sluice.toml")).expect("deploy/sluice.toml is valid");
        assert_eq!(c.pipelines.len(), 3);
        assert_eq!(c.pipelines[1].table.as_ref().and_then(|t| t.partition_by.as_deref()), Some("timestamp"));
        assert_eq!(c.jobs.schedule.get("reports").map(String::as_str), Some("0 0 * * *"));
    }

    #[test]
    fn the_environment_tokens_override_the_file_and_are_refused_by_name_when_empty() {
        let c = Config::parse(&GOOD.replace("[log]", "[server]\nadmin_token = \"from-the-config-file\"\n[log]")).expect("valid");
        let env = |vars: &'static [(&'static str, &'static str)]| move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).into());
        let chosen = c.server.tokens(&c.data_dir, env(&[])).expect("no variables");
        assert_eq!((chosen.admin.as_deref(), chosen.ingest), (Some("from-the-config-file"), None));
        let chosen = c.server.tokens(&c.data_dir, env(&[("SLUICE_INGEST_TOKEN", "ingest-token-from-env")])).expect("valid");
        assert_eq!(chosen.ingest.as_deref(), Some("ingest-token-from-env"));
        let err = c.server.tokens(&c.data_dir, env(&[("SLUICE_ADMIN_TOKEN", "")])).unwrap_err();
        assert!(err.starts_with("SLUICE_ADMIN_TOKEN is set but empty: unset it to use server.admin_token from the config file"), "{err}");
        let err = Config::parse(GOOD).expect("valid").server.tokens(Path::new("/d"), env(&[("SLUICE_INGEST_TOKEN", "short")])).unwrap_err();
        assert!(err.starts_with("SLUICE_INGEST_TOKEN is 5 character(s) long"), "{err}");
    }

    #[test]
    fn a_kinesis_section_makes_pipelines_read_kinesis() {
        let c = Config::parse(
            &GOOD
                .replace("[log]", "[kinesis]\nendpoint_url = \"http://127.0.0.1:4567\"\n[log]")
                .replace("topics = [\"u.pin\"]\ntransforms", "topics = [\"streaming-u-pin\"]\ntransforms"),
        )
        .expect("valid");
        assert_eq!(c.source_of(&c.pipelines[0]), SourceKind::Kinesis);
        assert_eq!(c.ingest_destination(), DestinationKind::Embedded, "ingest stays on the log unless told");
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let err = Config::parse(&GOOD.replace("land_raw = true", "land_raw = true\nlnad_raw = 1")).unwrap_err().to_string();
        assert!(err.contains("unknown field `lnad_raw`"), "{err}");
        assert!(err.contains("line 11"), "{err}");
    }

    #[test]
    fn cross_section_mistakes_are_explained() {
        let cases = [
            (GOOD.replace("topics = [\"u.pin\"]\ntransforms", "topics = [\"u.geo\"]\ntransforms"), "reads topic `u.geo`, which is not in log.topics"),
            (GOOD.replace("clean-pin", "Clean Pin"), "transform name `Clean Pin` must be 1-64 characters of a-z 0-9 - _"),
            (GOOD.replace("partitions", "x").replace("[log]", "[log]\npartitions = 0"), "log.partitions must be between 1 and 1024"),
            (
                format!(
                    "{GOOD}\n[[pipeline]]\nname = \"pin\"\ntopics = [\"u.pin\"]\nland_raw = false\ntable = {{ name = \"p2\" }}\ntransforms = [\"clean-pin\"]"
                ),
                "two pipelines are named `pin`",
            ),
            (GOOD.replace("table = { name = \"pin\", formats = [\"parquet\", \"jsonl\"] }", "").replace("land_raw = true", ""), "lands nothing"),
            (GOOD.replace("[log]", "[sandbox]\nmemory_mib = 0\n[log]"), "memory_mib must be between"),
            (
                GOOD.replace("formats = [\"parquet\", \"jsonl\"]", "formats = [\"delta\", \"jsonl\"]"),
                "a Delta table is its own format (Parquet files and a log): give `format = \"delta\"` alone",
            ),
            (
                GOOD.replace(
                    "table = { name = \"pin\", formats = [\"parquet\", \"jsonl\"] }",
                    "table = { name = \"pin\", delta = { checkpoint_interval = 5 } }",
                ),
                "[pipeline.table.delta] is set but the table is not `format = \"delta\"`",
            ),
            (
                GOOD.replace(
                    "table = { name = \"pin\", formats = [\"parquet\", \"jsonl\"] }",
                    "table = { name = \"pin\", format = \"delta\", delta = { checkpoint_interval = 0 } }",
                ),
                "table.delta.checkpoint_interval must be at least 1",
            ),
            (GOOD.replace("[log]", "[jobs]\nschedule = { reports = \"0 0 * *\" }\n[log]"), "jobs.schedule.reports: `0 0 * *` has 4 fields"),
            (
                GOOD.replace("land_raw = true", "land_raw = true\nsource = \"kinesis\""),
                "reads Kinesis (source = \"kinesis\") but there is no [kinesis] section",
            ),
            (GOOD.replace("[log]", "[ingest]\ndestination = \"kinesis\"\n[log]"), "ingest.destination is `kinesis` but there is no [kinesis] section"),
            (GOOD.replace("[log]", "[kinesis]\nstart_from = \"latest\"\nstart_timestamp = \"2026-01-01T00:00:00Z\"\n[log]"), "kinesis.start_timestamp is set"),
            (
                GOOD.replace("land_raw = true", "land_raw = true\noutput = { topic = \"u.clean\" }"),
                "writes its output to topic `u.clean`, which is not in log.topics",
            ),
            (
                GOOD.replace("topics = [\"u.pin\"]\n\n", "topics = [\"u.pin\", \"u.clean\"]\n\n")
                    .replace("land_raw = true", "land_raw = true\noutput = { topic = \"u.pin\" }"),
                "that would loop",
            ),
            (
                GOOD.replace("land_raw = true", "land_raw = true\noutput = { topic = \"c\", to = \"kafka\" }"),
                "writes its output to Kafka but there is no [kafka] section",
            ),
            (GOOD.replace("[log]", "[consume]\nfrom = \"kafka\"\n[log]"), "consume.from is `kafka` but there is no [kafka] section"),
            (GOOD.replace("[log]", "[consume]\ninstance_timeout_ms = 5\n[log]"), "consume.instance_timeout_ms must be at least 1000"),
            (GOOD.replace("[log]", "[server]\nadmin_token = \"\"\n[log]"), "server.admin_token is set but empty: remove it to use the generated token in"),
            (GOOD.replace("[log]", "[server]\ningest_token = \"too-short\"\n[log]"), "server.ingest_token is 9 character(s) long"),
        ];
        for (text, want) in cases {
            let err = Config::parse(&text).unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
    }
}
