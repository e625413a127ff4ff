//! The objects derived from one input range `[start, end)` of one source partition.

use super::layout::{self, TableFile};
use super::parquet::{ParquetObject, decode_json, fit_columns, split_by_date};
use crate::position::PartitionId;
use crate::runtime::{CompiledTransform, StageRows};
use crate::store::{ObjectStore, ObjectWriter};
use arrow_schema::SchemaRef;
use serde::Serialize;
use sluice_guest::BatchRef;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::Instant;

/// Where a pipeline's cleaned output lands.
#[derive(Debug, Clone)]
pub struct TableSpec {
    pub name: String,
    /// Needed for Parquet and for date partitions; JSON lines alone can do without.
    pub schema: Option<SchemaRef>,
    pub parquet: bool,
    pub jsonl: bool,
    /// Timestamp column whose UTC date partitions the table (`dt=YYYY-MM-DD`).
    pub partition_by: Option<String>,
    /// A Delta table: its Parquet files are committed to its log at each roll.
    pub delta: Option<super::delta::DeltaOptions>,
}

/// What a pipeline lands for each segment.
#[derive(Debug, Clone)]
pub struct SegmentSpec {
    pub pipeline: String,
    pub land_raw: bool,
    pub table: Option<TableSpec>,
}

/// A record that could not be processed, with everything needed to find and replay it.
#[derive(Debug, Serialize, serde::Deserialize, Clone, PartialEq)]
pub struct DeadLetter {
    pub pipeline: String,
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    /// The stage that refused it, numbered as the config has them (the
    /// transforms, the aggregate, then the actions), or whose output the table
    /// could not hold (kind `schema`). The host's own steps (the join, the
    /// router) name themselves in `transform`.
    pub stage: u32,
    pub transform: String,
    pub version: String,
    pub content_hash: String,
    /// Refused by a transform: `rejected`, `timeout`, `memory_limit`, `trap`,
    /// `malformed_output`; by the table: `schema`; by the windows: `late`,
    /// `malformed` (and the aggregate's own refusals); by the router:
    /// `no_event_time`, `no_join_key`; by the join: `unjoined`, `malformed`;
    /// by an action: `action_refused`, `action_gave_up`.
    pub kind: String,
    pub reason: String,
    pub timestamp: i64,
    /// The record key, if it is UTF-8.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub key: Option<String>,
    /// The record as it entered the failing stage, if it is UTF-8 ...
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub value: Option<String>,
    /// ... otherwise base64.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub value_base64: Option<String>,
}

impl DeadLetter {
    /// A record at `offset` of `partition` that `component` (stage `stage` of
    /// `pipeline`) refused or failed on; timestamp, key and value are set by the caller.
    pub fn refused(pipeline: &str, partition: &PartitionId, offset: u64, stage: u32, component: &CompiledTransform, kind: &str, reason: &str) -> Self {
        let d = component.descriptor();
        DeadLetter {
            version: d.version.clone(),
            content_hash: component.content_hash().to_owned(),
            ..Self::by_host(pipeline, partition, offset, stage, &d.name, kind, reason)
        }
    }

    /// A record at `offset` of `partition` that the host's own step `what`
    /// (stage `stage` of `pipeline`: a join, keying for an aggregate) could not take.
    pub fn by_host(pipeline: &str, partition: &PartitionId, offset: u64, stage: u32, what: &str, kind: &str, reason: &str) -> Self {
        DeadLetter {
            pipeline: pipeline.to_owned(),
            topic: partition.topic.to_string(),
            partition: partition.partition,
            offset,
            stage,
            transform: what.to_owned(),
            version: String::new(),
            content_hash: String::new(),
            kind: kind.to_owned(),
            reason: reason.to_owned(),
            timestamp: 0,
            key: None,
            value: None,
            value_base64: None,
        }
    }

    /// Take the timestamp and (UTF-8) key of the record it stands for.
    pub fn with_record(mut self, record: &sluice_guest::Record<'_>) -> Self {
        self.timestamp = record.timestamp;
        self.key = (!record.key.is_empty()).then(|| String::from_utf8_lossy(record.key).into_owned());
        self
    }

    pub fn set_value(&mut self, bytes: &[u8]) {
        match std::str::from_utf8(bytes) {
            Ok(s) => self.value = Some(s.to_owned()),
            Err(_) => {
                use base64::Engine;
                self.value_base64 = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
            }
        }
    }
}

