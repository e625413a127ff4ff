//! `clean-pin`: the pin cleaning rules of SPEC section 5.
//!
//! Output columns, in order: ind, unique_id, title, description, follower_count,
//! poster_name, tag_list, is_image_or_video, image_src, save_location, category.

use serde::Deserialize;
use sluice_guest::json::{Field, JsonWriter, parse_object, row_id};
use sluice_guest::{ColumnTransform, Descriptor, Emitter, InputField, InputType, Output, OutputField, OutputType, Record, Reject, Row, Transform};

pub struct CleanPin;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Pin<'a> {
    #[serde(borrow)]
    index: Field<'a>,
    #[serde(borrow)]
    unique_id: Field<'a>,
    #[serde(borrow)]
    title: Field<'a>,
    #[serde(borrow)]
    description: Field<'a>,
    #[serde(borrow)]
    poster_name: Field<'a>,
    #[serde(borrow)]
    follower_count: Field<'a>,
    #[serde(borrow)]
    tag_list: Field<'a>,
    #[serde(borrow)]
    is_image_or_video: Field<'a>,
    #[serde(borrow)]
    image_src: Field<'a>,
    #[serde(borrow)]
    save_location: Field<'a>,
    #[serde(borrow)]
    category: Field<'a>,
}

/// Placeholder values the upstream scraper writes instead of leaving a field empty.
const TITLE_PLACEHOLDERS: &[&str] = &["No Title Data Available"];
const DESCRIPTION_PLACEHOLDERS: &[&str] = &["No description available Story format", "No description available", "Untitled"];
const USER_INFO_ERROR: &[&str] = &["User Info Error"];
const TAG_PLACEHOLDERS: &[&str] = &["N,o, ,T,a,g,s, ,A,v,a,i,l,a,b,l,e"];
const IMAGE_PLACEHOLDERS: &[&str] = &["Image src error."];
const SAVE_PREFIX: &str = "Local save in ";

impl Transform for CleanPin {
    const DESCRIPTOR: Descriptor = Descriptor { name: "clean-pin", version: "0.1.0", input_kind: "pin", output_kind: "pin-clean" };

    fn transform(record: &Record<'_>, out: &mut Output) -> Result<(), Reject> {
        clean(record, out, "")
    }
}

/// Contract 0.2.0: the host parses the record; `index` and `follower_count`
/// arrive as any JSON value (the rules tell a number from a string), the text
/// fields as strings (a non-string is null and counted by the host).
impl ColumnTransform for CleanPin {
    const DESCRIPTOR: Descriptor = Descriptor { name: "clean-pin", version: "0.2.0", input_kind: "pin", output_kind: "pin-clean" };
    const INPUT: &'static [InputField] = &[
        InputField::new("index", InputType::Any),
        InputField::new("unique_id", InputType::String),
        InputField::new("title", InputType::String),
        InputField::new("description", InputType::String),
        InputField::new("poster_name", InputType::String),
        InputField::new("follower_count", InputType::Any),
        InputField::new("tag_list", InputType::String),
        InputField::new("is_image_or_video", InputType::String),
        InputField::new("image_src", InputType::String),
        InputField::new("save_location", InputType::String),
        InputField::new("category", InputType::String),
    ];
    const OUTPUT: &'static [OutputField] = &[
        OutputField::new("ind", OutputType::Int64, false),
        OutputField::new("unique_id", OutputType::String, true),
        OutputField::new("title", OutputType::String, true),
        OutputField::new("description", OutputType::String, true),
        OutputField::new("follower_count", OutputType::Int64, true),
        OutputField::new("poster_name", OutputType::String, true),
        OutputField::new("tag_list", OutputType::String, true),
        OutputField::new("is_image_or_video", OutputType::String, true),
        OutputField::new("image_src", OutputType::String, true),
        OutputField::new("save_location", OutputType::String, true),
        OutputField::new("category", OutputType::String, true),
    ];

    fn transform(row: &Row<'_, '_>, out: &mut Emitter) -> Result<(), Reject> {
        let pin = Pin {
            index: row.field("index"),
            unique_id: row.field("unique_id"),
            title: row.field("title"),
            description: row.field("description"),
            poster_name: row.field("poster_name"),
            follower_count: row.field("follower_count"),
            tag_list: row.field("tag_list"),
            is_image_or_video: row.field("is_image_or_video"),
            image_src: row.field("image_src"),
            save_location: row.field("save_location"),
            category: row.field("category"),
        };
        let mut counters = Vec::new();
        let c = Cleaned::from(&pin, &mut counters)?;
        for (name, n) in counters {
            out.count(name, n);
        }
        out.emit(|r| {
            r.int("ind", Some(c.ind))
                .str("unique_id", c.unique_id)
                .str("title", c.title)
                .str("description", c.description)
                .int("follower_count", c.follower_count)
                .str("poster_name", c.poster_name)
                .str("tag_list", c.tag_list)
                .str("is_image_or_video", c.is_image_or_video)
                .str("image_src", c.image_src)
                .str("save_location", c.save_location)
                .str("category", c.category);
        });
        Ok(())
    }
}

