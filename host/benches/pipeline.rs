//! Embedded log → Wasm clean-pin → Parquet: records/s and peak RSS.
//!
//! `cargo bench -p sluice --bench pipeline [-- --records N] [--raw] [--output] [--delta] [--input-jsonl FILE] [--s3] [--kafka | --kinesis] [--cold]`
//!
//! `--delta` lands the table as a Delta table (each roll's files committed to
//! its log with a txn action) instead of plain Parquet. `BENCH_ROLL_RECORDS=N`
//! rolls every N input records per partition (default 250000), to see what a
//! commit per roll costs at a streaming cadence.
//!
//! `BENCH_TRANSFORM=clean-pin-sql` runs the SQL cleaning stage instead of the
//! Wasm clean-pin (any transform name works).
//!
//! `--output` also writes the cleaned pins to an output topic of the embedded
//! log (`[pipeline.output]`), as a pipeline feeding consumers downstream does.
//!
//! `--raw` lands the raw records too (JSON lines beside the Parquet table, the
//! shape of a production pipeline); `--input-jsonl FILE` also writes the
//! generated pins there, one per line, so the peers in `../shared/peers/`
//! (Polars, DuckDB) can be run on exactly the same records.
//!
//! With `--s3` the landing goes to an s3s-fs server (started by the bench on
//! 127.0.0.1, from `cargo install s3s-fs`) instead of a local directory, and
//! the report adds MB/s. With `--kafka` the input is a 3-partition topic on a
//! tansu broker the bench starts on 127.0.0.1 (`scripts/kafka-broker.sh install`),
//! read by the pipeline's consumer group instead of the embedded log. With
//! `--kinesis` it is a 3-shard stream on kinesalite started by the bench
//! (`scripts/kinesis-server.sh install`), read under shard leases.
//!
//! The input is filled by one child process and drained by another, so the
//! reported peak RSS (VmHWM) belongs to the pipeline alone, not to generating
//! the input. The sandbox is on (64 MiB cap, 2 s deadline), raw landing off:
//! the job measured is the cleaning job.
//!
//! The load phase also compiles the built-in transforms into the data
//! directory's cache, as the first start of an appliance does once; the run is
//! then a restart, as every later one is. `--cold` leaves the compiling to the
//! run, so its peak RSS includes the compiler's (15–20 MiB more).
//!
//! `RUST_LOG=info` shows the run's own log (consumer-group joins, lease rounds,
//! rolls) on stderr.
//!
//! The defaults are the product's: 3 partitions (`log.partitions`) and the
//! default worker count. `BENCH_PARTITIONS=N` and `BENCH_WORKERS=N` override
//! them, to compare layouts side by side. `BENCH_KAFKA_EXTRA` is appended to
//! the `[kafka]` section, to compare librdkafka settings the same way, e.g.
//! `BENCH_KAFKA_EXTRA=$'[consumer_properties]\n"fetch.wait.max.ms" = "10"'`.

#[path = "support/mod.rs"]
mod support;

use sluice::config::Config;
use sluice::emulate::data::Generator;
use sluice::ingest::KafkaProducer;
use sluice::ingest::KinesisProducer;
use sluice::log::EmbeddedLog;
use sluice::pipeline::config::{PipelineConfig, RollConfig, TableConfig, TableFormat};
use sluice::pipeline::output::{EmbeddedOutput, OutputConfig};
use sluice::pipeline::{self, PipelineControl, Supervisor};
use sluice::runtime::Runtime;
use sluice::runtime::registry::Registry;
use sluice::source::Source;
use sluice::source::embedded::EmbeddedSource;
use sluice::source::kafka::{KafkaConfig, KafkaSource};
use sluice::source::kinesis::{KinesisConfig, KinesisSource};
use sluice::store::local::LocalStore;
use sluice_guest::BatchBuf;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOPIC: &str = "bench.pin";

/// The output topic of `--output`.
const OUTPUT_TOPIC: &str = "bench.pin-clean";

