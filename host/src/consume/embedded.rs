//! Consumer groups over the embedded log. Instances of a group share the
//! partitions of the topics they subscribe to (each partition read by one
//! instance, round-robin by instance name); committed offsets live in the
//! log beside the pipelines' positions, under `http:<group>`, and instance
//! descriptions are kept in the log too, so both outlive a restart.

use super::Groups;
use super::error::ConsumeError;
use super::wire::{CommittedOffset, InstanceSettings, PartitionOffset, ReadRecord, Reset, Subscribe, TopicPartition};
use crate::log::{EmbeddedLog, READER_GROUP_PREFIX};
use crate::sync::lock;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest number of records one read takes from one partition per pass.
const READ_CHUNK: usize = 2000;

/// What is kept of an instance across restarts.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Kept {
    settings: InstanceSettings,
    topics: Vec<String>,
    pattern: Option<String>,
    /// Partitions given by `POST …/assignments`: this instance reads exactly
    /// these and takes no part in sharing the group's subscriptions.
    assigned: Option<Vec<TopicPartition>>,
}

struct Member {
    kept: Kept,
    last_used: Instant,
    /// Next offset to read, per partition this instance has read or sought.
    positions: BTreeMap<TopicPartition, u64>,
    /// What its auto commits last committed, so a read that moved nothing commits nothing.
    auto_committed: BTreeMap<TopicPartition, u64>,
}

pub struct EmbeddedGroups {
    log: Arc<EmbeddedLog>,
    idle: Duration,
    groups: Mutex<BTreeMap<String, BTreeMap<String, Member>>>,
}

/// The key committed offsets are kept under, apart from the pipelines' groups
/// (and, like Kafka consumers, not holding back the log's retention).
fn offsets_key(group: &str) -> String {
    format!("{READER_GROUP_PREFIX}{group}")
}

impl EmbeddedGroups {
    /// Load the instances kept by an earlier run.
    pub fn open(log: Arc<EmbeddedLog>, idle: Duration) -> anyhow::Result<Self> {
        let mut groups: BTreeMap<String, BTreeMap<String, Member>> = BTreeMap::new();
        for (group, instance, bytes) in log.members()? {
            match serde_json::from_slice::<Kept>(&bytes) {
                Ok(kept) => {
                    groups
                        .entry(group)
                        .or_default()
                        .insert(instance, Member { kept, last_used: Instant::now(), positions: BTreeMap::new(), auto_committed: BTreeMap::new() });
                }
                Err(e) => tracing::warn!(group, instance, error = %e, "dropping a kept consumer instance that cannot be read"),
            }
        }
        Ok(EmbeddedGroups { log, idle, groups: Mutex::new(groups) })
    }

    fn save(&self, group: &str, instance: &str, kept: &Kept) -> Result<(), ConsumeError> {
        let bytes = serde_json::to_vec(kept).map_err(|e| ConsumeError::Storage(e.to_string()))?;
        Ok(self.log.save_member(group, instance, &bytes)?)
    }

    fn not_found(&self, group: &str, instance: &str) -> ConsumeError {
        ConsumeError::NoInstance { group: group.to_owned(), instance: instance.to_owned(), idle_s: self.idle.as_secs() }
    }

    /// Run `f` on the instance, marking it used.
    fn with_member<T>(&self, group: &str, instance: &str, f: impl FnOnce(&mut Member) -> Result<T, ConsumeError>) -> Result<T, ConsumeError> {
        let mut groups = lock(&self.groups);
        let m = groups.get_mut(group).and_then(|g| g.get_mut(instance)).ok_or_else(|| self.not_found(group, instance))?;
        m.last_used = Instant::now();
        f(m)
    }

    fn check_partition(&self, tp: &TopicPartition) -> Result<(), ConsumeError> {
        let info = self.log.topic(&tp.topic).ok_or_else(|| ConsumeError::UnknownTopic(tp.topic.clone()))?;
        if tp.partition >= info.partitions {
            return Err(ConsumeError::UnknownPartition { topic: tp.topic.clone(), partition: tp.partition, partitions: info.partitions });
        }
        Ok(())
    }

    /// The topics of the log a subscription names.
    fn subscribed_topics(&self, kept: &Kept) -> Vec<String> {
        match &kept.pattern {
            Some(p) => match regex::Regex::new(&format!("^(?:{p})$")) {
                Ok(re) => {
                    let mut t: Vec<String> = self.log.topics().into_iter().map(|t| t.name.to_string()).filter(|n| re.is_match(n)).collect();
                    t.sort();
                    t
                }
                Err(_) => Vec::new(),
            },
            None => kept.topics.clone(),
        }
    }

