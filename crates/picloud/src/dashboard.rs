//! Serves the web dashboard: the static single-page app built from
//! `dashboard/` (SvelteKit, `paths.base = "/dashboard"`), at `/dashboard/`.

use std::path::Path;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use tower_http::services::{ServeDir, ServeFile};

/// Routes for `/`, `/dashboard` and everything below it. Unknown paths below
/// `/dashboard/` get `index.html`, so the app's own router handles them.
/// Without a built dashboard, `/dashboard/` explains how to build one.
pub fn router(directory: Option<&Path>) -> Router {
    let root = Router::new().route("/", get(|| async { Redirect::temporary("/dashboard/") }));
    match directory {
        Some(directory) => {
            tracing::info!(dashboard_dir = %directory.display(), "serving the dashboard at /dashboard/");
            let index = directory.join("index.html");
            let files = ServeDir::new(directory).fallback(ServeFile::new(index));
            root.route(
                "/dashboard",
                get(|| async { Redirect::permanent("/dashboard/") }),
            )
            .nest_service("/dashboard/", files)
            .layer(axum::middleware::map_response(cache_headers))
        }
        None => {
            tracing::warn!(
                "no built dashboard found (build it with `npm --prefix dashboard ci && npm --prefix dashboard run build`, \
                 or set --dashboard-dir); /dashboard/ will say so"
            );
            root.route("/dashboard", get(missing))
                .route("/dashboard/", get(missing))
                .route("/dashboard/{*path}", get(missing))
        }
    }
}

/// Build outputs under `_app/immutable/` have content hashes in their names
/// and may be cached for good; everything else (the app shell, which names
/// them) must be revalidated so a new build is picked up at once.
async fn cache_headers(
    uri: axum::http::Uri,
    mut response: axum::response::Response,
) -> axum::response::Response {
    if !uri.path().starts_with("/dashboard") {
        return response;
    }
    let value = if uri.path().starts_with("/dashboard/_app/immutable/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static(value),
    );
    response
}

async fn missing() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "The dashboard has not been built. Build it with\n\n    npm --prefix dashboard ci && npm --prefix dashboard run build\n\nand restart PiCloud (or pass --dashboard-dir).\n",
    )
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    async fn get(router: &axum::Router, path: &str) -> (StatusCode, String, String) {
        let response = router
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let location = response
            .headers()
            .get("location")
            .map(|value| value.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            location,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    #[tokio::test]
    async fn serves_files_and_falls_back_to_the_app_shell() {
        let directory = tempfile::tempdir().unwrap();
        std::fs::write(directory.path().join("index.html"), "<html>shell</html>").unwrap();
        std::fs::create_dir_all(directory.path().join("_app")).unwrap();
        std::fs::write(directory.path().join("_app/start.js"), "console.log(1)").unwrap();
        let router = super::router(Some(directory.path()));

        assert_eq!(
            get(&router, "/dashboard/_app/start.js").await.2,
            "console.log(1)"
        );
        assert_eq!(get(&router, "/dashboard/").await.2, "<html>shell</html>");
        assert_eq!(
            get(&router, "/dashboard/apps/demo/scripts").await.2,
            "<html>shell</html>"
        );
        let (status, location, _) = get(&router, "/").await;
        assert!(status.is_redirection());
        assert_eq!(location, "/dashboard/");
    }

    #[tokio::test]
    async fn explains_a_missing_build() {
        let router = super::router(None);
        let (status, _, body) = get(&router, "/dashboard/").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("npm --prefix dashboard"), "{body:?}");
    }
}
