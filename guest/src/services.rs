//! The modules through which a script reaches the host's services: `kv`,
//! `vars`, `secrets`, `http`, `files` and `scripts`, plus `log(level, ...)`.
//!
//! Each function encodes a [`HostCall`], hands it to the host through the
//! `picloud.call` import, and turns the [`HostReply`] into a Rhai value. The
//! host decides everything that matters (which app the call belongs to,
//! quotas, allow-lists): nothing a script passes here can name another app.
//! A failed call is an ordinary Rhai error at the calling line, which the
//! script may catch; its message starts with the function and a stable code,
//! such as `kv::set: quota_exceeded: ...`.

use picloud_shared::{HostCall, HostReply, HttpAnswer, HttpCall, OutputLevel, decode, encode};
use rhai::{
    Array, Blob, Dynamic, Engine, EvalAltResult, INT, ImmutableString, Map, Module,
    NativeCallContext,
};

use crate::helpers::script_error;
use crate::json;

#[link(wasm_import_module = "picloud")]
unsafe extern "C" {
    /// Runs a host call; returns the length of the encoded reply.
    #[link_name = "call"]
    fn host_call(ptr: *const u8, len: usize) -> i32;
    /// Copies the last reply into `ptr`.
    #[link_name = "reply"]
    fn host_reply(ptr: *mut u8);
}

type Result<T> = std::result::Result<T, Box<EvalAltResult>>;

/// The default and largest page of `kv::list`.
const KV_PAGE: INT = 100;
const KV_PAGE_MAX: INT = 1000;

/// Sends one call to the host and decodes its reply; an error reply becomes
/// a Rhai error naming the function.
fn call(request: HostCall) -> Result<HostReply> {
    let function = request.function_name();
    let input = encode(&request);
    // SAFETY: the host reads `len` bytes at `ptr` during the call only.
    let len = unsafe { host_call(input.as_ptr(), input.len()) };
    let mut reply = vec![0u8; len.max(0) as usize];
    // SAFETY: the buffer has room for the `len` bytes the host announced.
    unsafe { host_reply(reply.as_mut_ptr()) };
    match decode::<HostReply>(&reply) {
        Ok(HostReply::Error { code, message }) => {
            Err(script_error(format!("{function}: {code}: {message}")))
        }
        Ok(reply) => Ok(reply),
        Err(error) => Err(script_error(format!(
            "{function}: malformed reply from the host: {error}"
        ))),
    }
}

/// Puts the calling line on an error raised inside a module function (Rhai
/// does not do it for namespaced functions).
fn located<T>(ctx: &NativeCallContext, result: Result<T>) -> Result<T> {
    result.map_err(|mut error| {
        if error.position().is_none() {
            error.set_position(ctx.call_position());
        }
        error
    })
}

fn unexpected(function: &str, reply: &HostReply) -> Box<EvalAltResult> {
    script_error(format!(
        "{function}: unexpected reply from the host: {reply:?}"
    ))
}

fn from_json(function: &str, text: &str) -> Result<Dynamic> {
    json::parse(text.as_bytes())
        .map_err(|_| script_error(format!("{function}: the host returned invalid JSON")))
}

fn non_negative(function: &str, name: &str, value: INT) -> Result<u64> {
    u64::try_from(value)
        .map_err(|_| script_error(format!("{function}: {name} must not be negative")))
}

/// Registers every module and `log`.
pub fn register(engine: &mut Engine) {
    engine.register_static_module("kv", kv_module().into());
    engine.register_static_module("vars", vars_module().into());
    engine.register_static_module("secrets", secrets_module().into());
    engine.register_static_module("http", http_module().into());
    engine.register_static_module("files", files_module().into());
    engine.register_static_module("scripts", scripts_module().into());
    engine.register_fn("log", |level: &str, message: Dynamic| -> Result<()> {
        let Some(level) = OutputLevel::from_name(level) else {
            return Err(script_error(format!(
                "log: unknown level '{level}' (use debug, info, warn or error)"
            )));
        };
        let text = if message.is_string() {
            message.into_string().unwrap_or_default()
        } else {
            message.to_string()
        };
        crate::send_output(level, &text);
        Ok(())
    });
}