    /// Which partitions each instance of the group reads now.
    fn ownership(&self, members: &BTreeMap<String, Member>) -> BTreeMap<String, Vec<TopicPartition>> {
        let mut owned: BTreeMap<String, Vec<TopicPartition>> = BTreeMap::new();
        let mut by_topic: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for (name, m) in members {
            match &m.kept.assigned {
                Some(parts) => {
                    owned.insert(name.clone(), parts.clone());
                }
                None => {
                    for t in self.subscribed_topics(&m.kept) {
                        by_topic.entry(t).or_default().push(name);
                    }
                }
            }
        }
        for (topic, readers) in by_topic {
            let partitions = self.log.topic(&topic).map_or(0, |t| t.partitions);
            for p in 0..partitions {
                let reader = readers[p as usize % readers.len()];
                owned.entry(reader.to_owned()).or_default().push(TopicPartition { topic: topic.clone(), partition: p });
            }
        }
        owned
    }

    fn owned_by(&self, group: &str, instance: &str) -> Result<Vec<TopicPartition>, ConsumeError> {
        let groups = lock(&self.groups);
        let members = groups.get(group).ok_or_else(|| self.not_found(group, instance))?;
        if !members.contains_key(instance) {
            return Err(self.not_found(group, instance));
        }
        Ok(self.ownership(members).remove(instance).unwrap_or_default())
    }

    /// Where the instance reads `tp` next: its own position, else the group's
    /// committed offset, else where `auto.offset.reset` says.
    fn start_of(&self, group: &str, tp: &TopicPartition, reset: Reset) -> Result<u64, ConsumeError> {
        if let Some(o) = self.log.committed(&offsets_key(group), &tp.topic, tp.partition)? {
            return Ok(o);
        }
        match reset {
            Reset::Earliest => Ok(self.log.start_offset(&tp.topic, tp.partition)?),
            Reset::Latest => Ok(self.log.end_offset(&tp.topic, tp.partition).unwrap_or(0)),
            Reset::None => Err(ConsumeError::IllegalState(format!(
                "the group has no committed offset for {}/{} and auto.offset.reset is none: seek with POST …/positions first",
                tp.topic, tp.partition
            ))),
        }
    }

    fn commit_positions(&self, group: &str, positions: &[(TopicPartition, u64)]) -> Result<(), ConsumeError> {
        let all: Vec<(&str, u32, u64)> = positions.iter().map(|(tp, next)| (tp.topic.as_str(), tp.partition, *next)).collect();
        Ok(self.log.commit_positions(&offsets_key(group), &all)?)
    }

    /// The instance's positions of the partitions it owns; positions of
    /// partitions it lost are forgotten (after committing them, with auto commit).
    fn positions(&self, group: &str, instance: &str, owned: &[TopicPartition]) -> Result<(InstanceSettings, Vec<(TopicPartition, u64)>), ConsumeError> {
        let (settings, lost, known) = self.with_member(group, instance, |m| {
            let lost: Vec<(TopicPartition, u64)> = m.positions.iter().filter(|(tp, _)| !owned.contains(tp)).map(|(tp, o)| (tp.clone(), *o)).collect();
            for (tp, _) in &lost {
                m.positions.remove(tp);
            }
            Ok((m.kept.settings.clone(), lost, m.positions.clone()))
        })?;
        if settings.auto_commit {
            self.commit_positions(group, &lost)?;
        }
        let mut out = Vec::with_capacity(owned.len());
        for tp in owned {
            let at = match known.get(tp) {
                Some(o) => *o,
                None => self.start_of(group, tp, settings.reset)?,
            };
            out.push((tp.clone(), at));
        }
        Ok((settings, out))
    }
}

impl Groups for EmbeddedGroups {
    fn create(&self, group: &str, instance: &str, settings: InstanceSettings) -> Result<(), ConsumeError> {
        let kept = Kept { settings, topics: Vec::new(), pattern: None, assigned: None };
        {
            let mut groups = lock(&self.groups);
            let members = groups.entry(group.to_owned()).or_default();
            if members.contains_key(instance) {
                return Err(ConsumeError::InstanceExists(instance.to_owned()));
            }
            members.insert(
                instance.to_owned(),
                Member { kept: kept.clone(), last_used: Instant::now(), positions: BTreeMap::new(), auto_committed: BTreeMap::new() },
            );
        }
        self.save(group, instance, &kept)
    }

