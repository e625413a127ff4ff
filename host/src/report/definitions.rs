//! The nine reports of SPEC section 6, as SQL over the cleaned tables.
//!
//! Shared rules, applied the same way in every report:
//! - duplicates: rows with the same row id and the same values in the columns
//!   the reports read are kept once (the emulator resends whole rows);
//! - a row with a null in a field a report uses is left out of that report;
//! - ties go to the alphabetically first name (category, poster, country);
//! - the median is the lower median: the value at position p = ceil(n/2) of the
//!   ascending values, found as `2p BETWEEN n AND n + 1` (no division, so the
//!   same SQL means the same in engines where `/` on integers gives a fraction);
//! - years are calendar years in UTC; age groups 18-24, 25-35, 36-50, 50+ (age > 50);
//!   ages under 18 belong to no group and are left out of the age reports.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;

/// One report: its name (also its folder under `reports/`) and its query.
pub struct ReportDef {
    pub name: &'static str,
    pub title: &'static str,
    pub sql: String,
}

/// Deduplicated inputs; every report starts from these.
const BASE: &str = r#"
pins AS (SELECT DISTINCT ind, category, poster_name, follower_count FROM pin),
geos AS (SELECT DISTINCT ind, country, "timestamp" FROM geo),
users AS (SELECT DISTINCT ind, user_name, age, date_joined FROM "user"),
aged AS (
  SELECT ind, user_name, date_joined, CASE
    WHEN age BETWEEN 18 AND 24 THEN '18-24'
    WHEN age BETWEEN 25 AND 35 THEN '25-35'
    WHEN age BETWEEN 36 AND 50 THEN '36-50'
    WHEN age > 50 THEN '50+'
  END AS age_group
  FROM users
)"#;

fn with_base(rest: &str) -> String {
    format!("WITH {BASE},\n{rest}")
}

/// Per group, the lower median of `v` from the CTE `vals(<group columns>, v)`.
fn lower_median(groups: &str) -> String {
    format!(
        "ranked AS (
  SELECT {groups}, v,
         ROW_NUMBER() OVER (PARTITION BY {groups} ORDER BY v) AS rn,
         COUNT(*) OVER (PARTITION BY {groups}) AS n
  FROM vals
)
SELECT {groups}, v AS median_follower_count FROM ranked WHERE 2 * rn BETWEEN n AND n + 1 ORDER BY {groups}"
    )
}

/// Per group, the category with most pins, from the CTE `labelled(<group>, category)`.
fn top_category(group: &str) -> String {
    format!(
        "counts AS (SELECT {group}, category, COUNT(*) AS category_count FROM labelled GROUP BY {group}, category),
ranked AS (SELECT *, ROW_NUMBER() OVER (PARTITION BY {group} ORDER BY category_count DESC, category) AS rn FROM counts)
SELECT {group}, category, category_count FROM ranked WHERE rn = 1 ORDER BY {group}"
    )
}

const YEAR_OF_POST: &str = r#"CAST(date_part('year', g."timestamp") AS BIGINT)"#;
const YEAR_JOINED: &str = "CAST(date_part('year', u.date_joined) AS BIGINT)";

/// The top poster of every country (shared by reports 3 and 4).
const TOP_POSTERS: &str = "top AS (
  SELECT g.country, p.poster_name, p.follower_count,
         ROW_NUMBER() OVER (PARTITION BY g.country ORDER BY p.follower_count DESC, p.poster_name) AS rn
  FROM pins p JOIN geos g ON p.ind = g.ind
  WHERE g.country IS NOT NULL AND p.poster_name IS NOT NULL AND p.follower_count IS NOT NULL
)";

