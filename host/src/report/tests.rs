//! The reports against answers worked out here in plain Rust, on generated
//! tables with ties, nulls, duplicates, every age group and ages in none.

use super::*;
use chrono::Datelike;
use datafusion::arrow::util::display::array_value_to_string;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Pin {
    ind: i64,
    category: Option<String>,
    poster: Option<String>,
    followers: Option<i64>,
}
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Geo {
    ind: i64,
    country: Option<String>,
    /// Epoch seconds, UTC.
    ts: Option<i64>,
}
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct User {
    ind: i64,
    name: Option<String>,
    age: Option<i64>,
    joined: Option<i64>,
}

struct Data {
    pins: Vec<Pin>,
    geos: Vec<Geo>,
    users: Vec<User>,
}

/// `make()`, or null with probability `null_share`.
fn maybe<T>(rng: &mut rand::rngs::SmallRng, null_share: f64, make: impl FnOnce(&mut rand::rngs::SmallRng) -> T) -> Option<T> {
    let v = make(rng);
    (!rng.random_bool(null_share)).then_some(v)
}

fn epoch(year: i32, day: u32, second: u32) -> i64 {
    chrono::NaiveDate::from_yo_opt(year, day).expect("day of year").and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp() + i64::from(second)
}

fn generate(rows: i64) -> Data {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    let categories = ["art", "beauty", "diy-and-crafts", "travel"];
    let countries = ["Albania", "Chile", "Fiji", "Peru", "Togo"];
    let (mut pins, mut geos, mut users) = (Vec::new(), Vec::new(), Vec::new());
    for ind in 0..rows {
        let pin = Pin {
            ind,
            category: maybe(&mut rng, 0.04, |rng| categories[rng.random_range(0..categories.len())].to_owned()),
            poster: maybe(&mut rng, 0.04, |rng| format!("poster {:02}", rng.random_range(0..40))),
            // Few distinct counts, so posters tie on followers.
            followers: maybe(&mut rng, 0.05, |rng| rng.random_range(0..60) * 100),
        };
        let geo = Geo {
            ind,
            country: maybe(&mut rng, 0.03, |rng| countries[rng.random_range(0..countries.len())].to_owned()),
            ts: maybe(&mut rng, 0.03, |rng| epoch(rng.random_range(2016..=2023), rng.random_range(1..=365), rng.random_range(0..86_400))),
        };
        let user = User {
            ind,
            name: maybe(&mut rng, 0.03, |rng| format!("user {:03}", rng.random_range(0..150))),
            // 15..=65: under-18s (no group), both edges of every group, and 50+.
            age: maybe(&mut rng, 0.03, |rng| rng.random_range(15..=65)),
            joined: maybe(&mut rng, 0.03, |rng| epoch(rng.random_range(2014..=2021), rng.random_range(1..=365), rng.random_range(0..86_400))),
        };
        // Some rows are resent (exact duplicates); some have no geo or user row.
        let copies = if rng.random_bool(0.1) { 2 } else { 1 };
        for _ in 0..copies {
            pins.push(pin.clone());
            if ind % 37 != 0 {
                geos.push(geo.clone());
            }
            if ind % 41 != 0 {
                users.push(user.clone());
            }
        }
    }
    // Made-to-order ties: two categories with one pin each in Tieland, and two
    // posters there with the same follower count (the first name must win).
    for (ind, category, poster) in [(rows, "travel", "Zed"), (rows + 1, "art", "Amy")] {
        pins.push(Pin { ind, category: Some(category.into()), poster: Some(poster.into()), followers: Some(9_000_000) });
        geos.push(Geo { ind, country: Some("Tieland".into()), ts: Some(epoch(2020, 10, 0)) });
        users.push(User { ind, name: Some(poster.into()), age: Some(24), joined: Some(epoch(2016, 1, 0)) });
    }
    Data { pins, geos, users }
}

