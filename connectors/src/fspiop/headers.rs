//! FSPIOP headers: versioned media types, `Date`, `FSPIOP-Source` and
//! `FSPIOP-Destination`.

use std::time::SystemTime;

pub const SOURCE: &str = "fspiop-source";
pub const DESTINATION: &str = "fspiop-destination";

/// An FSPIOP API version (`major.minor`), as the media types carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct ApiVersion {
    pub major: u8,
    pub minor: u8,
}

impl ApiVersion {
    pub const V1_0: ApiVersion = ApiVersion { major: 1, minor: 0 };
    pub const V1_1: ApiVersion = ApiVersion { major: 1, minor: 1 };
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The versions payhub speaks, oldest first. v1.1 only added resources and
/// optional elements to v1.0, so one implementation serves both; a callback
/// is sent in the version its request asked for (API Definition 3.3.4.2).
pub const SUPPORTED: [ApiVersion; 2] = [ApiVersion::V1_0, ApiVersion::V1_1];

/// The version payhub uses for requests it starts.
pub const VERSION: ApiVersion = ApiVersion::V1_1;

/// `application/vnd.interoperability.{resource}+json;version={major.minor}`.
pub fn content_type(resource: &str, version: ApiVersion) -> String {
    format!("application/vnd.interoperability.{resource}+json;version={version}")
}

/// The `Accept` of a request payhub starts: any 1.x
/// (`application/vnd.interoperability.{resource}+json;version=1`).
pub fn accept(resource: &str) -> String {
    format!("application/vnd.interoperability.{resource}+json;version=1")
}

/// `Date` as HTTP writes it (RFC 7231 IMF-fixdate).
pub fn date_now() -> String {
    httpdate::fmt_http_date(SystemTime::now())
}

/// Why a media type header was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaTypeError {
    /// The header is absent.
    Missing,
    /// Not the resource's FSPIOP media type, or no parsable version.
    Malformed(String),
    /// A well-formed FSPIOP media type of a version payhub does not speak
    /// (HTTP 406, error 3001 listing [`SUPPORTED`]).
    Unsupported(String),
}

/// One media range of a `Content-Type` or `Accept`: the resource's FSPIOP
/// type with its `version` parameter (`None` when absent), or `Err` with
/// what is wrong.
fn media_range(range: &str, resource: &str) -> Result<Option<(u8, Option<u8>)>, String> {
    let expected = format!("application/vnd.interoperability.{resource}+json");
    let mut parts = range.split(';').map(str::trim);
    let media_type = parts.next().unwrap_or_default();
    if !media_type.eq_ignore_ascii_case(&expected) {
        return Err(format!("{media_type:?} is not {expected}"));
    }
    let Some(version) = parts.find_map(|p| p.strip_prefix("version=")) else {
        return Ok(None);
    };
    let bad = || format!("version {version:?} is not major or major.minor");
    let (major, minor) = match version.split_once('.') {
        Some((major, minor)) => (major, Some(minor)),
        None => (version, None),
    };
    let major = major.parse::<u8>().map_err(|_| bad())?;
    let minor = minor.map(|m| m.parse::<u8>().map_err(|_| bad())).transpose()?;
    Ok(Some((major, minor)))
}

/// The supported version a requested `major[.minor]` names: the exact one,
/// or for a bare major its newest minor.
fn pick(major: u8, minor: Option<u8>) -> Option<ApiVersion> {
    SUPPORTED.iter().rev().copied().find(|v| v.major == major && minor.is_none_or(|m| v.minor == m))
}

/// Checks an inbound `Content-Type` and returns its version: the FSPIOP
/// media type of `resource` with a `major.minor` payhub speaks.
pub fn check_content_type(value: Option<&str>, resource: &str) -> Result<ApiVersion, MediaTypeError> {
    let value = value.ok_or(MediaTypeError::Missing)?;
    match media_range(value, resource).map_err(|e| MediaTypeError::Malformed(format!("Content-Type {e}")))? {
        None => Err(MediaTypeError::Malformed(format!("Content-Type {value:?} has no version parameter"))),
        Some((major, minor)) => pick(major, minor).ok_or_else(|| {
            MediaTypeError::Unsupported(format!("Content-Type version {value:?} is not supported"))
        }),
    }
}

