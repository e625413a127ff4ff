//! A 0.2.0 transform that breaks the column layout when a record asks it to.
//!
//! It reads one string field, `cmd`, and writes two columns, `n` (int64) and
//! `s` (string). If any row of the batch holds one of the commands below, the
//! whole batch's output is broken that way; otherwise each row's `cmd` is echoed
//! into `s` with its row number in `n`.
//!
//! - `bad-offsets`: the string offsets go backwards (the first is past the second);
//! - `offset-past-end`: the last offset points past the bytes;
//! - `short-ints`: one int fewer than rows;
//! - `bad-utf8`: the string bytes are not UTF-8;
//! - `wrong-type`: the int64 column's values arrive in `floats`;
//! - `missing-column`: one column instead of two;
//! - `bad-origin`: an origin names an input row that does not exist;
//! - `bad-validity`: a validity bitmap of the wrong length;
//! - `null-in-required`: a null in `n`, which is declared not nullable;
//! - `huge-rows`: claims four billion rows;
//! - `alloc`: allocates until the memory cap stops it.

// The generated glue is `unsafe` code (the canonical ABI's exports).
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod component {
    wit_bindgen::generate!({ path: "../../../wit/v0.2", world: "transform" });

    use sluice::transform::columns::{Column, InputField, InputType, OutputField, OutputType};

    struct HostileColumns;

    impl Guest for HostileColumns {
        fn describe() -> Descriptor {
            Descriptor {
                name: "hostile-columns".into(),
                version: "0.2.0".into(),
                input_kind: "any".into(),
                output_kind: "hostile".into(),
                input: vec![InputField { name: "cmd".into(), type_: InputType::String }],
                output: vec![
                    OutputField { name: "n".into(), type_: OutputType::Int64, nullable: false },
                    OutputField { name: "s".into(), type_: OutputType::String, nullable: true },
                ],
            }
        }

        fn process(input: ColumnsBatch) -> BatchOutput {
            let rows = input.rows as usize;
            let cmd = &input.columns[0];
            let text = |i: usize| std::str::from_utf8(&cmd.bytes[cmd.offsets[i] as usize..cmd.offsets[i + 1] as usize]).unwrap_or("").to_owned();
            let cmds: Vec<String> = (0..rows).map(text).collect();
            let mut n = Column { validity: vec![], ints: (0..rows as i64).collect(), floats: vec![], bytes: vec![], offsets: vec![], kinds: vec![] };
            let mut s = Column { validity: vec![], ints: vec![], floats: vec![], bytes: vec![], offsets: vec![0], kinds: vec![] };
            for c in &cmds {
                s.bytes.extend_from_slice(c.as_bytes());
                s.offsets.push(s.bytes.len() as u32);
            }
            let mut origins: Vec<u32> = (0..rows as u32).collect();
            let mut out_rows = rows as u32;
            let has = |what: &str| cmds.iter().any(|c| c == what);
            if has("bad-offsets") {
                s.offsets[0] = s.offsets[1] + 1;
            }
            if has("offset-past-end") {
                *s.offsets.last_mut().expect("offsets start with 0") += 1000;
            }
            if has("short-ints") {
                n.ints.pop();
            }
            if has("bad-utf8") {
                s.bytes.iter_mut().for_each(|b| *b = 0xff);
            }
            if has("wrong-type") {
                n.floats = n.ints.iter().map(|&i| i as f64).collect();
                n.ints.clear();
            }
            if has("bad-origin") {
                origins[0] = 1_000_000;
            }
            if has("bad-validity") {
                s.validity = vec![0xff; rows.div_ceil(8) + 3];
            }
            if has("null-in-required") {
                n.validity = vec![0xfe; rows.div_ceil(8)];
            }
            if has("huge-rows") {
                out_rows = u32::MAX;
            }
            if has("alloc") {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            let columns = if has("missing-column") { vec![n] } else { vec![n, s] };
            BatchOutput { output: ColumnsBatch { rows: out_rows, columns }, origins, rejections: vec![] }
        }
    }

    export!(HostileColumns);
}
