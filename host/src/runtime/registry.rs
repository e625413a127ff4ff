//! Every version of every transform: the built-ins, and components operators
//! uploaded, kept under `<data_dir>/transforms/<name>/` so they survive restarts.
//!
//! An upload is accepted only if it compiles, implements the world, describes
//! itself under the name it was uploaded as, and passes the golden samples
//! stored for that name.

use super::builtin::BUILTINS;
use super::compiled::{CompiledTransform, ComponentKind, LoadError};
use super::engine::Runtime;
use crate::store::write_atomically;
use crate::sync::lock;
use serde::{Deserialize, Serialize};
use sluice_guest::BatchBuf;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use super::limits::MAX_COMPONENT_BYTES;

/// One version of a transform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub name: String,
    /// What the component's `describe()` says.
    pub version: String,
    pub content_hash: String,
    pub size_bytes: usize,
    pub input_kind: String,
    pub output_kind: String,
    /// Milliseconds since the epoch; 0 for built-ins.
    pub uploaded_at_ms: i64,
    pub builtin: bool,
    /// `transform` or `aggregate`.
    #[serde(default)]
    pub kind: ComponentKind,
    /// The contract version it speaks: `0.1.0` (JSON records) or `0.2.0` (typed columns).
    #[serde(default)]
    pub contract: super::Contract,
    /// 0.2.0 transforms: the columns they write (`name type`, in order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<String>,
    /// Aggregates: the layout of their state bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_format: Option<String>,
    /// Aggregates: older state formats their `upgrade` reads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upgrades_from: Vec<String>,
}

/// A sample input and what the transform must make of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldenSample {
    pub input: serde_json::Value,
    /// The expected output records (JSON values, compared as values).
    #[serde(default)]
    pub output: Vec<serde_json::Value>,
    /// The record must be refused instead.
    #[serde(default)]
    pub rejected: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("no transform named `{0}`")]
    UnknownName(String),
    #[error("transform `{name}` has no version {what}")]
    UnknownVersion { name: String, what: String },
    #[error("the component is {size} bytes; the limit is {MAX_COMPONENT_BYTES}")]
    TooLarge { size: usize },
    #[error("{0}")]
    Invalid(#[from] LoadError),
    #[error("the component describes itself as `{described}` but was uploaded as `{name}`")]
    NameMismatch { name: String, described: String },
    #[error("version {version} of `{name}` already exists with different content (sha256:{existing}); give the new build a new version")]
    VersionConflict { name: String, version: String, existing: String },
    #[error("golden sample {index} failed: {reason}")]
    GoldenSample { index: usize, reason: String },
    #[error("transform name `{0}` must be 1-64 characters of a-z 0-9 - _")]
    BadName(String),
    #[error("`{name}` is {existing:?} component; an upload under that name must be one too, not {got:?}")]
    KindMismatch { name: String, existing: ComponentKind, got: ComponentKind },
    #[error(
        "aggregate `{name}` {version} keeps its state in format `{format}`, which no earlier version writes, and it cannot upgrade any of theirs ({earlier}); it could never take over a running pipeline's state. Keep the format, or export an `upgrade` from one of them"
    )]
    StateIncompatible { name: String, version: String, format: String, earlier: String },
    #[error("storing the transform failed: {0}")]
    Storage(String),
}

struct Inner {
    versions: BTreeMap<String, Vec<VersionInfo>>,
    samples: BTreeMap<String, Vec<GoldenSample>>,
    compiled: BTreeMap<String, Arc<CompiledTransform>>,
}

pub struct Registry {
    runtime: Runtime,
    dir: PathBuf,
    inner: Mutex<Inner>,
}

