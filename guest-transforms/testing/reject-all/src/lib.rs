//! clean-pin 0.3.0-rejects-all: a broken build that refuses everything.

use sluice_guest::{Descriptor, Output, Record, Reject, Transform};

pub struct RejectAll;

impl Transform for RejectAll {
    const DESCRIPTOR: Descriptor = Descriptor { name: "clean-pin", version: "0.3.0-rejects-all", input_kind: "pin", output_kind: "pin-clean" };

    fn transform(_record: &Record<'_>, _out: &mut Output) -> Result<(), Reject> {
        Err(Reject("this build refuses everything".into()))
    }
}

sluice_guest::export_transform!(RejectAll);
