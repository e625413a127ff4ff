//! A Kafka consumer-group member as a pipeline [`Source`].
//!
//! Each assigned partition is read from its own librdkafka queue, polled only
//! when the pipeline asks for that partition: librdkafka's prefetch limit per
//! partition (`kafka.read_ahead_records`, `kafka.read_ahead_mib`) is the
//! backpressure. Pausing a partition would do the same, but librdkafka drops
//! what it prefetched for a paused partition and fetches it again on resume.
//! The consumer's main queue still carries the group's events, and the records
//! of a partition that arrived before its own queue was split off.
//! Offsets are committed only by [`Source::commit`], i.e. after the sinks made
//! the records durable. A roll's intent is kept in the landing store next to
//! the objects it protects (`_sluice/intents/<group>/<topic>/<partition>.json`),
//! so whichever group member owns the partition next — on this machine or
//! another that lands in the same bucket — rewrites exactly the same objects.
//! An intent counts only while the committed offset is below its end: once the
//! commit is done it is stale, whether or not deleting it succeeded. (Kafka's
//! commit metadata would be the natural home, but not every Kafka-protocol
//! broker keeps it.)
//!
//! Revocation: once the group takes a partition away, intents and commits for
//! it are refused here, so the pipeline abandons the partition's open segment
//! (its objects are never made visible) and the new owner lands those records.

use super::config::{KafkaConfig, StartFrom};
use crate::position::{Checkpoint, Fetched, Intent, PartitionId};
use crate::source::Source;
use crate::store::ObjectStore;
use crate::sync::lock;
use anyhow::Context as _;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Requests to the group coordinator (committed offsets, commits) give up after this.
const COORDINATOR_TIMEOUT: Duration = Duration::from_secs(10);
/// Watermarks (for lag) are asked for at most this often per partition.
const WATERMARK_EVERY: Duration = Duration::from_secs(5);
/// Messages taken from the consumer's main queue per call, at most.
const PUMP_LIMIT: usize = 20_000;
/// [`Source::wait`] serves the group's events at least this often.
const EVENTS_EVERY: Duration = Duration::from_millis(100);
/// A client error is reported as the source's problem for this long.
const PROBLEM_FOR: Duration = Duration::from_secs(15);

/// What librdkafka tells us from its own threads or from inside `poll`.
#[derive(Default)]
pub(crate) struct GroupContext {
    /// The assignment changed since the pipeline last asked.
    changed: AtomicBool,
    /// One lock for the three sets, so ownership is judged on one state of
    /// them, never halfway through a rebalance callback.
    membership: Mutex<Membership>,
    /// The latest client error and when it happened.
    problem: Mutex<Option<(Instant, String)>>,
}

/// Which partitions this member holds, as the group's rebalances said.
#[derive(Default)]
struct Membership {
    /// Partitions this member owns now, as the last rebalance said.
    assigned: BTreeSet<(String, i32)>,
    /// Revoked by the rebalance in progress; whether the group moved them
    /// elsewhere is known once its assignment comes.
    revoking: BTreeSet<(String, i32)>,
    /// Partitions that went to other members since the pipeline last asked
    /// (see [`Source::revoked`]).
    gone: BTreeSet<(String, i32)>,
}

impl GroupContext {
    /// Whether this member owns the partition and the pipeline's view of it is
    /// current: one that went elsewhere and came back is not, until the
    /// pipeline has heard of it (its read position may be behind another
    /// member's commits).
    fn owns(&self, topic: &str, partition: i32) -> bool {
        let key = (topic.to_owned(), partition);
        let m = lock(&self.membership);
        m.assigned.contains(&key) && !m.gone.contains(&key)
    }

    fn set_problem(&self, text: String) {
        *lock(&self.problem) = Some((Instant::now(), text));
    }

    fn clear_problem(&self) {
        *lock(&self.problem) = None;
    }
}

impl ClientContext for GroupContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(error = %error, "kafka client: {reason}");
        self.set_problem(format!("kafka: {reason}"));
    }
}

fn elements(tpl: &TopicPartitionList) -> impl Iterator<Item = (String, i32)> + '_ {
    tpl.elements().into_iter().map(|e| (e.topic().to_owned(), e.partition()))
}

