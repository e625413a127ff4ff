//! Windowed aggregates: the state is owned by the host and travels as bytes.
//!
//! An aggregate author implements [`Aggregate`] — how a record changes the
//! state, how two states combine, what rows a state gives for a window — and
//! calls [`export_aggregate!`](crate::export_aggregate). The state is encoded
//! as JSON by default, so it is readable in a checkpoint and its format can be
//! versioned by name ([`AggregateDescriptor::state_format`]).

use crate::{BatchBuf, BatchRef, Record, Reject, Rejection};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// What an aggregate says about itself (the WIT `aggregate-descriptor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AggregateDescriptor {
    pub name: &'static str,
    pub version: &'static str,
    /// Record kind read, e.g. `"post"`, or `"any"`.
    pub input_kind: &'static str,
    /// Kind of the rows emitted per window (names the table schema).
    pub output_kind: &'static str,
    /// The layout of the state bytes. Change it whenever an old state would not
    /// decode (or would mean something else) under the new code.
    pub state_format: &'static str,
    /// Older formats [`Aggregate::upgrade`] can turn into this one.
    pub upgrades_from: &'static [&'static str],
}

/// An event-time window `[start, end)`, milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

/// Guest-defined counters, summed per call and reported to the host once.
#[derive(Debug, Default)]
pub struct Counters(pub Vec<(&'static str, u64)>);

impl Counters {
    pub fn count(&mut self, name: &'static str, delta: u64) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v += delta,
            None => self.0.push((name, delta)),
        }
    }
}

/// A pure aggregate over host-owned state.
///
/// `fold` over the concatenation of two batches must equal `fold` over one then
/// the other (the host cuts batches where windows close, not where the source
/// did), and `merge` must be associative and commutative with `Default` as its
/// identity (the host merges the panes of a sliding window in any grouping).
pub trait Aggregate {
    const DESCRIPTOR: AggregateDescriptor;
    type State: Default + Serialize + DeserializeOwned;

    /// Add one record to the state. The record's key is its group (a JSON
    /// object of the configured key fields, `{}` without any). A refusal must
    /// leave the state untouched: check before changing anything.
    fn fold(state: &mut Self::State, record: &Record<'_>, counters: &mut Counters) -> Result<(), Reject>;

    /// Add `other` into `into`.
    fn merge(into: &mut Self::State, other: Self::State);

    /// The rows of a closed window: push one JSON object per row into `rows`.
    fn emit(state: &Self::State, window: Window, rows: &mut BatchBuf);

    /// Turn a state of the older format `format` (one of `upgrades_from`) into this version's.
    fn upgrade(format: &str, _old: &[u8]) -> Result<Self::State, String> {
        Err(format!("{} {} cannot read state format `{format}`", Self::DESCRIPTOR.name, Self::DESCRIPTOR.version))
    }
}

/// The result of folding one batch.
#[derive(Debug, Default)]
pub struct FoldResult {
    pub state: Vec<u8>,
    pub rejections: Vec<Rejection>,
    pub counters: Vec<(&'static str, u64)>,
}

pub fn decode_state<A: Aggregate>(bytes: &[u8]) -> Result<A::State, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("the state handed to {} is not in format `{}`: {e}", A::DESCRIPTOR.name, A::DESCRIPTOR.state_format))
}

pub fn encode_state<A: Aggregate>(state: &A::State) -> Vec<u8> {
    serde_json::to_vec(state).expect("an aggregate state serialises to JSON")
}

/// The state of an empty pane.
pub fn run_init<A: Aggregate>() -> Vec<u8> {
    encode_state::<A>(&A::State::default())
}

/// Fold a batch into an encoded state. This is the loop the component runs on
/// every `fold` call, and the one native tests and benchmarks call directly.
pub fn run_fold<A: Aggregate>(state: &[u8], input: &BatchRef<'_>) -> Result<FoldResult, String> {
    let mut s = decode_state::<A>(state)?;
    let mut counters = Counters::default();
    let mut rejections = Vec::new();
    for (index, record) in input.iter().enumerate() {
        if let Err(reject) = A::fold(&mut s, &record, &mut counters) {
            rejections.push(Rejection { index: index as u32, reason: reject.0 });
        }
    }
    Ok(FoldResult { state: encode_state::<A>(&s), rejections, counters: counters.0 })
}

pub fn run_merge<A: Aggregate>(a: &[u8], b: &[u8]) -> Result<Vec<u8>, String> {
    let mut a = decode_state::<A>(a)?;
    A::merge(&mut a, decode_state::<A>(b)?);
    Ok(encode_state::<A>(&a))
}

pub fn run_emit<A: Aggregate>(state: &[u8], window: Window) -> Result<BatchBuf, String> {
    let s = decode_state::<A>(state)?;
    let mut rows = BatchBuf::default();
    A::emit(&s, window, &mut rows);
    Ok(rows)
}

pub fn run_upgrade<A: Aggregate>(format: &str, old: &[u8]) -> Result<Vec<u8>, String> {
    if format == A::DESCRIPTOR.state_format {
        return decode_state::<A>(old).map(|s| encode_state::<A>(&s));
    }
    A::upgrade(format, old).map(|s| encode_state::<A>(&s))
}

/// Start a row with the fields of the group key (`{"country":"Albania"}` →
/// `{"country":"Albania"`), so the aggregate adds its own after them with the
/// returned writer.
pub fn row_with_key<'b>(buf: &'b mut Vec<u8>, key: &[u8]) -> crate::json::JsonWriter<'b> {
    crate::json::JsonWriter::extend_object(buf, key)
}

/// Export `A` as the component's `sluice:transform/aggregate` world (Wasm only).
#[macro_export]
macro_rules! export_aggregate {
    ($a:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __SluiceAggregateExport = $crate::wasm_aggregate::Export<$a>;
            $crate::wasm_aggregate::__export_aggregate_guest!(__SluiceAggregateExport);
        };
    };
}