fn config(dir: &Path) -> Config {
    let land_raw = std::env::var_os("BENCH_LAND_RAW").is_some();
    let output = std::env::var_os("BENCH_OUTPUT").is_some();
    let format = if std::env::var_os("BENCH_DELTA").is_some() { TableFormat::Delta } else { TableFormat::Parquet };
    let roll_records = std::env::var("BENCH_ROLL_RECORDS").map_or(250_000, |r| r.parse().expect("BENCH_ROLL_RECORDS is a number"));
    let mut c = Config::demo(dir.to_path_buf(), "bench");
    c.log.topics = vec![TOPIC.into(), OUTPUT_TOPIC.into()];
    if let Ok(p) = std::env::var("BENCH_PARTITIONS") {
        c.log.partitions = p.parse().expect("BENCH_PARTITIONS is a number");
    }
    c.pipelines = vec![PipelineConfig {
        name: "pin".into(),
        source: None,
        topics: vec![TOPIC.into()],
        transforms: vec![transform()],
        land_raw,
        table: Some(TableConfig { name: "pin".into(), formats: vec![format], schema: None, columns: None, partition_by: None, delta: None }),
        batch: Default::default(),
        roll: RollConfig { max_records: roll_records, max_bytes: 64 << 20, max_age_ms: 60_000, ..Default::default() },
        workers: std::env::var("BENCH_WORKERS").ok().map(|w| w.parse().expect("BENCH_WORKERS is a number")),
        auto_rollback: Default::default(),
        aggregate: None,
        join: None,
        watermark: Default::default(),
        actions: Vec::new(),
        output: output.then(|| OutputConfig { topic: OUTPUT_TOPIC.into(), to: None }),
    }];
    c
}

/// The cleaning stage: `BENCH_TRANSFORM` (e.g. `clean-pin-sql`), default the Wasm `clean-pin`.
fn transform() -> String {
    std::env::var("BENCH_TRANSFORM").unwrap_or_else(|_| "clean-pin".into())
}

fn kafka_config(brokers: &str) -> anyhow::Result<KafkaConfig> {
    Ok(toml::from_str(&format!(
        "brokers = \"{brokers}\"\nsession_timeout_ms = 6000\nheartbeat_interval_ms = 1000\n{}",
        std::env::var("BENCH_KAFKA_EXTRA").unwrap_or_default()
    ))?)
}

fn kinesis_config(endpoint: &str) -> KinesisConfig {
    let mut k = KinesisConfig::for_endpoint(Some(endpoint.to_owned()));
    k.idle_poll_ms = 200;
    k
}

/// The transform registry as the product opens it: built-ins compiled into, or
/// loaded from, the data directory's cache.
fn registry(c: &Config) -> anyhow::Result<Registry> {
    Registry::open(Runtime::new(c.sandbox.clone(), Some(c.data_dir.join("compiled")))?, c.data_dir.join("transforms"))
}

fn load(dir: &Path, records: u64, kafka: Option<String>, kinesis: Option<String>, precompile: bool, jsonl: Option<PathBuf>) -> anyhow::Result<()> {
    use std::io::Write;
    let mut jsonl = jsonl.map(|p| std::fs::File::create(&p).map(std::io::BufWriter::new)).transpose()?;
    let c = config(dir);
    if precompile {
        drop(registry(&c)?);
    }
    let log = EmbeddedLog::open(&c.data_dir.join("log.redb"), &c.log)?;
    let producer = kafka.map(|b| kafka_config(&b).and_then(|k| KafkaProducer::new(&k))).transpose()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let kinesis = kinesis.map(|e| rt.block_on(KinesisProducer::new(&kinesis_config(&e))));
    let g = Generator::new(3);
    let partitions = c.log.partitions;
    let mut n = 0u64;
    while n < records {
        let mut parts: Vec<(u32, BatchBuf)> = (0..partitions).map(|p| (p, BatchBuf::default())).collect();
        for _ in 0..30_000.min(records - n) {
            let row = g.row(g.pick(n));
            let value = serde_json::to_vec(&row.pin)?;
            if let Some(f) = jsonl.as_mut() {
                f.write_all(&value)?;
                f.write_all(b"\n")?;
            }
            parts[(n % partitions as u64) as usize].1.push(&value, b"", 0);
            n += 1;
        }
        match (&producer, &kinesis) {
            (Some(p), _) => drop(rt.block_on(p.append(TOPIC, &parts))?),
            (None, Some(k)) => {
                let keys: Vec<String> = (0..parts.iter().map(|(_, b)| b.len()).sum::<usize>()).map(|i| format!("{}", n as usize + i)).collect();
                let values: Vec<&[u8]> = parts
                    .iter()
                    .flat_map(|(_, b)| b.value_ends.iter().scan(0usize, |start, &end| Some(&b.values[std::mem::replace(start, end as usize)..end as usize])))
                    .collect();
                let records: Vec<(&[u8], &str)> = values.into_iter().zip(keys.iter().map(String::as_str)).collect();
                rt.block_on(k.put(TOPIC, &records))?;
            }
            (None, None) => drop(log.append_blocking(TOPIC, parts)?),
        }
    }
    log.close();
    if let Some(mut f) = jsonl {
        f.flush()?;
    }
    Ok(())
}

