//! Deterministic generation of pin, geo and user rows with the distributions
//! and dirty values of SPEC section 2.
//!
//! A row is a pure function of (seed, row id): the emulator's resends carry
//! exactly the same content, as the original data set's duplicates do.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// Row ids are drawn from this many distinct rows.
pub const DISTINCT_ROWS: u32 = 11_000;
/// Rows share users: about this many distinct users across all rows.
pub const DISTINCT_USERS: u32 = 5_300;

pub const CATEGORIES: &[&str] = &[
    "art",
    "beauty",
    "christmas",
    "diy-and-crafts",
    "education",
    "event-planning",
    "finance",
    "home-decor",
    "mens-fashion",
    "quotes",
    "tattoos",
    "travel",
    "vehicles",
];

const COUNTRIES: &[&str] = &[
    "Afghanistan",
    "Albania",
    "Algeria",
    "American Samoa",
    "Andorra",
    "Angola",
    "Anguilla",
    "Antarctica",
    "Antigua and Barbuda",
    "Argentina",
    "Armenia",
    "Aruba",
    "Australia",
    "Austria",
    "Azerbaijan",
    "Bahamas",
    "Bahrain",
    "Bangladesh",
    "Barbados",
    "Belarus",
    "Belgium",
    "Belize",
    "Benin",
    "Bermuda",
    "Bhutan",
    "Bolivia",
    "Bosnia and Herzegovina",
    "Botswana",
    "Bouvet Island",
    "Brazil",
    "British Indian Ocean Territory",
    "British Virgin Islands",
    "Brunei Darussalam",
    "Bulgaria",
    "Burkina Faso",
    "Burundi",
    "Cambodia",
    "Cameroon",
    "Canada",
    "Cape Verde",
    "Cayman Islands",
    "Central African Republic",
    "Chad",
    "Chile",
    "China",
    "Christmas Island",
    "Cocos (Keeling) Islands",
    "Colombia",
    "Comoros",
    "Congo",
    "Cook Islands",
    "Costa Rica",
    "Cote d'Ivoire",
    "Croatia",
    "Cuba",
    "Cyprus",
    "Czech Republic",
    "Denmark",
    "Djibouti",
    "Dominica",
    "Dominican Republic",
    "Ecuador",
    "Egypt",
    "El Salvador",
    "Equatorial Guinea",
    "Eritrea",
    "Estonia",
    "Ethiopia",
    "Falkland Islands (Malvinas)",
    "Faroe Islands",
    "Fiji",
    "Finland",
    "France",
    "French Guiana",
    "French Polynesia",
    "French Southern Territories",
    "Gabon",
    "Gambia",
    "Georgia",
    "Germany",
    "Ghana",
    "Gibraltar",
    "Greece",
    "Greenland",
    "Grenada",
    "Guadeloupe",
    "Guam",
    "Guatemala",
    "Guernsey",
    "Guinea",
    "Guinea-Bissau",
    "Guyana",
    "Haiti",
    "Heard Island and McDonald Islands",
    "Holy See (Vatican City State)",
    "Honduras",
    "Hong Kong",
    "Hungary",
    "Iceland",
    "India",
    "Indonesia",
    "Iran",
    "Iraq",
    "Ireland",
    "Isle of Man",
    "Israel",
    "Italy",
    "Jamaica",
    "Japan",
    "Jersey",
    "Jordan",
    "Kazakhstan",
    "Kenya",
    "Kiribati",
    "Korea",
    "Kuwait",
    "Kyrgyz Republic",
    "Lao People's Democratic Republic",
    "Latvia",
    "Lebanon",
    "Lesotho",
    "Liberia",
    "Libyan Arab Jamahiriya",
    "Liechtenstein",
    "Lithuania",
    "Luxembourg",
    "Macao",
    "Madagascar",
    "Malawi",
    "Malaysia",
    "Maldives",
    "Mali",
    "Malta",
    "Marshall Islands",
    "Martinique",
    "Mauritania",
    "Mauritius",
    "Mayotte",
    "Mexico",
    "Micronesia",
    "Moldova",
    "Monaco",
    "Mongolia",
    "Montenegro",
    "Montserrat",
    "Morocco",
    "Mozambique",
    "Myanmar",
    "Namibia",
    "Nauru",
    "Nepal",
    "Netherlands",
    "Netherlands Antilles",
    "New Caledonia",
    "New Zealand",
    "Nicaragua",
    "Niger",
    "Nigeria",
    "Niue",
    "Norfolk Island",
    "North Macedonia",
    "Northern Mariana Islands",
    "Norway",
    "Oman",
    "Pakistan",
    "Palau",
    "Palestinian Territory",
    "Panama",
    "Papua New Guinea",
    "Paraguay",
    "Peru",
    "Philippines",
    "Pitcairn Islands",
    "Poland",
    "Portugal",
    "Puerto Rico",
    "Qatar",
    "Reunion",
    "Romania",
    "Russian Federation",
    "Rwanda",
    "Saint Barthelemy",
    "Saint Helena",
    "Saint Kitts and Nevis",
    "Saint Lucia",
    "Saint Martin",
    "Saint Pierre and Miquelon",
    "Saint Vincent and the Grenadines",
    "Samoa",
    "San Marino",
    "Sao Tome and Principe",
    "Saudi Arabia",
    "Senegal",
    "Serbia",
    "Seychelles",
    "Sierra Leone",
    "Singapore",
    "Slovakia (Slovak Republic)",
    "Slovenia",
    "Solomon Islands",
    "Somalia",
    "South Africa",
    "South Georgia and the South Sandwich Islands",
    "Spain",
    "Sri Lanka",
    "Sudan",
    "Suriname",
    "Svalbard & Jan Mayen Islands",
    "Swaziland",
    "Sweden",
    "Switzerland",
    "Syrian Arab Republic",
    "Taiwan",
    "Tajikistan",
    "Tanzania",
    "Thailand",
    "Timor-Leste",
    "Togo",
    "Tokelau",
    "Tonga",
    "Trinidad and Tobago",
    "Tunisia",
    "Turkey",
    "Turkmenistan",
    "Turks and Caicos Islands",
    "Tuvalu",
    "Uganda",
    "Ukraine",
    "United Arab Emirates",
    "United Kingdom",
    "United States Minor Outlying Islands",
    "United States of America",
    "United States Virgin Islands",
    "Uruguay",
    "Uzbekistan",
    "Vanuatu",
    "Venezuela",
    "Vietnam",
    "Wallis and Futuna",
    "Western Sahara",
    "Yemen",
    "Zambia",
    "Zimbabwe",
];

