//! Component-model glue of the `aggregate` world, compiled only for Wasm targets.

use crate::BatchRef;
use crate::aggregate::{Aggregate, run_emit, run_fold, run_init, run_merge, run_upgrade};
use std::marker::PhantomData;

wit_bindgen::generate!({
    path: "../../wit",
    world: "aggregate",
    pub_export_macro: true,
    export_macro_name: "__export_aggregate_guest",
    default_bindings_module: "sluice_guest::wasm_aggregate",
});

// The world's `use` puts Batch, Window, FoldOutput and AggregateDescriptor at the root.
use sluice::transform::host;
use sluice::transform::types::Rejection;

/// Adapter from [`Aggregate`] to the generated `Guest` trait.
pub struct Export<A>(PhantomData<A>);

/// The host handed over bytes the aggregate cannot read: trap, with the reason in the host's log.
fn fail(msg: String) -> ! {
    host::log(host::Level::Error, &msg);
    panic!("{msg}");
}

impl<A: Aggregate> Guest for Export<A> {
    fn describe_aggregate() -> AggregateDescriptor {
        let d = A::DESCRIPTOR;
        AggregateDescriptor {
            name: d.name.into(),
            version: d.version.into(),
            input_kind: d.input_kind.into(),
            output_kind: d.output_kind.into(),
            state_format: d.state_format.into(),
            upgrades_from: d.upgrades_from.iter().map(|f| (*f).to_owned()).collect(),
        }
    }

    fn init() -> Vec<u8> {
        run_init::<A>()
    }

    fn fold(state: Vec<u8>, input: Batch) -> FoldOutput {
        install_panic_reporter();
        let view =
            BatchRef { values: &input.values, value_ends: &input.value_ends, keys: &input.keys, key_ends: &input.key_ends, timestamps: &input.timestamps };
        let result = run_fold::<A>(&state, &view).unwrap_or_else(|e| fail(e));
        for (name, delta) in &result.counters {
            host::count(name, *delta);
        }
        FoldOutput { state: result.state, rejections: result.rejections.into_iter().map(|r| Rejection { index: r.index, reason: r.reason }).collect() }
    }

    fn merge(a: Vec<u8>, b: Vec<u8>) -> Vec<u8> {
        install_panic_reporter();
        run_merge::<A>(&a, &b).unwrap_or_else(|e| fail(e))
    }

    fn emit(state: Vec<u8>, window: Window) -> Batch {
        install_panic_reporter();
        let rows = run_emit::<A>(&state, crate::Window { start: window.start, end: window.end }).unwrap_or_else(|e| fail(e));
        Batch { values: rows.values, value_ends: rows.value_ends, keys: rows.keys, key_ends: rows.key_ends, timestamps: rows.timestamps }
    }

    fn upgrade(format: String, state: Vec<u8>) -> Result<Vec<u8>, String> {
        install_panic_reporter();
        run_upgrade::<A>(&format, &state)
    }
}

fn install_panic_reporter() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            host::log(host::Level::Error, &format!("panic: {info}"));
        }));
    });
}