fn json_lines(d: &Data) -> [(&'static str, &'static str, String); 3] {
    let ts = |t: Option<i64>| t.map(|t| chrono::DateTime::from_timestamp(t, 0).expect("valid").format("%Y-%m-%dT%H:%M:%SZ").to_string());
    let mut pin = String::new();
    for p in &d.pins {
        pin.push_str(
            &serde_json::json!({ "ind": p.ind, "category": p.category, "poster_name": p.poster, "follower_count": p.followers, "title": "t" }).to_string(),
        );
        pin.push('\n');
    }
    let mut geo = String::new();
    for g in &d.geos {
        geo.push_str(&serde_json::json!({ "ind": g.ind, "country": g.country, "coordinates": [1.5, -2.5], "timestamp": ts(g.ts) }).to_string());
        geo.push('\n');
    }
    let mut user = String::new();
    for u in &d.users {
        user.push_str(&serde_json::json!({ "ind": u.ind, "user_name": u.name, "age": u.age, "date_joined": ts(u.joined) }).to_string());
        user.push('\n');
    }
    [("pin", "pin-clean", pin), ("geo", "geo-clean", geo), ("user", "user-clean", user)]
}

/// Land `d` as the cleaned tables (two Parquet files per table, as two segments would).
fn land(root: &std::path::Path, d: &Data) {
    for (table, kind, lines) in json_lines(d) {
        let schema = crate::sink::schema::builtin(kind).expect("built-in schema");
        let dir = root.join("tables").join(table);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let all: Vec<&str> = lines.lines().collect();
        for (i, part) in all.chunks(all.len().div_ceil(2)).enumerate() {
            let text = part.join("\n");
            let reader = arrow_json::ReaderBuilder::new(schema.clone()).build(std::io::Cursor::new(text.into_bytes())).expect("reader");
            let file = std::fs::File::create(dir.join(format!("t.{table}+0+{:010}.parquet", i * 1000))).expect("create");
            let mut w = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), None).expect("writer");
            for b in reader {
                w.write(&b.expect("decodes")).expect("write");
            }
            w.close().expect("close");
        }
    }
}

fn year(t: i64) -> i64 {
    i64::from(chrono::DateTime::from_timestamp(t, 0).expect("valid").year())
}

fn age_group(age: i64) -> Option<&'static str> {
    match age {
        18..=24 => Some("18-24"),
        25..=35 => Some("25-35"),
        36..=50 => Some("36-50"),
        51.. => Some("50+"),
        _ => None,
    }
}

/// Per group, the category with most pins; ties to the first name.
fn top_categories<K: Ord + ToString>(pairs: impl Iterator<Item = (K, String)>) -> Vec<Vec<String>> {
    let mut counts: BTreeMap<K, BTreeMap<String, i64>> = BTreeMap::new();
    for (k, c) in pairs {
        *counts.entry(k).or_default().entry(c).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(k, cats)| {
            // BTreeMap iterates names in order; only a strictly larger count replaces the first.
            let (mut best, mut n) = (String::new(), -1);
            for (c, count) in cats {
                if count > n {
                    (best, n) = (c, count);
                }
            }
            vec![k.to_string(), best, n.to_string()]
        })
        .collect()
}

/// Per group, the value at position ceil(n/2) of the sorted values.
fn lower_medians<K: Ord>(pairs: impl Iterator<Item = (K, i64)>, key: impl Fn(&K) -> Vec<String>) -> Vec<Vec<String>> {
    let mut groups: BTreeMap<K, Vec<i64>> = BTreeMap::new();
    for (k, v) in pairs {
        groups.entry(k).or_default().push(v);
    }
    groups
        .into_iter()
        .map(|(k, mut vs)| {
            vs.sort_unstable();
            let mut row = key(&k);
            row.push(vs[vs.len().div_ceil(2) - 1].to_string());
            row
        })
        .collect()
}

