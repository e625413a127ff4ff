//! The log itself: storage layout, group-committed appends, reads, positions.

use super::codec::{self, StoredBatch};
use super::db::{IoFailure, LogDb, Unwritable};
use super::space;
use crate::position::{Checkpoint, Fetched, Intent};
use anyhow::Context;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use sluice_guest::BatchBuf;
use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

/// `(topic, partition, base offset)` → one appended batch.
const BATCHES: TableDefinition<(&str, u32, u64), &[u8]> = TableDefinition::new("batches");
/// `(topic, partition)` → the next offset to assign.
const NEXT_OFFSETS: TableDefinition<(&str, u32), u64> = TableDefinition::new("next_offsets");
/// `topic` → partition count.
const TOPICS: TableDefinition<&str, u32> = TableDefinition::new("topics");
/// `(consumer group, topic, partition)` → committed position (next offset to read).
const POSITIONS: TableDefinition<(&str, &str, u32), u64> = TableDefinition::new("positions");
/// `(consumer group, topic, partition)` → the roll in flight (JSON [`Intent`]).
const INTENTS: TableDefinition<(&str, &str, u32), &[u8]> = TableDefinition::new("intents");
/// `(consumer group, instance)` → an HTTP consumer instance (JSON, the consumer
/// API's own), so instances outlive a restart.
const MEMBERS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("members");
/// `(topic, writer)` → the source position a writer's appends to the topic
/// reached, so an append replayed after a crash is recognized and skipped.
const MARKS: TableDefinition<(&str, &str), u64> = TableDefinition::new("marks");

/// Consumer groups whose names start with this are readers that do not hold
/// back retention (the HTTP consumers): as on Kafka, a record older than the
/// retention period goes whether they read it or not, and they continue at the
/// first record kept. The pipelines' groups, which land what they read, are
/// always waited for.
pub const READER_GROUP_PREFIX: &str = "http:";

/// Largest total of record bytes committed in one transaction by the appender.
const GROUP_COMMIT_BYTES: usize = 32 << 20;

/// Settings of the embedded log (`[log]` in the config file).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedLogConfig {
    /// Topics the log accepts (Kafka-style topics and Kinesis-style stream names
    /// alike). Producing to any other name is refused as an unknown topic.
    pub topics: Vec<String>,
    /// Partitions of each topic. May be raised later, never lowered.
    pub partitions: u32,
    /// Records older than this are deleted once every consumer group that reads
    /// the partition has committed past them. Fractions are fine (`0.25`: 15
    /// minutes); retention runs every 5 minutes.
    pub retention_hours: f64,
    /// Memory for the store's page cache, in MiB. Reads stream through it, so a
    /// small cache costs little; it bounds the resident memory of the log.
    /// Draining 1M pins ran as fast with 8 MiB as with 32 MiB, in 30 MiB less.
    pub cache_mib: usize,
    /// The low-water mark: ingest refuses new records (507) while the
    /// filesystem holding the log has less than this free, so a disk never
    /// fills with records alone and the pipelines draining it (they commit
    /// positions) and retention (it deletes batches) still have room to write.
    /// 0 turns the check off.
    pub min_free_bytes: u64,
}

/// The default low-water mark: 256 MiB, minutes of headroom at typical ingest rates.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 256 << 20;

impl Default for EmbeddedLogConfig {
    fn default() -> Self {
        EmbeddedLogConfig { topics: Vec::new(), partitions: 3, retention_hours: 168.0, cache_mib: 8, min_free_bytes: DEFAULT_MIN_FREE_BYTES }
    }
}

impl EmbeddedLogConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=1024).contains(&self.partitions) {
            return Err(format!("log.partitions must be between 1 and 1024, got {}", self.partitions));
        }
        for t in &self.topics {
            if !valid_name(t) {
                return Err(format!("log.topics: `{t}` is not a valid topic name (1-249 of a-z A-Z 0-9 . _ -)"));
            }
        }
        Ok(())
    }
}

