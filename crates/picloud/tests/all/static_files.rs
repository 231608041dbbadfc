//! Static files: upload through the API, serve at `/{app}/_static/{path}`
//! with types, ETags and ranges, and no name that leads out of the app.

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Backend, Client, Instance, Server};
use crate::per_backend;

const CSS: &str = "body { color: #333; }\n";

async fn put_file(client: &Client, app: &str, path: &str, bytes: Vec<u8>) -> (u16, Value) {
    let response = client
        .http
        .put(format!(
            "{}/api/v1/apps/{app}/files/{path}",
            client.base_url
        ))
        .bearer_auth(client.token.as_deref().unwrap())
        .header("content-type", "application/x-ignored")
        .body(bytes)
        .send()
        .await
        .expect("upload");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Sends `request_target` byte for byte (no client-side normalisation of
/// `..` or percent-escapes) and returns the status and the body.
async fn raw_get(server: &Server, request_target: &str, host: &str) -> (u16, String) {
    let address = server.base_url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request =
        format!("GET {request_target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

async fn static_files(backend: Backend) {
    let instance = Instance::with_config(
        backend,
        "[files]\nmax_file_bytes = 1500000\nmax_files = 5\n",
    )
    .await;
    let server = instance.start();
    let owner = server.owner().await;
    for slug in ["site", "other"] {
        let (status, body) = owner
            .send(Method::POST, "/api/v1/apps", Some(json!({"slug": slug})))
            .await;
        assert_eq!(status, 201, "{body}");
    }

    // Upload: 201 when new, 200 when replaced; the content type sent is ignored.
    let (status, body) = put_file(&owner, "site", "css/site.css", b"old".to_vec()).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = put_file(&owner, "site", "css/site.css", CSS.as_bytes().to_vec()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["size"], CSS.len());
    let etag = body["etag"].as_str().unwrap().to_owned();
    // Larger than the API's 1 MiB body limit but within the file quota.
    let large = vec![b'x'; 1_200_000];
    let (status, body) = put_file(&owner, "site", "large.bin", large.clone()).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = put_file(&owner, "site", "huge.bin", vec![b'x'; 1_600_000]).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "file_too_large");

    let (status, list) = owner
        .send(Method::GET, "/api/v1/apps/site/files", None)
        .await;
    assert_eq!(status, 200, "{list}");
    let paths: Vec<&str> = list["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|file| file["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["css/site.css", "large.bin"]);
    assert_eq!(list["files"][0]["etag"], etag.as_str());
    assert_eq!(list["usage"]["files"], 2);
    assert_eq!(list["quota"]["max_files"], 5);

    // Serving, with type, validators and ranges.
    let anonymous = server.anonymous();
    let (status, headers, body) = anonymous
        .call("GET", "/site/_static/css/site.css", &[], None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body, CSS);
    assert_eq!(headers["content-type"], "text/css; charset=utf-8");
    assert_eq!(headers["etag"], etag.as_str());
    assert_eq!(headers["accept-ranges"], "bytes");
    assert!(headers.contains_key("last-modified"));
    let (status, headers, body) = anonymous
        .call(
            "GET",
            "/site/_static/css/site.css",
            &[("if-none-match", &etag)],
            None,
        )
        .await;
    assert_eq!(status, 304);
    assert!(body.is_empty());
    assert_eq!(headers["etag"], etag.as_str());
    let (status, headers, body) = anonymous
        .call(
            "GET",
            "/site/_static/css/site.css",
            &[("range", "bytes=0-3")],
            None,
        )
        .await;
    assert_eq!(status, 206);
    assert_eq!(body, "body");
    assert_eq!(
        headers["content-range"],
        format!("bytes 0-3/{}", CSS.len()).as_str()
    );
    let (status, headers, body) = anonymous
        .call(
            "GET",
            "/site/_static/large.bin",
            &[("range", "bytes=-10")],
            None,
        )
        .await;
    assert_eq!(status, 206);
    assert_eq!(body, "x".repeat(10));
    assert_eq!(headers["content-range"], "bytes 1199990-1199999/1200000");
    let (status, headers, body) = anonymous
        .call(
            "GET",
            "/site/_static/css/site.css",
            &[("range", "bytes=5000-")],
            None,
        )
        .await;
    assert_eq!(status, 416, "{body}");
    assert_eq!(
        headers["content-range"],
        format!("bytes */{}", CSS.len()).as_str()
    );
    let (status, headers, body) = anonymous
        .call("HEAD", "/site/_static/large.bin", &[], None)
        .await;
    assert_eq!(status, 200);
    assert!(body.is_empty());
    assert_eq!(headers["content-length"], "1200000");
    assert_eq!(headers["content-type"], "application/octet-stream");

    // Missing files, other apps, unknown apps.
    for path in [
        "/site/_static/missing.css",
        "/other/_static/css/site.css",
        "/nope/_static/css/site.css",
        "/Not_A_Slug/_static/css/site.css",
        "/healthz/_static/css/site.css",
    ] {
        let (status, _, body) = anonymous.call("GET", path, &[], None).await;
        assert_eq!(status, 404, "{path}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }

    // "No such app" is remembered for a short while only: an app created
    // right after a miss serves its files once that has expired.
    let (status, _, _) = anonymous
        .call("GET", "/later/_static/page.html", &[], None)
        .await;
    assert_eq!(status, 404);
    let (status, body) = owner
        .send(Method::POST, "/api/v1/apps", Some(json!({"slug": "later"})))
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = put_file(&owner, "later", "page.html", b"<p>hi</p>".to_vec()).await;
    assert_eq!(status, 201, "{body}");
    let created = std::time::Instant::now();
    loop {
        let (status, _, body) = anonymous
            .call("GET", "/later/_static/page.html", &[], None)
            .await;
        if status == 200 {
            assert_eq!(body, "<p>hi</p>");
            break;
        }
        assert_eq!(status, 404, "{body}");
        assert!(
            created.elapsed() < std::time::Duration::from_secs(10),
            "a new app's file still answers 404 long after the lookup expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Escapes: never a file's contents, whatever the encoding.
    std::fs::write(instance.data_dir.path().join("secret.txt"), "top secret").unwrap();
    for target in [
        "/site/_static/../../etc/passwd",
        "/site/_static/..%2f..%2fetc/passwd",
        "/site/_static/%2e%2e/%2e%2e/etc/passwd",
        "/site/_static/%2e%2e%2f%2e%2e%2fsecret.txt",
        "/site/_static/..%2f..%2fsecret.txt",
        "/site/_static/%252e%252e/secret.txt",
        "/site/_static/css/..%2f..%2f..%2fsecret.txt",
        "/site/_static/%2fetc%2fpasswd",
        "/site/_static//etc/passwd",
        "/site/_static/css%5c..%5c..%5csecret.txt",
        "/site/_static/a%00b",
        "/other/_static/..%2f1%2fcss%2fsite.css",
        "/other/_static/..%2f..%2ffiles%2f1%2fcss%2fsite.css",
    ] {
        let (status, body) = raw_get(&server, target, "127.0.0.1").await;
        assert!(status == 400 || status == 404, "{target}: {status} {body}");
        assert!(!body.contains("root:"), "{target}: {body}");
        assert!(!body.contains("top secret"), "{target}: {body}");
        assert!(!body.contains("color"), "{target}: {body}");
    }
    let (status, body) = raw_get(&server, "/site/_static/..%2f..%2fsecret.txt", "127.0.0.1").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid_path"), "{body}");

    // Symlinks planted in the app's folder lead nowhere.
    #[cfg(unix)]
    {
        let files_root = instance.data_dir.path().join("files");
        let app_folder = std::fs::read_dir(&files_root)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .find(|folder| folder.join("large.bin").exists())
            .expect("the app's folder");
        std::os::unix::fs::symlink("/etc/passwd", app_folder.join("passwd")).unwrap();
        std::os::unix::fs::symlink("/etc", app_folder.join("etc")).unwrap();
        std::os::unix::fs::symlink("../../secret.txt", app_folder.join("secret.txt")).unwrap();
        std::os::unix::fs::symlink("..", app_folder.join("up")).unwrap();
        let app_id = app_folder.file_name().unwrap().to_str().unwrap().to_owned();
        for target in [
            "/site/_static/passwd".to_owned(),
            "/site/_static/etc/passwd".to_owned(),
            "/site/_static/secret.txt".to_owned(),
            format!("/site/_static/up/{app_id}/css/site.css"),
        ] {
            let (status, body) = raw_get(&server, &target, "127.0.0.1").await;
            assert_eq!(status, 404, "{target}: {body}");
            assert!(
                !body.contains("root:") && !body.contains("top secret"),
                "{body}"
            );
        }
    }

    // Uploads with escaping names are refused too.
    for target in [
        "..%2f..%2fsecret.txt",
        "%2e%2e%2fsecret.txt",
        "css%2f..%2f..%2fescaped.txt",
        "a%5cb",
    ] {
        let (status, body) = put_file(&owner, "site", target, b"x".to_vec()).await;
        assert_eq!(status, 422, "{target}: {body}");
        assert_eq!(body["error"]["code"], "invalid_path", "{target}");
    }
    assert_eq!(
        std::fs::read_to_string(instance.data_dir.path().join("secret.txt")).unwrap(),
        "top secret"
    );

    // Domain routing: `/_static/...` on an app's host.
    let (status, body) = owner
        .send(
            Method::POST,
            "/api/v1/apps/site/domains",
            Some(json!({"host": "static.example"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = raw_get(&server, "/_static/css/site.css", "static.example").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, CSS);
    let (status, _) = raw_get(&server, "/_static/css/site.css", "unknown.example").await;
    assert_eq!(status, 404);

    // No script can take the name of the static route.
    let (status, body) = owner.deploy("site", "_static", "\"shadow\"").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_input", "{body}");

    // Scripts still run beside the static route.
    let (status, body) = owner.deploy("site", "hello", "\"hi\"").await;
    assert_eq!(status, 201, "{body}");
    let (status, _, body) = anonymous.call("GET", "/site/hello", &[], None).await;
    assert_eq!((status, body.as_str()), (200, "hi"));
    // On the app's domain `/hello/_static/...` is the script's sub-path, for
    // every method, and `:port` in the Host header changes nothing.
    let (status, body) = owner
        .deploy("site", "echo", "`${request.method} ${request.subpath}`")
        .await;
    assert_eq!(status, 201, "{body}");
    for method in ["GET", "POST"] {
        let (status, _, body) = anonymous
            .call(
                method,
                "/echo/_static/x",
                &[("host", "static.example:8080")],
                None,
            )
            .await;
        assert_eq!(
            (status, body.as_str()),
            (200, format!("{method} /_static/x").as_str())
        );
    }
    let (status, body) = raw_get(&server, "/_static/css/site.css", "static.example:8080").await;
    assert_eq!((status, body.as_str()), (200, CSS));
    // Elsewhere the static route answers GET and HEAD only.
    let (status, _, body) = anonymous
        .call("POST", "/site/_static/css/site.css", &[], None)
        .await;
    assert_eq!(status, 405, "{body}");
    let (status, _, body) = anonymous
        .call("GET", "/site/_static/css/site.css", &[], None)
        .await;
    assert_eq!((status, body.as_str()), (200, CSS));

    // Delete.
    let (status, body) = owner
        .send(Method::DELETE, "/api/v1/apps/site/files/css/site.css", None)
        .await;
    assert_eq!(status, 204, "{body}");
    let (status, _, _) = anonymous
        .call("GET", "/site/_static/css/site.css", &[], None)
        .await;
    assert_eq!(status, 404);
    let (status, body) = owner
        .send(Method::DELETE, "/api/v1/apps/site/files/css/site.css", None)
        .await;
    assert_eq!(status, 404, "{body}");
}
per_backend!(static_files);

fn picloud(config: &std::path::Path, arguments: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_picloud"))
        .args(arguments)
        .env("PICLOUD_CLI_CONFIG", config)
        .env_remove("PICLOUD_SERVER")
        .env_remove("PICLOUD_TOKEN")
        .output()
        .expect("run the picloud CLI")
}

#[track_caller]
fn assert_exit(output: &std::process::Output, code: i32) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_manages_static_files() {
    let instance = Instance::new(Backend::Sqlite).await;
    let server = instance.start();
    let owner = server.owner().await;
    let token = owner.token.clone().unwrap();
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("cli.toml");
    assert_exit(
        &picloud(
            &config,
            &["login", "--server", &server.base_url, "--token", &token],
        ),
        0,
    );
    assert_exit(&picloud(&config, &["apps", "create", "docs"]), 0);
    let local = home.path().join("index.html");
    std::fs::write(&local, "<h1>docs</h1>").unwrap();
    let local = local.to_str().unwrap();

    let stdout = assert_exit(&picloud(&config, &["files", "put", "docs", local]), 0);
    assert!(stdout.contains("/docs/_static/index.html"), "{stdout}");
    assert_exit(
        &picloud(
            &config,
            &["files", "put", "docs", local, "guide/start.html"],
        ),
        0,
    );
    let stdout = assert_exit(&picloud(&config, &["files", "ls", "docs"]), 0);
    assert!(stdout.contains("guide/start.html"), "{stdout}");
    assert!(stdout.contains("index.html"), "{stdout}");
    let stdout = assert_exit(&picloud(&config, &["files", "ls", "docs", "--json"]), 0);
    let listed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(listed["usage"]["files"], 2);

    let (status, headers, body) = server
        .anonymous()
        .call("GET", "/docs/_static/guide/start.html", &[], None)
        .await;
    assert_eq!((status, body.as_str()), (200, "<h1>docs</h1>"));
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");

    // Names the server would refuse never leave the machine: usage error.
    assert_exit(
        &picloud(&config, &["files", "put", "docs", local, "../x.html"]),
        2,
    );
    assert_exit(
        &picloud(&config, &["files", "rm", "docs", "/etc/passwd"]),
        2,
    );
    // The server's refusals: exit 1.
    assert_exit(
        &picloud(&config, &["files", "rm", "docs", "missing.html"]),
        1,
    );
    assert_exit(&picloud(&config, &["files", "put", "nope", local]), 1);

    assert_exit(
        &picloud(&config, &["files", "rm", "docs", "guide/start.html"]),
        0,
    );
    let stdout = assert_exit(&picloud(&config, &["files", "ls", "docs"]), 0);
    assert!(!stdout.contains("guide/start.html"), "{stdout}");
}