/// A cleaned pin, whichever contract it came through.
struct Cleaned<'f> {
    ind: i64,
    unique_id: Option<&'f str>,
    title: Option<&'f str>,
    description: Option<&'f str>,
    follower_count: Option<i64>,
    poster_name: Option<&'f str>,
    tag_list: Option<&'f str>,
    is_image_or_video: Option<&'f str>,
    image_src: Option<&'f str>,
    save_location: Option<&'f str>,
    category: Option<&'f str>,
}

impl<'f> Cleaned<'f> {
    /// The rules of SPEC section 5; counters go to `counters`.
    fn from(pin: &'f Pin<'_>, counters: &mut Vec<(&'static str, u64)>) -> Result<Self, Reject> {
        let ind = row_id(&pin.index, "index")?;
        let mut c = Cleaner { counters };
        Ok(Cleaned {
            ind,
            unique_id: c.text(&pin.unique_id, &[]),
            title: c.text(&pin.title, TITLE_PLACEHOLDERS),
            description: c.text(&pin.description, DESCRIPTION_PLACEHOLDERS),
            follower_count: c.follower_count(&pin.follower_count),
            poster_name: c.text(&pin.poster_name, USER_INFO_ERROR),
            tag_list: c.text(&pin.tag_list, TAG_PLACEHOLDERS),
            is_image_or_video: c.text(&pin.is_image_or_video, &[]),
            image_src: c.text(&pin.image_src, IMAGE_PLACEHOLDERS),
            save_location: c.text(&pin.save_location, &[]).map(|s| s.strip_prefix(SAVE_PREFIX).unwrap_or(s)),
            category: c.text(&pin.category, &[]),
        })
    }
}

/// The cleaning itself (contract 0.1.0); `unique_id_prefix` lets a test build mark its output.
pub fn clean(record: &Record<'_>, out: &mut Output, unique_id_prefix: &str) -> Result<(), Reject> {
    let pin: Pin = parse_object(record.value)?;
    let mut counters = Vec::new();
    let c = Cleaned::from(&pin, &mut counters)?;
    for (name, n) in counters {
        out.count(name, n);
    }
    let marked;
    let unique_id = match c.unique_id {
        Some(id) if !unique_id_prefix.is_empty() => {
            marked = format!("{unique_id_prefix}{id}");
            Some(marked.as_str())
        }
        other => other,
    };
    out.emit(|buf| {
        JsonWriter::object(buf)
            .int("ind", Some(c.ind))
            .str("unique_id", unique_id)
            .str("title", c.title)
            .str("description", c.description)
            .int("follower_count", c.follower_count)
            .str("poster_name", c.poster_name)
            .str("tag_list", c.tag_list)
            .str("is_image_or_video", c.is_image_or_video)
            .str("image_src", c.image_src)
            .str("save_location", c.save_location)
            .str("category", c.category)
            .end();
    });
    Ok(())
}

struct Cleaner<'c> {
    counters: &'c mut Vec<(&'static str, u64)>,
}

