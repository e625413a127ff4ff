//! The actions as a stage of the worker: detected with each batch,
//! delivered in the background, landed (refused or given up on: dead
//! letters) before the partition reads on; the window actions' previous rows
//! snapshotted with each roll.

use super::webhook::{Delivery, Outcome};
use super::{ActionInput, ActionStage, GAVE_UP, Groups, REFUSED};
use crate::pipeline::stage::{Flow, Landing, Roll, Settled, Stage};
use crate::position::PartitionId;
use crate::sink::DeadLetter;
use crate::telemetry::metrics;

/// One action's requests of one batch, on their way.
pub(super) struct InFlight {
    pub(super) action: usize,
    pub(super) delivery: Delivery,
    /// Per request, the dead letter each action it carries becomes if the
    /// request is refused or given up on (kind and reason filled in then).
    pub(super) letters: Vec<Vec<(String, DeadLetter)>>,
}

impl ActionStage {
    /// The outcomes of finished deliveries as dead letters (refused, given
    /// up on); an error when the worker stopped before every action was acknowledged.
    fn outcomes(&self, done: Vec<InFlight>) -> anyhow::Result<Vec<DeadLetter>> {
        let mut dead = Vec::new();
        let mut stopped = None;
        for flight in done {
            let a = &self.actions[flight.action];
            for (outcome, letters) in flight.delivery.outcomes().into_iter().zip(flight.letters) {
                let (kind, reason) = match outcome {
                    Outcome::Delivered { .. } => continue,
                    Outcome::Stopped => {
                        stopped = Some(a.config.name.clone());
                        continue;
                    }
                    Outcome::Refused { status, body } => (REFUSED, format!("the webhook refused the action with HTTP {status}: {body}")),
                    Outcome::GaveUp { attempts, last } => (GAVE_UP, format!("gave up after {attempts} attempts over give_up_after_ms: {last}")),
                };
                let label = if kind == REFUSED { "refused" } else { "gave_up" };
                metrics().action_failed.with_label_values(&[&self.pipeline, &a.config.name, label]).inc_by(letters.len() as u64);
                for (key, mut d) in letters {
                    a.stats.dead_lettered(&reason);
                    d.kind = kind.to_owned();
                    d.reason = format!("{reason} (Idempotency-Key {key})");
                    dead.push(d);
                }
            }
        }
        if let Some(action) = stopped {
            anyhow::bail!(
                "stopping before the webhook of action `{action}` acknowledged every action of the batch; they are delivered again (same Idempotency-Key) after the restart"
            );
        }
        Ok(dead)
    }
}

impl Stage for ActionStage {
    fn name(&self) -> &'static str {
        "actions"
    }

    /// Load each window action's previous rows of `p` as of `committed`.
    fn open(&mut self, p: &PartitionId, committed: u64) -> anyhow::Result<()> {
        if let Some(flights) = self.in_flight.remove(p) {
            // Rewound with deliveries on their way: they are delivered again with the same keys.
            drop(flights);
        }
        for a in self.actions.iter_mut().filter(|a| a.input == ActionInput::Windows) {
            let groups = a.snapshots.load::<Groups>(p, committed)?.map(|(_, g)| g).unwrap_or_default();
            a.previous.insert(p.clone(), groups);
        }
        Ok(())
    }

    fn process(&mut self, flow: &mut Flow<'_>) -> anyhow::Result<()> {
        let started = self.detect(flow);
        if !started.is_empty() {
            self.in_flight.insert(flow.partition.clone(), started);
        }
        // The detectors' refusals land with the batch.
        let late = std::mem::take(&mut flow.late);
        flow.landing.dead_letters(&late)?;
        Ok(())
    }

    /// Done once every delivery of the partition's last batch is: their dead letters land then.
    fn settle(&mut self, p: &PartitionId, landing: &mut Landing<'_>) -> anyhow::Result<Settled> {
        let Some(flights) = self.in_flight.get(p) else { return Ok(Settled::Done) };
        if !flights.iter().all(|f| f.delivery.is_finished()) {
            return Ok(Settled::Busy);
        }
        let done = self.in_flight.remove(p).unwrap_or_default();
        let dead = self.outcomes(done)?;
        landing.dead_letters(&dead)?;
        Ok(Settled::Done)
    }

    /// Save the previous rows of `p` as of the roll's end (before it is committed).
    fn land(&mut self, roll: &Roll<'_>) -> anyhow::Result<()> {
        for a in self.actions.iter().filter(|a| a.input == ActionInput::Windows) {
            let empty = Groups::new();
            a.snapshots.save(roll.partition, roll.intent.end, a.previous.get(roll.partition).unwrap_or(&empty))?;
        }
        Ok(())
    }

    /// `offset` of `p` is committed: older snapshots can go.
    fn committed(&mut self, p: &PartitionId, offset: u64) -> anyhow::Result<()> {
        for a in self.actions.iter().filter(|a| a.input == ActionInput::Windows) {
            a.snapshots.prune(p, offset).map_err(|e| e.context("deleting old action snapshots (they are ignored)"))?;
        }
        Ok(())
    }

    fn forget(&mut self, p: &PartitionId) {
        self.in_flight.remove(p);
        for a in &mut self.actions {
            a.previous.remove(p);
        }
    }
}
