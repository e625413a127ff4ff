//! Timestamp parsing and formatting without a calendar library (keeps guests small).
//!
//! Accepted forms, all taken as UTC unless an offset is given:
//! `2020-08-28 03:52:47`, `2020-08-28T03:52:47` (optionally `.123`, then `Z`
//! or an offset such as `+02:00` / `-0530`), and `2020:08:28 03:52:47`.

/// Clean a timestamp field: absent stays null; one of the accepted forms becomes
/// RFC 3339 UTC; anything else becomes null and bumps the `timestamp_unparsed` counter.
pub fn clean_timestamp(f: &crate::json::Field<'_>, out: &mut crate::Output) -> Option<String> {
    match timestamp_field(f) {
        TimestampField::Absent => None,
        TimestampField::Ms(ms) => {
            let mut s = String::with_capacity(24);
            format_rfc3339_ms(ms, &mut s);
            Some(s)
        }
        TimestampField::Unparsed => {
            out.count("timestamp_unparsed", 1);
            None
        }
    }
}

/// What a timestamp field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampField {
    /// Missing or null: null, not counted.
    Absent,
    /// Milliseconds since the Unix epoch (UTC).
    Ms(i64),
    /// Present but not one of the accepted forms: null, counted as `timestamp_unparsed`.
    Unparsed,
}

/// Read a timestamp field by the rules of [`clean_timestamp`], without formatting it.
pub fn timestamp_field(f: &crate::json::Field<'_>) -> TimestampField {
    if f.is_absent() {
        return TimestampField::Absent;
    }
    match f.text().and_then(parse_timestamp_ms) {
        Some(ms) => TimestampField::Ms(ms),
        None => TimestampField::Unparsed,
    }
}

/// Parse a timestamp into milliseconds since the Unix epoch (UTC).
pub fn parse_timestamp_ms(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    if b.len() < 19 {
        return None;
    }
    let sep = b[4];
    if !(sep == b'-' || sep == b':') || b[7] != sep || !(b[10] == b' ' || b[10] == b'T') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut rest = &b[19..];
    let mut millis = 0i64;
    if let Some((&b'.', frac)) = rest.split_first() {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        // Keep millisecond precision; further digits are truncated.
        for (i, &c) in frac[..n].iter().take(3).enumerate() {
            millis += i64::from(c - b'0') * [100, 10, 1][i];
        }
        rest = &frac[n..];
    }
    let offset_minutes = match rest {
        [] | [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), tz @ ..] => {
            let (h, m) = match tz {
                [h1, h2] => (digits(&[*h1, *h2])?, 0),
                [h1, h2, b':', m1, m2] | [h1, h2, m1, m2] => (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?),
                _ => return None,
            };
            if h > 23 || m > 59 {
                return None;
            }
            let off = h * 60 + m;
            if *sign == b'-' { -off } else { off }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(secs * 1000 + millis)
}

/// Format milliseconds since the epoch as RFC 3339 in UTC: `2020-08-28T03:52:47Z`
/// (with `.123` when the milliseconds are not zero).
pub fn format_rfc3339_ms(ms: i64, out: &mut String) {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    // Digit by digit: `write!` goes through the formatting machinery, which
    // costs more than the rest of a record's cleaning in Wasm.
    if (0..=9999).contains(&y) {
        push_digits(out, y, 4);
    } else {
        use std::fmt::Write;
        let _ = write!(out, "{y:04}");
    }
    for (sep, value) in [('-', m), ('-', d), ('T', sod / 3600), (':', sod % 3600 / 60), (':', sod % 60)] {
        out.push(sep);
        push_digits(out, value, 2);
    }
    if millis != 0 {
        out.push('.');
        push_digits(out, millis, 3);
    }
    out.push('Z');
}

/// The last `width` decimal digits of `v` (non-negative), zero-padded.
fn push_digits(out: &mut String, v: i64, width: u32) {
    for place in (0..width).rev() {
        out.push(char::from(b'0' + (v / 10i64.pow(place) % 10) as u8));
    }
}

fn digits(b: &[u8]) -> Option<i64> {
    let mut v = 0i64;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(v)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

// Howard Hinnant's days_from_civil / civil_from_days: exact for the proleptic Gregorian calendar.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_598_586_767_000; // 2020-08-28T03:52:47Z

    #[test]
    fn the_three_spec_formats_agree() {
        assert_eq!(parse_timestamp_ms("2020-08-28 03:52:47"), Some(T));
        assert_eq!(parse_timestamp_ms("2020-08-28T03:52:47"), Some(T));
        assert_eq!(parse_timestamp_ms("2020:08:28 03:52:47"), Some(T));
        assert_eq!(parse_timestamp_ms("2020-08-28T03:52:47Z"), Some(T));
        assert_eq!(parse_timestamp_ms(" 2020-08-28T03:52:47z "), Some(T));
    }

    #[test]
    fn offsets_and_fractions() {
        assert_eq!(parse_timestamp_ms("2020-08-28T05:52:47+02:00"), Some(T));
        assert_eq!(parse_timestamp_ms("2020-08-27T22:22:47-0530"), Some(T));
        assert_eq!(parse_timestamp_ms("2020-08-28T04:52:47+01"), Some(T));
        assert_eq!(parse_timestamp_ms("2020-08-28T03:52:47.250Z"), Some(T + 250));
        assert_eq!(parse_timestamp_ms("2020-08-28T03:52:47.2509Z"), Some(T + 250));
    }

    #[test]
    fn nonsense_is_refused() {
        for s in [
            "",
            "2020-08-28",
            "2020/08/28 03:52:47",
            "2020-13-01 00:00:00",
            "2021-02-29 00:00:00",
            "2020-08-28 24:00:00",
            "2020-08-28T03:52:47+",
            "2020-08-28T03:52:47.Z",
            "2020-08-28T03:52:47 UTC",
            "2020-08-28 03:52:4x",
            "2020-08:28 03:52:47",
        ] {
            assert_eq!(parse_timestamp_ms(s), None, "{s:?}");
        }
        assert!(parse_timestamp_ms("2020-02-29 00:00:00").is_some());
    }

    #[test]
    fn formats_round_trip() {
        let mut s = String::new();
        format_rfc3339_ms(T, &mut s);
        assert_eq!(s, "2020-08-28T03:52:47Z");
        s.clear();
        format_rfc3339_ms(T + 7, &mut s);
        assert_eq!(s, "2020-08-28T03:52:47.007Z");
        s.clear();
        format_rfc3339_ms(-1000, &mut s);
        assert_eq!(s, "1969-12-31T23:59:59Z");
        s.clear();
        format_rfc3339_ms(253_402_300_800_000 + 120, &mut s);
        assert_eq!(s, "10000-01-01T00:00:00.120Z", "a year past 9999 keeps all its digits");
        for ms in [0, 951_782_400_000, 4_102_444_800_000, T, 1_000, 59_999, 86_399_999] {
            s.clear();
            format_rfc3339_ms(ms, &mut s);
            assert_eq!(parse_timestamp_ms(&s), Some(ms), "{s}");
        }
    }
}
