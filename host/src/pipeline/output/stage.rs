//! The output stage: what the table of a batch got (records or window rows,
//! less the rows it refused) held per input partition, written to the output
//! topic when the segment rolls.

use super::writers::TopicWriter;
use super::{OutputTopic, PendingOutput, writer};
use crate::pipeline::stage::{Flow, Roll, Stage};
use crate::position::{Intent, PartitionId};
use std::collections::{BTreeMap, BTreeSet};

pub struct OutputStage {
    pipeline: String,
    topic: Box<dyn OutputTopic>,
    pending: BTreeMap<PartitionId, PendingOutput>,
    /// Tells readers of the topic in this process when records are on their way.
    registered: TopicWriter,
    /// The partitions this worker holds.
    open: BTreeSet<PartitionId>,
}

impl OutputStage {
    pub fn new(pipeline: &str, topic: Box<dyn OutputTopic>) -> Self {
        let registered = TopicWriter::new(topic.topic());
        OutputStage { pipeline: pipeline.to_owned(), topic, pending: BTreeMap::new(), registered, open: BTreeSet::new() }
    }
}

impl Stage for OutputStage {
    fn name(&self) -> &'static str {
        "output"
    }

    /// Start over at the committed position: what was pending is read again.
    fn open(&mut self, p: &PartitionId, _committed: u64) -> anyhow::Result<()> {
        self.pending.remove(p);
        self.open.insert(p.clone());
        Ok(())
    }

    /// Hold what the table got: the window rows, or the records.
    fn process(&mut self, flow: &mut Flow<'_>) -> anyhow::Result<()> {
        let (p, partitions) = (flow.partition, self.topic.partitions());
        let input = flow.fetched.batch.as_ref();
        let misfits = std::mem::take(&mut flow.misfits);
        let pending = self.pending.entry(p.clone()).or_default();
        match &flow.windows {
            Some((rows, origins)) => pending.add(rows.as_ref(), origins, &misfits, input, p, partitions),
            None => {
                let origins = flow.origins().into_owned();
                pending.add(flow.records(), &origins, &misfits, input, p, partitions);
            }
        }
        flow.misfits = misfits;
        Ok(())
    }

    fn held_bytes(&self, p: &PartitionId) -> u64 {
        self.pending.get(p).map_or(0, |o| o.bytes() as u64)
    }

    /// Asked while the segment is still held: if this fails, the range is read again.
    fn prepare(&mut self, _p: &PartitionId, intent: &mut Intent) -> anyhow::Result<()> {
        if let Some(ends) = self.topic.ends()? {
            intent.topics_from.insert(self.topic.topic().to_owned(), ends);
        }
        Ok(())
    }

    /// Written once the objects are durable; a replay of this roll writes only what the topic lacks.
    fn land(&mut self, roll: &Roll<'_>) -> anyhow::Result<()> {
        let Some(pending) = self.pending.get_mut(roll.partition).filter(|o| !o.is_empty()) else { return Ok(()) };
        let replay_from = roll.replay_from(self.topic.topic());
        let written = self.topic.write(&writer(&self.pipeline, roll.partition), roll.intent.end, pending.take(), replay_from)?;
        roll.events.output_written(self.topic.topic(), written);
        Ok(())
    }

    fn forget(&mut self, p: &PartitionId) {
        self.pending.remove(p);
        self.open.remove(p);
    }

    /// The topic is busy while a partition holds records read but not yet rolled into it.
    fn quiet(&mut self, settled: &[&PartitionId], _reading: bool) {
        let holding = self.open.iter().any(|p| !settled.contains(&p)) || self.pending.values().any(|o| !o.is_empty());
        self.registered.set_busy(holding);
    }
}
