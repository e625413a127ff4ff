//! What an operator can change while a pipeline runs: which transform version
//! each stage uses, and whether it is paused. Shared by the pipeline's workers
//! (which pick changes up between batches) and the admin API; persisted so a
//! restart restores it.

use super::shadow::ShadowReport;
use crate::runtime::CompiledTransform;
use crate::runtime::registry::{Registry, RegistryError, VersionInfo};
use crate::sync::lock;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// When a newly activated version is judged, and how harshly.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AutoRollbackConfig {
    pub enabled: bool,
    /// Batches the new version must get through (per worker) before it is trusted.
    pub batches: u32,
    /// Above this share of its input refused, the new version is rolled back.
    pub max_rejection_rate: f64,
    /// Above this share of its input lost to traps, timeouts or the memory cap, likewise.
    pub max_trap_rate: f64,
}

impl Default for AutoRollbackConfig {
    fn default() -> Self {
        AutoRollbackConfig { enabled: true, batches: 10, max_rejection_rate: 0.5, max_trap_rate: 0.05 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("pipeline `{pipeline}` has {stages} stage(s); there is no stage {stage}")]
    NoStage { pipeline: String, stage: usize, stages: usize },
    #[error("stage {stage} runs `{expected}`; `{got}` is a different transform")]
    WrongTransform { stage: usize, expected: String, got: String },
    #[error("stage {stage} has no earlier version to roll back to")]
    NothingToRollBack { stage: usize },
    #[error("version sha256:{0} is already active")]
    AlreadyActive(String),
    #[error(
        "stage {stage} is aggregate `{name}` holding state in format `{format}`; version {version} reads only {reads}, so it cannot take the state over (refused; the running version stays)"
    )]
    StateIncompatible { stage: usize, name: String, format: String, version: String, reads: String },
    #[error(
        "stage {stage}: version {version} joins {new}, the running version {running}; a join cannot change under a running pipeline (its records are already routed): start a new pipeline"
    )]
    JoinChanged { stage: usize, version: String, running: String, new: String },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("saving the pipeline state failed: {0}")]
    Storage(String),
}

/// One swap of a stage's version, for the status page and the API.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SwapEvent {
    pub at_ms: i64,
    pub stage: usize,
    pub from: String,
    pub to: String,
    /// `activated`, `rolled back`, or `auto-rollback: <why>`.
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageStatus {
    pub stage: usize,
    pub transform: String,
    pub active: VersionInfo,
    /// Earlier versions, most recent last (what a rollback returns to).
    pub previous: Vec<String>,
}

struct Stage {
    transform: String,
    active: VersionInfo,
    compiled: Arc<CompiledTransform>,
    previous: Vec<VersionInfo>,
}

#[derive(Serialize, Deserialize, Default)]
struct Persisted {
    paused: bool,
    /// Per stage: the active content hash, then the history.
    stages: Vec<(String, Vec<String>)>,
}

struct ShadowState {
    generation: u64,
    compiled: Arc<CompiledTransform>,
    report: ShadowReport,
}

pub struct PipelineControl {
    pub name: String,
    pub auto_rollback: AutoRollbackConfig,
    registry: Arc<Registry>,
    stages: Mutex<Vec<Stage>>,
    generation: AtomicU64,
    /// The generation under probation after an activation, and its stage.
    probation: Mutex<Option<(u64, usize)>>,
    paused: AtomicBool,
    swaps: Mutex<VecDeque<SwapEvent>>,
    state_file: PathBuf,
    state_dir: PathBuf,
    shadow: Mutex<Option<ShadowState>>,
    shadow_generation: AtomicU64,
}

const SWAP_HISTORY: usize = 50;

/// An aggregate stage may only switch to a version that reads the running state.
fn check_state_handover(stage: usize, active: &VersionInfo, next: &VersionInfo) -> Result<(), ControlError> {
    let Some(format) = &active.state_format else { return Ok(()) };
    let reads = |f: &str| next.state_format.as_deref() == Some(f) || next.upgrades_from.iter().any(|u| u == f);
    if reads(format) {
        return Ok(());
    }
    let known: Vec<&str> = next.state_format.iter().map(String::as_str).chain(next.upgrades_from.iter().map(String::as_str)).collect();
    Err(ControlError::StateIncompatible {
        stage,
        name: active.name.clone(),
        format: format.clone(),
        version: next.version.clone(),
        reads: if known.is_empty() { "no state".into() } else { known.join(", ") },
    })
}

