//! Times on the command line: `1h`, `30m`, `7d`, `90s` (ago), RFC 3339, or Unix seconds.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A duration like `90s`, `30m`, `12h`, `7d`, `2w`, in nanoseconds.
pub fn parse_span(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 90s, 30m, 12h, 7d or 2w"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(format!("{text:?}: the unit must be s, m, h, d or w")),
    };
    Ok(n.saturating_mul(secs).saturating_mul(1_000_000_000))
}

/// A point in time: RFC 3339 (`2026-11-23T10:00:00Z`) or Unix seconds.
pub fn parse_time(text: &str) -> Result<u64, String> {
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(secs.saturating_mul(1_000_000_000));
    }
    let t = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| format!("{text:?} is neither RFC 3339 nor Unix seconds: {e}"))?;
    u64::try_from(t.unix_timestamp_nanos()).map_err(|_| format!("{text:?} is before 1970"))
}

#[must_use]
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// `[from, to)` from --since / --from / --to (0 = unbounded).
pub fn range(since: Option<&str>, from: Option<&str>, to: Option<&str>) -> Result<(u64, u64), String> {
    let from = match (since, from) {
        (Some(_), Some(_)) => return Err("give --since or --from, not both".into()),
        (Some(span), None) => now_ns().saturating_sub(parse_span(span)?),
        (None, Some(t)) => parse_time(t)?,
        (None, None) => 0,
    };
    let to = to.map(parse_time).transpose()?.unwrap_or(0);
    Ok((from, to))
}

/// `2026-11-23T10:00:00.123Z` (UTC, milliseconds).
#[must_use]
pub fn format_ns(ns: u64) -> String {
    if ns == 0 {
        return "-".into();
    }
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns - ns % 1_000_000))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&format).unwrap_or_else(|_| ns.to_string())
}

/// `1h 02m`, `45s`, `3d 04h`.
#[must_use]
pub fn format_span(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_times_and_their_errors() {
        assert_eq!(parse_span("90s"), Ok(90_000_000_000));
        assert_eq!(parse_span("2d"), Ok(2 * 86_400 * 1_000_000_000));
        assert!(parse_span("5y").unwrap_err().contains("unit"));
        assert!(parse_span("h").is_err());
        assert_eq!(parse_time("1700000000"), Ok(1_700_000_000_000_000_000));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000_000_000));
        assert!(parse_time("yesterday").is_err());
        assert!(range(Some("1h"), Some("0"), None).is_err());
        assert_eq!(
            range(None, Some("10"), Some("20")),
            Ok((10_000_000_000, 20_000_000_000))
        );
        assert_eq!(format_ns(1_700_000_000_123_456_789), "2023-11-14T22:13:20.123Z");
        assert_eq!(format_span(3_725 * 1_000_000_000), "1h 02m");
        assert_eq!(format_span(45 * 1_000_000_000), "45s");
    }
}