impl ConsumerContext for GroupContext {
    /// Note which partitions may have been read by another member before this
    /// one gets them back. An eager rebalance revokes everything and assigns
    /// most of it straight back: those were never elsewhere. A lost assignment
    /// (this member was thrown out of the group) was elsewhere for certain.
    /// Asked here, since librdkafka forgets the loss once the revocation is done.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let lost = consumer.assignment_lost();
        let mut m = lock(&self.membership);
        match rebalance {
            Rebalance::Revoke(tpl) if lost => m.gone.extend(elements(tpl)),
            Rebalance::Revoke(tpl) => m.revoking.extend(elements(tpl)),
            Rebalance::Assign(tpl) => {
                let coming: BTreeSet<(String, i32)> = elements(tpl).collect();
                let revoking = std::mem::take(&mut m.revoking);
                m.gone.extend(revoking.into_iter().filter(|p| !coming.contains(p)));
            }
            Rebalance::Error(_) => {}
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut m = lock(&self.membership);
        match rebalance {
            Rebalance::Assign(tpl) => {
                let added: Vec<String> = elements(tpl).map(|(topic, partition)| format!("{topic}/{partition}")).collect();
                m.assigned.extend(elements(tpl));
                tracing::info!(partitions = ?added, "kafka group assigned partitions");
            }
            Rebalance::Revoke(tpl) => {
                for p in elements(tpl) {
                    m.assigned.remove(&p);
                }
                tracing::info!(revoked = tpl.count(), "kafka group revoked partitions");
            }
            Rebalance::Error(e) => {
                tracing::warn!(error = %e, "kafka group rebalance failed");
                drop(m);
                self.set_problem(format!("kafka rebalance failed: {e}"));
                return;
            }
        }
        self.changed.store(true, Ordering::SeqCst);
    }
}

/// How far the pipeline's reading of one partition got.
#[derive(Default)]
struct Position {
    /// Every record librdkafka delivered from `covers_from` up to
    /// `delivered_to` is in `leftovers` or was handed out already; `None`
    /// until the position is known.
    covers_from: Option<u64>,
    /// The offset after the last record taken from librdkafka.
    delivered_to: u64,
    /// Records that came through the consumer's main queue before the
    /// partition had its own; they precede everything in its own queue.
    leftovers: VecDeque<OwnedRecord>,
    /// Value bytes of the last batch handed out, to size the next one.
    last_batch_bytes: usize,
}

/// Wakes [`Source::wait`] when a partition queue gets records. librdkafka
/// calls it from its own threads with the queue locked, so it only sets a flag.
#[derive(Default)]
struct Wakeup {
    ready: Mutex<bool>,
    arrived: Condvar,
}

impl Wakeup {
    fn notify(&self) {
        *lock(&self.ready) = true;
        self.arrived.notify_all();
    }

    /// Whether records arrived since the last call, waiting up to `timeout` for them.
    fn wait(&self, timeout: Duration) -> bool {
        let mut ready = lock(&self.ready);
        if !*ready {
            ready = self.arrived.wait_timeout(ready, timeout).map_or_else(|e| e.into_inner().0, |(guard, _)| guard);
        }
        std::mem::take(&mut *ready)
    }
}

/// The id of a partition of `topic`; the topic's name is allocated once, on
/// its first message, not once per message.
fn partition_id(names: &mut BTreeMap<String, Arc<str>>, topic: &str, partition: i32) -> PartitionId {
    let name = match names.get(topic) {
        Some(name) => name.clone(),
        None => names.entry(topic.to_owned()).or_insert_with(|| Arc::from(topic)).clone(),
    };
    PartitionId { topic: name, partition: partition as u32 }
}

/// A message's offset, value, key and timestamp (ms); `None` if it has no real offset.
fn unpack<'m>(m: &'m BorrowedMessage<'_>) -> Option<(u64, &'m [u8], &'m [u8], i64)> {
    let offset = u64::try_from(m.offset()).ok()?;
    Some((offset, m.payload().unwrap_or_default(), m.key().unwrap_or_default(), m.timestamp().to_millis().unwrap_or(0)))
}

struct OwnedRecord {
    offset: u64,
    key: Vec<u8>,
    value: Vec<u8>,
    timestamp: i64,
}

pub struct KafkaSource {
    consumer: Arc<BaseConsumer<GroupContext>>,
    start_from: StartFrom,
    positions: BTreeMap<PartitionId, Position>,
    /// Each partition's own queue, once split off the main one. Kept after a
    /// revocation: librdkafka keeps the split, so the partition's records come
    /// only through this queue if the partition is assigned here again.
    queues: BTreeMap<PartitionId, PartitionQueue<GroupContext>>,
    wakeup: Arc<Wakeup>,
    /// Topic names shared by every [`PartitionId`] of a topic.
    names: BTreeMap<String, Arc<str>>,
    watermarks: BTreeMap<PartitionId, (Instant, Option<u64>)>,
    /// Where roll intents are kept, and under which folder.
    intents: Arc<dyn ObjectStore>,
    intent_folder: String,
    /// Partitions with an intent recorded and not yet cleared.
    pending_intents: BTreeSet<PartitionId>,
}

