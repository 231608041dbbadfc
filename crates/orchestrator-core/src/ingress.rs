//! The HTTP ingress: turns an HTTP request into an executor [`Request`],
//! runs the script's active version, and turns the outcome back into an HTTP
//! response and an [`InvocationRecord`].

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use percent_encoding::percent_decode_str;
use picloud_executor_core::{
    Executor, Invocation, InvocationContext, InvocationStats, InvokeError, OutputLine, Request,
    RequestFields, Response,
};
use tracing::Instrument;

use crate::config::IngressConfig;
use crate::error::IngressError;
use crate::records::{Ran, RecordBuffer, Trigger};
use crate::request_id;
use crate::routes::{ActiveScript, RouteTable, Routes, is_reserved_app_slug};
use crate::services::{ScriptIdentity, ServiceProvider};

/// Everything the ingress needs; cheap to clone.
#[derive(Clone)]
pub struct IngressState {
    inner: Arc<StateInner>,
}

struct StateInner {
    executor: Executor,
    routes: Arc<RouteTable>,
    records: RecordBuffer,
    config: IngressConfig,
    services: Option<Arc<dyn ServiceProvider>>,
    async_queue: Option<Arc<dyn crate::triggers::AsyncQueue>>,
}

impl std::fmt::Debug for IngressState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngressState")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl IngressState {
    /// The ingress's state: the executor that runs scripts, the routing
    /// table the control plane updates, the buffer that receives one record
    /// per invocation, and the limits.
    pub fn new(
        executor: Executor,
        routes: Arc<RouteTable>,
        records: RecordBuffer,
        config: IngressConfig,
    ) -> Self {
        IngressState {
            inner: Arc::new(StateInner {
                executor,
                routes,
                records,
                config,
                services: None,
                async_queue: None,
            }),
        }
    }

    /// The same state, giving scripts the host services `provider` makes.
    /// Call it before the state is cloned.
    pub fn with_services(mut self, provider: Arc<dyn ServiceProvider>) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("with_services is called before the state is shared")
            .services = Some(provider);
        self
    }

    /// The same state, storing requests sent with `Prefer: respond-async`
    /// in `queue` and answering them `202 Accepted`. Call it before the
    /// state is cloned.
    pub fn with_async_queue(mut self, queue: Arc<dyn crate::triggers::AsyncQueue>) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("with_async_queue is called before the state is shared")
            .async_queue = Some(queue);
        self
    }

    /// The provider of host services, if scripts have any.
    pub fn services(&self) -> Option<&Arc<dyn ServiceProvider>> {
        self.inner.services.as_ref()
    }

    /// What an invocation of `script` started by a trigger gets: the host
    /// services bound to its app, at call depth 0.
    pub(crate) fn context_for(
        &self,
        script: &Arc<ActiveScript>,
        request_id: &str,
    ) -> InvocationContext {
        InvocationContext {
            services: self.services().map(|provider| {
                provider.services_for(ScriptIdentity {
                    script: script.clone(),
                    request_id: request_id.to_owned(),
                    depth: 0,
                })
            }),
            deadline: None,
        }
    }

    /// The routing table.
    pub fn routes(&self) -> &Arc<RouteTable> {
        &self.inner.routes
    }

    /// The invocation-record buffer.
    pub fn records(&self) -> &RecordBuffer {
        &self.inner.records
    }

    /// The executor.
    pub fn executor(&self) -> &Executor {
        &self.inner.executor
    }

    /// The limits.
    pub fn config(&self) -> &IngressConfig {
        &self.inner.config
    }
}

/// The router that serves script endpoints, ready to be merged with the
/// management API, the dashboard and the health endpoints.
///
/// It answers every method on `/{app}/{script}` and below, and on
/// `/{script}` and below when the `Host` header is one of an app's domains.
/// It is a router with only a fallback: every route of the merged router
/// (`/healthz`, `/api/v1/...`) wins over it, a path no script answers
/// (including one under a reserved first segment that the merged router does
/// not know) ends here as `404 not_found` without running anything, and
/// axum extracts no path parameters for it. The router it is merged with
/// must therefore have no fallback of its own.
pub fn ingress_router(state: IngressState) -> Router {
    Router::new().fallback(handle).with_state(state)
}

