//! The runtime-data routes end to end: variables, write-only secrets, the
//! outbound-HTTP allow-list and the key-value debugging view, and the
//! secrets key file the server generates on first start.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Backend, Instance, assert_error};
use crate::per_backend;

const SECRET_VALUE: &str = "s3cr3t-value-that-must-never-come-back";

async fn vars_secrets_and_allow_list(backend: Backend) {
    let instance = Instance::new(backend).await;
    let server = instance.start();
    let owner = server.owner().await;
    let (status, body) = owner
        .send(Method::POST, "/api/v1/apps", Some(json!({"slug": "shop"})))
        .await;
    assert_eq!(status, 201, "{body}");
    let mut answers: Vec<Value> = Vec::new();

    // Variables.
    let (status, body) = owner
        .send(
            Method::PUT,
            "/api/v1/apps/shop/vars/API_URL",
            Some(json!({"value": "https://api.example.com"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], "API_URL");
    assert_eq!(body["value"], "https://api.example.com");
    owner
        .send(
            Method::PUT,
            "/api/v1/apps/shop/vars/MODE",
            Some(json!({"value": "test"})),
        )
        .await;
    let (status, listed) = owner
        .send(Method::GET, "/api/v1/apps/shop/vars", None)
        .await;
    assert_eq!(status, 200);
    let names: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["API_URL", "MODE"]);
    assert!(listed["items"][0]["updated_at"].is_string());
    let (status, _) = owner
        .send(Method::DELETE, "/api/v1/apps/shop/vars/MODE", None)
        .await;
    assert_eq!(status, 204);
    let (status, body) = owner
        .send(Method::DELETE, "/api/v1/apps/shop/vars/MODE", None)
        .await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = owner
        .send(
            Method::PUT,
            "/api/v1/apps/shop/vars/bad-name",
            Some(json!({"value": "x"})),
        )
        .await;
    assert_error(status, &body, 422, "invalid_input");
    assert_eq!(body["error"]["field"], "name");
    let (status, body) = owner
        .send(
            Method::PUT,
            "/api/v1/apps/shop/vars/BIG",
            Some(json!({"value": "x".repeat(4097)})),
        )
        .await;
    assert_error(status, &body, 422, "invalid_input");
    let (status, body) = owner
        .send(
            Method::PUT,
            "/api/v1/apps/shop/vars/X",
            Some(json!({"val": "x"})),
        )
        .await;
    assert_error(status, &body, 422, "invalid_input");

    // Secrets: set, replace, list, delete; no answer ever holds the value.
    let (status, body) = owner
        .send(
            Method::PUT,
            "/api/v1/apps/shop/secrets/STRIPE_KEY",
            Some(json!({"value": SECRET_VALUE})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], "STRIPE_KEY");
    assert!(body["updated_at"].is_string());
    answers.push(body);
    let (status, body) = owner
        .send(
            Method::PUT,
            "/api/v1/apps/shop/secrets/OTHER",
            Some(json!({"value": format!("{SECRET_VALUE}-2")})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    answers.push(body);
    let (status, listed) = owner
        .send(Method::GET, "/api/v1/apps/shop/secrets", None)
        .await;
    assert_eq!(status, 200);
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    for item in items {
        let mut fields: Vec<&str> = item
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        assert_eq!(fields, ["name", "updated_at"], "{item}");
    }
    answers.push(listed);
    for path in [
        "/api/v1/apps/shop",
        "/api/v1/apps/shop/vars",
        "/api/v1/apps/shop/kv",
        "/api/v1/admin/audit",
    ] {
        let (status, body) = owner.send(Method::GET, path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        answers.push(body);
    }
    let (status, body) = owner
        .send(Method::DELETE, "/api/v1/apps/shop/secrets/OTHER", None)
        .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = owner
        .send(Method::DELETE, "/api/v1/apps/shop/secrets/OTHER", None)
        .await;
    assert_error(status, &body, 404, "not_found");
    answers.push(body);
    for answer in &answers {
        assert!(
            !answer.to_string().contains(SECRET_VALUE),
            "an answer holds the secret: {answer}"
        );
    }
    let (_, audit) = owner.send(Method::GET, "/api/v1/admin/audit", None).await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .or_else(|| audit.as_array())
        .map(|entries| {
            entries
                .iter()
                .filter_map(|entry| entry["action"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert!(actions.contains(&"secret.set"), "{audit}");
    assert!(actions.contains(&"var.set"), "{audit}");

    // The allow-list: normalised, validated with a stable code.
    let (status, body) = owner
        .send(Method::GET, "/api/v1/apps/shop/http-allowlist", None)
        .await;
    assert_eq!((status, body), (200, json!({"hosts": []})));
    let (status, body) = owner
        .send(
            Method::PUT,
            "/api/v1/apps/shop/http-allowlist",
            Some(json!({"hosts": ["API.Example.com", "*.example.org", "127.0.0.1:8080"]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"hosts": ["*.example.org", "127.0.0.1:8080", "api.example.com"]})
    );
    for bad in ["*.com", "http://x.example", "x.example:0", "a b", "*"] {
        let (status, body) = owner
            .send(
                Method::PUT,
                "/api/v1/apps/shop/http-allowlist",
                Some(json!({"hosts": ["ok.example", bad]})),
            )
            .await;
        assert_error(status, &body, 422, "invalid_input");
        assert_eq!(body["error"]["field"], "hosts", "{bad}: {body}");
    }
    let (_, body) = owner
        .send(Method::GET, "/api/v1/apps/shop/http-allowlist", None)
        .await;
    assert_eq!(
        body["hosts"].as_array().unwrap().len(),
        3,
        "unchanged: {body}"
    );

    // The key-value view of an app with no entries, and its errors.
    let (status, body) = owner
        .send(
            Method::GET,
            "/api/v1/apps/shop/kv?prefix=a%25&limit=10",
            None,
        )
        .await;
    assert_eq!((status, body), (200, json!({"items": [], "next": null})));
    let (status, body) = owner
        .send(Method::GET, "/api/v1/apps/shop/kv?limit=0", None)
        .await;
    assert_error(status, &body, 422, "invalid_input");
    let (status, body) = owner
        .send(Method::GET, "/api/v1/apps/shop/kv?limit=abc", None)
        .await;
    assert_error(status, &body, 422, "invalid_input");
    let (status, body) = owner
        .send(Method::DELETE, "/api/v1/apps/shop/kv/users/42", None)
        .await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = owner
        .send(Method::GET, "/api/v1/apps/shop/kv-usage", None)
        .await;
    assert_eq!((status, body), (200, json!({"keys": 0, "bytes": 0})));
    let (status, body) = owner
        .send(Method::GET, "/api/v1/apps/nope/vars", None)
        .await;
    assert_error(status, &body, 404, "not_found");

    // The server generated its secrets key, readable by its owner only, and
    // never logged the secret.
    let key_file = instance.data_dir.path().join("secrets.key");
    let key_text = std::fs::read_to_string(&key_file).expect("the generated secrets key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let logs = server.logs();
    assert!(logs.contains("generated a new secrets key"), "{logs}");
    assert!(!logs.contains(SECRET_VALUE));
    assert!(!logs.contains(key_text.trim()));

    // After a restart the same key is read back, not replaced.
    drop(server);
    let server = instance.start();
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), key_text);
    assert!(server.logs().contains("secrets key read from its file"));
}
per_backend!(vars_secrets_and_allow_list);

async fn a_bad_secrets_key_stops_the_server(backend: Backend) {
    let instance = Instance::with_config(backend, "[secrets]\nkey = \"too-short\"\n").await;
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_picloud"));
    command
        .arg("serve")
        .arg("--config")
        .arg(instance.data_dir.path().join("picloud.toml"))
        .args(["--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(instance.data_dir.path())
        .arg("--database-url")
        .arg(&instance.database_url)
        .arg("--cache-dir")
        .arg(crate::harness::guest_cache_dir())
        .env("PICLOUD_OWNER_PASSWORD", "a password long enough")
        .env_remove("PICLOUD_SECRETS_KEY");
    std::fs::write(
        instance.data_dir.path().join("picloud.toml"),
        &instance.extra_config,
    )
    .unwrap();
    let output = command.output().expect("run the server");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("[secrets] key"), "{stderr}");
    assert!(!stderr.contains("too-short"), "{stderr}");
}
per_backend!(a_bad_secrets_key_stops_the_server);

/// Runs the CLI with `stdin` as its standard input.
fn picloud_cli(config: &std::path::Path, arguments: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_picloud"))
        .args(arguments)
        .env("PICLOUD_CLI_CONFIG", config)
        .env_remove("PICLOUD_SERVER")
        .env_remove("PICLOUD_TOKEN")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the picloud CLI");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().expect("wait for the CLI")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_manages_vars_and_secrets() {
    let instance = Instance::new(Backend::Sqlite).await;
    let server = instance.start();
    let owner = server.owner().await;
    let token = owner.token.clone().unwrap();
    owner
        .send(Method::POST, "/api/v1/apps", Some(json!({"slug": "shop"})))
        .await;
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("cli.toml");
    let run = |arguments: &[&str], stdin: &str| {
        let output = picloud_cli(&config, arguments, stdin);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.code(), stdout, stderr)
    };
    let (code, _, stderr) = run(
        &["login", "--server", &server.base_url, "--token", &token],
        "",
    );
    assert_eq!(code, Some(0), "{stderr}");

    assert_eq!(
        run(&["vars", "set", "shop", "API_URL", "https://a.example"], "").0,
        Some(0)
    );
    assert_eq!(run(&["vars", "set", "shop", "MODE=test"], "").0, Some(0));
    let (code, stdout, _) = run(&["vars", "list", "shop"], "");
    assert_eq!(code, Some(0));
    assert_eq!(stdout, "API_URL=https://a.example\nMODE=test\n");
    assert_eq!(run(&["vars", "unset", "shop", "MODE"], "").0, Some(0));
    let (code, _, stderr) = run(&["vars", "unset", "shop", "MODE"], "");
    assert_eq!(code, Some(1), "a missing variable: {stderr}");
    assert_eq!(run(&["vars", "set", "shop", "NO_VALUE"], "").0, Some(2));

    // The secret comes from standard input, without its trailing newline.
    let (code, _, stderr) = run(
        &["secrets", "set", "shop", "TOKEN"],
        &format!("{SECRET_VALUE}\n"),
    );
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stdout, _) = run(&["secrets", "list", "shop"], "");
    assert_eq!(code, Some(0));
    assert!(stdout.starts_with("TOKEN\tset "), "{stdout}");
    assert!(!stdout.contains(SECRET_VALUE));
    let (code, stdout, _) = run(&["secrets", "list", "shop", "--json"], "");
    assert_eq!(code, Some(0));
    assert!(!stdout.contains(SECRET_VALUE));
    // No argument carries a value, and an empty one is refused.
    assert_eq!(
        run(&["secrets", "set", "shop", "TOKEN", "value"], "").0,
        Some(2)
    );
    assert_eq!(run(&["secrets", "set", "shop", "EMPTY"], "").0, Some(2));
    assert_eq!(run(&["secrets", "unset", "shop", "TOKEN"], "").0, Some(0));
    let (_, stdout, _) = run(&["secrets", "list", "shop"], "");
    assert_eq!(stdout, "");
    assert!(!server.logs().contains(SECRET_VALUE));
}