/// Record topic `name` with `partitions` partitions in `txn` and load where
/// each of its partitions ends into `next`. A topic that already has more
/// partitions is refused with `refuse(had)`: records are routed by partition
/// count, so partitions can be added, never removed.
fn register_topic(
    txn: &redb::WriteTransaction,
    next: &mut HashMap<(Arc<str>, u32), u64>,
    name: &str,
    partitions: u32,
    refuse: impl FnOnce(u32) -> String,
) -> anyhow::Result<TopicInfo> {
    let mut t = txn.open_table(TOPICS)?;
    let n = txn.open_table(NEXT_OFFSETS)?;
    if let Some(had) = t.get(name)?.map(|v| v.value()).filter(|had| *had > partitions) {
        anyhow::bail!(refuse(had));
    }
    t.insert(name, partitions)?;
    let info = TopicInfo { name: Arc::from(name), partitions };
    for p in 0..partitions {
        let o = n.get((name, p))?.map(|v| v.value()).unwrap_or(0);
        next.insert((info.name.clone(), p), o);
    }
    Ok(info)
}

/// Kafka's rule for topic names, used for every name of the log: 1-249 of
/// a-z A-Z 0-9 . _ - (safe in URLs, object keys and store keys).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 249 && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: Arc<str>,
    pub partitions: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("topic `{0}` does not exist")]
    UnknownTopic(String),
    #[error("partition {partition} of topic `{topic}` does not exist (it has {partitions})")]
    UnknownPartition { topic: String, partition: u32, partitions: u32 },
    #[error("the log is shutting down")]
    Closed,
    #[error("the log could not store the records: {0}")]
    Storage(String),
    /// The disk holding the log is full, or below the low-water mark.
    #[error("the log could not store the records: {0}")]
    NoSpace(String),
}

impl AppendError {
    /// The error of a failed append transaction: a full disk is told apart.
    fn of_failed_commit(e: &anyhow::Error) -> AppendError {
        let message = format!("{e:#}");
        if e.chain().any(|c| c.downcast_ref::<Unwritable>().is_some_and(|u| u.no_space)) {
            // Says what happened and what brings the log back already.
            AppendError::NoSpace(message)
        } else if IoFailure::find(e).is_some_and(|f| f.no_space) {
            AppendError::NoSpace(format!(
                "the disk holding the log is full ({message}); the records were not stored: send them again once space is freed (the log resumes by itself)"
            ))
        } else {
            AppendError::Storage(message)
        }
    }
}

/// Whether the log takes writes now, and why not: `/ready`, `/status`, the
/// status page and the `sluice_log_*` metrics show this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StorageState {
    /// Appends are accepted: the database is usable and the disk is above the low-water mark.
    pub writable: bool,
    /// Free bytes on the filesystem holding the log (unknown if it could not be asked).
    pub free_bytes: Option<u64>,
    pub min_free_bytes: u64,
    /// How often the log was reopened after an I/O error since start.
    pub reopens: u64,
    /// What stops writes, and what brings them back.
    pub problem: Option<String>,
}

/// The base offset of each part; `None` when a marked append found its
/// writer's mark already there (appended before: nothing stored).
type Bases = Option<Vec<u64>>;
type AppendReply = tokio::sync::oneshot::Receiver<Result<Bases, AppendError>>;

struct AppendRequest {
    topic: Arc<str>,
    parts: Vec<(u32, BatchBuf)>,
    /// `(writer, through)`: append only if the writer's mark on the topic is
    /// below `through`, and raise it to `through` in the same transaction.
    mark: Option<(String, u64)>,
    reply: tokio::sync::oneshot::Sender<Result<Bases, AppendError>>,
}

/// What [`EmbeddedLog::append_once`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// Stored now; the base offset of each part.
    Now(Vec<u64>),
    /// A previous append of this writer already reached the position: nothing stored.
    Before,
}