impl Cleaner<'_> {
    fn count(&mut self, name: &'static str) {
        match self.counters.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v += 1,
            None => self.counters.push((name, 1)),
        }
    }

    /// A string field: placeholders, blanks, absent values and wrong types become null.
    /// Wrong types are counted; placeholders are expected and are not.
    fn text<'f>(&mut self, f: &'f Field<'_>, placeholders: &[&str]) -> Option<&'f str> {
        match f {
            Field::Str(_) => f.text().filter(|s| !placeholders.contains(s)),
            Field::Missing | Field::Null => None,
            _ => {
                self.count("field_wrong_type");
                None
            }
        }
    }

    fn follower_count(&mut self, f: &Field<'_>) -> Option<i64> {
        match f {
            Field::Int(i) if *i >= 0 => Some(*i),
            Field::Str(s) if USER_INFO_ERROR.contains(&s.as_ref()) => None,
            Field::Str(s) if s.trim().is_empty() => None,
            Field::Missing | Field::Null => None,
            Field::Str(s) => parse_follower_count(s).or_else(|| {
                self.count("follower_count_unparsed");
                None
            }),
            _ => {
                self.count("follower_count_unparsed");
                None
            }
        }
    }
}

/// "437" → 437, "26k" → 26000, "6M" → 6000000, "1.5k" → 1500; anything else → None.
pub fn parse_follower_count(s: &str) -> Option<i64> {
    sluice_guest::text::parse_count(s)
}