/// What a finished segment wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SegmentSummary {
    pub objects: Vec<String>,
    /// The Parquet table files among `objects`.
    pub table_files: Vec<TableFile>,
    pub bytes: u64,
    pub raw_records: u64,
    pub table_rows: u64,
    pub dead_letters: u64,
}

pub struct Segment {
    pub partition: PartitionId,
    pub start: u64,
    /// Offset after the last input record included.
    pub end: u64,
    pub input_records: u64,
    pub input_bytes: u64,
    pub opened: Instant,
    /// `(first offset, transform chain content hashes)` in offset order.
    pub versions: Vec<(u64, Vec<String>)>,
    raw: Option<(String, Box<dyn ObjectWriter>)>,
    /// By Hive partition: key, object, rows written.
    parquet: BTreeMap<Option<String>, (String, ParquetObject, u64)>,
    jsonl: BTreeMap<Option<String>, (String, Box<dyn ObjectWriter>)>,
    dead: Option<(String, Box<dyn ObjectWriter>)>,
    summary: SegmentSummary,
    /// Inserted before a table file's extension, e.g. `replay-0000000042.`.
    table_tag: String,
    /// Whether finishing makes the table files visible (see [`Segment::without_table_files`]).
    keep_table: bool,
}

impl Segment {
    pub fn new(partition: PartitionId, start: u64) -> Self {
        Segment {
            partition,
            start,
            end: start,
            input_records: 0,
            input_bytes: 0,
            opened: Instant::now(),
            versions: Vec::new(),
            raw: None,
            parquet: BTreeMap::new(),
            jsonl: BTreeMap::new(),
            dead: None,
            summary: SegmentSummary::default(),
            table_tag: String::new(),
            keep_table: true,
        }
    }

    /// Write the table rows as usual (rows the table refuses still become dead
    /// letters) but abandon the table files at finish: for a replayed roll whose
    /// files a Delta log already references, which must not be replaced.
    pub fn without_table_files(mut self) -> Self {
        self.keep_table = false;
        self
    }

    /// [`Segment::without_table_files`], for a segment already open.
    pub fn drop_table_files(&mut self) {
        self.keep_table = false;
    }

    /// Name this segment's table files `<topic>+<p>+<start>.<tag>.<ext>`: for
    /// output that does not come from the regular pass over the input (replays).
    pub fn with_table_tag(mut self, tag: &str) -> Self {
        self.table_tag = format!("{tag}.");
        self
    }

    /// Bytes held in open objects (what rolling by size measures).
    pub fn buffered_bytes(&self) -> u64 {
        self.raw.as_ref().map_or(0, |(_, w)| w.written())
            + self.parquet.values().map(|(_, p, _)| p.bytes()).sum::<u64>()
            + self.jsonl.values().map(|(_, w)| w.written()).sum::<u64>()
            + self.dead.as_ref().map_or(0, |(_, w)| w.written())
    }

    /// Land input records as they came, one JSON value per line.
    pub fn write_raw(&mut self, store: &dyn ObjectStore, input: &BatchRef<'_>) -> io::Result<()> {
        if self.raw.is_none() {
            let key = layout::raw_object(&self.partition, self.start);
            self.raw = Some((key.clone(), store.create(&key)?));
        }
        let (_, w) = self.raw.as_mut().expect("opened above");
        for r in input.iter() {
            write_line(w.as_mut(), r.value)?;
        }
        self.summary.raw_records += input.len() as u64;
        Ok(())
    }