/// Next offset per partition, with a condition variable readers wait on.
struct Offsets {
    next: Mutex<HashMap<(Arc<str>, u32), u64>>,
    appended: Condvar,
}

impl Offsets {
    /// Load where each known partition ends from the database, after a reopen:
    /// an append whose commit failed may or may not have reached the file, and
    /// the file is what the next append must continue from.
    fn reload(&self, db: &Database) -> anyhow::Result<()> {
        let txn = db.begin_read()?;
        let table = txn.open_table(NEXT_OFFSETS)?;
        let mut next = self.next.lock().map_err(|_| anyhow::anyhow!("the log's offsets are poisoned"))?;
        for ((topic, partition), end) in next.iter_mut() {
            *end = table.get((&**topic, *partition))?.map_or(0, |v| v.value());
        }
        Ok(())
    }
}

pub struct EmbeddedLog {
    db: Arc<LogDb>,
    /// The low-water mark of the filesystem holding the log file.
    low_water: space::LowWater,
    /// The configured topics and those pipelines create (repartition topics).
    topics: RwLock<HashMap<String, TopicInfo>>,
    offsets: Arc<Offsets>,
    appender: Mutex<Option<mpsc::Sender<AppendRequest>>>,
    appender_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    retention: Duration,
}

impl Drop for EmbeddedLog {
    fn drop(&mut self) {
        self.close();
    }
}

impl EmbeddedLog {
    /// Open (or create) the log at `path` with the configured topics.
    pub fn open(path: &Path, config: &EmbeddedLogConfig) -> anyhow::Result<Arc<Self>> {
        config.validate().map_err(anyhow::Error::msg)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let db = Arc::new(LogDb::open(path, config.cache_mib << 20)?);
        let mut topics = HashMap::new();
        let mut next = HashMap::new();
        db.with(|db| {
            let txn = db.begin_write()?;
            // Every table exists from the first open on.
            txn.open_table(TOPICS)?;
            txn.open_table(NEXT_OFFSETS)?;
            txn.open_table(BATCHES)?;
            txn.open_table(POSITIONS)?;
            txn.open_table(INTENTS)?;
            txn.open_table(MEMBERS)?;
            txn.open_table(MARKS)?;
            for name in &config.topics {
                let info = register_topic(&txn, &mut next, name, config.partitions, |had| {
                    format!("log.partitions = {} but topic `{name}` already has {had} partitions; partitions can be added, never removed", config.partitions)
                })?;
                topics.insert(name.clone(), info);
            }
            txn.commit()?;
            Ok(())
        })?;
        let offsets = Arc::new(Offsets { next: Mutex::new(next), appended: Condvar::new() });
        db.on_reopen({
            let offsets = offsets.clone();
            move |db| offsets.reload(db)
        });
        let (tx, rx) = mpsc::channel();
        let (db2, offsets2) = (db.clone(), offsets.clone());
        let appender_thread = std::thread::Builder::new()
            .name("sluice-log-append".into())
            .spawn(move || run_appender(&db2, &offsets2, rx))
            .context("starting the log appender thread")?;
        Ok(Arc::new(EmbeddedLog {
            low_water: space::LowWater::new(path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_owned(), config.min_free_bytes),
            db,
            topics: RwLock::new(topics),
            offsets,
            appender: Mutex::new(Some(tx)),
            appender_thread: Mutex::new(Some(appender_thread)),
            retention: Duration::from_secs_f64(config.retention_hours.max(0.0) * 3600.0),
        }))
    }

    pub fn topic(&self, name: &str) -> Option<TopicInfo> {
        self.topics.read().ok()?.get(name).cloned()
    }

    pub fn topics(&self) -> Vec<TopicInfo> {
        self.topics.read().map(|t| t.values().cloned().collect()).unwrap_or_default()
    }

