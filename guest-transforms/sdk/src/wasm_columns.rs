//! Component-model glue of the 0.2.0 `transform` world, compiled only for Wasm targets.

use crate::columns::{ColumnRef, ColumnTransform, ColumnsView, InputType, OutputType, run_columns};
use std::marker::PhantomData;

wit_bindgen::generate!({
    path: "../../wit/v0.2",
    world: "transform",
    pub_export_macro: true,
    export_macro_name: "__export_columns_guest",
    default_bindings_module: "sluice_guest::wasm_columns",
});

use sluice::transform::columns::{Column, InputField, OutputField, Rejection};
use sluice::transform::columns::{InputType as WitInput, OutputType as WitOutput};
use sluice::transform::host;

/// Adapter from [`ColumnTransform`] to the generated `Guest` trait.
pub struct Export<T>(PhantomData<T>);

impl<T: ColumnTransform> Guest for Export<T> {
    fn describe() -> Descriptor {
        let d = T::DESCRIPTOR;
        Descriptor {
            name: d.name.into(),
            version: d.version.into(),
            input_kind: d.input_kind.into(),
            output_kind: d.output_kind.into(),
            input: T::INPUT.iter().map(|f| InputField { name: f.name.into(), type_: input_type(f.ty) }).collect(),
            output: T::OUTPUT.iter().map(|f| OutputField { name: f.name.into(), type_: output_type(f.ty), nullable: f.nullable }).collect(),
        }
    }

    fn process(input: ColumnsBatch) -> BatchOutput {
        install_panic_reporter();
        let fields: Vec<(&str, InputType)> = T::INPUT.iter().map(|f| (f.name, f.ty)).collect();
        let raw = input
            .columns
            .iter()
            .map(|c| ColumnRef { validity: &c.validity, ints: &c.ints, floats: &c.floats, bytes: &c.bytes, offsets: &c.offsets, kinds: &c.kinds })
            .collect();
        // The host builds these buffers from the descriptor; a mismatch is a host bug, reported as a trap.
        let view = ColumnsView::new_typed(&fields, input.rows as usize, raw).unwrap_or_else(|e| panic!("input batch: {e}"));
        let result = run_columns::<T>(&view);
        for (name, delta) in &result.counters {
            host::count(name, *delta);
        }
        let columns = result
            .columns
            .into_iter()
            .map(|c| Column { validity: c.validity, ints: c.ints, floats: c.floats, bytes: c.bytes, offsets: c.offsets, kinds: c.kinds })
            .collect();
        BatchOutput {
            output: ColumnsBatch { rows: result.rows as u32, columns },
            origins: result.origins,
            rejections: result.rejections.into_iter().map(|r| Rejection { index: r.index, reason: r.reason }).collect(),
        }
    }
}

fn input_type(t: InputType) -> WitInput {
    match t {
        InputType::Any => WitInput::Any,
        InputType::String => WitInput::String,
        InputType::Int64 => WitInput::Int64,
        InputType::Float64 => WitInput::Float64,
        InputType::Boolean => WitInput::Boolean,
        InputType::Timestamp => WitInput::Timestamp,
    }
}

fn output_type(t: OutputType) -> WitOutput {
    match t {
        OutputType::Int64 => WitOutput::Int64,
        OutputType::Float64 => WitOutput::Float64,
        OutputType::Boolean => WitOutput::Boolean,
        OutputType::String => WitOutput::String,
        OutputType::Timestamp => WitOutput::Timestamp,
        OutputType::Float64List => WitOutput::Float64List,
    }
}

/// As in the 0.1.0 glue: hand a panic's message to the host before the trap.
fn install_panic_reporter() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            host::log(host::Level::Error, &format!("panic: {info}"));
        }));
    });
}