impl KafkaSource {
    /// Join `group` and subscribe to `topics` (a name starting with `^` is a regex,
    /// e.g. `^0a1b2c3d\..*`).
    /// Roll intents go into `intents` (the landing store).
    pub fn new(config: &KafkaConfig, group: &str, client_id: &str, topics: &[String], intents: Arc<dyn ObjectStore>) -> anyhow::Result<Self> {
        let consumer: BaseConsumer<GroupContext> =
            config.consumer(group, client_id).create_with_context(GroupContext::default()).context("creating the Kafka consumer")?;
        let consumer = Arc::new(consumer);
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names).with_context(|| format!("subscribing to {topics:?}"))?;
        Ok(KafkaSource {
            consumer,
            start_from: config.start_from,
            positions: BTreeMap::new(),
            queues: BTreeMap::new(),
            wakeup: Arc::default(),
            names: BTreeMap::new(),
            watermarks: BTreeMap::new(),
            intents,
            intent_folder: format!("_sluice/intents/{group}"),
            pending_intents: BTreeSet::new(),
        })
    }

    fn intent_key(&self, p: &PartitionId) -> String {
        format!("{}/{}/{}.json", self.intent_folder, p.topic, p.partition)
    }

    /// The intent recorded for `p`, if it still applies with `committed` as the committed offset.
    fn stored_intent(&self, p: &PartitionId, committed: u64) -> anyhow::Result<Option<Intent>> {
        let bytes = match self.intents.get(&self.intent_key(p)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading the roll intent of {p}")),
        };
        let intent: Intent = serde_json::from_slice(&bytes).with_context(|| format!("reading the roll intent of {p}"))?;
        Ok((intent.end > committed).then_some(intent))
    }

    fn id(&mut self, topic: &str, partition: i32) -> PartitionId {
        partition_id(&mut self.names, topic, partition)
    }

    fn tpl(p: &PartitionId, offset: Offset) -> anyhow::Result<TopicPartitionList> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&p.topic, p.partition as i32, offset)?;
        Ok(tpl)
    }

    fn ensure_owned(&self, p: &PartitionId, doing: &str) -> anyhow::Result<()> {
        if self.consumer.context().owns(&p.topic, p.partition as i32) {
            Ok(())
        } else {
            anyhow::bail!("cannot {doing} for {p}: the consumer group gave the partition to another member")
        }
    }

    /// Serve the group's events (rebalances, errors) from the consumer's main
    /// queue, and keep any records it still delivers (those of partitions
    /// without their own queue yet) as leftovers of their partition. Returns
    /// whether there were any.
    fn pump(&mut self) -> bool {
        let mut received = false;
        for _ in 0..PUMP_LIMIT {
            let m = match self.consumer.poll(Duration::ZERO) {
                None => break,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "kafka consumer");
                    self.consumer.context().set_problem(format!("kafka consumer: {e}"));
                    break;
                }
                Some(Ok(m)) => m,
            };
            let Some((offset, value, key, timestamp)) = unpack(&m) else { continue };
            let p = partition_id(&mut self.names, m.topic(), m.partition());
            let at = self.positions.entry(p.clone()).or_default();
            let from = *at.covers_from.get_or_insert(offset);
            if offset < from.max(at.delivered_to) {
                continue;
            }
            at.delivered_to = offset + 1;
            at.leftovers.push_back(OwnedRecord { offset, key: key.to_vec(), value: value.to_vec(), timestamp });
            drop(m);
            received = true;
            self.split(&p);
        }
        received
    }

    /// Give `p` its own queue, so its records wait in librdkafka until asked for.
    fn split(&mut self, p: &PartitionId) {
        if self.queues.contains_key(p) {
            return;
        }
        let Some(mut queue) = self.consumer.split_partition_queue(&p.topic, p.partition as i32) else {
            tracing::warn!(partition = %p, "librdkafka has no queue for this partition; its records come through the main queue");
            return;
        };
        let wakeup = self.wakeup.clone();
        queue.set_nonempty_callback(move || wakeup.notify());
        self.queues.insert(p.clone(), queue);
    }

    /// Make librdkafka deliver `p` from `offset` on. Records of `p` it had
    /// fetched before are dropped by librdkafka (their fetch version is outdated).
    fn seek(&mut self, p: &PartitionId, offset: u64) -> anyhow::Result<()> {
        self.consumer
            .seek(&p.topic, p.partition as i32, Offset::Offset(offset as i64), Duration::from_secs(5))
            .with_context(|| format!("seeking {p} to offset {offset}"))?;
        let at = self.positions.entry(p.clone()).or_default();
        at.leftovers.clear();
        at.covers_from = Some(offset);
        at.delivered_to = offset;
        Ok(())
    }

    fn watermarks(&self, p: &PartitionId) -> anyhow::Result<(u64, u64)> {
        let (low, high) = self.consumer.fetch_watermarks(&p.topic, p.partition as i32, Duration::from_millis(1500))?;
        Ok((low.max(0) as u64, high.max(0) as u64))
    }
}

