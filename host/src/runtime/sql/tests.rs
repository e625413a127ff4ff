//! SQL stages: the SQL cleaning is the Rust cleaning, record for record and
//! reason for reason; statements that cannot run row by row, or deterministically, are refused.

use super::*;
use crate::runtime::registry::{GoldenSample, SampleOutcome, run_sample};
use crate::runtime::{CompiledTransform, Contract, ProcessedBatch, Runtime, SandboxLimits};
use serde_json::{Value, json};
use sluice_guest::BatchBuf;
use std::sync::Arc;

fn runtime() -> Runtime {
    Runtime::new(SandboxLimits::default(), None).expect("runtime")
}

fn sql(text: &str) -> Result<Arc<CompiledTransform>, String> {
    runtime().load_named(text.as_bytes(), Some("test-sql")).map_err(|e| e.to_string())
}

fn batch_of(values: &[Value]) -> BatchBuf {
    let mut b = BatchBuf::default();
    for (i, v) in values.iter().enumerate() {
        b.push(v.to_string().as_bytes(), format!("k{i}").as_bytes(), i as i64);
    }
    b
}

/// Output records as JSON text, origins and `(index, reason)` of failures.
fn outcome(p: &ProcessedBatch) -> (Vec<String>, Vec<u32>, Vec<(u32, String)>) {
    let rows = p.output.to_json().as_ref().as_ref().iter().map(|r| String::from_utf8_lossy(r.value).into_owned()).collect();
    (rows, p.origins.clone(), p.failures.iter().map(|f| (f.index, f.reason.clone())).collect())
}

/// The values a messy producer sends for a field, of every JSON type.
fn junk(i: usize) -> Value {
    let all = [
        json!(null),
        json!(""),
        json!("   "),
        json!("\u{2003}"),
        json!(true),
        json!(-4),
        json!(12.5),
        json!(7.0),
        json!("42"),
        json!(" 17 "),
        json!("3.5k"),
        json!("1e3"),
        json!("NaN"),
        json!({"a": 1}),
        json!([1, 2]),
        json!("2021-03-04 05:06:07"),
        json!("2021-03-04T05:06:07.123Z"),
        json!(1_614_834_367_000i64),
        json!("User Info Error"),
        json!("Local save in "),
        json!("Local save in /data/x"),
        json!(91.0),
        json!(-180),
        json!("é\"\\ü"),
        json!(9_223_372_036_854_775_807i64),
        json!(18_446_744_073_709_551_615u64),
    ];
    all[i % all.len()].clone()
}

/// Generated rows, and each again with one field replaced by junk or removed.
fn inputs(kind: &str, rows: i64) -> Vec<Value> {
    let generator = crate::emulate::data::Generator::new(7);
    let mut out = Vec::new();
    for ind in 1..=rows {
        let row = generator.row(ind);
        let clean = match kind {
            "pin" => row.pin,
            "geo" => row.geo,
            _ => row.user,
        };
        out.push(clean.clone());
        let fields: Vec<String> = clean.as_object().expect("object").keys().cloned().collect();
        let field = &fields[ind as usize % fields.len()];
        let mut messy = clean.clone();
        messy[field.as_str()] = junk(ind as usize);
        out.push(messy);
        if ind % 5 == 0 {
            let mut missing = clean;
            missing.as_object_mut().expect("object").remove(field.as_str());
            out.push(missing);
        }
    }
    out.extend([json!([1, 2]), json!("text"), json!(null), json!({})]);
    out
}

