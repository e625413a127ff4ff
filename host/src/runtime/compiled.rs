//! A validated, compiled transform component, ready to instantiate cheaply.

use super::aggregate::AggregateInstance;
use super::bindings::aggregate::AggregatePre;
use super::bindings::columns::TransformPre as ColumnsPre;
use super::bindings::{TransformPre, WitDescriptor};
use super::builtin::builtin_bytes;
use super::cache::ArtifactCache;
use super::columnar::{ColumnContract, ColumnsInstance};
use super::engine::Runtime;
use super::host::HostState;
use super::instance::TransformInstance;
use super::sandbox::{Sandboxed, call_with_limits};
use super::sql::{Compiled, SqlAggregate, SqlError, SqlProgram, is_sql};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use wasmtime::component::{Component, HasSelf, Linker};

/// SHA-256 of the component bytes, lowercase hex: the identity of a version.
pub type ContentHash = String;

/// Which world of the WIT package a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentKind {
    /// `transform`: a stateless record transform.
    #[default]
    Transform,
    /// `aggregate`: a windowed aggregate over host-owned state.
    Aggregate,
}

/// Which version of the WIT contract a transform speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
pub enum Contract {
    /// `sluice:transform@0.1.0`: JSON records in and out (and every aggregate).
    #[default]
    #[serde(rename = "0.1.0")]
    Records,
    /// `sluice:transform@0.2.0`: typed columns in and out.
    #[serde(rename = "0.2.0")]
    Columns,
    /// A SQL statement over the batch's columns, run natively (no component).
    #[serde(rename = "sql")]
    Sql,
}

impl Contract {
    /// The name the API and descriptors use: `0.1.0`, `0.2.0`, `sql`.
    pub fn as_str(self) -> &'static str {
        match self {
            Contract::Records => "0.1.0",
            Contract::Columns => "0.2.0",
            Contract::Sql => "sql",
        }
    }
}

/// What a component says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Descriptor {
    pub name: String,
    pub version: String,
    pub input_kind: String,
    pub output_kind: String,
    pub kind: ComponentKind,
    /// The contract version it was built against.
    pub contract: Contract,
    /// Aggregates: the layout of their state bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_format: Option<String>,
    /// Aggregates: older state formats their `upgrade` reads.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub upgrades_from: Vec<String>,
}

impl Descriptor {
    /// Whether this aggregate can take over state written in `format`.
    pub fn reads_state(&self, format: &str) -> bool {
        self.state_format.as_deref() == Some(format) || self.upgrades_from.iter().any(|f| f == format)
    }
}

/// The pre-instantiated bindings of the world a component implements.
pub(crate) enum WorldPre {
    Transform(TransformPre<HostState>),
    Columns(ColumnsPre<HostState>, Arc<ColumnContract>),
    Aggregate(AggregatePre<HostState>),
    Sql(Arc<SqlProgram>),
    SqlAggregate(Arc<SqlAggregate>),
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a valid WebAssembly component: {0}")]
    Invalid(String),
    #[error(
        "the component implements none of the worlds sluice runs (sluice:transform/transform@0.2.0, sluice:transform/transform@0.1.0, sluice:transform/aggregate@0.1.0): {0}"
    )]
    WrongWorld(String),
    #[error("the component's describe() failed: {0}")]
    DescribeFailed(String),
    #[error("no built-in transform named `{0}` (built-ins: {list})", list = super::builtin_names().collect::<Vec<_>>().join(", "))]
    UnknownBuiltin(String),
    #[error("the SQL statement cannot run: {0}")]
    Sql(#[from] SqlError),
}

pub struct CompiledTransform {
    pub(crate) runtime: Runtime,
    pub(crate) pre: WorldPre,
    pub(crate) name: Arc<str>,
    hash: ContentHash,
    descriptor: Descriptor,
    size: usize,
}

impl std::fmt::Debug for CompiledTransform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledTransform").field("descriptor", &self.descriptor).field("hash", &self.hash).finish()
    }
}

