//! The reference lines of the HTTP load benchmark: a minimal axum server that
//! answers `POST /json` like PiCloud's JSON benchmark script (parse a JSON
//! body with serde_json, read a nested field, answer a small JSON object) and
//! every other request with the same bytes as PiCloud's hello world.
//! Usage: `axum-hello 127.0.0.1:18081`.

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::{Value, json};

async fn hello() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "Hello, world!",
    )
}

/// The same work as `JSON_SCRIPT` in `benches/http-load.sh`.
async fn order(body: axum::body::Bytes) -> axum::response::Response {
    let Ok(order) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let customer = &order["customer"]["address"]["city"];
    let items = order["items"].as_array().map_or(0, Vec::len);
    axum::Json(json!({ "city": customer, "items": items, "ok": true })).into_response()
}

#[tokio::main]
async fn main() {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18081".into());
    let app = Router::new().route("/json", post(order)).fallback(hello);
    let listener = tokio::net::TcpListener::bind(&address).await.expect("bind");
    axum::serve(listener, app).await.expect("serve");
}
