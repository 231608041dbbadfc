//! Conversions between the ABI's request/response and Rhai values, the
//! `response(...)` API that lets a script set status and headers, and the
//! request and response helpers built on them.

use std::io::Write;

use picloud_shared::{
    HandleOutcome, HandleOutcomeRef, RequestFields, RequestRef, Response, ResponseRef, ScriptError,
    ScriptErrorKind,
};
use rhai::{Dynamic, Engine, EvalAltResult, ImmutableString, Map};

use crate::helpers::script_error;

/// An explicit response built by a script with `response(status, body)`.
#[derive(Debug, Clone)]
pub struct ScriptResponse {
    status: i64,
    headers: Map,
    body: Dynamic,
}

/// Registers the `Response` type and its constructors.
pub fn register_response_api(engine: &mut Engine) {
    engine
        .register_type_with_name::<ScriptResponse>("Response")
        .register_fn("response", |status: i64, body: Dynamic| ScriptResponse {
            status,
            headers: Map::new(),
            body,
        })
        .register_fn("response", |status: i64, body: Dynamic, headers: Map| {
            ScriptResponse {
                status,
                headers,
                body,
            }
        })
        .register_get("status", |response: &mut ScriptResponse| response.status)
        .register_get("headers", |response: &mut ScriptResponse| {
            response.headers.clone()
        })
        .register_get("body", |response: &mut ScriptResponse| {
            response.body.clone()
        })
        .register_fn("redirect", |url: ImmutableString| redirect(url, 302))
        .register_fn("redirect", redirect)
        .register_fn("error_response", error_response)
        .register_fn("json_response", json_response);
}

/// Registers the request helpers: functions over the `request` map, meant to
/// be called as methods (`request.header("x-signature")`). They take the map
/// by reference so a call does not copy the request; they are registered as
/// pure (Rhai's default), which lets them be called on the `request` constant.
pub fn register_request_api(engine: &mut Engine) {
    engine
        .register_fn("header", |request: &mut Map, name: &str| {
            header(request, name, Dynamic::UNIT)
        })
        .register_fn(
            "header",
            |request: &mut Map, name: &str, default: Dynamic| header(request, name, default),
        )
        .register_fn("query", |request: &mut Map, name: &str| {
            field(request, "query", name, Dynamic::UNIT)
        })
        .register_fn(
            "query",
            |request: &mut Map, name: &str, default: Dynamic| {
                field(request, "query", name, default)
            },
        )
        .register_fn("cookie", |request: &mut Map, name: &str| {
            cookie(request, name, Dynamic::UNIT)
        })
        .register_fn(
            "cookie",
            |request: &mut Map, name: &str, default: Dynamic| cookie(request, name, default),
        )
        .register_fn("json_body", |request: &mut Map| match request.get("body") {
            Some(body) if body.is_blob() => crate::json::parse(&body.clone().cast::<rhai::Blob>()),
            Some(body) => match body.read_lock::<ImmutableString>() {
                Some(text) => crate::json::parse(text.as_bytes()),
                None => Err(script_error(
                    "json_body: the map has no body to parse".into(),
                )),
            },
            None => Err(script_error(
                "json_body: the map has no body to parse".into(),
            )),
        });
}

/// `map[section][name]`, or `default` when either is missing.
fn field(request: &Map, section: &str, name: &str, default: Dynamic) -> Dynamic {
    request
        .get(section)
        .and_then(|section| section.read_lock::<Map>()?.get(name).cloned())
        .unwrap_or(default)
}

/// A request header by name in any case (the `request` map holds them in
/// lower case), or `default`.
fn header(request: &Map, name: &str, default: Dynamic) -> Dynamic {
    field(request, "headers", &name.to_ascii_lowercase(), default)
}

/// The value of one cookie from the `cookie` header, or `default`.
fn cookie(request: &Map, name: &str, default: Dynamic) -> Dynamic {
    let Some(cookies) = header(request, "cookie", Dynamic::UNIT)
        .into_immutable_string()
        .ok()
    else {
        return default;
    };
    // Repeated cookie headers were joined with ", "; split on both separators.
    cookies
        .split([';', ','])
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| key.trim() == name)
        .map(|(_, value)| {
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|value| value.strip_suffix('"'))
                .unwrap_or(value);
            Dynamic::from(value.to_string())
        })
        .unwrap_or(default)
}