impl CompiledTransform {
    pub(crate) fn load(runtime: &Runtime, cache: Option<&ArtifactCache>, wasm: &[u8]) -> Result<Self, LoadError> {
        let engine = runtime.engine();
        let hash = hex::encode(Sha256::digest(wasm));
        let component = match cache {
            Some(cache) => cache.get_or_compile(engine, &hash, wasm),
            None => Component::new(engine, wasm),
        }
        .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;

        let mut linker = Linker::<HostState>::new(engine);
        super::bindings::Transform::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s).map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
        super::bindings::columns::Transform::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
        // Everything else a guest imports (WASI filesystem, sockets, clocks, env,
        // random...) is satisfied by a function that traps: the sandbox is closed.
        linker.define_unknown_imports_as_traps(&component).map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
        let instance_pre = linker.instantiate_pre(&component).map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
        let provisional: Arc<str> = Arc::from(format!("sha256:{}", &hash[..12]));
        let (pre, descriptor) = match TransformPre::new(instance_pre.clone()) {
            Ok(pre) => {
                let mut probe = TransformInstance::new_raw(runtime.clone(), pre.clone(), provisional);
                let d: WitDescriptor = probe
                    .with_instance(|store, bindings| call_with_limits(store, |s| bindings.call_describe(s)))
                    .map_err(|f| LoadError::DescribeFailed(f.to_string()))?;
                let descriptor = Descriptor {
                    name: d.name,
                    version: d.version,
                    input_kind: d.input_kind,
                    output_kind: d.output_kind,
                    kind: ComponentKind::Transform,
                    contract: Contract::Records,
                    state_format: None,
                    upgrades_from: Vec::new(),
                };
                (WorldPre::Transform(pre), descriptor)
            }
            Err(not_v1) if ColumnsPre::new(instance_pre.clone()).is_ok() => {
                let _ = not_v1;
                let pre = ColumnsPre::new(instance_pre).map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
                let placeholder = Arc::new(ColumnContract::placeholder());
                let mut probe = ColumnsInstance { sandbox: Sandboxed::new(runtime.clone(), pre.clone(), provisional), contract: placeholder };
                let d = probe
                    .sandbox
                    .with_instance(|store, bindings| call_with_limits(store, |s| bindings.call_describe(s)))
                    .map_err(|f| LoadError::DescribeFailed(f.to_string()))?;
                let (descriptor, contract) = columns_descriptor(&d).map_err(|e| LoadError::DescribeFailed(format!("describe() of a 0.2.0 transform: {e}")))?;
                (WorldPre::Columns(pre, Arc::new(contract)), descriptor)
            }
            Err(not_transform) => {
                let pre = AggregatePre::new(instance_pre)
                    .map_err(|e| LoadError::WrongWorld(format!("not a transform ({not_transform:#}); not an aggregate ({e:#})")))?;
                let mut probe = AggregateInstance::new_raw(runtime.clone(), pre.clone(), provisional);
                let d = probe.describe().map_err(|f| LoadError::DescribeFailed(f.to_string()))?;
                if d.state_format.is_empty() || d.state_format.len() > 128 {
                    return Err(LoadError::DescribeFailed(format!("describe-aggregate() must give a state format (1-128 bytes), got {:?}", d.state_format)));
                }
                let descriptor = Descriptor {
                    name: d.name,
                    version: d.version,
                    input_kind: d.input_kind,
                    output_kind: d.output_kind,
                    kind: ComponentKind::Aggregate,
                    contract: Contract::Records,
                    state_format: Some(d.state_format),
                    upgrades_from: d.upgrades_from,
                };
                (WorldPre::Aggregate(pre), descriptor)
            }
        };
        if descriptor.name.is_empty() || descriptor.name.len() > 128 || descriptor.version.is_empty() || descriptor.version.len() > 64 {
            return Err(LoadError::DescribeFailed(format!(
                "describe() must give a name (1-128 bytes) and a version (1-64 bytes), got {:?} / {:?}",
                descriptor.name, descriptor.version
            )));
        }
        Ok(CompiledTransform { runtime: runtime.clone(), pre, name: Arc::from(descriptor.name.as_str()), hash, descriptor, size: wasm.len() })
    }

    /// A SQL stage: `text` planned once. Its name is the header's `-- name:` or
    /// `name`; its version the header's `-- version:` or one derived from the text.
    pub(crate) fn load_sql(runtime: &Runtime, text: &str, name: Option<&str>) -> Result<Self, LoadError> {
        let hash = hex::encode(Sha256::digest(text.as_bytes()));
        let (pre, h, kind, state_format) = match super::sql::compile(text)? {
            Compiled::Rows(p) => {
                let h = p.header.clone();
                (WorldPre::Sql(Arc::from(p)), h, ComponentKind::Transform, None)
            }
            Compiled::Windows(a) => {
                let (h, format) = (a.header.clone(), a.state_format.clone());
                (WorldPre::SqlAggregate(Arc::from(a)), h, ComponentKind::Aggregate, Some(format))
            }
        };
        let name = h
            .name
            .clone()
            .or(name.map(str::to_owned))
            .ok_or_else(|| LoadError::DescribeFailed("a SQL stage needs a name: upload it under one, or start the text with `-- name: my-stage`".into()))?;
        let descriptor = Descriptor {
            name: name.clone(),
            version: h.version.clone().unwrap_or_else(|| format!("sql-{}", &hash[..12])),
            input_kind: h.input_kind.clone().unwrap_or_else(|| "any".into()),
            output_kind: h.output_kind.clone().unwrap_or_else(|| name.clone()),
            kind,
            contract: Contract::Sql,
            state_format,
            upgrades_from: Vec::new(),
        };
        let size = text.len();
        Ok(CompiledTransform { runtime: runtime.clone(), pre, name: Arc::from(name.as_str()), hash, descriptor, size })
    }

    /// The statement of a SQL transform; `None` for a component or a windowed statement.
    pub fn sql(&self) -> Option<&Arc<SqlProgram>> {
        match &self.pre {
            WorldPre::Sql(p) => Some(p),
            _ => None,
        }
    }

    /// The join a SQL statement's FROM names; `None` for components and statements reading `input`.
    pub fn sql_join(&self) -> Option<&super::sql::JoinSpec> {
        match &self.pre {
            WorldPre::Sql(p) => p.header.join.as_ref(),
            WorldPre::SqlAggregate(a) => a.header.join.as_ref(),
            _ => None,
        }
    }

    /// The statement of a windowed SQL aggregate; `None` otherwise.
    pub fn sql_windows(&self) -> Option<&Arc<SqlAggregate>> {
        match &self.pre {
            WorldPre::SqlAggregate(a) => Some(a),
            _ => None,
        }
    }

    pub fn descriptor(&self) -> &Descriptor {
        &self.descriptor
    }

    pub fn content_hash(&self) -> &str {
        &self.hash
    }

    pub fn size_bytes(&self) -> usize {
        self.size
    }

    /// A worker that runs batches through this transform (one per pipeline stage and thread).
    /// For an aggregate component it refuses every record, saying why.
    pub fn instance(self: &Arc<Self>) -> TransformInstance {
        match &self.pre {
            WorldPre::Transform(pre) => TransformInstance::new_raw(self.runtime.clone(), pre.clone(), self.name.clone()),
            WorldPre::Columns(pre, contract) => TransformInstance::columns(ColumnsInstance {
                sandbox: Sandboxed::new(self.runtime.clone(), pre.clone(), self.name.clone()),
                contract: contract.clone(),
            }),
            WorldPre::Aggregate(_) => TransformInstance::not_a_transform(self.name.clone()),
            WorldPre::Sql(program) => TransformInstance::sql(program.clone()),
            WorldPre::SqlAggregate(_) => TransformInstance::not_a_transform(self.name.clone()),
        }
    }

    /// The typed columns a 0.2.0 transform reads and writes; `None` for other components.
    pub fn columns(&self) -> Option<&Arc<ColumnContract>> {
        match &self.pre {
            WorldPre::Columns(_, contract) => Some(contract),
            WorldPre::Sql(program) => Some(&program.contract),
            WorldPre::SqlAggregate(a) => Some(&a.contract),
            _ => None,
        }
    }

    pub fn kind(&self) -> ComponentKind {
        self.descriptor.kind
    }

    /// Calls into this aggregate (one per pipeline worker); `None` for a transform.
    pub fn aggregate_instance(self: &Arc<Self>) -> Option<AggregateInstance> {
        match &self.pre {
            WorldPre::Aggregate(pre) => Some(AggregateInstance::new_raw(self.runtime.clone(), pre.clone(), self.name.clone())),
            WorldPre::SqlAggregate(a) => Some(AggregateInstance::sql(a.clone(), self.name.clone())),
            WorldPre::Transform(_) | WorldPre::Columns(..) | WorldPre::Sql(_) => None,
        }
    }
}