/// One request, from its id to its record.
async fn handle(
    State(state): State<IngressState>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let request_id = request_id::from_headers(request.headers());
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %request.method(),
        path = %request.uri().path(),
    );
    let mut response = handle_request(&state, request, &request_id)
        .instrument(span)
        .await;
    let header_value = HeaderValue::from_str(&request_id).expect("request ids are visible ASCII");
    response
        .headers_mut()
        .insert(request_id::HEADER, header_value);
    response
}

async fn handle_request(
    state: &IngressState,
    request: axum::extract::Request,
    request_id: &str,
) -> axum::response::Response {
    let started = Instant::now();
    let config = state.config();

    if let Err(error) = check_headers(request.headers(), config) {
        tracing::debug!(code = error.code(), %error, "request refused");
        return error.to_response(request_id);
    }

    let target = {
        let routes = state.routes().load();
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .or(request.uri().host());
        resolve(&routes, host, request.uri().path())
            .map(|(script, subpath)| (script.clone(), subpath.to_owned()))
    };
    let Some((script, subpath)) = target else {
        tracing::debug!("no script answers at this path");
        return IngressError::NotFound.to_response(request_id);
    };
    let call = ScriptCall {
        state,
        script: &script,
        request_id,
        started,
        started_at_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64),
    };

    let deadline = tokio::time::Instant::from_std(started) + config.request_timeout();
    let (parts, body) = request.into_parts();
    let body = match tokio::time::timeout_at(
        deadline,
        read_body(&parts.headers, body, config.max_body_bytes),
    )
    .await
    {
        Ok(Ok(body)) => body,
        Ok(Err(error)) => return call.refuse(error),
        Err(_elapsed) => {
            return call.refuse(IngressError::RequestTimeout {
                timeout_ms: config.request_timeout_ms,
            });
        }
    };

    let run_async =
        state.inner.async_queue.is_some() && crate::triggers::wants_async(&parts.headers);
    // The request is copied only as far as the script can read it: a
    // script that never names `request` is not sent one (the executor drops
    // it anyway), one that reads only `request.body` gets no headers or
    // query. An async request is stored whole: it may run on a later version.
    let fields = if run_async {
        RequestFields::ALL
    } else {
        script.version.request_fields()
    };
    // A part the script cannot read is left empty, and not copied.
    fn part<T: Default>(
        fields: RequestFields,
        part: RequestFields,
        value: impl FnOnce() -> T,
    ) -> T {
        if fields.contains(part) {
            value()
        } else {
            T::default()
        }
    }
    let executor_request = Request {
        method: part(fields, RequestFields::METHOD, || {
            parts.method.as_str().to_ascii_uppercase()
        }),
        path: part(fields, RequestFields::PATH, || parts.uri.path().to_owned()),
        subpath: part(fields, RequestFields::SUBPATH, || subpath),
        query: part(fields, RequestFields::QUERY, || {
            parts
                .uri
                .query()
                .map(|query| {
                    form_urlencoded::parse(query.as_bytes())
                        .into_owned()
                        .collect()
                })
                .unwrap_or_default()
        }),
        headers: part(fields, RequestFields::HEADERS, || {
            parts
                .headers
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_str().to_owned(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    )
                })
                .collect()
        }),
        body: part(fields, RequestFields::BODY, || Vec::from(body)),
        request_id: request_id.to_owned(),
    };

    if run_async && let Some(queue) = &state.inner.async_queue {
        return crate::triggers::accept_async(&**queue, &script, executor_request).await;
    }
    call.invoke(executor_request, deadline).await
}