pub fn all() -> Vec<ReportDef> {
    vec![
        ReportDef {
            name: "popular_category_by_country",
            title: "Most popular category per country (pins)",
            sql: with_base(&format!(
                "labelled AS (SELECT g.country, p.category FROM pins p JOIN geos g ON p.ind = g.ind WHERE g.country IS NOT NULL AND p.category IS NOT NULL),\n{}",
                top_category("country")
            )),
        },
        ReportDef {
            name: "popular_category_by_year",
            title: "Most popular category per year, 2018-2022 (pins)",
            sql: with_base(&format!(
                "labelled AS (SELECT {YEAR_OF_POST} AS post_year, p.category FROM pins p JOIN geos g ON p.ind = g.ind
  WHERE g.\"timestamp\" IS NOT NULL AND p.category IS NOT NULL AND {YEAR_OF_POST} BETWEEN 2018 AND 2022),\n{}",
                top_category("post_year")
            )),
        },
        ReportDef {
            name: "top_user_by_country",
            title: "Poster with most followers per country",
            sql: with_base(&format!("{TOP_POSTERS}\nSELECT country, poster_name, follower_count FROM top WHERE rn = 1 ORDER BY country")),
        },
        ReportDef {
            name: "top_country_by_followers",
            title: "Country whose top poster has most followers",
            sql: with_base(&format!("{TOP_POSTERS}\nSELECT country, follower_count FROM top WHERE rn = 1 ORDER BY follower_count DESC, country LIMIT 1")),
        },
        ReportDef {
            name: "popular_category_by_age_group",
            title: "Most popular category per age group (pins)",
            sql: with_base(&format!(
                "labelled AS (SELECT a.age_group, p.category FROM pins p JOIN aged a ON p.ind = a.ind WHERE a.age_group IS NOT NULL AND p.category IS NOT NULL),\n{}",
                top_category("age_group")
            )),
        },
        ReportDef {
            name: "median_followers_by_age_group",
            title: "Median follower count per age group",
            sql: with_base(&format!(
                "vals AS (SELECT a.age_group, p.follower_count AS v FROM pins p JOIN aged a ON p.ind = a.ind WHERE a.age_group IS NOT NULL AND p.follower_count IS NOT NULL),\n{}",
                lower_median("age_group")
            )),
        },
        ReportDef {
            name: "users_joined_by_year",
            title: "Users joined per year, 2015-2020",
            sql: with_base(&format!(
                "joined AS (SELECT DISTINCT u.user_name, u.date_joined, {YEAR_JOINED} AS post_year FROM users u WHERE u.user_name IS NOT NULL AND u.date_joined IS NOT NULL)
SELECT post_year, COUNT(*) AS number_users_joined FROM joined WHERE post_year BETWEEN 2015 AND 2020 GROUP BY post_year ORDER BY post_year"
            )),
        },
        ReportDef {
            name: "median_followers_by_join_year",
            title: "Median follower count per join year, 2015-2020",
            sql: with_base(&format!(
                "vals AS (SELECT {YEAR_JOINED} AS post_year, p.follower_count AS v FROM pins p JOIN users u ON p.ind = u.ind
  WHERE u.date_joined IS NOT NULL AND p.follower_count IS NOT NULL AND {YEAR_JOINED} BETWEEN 2015 AND 2020),\n{}",
                lower_median("post_year")
            )),
        },
        ReportDef {
            name: "median_followers_by_join_year_and_age_group",
            title: "Median follower count per age group and join year, 2015-2020",
            sql: with_base(&format!(
                "vals AS (SELECT a.age_group, CAST(date_part('year', a.date_joined) AS BIGINT) AS post_year, p.follower_count AS v FROM pins p JOIN aged a ON p.ind = a.ind
  WHERE a.age_group IS NOT NULL AND a.date_joined IS NOT NULL AND p.follower_count IS NOT NULL
    AND CAST(date_part('year', a.date_joined) AS BIGINT) BETWEEN 2015 AND 2020),\n{}",
                lower_median("age_group, post_year")
            )),
        },
    ]
}

/// What one report produced.
pub struct ReportResult {
    pub name: &'static str,
    pub title: &'static str,
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl ReportResult {
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}