fn redirect(url: ImmutableString, status: i64) -> Result<ScriptResponse, Box<EvalAltResult>> {
    if ![301, 302, 303, 307, 308].contains(&status) {
        return Err(script_error(format!(
            "redirect: the status must be 301, 302, 303, 307 or 308, not {status}"
        )));
    }
    let mut headers = Map::new();
    headers.insert("location".into(), url.into());
    Ok(ScriptResponse {
        status,
        headers,
        body: Dynamic::UNIT,
    })
}

fn error_response(status: i64, message: Dynamic) -> Result<ScriptResponse, Box<EvalAltResult>> {
    if !(400..=599).contains(&status) {
        return Err(script_error(format!(
            "error_response: the status must be between 400 and 599, not {status}"
        )));
    }
    let mut body = Map::new();
    body.insert("error".into(), message);
    Ok(ScriptResponse {
        status,
        headers: Map::new(),
        body: Dynamic::from_map(body),
    })
}

/// A response whose body is `value` written as JSON, whatever its type (a
/// string becomes a JSON string, not `text/plain`).
fn json_response(status: i64, value: Dynamic) -> Result<ScriptResponse, Box<EvalAltResult>> {
    let text = crate::json::stringify("json_response", &value)?;
    let mut headers = Map::new();
    headers.insert("content-type".into(), "application/json".into());
    Ok(ScriptResponse {
        status,
        headers,
        body: text.into(),
    })
}

/// The name a script author knows a value's type by.
pub fn type_name(value: &Dynamic) -> &'static str {
    if value.is::<ScriptResponse>() {
        "Response"
    } else {
        value.type_name()
    }
}

/// Builds the `request` constant a script sees, with the keys of `fields`
/// only: the script names no other (the host sends the others empty).
pub fn request_to_dynamic(request: RequestRef<'_>, fields: RequestFields) -> Dynamic {
    let mut map = Map::new();
    let mut add = |part: RequestFields, key: &str, value: &dyn Fn() -> Dynamic| {
        if fields.contains(part) {
            map.insert(key.into(), value());
        }
    };
    add(RequestFields::METHOD, "method", &|| request.method.into());
    add(RequestFields::PATH, "path", &|| request.path.into());
    add(RequestFields::SUBPATH, "subpath", &|| {
        request.subpath.into()
    });
    add(RequestFields::QUERY, "query", &|| {
        let mut query = Map::new();
        for (name, value) in &request.query {
            // The first occurrence wins, as in most web frameworks.
            query
                .entry((*name).into())
                .or_insert_with(|| (*value).into());
        }
        Dynamic::from_map(query)
    });
    add(RequestFields::HEADERS, "headers", &|| {
        let mut headers = Map::new();
        for (name, value) in &request.headers {
            // Repeated headers are joined as HTTP allows (RFC 9110, 5.3).
            match headers.get_mut(*name) {
                Some(existing) => {
                    let joined = format!(
                        "{}, {}",
                        existing.clone().into_string().unwrap_or_default(),
                        value
                    );
                    *existing = joined.into();
                }
                None => {
                    headers.insert((*name).into(), (*value).into());
                }
            }
        }
        Dynamic::from_map(headers)
    });
    add(
        RequestFields::BODY,
        "body",
        &|| match std::str::from_utf8(request.body) {
            Ok(text) => text.into(),
            Err(_) => Dynamic::from_blob(request.body.to_vec()),
        },
    );
    add(RequestFields::ID, "id", &|| request.request_id.into());
    Dynamic::from_map(map)
}

/// A writer that refuses to grow past a limit, so that serialising a huge
/// value fails early instead of first building all of it.
struct LimitedWriter {
    bytes: Vec<u8>,
    limit: usize,
}

