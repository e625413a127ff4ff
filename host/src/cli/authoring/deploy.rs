//! `sluice transform deploy [DIR] --pipeline P --stage N [--shadow SECONDS]`:
//! upload the built component and its golden samples to a running sluice,
//! optionally run it as a shadow of the active version first, then activate it.

use super::TransformCrate;
use crate::cli::remote::Remote;
use anyhow::Context;
use reqwest::Method;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

/// Where to put the uploaded version live.
pub struct Target<'a> {
    pub pipeline: &'a str,
    pub stage: usize,
    /// Run it as a shadow this long first, and print the comparison.
    pub shadow: Option<Duration>,
}

pub async fn deploy(r: &Remote, dir: &Path, target: Option<Target<'_>>) -> anyhow::Result<()> {
    let krate = TransformCrate::open(dir)?;
    // Checked here first, so a broken build fails before anything is sent.
    let t = super::build::load(&krate)?;
    let (name, version) = (t.descriptor().name.clone(), t.descriptor().version.clone());
    if let Some(target) = &target {
        check_stage(r, target, &name).await?;
    }
    let samples = krate.samples()?;
    if !samples.is_empty() {
        // Stored before the upload, so the upload is checked against them (and so is every stored version).
        let body = serde_json::to_vec(&samples)?;
        r.call(Method::PUT, &format!("/api/v1/transforms/{name}/samples"), Some(body)).await.context("storing the golden samples")?;
    }
    let v = r.call(Method::PUT, &format!("/api/v1/transforms/{name}"), Some(krate.component()?)).await.context("uploading the component")?;
    println!(
        "uploaded {name}@{version} sha256:{} ({} bytes); it passed {} golden sample(s) in the server's sandbox",
        v["content_hash"].as_str().unwrap_or("?"),
        v["size_bytes"],
        samples.len()
    );
    let Some(target) = target else {
        println!("activate it with: sluice transform activate <pipeline> <stage> {version}");
        return Ok(());
    };
    let (p, stage) = (target.pipeline, target.stage);
    let stage_path = format!("/api/v1/pipelines/{p}/stages/{stage}");
    let choice = serde_json::to_vec(&json!({ "version": version, "transform": name }))?;
    if let Some(wait) = target.shadow {
        r.call(Method::POST, &format!("{stage_path}/shadow"), Some(choice.clone())).await.context("starting the shadow run")?;
        eprintln!("shadow run: {name}@{version} sees a copy of every batch of {p} stage {stage} for {} s; nothing it makes lands", wait.as_secs());
        tokio::time::sleep(wait).await;
        let report = r.call(Method::DELETE, &format!("{stage_path}/shadow"), None).await.context("stopping the shadow run")?;
        print_shadow(&report);
    }
    let swap = r.call(Method::POST, &format!("{stage_path}/activate"), Some(choice)).await.context("activating")?;
    r.print(&swap, |_| {});
    println!("live: {p} stage {stage} runs {name}@{version} from its next batch on");
    println!("roll back with: sluice transform rollback {p} {stage}");
    Ok(())
}

/// A stage switches between versions of one transform: the component must be that transform.
async fn check_stage(r: &Remote, target: &Target<'_>, name: &str) -> anyhow::Result<()> {
    let p = r.call(Method::GET, &format!("/api/v1/pipelines/{}", target.pipeline), None).await?;
    let stages = p["stages"].as_array().cloned().unwrap_or_default();
    let Some(stage) = stages.get(target.stage) else {
        anyhow::bail!("pipeline `{}` has {} stage(s); --stage counts from 0", target.pipeline, stages.len());
    };
    let runs = stage["transform"].as_str().unwrap_or("?");
    anyhow::ensure!(
        runs == name,
        "stage {} of pipeline `{}` runs `{runs}`, and a stage switches between versions of one transform: \
         this component is `{name}`. Name the crate (and its descriptor) `{runs}` with a newer version, \
         or put `{name}` in the pipeline's transforms (its config file, or PUT /api/v1/pipelines/{})",
        target.stage,
        target.pipeline,
        target.pipeline
    );
    Ok(())
}

fn print_shadow(report: &Value) {
    let s = &report["shadow"];
    let n = |k: &str| s[k].as_u64().unwrap_or(0);
    println!(
        "shadow: {} records in {} batches compared: {} the same, {} different, {} refused by the candidate only, {} by the active version only, {} by both",
        n("records"),
        n("batches"),
        n("same"),
        n("different"),
        n("only_candidate_refused"),
        n("only_active_refused"),
        n("both_refused")
    );
    for e in s["examples"].as_array().into_iter().flatten().take(3) {
        println!("  example: {e}");
    }
    if n("records") == 0 {
        println!("  (no records reached the stage meanwhile: nothing to compare)");
    }
}