const FIRST_NAMES: &[&str] = &[
    "Abigail",
    "Alexander",
    "Alexandra",
    "Andrea",
    "Andrew",
    "Angela",
    "Anthony",
    "Ashley",
    "Benjamin",
    "Brandon",
    "Brian",
    "Charles",
    "Christina",
    "Christopher",
    "Daniel",
    "David",
    "Denise",
    "Elizabeth",
    "Emily",
    "Eric",
    "Heather",
    "Jacob",
    "James",
    "Jennifer",
    "Jessica",
    "John",
    "Jose",
    "Joseph",
    "Joshua",
    "Julie",
    "Karen",
    "Kevin",
    "Kimberly",
    "Laura",
    "Linda",
    "Lisa",
    "Maria",
    "Mark",
    "Matthew",
    "Michael",
    "Michelle",
    "Nicole",
    "Patricia",
    "Rachel",
    "Rebecca",
    "Robert",
    "Ryan",
    "Sarah",
    "Stephanie",
    "Steven",
    "Thomas",
    "William",
];

const LAST_NAMES: &[&str] = &[
    "Adams",
    "Ali",
    "Allen",
    "Anderson",
    "Baker",
    "Brown",
    "Campbell",
    "Carter",
    "Clark",
    "Davis",
    "Edwards",
    "Evans",
    "Garcia",
    "Gonzalez",
    "Green",
    "Hall",
    "Harris",
    "Hernandez",
    "Hill",
    "Jackson",
    "Johnson",
    "Jones",
    "King",
    "Lee",
    "Lewis",
    "Lopez",
    "Martin",
    "Martinez",
    "Miller",
    "Mitchell",
    "Moore",
    "Nelson",
    "Parker",
    "Perez",
    "Phillips",
    "Roberts",
    "Robinson",
    "Rodriguez",
    "Scott",
    "Smith",
    "Taylor",
    "Thomas",
    "Thompson",
    "Turner",
    "Walker",
    "White",
    "Williams",
    "Wilson",
    "Wright",
    "Young",
];

const WORDS: &[&str] = &[
    "easy",
    "diy",
    "craft",
    "ideas",
    "home",
    "decor",
    "modern",
    "vintage",
    "summer",
    "winter",
    "holiday",
    "gift",
    "tattoo",
    "quote",
    "travel",
    "guide",
    "budget",
    "art",
    "painting",
    "style",
    "beauty",
    "makeup",
    "hair",
    "car",
    "classic",
    "kids",
    "wedding",
    "party",
    "planning",
    "money",
    "saving",
    "tips",
    "fashion",
    "men",
    "outfit",
    "christmas",
    "tree",
    "paper",
    "plate",
    "ufo",
    "garden",
    "kitchen",
    "learning",
    "school",
    "weekend",
    "best",
];

