//! Topics sluice keeps in Kafka for itself: a keyed pipeline's repartition and
//! join topics, created when absent.

use super::{KafkaConfig, topic_partitions};
use anyhow::Context as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Make sure `topic` exists, creating it with `partitions` partitions (and the
/// brokers' default replication) when absent. Returns its partition count,
/// which may differ from `partitions` for a topic that already existed.
pub fn ensure_topic(config: &KafkaConfig, topic: &str, partitions: u32) -> anyhow::Result<u32> {
    // A thread and a runtime of its own: the caller may be running on an async runtime.
    std::thread::scope(|s| s.spawn(|| create(config, topic, partitions)).join()).map_err(|_| anyhow::anyhow!("creating Kafka topic `{topic}` panicked"))?
}

fn create(config: &KafkaConfig, topic: &str, partitions: u32) -> anyhow::Result<u32> {
    let admin: AdminClient<DefaultClientContext> = config.producer().create().context("creating a Kafka admin client")?;
    if let Some(n) = topic_partitions(admin.inner(), topic, TIMEOUT).with_context(|| format!("asking Kafka about topic `{topic}`"))? {
        return Ok(n);
    }
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let mut factor = -1;
    loop {
        let new = NewTopic::new(topic, partitions as i32, TopicReplication::Fixed(factor));
        let results = crate::sync::block_on(admin.create_topics([&new], &options)).with_context(|| format!("creating Kafka topic `{topic}`"))?;
        match results.into_iter().next() {
            Some(Ok(_)) | Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) | None => break,
            // Brokers before KIP-464 (and some compatible ones) want the factor spelled out.
            Some(Err((_, RDKafkaErrorCode::InvalidReplicationFactor | RDKafkaErrorCode::InvalidRequest))) if factor == -1 => {
                factor = 1;
            }
            Some(Err((_, code))) => anyhow::bail!("Kafka refused to create topic `{topic}` ({partitions} partitions): {code}; create it yourself"),
        }
    }
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(n) = topic_partitions(admin.inner(), topic, TIMEOUT)? {
            tracing::info!(topic, partitions = n, "created Kafka topic");
            return Ok(n);
        }
        anyhow::ensure!(Instant::now() < deadline, "Kafka topic `{topic}` was created but does not show in the metadata after {TIMEOUT:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