impl Write for LimitedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > self.limit {
            return Err(std::io::Error::other("response too large"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn too_large(limit: u32) -> ScriptError {
    ScriptError {
        kind: ScriptErrorKind::ResponseTooLarge,
        message: format!("the response body is larger than the limit of {limit} bytes"),
        position: None,
    }
}

fn invalid(message: String) -> ScriptError {
    ScriptError {
        kind: ScriptErrorKind::InvalidResponse,
        message,
        position: None,
    }
}

/// Encodes a script's result as the answer of the `handle` export into
/// `buffer`.
///
/// A string is `text/plain`, a map, array, number or boolean is JSON, a blob
/// is `application/octet-stream`, `()` is an empty `204`, and a `Response`
/// sets status, headers and body explicitly. A plain result is encoded
/// straight from the value (a string or blob is not copied before it is
/// encoded); see [`HandleOutcomeRef`].
pub fn encode_result(value: Dynamic, limit: u32, mut buffer: Vec<u8>) -> Vec<u8> {
    if value.is::<ScriptResponse>() {
        let outcome = match explicit_response(value.cast::<ScriptResponse>(), limit) {
            Ok(response) => HandleOutcome::Response(response),
            Err(error) => HandleOutcome::Error(error),
        };
        return crate::encode_outcome(&outcome, buffer);
    }
    let status = if value.is_unit() { 204 } else { 200 };
    let encoded = with_body(&value, limit, |body, content_type| {
        let header = content_type.map(|content_type| ("content-type", content_type));
        let outcome = HandleOutcomeRef::Response(ResponseRef {
            status,
            headers: header.as_slice(),
            body,
        });
        let mut buffer = std::mem::take(&mut buffer);
        buffer.reserve(body.len() + 64);
        picloud_shared::encode_into(&outcome, buffer)
    });
    encoded.unwrap_or_else(|error| crate::encode_outcome(&HandleOutcome::Error(error), buffer))
}

/// Calls `encode` with a body value's bytes, borrowed where they can be, and
/// the content type they imply (none for `()`, an empty body).
fn with_body<R>(
    value: &Dynamic,
    limit: u32,
    encode: impl FnOnce(&[u8], Option<&'static str>) -> R,
) -> Result<R, ScriptError> {
    let checked = |bytes: &[u8]| {
        if bytes.len() > limit as usize {
            Err(too_large(limit))
        } else {
            Ok(())
        }
    };
    if value.is_unit() {
        return Ok(encode(&[], None));
    }
    if let Some(text) = value.read_lock::<ImmutableString>() {
        checked(text.as_bytes())?;
        return Ok(encode(text.as_bytes(), Some("text/plain; charset=utf-8")));
    }
    if value.is_char() {
        let text = value.to_string();
        checked(text.as_bytes())?;
        return Ok(encode(text.as_bytes(), Some("text/plain; charset=utf-8")));
    }
    if let Some(bytes) = value.read_lock::<rhai::Blob>() {
        checked(&bytes)?;
        return Ok(encode(&bytes, Some("application/octet-stream")));
    }
    if !(value.is_map()
        || value.is_array()
        || value.is_int()
        || value.is_float()
        || value.is_bool())
    {
        return Err(invalid(format!(
            "a value of type '{}' cannot be a response body",
            value.type_name()
        )));
    }
    let mut writer = LimitedWriter {
        // Most JSON answers are small; start past the first few growths.
        bytes: Vec::with_capacity((limit as usize).min(128)),
        limit: limit as usize,
    };
    match serde_json::to_writer(&mut writer, value) {
        Ok(()) => Ok(encode(&writer.bytes, Some("application/json"))),
        Err(error) if error.is_io() => Err(too_large(limit)),
        Err(error) => Err(invalid(format!(
            "the result cannot be written as JSON: {error}"
        ))),
    }
}

/// Turns a script's explicit `response(...)` into the ABI's response.
fn explicit_response(response: ScriptResponse, limit: u32) -> Result<Response, ScriptError> {
    let status = u16::try_from(response.status)
        .ok()
        .filter(|status| (100..=599).contains(status))
        .ok_or_else(|| invalid(format!("{} is not an HTTP status code", response.status)))?;
    let (body, content_type) = with_body(&response.body, limit, |body, content_type| {
        (body.to_vec(), content_type)
    })?;
    let mut headers = Vec::with_capacity(response.headers.len() + 1);
    let mut has_content_type = false;
    for (name, value) in response.headers {
        let name = name.to_lowercase();
        has_content_type |= name == "content-type";
        let value = match value.clone().try_cast::<ImmutableString>() {
            Some(text) => text.to_string(),
            None => value.to_string(),
        };
        headers.push((name, value));
    }
    if let (false, Some(content_type)) = (has_content_type, content_type) {
        headers.push(("content-type".into(), content_type.into()));
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}