    fn delete(&self, group: &str, instance: &str) -> Result<(), ConsumeError> {
        let member = {
            let mut groups = lock(&self.groups);
            let members = groups.get_mut(group).ok_or_else(|| self.not_found(group, instance))?;
            let m = members.remove(instance).ok_or_else(|| self.not_found(group, instance))?;
            if members.is_empty() {
                groups.remove(group);
            }
            m
        };
        // Closing a consumer with auto commit commits what it read.
        if member.kept.settings.auto_commit {
            let read: Vec<(TopicPartition, u64)> = member.positions.into_iter().collect();
            self.commit_positions(group, &read)?;
        }
        Ok(self.log.remove_member(group, instance)?)
    }

    fn settings(&self, group: &str, instance: &str) -> Result<InstanceSettings, ConsumeError> {
        self.with_member(group, instance, |m| Ok(m.kept.settings.clone()))
    }

    fn subscribe(&self, group: &str, instance: &str, to: Subscribe) -> Result<(), ConsumeError> {
        let (topics, pattern) = match (to.topics, to.topic_pattern) {
            (Some(t), None) if !t.is_empty() => (t, None),
            (None, Some(p)) => {
                regex::Regex::new(&p).map_err(|e| ConsumeError::bad_body(format!("topic_pattern is not a regular expression: {e}")))?;
                (Vec::new(), Some(p))
            }
            _ => return Err(ConsumeError::bad_body("give either `topics` (a non-empty list) or `topic_pattern`, not both")),
        };
        for t in &topics {
            if self.log.topic(t).is_none() {
                return Err(ConsumeError::UnknownTopic(t.clone()));
            }
        }
        let kept = self.with_member(group, instance, |m| {
            if m.kept.assigned.is_some() {
                return Err(ConsumeError::IllegalState("this instance has partitions assigned by hand; it cannot also subscribe".into()));
            }
            m.kept.topics = topics;
            m.kept.pattern = pattern;
            Ok(m.kept.clone())
        })?;
        self.save(group, instance, &kept)
    }

    fn subscription(&self, group: &str, instance: &str) -> Result<Vec<String>, ConsumeError> {
        let kept = self.with_member(group, instance, |m| Ok(m.kept.clone()))?;
        Ok(self.subscribed_topics(&kept))
    }

    fn unsubscribe(&self, group: &str, instance: &str) -> Result<(), ConsumeError> {
        let kept = self.with_member(group, instance, |m| {
            m.kept.topics.clear();
            m.kept.pattern = None;
            m.kept.assigned = None;
            m.positions.clear();
            Ok(m.kept.clone())
        })?;
        self.save(group, instance, &kept)
    }

    fn assign(&self, group: &str, instance: &str, parts: Vec<TopicPartition>) -> Result<(), ConsumeError> {
        parts.iter().try_for_each(|tp| self.check_partition(tp))?;
        let kept = self.with_member(group, instance, |m| {
            if !m.kept.topics.is_empty() || m.kept.pattern.is_some() {
                return Err(ConsumeError::IllegalState("this instance subscribed to topics; it cannot also take partitions by hand".into()));
            }
            m.kept.assigned = Some(parts);
            Ok(m.kept.clone())
        })?;
        self.save(group, instance, &kept)
    }

    fn assignments(&self, group: &str, instance: &str) -> Result<Vec<TopicPartition>, ConsumeError> {
        self.with_member(group, instance, |_| Ok(()))?;
        self.owned_by(group, instance)
    }

    fn read(&self, group: &str, instance: &str, timeout: Duration, max_bytes: usize) -> Result<Vec<ReadRecord>, ConsumeError> {
        let owned = self.owned_by(group, instance)?;
        let subscribed = self.with_member(group, instance, |m| Ok(m.kept.assigned.is_some() || !m.kept.topics.is_empty() || m.kept.pattern.is_some()))?;
        if !subscribed {
            return Err(ConsumeError::IllegalState("the instance is not subscribed to any topic nor assigned any partition".into()));
        }
        let (settings, mut positions) = self.positions(group, instance, &owned)?;
        if settings.auto_commit {
            // As a Kafka consumer does on each poll: what the last read returned is committed now.
            let moved =
                self.with_member(group, instance, |m| Ok(positions.iter().filter(|(tp, o)| m.auto_committed.get(tp) != Some(o)).cloned().collect::<Vec<_>>()))?;
            self.commit_positions(group, &moved)?;
            self.with_member(group, instance, |m| {
                m.auto_committed.extend(moved);
                Ok(())
            })?;
        }
        let deadline = Instant::now() + timeout;
        let mut seen = 0;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        loop {
            for (tp, at) in positions.iter_mut() {
                if bytes >= max_bytes {
                    break;
                }
                let fetched = self.log.read(&tp.topic, tp.partition, *at, READ_CHUNK)?;
                let batch = fetched.batch.as_ref();
                for (i, r) in batch.iter().enumerate() {
                    if bytes >= max_bytes && !out.is_empty() {
                        break;
                    }
                    bytes += r.value.len() + r.key.len();
                    out.push(ReadRecord {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                        offset: fetched.offsets[i],
                        key: r.key.to_vec(),
                        value: r.value.to_vec(),
                    });
                    *at = fetched.offsets[i] + 1;
                }
                if fetched.offsets.is_empty() {
                    *at = (*at).max(fetched.next_offset);
                }
            }
            let now = Instant::now();
            if !out.is_empty() || now >= deadline {
                break;
            }
            self.log.wait_for_any(&mut seen, (deadline - now).min(Duration::from_millis(200)));
        }
        self.with_member(group, instance, |m| {
            m.positions.extend(positions);
            Ok(())
        })?;
        Ok(out)
    }