fn expected(d: &Data) -> BTreeMap<&'static str, Vec<Vec<String>>> {
    let pins: BTreeSet<Pin> = d.pins.iter().cloned().collect();
    let geos: BTreeSet<Geo> = d.geos.iter().cloned().collect();
    let users: BTreeSet<User> = d.users.iter().cloned().collect();
    let geo_of = |ind: i64| geos.iter().filter(move |g| g.ind == ind);
    let user_of = |ind: i64| users.iter().filter(move |u| u.ind == ind);
    let pin_geo: Vec<(&Pin, &Geo)> = pins.iter().flat_map(|p| geo_of(p.ind).map(move |g| (p, g))).collect();
    let pin_user: Vec<(&Pin, &User)> = pins.iter().flat_map(|p| user_of(p.ind).map(move |u| (p, u))).collect();
    let mut out = BTreeMap::new();

    out.insert("popular_category_by_country", top_categories(pin_geo.iter().filter_map(|(p, g)| Some((g.country.clone()?, p.category.clone()?)))));
    out.insert(
        "popular_category_by_year",
        top_categories(pin_geo.iter().filter_map(|(p, g)| Some((year(g.ts?), p.category.clone()?))).filter(|(y, _)| (2018..=2022).contains(y))),
    );
    // Per country: most followers, then the first name.
    let mut top: BTreeMap<String, (i64, String)> = BTreeMap::new();
    for (p, g) in &pin_geo {
        let (Some(country), Some(poster), Some(f)) = (&g.country, &p.poster, p.followers) else { continue };
        let e = top.entry(country.clone()).or_insert((f, poster.clone()));
        if f > e.0 || (f == e.0 && *poster < e.1) {
            *e = (f, poster.clone());
        }
    }
    out.insert("top_user_by_country", top.iter().map(|(c, (f, p))| vec![c.clone(), p.clone(), f.to_string()]).collect());
    let best = top.iter().fold(None::<(&String, i64)>, |best, (c, (f, _))| match best {
        Some((_, bf)) if bf >= *f => best,
        _ => Some((c, *f)),
    });
    out.insert("top_country_by_followers", best.map(|(c, f)| vec![vec![c.clone(), f.to_string()]]).unwrap_or_default());
    out.insert("popular_category_by_age_group", top_categories(pin_user.iter().filter_map(|(p, u)| Some((age_group(u.age?)?, p.category.clone()?)))));
    out.insert(
        "median_followers_by_age_group",
        lower_medians(pin_user.iter().filter_map(|(p, u)| Some((age_group(u.age?)?, p.followers?))), |g| vec![g.to_string()]),
    );
    let joined: BTreeSet<(String, i64)> = users.iter().filter_map(|u| Some((u.name.clone()?, u.joined?))).collect();
    let mut per_year: BTreeMap<i64, i64> = BTreeMap::new();
    for (_, t) in &joined {
        if (2015..=2020).contains(&year(*t)) {
            *per_year.entry(year(*t)).or_default() += 1;
        }
    }
    out.insert("users_joined_by_year", per_year.iter().map(|(y, n)| vec![y.to_string(), n.to_string()]).collect());
    out.insert(
        "median_followers_by_join_year",
        lower_medians(pin_user.iter().filter_map(|(p, u)| Some((year(u.joined?), p.followers?))).filter(|(y, _)| (2015..=2020).contains(y)), |y| {
            vec![y.to_string()]
        }),
    );
    out.insert(
        "median_followers_by_join_year_and_age_group",
        lower_medians(
            pin_user.iter().filter_map(|(p, u)| Some(((age_group(u.age?)?, year(u.joined?)), p.followers?))).filter(|((_, y), _)| (2015..=2020).contains(y)),
            |(g, y)| vec![g.to_string(), y.to_string()],
        ),
    );
    out
}

