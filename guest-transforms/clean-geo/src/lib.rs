//! `clean-geo`: the geo cleaning rules of SPEC section 5.
//!
//! Output columns, in order: ind, country, coordinates ([latitude, longitude]), timestamp (UTC, RFC 3339).

use serde::Deserialize;
use sluice_guest::json::{Field, JsonWriter, parse_object, row_id};
use sluice_guest::time::clean_timestamp;
use sluice_guest::{Descriptor, Output, Record, Reject, Transform};

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

impl Transform for CleanGeo {
    const DESCRIPTOR: Descriptor = Descriptor { name: "clean-geo", version: "0.1.0", input_kind: "geo", output_kind: "geo-clean" };

    fn transform(record: &Record<'_>, out: &mut Output) -> Result<(), Reject> {
        let geo: Geo = parse_object(record.value)?;
        let ind = row_id(&geo.ind, "ind")?;

        let country = geo.country.text();
        if !geo.country.is_absent() && country.is_none() && !matches!(geo.country, Field::Str(_)) {
            out.count("field_wrong_type", 1);
        }
        let lat = coordinate(&geo.latitude, 90.0, out);
        let lon = coordinate(&geo.longitude, 180.0, out);
        let coordinates = lat.zip(lon).map(|(a, b)| [a, b]);
        let timestamp = clean_timestamp(&geo.timestamp, out);

        out.emit(|buf| {
            JsonWriter::object(buf)
                .int("ind", Some(ind))
                .str("country", country)
                .floats("coordinates", coordinates.as_ref().map(|c| &c[..]))
                .str("timestamp", timestamp.as_deref())
                .end();
        });
        Ok(())
    }
}

/// A latitude or longitude: a number (or numeric string) within ±`limit`; otherwise null, counted.
fn coordinate(f: &Field<'_>, limit: f64, out: &mut Output) -> Option<f64> {
    if f.is_absent() {
        return None;
    }
    let v = f.float_lenient().filter(|v| v.abs() <= limit);
    if v.is_none() {
        out.count("coordinate_unparsed", 1);
    }
    v
}

sluice_guest::export_transform!(CleanGeo);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use sluice_guest::{BatchBuf, BatchResult, run_batch};

    fn run(records: &[Value]) -> BatchResult {
        run_batch::<CleanGeo>(&BatchBuf::from_json(records).as_ref())
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