    /// Create `name` with `partitions` partitions, or raise an existing topic's
    /// partitions to that (a pipeline's internal topic, e.g. its repartition
    /// topic). Refused when the topic has more: records are routed by
    /// partition count, so fewer partitions would move keys.
    pub fn ensure_topic(&self, name: &str, partitions: u32) -> anyhow::Result<TopicInfo> {
        anyhow::ensure!(valid_name(name), "`{name}` is not a valid topic name (1-249 of a-z A-Z 0-9 . _ -)");
        anyhow::ensure!((1..=1024).contains(&partitions), "topic `{name}`: partitions must be between 1 and 1024, got {partitions}");
        let mut topics = self.topics.write().map_err(|_| anyhow::anyhow!("the log's topic list is poisoned"))?;
        if let Some(info) = topics.get(name).filter(|i| i.partitions == partitions) {
            return Ok(info.clone());
        }
        let info = self.db.with(|db| {
            let txn = db.begin_write()?;
            let info = {
                let mut next = self.offsets.next.lock().map_err(|_| anyhow::anyhow!("the log's offsets are poisoned"))?;
                register_topic(&txn, &mut next, name, partitions, |had| {
                    format!("topic `{name}` already has {had} partitions, more than the {partitions} asked for; partitions can be added, never removed")
                })?
            };
            txn.commit()?;
            Ok(info)
        })?;
        topics.insert(name.to_owned(), info.clone());
        Ok(info)
    }

    /// Append new records (what ingest takes in) to partitions of one topic.
    /// Resolves once the records are fsynced, with the base offset of each
    /// batch, in order. Concurrent appends share one transaction and one fsync
    /// (group commit). Refused with [`AppendError::NoSpace`] while the disk is
    /// below the low-water mark (`[log] min_free_bytes`).
    pub async fn append(&self, topic: &str, parts: Vec<(u32, BatchBuf)>) -> Result<Vec<u64>, AppendError> {
        self.admit()?;
        // Without a mark an append is always stored.
        Ok(self.submit(topic, parts, None)?.await.map_err(|_| AppendError::Closed)??.unwrap_or_default())
    }

    /// Refuse new records below the low-water mark. (The pipelines' own
    /// appends, of records already taken in, are not held back by it: they move
    /// records towards the landing, which is how the log drains.)
    fn admit(&self) -> Result<(), AppendError> {
        let full_failures = self.db.no_space_failures();
        if self.low_water.min_free() == 0 && full_failures == 0 {
            return Ok(());
        }
        // One statfs per append: microseconds, next to the append's fsync.
        match space::free_bytes(self.low_water.dir()) {
            Ok(free) => self.low_water.admit(free, full_failures).map_err(AppendError::NoSpace),
            Err(e) => {
                tracing::debug!(error = %e, dir = %self.low_water.dir().display(), "could not ask how much space is free; not holding appends back");
                Ok(())
            }
        }
    }

    /// Reopen the database if an I/O error broke it and a reopen is due, then
    /// report: what the log's upkeep calls every second, so the log heals even
    /// while nothing reads or appends. (A reopen repairs the file: blocking work.)
    pub fn check_storage(&self) -> StorageState {
        self.db.heal();
        self.storage()
    }

    /// Whether the log takes writes now (see [`StorageState`]); cheap, does not block.
    pub fn storage(&self) -> StorageState {
        let free = space::free_bytes(self.low_water.dir()).ok();
        let refusal = free.and_then(|f| self.low_water.admit(f, self.db.no_space_failures()).err());
        let broken = self.db.broken().map(|b| {
            let what = if b.no_space { "the disk is full" } else { "an I/O error" };
            format!(
                "the embedded log at {} stopped at {what} ({}); it reopens itself every {} s and takes writes again once it can",
                self.db.path().display(),
                b.cause,
                super::db::REOPEN_EVERY.as_secs()
            )
        });
        let state = StorageState {
            writable: broken.is_none() && refusal.is_none(),
            free_bytes: free,
            min_free_bytes: self.low_water.min_free(),
            reopens: self.db.reopens(),
            problem: broken.or(refusal),
        };
        let m = crate::telemetry::metrics();
        m.log_writable.set(i64::from(state.writable));
        m.log_min_free_bytes.set(i64::try_from(state.min_free_bytes).unwrap_or(i64::MAX));
        if let Some(free) = state.free_bytes {
            m.log_free_bytes.set(i64::try_from(free).unwrap_or(i64::MAX));
        }
        state
    }