fn kv_get(key: &str) -> Result<Dynamic> {
    match call(HostCall::KvGet { key: key.into() })? {
        HostReply::Unit => Ok(Dynamic::UNIT),
        HostReply::Json(text) => from_json("kv::get", &text),
        other => Err(unexpected("kv::get", &other)),
    }
}

fn kv_set(key: &str, value: Dynamic, ttl_ms: Option<u64>) -> Result<()> {
    let value = json::stringify("kv::set", &value)?;
    match call(HostCall::KvSet {
        key: key.into(),
        value,
        ttl_ms,
    })? {
        HostReply::Unit => Ok(()),
        other => Err(unexpected("kv::set", &other)),
    }
}

fn kv_list(prefix: &str, after: Option<String>, limit: INT) -> Result<Map> {
    if !(1..=KV_PAGE_MAX).contains(&limit) {
        return Err(script_error(format!(
            "kv::list: limit must be between 1 and {KV_PAGE_MAX}"
        )));
    }
    match call(HostCall::KvList {
        prefix: prefix.into(),
        after,
        limit: limit as u32,
    })? {
        HostReply::KvPage { entries, next } => {
            let mut items = Array::with_capacity(entries.len());
            for (key, value) in entries {
                let mut item = Map::new();
                item.insert("key".into(), key.into());
                item.insert("value".into(), from_json("kv::list", &value)?);
                items.push(Dynamic::from_map(item));
            }
            let mut page = Map::new();
            page.insert("items".into(), Dynamic::from_array(items));
            page.insert("next".into(), next.map_or(Dynamic::UNIT, Dynamic::from));
            Ok(page)
        }
        other => Err(unexpected("kv::list", &other)),
    }
}

fn kv_incr(key: &str, by: INT) -> Result<INT> {
    match call(HostCall::KvIncrement {
        key: key.into(),
        by,
    })? {
        HostReply::Int(value) => Ok(value),
        other => Err(unexpected("kv::incr", &other)),
    }
}

fn kv_module() -> Module {
    let mut module = Module::new();
    module.set_native_fn("get", |ctx: NativeCallContext, key: &str| {
        located(&ctx, kv_get(key))
    });
    module.set_native_fn(
        "set",
        |ctx: NativeCallContext, key: &str, value: Dynamic| located(&ctx, kv_set(key, value, None)),
    );
    module.set_native_fn(
        "set",
        |ctx: NativeCallContext, key: &str, value: Dynamic, ttl_ms: INT| {
            located(
                &ctx,
                (|| {
                    let ttl_ms = non_negative("kv::set", "the time to live", ttl_ms)?;
                    kv_set(key, value, Some(ttl_ms))
                })(),
            )
        },
    );
    module.set_native_fn("delete", |ctx: NativeCallContext, key: &str| {
        located(
            &ctx,
            (|| match call(HostCall::KvDelete { key: key.into() })? {
                HostReply::Bool(existed) => Ok(existed),
                other => Err(unexpected("kv::delete", &other)),
            })(),
        )
    });
    module.set_native_fn("list", |ctx: NativeCallContext, prefix: &str| {
        located(&ctx, kv_list(prefix, None, KV_PAGE))
    });
    module.set_native_fn(
        "list",
        |ctx: NativeCallContext, prefix: &str, after: Dynamic, limit: INT| {
            located(
                &ctx,
                (|| {
                    let after = if after.is_unit() {
                        None
                    } else {
                        Some(after.into_string().map_err(|found| {
                            script_error(format!(
                                "kv::list: `after` must be a string or (), not {found}"
                            ))
                        })?)
                    };
                    kv_list(prefix, after, limit)
                })(),
            )
        },
    );
    module.set_native_fn("incr", |ctx: NativeCallContext, key: &str| {
        located(&ctx, kv_incr(key, 1))
    });
    module.set_native_fn("incr", |ctx: NativeCallContext, key: &str, by: INT| {
        located(&ctx, kv_incr(key, by))
    });
    module
}

fn text_or_unit(function: &str, reply: HostReply) -> Result<Dynamic> {
    match reply {
        HostReply::Unit => Ok(Dynamic::UNIT),
        HostReply::Text(text) => Ok(text.into()),
        other => Err(unexpected(function, &other)),
    }
}