/// Finds the script a path (and host) names, and the sub-path below it.
///
/// With a `Host` that is one of an app's domains, the first segment names a
/// script of that app; otherwise the first two segments name the app and the
/// script. Segments are percent-decoded before the lookup; the sub-path is
/// returned as sent.
fn resolve<'a, 'p>(
    routes: &'a Routes,
    host: Option<&str>,
    path: &'p str,
) -> Option<(&'a Arc<ActiveScript>, &'p str)> {
    let (first, below_first) = split_segment(path)?;
    if let Some(app_slug) = host.and_then(|host| routes.app_for_host(host)) {
        return Some((
            routes.script(app_slug, &decode_segment(first)?)?,
            below_first,
        ));
    }
    let app_slug = decode_segment(first)?;
    if is_reserved_app_slug(&app_slug) {
        return None;
    }
    let (second, below_second) = split_segment(below_first)?;
    Some((
        routes.script(&app_slug, &decode_segment(second)?)?,
        below_second,
    ))
}

/// Splits `/first/rest...` into `first` and `/rest...` (or `""`).
fn split_segment(path: &str) -> Option<(&str, &str)> {
    let path = path.strip_prefix('/')?;
    Some(match path.find('/') {
        Some(end) => (&path[..end], &path[end..]),
        None => (path, ""),
    })
}

fn decode_segment(segment: &str) -> Option<std::borrow::Cow<'_, str>> {
    let decoded = percent_decode_str(segment).decode_utf8().ok()?;
    (!decoded.is_empty()).then_some(decoded)
}

fn check_headers(headers: &HeaderMap, config: &IngressConfig) -> Result<(), IngressError> {
    let count = headers.len();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if count > config.max_header_count || bytes > config.max_header_bytes {
        return Err(IngressError::HeadersTooLarge { count, bytes });
    }
    Ok(())
}

/// Reads the whole body, refusing one over `limit_bytes` as early as
/// possible: at once when `Content-Length` says so, else as soon as the
/// bytes received pass the limit.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit_bytes: u64,
) -> Result<bytes::Bytes, IngressError> {
    let too_large = IngressError::PayloadTooLarge { limit_bytes };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|length| length.to_str().ok())
        .and_then(|length| length.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit_bytes) {
        return Err(too_large);
    }
    let limit = usize::try_from(limit_bytes).unwrap_or(usize::MAX);
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(too_large),
        Err(error) => Err(IngressError::BadRequest {
            message: error.to_string(),
        }),
    }
}

/// A request that resolved to a script: everything needed to answer it,
/// log it and record it.
struct ScriptCall<'a> {
    state: &'a IngressState,
    script: &'a Arc<ActiveScript>,
    request_id: &'a str,
    started: Instant,
    started_at_unix_ms: u64,
}