    /// Blocking form of [`EmbeddedLog::append`] for the pipelines' own topics,
    /// for threads outside the async runtime; not held back by the low-water mark.
    pub fn append_blocking(&self, topic: &str, parts: Vec<(u32, BatchBuf)>) -> Result<Vec<u64>, AppendError> {
        Ok(self.submit(topic, parts, None)?.blocking_recv().map_err(|_| AppendError::Closed)??.unwrap_or_default())
    }

    /// Append for `writer` the records that brought its input up to `through`
    /// (a position in the writer's own input), unless an earlier append of the
    /// writer already got that far. The check, the records and the new mark
    /// are one transaction: a writer that replays its input after a crash
    /// appends each record once, at the offset it got the first time.
    pub fn append_once(&self, topic: &str, parts: Vec<(u32, BatchBuf)>, writer: &str, through: u64) -> Result<Appended, AppendError> {
        let bases = self.submit(topic, parts, Some((writer.to_owned(), through)))?.blocking_recv().map_err(|_| AppendError::Closed)??;
        // An append with nothing in it is still `Now`: only the mark says "before".
        Ok(match bases {
            Some(bases) => Appended::Now(bases),
            None => Appended::Before,
        })
    }

    /// How far `writer`'s appends to `topic` reached (see [`EmbeddedLog::append_once`]).
    pub fn mark(&self, topic: &str, writer: &str) -> anyhow::Result<Option<u64>> {
        self.db.with(|db| {
            let txn = db.begin_read()?;
            Ok(txn.open_table(MARKS)?.get((topic, writer))?.map(|v| v.value()))
        })
    }

    fn submit(&self, topic: &str, parts: Vec<(u32, BatchBuf)>, mark: Option<(String, u64)>) -> Result<AppendReply, AppendError> {
        let info = self.topic(topic).ok_or_else(|| AppendError::UnknownTopic(topic.to_owned()))?;
        if let Some((p, _)) = parts.iter().find(|(p, _)| *p >= info.partitions) {
            return Err(AppendError::UnknownPartition { topic: topic.to_owned(), partition: *p, partitions: info.partitions });
        }
        let (reply, wait) = tokio::sync::oneshot::channel();
        let req = AppendRequest { topic: info.name.clone(), parts, mark, reply };
        let guard = self.appender.lock().map_err(|_| AppendError::Closed)?;
        guard.as_ref().ok_or(AppendError::Closed)?.send(req).map_err(|_| AppendError::Closed)?;
        Ok(wait)
    }

