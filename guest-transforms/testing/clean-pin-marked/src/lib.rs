//! clean-pin 0.2.0-marked: identical cleaning, output marked with `v2:` in unique_id.

use sluice_guest::{Descriptor, Output, Record, Reject, Transform};

pub struct CleanPinMarked;

impl Transform for CleanPinMarked {
    const DESCRIPTOR: Descriptor = Descriptor { name: "clean-pin", version: "0.2.0-marked", input_kind: "pin", output_kind: "pin-clean" };

    fn transform(record: &Record<'_>, out: &mut Output) -> Result<(), Reject> {
        clean_pin::clean(record, out, "v2:")
    }
}

sluice_guest::export_transform!(CleanPinMarked);
