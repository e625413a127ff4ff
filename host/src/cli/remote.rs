//! Commands that drive a running sluice through its admin API:
//! `sluice transform deploy|list|activate|rollback`, `sluice pipeline …`, `sluice dlq …`.

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;

/// Where the running instance is and how to prove who we are.
#[derive(Args, Debug, Clone)]
pub struct Remote {
    /// Base URL of the running sluice.
    #[arg(long, env = "SLUICE_URL", default_value = "http://127.0.0.1:8080", global = true)]
    url: String,
    /// Admin token. Default: SLUICE_ADMIN_TOKEN, else the token file sluice generated in its data dir.
    #[arg(long, env = "SLUICE_ADMIN_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Data dir of the instance, to find its generated `admin.token`. Default: sluice-data,
    /// else the most recent `sluice demo` run (for `sluice demo --keep-serving`).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Print the API's JSON answer instead of a summary.
    #[arg(long, global = true)]
    json: bool,
}

impl Remote {
    fn token(&self) -> anyhow::Result<String> {
        if let Some(t) = &self.token {
            return Ok(t.clone());
        }
        let data_dir = match &self.data_dir {
            Some(dir) => dir.clone(),
            None => super::locate::default_data_dir_here()?.map_or_else(|| PathBuf::from(super::locate::SERVE_DATA_DIR), |found| found.dir),
        };
        let path = data_dir.join("admin.token");
        std::fs::read_to_string(&path)
            .map(|t| t.trim().to_owned())
            .with_context(|| format!("no --token, no SLUICE_ADMIN_TOKEN, and no token file at {} (give --data-dir of the running instance)", path.display()))
    }

