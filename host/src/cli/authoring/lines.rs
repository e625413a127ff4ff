//! Records read from JSON lines, a batch at a time, through a transform:
//! shared by `sluice transform run` and `sluice transform test`.

use crate::runtime::{ProcessedBatch, TransformInstance};
use anyhow::Context;
use sluice_guest::BatchBuf;
use std::io::BufRead;

/// Run `worker` over JSON lines from `input`, `batch_size` records a call
/// (blank lines skipped); `each` sees every batch, the line number of each of
/// its records, and what the component made of it. Returns the records read.
pub(crate) fn process_lines(
    mut input: impl BufRead,
    worker: &mut TransformInstance,
    batch_size: usize,
    mut each: impl FnMut(&BatchBuf, &[u64], &ProcessedBatch) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let (mut read, mut line_no) = (0u64, 0u64);
    let mut batch = BatchBuf::default();
    let mut batch_lines: Vec<u64> = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let eof = input.read_until(b'\n', &mut line).context("reading input")? == 0;
        if !eof {
            line_no += 1;
            let record = trim_line(&line);
            if !record.is_empty() {
                batch.push(record, b"", 0);
                batch_lines.push(line_no);
                read += 1;
            }
        }
        if batch.len() >= batch_size || (eof && !batch.is_empty()) {
            let done = worker.process(&batch.as_ref());
            each(&batch, &batch_lines, &done)?;
            batch.clear();
            batch_lines.clear();
        }
        if eof {
            return Ok(read);
        }
    }
}

fn trim_line(line: &[u8]) -> &[u8] {
    let mut l = line;
    while let [rest @ .., b'\n' | b'\r'] = l {
        l = rest;
    }
    if l.iter().all(u8::is_ascii_whitespace) { &[] } else { l }
}
