//! Text rules the cleaning shares, whether a component or a SQL stage applies them.

/// A count written the way the scraper writes follower counts: "437" → 437,
/// "26k" → 26000, "6M" → 6000000, "1.5k" → 1500 (`b` for billions); anything
/// else (signs, exponents, "inf", other suffixes) → `None`.
pub fn parse_count(s: &str) -> Option<i64> {
    let s = s.trim();
    let (number, multiplier) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1_000.0),
        b'm' | b'M' => (&s[..s.len() - 1], 1_000_000.0),
        b'b' | b'B' => (&s[..s.len() - 1], 1_000_000_000.0),
        _ => return s.parse::<i64>().ok().filter(|n| *n >= 0),
    };
    // Only plain decimals: no sign, exponent, "inf" or "nan".
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let value = number.parse::<f64>().ok()? * multiplier;
    (value.is_finite() && value < 9.0e18).then(|| value.round() as i64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_follow_the_spec() {
        let got: Vec<Option<i64>> =
            ["437", "26k", "6M", "1.5k", " 2K ", "User Info Error", "-5", "1e3", "k", "", "3b"].iter().map(|s| super::parse_count(s)).collect();
        assert_eq!(got, vec![Some(437), Some(26_000), Some(6_000_000), Some(1_500), Some(2_000), None, None, None, None, None, Some(3_000_000_000)]);
    }
}
