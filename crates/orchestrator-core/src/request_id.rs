//! Request ids: taken from the caller when sane, generated otherwise.

use axum::http::{HeaderMap, HeaderName};

/// The header that carries the request id, in both directions.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The longest incoming request id that is honoured.
pub const MAX_LEN: usize = 64;

/// The request id for a request: its `x-request-id` header when that is a
/// sane token (1 to [`MAX_LEN`] characters among `A-Z a-z 0-9 - _ . :`),
/// otherwise a new one (32 lower-case hex digits, see [`generate`]). A proxy in front
/// of PiCloud can so pass its own id through, and a caller cannot inject
/// anything odd into the logs.
pub fn from_headers(headers: &HeaderMap) -> String {
    headers
        .get(&HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|value| is_sane(value))
        .map_or_else(generate, str::to_owned)
}

/// Whether `id` may be used as a request id as it is.
pub fn is_sane(id: &str) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b':'))
}

/// A new request id: a UUIDv7 (RFC 9562) as 32 lower-case hex digits: ids
/// start with the time in milliseconds and sort roughly by arrival.
pub fn generate() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_ids_are_kept_and_others_replaced() {
        assert!(is_sane("abc-123_X.y:z"));
        assert!(!is_sane(""));
        assert!(!is_sane("has space"));
        assert!(!is_sane("line\nbreak"));
        assert!(!is_sane(&"a".repeat(MAX_LEN + 1)));
        let generated = generate();
        assert_eq!(generated.len(), 32);
        assert!(is_sane(&generated));
        assert_eq!(&generated[12..13], "7", "a version 7 UUID");
        let later = generate();
        assert!(later > generated, "{later} sorts after {generated}");
    }
}