    pub(super) async fn call(&self, method: reqwest::Method, path: &str, body: Option<Vec<u8>>) -> anyhow::Result<Value> {
        let client = reqwest::Client::new();
        let mut req = client.request(method, format!("{}{path}", self.url.trim_end_matches('/'))).bearer_auth(self.token()?);
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await.with_context(|| format!("cannot reach sluice at {}", self.url))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let msg = body["error"]["message"].as_str().map_or_else(|| body.to_string(), str::to_owned);
            anyhow::bail!("{status}: {msg}");
        }
        Ok(body)
    }

    pub(super) fn print(&self, v: &Value, summary: impl FnOnce(&Value)) {
        if self.json {
            println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        } else {
            summary(v);
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum PipelineCommand {
    /// Pipelines with state, counts, lag and active versions.
    List,
    /// One pipeline in detail: positions and lag per partition, versions, recent swaps.
    Status {
        name: String,
    },
    /// Land what is in flight, then stop reading.
    Pause {
        name: String,
    },
    Resume {
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum DlqCommand {
    /// Dead letters of a pipeline.
    List {
        pipeline: String,
        /// Only this kind: rejected, timeout, trap, memory_limit, schema, …
        #[arg(long)]
        kind: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Run dead letters (all, or the given ids) through the active versions and land them.
    Replay {
        pipeline: String,
        /// Ids (`<topic>+<partition>+<offset>`); none means all.
        ids: Vec<String>,
    },
}

fn version_line(v: &Value) -> String {
    format!(
        "{}@{} sha256:{}",
        v["name"].as_str().unwrap_or("?"),
        v["version"].as_str().unwrap_or("?"),
        v["content_hash"].as_str().unwrap_or("").get(..12).unwrap_or("")
    )
}

pub async fn deploy(r: &Remote, name: &str, file: &PathBuf) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let v = r.call(reqwest::Method::PUT, &format!("/api/v1/transforms/{name}"), Some(bytes)).await?;
    r.print(&v, |v| {
        println!(
            "uploaded {} ({} bytes); activate it with: sluice transform activate <pipeline> <stage> {}",
            version_line(v),
            v["size_bytes"],
            v["version"].as_str().unwrap_or("")
        )
    });
    Ok(ExitCode::SUCCESS)
}

pub async fn list(r: &Remote) -> anyhow::Result<ExitCode> {
    let v = r.call(reqwest::Method::GET, "/api/v1/transforms", None).await?;
    r.print(&v, |v| {
        for t in v["transforms"].as_array().into_iter().flatten() {
            println!("{}", t["name"].as_str().unwrap_or("?"));
            for ver in t["versions"].as_array().into_iter().flatten() {
                println!("  {}{}", version_line(ver), if ver["builtin"] == true { "  (built in)" } else { "" });
            }
        }
    });
    Ok(ExitCode::SUCCESS)
}

pub async fn activate(r: &Remote, pipeline: &str, stage: usize, version: &str) -> anyhow::Result<ExitCode> {
    let body = serde_json::json!({ "version": version }).to_string().into_bytes();
    let v = r.call(reqwest::Method::POST, &format!("/api/v1/pipelines/{pipeline}/stages/{stage}/activate"), Some(body)).await?;
    r.print(&v, |v| {
        println!("{}: stage {stage} now runs {} (was {})", pipeline, v["swap"]["to"].as_str().unwrap_or("?"), v["swap"]["from"].as_str().unwrap_or("?"))
    });
    Ok(ExitCode::SUCCESS)
}

pub async fn rollback(r: &Remote, pipeline: &str, stage: usize) -> anyhow::Result<ExitCode> {
    let v = r.call(reqwest::Method::POST, &format!("/api/v1/pipelines/{pipeline}/stages/{stage}/rollback"), None).await?;
    r.print(&v, |v| println!("{}: stage {stage} back on {}", pipeline, v["swap"]["to"].as_str().unwrap_or("?")));
    Ok(ExitCode::SUCCESS)
}

pub async fn pipeline(r: &Remote, cmd: PipelineCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PipelineCommand::List => {
            let v = r.call(reqwest::Method::GET, "/api/v1/pipelines", None).await?;
            r.print(&v, |v| {
                println!("{:<12} {:<8} {:>12} {:>12} {:>8} {:>8}  versions", "pipeline", "state", "records in", "rows landed", "dead", "lag");
                for p in v["pipelines"].as_array().into_iter().flatten() {
                    let lag: u64 = p["stats"]["partitions"].as_array().into_iter().flatten().filter_map(|x| x["lag"].as_u64()).sum();
                    let state = if p["paused"] == true { "paused" } else { p["stats"]["state"].as_str().unwrap_or("?") };
                    let versions: Vec<String> = p["stages"].as_array().into_iter().flatten().map(|s| version_line(&s["active"])).collect();
                    println!(
                        "{:<12} {:<8} {:>12} {:>12} {:>8} {:>8}  {}",
                        p["name"].as_str().unwrap_or("?"),
                        state,
                        p["stats"]["records_in"].as_u64().unwrap_or(0),
                        p["stats"]["table_rows"].as_u64().unwrap_or(0),
                        p["stats"]["dead_letters"].as_u64().unwrap_or(0),
                        lag,
                        versions.join(" → ")
                    );
                }
            });
        }
        PipelineCommand::Status { name } => {
            let v = r.call(reqwest::Method::GET, &format!("/api/v1/pipelines/{name}"), None).await?;
            r.print(&v, |v| {
                println!("{name}: {}", if v["paused"] == true { "paused" } else { v["stats"]["state"].as_str().unwrap_or("?") });
                for s in v["stages"].as_array().into_iter().flatten() {
                    println!("  stage {}: {}", s["stage"], version_line(&s["active"]));
                }
                for p in v["stats"]["partitions"].as_array().into_iter().flatten() {
                    println!("  {}/{}: committed {} of {} (lag {})", p["topic"].as_str().unwrap_or("?"), p["partition"], p["committed"], p["end"], p["lag"]);
                }
                for e in v["recent_swaps"].as_array().into_iter().flatten() {
                    println!(
                        "  swap: stage {} {} → {} ({})",
                        e["stage"],
                        e["from"].as_str().unwrap_or(""),
                        e["to"].as_str().unwrap_or(""),
                        e["reason"].as_str().unwrap_or("")
                    );
                }
                if let Some(err) = v["stats"]["last_error"].as_str() {
                    println!("  last error: {err}");
                }
            });
        }
        PipelineCommand::Pause { name } => {
            let v = r.call(reqwest::Method::POST, &format!("/api/v1/pipelines/{name}/pause"), None).await?;
            r.print(&v, |_| println!("{name}: paused (in-flight records are landed first)"));
        }
        PipelineCommand::Resume { name } => {
            let v = r.call(reqwest::Method::POST, &format!("/api/v1/pipelines/{name}/resume"), None).await?;
            r.print(&v, |_| println!("{name}: running"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn dlq(r: &Remote, cmd: DlqCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DlqCommand::List { pipeline, kind, limit } => {
            let mut path = format!("/api/v1/dead-letters/{pipeline}?limit={limit}");
            if let Some(k) = kind {
                path.push_str(&format!("&kind={k}"));
            }
            let v = r.call(reqwest::Method::GET, &path, None).await?;
            r.print(&v, |v| {
                println!("{} dead letters in `{pipeline}`", v["total"]);
                for d in v["dead_letters"].as_array().into_iter().flatten() {
                    let l = &d["letter"];
                    println!(
                        "  {:<28} {:<10} {}@{}: {}",
                        d["id"].as_str().unwrap_or("?"),
                        l["kind"].as_str().unwrap_or(""),
                        l["transform"].as_str().unwrap_or(""),
                        l["version"].as_str().unwrap_or(""),
                        l["reason"].as_str().unwrap_or("")
                    );
                }
            });
        }
        DlqCommand::Replay { pipeline, ids } => {
            let body = if ids.is_empty() { Vec::new() } else { serde_json::json!({ "ids": ids }).to_string().into_bytes() };
            let v = r.call(reqwest::Method::POST, &format!("/api/v1/dead-letters/{pipeline}/replay"), Some(body)).await?;
            r.print(&v, |v| println!("replayed {} records; {} refused again and kept", v["outcome"]["replayed"], v["outcome"]["failed_again"]));
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand, Debug)]
pub enum JobCommand {
    /// Jobs and their recent runs.
    List,
    /// Run a job now and follow it until it ends (exit code 1 if it fails).
    Run {
        /// reports, backfill, retention, compact, vacuum (`sluice job list` shows them).
        name: String,
        /// The run's parameters as JSON, e.g. for a backfill:
        /// '{"pipeline":"pin","transforms":["clean-pin@0.2.0"],"from_offset":0,"to_offset":5000}'
        #[arg(long)]
        params: Option<String>,
    },
}

pub async fn job(r: &Remote, cmd: JobCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        JobCommand::List => {
            let v = r.call(reqwest::Method::GET, "/api/v1/jobs", None).await?;
            r.print(&v, |v| {
                for j in v["jobs"].as_array().into_iter().flatten() {
                    println!("{:<16} {}", j["name"].as_str().unwrap_or("?"), j["description"].as_str().unwrap_or(""));
                }
                for run in v["runs"].as_array().into_iter().flatten().take(10) {
                    println!(
                        "  run {:>4} {:<16} {:<10} {}",
                        run["id"],
                        run["job"].as_str().unwrap_or("?"),
                        run["state"].as_str().unwrap_or("?"),
                        run["summary"].as_str().or(run["error"].as_str()).unwrap_or("")
                    );
                }
            });
            Ok(ExitCode::SUCCESS)
        }
        JobCommand::Run { name, params } => {
            let body = match params {
                Some(p) => Some(serde_json::from_str::<Value>(&p).context("--params must be JSON")?.to_string().into_bytes()),
                None => None,
            };
            let started = r.call(reqwest::Method::POST, &format!("/api/v1/jobs/{name}/run"), body).await?;
            let poll = started["poll"].as_str().context("the answer names no run to follow")?.to_owned();
            loop {
                let v = r.call(reqwest::Method::GET, &poll, None).await?;
                let run = &v["run"];
                let state = run["state"].as_str().unwrap_or("?");
                let pct = run["progress"].as_f64().unwrap_or(0.0) * 100.0;
                let bar: String = (0..30).map(|i| if (i as f64) < pct * 0.3 { '#' } else { '.' }).collect();
                if !r.json {
                    eprint!("\r{name}: [{bar}] {pct:>3.0}% {state:<10}");
                }
                match state {
                    "succeeded" | "failed" => {
                        if !r.json {
                            eprintln!();
                        }
                        r.print(&v, |v| println!("{}", v["run"]["summary"].as_str().or(v["run"]["error"].as_str()).unwrap_or("")));
                        return Ok(if state == "succeeded" { ExitCode::SUCCESS } else { ExitCode::FAILURE });
                    }
                    _ => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
                }
            }
        }
    }
}