/// Negotiates the version of a request's callback from its `Accept` (API
/// Definition 3.3.4): the first listed range payhub speaks, a bare major
/// meaning its newest minor and no version at all the newest version.
/// Ranges of other media types (`application/json`, `*/*`) are skipped; if
/// none is the resource's FSPIOP type the header is malformed.
pub fn negotiate(accept: Option<&str>, resource: &str) -> Result<ApiVersion, MediaTypeError> {
    let value = accept.ok_or(MediaTypeError::Missing)?;
    let mut fspiop = false;
    for range in value.split(',') {
        match media_range(range, resource) {
            Err(_) => continue,
            Ok(None) => return Ok(VERSION),
            Ok(Some((major, minor))) => {
                fspiop = true;
                if let Some(version) = pick(major, minor) {
                    return Ok(version);
                }
            }
        }
    }
    if fspiop {
        Err(MediaTypeError::Unsupported(format!("Accept {value:?} asks for no version payhub supports")))
    } else {
        Err(MediaTypeError::Malformed(format!(
            "Accept {value:?} does not list application/vnd.interoperability.{resource}+json"
        )))
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
    fn content_types_of_supported_versions_are_accepted_with_their_version() {
        let of = |v: &str| check_content_type(Some(v), "quotes");
        assert_eq!(of(&content_type("quotes", ApiVersion::V1_1)), Ok(ApiVersion::V1_1));
        assert_eq!(of("application/vnd.interoperability.quotes+json;version=1.0"), Ok(ApiVersion::V1_0));
        assert_eq!(of("application/vnd.interoperability.quotes+json; version=1"), Ok(ApiVersion::V1_1));
        assert!(matches!(
            of("application/vnd.interoperability.quotes+json;version=2.0"),
            Err(MediaTypeError::Unsupported(_))
        ));
        assert!(matches!(
            of("application/vnd.interoperability.quotes+json;version=1.7"),
            Err(MediaTypeError::Unsupported(_))
        ));
        assert!(matches!(of("application/json"), Err(MediaTypeError::Malformed(_))));
        assert!(matches!(
            of("application/vnd.interoperability.quotes+json"),
            Err(MediaTypeError::Malformed(_))
        ));
        assert!(matches!(
            of("application/vnd.interoperability.parties+json;version=1.0"),
            Err(MediaTypeError::Malformed(_))
        ));
        assert_eq!(check_content_type(None, "quotes"), Err(MediaTypeError::Missing));
    }

    #[test]
    fn accept_negotiates_the_first_supported_version() {
        let of = |v: &str| negotiate(Some(v), "parties");
        assert_eq!(of("application/vnd.interoperability.parties+json;version=1.0"), Ok(ApiVersion::V1_0));
        assert_eq!(of("application/vnd.interoperability.parties+json;version=1"), Ok(ApiVersion::V1_1));
        assert_eq!(of("application/vnd.interoperability.parties+json"), Ok(ApiVersion::V1_1));
        assert_eq!(
            of("application/vnd.interoperability.parties+json;version=2, \
                application/vnd.interoperability.parties+json;version=1.0"),
            Ok(ApiVersion::V1_0)
        );
        assert!(matches!(
            of("application/vnd.interoperability.parties+json;version=2.1"),
            Err(MediaTypeError::Unsupported(_))
        ));
        assert!(matches!(of("application/json"), Err(MediaTypeError::Malformed(_))));
        assert_eq!(negotiate(None, "parties"), Err(MediaTypeError::Missing));
    }

    #[test]
    fn timestamps_round_trip() {
        let ms = 1_795_000_000_123;
        assert_eq!(parse_timestamp(&timestamp(ms)), Some(ms));
    }
}
