//! `sluice-guest`: the SDK for sluice transform components.
//!
//! A transform author implements [`Transform`] — one function from an input
//! record to zero or more output records or a [`Reject`] — and calls
//! [`export_transform!`]. The crate takes care of the component-model glue
//! (wit-bindgen, the columnar batch layout, counters, panic reporting), so the
//! same code runs natively in unit tests and benchmarks and as a Wasm component
//! inside the host.
//!
//! ```ignore
//! struct Upper;
//! impl sluice_guest::Transform for Upper {
//!     const DESCRIPTOR: sluice_guest::Descriptor = sluice_guest::Descriptor {
//!         name: "upper", version: "1.0.0", input_kind: "any", output_kind: "any",
//!     };
//!     fn transform(record: &sluice_guest::Record<'_>, out: &mut sluice_guest::Output) -> Result<(), sluice_guest::Reject> {
//!         out.emit(|buf| buf.extend(record.value.to_ascii_uppercase()));
//!         Ok(())
//!     }
//! }
//! sluice_guest::export_transform!(Upper);
//! ```

pub mod aggregate;
pub mod batch;
pub mod columns;
pub mod detect;
pub mod json;
pub mod text;
pub mod time;

pub use aggregate::{Aggregate, AggregateDescriptor, Counters, Window};
pub use batch::{BatchBuf, BatchRef, BatchResult, Output, Record, Reject, Rejection};
pub use columns::{ColumnTransform, ColumnsView, Emitter, InputField, InputType, OutputField, OutputType, Row, RowOut};

// A component exports exactly one world, and wit-bindgen merges the worlds of
// every binding linked into it: hence one feature per world, and guests of the
// two kinds are built by separate cargo runs (see host/build.rs).
#[cfg(all(target_arch = "wasm32", feature = "transform"))]
#[doc(hidden)]
pub mod wasm;

#[cfg(all(target_arch = "wasm32", feature = "aggregate"))]
#[doc(hidden)]
pub mod wasm_aggregate;

#[cfg(all(target_arch = "wasm32", feature = "columns"))]
#[doc(hidden)]
pub mod wasm_columns;

/// What a transform says about itself (the WIT `descriptor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    pub name: &'static str,
    pub version: &'static str,
    /// Record kind read, e.g. `"pin"`, or `"any"`.
    pub input_kind: &'static str,
    /// Record kind written, e.g. `"pin-clean"`.
    pub output_kind: &'static str,
}

/// A record-at-a-time transform.
pub trait Transform {
    const DESCRIPTOR: Descriptor;

    /// Turn one input record into zero or more outputs (through `out`), or refuse it.
    /// A refusal affects this record only.
    fn transform(record: &Record<'_>, out: &mut Output) -> Result<(), Reject>;
}

/// Run a transform over a whole batch. This is the loop the component runs on
/// every `process` call, and the one native tests and benchmarks call directly.
pub fn run_batch<T: Transform>(input: &BatchRef<'_>) -> BatchResult {
    let mut out = Output::with_capacity(input.len(), input.values_len());
    let mut rejections = Vec::new();
    for (index, record) in input.iter().enumerate() {
        out.begin(index as u32, record.key, record.timestamp);
        if let Err(reject) = T::transform(&record, &mut out) {
            out.rollback();
            rejections.push(Rejection { index: index as u32, reason: reject.0 });
        }
    }
    let (output, origins, counters) = out.finish();
    BatchResult { output, origins, rejections, counters }
}

/// Export `T` (a [`ColumnTransform`]) as the component's
/// `sluice:transform/transform@0.2.0` world. Needs the crate's `columns` feature.
#[macro_export]
macro_rules! export_columns {
    ($t:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __SluiceExport = $crate::wasm_columns::Export<$t>;
            $crate::wasm_columns::__export_columns_guest!(__SluiceExport);
        };
    };
}

/// Export `T` as the component's `sluice:transform/transform` world.
/// On non-Wasm targets this expands to nothing, so the crate still builds and
/// tests natively.
#[macro_export]
macro_rules! export_transform {
    ($t:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __SluiceExport = $crate::wasm::Export<$t>;
            $crate::wasm::__export_guest!(__SluiceExport);
        };
    };
}
