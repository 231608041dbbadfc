//! Conversions between the ABI's request/response and Rhai values, the
//! `response(...)` API that lets a script set status and headers, and the
//! request and response helpers built on them.

use std::io::Write;

use picloud_shared::{
    HandleOutcome, HandleOutcomeRef, Request, Response, ResponseRef, ScriptError, ScriptErrorKind,
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

/// Builds the `request` constant a script sees.
pub fn request_to_dynamic(request: Request) -> Dynamic {
    let mut query = Map::new();
    for (name, value) in request.query {
        // The first occurrence wins, as in most web frameworks.
        query.entry(name.into()).or_insert_with(|| value.into());
    }
    let mut headers = Map::new();
    for (name, value) in request.headers {
        // Repeated headers are joined as HTTP allows (RFC 9110, 5.3).
        match headers.get_mut(name.as_str()) {
            Some(existing) => {
                let joined = format!(
                    "{}, {}",
                    existing.clone().into_string().unwrap_or_default(),
                    value
                );
                *existing = joined.into();
            }
            None => {
                headers.insert(name.into(), value.into());
            }
        }
    }
    let body: Dynamic = match String::from_utf8(request.body) {
        Ok(text) => text.into(),
        Err(error) => Dynamic::from_blob(error.into_bytes()),
    };
    let mut map = Map::new();
    map.insert("method".into(), request.method.into());
    map.insert("path".into(), request.path.into());
    map.insert("subpath".into(), request.subpath.into());
    map.insert("query".into(), Dynamic::from_map(query));
    map.insert("headers".into(), Dynamic::from_map(headers));
    map.insert("body".into(), body);
    map.insert("id".into(), request.request_id.into());
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

/// The content type of each kind of plain result, as the single header of
/// its response.
const TEXT: &[(&str, &str)] = &[("content-type", "text/plain; charset=utf-8")];
const JSON: &[(&str, &str)] = &[("content-type", "application/json")];
const OCTETS: &[(&str, &str)] = &[("content-type", "application/octet-stream")];

/// Encodes a script's result as the answer of the `handle` export into
/// `buffer`.
///
/// A string is `text/plain`, a map, array, number or boolean is JSON, a blob
/// is `application/octet-stream`, `()` is an empty `204`, and a `Response`
/// sets status, headers and body explicitly. A plain result is encoded
/// straight from the value (a string or blob is not copied before it is
/// encoded); see [`HandleOutcomeRef`].
pub fn encode_result(value: Dynamic, limit: u32, buffer: Vec<u8>) -> Vec<u8> {
    if value.is::<ScriptResponse>() {
        let outcome = match explicit_response(value.cast::<ScriptResponse>(), limit) {
            Ok(response) => HandleOutcome::Response(response),
            Err(error) => HandleOutcome::Error(error),
        };
        return crate::encode_outcome(&outcome, buffer);
    }
    if value.is_unit() {
        return encode_plain(204, &[], &[], buffer);
    }
    if let Some(text) = value.read_lock::<ImmutableString>() {
        if text.len() > limit as usize {
            return refuse(too_large(limit), buffer);
        }
        return encode_plain(200, TEXT, text.as_bytes(), buffer);
    }
    if let Some(bytes) = value.read_lock::<rhai::Blob>() {
        if bytes.len() > limit as usize {
            return refuse(too_large(limit), buffer);
        }
        return encode_plain(200, OCTETS, &bytes, buffer);
    }
    if value.is_char() {
        return encode_plain(200, TEXT, value.to_string().as_bytes(), buffer);
    }
    match encode_json(&value, limit) {
        Ok(Some(json)) => encode_plain(200, JSON, &json, buffer),
        Ok(None) => refuse(
            invalid(format!(
                "a value of type '{}' cannot be a response body",
                value.type_name()
            )),
            buffer,
        ),
        Err(error) => refuse(error, buffer),
    }
}

fn refuse(error: ScriptError, buffer: Vec<u8>) -> Vec<u8> {
    crate::encode_outcome(&HandleOutcome::Error(error), buffer)
}

fn encode_plain(
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
    mut buffer: Vec<u8>,
) -> Vec<u8> {
    buffer.reserve(body.len() + 64);
    let outcome = HandleOutcomeRef::Response(ResponseRef {
        status,
        headers,
        body,
    });
    picloud_shared::encode_into(&outcome, buffer)
}

/// A map, array, number or boolean written as JSON; `None` for any other value.
fn encode_json(value: &Dynamic, limit: u32) -> Result<Option<Vec<u8>>, ScriptError> {
    if !(value.is_map()
        || value.is_array()
        || value.is_int()
        || value.is_float()
        || value.is_bool())
    {
        return Ok(None);
    }
    let mut writer = LimitedWriter {
        // Most JSON answers are small; start past the first few growths.
        bytes: Vec::with_capacity((limit as usize).min(128)),
        limit: limit as usize,
    };
    match serde_json::to_writer(&mut writer, value) {
        Ok(()) => Ok(Some(writer.bytes)),
        Err(error) if error.is_io() => Err(too_large(limit)),
        Err(error) => Err(invalid(format!(
            "the result cannot be written as JSON: {error}"
        ))),
    }
}

/// Encodes the body of an explicit response; returns the bytes and the
/// content type it implies.
fn encode_body(value: Dynamic, limit: u32) -> Result<(Vec<u8>, Option<&'static str>), ScriptError> {
    if value.is_unit() {
        return Ok((Vec::new(), None));
    }
    if value.is_string() || value.is_char() {
        // A string moves out as it is; only a char needs formatting.
        let text = if value.is_char() {
            value.to_string()
        } else {
            value.into_string().unwrap_or_default()
        };
        if text.len() > limit as usize {
            return Err(too_large(limit));
        }
        return Ok((text.into_bytes(), Some(TEXT[0].1)));
    }
    if value.is_blob() {
        let bytes = value.cast::<rhai::Blob>();
        if bytes.len() > limit as usize {
            return Err(too_large(limit));
        }
        return Ok((bytes, Some(OCTETS[0].1)));
    }
    match encode_json(&value, limit)? {
        Some(json) => Ok((json, Some(JSON[0].1))),
        None => Err(invalid(format!(
            "a value of type '{}' cannot be a response body",
            value.type_name()
        ))),
    }
}

/// Turns a script's explicit `response(...)` into the ABI's response.
fn explicit_response(response: ScriptResponse, limit: u32) -> Result<Response, ScriptError> {
    let status = u16::try_from(response.status)
        .ok()
        .filter(|status| (100..=599).contains(status))
        .ok_or_else(|| invalid(format!("{} is not an HTTP status code", response.status)))?;
    let (body, content_type) = encode_body(response.body, limit)?;
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
