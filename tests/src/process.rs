//! The sluice process under test, and the small waits and ports every test needs.

use anyhow::Context;
use serde_json::Value;
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
        let child = serve(exe, config, port, env).stderr(Stdio::inherit()).spawn().context("spawning sluice")?;
        let server = Server { child: Some(child), base_url: format!("http://127.0.0.1:{port}") };
        server.wait_healthy(&reqwest::blocking::Client::new(), Duration::from_secs(60))?;
        Ok(server)
    }

    /// As [`Server::start`], for a config with `[server.tls]`: `client` must
    /// trust the certificate the server starts with.
    pub fn start_https(exe: &str, config: &Path, port: u16, env: &[(&str, &str)], client: &reqwest::blocking::Client) -> anyhow::Result<Server> {
        let child = serve(exe, config, port, env).stderr(Stdio::inherit()).spawn().context("spawning sluice")?;
        let server = Server { child: Some(child), base_url: format!("https://127.0.0.1:{port}") };
        server.wait_healthy(client, Duration::from_secs(60))?;
        Ok(server)
    }

    fn wait_healthy(&self, client: &reqwest::blocking::Client, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
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

    /// SIGHUP: reload the TLS certificate.
    pub fn hangup(&self) {
        if let Some(c) = &self.child {
            #[allow(unsafe_code)]
            // SAFETY: sending a signal to our own child process by its pid.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGHUP);
            }
        }
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
            let done = status
                .as_object()
                // Keys starting with `@` describe the process (`@log`), not a pipeline.
                .is_some_and(|m| {
                    m.iter()
                        .filter(|(k, _)| !k.starts_with('@'))
                        .all(|(_, p)| p["partitions"].as_array().is_some_and(|ps| !ps.is_empty() && ps.iter().all(|x| x["lag"] == 0)))
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

/// The command line of `<exe> serve`, its log at `warn`.
fn serve(exe: &str, config: &Path, port: u16, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(exe);
    cmd.args(["serve", "--config"]).arg(config).args(["--listen", &format!("127.0.0.1:{port}")]);
    cmd.env("RUST_LOG", "warn").stdout(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Start `<exe> serve` expecting it to refuse: its standard error once it has
/// exited with a failure. An error if it starts (still running after
/// `timeout`) or exits successfully.
pub fn refused_start(exe: &str, config: &Path, port: u16, env: &[(&str, &str)], timeout: Duration) -> anyhow::Result<String> {
    let mut child = serve(exe, config, port, env).stderr(Stdio::piped()).spawn().context("spawning sluice")?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("sluice was still running after {timeout:?}: it did not refuse to start");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().context("stderr")?, &mut stderr)?;
    anyhow::ensure!(!status.success(), "sluice exited successfully; stderr: {stderr}");
    Ok(stderr)
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

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Wait until a server we started accepts connections on `port`.
pub(crate) fn wait_listening(port: u16, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "{what} did not start listening on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Where the project's scripts install test servers (`scripts/*.sh install`).
pub(crate) fn tools_dir() -> PathBuf {
    std::env::var_os("SLUICE_TOOLS_DIR").map(PathBuf::from).unwrap_or_else(|| {
        let cache =
            std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"));
        cache.join("sluice")
    })
}