impl PipelineControl {
    /// Set up control of a pipeline running `transforms`, restoring the versions
    /// and pause state saved under `state_dir`.
    pub fn load(
        name: &str,
        transforms: &[String],
        registry: Arc<Registry>,
        auto_rollback: AutoRollbackConfig,
        state_dir: &std::path::Path,
    ) -> anyhow::Result<Arc<Self>> {
        std::fs::create_dir_all(state_dir)?;
        let state_file = state_dir.join(format!("pipeline-{name}.json"));
        let saved: Persisted = match std::fs::read(&state_file) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| anyhow::anyhow!("{}: {e}", state_file.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Persisted::default(),
            Err(e) => return Err(e.into()),
        };
        let mut stages = Vec::new();
        for (i, t) in transforms.iter().enumerate() {
            let restored = saved.stages.get(i).and_then(|(active, history)| {
                let active = registry.find(t, active).ok()?;
                let previous = history.iter().filter_map(|h| registry.find(t, h).ok()).collect();
                Some((active, previous))
            });
            let (active, previous) = match restored {
                Some(r) => r,
                None => (registry.default_version(t).map_err(|e| anyhow::anyhow!("pipeline `{name}`, stage {i}: {e}"))?, Vec::new()),
            };
            let compiled = registry.compiled(&active)?;
            stages.push(Stage { transform: t.clone(), active, compiled, previous });
        }
        Ok(Arc::new(PipelineControl {
            name: name.to_owned(),
            auto_rollback,
            registry,
            stages: Mutex::new(stages),
            generation: AtomicU64::new(1),
            probation: Mutex::new(None),
            paused: AtomicBool::new(saved.paused),
            swaps: Mutex::new(VecDeque::new()),
            state_file,
            state_dir: state_dir.to_owned(),
            shadow: Mutex::new(None),
            shadow_generation: AtomicU64::new(0),
        }))
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Where the pipeline keeps its durable state (aggregate checkpoints live under it).
    pub fn state_dir(&self) -> &std::path::Path {
        &self.state_dir
    }

    /// Changes whenever a stage's version changes; workers compare it between batches.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// The generation a worker must judge (auto-rollback) and the stage that
    /// changed, if the current generation is on probation.
    pub fn on_probation(&self) -> Option<(u64, usize)> {
        let p = *lock(&self.probation);
        p.filter(|(g, _)| *g == self.generation())
    }

    /// The current chain and its generation.
    pub fn chain(&self) -> (u64, Vec<Arc<CompiledTransform>>) {
        let stages = lock(&self.stages);
        (self.generation(), stages.iter().map(|s| s.compiled.clone()).collect())
    }

    pub fn stage_count(&self) -> usize {
        lock(&self.stages).len()
    }

    pub fn status(&self) -> Vec<StageStatus> {
        let stages = lock(&self.stages);
        stages
            .iter()
            .enumerate()
            .map(|(i, s)| StageStatus {
                stage: i,
                transform: s.transform.clone(),
                active: s.active.clone(),
                previous: s.previous.iter().map(|v| v.content_hash.clone()).collect(),
            })
            .collect()
    }

    pub fn swaps(&self) -> Vec<SwapEvent> {
        lock(&self.swaps).iter().cloned().collect()
    }

    /// Make `what` (a version string or content hash of the stage's transform) active.
    pub fn activate(&self, stage: usize, transform: Option<&str>, what: &str) -> Result<SwapEvent, ControlError> {
        let mut stages = lock(&self.stages);
        let count = stages.len();
        let s = stages.get_mut(stage).ok_or(ControlError::NoStage { pipeline: self.name.clone(), stage, stages: count })?;
        if let Some(t) = transform.filter(|t| *t != s.transform) {
            return Err(ControlError::WrongTransform { stage, expected: s.transform.clone(), got: t.to_owned() });
        }
        let v = self.registry.find(&s.transform, what)?;
        if v.content_hash == s.active.content_hash {
            return Err(ControlError::AlreadyActive(v.content_hash));
        }
        check_state_handover(stage, &s.active, &v)?;
        let compiled = self.registry.compiled(&v)?;
        if compiled.sql_join() != s.compiled.sql_join() {
            let describe = |j: Option<&crate::runtime::sql::JoinSpec>| {
                j.map_or("nothing".to_owned(), |j| j.sides.iter().map(|s| format!("{} on {}", s.topic, s.key)).collect::<Vec<_>>().join(" + "))
            };
            return Err(ControlError::JoinChanged {
                stage,
                version: v.version.clone(),
                running: describe(s.compiled.sql_join()),
                new: describe(compiled.sql_join()),
            });
        }
        let old = std::mem::replace(&mut s.active, v);
        s.previous.push(old.clone());
        s.compiled = compiled;
        let event = self.record_swap(&mut stages, stage, &old, "activated")?;
        // Bump after the chain changed, so a worker seeing the new number sees the new chain.
        let g = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        if self.auto_rollback.enabled {
            *lock(&self.probation) = Some((g, stage));
        }
        Ok(event)
    }

    /// Return a stage to its previous version. With `only_if_generation`, do it
    /// only if nothing changed since that generation (an automatic rollback must
    /// not undo a newer operator decision).
    pub fn rollback(&self, stage: usize, reason: &str, only_if_generation: Option<u64>) -> Result<Option<SwapEvent>, ControlError> {
        self.rollback_counted(stage, reason, only_if_generation, || {})
    }

    /// [`Self::rollback`], calling `counted` once the rollback is done but
    /// before anyone can see the stage's new version, so a reader who sees the
    /// old version back also sees whatever `counted` recorded.
    pub fn rollback_counted(
        &self,
        stage: usize,
        reason: &str,
        only_if_generation: Option<u64>,
        counted: impl FnOnce(),
    ) -> Result<Option<SwapEvent>, ControlError> {
        let mut stages = lock(&self.stages);
        if only_if_generation.is_some_and(|g| g != self.generation()) {
            return Ok(None);
        }
        let count = stages.len();
        let s = stages.get_mut(stage).ok_or(ControlError::NoStage { pipeline: self.name.clone(), stage, stages: count })?;
        let back = s.previous.last().cloned().ok_or(ControlError::NothingToRollBack { stage })?;
        check_state_handover(stage, &s.active, &back)?;
        let compiled = self.registry.compiled(&back)?;
        s.previous.pop();
        let old = std::mem::replace(&mut s.active, back);
        s.compiled = compiled;
        let event = self.record_swap(&mut stages, stage, &old, reason)?;
        *lock(&self.probation) = None;
        self.generation.fetch_add(1, Ordering::SeqCst);
        counted();
        drop(stages);
        Ok(Some(event))
    }

    /// The probation of `generation` is over and it passed.
    pub fn trust(&self, generation: u64) {
        let mut p = lock(&self.probation);
        if p.is_some_and(|(g, _)| g == generation) {
            *p = None;
        }
    }

    fn record_swap(&self, stages: &mut [Stage], stage: usize, old: &VersionInfo, reason: &str) -> Result<SwapEvent, ControlError> {
        self.save(stages)?;
        let s = &stages[stage];
        let event = SwapEvent {
            at_ms: crate::clock::now_ms(),
            stage,
            from: format!("{}@{} sha256:{}", old.name, old.version, &old.content_hash[..12]),
            to: format!("{}@{} sha256:{}", s.active.name, s.active.version, &s.active.content_hash[..12]),
            reason: reason.to_owned(),
        };
        tracing::warn!(pipeline = %self.name, stage, from = %event.from, to = %event.to, reason, "transform version swapped");
        let label = if reason.starts_with("auto-rollback") {
            "auto_rollback"
        } else if reason == "activated" {
            "activated"
        } else {
            "rolled_back"
        };
        crate::telemetry::metrics().transform_swaps.with_label_values(&[&self.name, &stage.to_string(), label]).inc();
        let mut swaps = lock(&self.swaps);
        swaps.push_back(event.clone());
        while swaps.len() > SWAP_HISTORY {
            swaps.pop_front();
        }
        Ok(event)
    }

    /// Start a shadow run of `what` (a version of the stage's transform) on a
    /// copy of the stage's live batches, replacing any shadow run in progress.
    pub fn start_shadow(&self, stage: usize, what: &str) -> Result<ShadowReport, ControlError> {
        let (transform, active) = {
            let stages = lock(&self.stages);
            let s = stages.get(stage).ok_or(ControlError::NoStage { pipeline: self.name.clone(), stage, stages: stages.len() })?;
            (s.transform.clone(), s.active.clone())
        };
        let candidate = self.registry.find(&transform, what)?;
        if candidate.content_hash == active.content_hash {
            return Err(ControlError::AlreadyActive(candidate.content_hash));
        }
        let compiled = self.registry.compiled(&candidate)?;
        let generation = self.shadow_generation.fetch_add(1, Ordering::SeqCst) + 1;
        let report = ShadowReport { stage, candidate: Some(candidate), active: Some(active), started_at_ms: crate::clock::now_ms(), ..Default::default() };
        *lock(&self.shadow) = Some(ShadowState { generation, compiled, report: report.clone() });
        tracing::info!(pipeline = %self.name, stage, "shadow run started");
        Ok(report)
    }

    /// The shadow run's report so far.
    pub fn shadow_report(&self) -> Option<ShadowReport> {
        lock(&self.shadow).as_ref().map(|s| s.report.clone())
    }

    /// Stop the shadow run; returns its final report.
    pub fn stop_shadow(&self) -> Option<ShadowReport> {
        self.shadow_generation.fetch_add(1, Ordering::SeqCst);
        lock(&self.shadow).take().map(|s| s.report)
    }

    /// What workers should shadow: `(generation, stage, candidate)`.
    pub fn shadow_target(&self) -> Option<(u64, usize, Arc<CompiledTransform>)> {
        lock(&self.shadow).as_ref().map(|s| (s.generation, s.report.stage, s.compiled.clone()))
    }

    /// Changes whenever a shadow run starts or stops.
    pub fn shadow_generation(&self) -> u64 {
        self.shadow_generation.load(Ordering::SeqCst)
    }

    /// Add a worker's comparisons to the report of shadow run `generation`.
    pub fn add_shadow_results(&self, generation: u64, part: &ShadowReport) {
        let mut guard = lock(&self.shadow);
        let Some(s) = guard.as_mut().filter(|s| s.generation == generation) else { return };
        let r = &mut s.report;
        r.batches += part.batches;
        r.records += part.records;
        r.same += part.same;
        r.different += part.different;
        r.only_candidate_refused += part.only_candidate_refused;
        r.only_active_refused += part.only_active_refused;
        r.both_refused += part.both_refused;
        let room = 20usize.saturating_sub(r.examples.len());
        r.examples.extend(part.examples.iter().take(room).cloned());
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// Pause or resume; returns whether anything changed.
    pub fn set_paused(&self, paused: bool) -> Result<bool, ControlError> {
        let changed = self.paused.swap(paused, Ordering::SeqCst) != paused;
        if changed {
            let stages = lock(&self.stages);
            self.save(&stages)?;
        }
        Ok(changed)
    }

    fn save(&self, stages: &[Stage]) -> Result<(), ControlError> {
        let p = Persisted {
            paused: self.is_paused(),
            stages: stages.iter().map(|s| (s.active.content_hash.clone(), s.previous.iter().map(|v| v.content_hash.clone()).collect())).collect(),
        };
        let bytes = serde_json::to_vec_pretty(&p).map_err(|e| ControlError::Storage(e.to_string()))?;
        crate::store::write_atomically(&self.state_file, &bytes).map_err(|e| ControlError::Storage(e.to_string()))
    }
}
