//! Types shared by the PiCloud host and its WebAssembly guest.
//!
//! The guest (`guest/`, a Rhai interpreter compiled to `wasm32-wasip1`) and
//! the host (`picloud-executor-core`) talk through a small, explicit ABI made
//! of a handful of exported and imported functions whose arguments are byte
//! buffers in the guest's linear memory. This crate defines what goes into
//! those buffers; [`abi`] documents the functions themselves. Everything is
//! encoded with [`postcard`], a compact serde format, and every message type
//! is versioned through [`abi::ABI_VERSION`].

pub mod abi;
mod allow;
mod messages;

pub use allow::HttpAllowPattern;
pub use messages::*;

/// First path segments that belong to PiCloud itself, never to an app: the
/// management API (`/api/v1`), the dashboard and its assets, the health and
/// metrics endpoints, and static files. The control plane refuses them as
/// app slugs and the ingress never routes them to a script; both read this
/// one list so they cannot drift apart.
pub const RESERVED_APP_SLUGS: &[&str] = &[
    "api",
    "dashboard",
    "healthz",
    "readyz",
    "metrics",
    "_static",
    "assets",
    "favicon.ico",
    "robots.txt",
];

/// Whether a script might read the `request` constant. Only a script that
/// names it can: as a variable, in a closure, or through `eval` or
/// `is_def_var`, which take a name built at run time. The guest builds
/// `request` for such scripts only, so one that never reads it (a fixed
/// answer, a counter) does not pay for decoding and building it. The test
/// is on the source text, so it errs towards building: a comment or a
/// string that says `request` is enough.
pub fn may_read_request(source: &str) -> bool {
    ["request", "eval", "is_def_var"]
        .iter()
        .any(|name| source.contains(name))
}

/// Encodes a message for the other side of the ABI.
pub fn encode<T: serde::Serialize>(message: &T) -> Vec<u8> {
    // Serialising our own plain data types into a Vec cannot fail: postcard
    // only fails on unsupported types (none here) or a full fixed buffer.
    postcard::to_allocvec(message).expect("ABI messages always serialise")
}

/// Encodes a message into `buffer` (cleared first), reusing its capacity:
/// the guest encodes every response this way into one buffer.
pub fn encode_into<T: serde::Serialize>(message: &T, mut buffer: Vec<u8>) -> Vec<u8> {
    buffer.clear();
    postcard::to_extend(message, buffer).expect("ABI messages always serialise")
}

/// Decodes a message received from the other side of the ABI.
pub fn decode<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_borrowed_response_encodes_like_an_owned_one() {
        let owned = HandleOutcome::Response(Response {
            status: 201,
            headers: vec![
                ("content-type".into(), "text/plain; charset=utf-8".into()),
                ("x-n".into(), "é".into()),
            ],
            body: b"Hello, world!".to_vec(),
        });
        let borrowed = HandleOutcomeRef::Response(ResponseRef {
            status: 201,
            headers: &[("content-type", "text/plain; charset=utf-8"), ("x-n", "é")],
            body: b"Hello, world!",
        });
        let bytes = encode_into(&borrowed, vec![1, 2, 3]);
        assert_eq!(bytes, encode(&owned));
        assert_eq!(decode::<HandleOutcome>(&bytes).unwrap(), owned);
    }

    #[test]
    fn a_request_decodes_borrowed_as_it_was_encoded() {
        let owned = Request {
            method: "POST".into(),
            path: "/shop/orders/42".into(),
            subpath: "/42".into(),
            query: vec![("page".into(), "2".into()), ("page".into(), "3".into())],
            headers: vec![("content-type".into(), "application/json".into())],
            body: vec![b'{', 0xff, b'}'],
            request_id: "r-1".into(),
        };
        let bytes = encode(&owned);
        let borrowed: RequestRef<'_> = decode(&bytes).unwrap();
        assert_eq!(
            borrowed,
            RequestRef {
                method: "POST",
                path: "/shop/orders/42",
                subpath: "/42",
                query: vec![("page", "2"), ("page", "3")],
                headers: vec![("content-type", "application/json")],
                body: &[b'{', 0xff, b'}'],
                request_id: "r-1",
            }
        );
        assert_eq!(encode(&borrowed), bytes);
    }

    #[test]
    fn only_a_script_that_names_request_reads_it() {
        assert!(may_read_request("request.body"));
        assert!(may_read_request("// uses the request\n1"));
        assert!(may_read_request(r#"eval("1")"#));
        assert!(may_read_request(r#"is_def_var("x")"#));
        assert!(!may_read_request(r#""Hello, world!""#));
        assert!(!may_read_request("let n = 1; n + 1"));
    }
}