#[test]
fn sql_cleaning_equals_the_rust_cleaning_on_generated_and_messy_records() {
    let rt = runtime();
    for (kind, rust, sql) in [("pin", "clean-pin", "clean-pin-sql"), ("geo", "clean-geo", "clean-geo-sql"), ("user", "clean-user", "clean-user-sql")] {
        let (rust, sql) = (rt.load_builtin(rust).expect("rust"), rt.load_builtin(sql).expect("sql"));
        assert_eq!(sql.descriptor().contract, Contract::Sql);
        assert_eq!(rust.descriptor().output_kind, sql.descriptor().output_kind, "the same table schema");
        let records = inputs(kind, 10_000);
        let mut compared = 0;
        for chunk in records.chunks(1000) {
            let b = batch_of(chunk);
            let (want, got) = (outcome(&rust.instance().process(&b.as_ref())), outcome(&sql.instance().process(&b.as_ref())));
            for (w, g) in want.0.iter().zip(&got.0) {
                assert_eq!(w, g, "{kind}: the same row");
            }
            assert_eq!(want, got, "{kind}");
            compared += want.0.len();
        }
        assert!(compared > 20_000, "{kind}: {compared} rows compared");
    }
}

#[test]
fn sql_cleaning_passes_the_golden_samples_of_the_rust_cleaning() {
    let rt = runtime();
    for (rust, sql, samples) in [
        ("clean-pin", "clean-pin-sql", include_str!("testdata/clean-pin.samples.json")),
        ("clean-geo", "clean-geo-sql", include_str!("testdata/clean-geo.samples.json")),
        ("clean-user", "clean-user-sql", include_str!("testdata/clean-user.samples.json")),
    ] {
        let samples: Vec<GoldenSample> = serde_json::from_str(samples).expect("samples");
        assert!(samples.len() >= 4);
        for t in [rt.load_builtin(rust).expect("rust"), rt.load_builtin(sql).expect("sql")] {
            for (i, s) in samples.iter().enumerate() {
                assert_eq!(run_sample(&t, s), SampleOutcome::Passed, "{} sample {i}", t.descriptor().name);
            }
        }
    }
}