    /// Stop accepting appends; those already queued are committed before this returns.
    pub fn close(&self) {
        if let Ok(mut g) = self.appender.lock() {
            g.take();
        }
        let thread = self.appender_thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
            let _ = t.join();
        }
    }

    /// The offset the next appended record of the partition will get.
    pub fn end_offset(&self, topic: &str, partition: u32) -> Option<u64> {
        let key = (self.topic(topic)?.name.clone(), partition);
        self.offsets.next.lock().ok()?.get(&key).copied()
    }

    /// Wait until anything is appended to any partition after the state `seen`
    /// (a counter this call keeps up to date), or `timeout` passes.
    pub fn wait_for_any(&self, seen: &mut u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let Ok(mut next) = self.offsets.next.lock() else { return };
        loop {
            let total: u64 = next.values().sum();
            let now = Instant::now();
            if total != *seen || now >= deadline {
                *seen = total;
                return;
            }
            match self.offsets.appended.wait_timeout(next, deadline - now) {
                Ok((g, _)) => next = g,
                Err(_) => return,
            }
        }
    }

    /// How many stored values (appended chunks) the log holds, for tests of the layout.
    #[cfg(test)]
    pub(super) fn stored_values(&self) -> u64 {
        use redb::ReadableTableMetadata;
        self.db.with(|db| Ok(db.begin_read()?.open_table(BATCHES)?.len()?)).expect("the batches table's length")
    }

    /// Read up to `max_records` records of a partition starting at `from`.
    pub fn read(&self, topic: &str, partition: u32, from: u64, max_records: usize) -> anyhow::Result<Fetched> {
        self.db.with(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(BATCHES)?;
            let mut out = Fetched { next_offset: from, ..Default::default() };
            // The batch holding `from` starts at or before it.
            let first_base = table.range((topic, partition, 0)..=(topic, partition, from))?.next_back().transpose()?.map_or(from, |(k, _)| k.value().2);
            for entry in table.range((topic, partition, first_base)..(topic, partition, u64::MAX))? {
                let (k, v) = entry?;
                let base = k.value().2;
                let bytes = v.value();
                let stored = StoredBatch::parse(bytes).map_err(|e| anyhow::anyhow!("corrupt batch at {topic}/{partition}@{base}: {e}"))?;
                if base + stored.count as u64 <= from {
                    continue;
                }
                // Retention may have removed records before `base`: continue from there.
                let start = from.max(base);
                let skip = (start - base) as usize;
                let copied = stored
                    .copy_into(skip, max_records - out.offsets.len(), &mut out.batch)
                    .map_err(|e| anyhow::anyhow!("corrupt batch at {topic}/{partition}@{base}: {e}"))?;
                out.offsets.extend(start..start + copied as u64);
                out.next_offset = start + copied as u64;
                if out.offsets.len() >= max_records {
                    break;
                }
            }
            Ok(out)
        })
    }

    /// The first offset of the partition still held (retention removes older
    /// records); the end offset when it holds none.
    pub fn start_offset(&self, topic: &str, partition: u32) -> anyhow::Result<u64> {
        let end = self.end_offset(topic, partition).unwrap_or(0);
        self.db.with(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(BATCHES)?;
            let first = table.range((topic, partition, 0)..(topic, partition, u64::MAX))?.next().transpose()?.map(|(k, _)| k.value().2);
            Ok(first.unwrap_or(end))
        })
    }

    /// The group's committed position of a partition, if it ever committed one.
    pub fn committed(&self, group: &str, topic: &str, partition: u32) -> anyhow::Result<Option<u64>> {
        self.db.with(|db| {
            let txn = db.begin_read()?;
            Ok(txn.open_table(POSITIONS)?.get((group, topic, partition))?.map(|v| v.value()))
        })
    }

    /// Keep (or replace) a consumer instance's description.
    pub fn save_member(&self, group: &str, instance: &str, description: &[u8]) -> anyhow::Result<()> {
        self.db.with(|db| {
            let txn = db.begin_write()?;
            txn.open_table(MEMBERS)?.insert((group, instance), description)?;
            txn.commit()?;
            Ok(())
        })
    }

    pub fn remove_member(&self, group: &str, instance: &str) -> anyhow::Result<()> {
        self.db.with(|db| {
            let txn = db.begin_write()?;
            txn.open_table(MEMBERS)?.remove((group, instance))?;
            txn.commit()?;
            Ok(())
        })
    }

    /// Every kept consumer instance: `(group, instance, description)`.
    pub fn members(&self) -> anyhow::Result<Vec<(String, String, Vec<u8>)>> {
        self.db.with(|db| {
            let txn = db.begin_read()?;
            let mut out = Vec::new();
            for entry in txn.open_table(MEMBERS)?.iter()? {
                let (k, v) = entry?;
                let (g, i) = k.value();
                out.push((g.to_owned(), i.to_owned(), v.value().to_vec()));
            }
            Ok(out)
        })
    }

    pub fn checkpoint(&self, group: &str, topic: &str, partition: u32) -> anyhow::Result<Checkpoint> {
        self.db.with(|db| {
            let txn = db.begin_read()?;
            let key = (group, topic, partition);
            let next_offset = txn.open_table(POSITIONS)?.get(key)?.map_or(0, |v| v.value());
            let intent = match txn.open_table(INTENTS)?.get(key)? {
                Some(v) => Some(serde_json::from_slice::<Intent>(v.value()).context("reading a stored roll intent")?),
                None => None,
            };
            Ok(Checkpoint { next_offset, intent })
        })
    }

    pub fn record_intent(&self, group: &str, topic: &str, partition: u32, intent: &Intent) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec(intent)?;
        self.db.with(|db| {
            let txn = db.begin_write()?;
            txn.open_table(INTENTS)?.insert((group, topic, partition), bytes.as_slice())?;
            txn.commit()?;
            Ok(())
        })
    }

    /// Advance the group's position and clear its intent, atomically.
    pub fn commit(&self, group: &str, topic: &str, partition: u32, next_offset: u64) -> anyhow::Result<()> {
        self.db.with(|db| {
            let txn = db.begin_write()?;
            {
                txn.open_table(POSITIONS)?.insert((group, topic, partition), next_offset)?;
                txn.open_table(INTENTS)?.remove((group, topic, partition))?;
            }
            txn.commit()?;
            Ok(())
        })
    }

    /// Set the group's positions of several partitions in one transaction (one
    /// fsync): what an HTTP consumer commits. Leaves any roll intent alone.
    pub fn commit_positions(&self, group: &str, positions: &[(&str, u32, u64)]) -> anyhow::Result<()> {
        if positions.is_empty() {
            return Ok(());
        }
        self.db.with(|db| {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(POSITIONS)?;
                for (topic, partition, next_offset) in positions {
                    table.insert((group, *topic, *partition), *next_offset)?;
                }
            }
            txn.commit()?;
            Ok(())
        })
    }

    /// Delete batches older than the retention period that every pipeline's
    /// group reading the partition has committed past (readers' groups, see
    /// [`READER_GROUP_PREFIX`], are not waited for). Returns how many batches went.
    pub fn enforce_retention(&self) -> anyhow::Result<usize> {
        let cutoff_ms = crate::clock::now_ms() - self.retention.as_millis() as i64;
        let mut removed = 0;
        self.db.with(|db| {
            let txn = db.begin_write()?;
            {
                let positions = txn.open_table(POSITIONS)?;
                let mut committed: HashMap<(String, u32), u64> = HashMap::new();
                for entry in positions.iter()? {
                    let (k, v) = entry?;
                    let (group, topic, p) = k.value();
                    if group.starts_with(READER_GROUP_PREFIX) {
                        continue;
                    }
                    let e = committed.entry((topic.to_owned(), p)).or_insert(u64::MAX);
                    *e = (*e).min(v.value());
                }
                let mut batches = txn.open_table(BATCHES)?;
                for info in self.topics() {
                    for p in 0..info.partitions {
                        let floor = committed.get(&(info.name.to_string(), p)).copied().unwrap_or(u64::MAX);
                        let mut doomed = Vec::new();
                        for entry in batches.range((&*info.name, p, 0)..(&*info.name, p, u64::MAX))? {
                            let (k, v) = entry?;
                            let base = k.value().2;
                            let stored = StoredBatch::parse(v.value()).map_err(anyhow::Error::msg)?;
                            if stored.append_ms >= cutoff_ms || base + stored.count as u64 > floor {
                                break;
                            }
                            doomed.push(base);
                        }
                        for base in doomed {
                            batches.remove((&*info.name, p, base))?;
                            removed += 1;
                        }
                    }
                }
            }
            txn.commit()?;
            Ok(removed)
        })
    }
}