fn vars_module() -> Module {
    let mut module = Module::new();
    module.set_native_fn("get", |ctx: NativeCallContext, name: &str| {
        located(
            &ctx,
            (|| text_or_unit("vars::get", call(HostCall::VarGet { name: name.into() })?))(),
        )
    });
    module.set_native_fn(
        "get",
        |ctx: NativeCallContext, name: &str, default: Dynamic| {
            located(
                &ctx,
                (|| {
                    let value =
                        text_or_unit("vars::get", call(HostCall::VarGet { name: name.into() })?)?;
                    Ok(if value.is_unit() { default } else { value })
                })(),
            )
        },
    );
    module
}

fn secrets_module() -> Module {
    let mut module = Module::new();
    module.set_native_fn("get", |ctx: NativeCallContext, name: &str| {
        located(
            &ctx,
            (|| {
                text_or_unit(
                    "secrets::get",
                    call(HostCall::SecretGet { name: name.into() })?,
                )
            })(),
        )
    });
    module
}

/// Turns an outbound HTTP answer into the map scripts see:
/// `#{status, headers, body, json()}` without the method sugar.
fn http_answer(answer: HttpAnswer) -> Map {
    let mut headers = Map::new();
    for (name, value) in answer.headers {
        headers
            .entry(name.into())
            .and_modify(|existing: &mut Dynamic| {
                let joined = format!("{existing}, {value}");
                *existing = joined.into();
            })
            .or_insert_with(|| value.clone().into());
    }
    let mut map = Map::new();
    map.insert("status".into(), (answer.status as INT).into());
    map.insert("headers".into(), Dynamic::from_map(headers));
    map.insert(
        "body".into(),
        match String::from_utf8(answer.body) {
            Ok(text) => text.into(),
            Err(error) => Dynamic::from_blob(error.into_bytes()),
        },
    );
    map
}

fn body_bytes(function: &str, body: Dynamic) -> Result<(Vec<u8>, bool)> {
    if body.is_unit() {
        Ok((Vec::new(), false))
    } else if body.is_string() {
        Ok((body.into_string().unwrap_or_default().into_bytes(), false))
    } else if body.is_blob() {
        Ok((body.cast::<Blob>(), false))
    } else {
        // Maps, arrays and numbers go as JSON.
        Ok((json::stringify(function, &body)?.into_bytes(), true))
    }
}

fn http_send(function: &str, mut call_spec: HttpCall, body: Dynamic) -> Result<Map> {
    let (bytes, is_json) = body_bytes(function, body)?;
    if is_json
        && !call_spec
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
    {
        call_spec
            .headers
            .push(("content-type".into(), "application/json".into()));
    }
    call_spec.body = bytes;
    match call(HostCall::Http(call_spec))? {
        HostReply::Http(answer) => Ok(http_answer(answer)),
        other => Err(unexpected(function, &other)),
    }
}

fn string_map(function: &str, what: &str, map: Map) -> Result<Vec<(String, String)>> {
    map.into_iter()
        .map(|(name, value)| {
            if value.is_string() {
                Ok((name.to_string(), value.into_string().unwrap_or_default()))
            } else if value.is_int() || value.is_bool() || value.is_float() {
                Ok((name.to_string(), value.to_string()))
            } else {
                Err(script_error(format!(
                    "{function}: {what} '{name}' must be a string"
                )))
            }
        })
        .collect()
}

fn http_request(options: Map) -> Result<Map> {
    const FUNCTION: &str = "http::request";
    let mut options = options;
    let field = |options: &mut Map, name: &str| options.remove(name).unwrap_or(Dynamic::UNIT);
    let url = field(&mut options, "url")
        .into_string()
        .map_err(|_| script_error(format!("{FUNCTION}: `url` must be a string")))?;
    let method = field(&mut options, "method");
    let method = if method.is_unit() {
        "GET".to_owned()
    } else {
        method
            .into_string()
            .map_err(|_| script_error(format!("{FUNCTION}: `method` must be a string")))?
            .to_ascii_uppercase()
    };
    let headers = field(&mut options, "headers");
    let headers = if headers.is_unit() {
        Vec::new()
    } else {
        let map = headers
            .try_cast::<Map>()
            .ok_or_else(|| script_error(format!("{FUNCTION}: `headers` must be a map")))?;
        string_map(FUNCTION, "header", map)?
    };
    let body = field(&mut options, "body");
    if let Some(name) = options.keys().next() {
        return Err(script_error(format!(
            "{FUNCTION}: unknown option '{name}' (use url, method, headers, body)"
        )));
    }
    http_send(
        FUNCTION,
        HttpCall {
            method,
            url,
            headers,
            body: Vec::new(),
        },
        body,
    )
}

