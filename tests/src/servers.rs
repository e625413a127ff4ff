//! The real servers the tests talk to (an S3-compatible store, a Kafka-protocol
//! broker, a Kinesis-compatible server, a throttling proxy), started on
//! 127.0.0.1 and stopped by PID when dropped.

use crate::process::{free_port, tools_dir, wait_listening};
use anyhow::Context;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// A Kafka-protocol broker (tansu, in-memory) on 127.0.0.1, installed by
/// `scripts/kafka-broker.sh install` (which `scripts/test.sh` runs); stopped by PID on drop.
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
