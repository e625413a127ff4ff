//! The HTML summary of a report run: one bar chart per report, drawn here as
//! inline SVG (no script, nothing fetched: it opens offline and in a mail).

use super::definitions::ReportResult;
use datafusion::arrow::util::display::array_value_to_string;
use std::fmt::Write;

/// Bars drawn per chart; longer reports show their largest values and say so.
const MAX_BARS: usize = 30;
const PALETTE: [&str; 6] = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#af7aa1"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// `(label, value)` per row: the label joins every column but the last, the value is the last.
fn bars(r: &ReportResult) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for b in &r.batches {
        let last = b.num_columns().saturating_sub(1);
        for row in 0..b.num_rows() {
            let label: Vec<String> = (0..last).map(|c| array_value_to_string(b.column(c), row).unwrap_or_default()).collect();
            let value = array_value_to_string(b.column(last), row).ok().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            out.push((label.join(" · "), value));
        }
    }
    out
}

/// A horizontal bar chart of `data`, largest first when cut to [`MAX_BARS`].
pub fn bar_chart(data: &[(String, f64)], colour: &str) -> String {
    let mut shown: Vec<&(String, f64)> = data.iter().collect();
    let cut = shown.len() > MAX_BARS;
    if cut {
        shown.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        shown.truncate(MAX_BARS);
    }
    let max = shown.iter().map(|d| d.1).fold(0.0_f64, f64::max).max(1.0);
    let (label_w, bar_w, row_h) = (300.0, 420.0, 22.0);
    let height = row_h * shown.len().max(1) as f64 + 10.0;
    let mut s = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{height}' viewBox='0 0 {w} {height}' role='img' font-family='system-ui,sans-serif' font-size='12'>",
        w = label_w + bar_w + 90.0
    );
    for (i, (label, value)) in shown.iter().enumerate() {
        let y = 5.0 + row_h * i as f64;
        let w = (value / max * bar_w).max(1.0);
        let _ = write!(
            s,
            "<text x='{lx}' y='{ty}' text-anchor='end'>{l}</text><rect x='{bx}' y='{y}' width='{w:.1}' height='{h}' fill='{colour}'><title>{l}: {value}</title></rect><text x='{vx:.1}' y='{ty}'>{value}</text>",
            lx = label_w - 6.0,
            ty = y + 15.0,
            l = esc(label),
            bx = label_w,
            h = row_h - 6.0,
            vx = label_w + w + 4.0,
        );
    }
    if shown.is_empty() {
        s.push_str("<text x='10' y='20'>no rows</text>");
    }
    s.push_str("</svg>");
    if cut {
        let _ = write!(s, "<p class=note>the {MAX_BARS} largest of {} rows; all rows are in the CSV and Parquet files</p>", data.len());
    }
    s
}

/// The whole page for one run.
pub fn summary(run_id: &str, location: &str, results: &[ReportResult]) -> String {
    let mut h = format!(
        "<!doctype html><html><head><meta charset=utf-8><title>sluice reports {run}</title><style>\
         body{{font:14px system-ui,sans-serif;margin:2em;color:#222;max-width:900px}}section{{margin:2em 0}}\
         h2{{font-size:16px;margin-bottom:.2em}}.note,.meta{{color:#666;font-size:12px}}</style></head><body>\
         <h1>Reports</h1><p class=meta>run {run} over the tables in {loc} · <a href='/'>status</a></p>",
        run = esc(run_id),
        loc = esc(location)
    );
    for (i, r) in results.iter().enumerate() {
        let columns: Vec<&str> = r.schema.fields().iter().map(|f| f.name().as_str()).collect();
        let _ = write!(
            h,
            "<section id='{name}'><h2>{n}. {title}</h2><p class=meta><code>{name}</code> · {rows} rows · columns {cols}</p>{chart}</section>",
            n = i + 1,
            name = r.name,
            title = esc(r.title),
            rows = r.rows(),
            cols = esc(&columns.join(", ")),
            chart = bar_chart(&bars(r), PALETTE[i % PALETTE.len()]),
        );
    }
    h.push_str("</body></html>");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_value_and_escape_labels() {
        let svg = bar_chart(&[("a<b".into(), 50.0), ("c".into(), 100.0)], "#000");
        assert!(svg.contains("a&lt;b"), "{svg}");
        assert!(svg.contains("width='210.0'") && svg.contains("width='420.0'"), "{svg}");
        let many: Vec<(String, f64)> = (0..40).map(|i| (format!("r{i}"), f64::from(i))).collect();
        let svg = bar_chart(&many, "#000");
        assert!(svg.contains("r39") && !svg.contains(">r0<") && svg.contains("30 largest of 40 rows"));
    }
}
