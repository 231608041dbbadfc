//! The reference line of the HTTP load benchmark: a minimal axum server that
//! answers every request with the same bytes as PiCloud's hello world.
//! Usage: `axum-hello 127.0.0.1:18081`.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;

async fn hello() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "Hello, world!",
    )
}

#[tokio::main]
async fn main() {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18081".into());
    let app = Router::new().fallback(hello);
    let listener = tokio::net::TcpListener::bind(&address).await.expect("bind");
    axum::serve(listener, app).await.expect("serve");
}