/// The single writer: drains every queued append into one transaction, commits
/// it with an fsync, then answers all of them.
fn run_appender(db: &LogDb, offsets: &Offsets, rx: mpsc::Receiver<AppendRequest>) {
    let mut encoded = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        let mut bytes: usize = group[0].parts.iter().map(|(_, b)| b.byte_size()).sum();
        while bytes < GROUP_COMMIT_BYTES {
            match rx.try_recv() {
                Ok(req) => {
                    bytes += req.parts.iter().map(|(_, b)| b.byte_size()).sum::<usize>();
                    group.push(req);
                }
                Err(_) => break,
            }
        }
        // Where the partitions end is read under the database's lock: a reopen
        // (after an I/O error) reloads it from the file before anything appends.
        let result = db.with(|db| {
            let snapshot = offsets.next.lock().map_err(|_| anyhow::anyhow!("the log's offsets are poisoned"))?.clone();
            let (bases, advanced) = commit_group(db, &snapshot, &group, &mut encoded)?;
            if let Ok(mut next) = offsets.next.lock() {
                next.extend(advanced);
            }
            Ok(bases)
        });
        match result {
            Ok(bases) => {
                offsets.appended.notify_all();
                for (req, bases) in group.into_iter().zip(bases) {
                    let _ = req.reply.send(Ok(bases));
                }
            }
            Err(e) => {
                // While the database is broken each refused append would repeat the one error already logged.
                if e.downcast_ref::<Unwritable>().is_some() {
                    tracing::debug!(error = %format!("{e:#}"), "embedded log append refused; the records were not acknowledged");
                } else {
                    tracing::error!(error = %format!("{e:#}"), "embedded log append failed; the records were not acknowledged");
                }
                for req in group {
                    let _ = req.reply.send(Err(AppendError::of_failed_commit(&e)));
                }
            }
        }
    }
}