impl ScriptCall<'_> {
    /// Runs the script on `request` and answers, within `deadline`.
    async fn invoke(
        &self,
        request: Request,
        deadline: tokio::time::Instant,
    ) -> axum::response::Response {
        let state = self.state;
        let context = state.context_for(self.script, self.request_id);
        let invocation = tokio::time::timeout_at(
            deadline,
            state
                .executor()
                .invoke_with(&self.script.version, request, context),
        );
        match invocation.await {
            Ok(invocation) => self.finish(invocation),
            // Dropping the invocation stops the script and discards its instance.
            Err(_elapsed) => self.refuse(IngressError::Timeout {
                timeout_ms: state.config().request_timeout_ms,
            }),
        }
    }

    /// Answers a request refused before or while its script ran.
    fn refuse(&self, error: IngressError) -> axum::response::Response {
        self.log_failure(&error);
        let limits = &self.script.version.limits;
        let stats = InvocationStats {
            fuel_limit: limits.fuel,
            memory_limit_bytes: limits.memory_bytes,
            duration: self.started.elapsed(),
            ..InvocationStats::default()
        };
        self.record(&stats, &[], error.status(), Some(&error));
        error.to_response(self.request_id)
    }

    /// Turns an invocation into the caller's response.
    fn finish(&self, invocation: Invocation) -> axum::response::Response {
        let Invocation {
            result,
            output,
            stats,
        } = invocation;
        let label = &*self.script.version.label;
        for line in &output {
            tracing::info!(target: "picloud::script", script = label, stream = line.level.as_str(), "{}", line.text);
        }
        let outcome = result.map_err(IngressError::Invoke).and_then(|response| {
            to_http_response(response)
                .map_err(|message| IngressError::Invoke(InvokeError::InvalidResponse { message }))
        });
        match outcome {
            Ok(response) => {
                self.record(&stats, &output, response.status(), None);
                response
            }
            Err(error) => {
                self.log_failure(&error);
                self.record(&stats, &output, error.status(), Some(&error));
                error.to_response(self.request_id)
            }
        }
    }

    /// Logs the full error, with the script's label and the error's
    /// position, inside the request's span (so with its request id).
    fn log_failure(&self, error: &IngressError) {
        let position = match error {
            IngressError::Invoke(error) => error.position(),
            _ => None,
        };
        let line = position.map(|position| position.line);
        let column = position.map(|position| position.column);
        let label = &*self.script.version.label;
        let code = error.code();
        if error.is_host_failure() {
            tracing::warn!(script = label, code, line, column, %error, "invocation failed");
        } else if error.is_script_failure() {
            tracing::info!(script = label, code, line, column, %error, "invocation failed");
        } else {
            tracing::debug!(script = label, code, %error, "request refused");
        }
    }

    /// Logs the invocation at `debug` and queues its record.
    fn record(
        &self,
        stats: &InvocationStats,
        output_lines: &[OutputLine],
        status: StatusCode,
        error: Option<&IngressError>,
    ) {
        let script = self.script;
        let duration_us = u64::try_from(stats.duration.as_micros()).unwrap_or(u64::MAX);
        let error_code = error.map(IngressError::code);
        tracing::debug!(
            app = %script.app_slug,
            script = %script.script_name,
            version_id = script.version.version_id,
            status = status.as_u16(),
            error_code,
            duration_us,
            fuel_used = stats.fuel_used,
            memory_bytes = stats.memory_bytes,
            cold_start = stats.cold_start,
            "invocation",
        );
        self.state.records().record(Ran {
            script,
            trigger: Trigger::Http,
            request_id: self.request_id,
            started_at_unix_ms: self.started_at_unix_ms,
            stats,
            output: output_lines,
            status: status.as_u16(),
            error,
        });
    }
}

/// Headers a script may not set: they describe the connection, not the
/// response, and the server manages them.
const HOP_BY_HOP_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    // The server frames the body itself; a wrong length would corrupt the connection.
    "content-length",
];

/// Converts a script's response into an HTTP response, or says why it
/// cannot be one (for the author's logs).
fn to_http_response(response: Response) -> Result<axum::response::Response, String> {
    let status = StatusCode::from_u16(response.status)
        .ok()
        .filter(|status| !status.is_informational())
        .ok_or_else(|| {
            format!(
                "{} cannot be the status of a final response",
                response.status
            )
        })?;
    let mut headers = HeaderMap::with_capacity(response.headers.len() + 1);
    for (name, value) in &response.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("{name:?} is not a valid header name"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("the value of header {name} is not a valid header value"))?;
        if HOP_BY_HOP_HEADERS.contains(&name.as_str()) {
            continue;
        }
        headers.append(name, value);
    }
    let mut http_response = axum::response::Response::new(Body::from(response.body));
    *http_response.status_mut() = status;
    *http_response.headers_mut() = headers;
    Ok(http_response)
}

#[cfg(test)]
mod tests {
    use super::split_segment;

    #[test]
    fn segments_split_at_the_first_slash() {
        assert_eq!(
            split_segment("/shop/orders/42"),
            Some(("shop", "/orders/42"))
        );
        assert_eq!(split_segment("/orders/42"), Some(("orders", "/42")));
        assert_eq!(split_segment("/orders"), Some(("orders", "")));
        assert_eq!(split_segment("/orders/"), Some(("orders", "/")));
        assert_eq!(split_segment("orders"), None);
    }
}