/// Loading lives here, beside what it builds, so the engine module does not
/// depend on compiled components (and they on it, in a circle).
impl Runtime {
    /// Compile (or fetch from the disk cache) and validate a component, or
    /// plan a SQL stage's text (which must then name itself in its header).
    pub fn load(&self, bytes: &[u8]) -> Result<Arc<CompiledTransform>, LoadError> {
        self.load_named(bytes, None)
    }

    /// [`Runtime::load`], where a SQL text without a `-- name:` header takes `name`.
    pub fn load_named(&self, bytes: &[u8], name: Option<&str>) -> Result<Arc<CompiledTransform>, LoadError> {
        match std::str::from_utf8(bytes) {
            Ok(text) if is_sql(text) => CompiledTransform::load_sql(self, text, name).map(Arc::new),
            Ok(_) if !bytes.starts_with(b"\0asm") => {
                Err(LoadError::Invalid("this is text, but neither a WebAssembly component nor a SQL stage (a SQL stage is `SELECT … FROM input`)".into()))
            }
            _ => CompiledTransform::load(self, self.cache(), bytes).map(Arc::new),
        }
    }

    /// Load a built-in transform by name (`clean-pin`, `clean-geo`, `clean-user`, `clean-pin-sql`…).
    pub fn load_builtin(&self, name: &str) -> Result<Arc<CompiledTransform>, LoadError> {
        let bytes = builtin_bytes(name).ok_or_else(|| LoadError::UnknownBuiltin(name.to_owned()))?;
        self.load_named(bytes, Some(name))
    }
}
/// Read a 0.2.0 component's descriptor into the host's.
fn columns_descriptor(d: &super::bindings::columns::Descriptor) -> Result<(Descriptor, ColumnContract), String> {
    let contract = ColumnContract::from_wit(d)?;
    let descriptor = Descriptor {
        name: d.name.clone(),
        version: d.version.clone(),
        input_kind: d.input_kind.clone(),
        output_kind: d.output_kind.clone(),
        kind: ComponentKind::Transform,
        contract: Contract::Columns,
        state_format: None,
        upgrades_from: Vec::new(),
    };
    Ok((descriptor, contract))
}
