//! `clean-user`: the user cleaning rules of SPEC section 5.
//!
//! Output columns, in order: ind, user_name (first + " " + last), age, date_joined (UTC).
//! Built against contract 0.2.0 (typed columns); the 0.1.0 form is kept for the tests,
//! which check on every rule that both give the same output.

use serde::Deserialize;
use sluice_guest::json::{Field, JsonWriter, parse_object, row_id};
use sluice_guest::time::{TimestampField, format_rfc3339_ms, timestamp_field};
use sluice_guest::{ColumnTransform, Descriptor, Emitter, InputField, InputType, Output, OutputField, OutputType, Record, Reject, Row, Transform};

pub struct CleanUser;

#[derive(Deserialize, Default)]
#[serde(default)]
struct User<'a> {
    #[serde(borrow)]
    ind: Field<'a>,
    #[serde(borrow)]
    first_name: Field<'a>,
    #[serde(borrow)]
    last_name: Field<'a>,
    #[serde(borrow)]
    age: Field<'a>,
    #[serde(borrow)]
    date_joined: Field<'a>,
}

/// A cleaned user record and the counters its cleaning bumped.
struct Cleaned {
    ind: i64,
    user_name: Option<String>,
    age: Option<i64>,
    date_joined_ms: Option<i64>,
    counters: Vec<&'static str>,
}

impl Cleaned {
    fn from(user: &User<'_>) -> Result<Self, Reject> {
        let ind = row_id(&user.ind, "ind")?;
        let mut counters = Vec::new();
        let user_name = match (user.first_name.text(), user.last_name.text()) {
            // Not `format!`: the formatting machinery is slow in Wasm.
            (Some(f), Some(l)) => Some([f.trim(), l.trim()].join(" ")),
            (Some(one), None) | (None, Some(one)) => Some(one.trim().to_owned()),
            (None, None) => None,
        };
        let age = if user.age.is_absent() {
            None
        } else {
            let age = user.age.int_lenient().filter(|a| (0..=150).contains(a));
            if age.is_none() {
                counters.push("age_unparsed");
            }
            age
        };
        let date_joined_ms = match timestamp_field(&user.date_joined) {
            TimestampField::Absent => None,
            TimestampField::Ms(ms) => Some(ms),
            TimestampField::Unparsed => {
                counters.push("timestamp_unparsed");
                None
            }
        };
        Ok(Cleaned { ind, user_name, age, date_joined_ms, counters })
    }
}

impl Transform for CleanUser {
    const DESCRIPTOR: Descriptor = Descriptor { name: "clean-user", version: "0.1.0", input_kind: "user", output_kind: "user-clean" };

    fn transform(record: &Record<'_>, out: &mut Output) -> Result<(), Reject> {
        let user: User = parse_object(record.value)?;
        let c = Cleaned::from(&user)?;
        for name in &c.counters {
            out.count(name, 1);
        }
        let date_joined = c.date_joined_ms.map(|ms| {
            let mut s = String::with_capacity(24);
            format_rfc3339_ms(ms, &mut s);
            s
        });
        out.emit(|buf| {
            JsonWriter::object(buf)
                .int("ind", Some(c.ind))
                .str("user_name", c.user_name.as_deref())
                .int("age", c.age)
                .str("date_joined", date_joined.as_deref())
                .end();
        });
        Ok(())
    }
}

impl ColumnTransform for CleanUser {
    const DESCRIPTOR: Descriptor = Descriptor { name: "clean-user", version: "0.2.0", input_kind: "user", output_kind: "user-clean" };
    const INPUT: &'static [InputField] = &[
        InputField::new("ind", InputType::Any),
        InputField::new("first_name", InputType::Any),
        InputField::new("last_name", InputType::Any),
        InputField::new("age", InputType::Any),
        InputField::new("date_joined", InputType::Any),
    ];
    const OUTPUT: &'static [OutputField] = &[
        OutputField::new("ind", OutputType::Int64, false),
        OutputField::new("user_name", OutputType::String, true),
        OutputField::new("age", OutputType::Int64, true),
        OutputField::new("date_joined", OutputType::Timestamp, true),
    ];

    fn transform(row: &Row<'_, '_>, out: &mut Emitter) -> Result<(), Reject> {
        let user = User {
            ind: row.field("ind"),
            first_name: row.field("first_name"),
            last_name: row.field("last_name"),
            age: row.field("age"),
            date_joined: row.field("date_joined"),
        };
        let c = Cleaned::from(&user)?;
        for name in &c.counters {
            out.count(name, 1);
        }
        out.emit(|r| {
            r.int("ind", Some(c.ind))
                .str("user_name", c.user_name.as_deref())
                .int("age", c.age)
                .timestamp_us("date_joined", c.date_joined_ms.map(|ms| ms * 1000));
        });
        Ok(())
    }
}

#[cfg(feature = "component")]
sluice_guest::export_columns!(CleanUser);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use sluice_guest::columns::run_both;
    use sluice_guest::{BatchBuf, BatchResult};

    fn run(records: &[Value]) -> BatchResult {
        run_both::<CleanUser>(&BatchBuf::from_json(records).as_ref())
    }

    fn first(res: &BatchResult) -> Value {
        serde_json::from_slice(res.output.as_ref().get(0).value).expect("valid JSON")
    }

    fn user() -> Value {
        json!({"ind": 7528, "first_name": "Abigail", "last_name": "Ali", "age": 20, "date_joined": "2015-10-24 11:23:51"})
    }

    #[test]
    fn spec_example() {
        let res = run(&[user()]);
        let raw = std::str::from_utf8(res.output.as_ref().get(0).value).expect("utf8").to_owned();
        assert_eq!(raw, r#"{"ind":7528,"user_name":"Abigail Ali","age":20,"date_joined":"2015-10-24T11:23:51Z"}"#);
    }

    #[test]
    fn a_null_name_part_is_skipped() {
        let mut u = user();
        u["last_name"] = json!(null);
        assert_eq!(first(&run(&[u]))["user_name"], "Abigail");
        let mut u = user();
        u["first_name"] = json!("  ");
        assert_eq!(first(&run(&[u]))["user_name"], "Ali");
        let mut u = user();
        u.as_object_mut().expect("object").remove("first_name");
        u["last_name"] = json!(null);
        assert!(first(&run(&[u]))["user_name"].is_null());
    }

    #[test]
    fn timestamps_in_every_form() {
        for ts in ["2015-10-24 11:23:51", "2015-10-24T11:23:51", "2015:10:24 11:23:51", "2015-10-24T11:23:51Z"] {
            let mut u = user();
            u["date_joined"] = json!(ts);
            assert_eq!(first(&run(&[u]))["date_joined"], "2015-10-24T11:23:51Z", "{ts}");
        }
    }

    #[test]
    fn bad_age_and_date_become_null_and_are_counted() {
        let mut u = user();
        u["age"] = json!("twenty");
        u["date_joined"] = json!(17);
        let res = run(&[u]);
        let v = first(&res);
        assert!(v["age"].is_null() && v["date_joined"].is_null());
        assert_eq!(res.counters, vec![("age_unparsed", 1), ("timestamp_unparsed", 1)]);
        let mut u = user();
        u["age"] = json!("33");
        assert_eq!(first(&run(&[u]))["age"], 33);
    }

    #[test]
    fn rejects_without_row_id() {
        let res = run(&[json!({"ind": "x"}), json!(null), user()]);
        assert_eq!(res.rejections[0].reason, "no row id: field `ind` is not an integer (a string)");
        assert_eq!(res.rejections[1].reason, "record is not a JSON object");
        assert_eq!(res.origins, vec![2]);
    }
}