const POSTERS: &[&str] = &[
    "Style Me Pretty",
    "Tastemade",
    "Apartment Therapy",
    "Buzzfeed",
    "Better Homes and Gardens",
    "HGTV",
    "Martha Stewart",
    "Kids Activities Blog",
    "The Dating Divas",
    "One Little Project",
    "Cosmopolitan",
    "Brit + Co",
    "Country Living Magazine",
    "Elle Decor",
    "Teach Starter",
    "Tattoo Ideas",
    "Money Saving Mom",
    "Travel + Leisure",
    "GQ",
    "Vogue",
    "Instructables",
    "The Spruce Crafts",
    "A Beautiful Mess",
    "Hello Glow",
];

/// One generated row in its three record kinds, as the emulator posts them.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub ind: i64,
    pub pin: Value,
    pub geo: Value,
    pub user: Value,
}

/// The row generator. Cheap to clone; rows depend only on the seed and the row id.
#[derive(Debug, Clone, Copy)]
pub struct Generator {
    seed: u64,
}

impl Generator {
    pub fn new(seed: u64) -> Self {
        Generator { seed }
    }

    /// The row with id `ind` (any id; the emulator draws from `1..=DISTINCT_ROWS`).
    pub fn row(&self, ind: i64) -> Row {
        let mut rng = SmallRng::seed_from_u64(self.seed ^ (ind as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let user_id = rng.random_range(0..DISTINCT_USERS) as u64;
        Row { ind, pin: pin(ind, &mut rng), geo: geo(ind, &mut rng), user: user(ind, self.seed, user_id) }
    }

    /// The id of the `n`-th row the emulator posts: uniform over the distinct rows,
    /// so about one post in six resends a row already sent once 11,000 rows have gone out.
    pub fn pick(&self, n: u64) -> i64 {
        let mut rng = SmallRng::seed_from_u64(self.seed.wrapping_add(n.wrapping_mul(0xD1B5_4A32_D192_ED03)));
        i64::from(rng.random_range(1..=DISTINCT_ROWS))
    }
}

fn pick<'a>(rng: &mut SmallRng, from: &[&'a str]) -> &'a str {
    from[rng.random_range(0..from.len())]
}

fn words(rng: &mut SmallRng, count: std::ops::Range<usize>) -> String {
    let n = rng.random_range(count);
    let mut s = String::new();
    for i in 0..n {
        let w = pick(rng, WORDS);
        if i == 0 {
            let mut c = w.chars();
            if let Some(f) = c.next() {
                s.extend(f.to_uppercase());
                s.push_str(c.as_str());
            }
        } else {
            s.push(' ');
            s.push_str(w);
        }
    }
    s
}

fn chance(rng: &mut SmallRng, percent: u32) -> bool {
    rng.random_range(0..100) < percent
}

fn pin(ind: i64, rng: &mut SmallRng) -> Value {
    let category = pick(rng, CATEGORIES);
    let uuid: u128 = rng.random();
    let h = format!("{uuid:032x}");
    let unique_id = format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]);
    let user_error = chance(rng, 3);
    let follower_count = if user_error {
        "User Info Error".to_string()
    } else {
        match rng.random_range(0..4) {
            0 => rng.random_range(0..1000).to_string(),
            1 => format!("{}k", rng.random_range(1..1000)),
            2 => format!("{}.{}k", rng.random_range(1..10), rng.random_range(1..10)),
            _ => format!("{}M", rng.random_range(1..10)),
        }
    };
    let tags: Vec<String> = (0..rng.random_range(1..5)).map(|_| words(rng, 2..3)).collect();
    let ext = if chance(rng, 50) { "jpg" } else { "png" };
    json!({
        "index": ind,
        "unique_id": unique_id,
        "title": if chance(rng, 3) { "No Title Data Available".into() } else { words(rng, 2..7) },
        "description": match rng.random_range(0..100) {
            0 => "No description available Story format".into(),
            1 => "No description available".into(),
            2 => "Untitled".into(),
            3 => " ".into(),
            _ => words(rng, 5..25),
        },
        "poster_name": if user_error { "User Info Error" } else { pick(rng, POSTERS) },
        "follower_count": follower_count,
        "tag_list": if chance(rng, 3) { "N,o, ,T,a,g,s, ,A,v,a,i,l,a,b,l,e".into() } else { tags.join(",") },
        "is_image_or_video": match rng.random_range(0..20) { 0 => "video", 1 => "multi-video(story page format)", _ => "image" },
        "image_src": if chance(rng, 2) { "Image src error.".into() } else {
            format!("https://i.pinimg.com/originals/{:02x}/{:02x}/{:02x}/{:016x}.{ext}", rng.random::<u8>(), rng.random::<u8>(), rng.random::<u8>(), rng.random::<u64>())
        },
        "downloaded": i64::from(!chance(rng, 3)),
        "save_location": format!("Local save in /data/{category}"),
        "category": category,
    })
}

