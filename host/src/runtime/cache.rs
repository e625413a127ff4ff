//! On-disk cache of precompiled components.
//!
//! Keyed by the engine's compatibility hash (wasmtime version, compiler
//! settings, target) and the component's content hash, so an upgrade of the
//! binary or a change of settings can never load an incompatible artifact.

#![allow(unsafe_code)]

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use wasmtime::Engine;
use wasmtime::component::Component;

pub(crate) struct ArtifactCache {
    dir: PathBuf,
}

impl ArtifactCache {
    pub(crate) fn new(engine: &Engine, root: PathBuf) -> Self {
        // DefaultHasher::new() uses fixed keys, so the directory name is stable across runs.
        let mut h = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        ArtifactCache { dir: root.join(format!("engine-{:016x}", h.finish())) }
    }

    /// The cached component for `hash`, or compile `wasm`, store it and return it.
    /// Cache trouble (unwritable directory, corrupt file) costs a recompile, never an error.
    pub(crate) fn get_or_compile(&self, engine: &Engine, hash: &str, wasm: &[u8]) -> wasmtime::Result<Component> {
        let path = self.dir.join(format!("{hash}.cwasm"));
        if path.exists() {
            // SAFETY: the file was produced by `Engine::precompile_component` of an
            // engine with the same compatibility hash (it is part of the directory
            // name), written atomically below, in a directory sluice owns.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(c) => return Ok(c),
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "discarding unreadable cached component"),
            }
        }
        let artifact = engine.precompile_component(wasm)?;
        if let Err(e) = crate::store::write_atomically(&path, &artifact) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot cache the compiled component; it will be compiled again next start");
        }
        // SAFETY: `artifact` was produced just above by this very engine.
        unsafe { Component::deserialize(engine, &artifact) }
    }
}