    fn commit(&self, group: &str, instance: &str, offsets: Option<Vec<PartitionOffset>>) -> Result<(), ConsumeError> {
        let to_commit: Vec<(TopicPartition, u64)> = match offsets {
            // The offset given is that of the last record processed: the group resumes after it.
            Some(list) => {
                let list: Vec<(TopicPartition, u64)> =
                    list.into_iter().map(|o| (TopicPartition { topic: o.topic, partition: o.partition }, o.offset + 1)).collect();
                list.iter().try_for_each(|(tp, _)| self.check_partition(tp))?;
                // The next auto commit commits its positions again, whatever it committed before.
                self.with_member(group, instance, |m| {
                    m.auto_committed.clear();
                    Ok(())
                })?;
                list
            }
            None => self.with_member(group, instance, |m| Ok(m.positions.iter().map(|(tp, o)| (tp.clone(), *o)).collect()))?,
        };
        self.commit_positions(group, &to_commit)
    }

    fn committed(&self, group: &str, instance: &str, parts: Vec<TopicPartition>) -> Result<Vec<CommittedOffset>, ConsumeError> {
        self.with_member(group, instance, |_| Ok(()))?;
        let mut out = Vec::new();
        for tp in parts {
            self.check_partition(&tp)?;
            if let Some(offset) = self.log.committed(&offsets_key(group), &tp.topic, tp.partition)? {
                out.push(CommittedOffset { topic: tp.topic, partition: tp.partition, offset, metadata: String::new() });
            }
        }
        Ok(out)
    }

    fn seek(&self, group: &str, instance: &str, offsets: Vec<PartitionOffset>) -> Result<(), ConsumeError> {
        let owned: BTreeSet<TopicPartition> = self.owned_by(group, instance)?.into_iter().collect();
        let mut to = Vec::with_capacity(offsets.len());
        for o in offsets {
            let tp = TopicPartition { topic: o.topic, partition: o.partition };
            self.check_partition(&tp)?;
            if !owned.contains(&tp) {
                return Err(ConsumeError::IllegalState(format!("partition {}/{} is not assigned to this instance", tp.topic, tp.partition)));
            }
            to.push((tp, o.offset));
        }
        self.with_member(group, instance, |m| {
            m.positions.extend(to);
            Ok(())
        })
    }

    fn seek_to(&self, group: &str, instance: &str, parts: Vec<TopicPartition>, end: bool) -> Result<(), ConsumeError> {
        let mut offsets = Vec::with_capacity(parts.len());
        for tp in parts {
            self.check_partition(&tp)?;
            let offset = if end { self.log.end_offset(&tp.topic, tp.partition).unwrap_or(0) } else { self.log.start_offset(&tp.topic, tp.partition)? };
            offsets.push(PartitionOffset { topic: tp.topic, partition: tp.partition, offset, metadata: None });
        }
        self.seek(group, instance, offsets)
    }

    fn expire(&self) -> Vec<(String, String)> {
        let idle = self.idle;
        let expired: Vec<(String, String)> = lock(&self.groups)
            .iter()
            .flat_map(|(g, members)| members.iter().filter(|(_, m)| m.last_used.elapsed() > idle).map(move |(i, _)| (g.clone(), i.clone())))
            .collect();
        for (g, i) in &expired {
            if let Err(e) = self.delete(g, i) {
                tracing::warn!(group = %g, instance = %i, error = %e, "could not remove an idle consumer instance");
            }
        }
        expired
    }
}
