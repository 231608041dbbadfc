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

/// Whether a script might read the `request` constant at all:
/// [`request_fields`] is not empty.
pub fn may_read_request(source: &str) -> bool {
    !request_fields(source).is_empty()
}

/// The parts of the `request` constant a script may read, found from its
/// source text. Both sides apply it to the same source: the host fills in
/// only these parts of the [`Request`] it sends (nothing at all when the set
/// is empty), and the guest builds only these keys of the `request` map, so
/// a script that reads `request.body` does not pay for its headers.
///
/// Only a script that names `request` can read it: as a variable, in a
/// closure, or through `eval` or `is_def_var`, which take a name built at
/// run time. Each place the name appears must be a property of a known
/// part (`request.body`, `request?.query`) or one of the request methods
/// (`request.header(...)`); any other use (`request["body"]`,
/// `print(request)`, `request.keys()`, a method call in a script that
/// defines functions using `this`, a mention in a comment or a string)
/// counts as reading all of it. The test errs towards building, never the
/// other way.
pub fn request_fields(source: &str) -> RequestFields {
    if ["eval", "is_def_var"]
        .iter()
        .any(|name| source.contains(name))
    {
        return RequestFields::ALL;
    }
    let bytes = source.as_bytes();
    let is_word = |byte: u8| byte.is_ascii_alphanumeric() || byte == b'_';
    let skip_spaces = |mut at: usize| {
        while at < bytes.len() && bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        at
    };
    let mut fields = RequestFields::NONE;
    for (start, _) in source.match_indices("request") {
        let end = start + "request".len();
        if (start > 0 && is_word(bytes[start - 1])) || (end < bytes.len() && is_word(bytes[end])) {
            continue; // part of another name, such as `requests`
        }
        if start >= 1 && bytes[start - 1] == b'.' && (start < 2 || bytes[start - 2] != b'.') {
            continue; // a property of another value, such as `reply.request`
        }
        let mut at = skip_spaces(end);
        if bytes.get(at) == Some(&b'?') {
            at += 1;
        }
        if bytes.get(at) != Some(&b'.') {
            return RequestFields::ALL;
        }
        let name_start = skip_spaces(at + 1);
        let mut name_end = name_start;
        while name_end < bytes.len() && is_word(bytes[name_end]) {
            name_end += 1;
        }
        let name = &source[name_start..name_end];
        let is_call = bytes.get(skip_spaces(name_end)) == Some(&b'(');
        let part = if is_call {
            // A method: one of the request API's, unless the script may
            // define its own methods (which read the map as `this`).
            match name {
                _ if source.contains("this") => None,
                "header" | "cookie" => Some(RequestFields::HEADERS),
                "query" => Some(RequestFields::QUERY),
                "json_body" => Some(RequestFields::BODY),
                _ => None,
            }
        } else {
            RequestFields::named(name)
        };
        match part {
            Some(part) => fields = fields.with(part),
            None => return RequestFields::ALL,
        }
    }
    fields
}

/// A set of the parts of a request (see [`request_fields`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestFields(u8);

impl RequestFields {
    /// No part: the script never reads `request`.
    pub const NONE: RequestFields = RequestFields(0);
    /// `request.method`.
    pub const METHOD: RequestFields = RequestFields(1);
    /// `request.path`.
    pub const PATH: RequestFields = RequestFields(1 << 1);
    /// `request.subpath`.
    pub const SUBPATH: RequestFields = RequestFields(1 << 2);
    /// `request.query`.
    pub const QUERY: RequestFields = RequestFields(1 << 3);
    /// `request.headers`.
    pub const HEADERS: RequestFields = RequestFields(1 << 4);
    /// `request.body`.
    pub const BODY: RequestFields = RequestFields(1 << 5);
    /// `request.id`.
    pub const ID: RequestFields = RequestFields(1 << 6);
    /// Every part.
    pub const ALL: RequestFields = RequestFields(0x7f);

    /// The part a key of the `request` map names, if it is one.
    pub fn named(key: &str) -> Option<RequestFields> {
        Some(match key {
            "method" => Self::METHOD,
            "path" => Self::PATH,
            "subpath" => Self::SUBPATH,
            "query" => Self::QUERY,
            "headers" => Self::HEADERS,
            "body" => Self::BODY,
            "id" => Self::ID,
            _ => return None,
        })
    }

    /// This set and `other`.
    pub const fn with(self, other: RequestFields) -> RequestFields {
        RequestFields(self.0 | other.0)
    }

    /// Whether every part of `other` is in this set.
    pub const fn contains(self, other: RequestFields) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether the set has no part.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
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

/// Encodes a message into the start of `buffer`, returning the bytes
/// written, or `None` when it does not fit: the host encodes requests
/// straight into the guest's scratch buffer this way.
pub fn encode_to_slice<'a, T: serde::Serialize>(
    message: &T,
    buffer: &'a mut [u8],
) -> Option<&'a mut [u8]> {
    postcard::to_slice(message, buffer).ok()
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
        let mut slot = [0u8; 64];
        assert_eq!(
            encode_to_slice(&owned, &mut slot).as_deref(),
            Some(&bytes[..])
        );
        assert_eq!(encode_to_slice(&owned, &mut slot[..bytes.len() - 1]), None);
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
        assert!(!may_read_request(
            "let requests = 1; requests + reply.request"
        ));
    }

    #[test]
    fn a_script_reads_the_parts_of_request_it_names() {
        use RequestFields as F;
        let fields = request_fields;
        assert_eq!(fields("json_parse(request.body).id"), F::BODY);
        assert_eq!(
            fields("`${request.query.name} ${request .\n method}`"),
            F::QUERY.with(F::METHOD)
        );
        assert_eq!(fields("request?.headers"), F::HEADERS);
        assert_eq!(
            fields("request.header(\"x\") + request.cookie(\"s\")"),
            F::HEADERS
        );
        assert_eq!(fields("request.query(\"page\", 1)"), F::QUERY);
        assert_eq!(
            fields("request.json_body().a + request.id.len()"),
            F::BODY.with(F::ID)
        );
        assert_eq!(
            fields("global::request.path + request.subpath"),
            F::PATH.with(F::SUBPATH)
        );
        assert_eq!(fields("for i in 0..request.body.len() { }"), F::BODY);
    }

    #[test]
    fn any_other_use_of_request_reads_all_of_it() {
        for source in [
            "request",
            "print(request)",
            "request[\"body\"]",
            "request?[\"body\"]",
            "request.keys()",
            "request.len()",
            "request.unknown",
            "request.body + type_of(request)",
            "\"body\" in request",
            "for part in request { }",
            "let f = |r| r.body; f.call(request)",
            "// the request\n request.body",
            "request.body + eval(\"1\")",
            // A script's own method reads the map as `this`.
            "fn query(name) { this.headers } request.query(\"a\")",
            "request. /* */ body",
            "// see the docs.\nrequest[\"body\"]",
            "for i in 0..request.len() { }",
        ] {
            assert_eq!(request_fields(source), RequestFields::ALL, "{source}");
        }
    }
}
