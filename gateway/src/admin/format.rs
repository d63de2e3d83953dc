//! Values as the pages write them: times in the site's time zone, and
//! text percent-encoded for a query string or a path segment.

use std::fmt::Write;

/// Unix ms as local time of the site.
pub fn time(ms: i64, tz: &jiff::tz::TimeZone) -> String {
    zoned(ms, tz, "%Y-%m-%d %H:%M:%S")
}

/// Unix ms as local time of the site in RFC 3339, with milliseconds and
/// the offset, for files read by programs (exports).
pub fn rfc3339(ms: i64, tz: &jiff::tz::TimeZone) -> String {
    zoned(ms, tz, "%Y-%m-%dT%H:%M:%S%.3f%:z")
}

pub fn zoned(ms: i64, tz: &jiff::tz::TimeZone, pattern: &str) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => t.to_zoned(tz.clone()).strftime(pattern).to_string(),
        Err(_) => ms.to_string(),
    }
}

pub fn opt_time(ms: Option<i64>, tz: &jiff::tz::TimeZone) -> String {
    ms.map_or_else(|| "—".to_string(), |m| time(m, tz))
}

/// `v` percent-encoded for a query string or a path segment.
pub fn query_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_value_is_percent_encoded() {
        assert_eq!(query_value("lab 1&x=/"), "lab%201%26x%3D%2F");
    }
}
