//! Component-model glue, compiled only for Wasm targets.

use crate::{BatchRef, Transform};
use std::marker::PhantomData;

wit_bindgen::generate!({
    path: "../../wit",
    world: "transform",
    pub_export_macro: true,
    export_macro_name: "__export_guest",
    default_bindings_module: "sluice_guest::wasm",
});

// The world's `use types.{...}` puts Batch, BatchOutput and Descriptor at the root.
use sluice::transform::host;
use sluice::transform::types::Rejection;

/// Adapter from [`Transform`] to the generated `Guest` trait.
pub struct Export<T>(PhantomData<T>);

impl<T: Transform> Guest for Export<T> {
    fn describe() -> Descriptor {
        let d = T::DESCRIPTOR;
        Descriptor { name: d.name.into(), version: d.version.into(), input_kind: d.input_kind.into(), output_kind: d.output_kind.into() }
    }

    fn process(input: Batch) -> BatchOutput {
        install_panic_reporter();
        let view =
            BatchRef { values: &input.values, value_ends: &input.value_ends, keys: &input.keys, key_ends: &input.key_ends, timestamps: &input.timestamps };
        let result = crate::run_batch::<T>(&view);
        // Counters cross the boundary once per name per batch, not per record.
        for (name, delta) in &result.counters {
            host::count(name, *delta);
        }
        let out = result.output;
        BatchOutput {
            output: Batch { values: out.values, value_ends: out.value_ends, keys: out.keys, key_ends: out.key_ends, timestamps: out.timestamps },
            origins: result.origins,
            rejections: result.rejections.into_iter().map(|r| Rejection { index: r.index, reason: r.reason }).collect(),
        }
    }
}

/// A panic aborts the instance (the host sees a trap); before it does, hand the
/// panic message to the host so the rejection says what went wrong.
fn install_panic_reporter() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            host::log(host::Level::Error, &format!("panic: {info}"));
        }));
    });
}