fn rows(r: &ReportResult) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for b in &r.batches {
        for row in 0..b.num_rows() {
            out.push((0..b.num_columns()).map(|c| array_value_to_string(b.column(c), row).expect("displayable")).collect());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_report_matches_the_answer_worked_out_in_rust() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = generate(3000);
    land(dir.path(), &data);
    let want = expected(&data);
    let got = run::execute(&Landing::Dir(dir.path().to_owned()), &|_, _, _| {}).await.expect("reports run");
    assert_eq!(got.len(), 9);
    for r in &got {
        let w = &want[r.name];
        assert!(!w.is_empty(), "{}: the generated data must give it rows", r.name);
        assert_eq!(&rows(r), w, "report {}", r.name);
    }
    let by_name = |n: &str| rows(got.iter().find(|r| r.name == n).expect("report"));
    // The made-to-order ties went to the first name.
    assert!(by_name("popular_category_by_country").contains(&vec!["Tieland".into(), "art".into(), "1".into()]));
    assert!(by_name("top_user_by_country").contains(&vec!["Tieland".into(), "Amy".into(), "9000000".into()]));
    assert_eq!(by_name("top_country_by_followers"), vec![vec!["Tieland".to_owned(), "9000000".into()]]);
    let groups: Vec<String> = by_name("median_followers_by_age_group").into_iter().map(|r| r[0].clone()).collect();
    assert_eq!(groups, ["18-24", "25-35", "36-50", "50+"]);
    let years: Vec<String> = by_name("users_joined_by_year").into_iter().map(|r| r[0].clone()).collect();
    assert_eq!(years, ["2015", "2016", "2017", "2018", "2019", "2020"]);
    // Column names are those of the spec.
    let cols = |n: &str| got.iter().find(|r| r.name == n).expect("report").schema.fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>();
    assert_eq!(cols("median_followers_by_join_year_and_age_group"), ["age_group", "post_year", "median_follower_count"]);
    assert_eq!(cols("popular_category_by_year"), ["post_year", "category", "category_count"]);
}

#[test]
fn lower_median_and_age_groups_follow_the_spec() {
    assert_eq!(lower_medians([(1, 4), (1, 1), (1, 3), (1, 2)].into_iter(), |_| vec![]), vec![vec!["2".to_owned()]]);
    assert_eq!(lower_medians([(1, 5), (1, 1), (1, 3)].into_iter(), |_| vec![]), vec![vec!["3".to_owned()]]);
    assert_eq!(
        [17, 18, 24, 25, 35, 36, 50, 51].map(age_group),
        [None, Some("18-24"), Some("18-24"), Some("25-35"), Some("25-35"), Some("36-50"), Some("36-50"), Some("50+")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_writes_parquet_csv_and_a_summary_into_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = generate(300);
    land(dir.path(), &data);
    let results = run::execute(&Landing::Dir(dir.path().to_owned()), &|_, _, _| {}).await.expect("reports run");
    let store = crate::store::local::LocalStore::new(dir.path()).expect("store");
    let keys = tokio::task::block_in_place(|| run::write(&store, "20260101T000000Z", &results)).expect("written");
    assert_eq!(keys.len(), 9 * 2 + 1);
    assert!(keys.contains(&"reports/users_joined_by_year/run=20260101T000000Z/users_joined_by_year.csv".to_owned()));
    let csv = std::fs::read_to_string(dir.path().join("reports/users_joined_by_year/run=20260101T000000Z/users_joined_by_year.csv")).expect("csv");
    assert!(csv.starts_with("post_year,number_users_joined\n2015,"), "{csv}");
    let html = String::from_utf8(run::latest_summary(&store).expect("read").expect("a summary")).expect("utf-8");
    assert_eq!(html.matches("<svg").count(), 9);
    // The report tables read back through SQL, as any other table would.
    let (_, back) = query(&Landing::Dir(dir.path().to_owned()), "SELECT count(*) AS n FROM pin").await.expect("query");
    assert_eq!(array_value_to_string(back[0].column(0), 0).expect("n"), data.pins.len().to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reports_read_any_object_store_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = generate(200);
    land(dir.path(), &data);
    // The path S3 takes: objects listed and fetched through the ObjectStore trait.
    let store: Arc<dyn crate::store::ObjectStore> = Arc::new(crate::store::local::LocalStore::new(dir.path()).expect("store"));
    let via_store = run::execute(&Landing::Store(store), &|_, _, _| {}).await.expect("reports run");
    let want = expected(&data);
    for r in &via_store {
        assert_eq!(&rows(r), &want[r.name], "report {}", r.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_tables_and_bad_sql_are_explained() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = run::execute(&Landing::Dir(dir.path().to_owned()), &|_, _, _| {}).await.err().expect("fails").to_string();
    assert!(err.contains("no table pin, geo, user") && err.contains("found: none"), "{err}");
    land(dir.path(), &generate(10));
    let err = query(&Landing::Dir(dir.path().to_owned()), "SELECT nope FROM pin").await.expect_err("fails").to_string();
    assert!(err.contains("nope") && err.contains("tables under") && err.contains("geo, pin, user"), "{err}");
}

/// Land `d` as Delta tables: geo and user partitioned by date (the `dt` column
/// readers see), two rolls per table, each a Delta commit with its txn.
fn land_delta(root: &std::path::Path, d: &Data) {
    use crate::sink::delta::{DeltaOptions, DeltaSink, RollCommit};
    use crate::sink::parquet::{ParquetObject, split_by_date};
    use crate::store::ObjectStore;
    let store = crate::store::local::LocalStore::new(root).expect("store");
    let native = store.native().expect("native");
    for (table, kind, lines) in json_lines(d) {
        let schema = crate::sink::schema::builtin(kind).expect("built-in schema");
        let partition_by = match table {
            "geo" => Some("timestamp"),
            "user" => Some("date_joined"),
            _ => None,
        };
        let mut sink =
            tokio::task::block_in_place(|| DeltaSink::open(&native, &store, "reports", table, &schema, partition_by.is_some(), &DeltaOptions::default()))
                .expect("open");
        let all: Vec<&str> = lines.lines().collect();
        for (i, part) in all.chunks(all.len().div_ceil(2)).enumerate() {
            let reader = arrow_json::ReaderBuilder::new(schema.clone()).build(std::io::Cursor::new(part.join("\n").into_bytes())).expect("reader");
            let batches: Vec<_> = reader.map(|b| b.expect("decodes")).collect();
            let batch = arrow_select::concat::concat_batches(&schema, &batches).expect("concat");
            let parts = match partition_by {
                Some(col) => split_by_date(&batch, col).expect("split"),
                None => vec![(String::new(), batch)],
            };
            let mut files = Vec::new();
            for (hive, rows) in parts {
                let hive = (!hive.is_empty()).then_some(hive);
                let p = crate::position::PartitionId { topic: format!("t.{table}").into(), partition: 0 };
                let key = crate::sink::layout::table_object(table, hive.as_deref(), &p, (i * 1000) as u64, "parquet");
                let mut object = ParquetObject::new(store.create(&key).expect("create"), schema.clone()).expect("writer");
                object.write(&rows).expect("write");
                let w = object.close(&[]).expect("close");
                let bytes = w.written();
                w.finish(&[]).expect("finish");
                files.push(crate::sink::TableFile { key, hive, bytes, rows: rows.num_rows() as u64 });
            }
            let roll = RollCommit { app_id: format!("reports/t.{table}/0"), version: ((i + 1) * 1000) as u64, files: &files, lineage: &[], replay: false };
            tokio::task::block_in_place(|| sink.commit(roll)).expect("commit");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reports_over_delta_tables_equal_the_reports_over_parquet() {
    let data = generate(2000);
    let (parquet, delta) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    land(parquet.path(), &data);
    land_delta(delta.path(), &data);
    let over_parquet = run::execute(&Landing::Dir(parquet.path().to_owned()), &|_, _, _| {}).await.expect("reports over Parquet");
    let over_delta = run::execute(&Landing::Dir(delta.path().to_owned()), &|_, _, _| {}).await.expect("reports over Delta");
    let store: Arc<dyn crate::store::ObjectStore> = Arc::new(crate::store::local::LocalStore::new(delta.path()).expect("store"));
    let via_store = run::execute(&Landing::Store(store.clone()), &|_, _, _| {}).await.expect("reports over Delta through the store");
    assert_eq!(over_parquet.len(), 9);
    for ((p, d), s) in over_parquet.iter().zip(&over_delta).zip(&via_store) {
        assert!(!rows(p).is_empty(), "{}: the data must give it rows", p.name);
        assert_eq!(rows(p), rows(d), "report {} over Delta", p.name);
        assert_eq!(rows(p), rows(s), "report {} over Delta through the store", p.name);
    }
    // The date partition column is there, from the log's partition values.
    let sql = "SELECT count(*) AS n, count(dt) AS dated, count(DISTINCT dt) AS days, \
               sum(CASE WHEN dt = CAST(\"timestamp\" AS DATE) THEN 1 ELSE 0 END) AS right FROM geo";
    let (_, got) = query(&Landing::Store(store), sql).await.expect("query");
    let cell = |c: usize| array_value_to_string(got[0].column(c), 0).expect("cell");
    let dated = data.geos.iter().filter(|g| g.ts.is_some()).count();
    assert_eq!(cell(0), data.geos.len().to_string());
    assert_eq!((cell(1), cell(3)), (dated.to_string(), dated.to_string()));
    assert!(cell(2).parse::<usize>().expect("days") > 1);
    // Files on disk the log does not hold (a crash's leftovers) are not read.
    std::fs::copy(delta.path().join("tables/pin/t.pin+0+0000000000.parquet"), delta.path().join("tables/pin/t.pin+0+0000099999.parquet")).expect("copy");
    let (_, n) = query(&Landing::Dir(delta.path().to_owned()), "SELECT count(*) FROM pin").await.expect("query");
    assert_eq!(array_value_to_string(n[0].column(0), 0).expect("n"), data.pins.len().to_string());
}