impl Source for KafkaSource {
    fn partitions(&mut self) -> anyhow::Result<Vec<PartitionId>> {
        let owned: Vec<(String, i32)> = lock(&self.consumer.context().membership).assigned.iter().cloned().collect();
        let ids: Vec<PartitionId> = owned.into_iter().map(|(t, p)| self.id(&t, p)).collect();
        // Where this member had read partitions that went to another member means nothing now.
        self.positions.retain(|p, _| ids.contains(p));
        self.watermarks.retain(|p, _| ids.contains(p));
        // Split before librdkafka starts fetching them, if it has not yet.
        for p in &ids {
            self.split(p);
        }
        Ok(ids)
    }

    fn assignment_changed(&mut self) -> bool {
        self.consumer.context().changed.swap(false, Ordering::SeqCst)
    }

    fn revoked(&mut self) -> Vec<PartitionId> {
        let gone = std::mem::take(&mut lock(&self.consumer.context().membership).gone);
        let ids: Vec<PartitionId> = gone.into_iter().map(|(t, p)| self.id(&t, p)).collect();
        // The pipeline reopens these from their committed offsets, where the
        // consumer resumes too: how far this member had read is not that.
        for p in &ids {
            self.positions.remove(p);
        }
        ids
    }

    fn checkpoint(&mut self, p: &PartitionId) -> anyhow::Result<Checkpoint> {
        let tpl = Self::tpl(p, Offset::Invalid)?;
        let committed = self.consumer.committed_offsets(tpl, COORDINATOR_TIMEOUT).with_context(|| format!("reading the committed offset of {p}"))?;
        let e = committed.find_partition(&p.topic, p.partition as i32).with_context(|| format!("no committed offset for {p} in the reply"))?;
        let next_offset = match e.offset() {
            Offset::Offset(n) if n >= 0 => n as u64,
            // Nothing committed yet: where the consumer will start by itself.
            _ => {
                let (low, high) = self.watermarks(p).with_context(|| format!("reading the watermarks of {p}"))?;
                if self.start_from == StartFrom::Latest { high } else { low }
            }
        };
        let intent = self.stored_intent(p, next_offset)?;
        if intent.is_some() {
            self.pending_intents.insert(p.clone());
        }
        let at = self.positions.entry(p.clone()).or_default();
        if at.covers_from.is_none() {
            at.covers_from = Some(next_offset);
            at.delivered_to = next_offset;
        }
        Ok(Checkpoint { next_offset, intent })
    }

    fn fetch(&mut self, p: &PartitionId, offset: u64, max_records: usize) -> anyhow::Result<Fetched> {
        self.pump();
        if !self.consumer.context().owns(&p.topic, p.partition as i32) {
            return Ok(Fetched { next_offset: offset, ..Default::default() });
        }
        self.split(p);
        let at = self.positions.entry(p.clone()).or_default();
        let servable = match at.covers_from {
            None => {
                at.covers_from = Some(offset);
                at.delivered_to = offset;
                true
            }
            Some(from) => from <= offset && offset <= at.delivered_to,
        };
        if !servable {
            // The pipeline went back (a failed roll is read again) or skipped ahead.
            self.seek(p, offset)?;
        }
        let at = self.positions.get_mut(p).expect("position exists");
        let mut out = Fetched::starting_at(offset, max_records, at.last_batch_bytes);
        while let Some(r) = at.leftovers.pop_front() {
            if r.offset < offset {
                continue;
            }
            out.push(r.offset, &r.value, &r.key, r.timestamp);
            if out.offsets.len() == max_records {
                break;
            }
        }
        if at.leftovers.is_empty()
            && let Some(queue) = self.queues.get(p)
        {
            while out.offsets.len() < max_records {
                let m = match queue.poll(Duration::ZERO) {
                    None => break,
                    Some(Err(e)) => {
                        tracing::warn!(partition = %p, error = %e, "kafka consumer");
                        self.consumer.context().set_problem(format!("kafka consumer, {p}: {e}"));
                        break;
                    }
                    Some(Ok(m)) => m,
                };
                let Some((record, value, key, timestamp)) = unpack(&m) else { continue };
                // Left over from before a seek: librdkafka drops these itself, mostly.
                if record < out.next_offset {
                    continue;
                }
                out.push(record, value, key, timestamp);
            }
            at.delivered_to = at.delivered_to.max(out.next_offset);
        }
        if !out.offsets.is_empty() {
            self.consumer.context().clear_problem();
        }
        at.covers_from = Some(out.next_offset);
        at.last_batch_bytes = out.batch.values.len();
        Ok(out)
    }

