//! FSPIOP headers: versioned media types, `Date`, `FSPIOP-Source` and
//! `FSPIOP-Destination`.

use std::time::SystemTime;

pub const SOURCE: &str = "fspiop-source";
pub const DESTINATION: &str = "fspiop-destination";

/// The API version payhub speaks and accepts.
pub const VERSION: &str = "1.1";

/// `application/vnd.interoperability.{resource}+json;version=1.1`.
pub fn content_type(resource: &str) -> String {
    format!("application/vnd.interoperability.{resource}+json;version={VERSION}")
}

/// `application/vnd.interoperability.{resource}+json;version=1` (any 1.x).
pub fn accept(resource: &str) -> String {
    format!("application/vnd.interoperability.{resource}+json;version=1")
}

/// `Date` as HTTP writes it (RFC 7231 IMF-fixdate).
pub fn date_now() -> String {
    httpdate::fmt_http_date(SystemTime::now())
}

/// Checks an inbound `Content-Type`: the FSPIOP media type of `resource` with a
/// major version of 1. Returns what is wrong for a 3001/3101 error otherwise.
pub fn check_content_type(value: Option<&str>, resource: &str) -> Result<(), String> {
    let Some(value) = value else {
        return Err("Content-Type header is missing".into());
    };
    let expected_type = format!("application/vnd.interoperability.{resource}+json");
    let mut parts = value.split(';').map(str::trim);
    if parts.next() != Some(expected_type.as_str()) {
        return Err(format!("Content-Type must be {expected_type};version=1.1, not {value:?}"));
    }
    let version = parts.find_map(|p| p.strip_prefix("version="));
    match version {
        Some(v) if v == "1" || v.starts_with("1.") => Ok(()),
        Some(v) => Err(format!("version {v} is not supported; supported: 1.1")),
        None => Err("Content-Type has no version parameter".into()),
    }
}

/// Milliseconds since the epoch to FSPIOP's `DateTime` (ISO 8601, UTC, ms).
pub fn timestamp(ms: u64) -> String {
    let ms = i64::try_from(ms).unwrap_or(i64::MAX);
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// FSPIOP `DateTime` to milliseconds since the epoch.
pub fn parse_timestamp(value: &str) -> Option<u64> {
    chrono::DateTime::parse_from_rfc3339(value).ok().and_then(|t| u64::try_from(t.timestamp_millis()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_accept_any_1x_and_reject_others() {
        assert!(check_content_type(Some(&content_type("quotes")), "quotes").is_ok());
        assert!(check_content_type(
            Some("application/vnd.interoperability.quotes+json;version=1.0"),
            "quotes"
        )
        .is_ok());
        assert!(check_content_type(
            Some("application/vnd.interoperability.quotes+json;version=2.0"),
            "quotes"
        )
        .is_err());
        assert!(check_content_type(Some("application/json"), "quotes").is_err());
        assert!(check_content_type(None, "quotes").is_err());
    }

    #[test]
    fn timestamps_round_trip() {
        let ms = 1_795_000_000_123;
        assert_eq!(parse_timestamp(&timestamp(ms)), Some(ms));
    }
}