fn http_module() -> Module {
    let mut module = Module::new();
    let get = |url: &str, headers: Vec<(String, String)>| {
        http_send(
            "http::get",
            HttpCall {
                method: "GET".into(),
                url: url.into(),
                headers,
                body: Vec::new(),
            },
            Dynamic::UNIT,
        )
    };
    module.set_native_fn("get", move |ctx: NativeCallContext, url: &str| {
        located(&ctx, get(url, Vec::new()))
    });
    module.set_native_fn(
        "get",
        move |ctx: NativeCallContext, url: &str, headers: Map| {
            located(&ctx, get(url, string_map("http::get", "header", headers)?))
        },
    );
    let post = |url: &str, body: Dynamic, headers: Vec<(String, String)>| {
        http_send(
            "http::post",
            HttpCall {
                method: "POST".into(),
                url: url.into(),
                headers,
                body: Vec::new(),
            },
            body,
        )
    };
    module.set_native_fn(
        "post",
        move |ctx: NativeCallContext, url: &str, body: Dynamic| {
            located(&ctx, post(url, body, Vec::new()))
        },
    );
    module.set_native_fn(
        "post",
        move |ctx: NativeCallContext, url: &str, body: Dynamic, headers: Map| {
            located(
                &ctx,
                post(url, body, string_map("http::post", "header", headers)?),
            )
        },
    );
    module.set_native_fn("request", |ctx: NativeCallContext, options: Map| {
        located(&ctx, http_request(options))
    });
    module
}

fn files_module() -> Module {
    let mut module = Module::new();
    module.set_native_fn("read", |ctx: NativeCallContext, path: &str| {
        located(
            &ctx,
            (|| match call(HostCall::FileRead { path: path.into() })? {
                HostReply::Unit => Ok(Dynamic::UNIT),
                HostReply::Bytes(bytes) => Ok(match String::from_utf8(bytes) {
                    Ok(text) => text.into(),
                    Err(_) => {
                        return Err(script_error(format!(
                            "files::read: '{path}' is not UTF-8 text; use files::read_blob"
                        )));
                    }
                }),
                other => Err(unexpected("files::read", &other)),
            })(),
        )
    });
    module.set_native_fn("read_blob", |ctx: NativeCallContext, path: &str| {
        located(
            &ctx,
            (|| match call(HostCall::FileRead { path: path.into() })? {
                HostReply::Unit => Ok(Dynamic::UNIT),
                HostReply::Bytes(bytes) => Ok(Dynamic::from_blob(bytes)),
                other => Err(unexpected("files::read_blob", &other)),
            })(),
        )
    });
    let list = |prefix: &str| -> Result<Array> {
        match call(HostCall::FileList {
            prefix: prefix.into(),
        })? {
            HostReply::List(paths) => Ok(paths.into_iter().map(Dynamic::from).collect()),
            other => Err(unexpected("files::list", &other)),
        }
    };
    module.set_native_fn("list", move |ctx: NativeCallContext| {
        located(&ctx, list(""))
    });
    module.set_native_fn("list", move |ctx: NativeCallContext, prefix: &str| {
        located(&ctx, list(prefix))
    });
    module
}

fn scripts_module() -> Module {
    let mut module = Module::new();
    let call_script = |script: &str, payload: &Dynamic| -> Result<Dynamic> {
        let payload = json::stringify("scripts::invoke", payload)?;
        match call(HostCall::CallScript {
            script: script.into(),
            payload,
        })? {
            HostReply::Unit => Ok(Dynamic::UNIT),
            HostReply::Json(text) => from_json("scripts::invoke", &text),
            HostReply::Text(text) => Ok(text.into()),
            other => Err(unexpected("scripts::invoke", &other)),
        }
    };
    module.set_native_fn("invoke", move |ctx: NativeCallContext, script: &str| {
        located(&ctx, call_script(script, &Dynamic::UNIT))
    });
    module.set_native_fn(
        "invoke",
        move |ctx: NativeCallContext, script: ImmutableString, payload: Dynamic| {
            located(&ctx, call_script(&script, &payload))
        },
    );
    module
}