/// A timestamp between `from` and `to` (seconds since the epoch) in one of the three accepted forms.
fn timestamp(rng: &mut SmallRng, from: i64, to: i64) -> String {
    let ms = rng.random_range(from..to) * 1000;
    let mut s = String::new();
    sluice_guest::time::format_rfc3339_ms(ms, &mut s);
    let s = s.trim_end_matches('Z');
    match rng.random_range(0..10) {
        0 => s.to_owned(),
        1 => format!("{}:{}:{} {}", &s[0..4], &s[5..7], &s[8..10], &s[11..]),
        _ => s.replacen('T', " ", 1),
    }
}

fn geo(ind: i64, rng: &mut SmallRng) -> Value {
    // 2017-10-19 .. 2022-10-19
    let ts = timestamp(rng, 1_508_371_200, 1_666_137_600);
    json!({
        "ind": ind,
        "timestamp": ts,
        "latitude": (rng.random_range(-90_000_000..=90_000_000) as f64) / 1_000_000.0,
        "longitude": (rng.random_range(-180_000_000..=180_000_000) as f64) / 1_000_000.0,
        "country": pick(rng, COUNTRIES),
    })
}

/// Users repeat across rows: the user's fields depend only on the seed and the user id.
fn user(ind: i64, seed: u64, user_id: u64) -> Value {
    let mut rng = SmallRng::seed_from_u64(seed ^ user_id.wrapping_mul(0xA24B_AED4_963E_E407) ^ 0x5555);
    // 2015-10-21 .. 2017-10-20
    let joined = timestamp(&mut rng, 1_445_385_600, 1_508_457_600);
    json!({
        "ind": ind,
        "first_name": pick(&mut rng, FIRST_NAMES),
        "last_name": pick(&mut rng, LAST_NAMES),
        "age": rng.random_range(20..=60),
        "date_joined": joined,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeSet, HashSet};

    #[test]
    fn rows_are_reproducible_and_ids_line_up() {
        let g = Generator::new(7);
        assert_eq!(g.row(42), g.row(42));
        assert_ne!(Generator::new(8).row(42), g.row(42));
        let r = g.row(42);
        assert_eq!((r.pin["index"].as_i64(), r.geo["ind"].as_i64(), r.user["ind"].as_i64()), (Some(42), Some(42), Some(42)));
    }

    #[test]
    fn distributions_look_like_the_spec() {
        let g = Generator::new(1);
        let rows: Vec<Row> = (1..=DISTINCT_ROWS as i64).map(|i| g.row(i)).collect();
        let users: HashSet<String> = rows.iter().map(|r| format!("{}{}{}", r.user["first_name"], r.user["last_name"], r.user["date_joined"])).collect();
        assert!((4_000..=5_300).contains(&users.len()), "{} distinct users", users.len());
        let countries: BTreeSet<&str> = rows.iter().filter_map(|r| r.geo["country"].as_str()).collect();
        assert!(countries.len() > 200, "{}", countries.len());
        let ages: Vec<i64> = rows.iter().filter_map(|r| r.user["age"].as_i64()).collect();
        assert!(ages.iter().all(|a| (20..=60).contains(a)));
        let placeholders = rows.iter().filter(|r| r.pin["poster_name"] == "User Info Error").count();
        assert!((100..=700).contains(&placeholders), "{placeholders}");
        for r in &rows {
            let ts = r.geo["timestamp"].as_str().expect("string");
            let ms = sluice_guest::time::parse_timestamp_ms(ts).expect("parseable");
            assert!((1_508_371_200_000..1_666_137_600_000).contains(&ms), "{ts}");
        }
        let picks: HashSet<i64> = (0..20_000).map(|n| g.pick(n)).collect();
        assert!(picks.len() > 9_000 && picks.iter().all(|i| (1..=DISTINCT_ROWS as i64).contains(i)));
    }
}
