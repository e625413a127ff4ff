//! Reading what landed: files, JSON lines, Parquet, and raw records by position.

use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Every visible file under `dir` (hidden in-progress files excluded), sorted.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if !e.file_name().to_string_lossy().starts_with('.') {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

/// Every line of every JSON-lines file under `dir`, parsed.
pub fn json_lines(dir: &Path) -> Vec<Value> {
    files(dir)
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .expect("readable")
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: bad line {l:?}: {e}", f.display())))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Every row group of every Parquet file under `dir`.
pub fn parquet_batches(dir: &Path) -> Vec<RecordBatch> {
    files(dir)
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "parquet"))
        .flat_map(|f| {
            let file = std::fs::File::open(f).expect("open parquet");
            let reader = ParquetRecordBatchReaderBuilder::try_new(file).expect("parquet footer").build().expect("reader");
            reader.map(|b| b.expect("row group")).collect::<Vec<_>>()
        })
        .collect()
}

/// One string or integer column of the batches, as JSON values (null for nulls).
pub fn column(batches: &[RecordBatch], name: &str) -> Vec<Value> {
    use arrow_array::{Array, Int64Array, StringArray, StringViewArray};
    let mut out = Vec::new();
    for b in batches {
        let col = b.column(b.schema().index_of(name).expect("column exists"));
        if let Some(a) = col.as_any().downcast_ref::<Int64Array>() {
            out.extend((0..a.len()).map(|i| if a.is_null(i) { Value::Null } else { a.value(i).into() }));
        } else if let Some(a) = col.as_any().downcast_ref::<StringArray>() {
            out.extend((0..a.len()).map(|i| if a.is_null(i) { Value::Null } else { a.value(i).into() }));
        } else if let Some(a) = col.as_any().downcast_ref::<StringViewArray>() {
            // DataFusion's query results.
            out.extend((0..a.len()).map(|i| if a.is_null(i) { Value::Null } else { a.value(i).into() }));
        } else {
            panic!("column {name} is {}", col.data_type());
        }
    }
    out
}

/// How often each value occurs.
pub fn multiset<T: Ord>(values: impl IntoIterator<Item = T>) -> BTreeMap<T, usize> {
    let mut m = BTreeMap::new();
    for v in values {
        *m.entry(v).or_default() += 1;
    }
    m
}

/// Raw records under `dir` by (partition, offset), checking on the way that the
/// objects of each partition tile it from offset 0 without gaps or overlaps.
pub fn raw_by_position(dir: &Path) -> BTreeMap<(u64, u64), Value> {
    let mut out = BTreeMap::new();
    let mut expected_start: BTreeMap<u64, u64> = BTreeMap::new();
    for f in files(dir) {
        let name = f.file_name().expect("name").to_string_lossy().into_owned();
        let parts: Vec<&str> = name.trim_end_matches(".json").rsplitn(3, '+').collect();
        let (start, partition): (u64, u64) = (parts[0].parse().expect("start offset"), parts[1].parse().expect("partition"));
        assert_eq!(parts[0].len(), 10, "offset is zero-padded to 10 digits: {name}");
        assert!(f.parent().expect("dir").ends_with(format!("partition={partition}")), "{}", f.display());
        let want = expected_start.entry(partition).or_insert(0);
        assert_eq!(start, *want, "{name}: objects must tile the partition without gaps or overlaps");
        let text = std::fs::read_to_string(&f).expect("read");
        for (i, line) in text.lines().enumerate() {
            out.insert((partition, start + i as u64), serde_json::from_str(line).expect("one JSON value per line"));
        }
        *want = start + text.lines().count() as u64;
    }
    out
}

/// Raw records landed under `topics/<topic>` (visible objects only).
pub fn raw_count(landing: &Path, topic: &str) -> usize {
    files(&landing.join("topics").join(topic)).iter().map(|f| std::fs::read_to_string(f).map_or(0, |t| t.lines().count())).sum()
}

/// Wait until at least `want` raw records of each topic have landed.
pub fn wait_raw(landing: &Path, want: &[(String, usize)], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let got: Vec<usize> = want.iter().map(|(t, _)| raw_count(landing, t)).collect();
        if got.iter().zip(want).all(|(g, (_, w))| g >= w) {
            return;
        }
        assert!(Instant::now() < deadline, "not landed in time: got {got:?}, want {want:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}
