//! Helpers for the end-to-end tests: run the real binary, read what landed.

use anyhow::Context;
use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;
use sluice::source::{PartitionId, Source};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A `sluice serve` process.
pub struct Server {
    child: Option<Child>,
    pub base_url: String,
}

impl Server {
    /// Start `<exe> serve --config <config>` with extra environment, and wait until it answers.
    /// `exe` is `env!("CARGO_BIN_EXE_sluice-under-test")`, which cargo defines for integration tests only.
    pub fn start(exe: &str, config: &Path, port: u16, env: &[(&str, &str)]) -> anyhow::Result<Server> {
        let mut cmd = Command::new(exe);
        cmd.args(["serve", "--config"]).arg(config).args(["--listen", &format!("127.0.0.1:{port}")]);
        cmd.env("RUST_LOG", "warn").stdout(Stdio::null()).stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().context("spawning sluice")?;
        let server = Server { child: Some(child), base_url: format!("http://127.0.0.1:{port}") };
        server.wait_healthy(Duration::from_secs(60))?;
        Ok(server)
    }

    fn wait_healthy(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let client = reqwest::blocking::Client::new();
        while Instant::now() < deadline {
            if client.get(format!("{}/health", self.base_url)).send().is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        anyhow::bail!("sluice did not answer /health within {timeout:?}")
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL: no cleanup of any kind.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the orderly shutdown; returns whether it exited successfully.
    pub fn terminate(&mut self) -> anyhow::Result<bool> {
        let Some(mut c) = self.child.take() else { return Ok(false) };
        #[allow(unsafe_code)]
        // SAFETY: sending a signal to our own child process by its pid.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        Ok(c.wait()?.success())
    }

    /// Wait for the process to exit by itself (e.g. a crash plan aborted it).
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !self.alive() {
                self.child = None;
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Poll `/status` until every pipeline has zero lag.
    pub fn wait_caught_up(&self, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        let client = reqwest::blocking::Client::new();
        loop {
            let status: Value = client.get(format!("{}/status", self.base_url)).send()?.json()?;
            let done = status.as_object().is_some_and(|m| {
                m.values().all(|p| p["partitions"].as_array().is_some_and(|ps| !ps.is_empty() && ps.iter().all(|x| x["lag"] == 0)))
            });
            if done {
                return Ok(status);
            }
            if Instant::now() > deadline {
                anyhow::bail!("pipelines did not catch up: {status}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// How many input partitions (Kafka partitions, Kinesis shards) the pipeline
    /// `pipeline` holds now, as `/status` says; 0 when the process does not answer.
    pub fn owned_partitions(&self, pipeline: &str) -> usize {
        reqwest::blocking::get(format!("{}/status", self.base_url))
            .and_then(|r| r.json::<Value>())
            .map_or(0, |s| s[pipeline]["partitions"].as_array().map_or(0, Vec::len))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Holds off the other tests of the same test binary while one runs: tests that
/// start a broker and sluice processes share the machine's two cores, and group
/// and lease handovers time out when another test's processes starve them.
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Check `done` every 200 ms until it holds; panics after `timeout`, naming `what`.
pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One `[[pipeline]]` section per kind: it reads `topic(kind)`, cleans with
/// `clean-<kind>`, lands raw and the table `<kind>`; `extra` goes into each.
pub fn cleaning_pipelines(kinds: &[&str], topic: impl Fn(&str) -> String, extra: &str) -> String {
    kinds
        .iter()
        .map(|kind| {
            format!(
                "\n[[pipeline]]\nname = \"{kind}\"\ntopics = [\"{}\"]\ntransforms = [\"clean-{kind}\"]\nland_raw = true\ntable = {{ name = \"{kind}\" }}\n{extra}\n",
                topic(kind)
            )
        })
        .collect()
}

/// A config with one topic `t.pin` (3 partitions) and one pipeline `pin`
/// cleaning it into raw + table; `server` lines go under `[server]`, `pipeline`
/// lines are appended to the pipeline's section.
pub fn pin_config(data_dir: &Path, server: &str, pipeline: &str) -> String {
    format!(
        "data_dir = \"{}\"\n[server]\n{server}\n[log]\ntopics = [\"t.pin\"]\npartitions = 3\n\n[[pipeline]]\nname = \"pin\"\ntopics = [\"t.pin\"]\ntransforms = [\"clean-pin\"]\nland_raw = true\ntable = {{ name = \"pin\" }}\n{pipeline}\n",
        data_dir.display()
    )
}

/// Produce `values` to `topic` through the REST Proxy endpoint at `base`
/// (`http://host:port`); panics unless the records were stored.
pub async fn produce(base: &str, topic: &str, values: impl IntoIterator<Item = Value>) {
    let records: Vec<Value> = values.into_iter().map(|v| serde_json::json!({ "value": v })).collect();
    let resp = reqwest::Client::new()
        .post(format!("{base}/topics/{topic}"))
        .header("content-type", "application/vnd.kafka.json.v2+json")
        .body(serde_json::json!({ "records": records }).to_string())
        .send()
        .await
        .expect("ingest reachable");
    let status = resp.status();
    assert_eq!(status, 200, "{}", resp.text().await.unwrap_or_default());
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

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
    use arrow_array::{Array, Int64Array, StringArray};
    let mut out = Vec::new();
    for b in batches {
        let col = b.column(b.schema().index_of(name).expect("column exists"));
        if let Some(a) = col.as_any().downcast_ref::<Int64Array>() {
            out.extend((0..a.len()).map(|i| if a.is_null(i) { Value::Null } else { a.value(i).into() }));
        } else if let Some(a) = col.as_any().downcast_ref::<StringArray>() {
            out.extend((0..a.len()).map(|i| if a.is_null(i) { Value::Null } else { a.value(i).into() }));
        } else {
            panic!("column {name} is {}", col.data_type());
        }
    }
    out
}

/// An S3-compatible server (s3s-fs, installed by scripts/test.sh) on 127.0.0.1,
/// stopped by PID when dropped.
pub struct S3Server {
    child: Option<Child>,
    pub port: u16,
    root: PathBuf,
}

pub const S3_ACCESS_KEY: &str = "sluice-test-access";
pub const S3_SECRET_KEY: &str = "sluice-test-secret-key";

impl S3Server {
    pub fn start(root: &Path, port: u16) -> anyhow::Result<S3Server> {
        std::fs::create_dir_all(root)?;
        let mut s = S3Server { child: None, port, root: root.to_path_buf() };
        s.resume()?;
        Ok(s)
    }

    /// Start (again) on the same port and data.
    pub fn resume(&mut self) -> anyhow::Result<()> {
        let child = Command::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string(), "--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
            .arg(&self.root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting s3s-fs (scripts/test.sh installs it: cargo install s3s-fs --version 0.14.1 --features binary --locked)")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "s3s-fs did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Stop the server (the data stays for `resume`).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A client with the test credentials.
    pub fn client(&self) -> aws_sdk_s3::Client {
        let creds = aws_sdk_s3::config::Credentials::new(S3_ACCESS_KEY, S3_SECRET_KEY, None, None, "test");
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(self.endpoint())
            .force_path_style(true)
            .credentials_provider(creds)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// The objects under `prefix` in `bucket`, with their contents.
    pub async fn objects(&self, bucket: &str, prefix: &str) -> BTreeMap<String, Vec<u8>> {
        let c = self.client();
        let mut out = BTreeMap::new();
        let list = c.list_objects_v2().bucket(bucket).prefix(prefix).send().await.expect("list");
        for o in list.contents() {
            let key = o.key().expect("key").to_owned();
            let body = c.get_object().bucket(bucket).key(&key).send().await.expect("get").body.collect().await.expect("body").into_bytes();
            out.insert(key, body.to_vec());
        }
        out
    }

    /// What a sluice process needs in its environment to reach this server.
    pub fn env(&self) -> Vec<(&'static str, &'static str)> {
        vec![("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY), ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY), ("AWS_REGION", "us-east-1"), ("AWS_EC2_METADATA_DISABLED", "true")]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
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

/// A Kafka-protocol broker (tansu, in-memory) on 127.0.0.1, installed by
/// `scripts/kafka-broker.sh install` (which `scripts/test.sh` runs); stopped by PID on drop.
/// Wait until a server we started accepts connections on `port`.
fn wait_listening(port: u16, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "{what} did not start listening on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Raw records landed under `topics/<topic>` (visible objects only).
pub fn raw_count(landing: &Path, topic: &str) -> usize {
    files(&landing.join("topics").join(topic)).iter().map(|f| std::fs::read_to_string(f).map_or(0, |t| t.lines().count())).sum()
}

/// Fetch from `offset` of `p` until the source hands out something (readers
/// pace their calls, group members join first), as `(offset, value)` pairs.
pub fn fetch_some(source: &mut dyn Source, p: &PartitionId, offset: u64, max: usize, timeout: Duration) -> Vec<(u64, Vec<u8>)> {
    let deadline = Instant::now() + timeout;
    loop {
        let fetched = source.fetch(p, offset, max).expect("fetch");
        if !fetched.offsets.is_empty() {
            let batch = fetched.batch.as_ref();
            return fetched.offsets.iter().enumerate().map(|(i, o)| (*o, batch.get(i).value.to_vec())).collect();
        }
        assert!(Instant::now() < deadline, "nothing to read from {p} at {offset}");
        source.wait(Duration::from_millis(100));
    }
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

/// Where the project's scripts install test servers (`scripts/*.sh install`).
fn tools_dir() -> PathBuf {
    std::env::var_os("SLUICE_TOOLS_DIR").map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"));
        cache.join("sluice")
    })
}

pub struct KafkaBroker {
    child: Option<Child>,
    bin: PathBuf,
    pub port: u16,
}

impl KafkaBroker {
    /// Where `scripts/kafka-broker.sh` installs tansu.
    fn binary() -> PathBuf {
        if let Some(p) = std::env::var_os("SLUICE_TANSU") {
            return PathBuf::from(p);
        }
        tools_dir().join("bin/tansu")
    }

    pub fn start() -> anyhow::Result<KafkaBroker> {
        let bin = Self::binary();
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&bin)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url, "--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {} (install it with: bash scripts/kafka-broker.sh install)", bin.display()))?;
        let broker = KafkaBroker { child: Some(child), bin, port };
        wait_listening(port, "tansu")?;
        Ok(broker)
    }

    /// `host:port`, as `kafka.brokers` wants it.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn create_topic(&self, name: &str, partitions: u32) -> anyhow::Result<()> {
        let out = Command::new(&self.bin)
            .args(["topic", "create", name, "--partitions", &partitions.to_string(), "--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .output()?;
        anyhow::ensure!(out.status.success(), "creating topic {name}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(())
    }

    /// Freeze (SIGSTOP) or thaw (SIGCONT) the broker: an outage that keeps its in-memory data.
    pub fn freeze(&self, frozen: bool) {
        if let Some(c) = &self.child {
            #[allow(unsafe_code)]
            // SAFETY: sending a signal to our own child process by its pid.
            unsafe {
                libc::kill(c.id() as i32, if frozen { libc::SIGSTOP } else { libc::SIGCONT });
            }
        }
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        self.freeze(false);
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A Kinesis-compatible server (kinesalite, installed by `scripts/kinesis-server.sh
/// install`) on 127.0.0.1, in memory, stopped by PID when dropped.
pub struct KinesisServer {
    child: Option<Child>,
    pub port: u16,
}

/// Kinesis-compatible servers take any credentials; the SDK needs some to sign.
pub const KINESIS_ENV: [(&str, &str); 4] =
    [("AWS_ACCESS_KEY_ID", "sluice-test"), ("AWS_SECRET_ACCESS_KEY", "sluice-test-secret"), ("AWS_REGION", "us-east-1"), ("AWS_EC2_METADATA_DISABLED", "true")];

impl KinesisServer {
    pub fn start() -> anyhow::Result<KinesisServer> {
        let launcher = tools_dir().join("kinesalite/serve.js");
        let port = free_port();
        let child = Command::new("node")
            .arg(&launcher)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting kinesalite ({}; install it with: bash scripts/kinesis-server.sh install)", launcher.display()))?;
        let server = KinesisServer { child: Some(child), port };
        wait_listening(port, "kinesalite")?;
        Ok(server)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A client of this server (or of `endpoint`, e.g. a proxy in front of it).
    pub async fn client(endpoint: &str) -> sluice::source::kinesis::Kinesis {
        let config = sluice::source::kinesis::KinesisConfig::for_endpoint(Some(endpoint.to_owned()));
        sluice::source::kinesis::Kinesis::connect_as(&config, KINESIS_ENV[0].1, KINESIS_ENV[1].1).await
    }
}

impl Drop for KinesisServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An HTTP/1.1 proxy on 127.0.0.1 in front of a Kinesis server that refuses
/// some calls, as Kinesis does when a shard's read or write limit is exceeded
/// (`ProvisionedThroughputExceededException`) or when it fails inside
/// (`InternalFailure`). `refuse(operation, n)` gives the HTTP status and
/// exception name for the n-th call of an operation (`GetRecords`,
/// `PutRecords`, …), or `None` to pass it on.
pub struct ThrottlingProxy {
    pub port: u16,
    /// Calls refused so far.
    pub refused: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

pub type Refusal = fn(&str, u64) -> Option<(u16, &'static str)>;

impl ThrottlingProxy {
    pub fn start(upstream: String, refuse: Refusal) -> anyhow::Result<ThrottlingProxy> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let refused = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let calls = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::<String, u64>::new()));
        let counter = refused.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (upstream, calls, counter) = (upstream.clone(), calls.clone(), counter.clone());
                std::thread::spawn(move || {
                    let _ = proxy_connection(conn, &upstream, &calls, &counter, refuse);
                });
            }
        });
        Ok(ThrottlingProxy { port, refused })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn proxy_connection(
    conn: std::net::TcpStream,
    upstream: &str,
    calls: &std::sync::Mutex<BTreeMap<String, u64>>,
    refused: &std::sync::atomic::AtomicU64,
    refuse: Refusal,
) -> anyhow::Result<()> {
    use std::io::{BufRead, BufReader, Read, Write};
    let client = reqwest::blocking::Client::new();
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut headers = Vec::new();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            let line = line.trim_end().to_owned();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse()?;
                }
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let target = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("x-amz-target")).map(|(_, v)| v.clone()).unwrap_or_default();
        let operation = target.rsplit('.').next().unwrap_or("").to_owned();
        let n = {
            let mut c = calls.lock().unwrap_or_else(|e| e.into_inner());
            let n = c.entry(operation.clone()).or_default();
            *n += 1;
            *n
        };
        let (status, reply) = if let Some((status, exception)) = refuse(&operation, n) {
            refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            (status, format!(r#"{{"__type":"{exception}","message":"refused by the test proxy"}}"#).into_bytes())
        } else {
            let path = request_line.split_whitespace().nth(1).unwrap_or("/");
            let mut req = client.post(format!("{upstream}{path}")).body(body);
            for (k, v) in &headers {
                if !["host", "content-length", "connection"].contains(&k.to_ascii_lowercase().as_str()) {
                    req = req.header(k.as_str(), v.as_str());
                }
            }
            let resp = req.send()?;
            let status = resp.status().as_u16();
            (status, resp.bytes()?.to_vec())
        };
        write!(out, "HTTP/1.1 {status} X\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\n\r\n", reply.len())?;
        out.write_all(&reply)?;
        out.flush()?;
    }
}