#[cfg(feature = "component")]
sluice_guest::export_columns!(CleanPin);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use sluice_guest::BatchBuf;
    use sluice_guest::columns::run_both;

    /// A batch's cleaned records, its rejections (index, reason) and its counters.
    type Cleaned = (Vec<Value>, Vec<(u32, String)>, Vec<(&'static str, u64)>);

    fn clean(records: &[Value]) -> Cleaned {
        raw(&BatchBuf::from_json(records))
    }

    fn raw(b: &BatchBuf) -> Cleaned {
        let res = run_both::<CleanPin>(&b.as_ref());
        let out = res.output.as_ref().iter().map(|r| serde_json::from_slice(r.value).expect("valid output JSON")).collect();
        (out, res.rejections.into_iter().map(|r| (r.index, r.reason)).collect(), res.counters)
    }

    fn full_pin() -> Value {
        json!({"index": 7528, "unique_id": "c4bd2577-a7bb-4409-bb7a-17d5ed7e1cf1", "title": "UFO Paper Plate Craft",
            "description": "Nissan GT-R. Sick.", "poster_name": "Style Me Pretty", "follower_count": "26k",
            "tag_list": "Lowrider,Old Vintage Cars", "is_image_or_video": "image",
            "image_src": "https://i.pinimg.com/originals/0d/29/9f/x.jpg", "downloaded": 1,
            "save_location": "Local save in /data/home-decor", "category": "home-decor"})
    }

    #[test]
    fn a_clean_pin_keeps_its_values_in_the_specified_column_order() {
        let (out, rej, counters) = clean(&[full_pin()]);
        assert!(rej.is_empty() && counters.is_empty());
        let text = serde_json::to_string(&out[0]).expect("json");
        let keys: Vec<&str> = out[0].as_object().expect("object").keys().map(String::as_str).collect();
        // serde_json's map is sorted; check the order on the raw output instead.
        assert_eq!(keys.len(), 11);
        let mut b = BatchBuf::default();
        b.push(&serde_json::to_vec(&full_pin()).expect("json"), b"", 0);
        let res = run_both::<CleanPin>(&b.as_ref());
        let raw = std::str::from_utf8(res.output.as_ref().get(0).value).expect("utf8").to_owned();
        let order = [
            "ind",
            "unique_id",
            "title",
            "description",
            "follower_count",
            "poster_name",
            "tag_list",
            "is_image_or_video",
            "image_src",
            "save_location",
            "category",
        ];
        let positions: Vec<usize> = order.iter().map(|k| raw.find(&format!("\"{k}\":")).expect(k)).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "column order in {raw}");
        assert_eq!(out[0]["ind"], 7528);
        assert_eq!(out[0]["follower_count"], 26000);
        assert_eq!(out[0]["save_location"], "/data/home-decor");
        assert!(out[0].get("index").is_none() && out[0].get("downloaded").is_none(), "{text}");
    }

    #[test]
    fn follower_counts() {
        for (input, want) in [
            ("437", Some(437)),
            ("26k", Some(26_000)),
            ("6M", Some(6_000_000)),
            ("1.5k", Some(1500)),
            ("0", Some(0)),
            ("User Info Error", None),
            ("", None),
            ("k", None),
            ("-3", None),
            ("1e3", None),
            ("12.5", None),
            ("infk", None),
            ("1.2.3k", None),
        ] {
            let mut p = full_pin();
            p["follower_count"] = json!(input);
            let (out, _, _) = clean(&[p]);
            assert_eq!(out[0]["follower_count"].as_i64(), want, "follower_count {input:?}");
        }
    }

    #[test]
    fn unparseable_follower_counts_are_counted_but_placeholders_are_not() {
        let mut a = full_pin();
        a["follower_count"] = json!("lots");
        let mut b = full_pin();
        b["follower_count"] = json!("User Info Error");
        let mut c = full_pin();
        c["follower_count"] = json!([1]);
        let (out, rej, counters) = clean(&[a, b, c]);
        assert_eq!(out.len(), 3);
        assert!(rej.is_empty());
        assert_eq!(counters, vec![("follower_count_unparsed", 2)]);
    }

    #[test]
    fn placeholders_and_blanks_become_null() {
        let mut p = full_pin();
        p["title"] = json!("No Title Data Available");
        p["description"] = json!("No description available Story format");
        p["poster_name"] = json!("User Info Error");
        p["tag_list"] = json!("N,o, ,T,a,g,s, ,A,v,a,i,l,a,b,l,e");
        p["image_src"] = json!("Image src error.");
        p["is_image_or_video"] = json!("   ");
        p["category"] = json!("");
        let (out, _, counters) = clean(&[p]);
        for k in ["title", "description", "poster_name", "tag_list", "image_src", "is_image_or_video", "category"] {
            assert!(out[0][k].is_null(), "{k} should be null: {}", out[0]);
        }
        assert!(counters.is_empty());
        for d in ["No description available", "Untitled"] {
            let mut p = full_pin();
            p["description"] = json!(d);
            assert!(clean(&[p]).0[0]["description"].is_null(), "{d}");
        }
    }

    #[test]
    fn wrong_types_become_null_and_are_counted() {
        let mut p = full_pin();
        p["title"] = json!(42);
        p["category"] = json!({"x": 1});
        let (out, rej, counters) = clean(&[p]);
        assert!(rej.is_empty());
        assert!(out[0]["title"].is_null() && out[0]["category"].is_null());
        assert_eq!(counters, vec![("field_wrong_type", 2)]);
    }

    #[test]
    fn records_without_an_integer_row_id_or_not_objects_are_rejected_alone() {
        let mut no_id = full_pin();
        no_id.as_object_mut().expect("object").remove("index");
        let mut str_id = full_pin();
        str_id["index"] = json!("7528");
        let mut b = BatchBuf::default();
        b.push(&serde_json::to_vec(&full_pin()).expect("json"), b"", 0);
        b.push(b"[1,2,3]", b"", 0);
        b.push(&serde_json::to_vec(&no_id).expect("json"), b"", 0);
        b.push(b"{\"index\": 1,", b"", 0);
        b.push(&serde_json::to_vec(&str_id).expect("json"), b"", 0);
        b.push(b"\"just a string\"", b"", 0);
        b.push(&serde_json::to_vec(&full_pin()).expect("json"), b"k", 5);
        let res = run_both::<CleanPin>(&b.as_ref());
        assert_eq!(res.origins, vec![0, 6]);
        let reasons: Vec<(u32, &str)> = res.rejections.iter().map(|r| (r.index, r.reason.as_str())).collect();
        assert_eq!(reasons[0], (1, "record is not a JSON object"));
        assert_eq!(reasons[1], (2, "no row id: field `index` is missing"));
        assert_eq!(reasons[2].0, 3);
        assert!(reasons[2].1.starts_with("invalid JSON"), "{}", reasons[2].1);
        assert_eq!(reasons[3], (4, "no row id: field `index` is not an integer (a string)"));
        assert_eq!(reasons[4], (5, "record is not a JSON object"));
        let last = res.output.as_ref().get(1);
        assert_eq!((last.key, last.timestamp), (&b"k"[..], 5));
    }

    #[test]
    fn escaped_strings_survive() {
        let mut p = full_pin();
        p["title"] = json!("Quote \"this\" \\ and\nnewline ✓");
        let (out, _, _) = clean(&[p]);
        assert_eq!(out[0]["title"], "Quote \"this\" \\ and\nnewline ✓");
    }
}