/// A transform name the registry takes: 1-64 characters of a-z 0-9 - _.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl Registry {
    /// Open the registry under `dir`, registering the built-ins and every stored upload.
    pub fn open(runtime: Runtime, dir: PathBuf) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
        let mut inner = Inner { versions: BTreeMap::new(), samples: BTreeMap::new(), compiled: BTreeMap::new() };
        for (name, _) in BUILTINS {
            let t = runtime.load_builtin(name)?;
            inner.versions.entry((*name).to_owned()).or_default().push(info(&t, true, 0));
            inner.compiled.insert(t.content_hash().to_owned(), t);
        }
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let stored: Vec<VersionInfo> = read_json(&entry.path().join("versions.json"))?.unwrap_or_default();
            inner.versions.entry(name.clone()).or_default().extend(stored);
            if let Some(samples) = read_json(&entry.path().join("samples.json"))? {
                inner.samples.insert(name, samples);
            }
        }
        Ok(Registry { runtime, dir, inner: Mutex::new(inner) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    pub fn names(&self) -> Vec<String> {
        self.lock().versions.keys().cloned().collect()
    }

    pub fn versions(&self, name: &str) -> Result<Vec<VersionInfo>, RegistryError> {
        self.lock().versions.get(name).cloned().ok_or_else(|| RegistryError::UnknownName(name.to_owned()))
    }

    pub fn samples(&self, name: &str) -> Vec<GoldenSample> {
        self.lock().samples.get(name).cloned().unwrap_or_default()
    }

    /// Find a version of `name` by content hash (or a unique prefix of it) or by its version string.
    pub fn find(&self, name: &str, what: &str) -> Result<VersionInfo, RegistryError> {
        let versions = self.versions(name)?;
        let hash = what.strip_prefix("sha256:").unwrap_or(what);
        let by_hash: Vec<&VersionInfo> = versions.iter().filter(|v| hash.len() >= 8 && v.content_hash.starts_with(hash)).collect();
        if by_hash.len() == 1 {
            return Ok(by_hash[0].clone());
        }
        versions.iter().rev().find(|v| v.version == what).cloned().ok_or_else(|| RegistryError::UnknownVersion { name: name.to_owned(), what: what.to_owned() })
    }

    /// A registered version by its full content hash, whatever its name.
    pub fn by_hash(&self, hash: &str) -> Option<VersionInfo> {
        self.lock().versions.values().flatten().find(|v| v.content_hash == hash).cloned()
    }

    /// The version a pipeline gets when it names `name` and nothing was activated:
    /// the built-in if there is one, otherwise the first upload.
    pub fn default_version(&self, name: &str) -> Result<VersionInfo, RegistryError> {
        let versions = self.versions(name)?;
        versions.iter().find(|v| v.builtin).or(versions.first()).cloned().ok_or_else(|| RegistryError::UnknownName(name.to_owned()))
    }

    /// The compiled component of a registered version.
    pub fn compiled(&self, v: &VersionInfo) -> Result<Arc<CompiledTransform>, RegistryError> {
        if let Some(c) = self.lock().compiled.get(&v.content_hash) {
            return Ok(c.clone());
        }
        let path = self.dir.join(&v.name).join(stored_file(v));
        let bytes = std::fs::read(&path).map_err(|e| RegistryError::Storage(format!("reading {}: {e}", path.display())))?;
        let t = self.runtime.load_named(&bytes, Some(&v.name))?;
        self.lock().compiled.insert(v.content_hash.clone(), t.clone());
        Ok(t)
    }

    /// Validate and store a new version. Uploading identical bytes again is a no-op.
    pub fn upload(&self, name: &str, wasm: &[u8]) -> Result<VersionInfo, RegistryError> {
        if !valid_name(name) {
            return Err(RegistryError::BadName(name.to_owned()));
        }
        if wasm.len() > MAX_COMPONENT_BYTES {
            return Err(RegistryError::TooLarge { size: wasm.len() });
        }
        let t = self.runtime.load_named(wasm, Some(name))?;
        let d = t.descriptor();
        if d.name != name {
            return Err(RegistryError::NameMismatch { name: name.to_owned(), described: d.name.clone() });
        }
        if let Ok(versions) = self.versions(name) {
            if let Some(same) = versions.iter().find(|v| v.content_hash == t.content_hash()) {
                return Ok(same.clone());
            }
            if let Some(other) = versions.iter().find(|v| v.version == d.version) {
                return Err(RegistryError::VersionConflict { name: name.to_owned(), version: d.version.clone(), existing: other.content_hash.clone() });
            }
            if let Some(other) = versions.iter().find(|v| v.kind != d.kind) {
                return Err(RegistryError::KindMismatch { name: name.to_owned(), existing: other.kind, got: d.kind });
            }
            check_state_handover(d, &versions)?;
        }
        check_samples(&t, &self.samples(name))?;
        let v = info(&t, false, crate::clock::now_ms());
        let dir = self.dir.join(name);
        let store = || -> std::io::Result<()> {
            std::fs::create_dir_all(&dir)?;
            write_atomically(&dir.join(stored_file(&v)), wasm)?;
            let mut stored: Vec<VersionInfo> = read_json(&dir.join("versions.json"))?.unwrap_or_default();
            stored.push(v.clone());
            write_atomically(&dir.join("versions.json"), &serde_json::to_vec_pretty(&stored)?)
        };
        store().map_err(|e| RegistryError::Storage(e.to_string()))?;
        let mut inner = self.lock();
        inner.versions.entry(name.to_owned()).or_default().push(v.clone());
        inner.compiled.insert(v.content_hash.clone(), t);
        Ok(v)
    }

    /// Replace the golden samples of `name` (which may have no version yet).
    /// Every existing version must pass them.
    pub fn set_samples(&self, name: &str, samples: Vec<GoldenSample>) -> Result<(), RegistryError> {
        if !valid_name(name) {
            return Err(RegistryError::BadName(name.to_owned()));
        }
        for v in self.versions(name).unwrap_or_default() {
            let t = self.compiled(&v)?;
            check_samples(&t, &samples).map_err(|e| match e {
                RegistryError::GoldenSample { index, reason } => {
                    RegistryError::GoldenSample { index, reason: format!("version {} (sha256:{}): {reason}", v.version, &v.content_hash[..12]) }
                }
                other => other,
            })?;
        }
        let dir = self.dir.join(name);
        std::fs::create_dir_all(&dir)
            .and_then(|_| write_atomically(&dir.join("samples.json"), &serde_json::to_vec_pretty(&samples)?))
            .map_err(|e| RegistryError::Storage(e.to_string()))?;
        self.lock().samples.insert(name.to_owned(), samples);
        Ok(())
    }
}

/// A new aggregate version must be able to take over the state of at least one
/// earlier version (same format, or an upgrade from it); otherwise no hot swap
/// to it could ever succeed, so it is refused now rather than at activation.
fn check_state_handover(d: &super::Descriptor, earlier: &[VersionInfo]) -> Result<(), RegistryError> {
    let (ComponentKind::Aggregate, Some(format)) = (d.kind, &d.state_format) else { return Ok(()) };
    let formats: Vec<&str> = earlier.iter().filter_map(|v| v.state_format.as_deref()).collect();
    if formats.is_empty() || formats.iter().any(|f| d.reads_state(f)) {
        return Ok(());
    }
    Err(RegistryError::StateIncompatible { name: d.name.clone(), version: d.version.clone(), format: format.clone(), earlier: formats.join(", ") })
}

/// The file a version's bytes are kept in: its component, or its SQL text.
fn stored_file(v: &VersionInfo) -> String {
    let extension = if v.contract == super::Contract::Sql { "sql" } else { "wasm" };
    format!("{}.{extension}", v.content_hash)
}

fn info(t: &CompiledTransform, builtin: bool, uploaded_at_ms: i64) -> VersionInfo {
    let d = t.descriptor();
    VersionInfo {
        name: d.name.clone(),
        version: d.version.clone(),
        content_hash: t.content_hash().to_owned(),
        size_bytes: t.size_bytes(),
        input_kind: d.input_kind.clone(),
        output_kind: d.output_kind.clone(),
        uploaded_at_ms,
        builtin,
        kind: d.kind,
        contract: d.contract,
        columns: t.columns().map(|c| c.describe_output()),
        state_format: d.state_format.clone(),
        upgrades_from: d.upgrades_from.clone(),
    }
}

/// Run each sample alone through a fresh instance and compare.
fn check_samples(t: &Arc<CompiledTransform>, samples: &[GoldenSample]) -> Result<(), RegistryError> {
    if t.kind() == ComponentKind::Aggregate && !samples.is_empty() {
        return Err(RegistryError::GoldenSample { index: 0, reason: AGGREGATES_HAVE_NO_SAMPLES.into() });
    }
    for (index, s) in samples.iter().enumerate() {
        if let SampleOutcome::Failed { reason, .. } = run_sample(t, s) {
            return Err(RegistryError::GoldenSample { index, reason });
        }
    }
    Ok(())
}

/// Why an aggregate takes no golden samples.
pub const AGGREGATES_HAVE_NO_SAMPLES: &str = "golden samples are record-in, records-out checks of transforms; an aggregate has none";

/// How a component did on one golden sample.
#[derive(Debug, Clone, PartialEq)]
pub enum SampleOutcome {
    Passed,
    Failed {
        reason: String,
        /// What the sample expects and what came out, when both are records.
        expected: Option<Vec<serde_json::Value>>,
        got: Option<Vec<serde_json::Value>>,
    },
}

/// Run one sample alone through a fresh instance of `t` (a transform), under
/// the runtime's sandbox limits, and compare.
pub fn run_sample(t: &Arc<CompiledTransform>, s: &GoldenSample) -> SampleOutcome {
    let fail = |reason: String| SampleOutcome::Failed { reason, expected: None, got: None };
    let mut batch = BatchBuf::default();
    batch.push(s.input.to_string().as_bytes(), b"", 0);
    let done = t.instance().process(&batch.as_ref());
    match (done.failures.first(), s.rejected) {
        (Some(f), true) if f.kind == super::FailureKind::Rejected => return SampleOutcome::Passed,
        (Some(f), _) => return fail(format!("{}: {}", f.kind.as_str(), f.reason)),
        (None, true) => return fail("expected the record to be refused, but it was accepted".into()),
        (None, false) => {}
    }
    let got: Result<Vec<serde_json::Value>, _> = done.output.to_json().as_ref().as_ref().iter().map(|r| serde_json::from_slice(r.value)).collect();
    match got {
        Err(e) => fail(format!("output is not JSON: {e}")),
        Ok(got) if got == s.output => SampleOutcome::Passed,
        Ok(got) => SampleOutcome::Failed {
            reason: format!("expected {}, got {}", serde_json::Value::from(s.output.clone()), serde_json::Value::from(got.clone())),
            expected: Some(s.output.clone()),
            got: Some(got),
        },
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> std::io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| std::io::Error::other(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Descriptor;

    fn aggregate(version: &str, format: &str, upgrades_from: &[&str]) -> Descriptor {
        Descriptor {
            name: "count-posts".into(),
            version: version.into(),
            input_kind: "post".into(),
            output_kind: "post-count".into(),
            kind: ComponentKind::Aggregate,
            contract: crate::runtime::Contract::Records,
            state_format: Some(format.into()),
            upgrades_from: upgrades_from.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn stored(d: &Descriptor) -> VersionInfo {
        VersionInfo {
            name: d.name.clone(),
            version: d.version.clone(),
            content_hash: "0".repeat(64),
            size_bytes: 1,
            input_kind: d.input_kind.clone(),
            output_kind: d.output_kind.clone(),
            uploaded_at_ms: 0,
            builtin: true,
            kind: d.kind,
            contract: d.contract,
            columns: None,
            state_format: d.state_format.clone(),
            upgrades_from: d.upgrades_from.clone(),
        }
    }

    #[test]
    fn an_aggregate_upload_must_be_able_to_take_over_an_earlier_state() {
        let v1 = stored(&aggregate("0.1.0", "f/1", &[]));
        check_state_handover(&aggregate("0.1.1", "f/1", &[]), std::slice::from_ref(&v1)).expect("same format");
        check_state_handover(&aggregate("0.2.0", "f/2", &["f/1"]), std::slice::from_ref(&v1)).expect("upgrades from it");
        let err = check_state_handover(&aggregate("0.3.0", "f/3", &["f/0"]), &[v1]).expect_err("no earlier format readable");
        assert!(err.to_string().contains("could never take over"), "{err}");
        check_state_handover(&aggregate("0.1.0", "f/9", &[]), &[]).expect("a first version has nothing to take over");
    }
}