#[test]
fn a_reject_reason_refuses_the_row_and_where_drops_it_silently() {
    let t = sql("SELECT TRY_CAST(n AS BIGINT) * 2 AS twice, CASE WHEN n = 'bad' THEN 'n is bad' END AS _reject FROM input WHERE n <> 'skip'").expect("plans");
    let b = batch_of(&[json!({"n": "1"}), json!({"n": "bad"}), json!({"n": "skip"}), json!({"n": "3"}), json!([])]);
    let (rows, origins, failures) = outcome(&t.instance().process(&b.as_ref()));
    assert_eq!(rows, vec![r#"{"twice":2}"#, r#"{"twice":6}"#]);
    assert_eq!(origins, vec![0, 3]);
    assert_eq!(failures, vec![(1, "n is bad".into()), (4, "record is not a JSON object".into())]);
    assert_eq!(t.columns().expect("columns").describe_output(), "twice int64");
}

#[test]
fn undeclared_fields_are_text_and_declared_ones_take_their_type() {
    let t = sql("CREATE TABLE input (n BIGINT, at TIMESTAMP);\nSELECT n + 1 AS next, at, label FROM input").expect("plans");
    let program = t.sql().expect("a SQL stage");
    assert_eq!(program.describe_input(), "n BIGINT, at TIMESTAMP, label VARCHAR");
    let b = batch_of(&[json!({"n": 41, "at": "2021-03-04 05:06:07", "label": "x"}), json!({"n": "x", "label": 5})]);
    let p = t.instance().process(&b.as_ref());
    let (rows, _, failures) = outcome(&p);
    assert!(failures.is_empty());
    assert_eq!(rows, vec![r#"{"next":42,"at":"2021-03-04T05:06:07Z","label":"x"}"#, r#"{"next":null,"at":null,"label":null}"#]);
    assert_eq!(p.counters, vec![("field_wrong_type".to_string(), 1), ("field_unparsed".to_string(), 1)]);
}

#[test]
fn computed_types_land_as_table_types() {
    let t =
        sql("SELECT CAST(1 AS INT) AS small, CAST(2.5 AS REAL) AS single, arrow_cast(n, 'Utf8View') AS v, make_array(1, 2) AS xs, NULL AS nothing FROM input")
            .expect("plans");
    assert_eq!(
        t.columns().expect("columns").describe_output(),
        "small int64 not null, single float64 not null, v string, xs float64_list not null, nothing string"
    );
    let b = batch_of(&[json!({"n": "a"})]);
    let (rows, _, failures) = outcome(&t.instance().process(&b.as_ref()));
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(rows, vec![r#"{"small":1,"single":2.5,"v":"a","xs":[1.0,2.0],"nothing":null}"#]);
}

#[test]
fn a_record_the_statement_fails_on_is_refused_alone() {
    let t = sql("CREATE TABLE input (n BIGINT);\nSELECT 100 / n AS q FROM input").expect("plans");
    let b = batch_of(&[json!({"n": 5}), json!({"n": 0}), json!({"n": 20})]);
    let p = t.instance().process(&b.as_ref());
    let (rows, origins, failures) = outcome(&p);
    assert!(p.isolated);
    assert_eq!((rows, origins), (vec![r#"{"q":20}"#.to_string(), r#"{"q":5}"#.to_string()], vec![0, 2]));
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].0, 1);
    assert!(failures[0].1.contains("the SQL statement failed on this record") && failures[0].1.to_lowercase().contains("divide by zero"), "{failures:?}");
}

#[test]
fn statements_that_need_more_than_one_row_or_are_not_deterministic_are_refused() {
    let cases = [
        ("SELECT country, count(*) AS n FROM input GROUP BY country", "works on each row alone"),
        ("SELECT DISTINCT country FROM input", "works on each row alone"),
        ("SELECT a FROM input ORDER BY a", "ORDER BY and LIMIT"),
        ("SELECT a FROM input LIMIT 3", "ORDER BY and LIMIT"),
        ("SELECT random() AS r FROM input", "`random()` gives a different value"),
        ("SELECT now() AS t FROM input", "`now()` gives a different value"),
        ("SELECT a FROM input UNION ALL SELECT b FROM input", "reads one table"),
        ("SELECT 1 AS one", "FROM input"),
        ("SELECT a FROM input WHERE a IN (SELECT a FROM input)", "subqueries"),
        ("SELECT a AS _reject FROM input", "no column besides `_reject`"),
        ("SELECT 1 AS _reject, a FROM input", "must be text"),
        ("SELECT a FROM input; SELECT b FROM input; SELECT c FROM input", "3 statements"),
        ("CREATE TABLE pins (a BIGINT); SELECT a FROM input", "called `input`"),
        ("CREATE TABLE input (a BLOB); SELECT a FROM input", "declare BIGINT, DOUBLE"),
        ("INSERT INTO input SELECT 1", "must be a SELECT"),
        ("SELECT a, interval '1 day' AS i FROM input", "output column `i` is Interval"),
    ];
    for (text, want) in cases {
        let err = sql(text).expect_err(text);
        assert!(err.contains(want), "{text}: {err}");
    }
}

#[test]
fn planning_errors_say_where() {
    let err = sql("-- name: broken\nSELECT\n  no_such_function(a) AS x\nFROM input").expect_err("unknown function");
    assert!(err.contains("no_such_function"), "{err}");
    let err = sql("SELECT a\nFROM input\nWHERE a = = 1").expect_err("syntax");
    assert!(err.contains("Line: 3") && err.contains("Expected"), "{err}");
}

#[test]
fn the_header_names_and_versions_a_statement_and_text_without_one_takes_the_upload_name() {
    let t = sql("-- name: mine\n-- version: 1.2.0\n-- input: pin\n-- output: pin-clean\nSELECT a FROM input").expect("plans");
    let d = t.descriptor();
    assert_eq!((d.name.as_str(), d.version.as_str(), d.input_kind.as_str(), d.output_kind.as_str()), ("mine", "1.2.0", "pin", "pin-clean"));
    let t = sql("select a from input").expect("plans");
    assert_eq!(t.descriptor().name, "test-sql");
    assert!(t.descriptor().version.starts_with("sql-"), "{}", t.descriptor().version);
    assert!(is_sql("SELECT 1") && !is_sql("\0asm\x0d\0\x01\0") && !is_sql("definitely not wasm"));
}

const JOINED: &str = "CREATE TABLE input (ind BIGINT);
SELECT country, category, count(DISTINCT ind) AS post_count
FROM \"demo.pin-clean\" AS pin JOIN \"demo.geo-clean\" AS geo USING (ind) JOIN \"demo.user-clean\" AS \"user\" USING (ind)
GROUP BY TUMBLE(geo.\"timestamp\", INTERVAL '365' DAY), geo.country, pin.category";

#[test]
fn a_join_in_from_names_the_pipelines_join_and_the_rest_reads_the_joined_rows() {
    let t = sql(JOINED).expect("plans");
    let j = t.sql_join().expect("a join");
    let sides: Vec<(&str, &str, &str)> = j.sides.iter().map(|s| (s.topic.as_str(), s.name.as_str(), s.key.as_str())).collect();
    assert_eq!(sides, vec![("demo.pin-clean", "pin", "ind"), ("demo.geo-clean", "geo", "ind"), ("demo.user-clean", "user", "ind")]);
    assert_eq!((j.left, j.key_as.as_str()), (false, "ind"));
    let w = t.sql_windows().expect("windows over the joined rows");
    assert_eq!((w.window.time_field.as_str(), w.group_by.clone()), ("timestamp", vec!["country".to_string(), "category".to_string()]));

    // ON with different key fields, LEFT joins, a row statement.
    let t = sql("CREATE TABLE input (\"index\" BIGINT); SELECT pin.title, geo.country, pin.\"index\" AS id FROM \"t.pin\" pin LEFT JOIN \"t.geo\" geo ON pin.\"index\" = geo.ind").expect("plans");
    let j = t.sql_join().expect("a join");
    assert_eq!((j.sides[0].key.as_str(), j.sides[1].key.as_str(), j.left, j.key_as.as_str()), ("index", "ind", true, "index"));
    let b = batch_of(&[json!({"index": 7, "title": "t", "country": "Peru"})]);
    let (rows, _, _) = outcome(&t.instance().process(&b.as_ref()));
    assert_eq!(rows, vec![r#"{"title":"t","country":"Peru","id":7}"#]);
}

#[test]
fn joins_a_stream_cannot_run_are_refused_with_the_reason() {
    for (text, want) in [
        ("SELECT a.x FROM \"t.a\" a, \"t.b\" b", "join them with `JOIN"),
        ("SELECT a.x FROM \"t.a\" a JOIN \"t.b\" b USING (k) LEFT JOIN \"t.c\" c USING (k)", "mix of INNER and LEFT"),
        ("SELECT a.x FROM \"t.a\" a RIGHT JOIN \"t.b\" b USING (k)", "INNER (every side) or LEFT"),
        ("SELECT a.x FROM \"t.a\" a CROSS JOIN \"t.b\" b", "INNER (every side) or LEFT"),
        ("SELECT a.x FROM \"t.a\" a JOIN \"t.b\" b ON a.x > b.y", "USING (key)"),
        ("SELECT a.x FROM \"t.a\" a JOIN \"t.b\" b USING (k, l)", "one key column"),
        ("SELECT a.title, b.title AS t2 FROM \"t.a\" a JOIN \"t.b\" b USING (k)", "`a_title` and `b_title`"),
        ("SELECT * FROM \"t.a\" a JOIN \"t.b\" b USING (k)", "`*` over a join"),
        ("SELECT a.x FROM \"t.a\" a JOIN \"t.b\" a USING (k)", "two sides are called `a`"),
    ] {
        let err = sql(text).expect_err(text);
        assert!(err.contains(want), "{text}: {err}");
    }
}