    fn record_intent(&mut self, p: &PartitionId, intent: &Intent) -> anyhow::Result<()> {
        self.ensure_owned(p, "record a roll intent")?;
        let mut w = self.intents.create(&self.intent_key(p))?;
        std::io::Write::write_all(&mut w, &serde_json::to_vec(intent)?)?;
        w.finish(&[]).with_context(|| format!("recording the roll intent of {p}"))?;
        self.pending_intents.insert(p.clone());
        Ok(())
    }

    fn commit(&mut self, p: &PartitionId, next_offset: u64) -> anyhow::Result<()> {
        self.ensure_owned(p, "commit")?;
        let tpl = Self::tpl(p, Offset::Offset(next_offset as i64))?;
        self.consumer.commit(&tpl, CommitMode::Sync).with_context(|| format!("committing offset {next_offset} of {p} to Kafka"))?;
        self.consumer.context().clear_problem();
        if self.pending_intents.remove(p) {
            // Stale from now on anyway; removing it keeps the folder tidy.
            if let Err(e) = self.intents.delete(&self.intent_key(p)) {
                tracing::debug!(partition = %p, error = %e, "removing a done roll intent");
            }
        }
        Ok(())
    }

    fn wait(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let received = self.pump();
            let left = deadline.saturating_duration_since(Instant::now());
            if received || left.is_zero() || self.consumer.context().changed.load(Ordering::SeqCst) {
                return;
            }
            if self.wakeup.wait(left.min(EVENTS_EVERY)) {
                return;
            }
        }
    }

    fn end_offset(&mut self, p: &PartitionId) -> anyhow::Result<Option<u64>> {
        if let Some((at, high)) = self.watermarks.get(p)
            && at.elapsed() < WATERMARK_EVERY
        {
            return Ok(*high);
        }
        let high = self.watermarks(p).ok().map(|(_, high)| high);
        self.watermarks.insert(p.clone(), (Instant::now(), high));
        Ok(high)
    }

    fn problem(&mut self) -> Option<String> {
        let p = lock(&self.consumer.context().problem).clone();
        p.filter(|(at, _)| at.elapsed() < PROBLEM_FOR).map(|(_, text)| text)
    }
}

/// Partitions of the named topics (regex subscriptions count as unknown), to
/// size a pipeline's worker pool.
/// Partitions of `topic` as the brokers report them; `Ok(None)` when they do
/// not have it (unknown, or reported with an error and no partitions). Any
/// client asks: a consumer, a producer's `client()`.
pub fn topic_partitions<C: ClientContext>(client: &rdkafka::client::Client<C>, topic: &str, timeout: Duration) -> Result<Option<u32>, KafkaError> {
    let md = client.fetch_metadata(Some(topic), timeout)?;
    Ok(md.topics().first().filter(|t| t.error().is_none() && !t.partitions().is_empty()).map(|t| t.partitions().len() as u32))
}

pub fn partition_count(config: &KafkaConfig, topics: &[String]) -> Option<usize> {
    Some(partitions_of(config, topics)?.iter().map(|(_, n)| *n as usize).sum())
}

/// Each topic with its partition count (`None`: a regex, or the brokers did not answer).
pub fn partitions_of(config: &KafkaConfig, topics: &[String]) -> Option<Vec<(String, u32)>> {
    if topics.iter().any(|t| t.starts_with('^')) {
        return None;
    }
    let probe: BaseConsumer = config.consumer("sluice-metadata-probe", "sluice-metadata-probe").create().ok()?;
    let mut out = Vec::new();
    for t in topics {
        let md = probe.fetch_metadata(Some(t), Duration::from_secs(5)).ok()?;
        out.push((t.clone(), md.topics().first().map_or(0, |t| t.partitions().len() as u32)));
    }
    Some(out)
}