    /// Land transform output in the table. Returns the output records that do
    /// not fit the table's schema (index into `output`, reason): they become dead letters.
    pub fn write_table(&mut self, store: &dyn ObjectStore, table: &TableSpec, output: &StageRows) -> io::Result<Vec<(u32, String)>> {
        if output.is_empty() {
            return Ok(Vec::new());
        }
        let Some(schema) = &table.schema else {
            // No schema: JSON lines exactly as the transform wrote them (or its columns, rendered).
            let records = output.to_json();
            let w = self.jsonl_object(store, table, None)?;
            for r in records.as_ref().as_ref().iter() {
                write_line(w, r.value)?;
            }
            self.summary.table_rows += output.len() as u64;
            return Ok(Vec::new());
        };
        let (batch, misfits) = match output {
            StageRows::Json(records) => decode_json(schema, &records.as_ref()),
            StageRows::Columns(c) => fit_columns(schema, &c.batch),
        };
        let Some(batch) = batch else { return Ok(misfits) };
        let parts = match &table.partition_by {
            Some(col) => split_by_date(&batch, col).map_err(io::Error::other)?,
            None => vec![(String::new(), batch)],
        };
        for (hive, part) in parts {
            let hive = (!hive.is_empty()).then_some(hive);
            if table.parquet {
                if !self.parquet.contains_key(&hive) {
                    let key = layout::table_object(&table.name, hive.as_deref(), &self.partition, self.start, &format!("{}parquet", self.table_tag));
                    let object = ParquetObject::new(store.create(&key)?, schema.clone()).map_err(io::Error::other)?;
                    self.parquet.insert(hive.clone(), (key, object, 0));
                }
                let (_, object, rows) = self.parquet.get_mut(&hive).expect("inserted above");
                object.write(&part).map_err(io::Error::other)?;
                *rows += part.num_rows() as u64;
            }
            if table.jsonl {
                let w = self.jsonl_object(store, table, hive.clone())?;
                let mut lines = arrow_json::LineDelimitedWriter::new(w);
                lines.write(&part).map_err(io::Error::other)?;
                lines.finish().map_err(io::Error::other)?;
            }
            self.summary.table_rows += part.num_rows() as u64;
        }
        Ok(misfits)
    }

    fn jsonl_object(&mut self, store: &dyn ObjectStore, table: &TableSpec, hive: Option<String>) -> io::Result<&mut dyn ObjectWriter> {
        if !self.jsonl.contains_key(&hive) {
            let key = layout::table_object(&table.name, hive.as_deref(), &self.partition, self.start, &format!("{}json", self.table_tag));
            let object = store.create(&key)?;
            self.jsonl.insert(hive.clone(), (key, object));
        }
        Ok(self.jsonl.get_mut(&hive).expect("inserted above").1.as_mut())
    }

    pub fn write_dead_letters(&mut self, store: &dyn ObjectStore, pipeline: &str, letters: &[DeadLetter]) -> io::Result<()> {
        if letters.is_empty() {
            return Ok(());
        }
        if self.dead.is_none() {
            let key = layout::dead_letter_object(pipeline, &self.partition, self.start);
            self.dead = Some((key.clone(), store.create(&key)?));
        }
        let (_, w) = self.dead.as_mut().expect("opened above");
        let mut line = Vec::with_capacity(512);
        for d in letters {
            line.clear();
            serde_json::to_writer(&mut line, d).map_err(io::Error::other)?;
            line.push(b'\n');
            w.write_all(&line)?;
        }
        self.summary.dead_letters += letters.len() as u64;
        Ok(())
    }

    /// Make every object of the segment durable and visible. `lineage` (which
    /// transform versions made it) goes into each object's metadata.
    pub fn finish(mut self, lineage: &[(String, String)]) -> io::Result<SegmentSummary> {
        let mut summary = self.summary;
        let done = |key: String, w: Box<dyn ObjectWriter>, summary: &mut SegmentSummary| -> io::Result<()> {
            summary.bytes += w.written();
            w.finish(lineage)?;
            crate::failpoint::hit("segment.object_finished");
            summary.objects.push(key);
            Ok(())
        };
        if let Some((key, w)) = self.raw {
            done(key, w, &mut summary)?;
        }
        if !self.keep_table {
            // Dropped unfinished: never visible.
            self.parquet.clear();
            self.jsonl.clear();
            summary.table_rows = 0;
        }
        for (hive, (key, object, rows)) in self.parquet {
            let w = object.close(lineage).map_err(io::Error::other)?;
            let bytes = w.written();
            done(key.clone(), w, &mut summary)?;
            summary.table_files.push(TableFile { key, hive, bytes, rows });
        }
        for (_, (key, w)) in self.jsonl {
            done(key, w, &mut summary)?;
        }
        if let Some((key, w)) = self.dead {
            done(key, w, &mut summary)?;
        }
        Ok(summary)
    }
}

/// One value per line. A value spanning lines (pretty-printed JSON from a
/// producer) is compacted so the file stays one record per line.
fn write_line(w: &mut dyn ObjectWriter, value: &[u8]) -> io::Result<()> {
    match crate::jsonl::one_line(value) {
        Ok(line) => w.write_all(&line)?,
        // Not JSON and spanning lines: kept as a JSON string, still one line.
        Err(_) => w.write_all(&serde_json::to_vec(&String::from_utf8_lossy(value)).map_err(io::Error::other)?)?,
    }
    w.write_all(b"\n")
}
