//! A validated, compiled transform component, ready to instantiate cheaply.

use super::bindings::{TransformPre, WitDescriptor};
use super::cache::ArtifactCache;
use super::engine::Runtime;
use super::host::HostState;
use super::instance::{call_with_limits, TransformInstance};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use wasmtime::component::{Component, HasSelf, Linker};

/// SHA-256 of the component bytes, lowercase hex: the identity of a version.
pub type ContentHash = String;

/// What a component says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Descriptor {
    pub name: String,
    pub version: String,
    pub input_kind: String,
    pub output_kind: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a valid WebAssembly component: {0}")]
    Invalid(String),
    #[error("the component does not implement the sluice:transform/transform@0.1.0 world: {0}")]
    WrongWorld(String),
    #[error("the component's describe() failed: {0}")]
    DescribeFailed(String),
    #[error("no built-in transform named `{0}` (built-ins: clean-pin, clean-geo, clean-user)")]
    UnknownBuiltin(String),
}

pub struct CompiledTransform {
    pub(crate) runtime: Runtime,
    pub(crate) pre: TransformPre<HostState>,
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
        super::bindings::Transform::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
        // Everything else a guest imports (WASI filesystem, sockets, clocks, env,
        // random...) is satisfied by a function that traps: the sandbox is closed.
        linker.define_unknown_imports_as_traps(&component).map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
        let instance_pre = linker.instantiate_pre(&component).map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
        let pre = TransformPre::new(instance_pre).map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;

        let provisional: Arc<str> = Arc::from(format!("sha256:{}", &hash[..12]));
        let mut probe = TransformInstance::new_raw(runtime.clone(), pre.clone(), provisional);
        let d: WitDescriptor = probe
            .with_instance(|store, bindings| call_with_limits(store, |s| bindings.call_describe(s)))
            .map_err(|f| LoadError::DescribeFailed(f.to_string()))?;
        if d.name.is_empty() || d.name.len() > 128 || d.version.is_empty() || d.version.len() > 64 {
            return Err(LoadError::DescribeFailed(format!(
                "describe() must give a name (1-128 bytes) and a version (1-64 bytes), got {:?} / {:?}",
                d.name, d.version
            )));
        }
        let descriptor =
            Descriptor { name: d.name, version: d.version, input_kind: d.input_kind, output_kind: d.output_kind };
        Ok(CompiledTransform {
            runtime: runtime.clone(),
            pre,
            name: Arc::from(descriptor.name.as_str()),
            hash,
            descriptor,
            size: wasm.len(),
        })
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
    pub fn instance(self: &Arc<Self>) -> TransformInstance {
        TransformInstance::new_raw(self.runtime.clone(), self.pre.clone(), self.name.clone())
    }
}