type Advanced = Vec<((Arc<str>, u32), u64)>;

fn commit_group(db: &Database, next: &HashMap<(Arc<str>, u32), u64>, group: &[AppendRequest], encoded: &mut Vec<u8>) -> anyhow::Result<(Vec<Bases>, Advanced)> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    let mut local: HashMap<(Arc<str>, u32), u64> = HashMap::new();
    let mut all_bases = Vec::with_capacity(group.len());
    let append_ms = crate::clock::now_ms();
    {
        let mut batches = txn.open_table(BATCHES)?;
        let mut next_table = txn.open_table(NEXT_OFFSETS)?;
        let mut marks = txn.open_table(MARKS)?;
        for req in group {
            let mut bases = Vec::with_capacity(req.parts.len());
            if let Some((writer, through)) = &req.mark {
                let reached = marks.get((&*req.topic, writer.as_str()))?.map(|v| v.value());
                if reached.is_some_and(|r| r >= *through) {
                    // Appended before (this is a replay): nothing stored.
                    all_bases.push(None);
                    continue;
                }
                marks.insert((&*req.topic, writer.as_str()), *through)?;
            }
            for (p, batch) in &req.parts {
                let key = (req.topic.clone(), *p);
                let base = *local.entry(key.clone()).or_insert_with(|| next.get(&key).copied().unwrap_or(0));
                let records = batch.as_ref();
                for chunk in codec::chunks(&records, codec::CHUNK_BYTES) {
                    let chunk_base = base + chunk.start as u64;
                    encoded.clear();
                    codec::encode(&records, chunk, append_ms, encoded);
                    batches.insert((&*req.topic, *p, chunk_base), encoded.as_slice())?;
                }
                let end = base + batch.len() as u64;
                local.insert(key, end);
                next_table.insert((&*req.topic, *p), end)?;
                bases.push(base);
            }
            all_bases.push(Some(bases));
        }
    }
    txn.commit()?;
    Ok((all_bases, local.into_iter().collect()))
}
