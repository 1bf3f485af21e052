//! Money as integer kopecks, parsed exactly from the decimal text the APIs send: never
//! through a float, so `"23328.92"` is 2 332 892 kopecks on every machine.

/// `"23328.92"`, `"-5"`, `"0.5"`, `"1 234,50"` → kopecks. More than two decimals round half
/// away from zero (an API that sends `"0.125"` means a fraction of a kopeck).
pub fn parse_kopecks(text: &str) -> Result<i64, String> {
    // Most amounts are plain (`1234.5`): read them without allocating; the general path
    // below gives the same answer for them (a property test holds both to it).
    match plain_kopecks(text.as_bytes()) {
        Some(k) => Ok(k),
        None => parse_kopecks_general(text),
    }
}

/// `digits[.d[d]]`, at most 15 digits before the point: kopecks, or `None` for anything else.
fn plain_kopecks(text: &[u8]) -> Option<i64> {
    let (whole, frac) = match text.iter().position(|b| *b == b'.') {
        Some(dot) => (&text[..dot], &text[dot + 1..]),
        None => (text, &[][..]),
    };
    if whole.is_empty() || whole.len() > 15 || frac.len() > 2 {
        return None;
    }
    let digits = |part: &[u8]| {
        part.iter().try_fold(0i64, |n, b| {
            b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0'))
        })
    };
    let cents = digits(frac)? * if frac.len() == 1 { 10 } else { 1 };
    Some(digits(whole)? * 100 + cents)
}

fn parse_kopecks_general(text: &str) -> Result<i64, String> {
    let cleaned: String = text
        .trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '\u{a0}' | '\u{202f}'))
        .map(|c| if c == ',' { '.' } else { c })
        .collect();
    let bad = || format!("`{text}` is not a decimal amount");
    let (negative, digits) = match cleaned.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, cleaned.strip_prefix('+').unwrap_or(&cleaned)),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && frac.is_empty()
        || !whole.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
    {
        return Err(bad());
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let mut cents: i64 = frac
        .chars()
        .chain(std::iter::repeat('0'))
        .take(2)
        .collect::<String>()
        .parse()
        .map_err(|_| bad())?;
    if frac.as_bytes().get(2).is_some_and(|d| *d >= b'5') {
        cents += 1;
    }
    let total = whole
        .checked_mul(100)
        .and_then(|w| w.checked_add(cents))
        .ok_or_else(bad)?;
    Ok(if negative { -total } else { total })
}

/// Kopecks as `"1234.50"`.
pub fn format_kopecks(kopecks: i64) -> String {
    let sign = if kopecks < 0 { "-" } else { "" };
    let abs = kopecks.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn the_plain_path_agrees_with_the_general_one(
            text in "[-+ ]?[0-9]{0,17}([.,][0-9]{0,4})?",
        ) {
            proptest::prop_assert_eq!(parse_kopecks(&text), parse_kopecks_general(&text));
        }
    }

    #[test]
    fn the_amounts_apis_send_most_take_the_plain_path() {
        // The fast path's reach (its answers are the general path's, by the property above):
        // whole roubles, one or two decimals, up to 15 digits before the point.
        for (text, kopecks) in [
            ("1234", 123_400),
            ("1234.5", 123_450),
            ("1234.56", 123_456),
            ("0.07", 7),
            ("1.", 100),
            ("999999999999999.99", 99_999_999_999_999_999),
        ] {
            assert_eq!(plain_kopecks(text.as_bytes()), Some(kopecks), "{text}");
        }
        for other in ["-1", "1,5", "1 234", ".5", "1.234", "1234567890123456", "x"] {
            assert_eq!(plain_kopecks(other.as_bytes()), None, "{other}");
        }
    }

    #[test]
    fn parses_exactly() {
        assert_eq!(parse_kopecks("23328.92"), Ok(2_332_892));
        assert_eq!(parse_kopecks("86.4"), Ok(8_640));
        assert_eq!(parse_kopecks("0"), Ok(0));
        assert_eq!(parse_kopecks(".5"), Ok(50));
        assert_eq!(parse_kopecks("-12.01"), Ok(-1_201));
        assert_eq!(parse_kopecks("1 234,50"), Ok(123_450));
        assert_eq!(parse_kopecks("0.125"), Ok(13));
        assert_eq!(parse_kopecks("0.124"), Ok(12));
        // A float would give 0.1 + 0.2 trouble; the sum of exact parses does not.
        assert_eq!(
            parse_kopecks("0.1").unwrap() + parse_kopecks("0.2").unwrap(),
            30
        );
        // `++5` and `-+5` would pass `i64::from_str`, which takes one sign of its own.
        for bad in ["", "abc", "1.2.3", "--", "1e5", ".", "++5", "-+5", "1.+5"] {
            assert!(parse_kopecks(bad).is_err(), "{bad}");
        }
        assert_eq!(format_kopecks(-1_201), "-12.01");
        assert_eq!(format_kopecks(0), "0.00", "no sign on zero");
        assert_eq!(format_kopecks(-5), "-0.05");
        assert_eq!(format_kopecks(2_332_892), "23328.92");
    }
}
