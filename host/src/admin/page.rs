//! The status page: pipelines, rates, errors, active versions, recent swaps.
//! Plain HTML that refreshes itself; nothing to build.

use super::AdminState;
use crate::pipeline::PipelineState;
use axum::extract::State;
use axum::response::Html;
use std::fmt::Write;
use std::sync::Arc;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

pub async fn render(State(s): State<Arc<AdminState>>) -> Html<String> {
    let mut h = String::from(
        "<!doctype html><html><head><meta charset=utf-8><meta http-equiv=refresh content=5><title>sluice</title><style>\
         body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}\
         td,th{border-bottom:1px solid #ddd;padding:.35em .8em;text-align:left}th{background:#f4f4f4}\
         .num{text-align:right;font-variant-numeric:tabular-nums}.bad{color:#b00}.ok{color:#080}code{font-size:12px}\
         </style></head><body><h1>sluice</h1>",
    );
    h.push_str("<h2>Pipelines</h2><table><tr><th>pipeline</th><th>state</th><th class=num>records in</th><th class=num>rows landed</th><th class=num>dead letters</th><th class=num>lag</th><th class=num>errors</th><th>active versions</th></tr>");
    let pipelines = s.pipelines.list();
    for (name, p) in &pipelines {
        let snap = p.stats.snapshot();
        let lag: u64 = snap.partitions.iter().filter_map(|x| x.lag).sum();
        let state = if p.control.is_paused() { PipelineState::Paused } else { snap.state };
        let versions: Vec<String> = p
            .control
            .status()
            .iter()
            .map(|st| format!("{}@{} <code>{}</code>", esc(&st.active.name), esc(&st.active.version), &st.active.content_hash[..12]))
            .collect();
        let _ = write!(
            h,
            "<tr><td><b>{}</b></td><td class={}>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{lag}</td><td class='num{}'>{}</td><td>{}</td></tr>",
            esc(name),
            if state == PipelineState::Running { "ok" } else { "bad" },
            state,
            snap.records_in,
            snap.table_rows + snap.raw_records * u64::from(p.config.table.is_none()),
            snap.dead_letters,
            if snap.errors > 0 { " bad" } else { "" },
            snap.errors,
            versions.join("<br>")
        );
        if let Some(e) = &snap.last_error {
            let _ = write!(h, "<tr><td></td><td colspan=7 class=bad>last error: {}</td></tr>", esc(e));
        }
    }
    h.push_str("</table>");
    if let Some(log) = &s.log {
        log_storage(&mut h, &log.storage());
    }
    h.push_str("<h2>Recent version swaps</h2><table><tr><th>pipeline</th><th>stage</th><th>from</th><th>to</th><th>why</th></tr>");
    let mut any = false;
    for (name, p) in &pipelines {
        for e in p.control.swaps().iter().rev() {
            any = true;
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td></tr>",
                esc(name),
                e.stage,
                esc(&e.from),
                esc(&e.to),
                esc(&e.reason)
            );
        }
    }
    if !any {
        h.push_str("<tr><td colspan=5>none since start</td></tr>");
    }
    h.push_str(
        "</table><p><a href='/reports'>Latest reports</a> (charts) · API: <code>/api/v1/openapi.json</code> · health: <code>/health</code></p></body></html>",
    );
    Html(h)
}

/// The embedded log's disk: whether it takes records, and why not.
fn log_storage(h: &mut String, st: &crate::log::StorageState) {
    let free = st.free_bytes.map_or_else(|| "unknown".to_owned(), crate::log::human_bytes);
    let _ = write!(
        h,
        "<h2>Embedded log</h2><table><tr><th>takes records</th><th class=num>disk free</th><th class=num>refuses ingest below</th><th class=num>reopens</th></tr>\
         <tr><td class={}>{}</td><td class=num>{free}</td><td class=num>{}</td><td class=num>{}</td></tr>",
        if st.writable { "ok" } else { "bad" },
        if st.writable { "yes" } else { "no" },
        crate::log::human_bytes(st.min_free_bytes),
        st.reopens
    );
    if let Some(problem) = &st.problem {
        let _ = write!(h, "<tr><td colspan=4 class=bad>{}</td></tr>", esc(problem));
    }
    h.push_str("</table>");
}

/// The HTML summary of the latest report run, with its charts.
pub async fn reports(State(s): State<Arc<AdminState>>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let store = s.store.clone();
    match tokio::task::spawn_blocking(move || crate::report::run::latest_summary(store.as_ref())).await {
        Ok(Ok(Some(page))) => Html(String::from_utf8_lossy(&page).into_owned()).into_response(),
        Ok(Ok(None)) => (
            axum::http::StatusCode::NOT_FOUND,
            Html("<!doctype html><p>No report run yet. Run one: <code>sluice job run reports</code>, or wait for the schedule (<code>[jobs.schedule]</code>). <a href='/'>status</a>".to_owned()),
        )
            .into_response(),
        Ok(Err(e)) => (axum::http::StatusCode::BAD_GATEWAY, Html(format!("could not read the reports: {}", esc(&e.to_string())))).into_response(),
        Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, Html(format!("task failed: {}", esc(&e.to_string())))).into_response(),
    }
}
