//! `clean-geo`: the geo cleaning rules of SPEC section 5.
//!
//! Output columns, in order: ind, country, coordinates ([latitude, longitude]), timestamp (UTC).
//! Built against contract 0.2.0 (typed columns); the 0.1.0 form is kept for the tests,
//! which check on every rule that both give the same output.

use serde::Deserialize;
use sluice_guest::json::{Field, JsonWriter, parse_object, row_id};
use sluice_guest::time::{TimestampField, format_rfc3339_ms, timestamp_field};
use sluice_guest::{ColumnTransform, Descriptor, Emitter, InputField, InputType, Output, OutputField, OutputType, Record, Reject, Row, Transform};

pub struct CleanGeo;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Geo<'a> {
    #[serde(borrow)]
    ind: Field<'a>,
    #[serde(borrow)]
    timestamp: Field<'a>,
    #[serde(borrow)]
    latitude: Field<'a>,
    #[serde(borrow)]
    longitude: Field<'a>,
    #[serde(borrow)]
    country: Field<'a>,
}

/// A cleaned geo record and the counters its cleaning bumped.
struct Cleaned<'f> {
    ind: i64,
    country: Option<&'f str>,
    coordinates: Option<[f64; 2]>,
    timestamp_ms: Option<i64>,
    counters: Vec<&'static str>,
}

impl<'f> Cleaned<'f> {
    fn from(geo: &'f Geo<'_>) -> Result<Self, Reject> {
        let ind = row_id(&geo.ind, "ind")?;
        let mut counters = Vec::new();
        let country = geo.country.text();
        if !geo.country.is_absent() && country.is_none() && !matches!(geo.country, Field::Str(_)) {
            counters.push("field_wrong_type");
        }
        let lat = coordinate(&geo.latitude, 90.0, &mut counters);
        let lon = coordinate(&geo.longitude, 180.0, &mut counters);
        let timestamp_ms = match timestamp_field(&geo.timestamp) {
            TimestampField::Absent => None,
            TimestampField::Ms(ms) => Some(ms),
            TimestampField::Unparsed => {
                counters.push("timestamp_unparsed");
                None
            }
        };
        Ok(Cleaned { ind, country, coordinates: lat.zip(lon).map(|(a, b)| [a, b]), timestamp_ms, counters })
    }
}

impl Transform for CleanGeo {
    const DESCRIPTOR: Descriptor = Descriptor { name: "clean-geo", version: "0.1.0", input_kind: "geo", output_kind: "geo-clean" };

    fn transform(record: &Record<'_>, out: &mut Output) -> Result<(), Reject> {
        let geo: Geo = parse_object(record.value)?;
        let c = Cleaned::from(&geo)?;
        for name in &c.counters {
            out.count(name, 1);
        }
        let timestamp = c.timestamp_ms.map(|ms| {
            let mut s = String::with_capacity(24);
            format_rfc3339_ms(ms, &mut s);
            s
        });
        out.emit(|buf| {
            JsonWriter::object(buf)
                .int("ind", Some(c.ind))
                .str("country", c.country)
                .floats("coordinates", c.coordinates.as_ref().map(|c| &c[..]))
                .str("timestamp", timestamp.as_deref())
                .end();
        });
        Ok(())
    }
}

impl ColumnTransform for CleanGeo {
    const DESCRIPTOR: Descriptor = Descriptor { name: "clean-geo", version: "0.2.0", input_kind: "geo", output_kind: "geo-clean" };
    const INPUT: &'static [InputField] = &[
        InputField::new("ind", InputType::Any),
        InputField::new("timestamp", InputType::Any),
        InputField::new("latitude", InputType::Any),
        InputField::new("longitude", InputType::Any),
        InputField::new("country", InputType::String),
    ];
    const OUTPUT: &'static [OutputField] = &[
        OutputField::new("ind", OutputType::Int64, false),
        OutputField::new("country", OutputType::String, true),
        OutputField::new("coordinates", OutputType::Float64List, true),
        OutputField::new("timestamp", OutputType::Timestamp, true),
    ];

    fn transform(row: &Row<'_, '_>, out: &mut Emitter) -> Result<(), Reject> {
        let geo = Geo {
            ind: row.field("ind"),
            timestamp: row.field("timestamp"),
            latitude: row.field("latitude"),
            longitude: row.field("longitude"),
            country: row.field("country"),
        };
        let c = Cleaned::from(&geo)?;
        for name in &c.counters {
            out.count(name, 1);
        }
        out.emit(|r| {
            r.int("ind", Some(c.ind))
                .str("country", c.country)
                .floats("coordinates", c.coordinates.as_ref().map(|c| &c[..]))
                .timestamp_us("timestamp", c.timestamp_ms.map(|ms| ms * 1000));
        });
        Ok(())
    }
}

