//! Who owns the running pipelines, and the handle through which they are seen.

use super::{PipelineConfig, PipelineControl, PipelineStats};
use crate::sink::SegmentSpec;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Why a pipeline could not be created, replaced or deleted. The admin API
/// turns each kind into its HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error("{0}")]
    NotFound(String),
    /// The request clashes with what exists (a name taken, a pipeline of the config file).
    #[error("{0}")]
    Conflict(String),
    /// The definition is wrong; the message says what to change.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Internal(String),
}

impl From<std::io::Error> for ManageError {
    fn from(e: std::io::Error) -> Self {
        ManageError::Internal(format!("storage: {e}"))
    }
}

impl From<anyhow::Error> for ManageError {
    fn from(e: anyhow::Error) -> Self {
        ManageError::Internal(format!("{e:#}"))
    }
}

/// A running pipeline: its definition, its controls and its counts.
#[derive(Clone)]
pub struct PipelineHandle {
    pub config: PipelineConfig,
    pub control: Arc<PipelineControl>,
    pub stats: Arc<PipelineStats>,
    pub spec: SegmentSpec,
}

/// The one owner of the running pipelines: the admin API, jobs and the
/// appliance start, replace, delete and look them up through it. The appliance
/// implements it (`app::Launcher`, which builds sources from the config).
pub trait PipelineManager: Send + Sync {
    fn list(&self) -> Vec<(String, PipelineHandle)>;
    fn get(&self, name: &str) -> Option<PipelineHandle>;
    /// Create and start a pipeline; it is kept so it survives restarts.
    fn create(&self, config: PipelineConfig) -> Result<PipelineHandle, ManageError>;
    /// Replace a pipeline's definition: the old one lands what it holds and
    /// stops, the new one starts from the same committed positions.
    fn replace(&self, config: PipelineConfig) -> Result<PipelineHandle, ManageError>;
    /// Stop and forget a pipeline. What it landed, and its positions, stay.
    fn delete(&self, name: &str) -> Result<(), ManageError>;
}

/// A fixed set of pipelines (tests, embedding): nothing can be added or removed.
pub struct FixedPipelines(pub BTreeMap<String, PipelineHandle>);

impl PipelineManager for FixedPipelines {
    fn list(&self) -> Vec<(String, PipelineHandle)> {
        self.0.iter().map(|(n, h)| (n.clone(), h.clone())).collect()
    }
    fn get(&self, name: &str) -> Option<PipelineHandle> {
        self.0.get(name).cloned()
    }
    fn create(&self, _: PipelineConfig) -> Result<PipelineHandle, ManageError> {
        Err(ManageError::Conflict("this instance's pipelines are fixed".into()))
    }
    fn replace(&self, _: PipelineConfig) -> Result<PipelineHandle, ManageError> {
        Err(ManageError::Conflict("this instance's pipelines are fixed".into()))
    }
    fn delete(&self, _: &str) -> Result<(), ManageError> {
        Err(ManageError::Conflict("this instance's pipelines are fixed".into()))
    }
}