fn run(dir: &Path, s3_endpoint: Option<String>, kafka: Option<String>, kinesis: Option<String>, records: u64) -> anyhow::Result<()> {
    let mut c = config(dir);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let store: Arc<dyn sluice::store::ObjectStore> = match &s3_endpoint {
        Some(url) => {
            let s3 = sluice::store::s3::S3Config {
                bucket: "bench".into(),
                prefix: String::new(),
                region: Some("us-east-1".into()),
                endpoint_url: Some(url.clone()),
                force_path_style: true,
                part_size_mib: 8,
                max_attempts: 3,
                abort_incomplete_after_hours: 24,
            };
            c.landing.s3 = Some(s3.clone());
            Arc::new(rt.block_on(sluice::store::s3::S3Store::new(s3, rt.handle().clone()))?)
        }
        None => Arc::new(LocalStore::new(c.landing_dir())?),
    };
    let log = EmbeddedLog::open(&c.data_dir.join("log.redb"), &c.log)?;
    // Loads (or, with `--cold`, compiles) the built-ins before the clock starts.
    let registry = Arc::new(registry(&c)?);
    let p = &c.pipelines[0];
    let control = PipelineControl::load(&p.name, &p.transforms, registry, p.auto_rollback.clone(), &c.data_dir.join("state"))?;
    let stats = Arc::new(pipeline::PipelineStats::default());
    let n = pipeline::worker_count(p, c.log.partitions as usize);
    let mut workers = Vec::new();
    for w in 0..n {
        let source: Box<dyn Source> = match (&kafka, &kinesis) {
            (Some(brokers), _) => Box::new(KafkaSource::new(&kafka_config(brokers)?, "bench-pin", &format!("bench-{w}"), &p.topics, store.clone())?),
            (None, Some(endpoint)) => {
                Box::new(KinesisSource::new(&kinesis_config(endpoint), "pin", format!("bench-{w}"), &p.topics, store.clone())?.starting_with(n))
            }
            (None, None) => Box::new(EmbeddedSource::new(log.clone(), "pin", p.topics.clone())?.assigned(w, n)),
        };
        let output: Option<Box<dyn pipeline::output::OutputTopic>> = match &p.output {
            Some(_) => Some(Box::new(EmbeddedOutput::new(log.clone(), OUTPUT_TOPIC)?)),
            None => None,
        };
        workers.push(pipeline::build(p, pipeline::Part::Whole, control.clone(), source, store.clone(), stats.clone(), output)?);
    }
    let sup = Supervisor::new();
    sup.start(workers)?;
    // Timed from the first record read: a consumer group's first join is not throughput.
    while stats.snapshot().records_in == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let started = Instant::now();
    // Rolls happen when the input is drained (stop) so every record is landed and committed.
    while stats.snapshot().records_in < records {
        std::thread::sleep(Duration::from_millis(5));
    }
    sup.shutdown()?;
    let secs = started.elapsed().as_secs_f64();
    let snap = stats.snapshot();
    let rss = support::peak_rss_kib();
    println!(
        "{{\"source\": \"{}\", \"landing\": \"{}\", \"mb_per_s\": {:.1}, \"workers\": {n}, \"records\": {}, \"table_rows\": {}, \"seconds\": {secs:.3}, \"records_per_s\": {:.0}, \"peak_rss_mib\": {:.1}}}",
        if kafka.is_some() {
            "kafka"
        } else if kinesis.is_some() {
            "kinesis"
        } else {
            "embedded"
        },
        if s3_endpoint.is_some() { "s3" } else { "local" },
        snap.bytes_landed as f64 / secs / 1e6,
        snap.records_in,
        snap.table_rows,
        snap.records_in as f64 / secs,
        rss as f64 / 1024.0
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let flag = |name: &str| args.iter().any(|a| a == name);
    match arg("--phase").as_deref() {
        Some("load") => {
            return load(
                Path::new(&arg("--dir").expect("--dir")),
                arg("--records").expect("--records").parse()?,
                arg("--kafka"),
                arg("--kinesis"),
                !flag("--cold"),
                arg("--input-jsonl").map(PathBuf::from),
            );
        }
        Some("run") => {
            // `RUST_LOG=info` shows the pipeline's own log (group joins, rolls) on stderr.
            if std::env::var_os("RUST_LOG").is_some() {
                tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_writer(std::io::stderr).init();
            }
            return run(
                Path::new(&arg("--dir").expect("--dir")),
                arg("--s3-endpoint"),
                arg("--kafka"),
                arg("--kinesis"),
                arg("--records").expect("--records").parse()?,
            );
        }
        _ => {}
    }
    let records: u64 = arg("--records").map_or(Ok(1_000_000), |r| r.parse())?;
    let dir = tempfile::tempdir()?;
    let path: PathBuf = dir.path().into();
    let me = std::env::current_exe()?;
    let (_broker, input) = if flag("--kafka") {
        let (broker, address) = start_kafka()?;
        (Some(KillOnDrop(broker)), vec!["--kafka".to_owned(), address])
    } else if flag("--kinesis") {
        let (server, endpoint) = start_kinesis()?;
        (Some(KillOnDrop(server)), vec!["--kinesis".to_owned(), endpoint])
    } else {
        (None, vec![])
    };
    let kinesis_env =
        [("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench-secret"), ("AWS_REGION", "us-east-1"), ("AWS_EC2_METADATA_DISABLED", "true")];
    let loaded = Instant::now();
    let cold: &[&str] = if flag("--cold") { &["--cold"] } else { &[] };
    let jsonl: Vec<String> = arg("--input-jsonl").map(|p| vec!["--input-jsonl".to_owned(), p]).unwrap_or_default();
    // An environment variable rather than an argument: `config` is shared by both phases.
    let mut raw_env: Vec<(&str, &str)> = if flag("--raw") { vec![("BENCH_LAND_RAW", "1")] } else { vec![] };
    if flag("--output") {
        raw_env.push(("BENCH_OUTPUT", "1"));
    }
    if flag("--delta") {
        raw_env.push(("BENCH_DELTA", "1"));
    }
    let status = Command::new(&me)
        .args(["--phase", "load", "--records", &records.to_string()])
        .args(&input)
        .args(&jsonl)
        .args(cold)
        .envs(kinesis_env)
        .envs(raw_env.iter().copied())
        .arg("--dir")
        .arg(&path)
        .status()?;
    anyhow::ensure!(status.success(), "loading the input failed");
    eprintln!("loaded {records} pins in {:.1}s", loaded.elapsed().as_secs_f64());
    let mut run = Command::new(&me);
    run.args(["--phase", "run", "--records", &records.to_string()]).args(&input).envs(kinesis_env).envs(raw_env.iter().copied()).arg("--dir").arg(&path);
    let _s3 = if flag("--s3") {
        let (server, url) = start_s3(&path)?;
        run.args(["--s3-endpoint", &url]);
        Some(KillOnDrop(server))
    } else {
        None
    };
    let baseline = match input.as_slice() {
        [flag, endpoint] if flag == "--kinesis" => Some(kinesis_read_rate(endpoint, records)?),
        _ => None,
    };
    // Its report comes on stdout; its errors, and its log with RUST_LOG set, go straight to the terminal.
    let out = run.stderr(std::process::Stdio::inherit()).output()?;
    anyhow::ensure!(out.status.success(), "the pipeline run failed ({}; its errors are above)", out.status);
    let source = match input.first().map(String::as_str) {
        Some("--kafka") => "Kafka",
        Some("--kinesis") => "Kinesis",
        _ => "embedded log",
    };
    let start = if cold.is_empty() { "a restart: built-ins from the compiled cache" } else { "a first start: built-ins compiled" };
    let raw = format!("{}{}", if flag("--raw") { " + raw JSON lines" } else { "" }, if flag("--output") { " + output topic" } else { "" });
    let table = if flag("--delta") { "Delta" } else { "Parquet" };
    let stage = match transform().as_str() {
        "clean-pin" => "clean-pin 0.2.0 in Wasm".to_owned(),
        t if t.ends_with("-sql") => format!("{t} as SQL"),
        t => t.to_owned(),
    };
    print!("pipeline ({source} -> {stage} -> {table}{raw}, {start}): {}", String::from_utf8_lossy(&out.stdout));
    if let Some(rate) = baseline {
        println!("the Kinesis server alone (GetRecords of every shard, back to back, nothing else): {rate:.0} records/s");
    }
    Ok(())
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start tansu (in memory) on a free port and create the 3-partition input topic.
fn start_kafka() -> anyhow::Result<(std::process::Child, String)> {
    let out = Command::new("bash").arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/kafka-broker.sh")).arg("install").output()?;
    anyhow::ensure!(out.status.success(), "installing tansu: {}", String::from_utf8_lossy(&out.stderr));
    let bin = String::from_utf8(out.stdout)?.trim().to_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(&bin)
        .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url, "--storage-engine", "memory://tansu/"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "tansu did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let created = Command::new(&bin).args(["topic", "create", TOPIC, "--partitions", "3", "--broker", &url]).status()?;
    anyhow::ensure!(created.success(), "creating the topic failed");
    Ok((child, format!("127.0.0.1:{port}")))
}

/// Start kinesalite (in memory) on a free port and create the 3-shard input stream.
fn start_kinesis() -> anyhow::Result<(std::process::Child, String)> {
    let out = Command::new("bash").arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/kinesis-server.sh")).arg("install").output()?;
    anyhow::ensure!(out.status.success(), "installing kinesalite: {}", String::from_utf8_lossy(&out.stderr));
    let launcher = String::from_utf8(out.stdout)?.trim().to_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new("node").arg(&launcher).arg(port.to_string()).stdout(std::process::Stdio::null()).spawn()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "kinesalite did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let endpoint = format!("http://127.0.0.1:{port}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let kinesis = rt.block_on(sluice::source::kinesis::Kinesis::connect_as(&kinesis_config(&endpoint), "bench", "bench-secret"));
    rt.block_on(kinesis.ensure_stream(TOPIC, 3)).map_err(|e| anyhow::anyhow!("creating the stream: {e}"))?;
    Ok((child, endpoint))
}

/// How fast the server hands out the stream with nothing else running: the
/// bound on what any reader of it can do on this machine.
fn kinesis_read_rate(endpoint: &str, records: u64) -> anyhow::Result<f64> {
    use sluice::source::kinesis::Kinesis;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let kinesis = Kinesis::connect_as(&kinesis_config(endpoint), "bench", "bench-secret").await;
        let started = Instant::now();
        let mut read = 0u64;
        for shard in kinesis.list_shards(TOPIC).await? {
            let mut it = kinesis.shard_iterator(TOPIC, &shard.id, &sluice::source::kinesis::StartAt::TrimHorizon).await?;
            while let Some(i) = it {
                let batch = kinesis.get_records(&i, 10_000).await?;
                read += batch.records.len() as u64;
                if batch.records.is_empty() && batch.millis_behind_latest.unwrap_or(0) == 0 {
                    break;
                }
                it = batch.next_iterator;
            }
        }
        anyhow::ensure!(read == records, "read {read} records back, not {records}");
        Ok(read as f64 / started.elapsed().as_secs_f64())
    })
}

/// Start s3s-fs on a free port and create the `bench` bucket.
fn start_s3(dir: &Path) -> anyhow::Result<(std::process::Child, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let root = dir.join("s3");
    std::fs::create_dir_all(root.join("bench"))?; // s3s-fs keeps a bucket as a directory
    let child = Command::new("s3s-fs")
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--access-key", "bench", "--secret-key", "bench-secret"])
        .arg(&root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("starting s3s-fs (cargo install s3s-fs --version 0.14.1 --features binary --locked): {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "s3s-fs did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((child, format!("http://127.0.0.1:{port}")))
}