/// A latitude or longitude: a number (or numeric string) within ±`limit`; otherwise null, counted.
fn coordinate(f: &Field<'_>, limit: f64, counters: &mut Vec<&'static str>) -> Option<f64> {
    if f.is_absent() {
        return None;
    }
    let v = f.float_lenient().filter(|v| v.abs() <= limit);
    if v.is_none() {
        counters.push("coordinate_unparsed");
    }
    v
}

#[cfg(feature = "component")]
sluice_guest::export_columns!(CleanGeo);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use sluice_guest::columns::run_both;
    use sluice_guest::{BatchBuf, BatchResult};

    fn run(records: &[Value]) -> BatchResult {
        run_both::<CleanGeo>(&BatchBuf::from_json(records).as_ref())
    }

    fn values(res: &BatchResult) -> Vec<Value> {
        res.output.as_ref().iter().map(|r| serde_json::from_slice(r.value).expect("valid JSON")).collect()
    }

    fn geo() -> Value {
        json!({"ind": 7528, "timestamp": "2020-08-28 03:52:47", "latitude": -89.9787, "longitude": -173.293, "country": "Albania"})
    }

    #[test]
    fn spec_example() {
        let res = run(&[geo()]);
        let raw = std::str::from_utf8(res.output.as_ref().get(0).value).expect("utf8").to_owned();
        assert_eq!(raw, r#"{"ind":7528,"country":"Albania","coordinates":[-89.9787,-173.293],"timestamp":"2020-08-28T03:52:47Z"}"#);
        assert!(res.counters.is_empty() && res.rejections.is_empty());
    }

    #[test]
    fn all_timestamp_forms_normalise_to_utc() {
        for ts in ["2020-08-28 03:52:47", "2020-08-28T03:52:47", "2020-08-28T03:52:47Z", "2020-08-28T04:52:47+01:00", "2020:08:28 03:52:47"] {
            let mut g = geo();
            g["timestamp"] = json!(ts);
            assert_eq!(values(&run(&[g]))[0]["timestamp"], "2020-08-28T03:52:47Z", "{ts}");
        }
    }

    #[test]
    fn bad_fields_become_null_and_are_counted() {
        let mut g = geo();
        g["timestamp"] = json!("yesterday");
        g["latitude"] = json!(123.0);
        let res = run(&[g]);
        let v = &values(&res)[0];
        assert!(v["timestamp"].is_null() && v["coordinates"].is_null());
        assert_eq!(res.counters, vec![("coordinate_unparsed", 1), ("timestamp_unparsed", 1)]);
        let mut g = geo();
        g["latitude"] = json!("-12.5");
        g.as_object_mut().expect("object").remove("timestamp");
        let res = run(&[g]);
        assert_eq!(values(&res)[0]["coordinates"], json!([-12.5, -173.293]));
        assert!(res.counters.is_empty());
    }

    #[test]
    fn rejects_records_without_ind() {
        let res = run(&[json!({"index": 1}), json!(3), geo()]);
        assert_eq!(res.rejections.len(), 2);
        assert_eq!(res.rejections[0].reason, "no row id: field `ind` is missing");
        assert_eq!(res.rejections[1].reason, "record is not a JSON object");
        assert_eq!(res.origins, vec![2]);
    }
}
