//! The CLI against a real server: log in with a token, create an app,
//! deploy, list, invoke, roll back; exit codes for scripts.

use std::process::{Command, Output};

use crate::harness::{Backend, Instance};

fn picloud(config: &std::path::Path, arguments: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_picloud"))
        .args(arguments)
        .env("PICLOUD_CLI_CONFIG", config)
        .env_remove("PICLOUD_SERVER")
        .env_remove("PICLOUD_TOKEN")
        .output()
        .expect("run the picloud CLI")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_drives_a_server() {
    let instance = Instance::new(Backend::Sqlite).await;
    let server = instance.start();
    let owner = server.owner().await;
    let token = owner.token.clone().unwrap();
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("picloud").join("cli.toml");

    // Not logged in yet: exit 3.
    let output = picloud(&config, &["apps", "list"]);
    assert_exit(&output, 3);
    assert!(
        text(&output.stderr).contains("picloud login"),
        "{}",
        text(&output.stderr)
    );
    // Usage errors: exit 2.
    assert_exit(&picloud(&config, &["deploy", "no-slash", "x.rhai"]), 2);
    assert_exit(&picloud(&config, &["frobnicate"]), 2);

    let output = picloud(
        &config,
        &["login", "--server", &server.base_url, "--token", &token],
    );
    assert_exit(&output, 0);
    assert!(text(&output.stdout).contains("owner"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&config).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the CLI config holds a token");
    }

    assert_exit(
        &picloud(&config, &["apps", "create", "demo", "--name", "Demo"]),
        0,
    );
    let output = picloud(&config, &["apps", "list"]);
    assert_exit(&output, 0);
    assert!(text(&output.stdout).contains("demo"));
    // Creating it again: the server says no, exit 1.
    assert_exit(&picloud(&config, &["apps", "create", "demo"]), 1);

    let hello = home.path().join("hello.rhai");
    std::fs::write(
        &hello,
        "let name = request.query.name ?? \"world\";\n`Hello, ${name}!`\n",
    )
    .unwrap();
    let output = picloud(&config, &["deploy", "demo/hello", hello.to_str().unwrap()]);
    assert_exit(&output, 0);
    assert!(
        text(&output.stdout).contains("version 1"),
        "{}",
        text(&output.stdout)
    );

    let output = picloud(&config, &["invoke", "demo/hello?name=Pi"]);
    assert_exit(&output, 0);
    assert_eq!(text(&output.stdout), "Hello, Pi!");

    // A compile error: FILE:LINE:COLUMN: message, exit 1, nothing stored.
    let broken = home.path().join("broken.rhai");
    std::fs::write(&broken, "let ok = 1;\nlet x = ;\n").unwrap();
    let output = picloud(&config, &["deploy", "demo/hello", broken.to_str().unwrap()]);
    assert_exit(&output, 1);
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with(&format!("{}:2:", broken.display())),
        "{stderr}"
    );

    let echo = home.path().join("echo.rhai");
    std::fs::write(
        &echo,
        "`${request.method} ${request.subpath} ${request.headers[\"x-thing\"]} ${request.body}`",
    )
    .unwrap();
    assert_exit(
        &picloud(&config, &["deploy", "demo/echo", echo.to_str().unwrap()]),
        0,
    );
    let output = picloud(
        &config,
        &[
            "invoke",
            "demo/echo/sub",
            "--data",
            "payload",
            "-H",
            "x-thing: 7",
        ],
    );
    assert_exit(&output, 0);
    assert_eq!(text(&output.stdout), "POST /sub 7 payload");

    let output = picloud(
        &config,
        &["deploy", "demo/hello", echo.to_str().unwrap(), "--json"],
    );
    assert_exit(&output, 0);
    let deployed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(deployed["version"], 2);

    let output = picloud(&config, &["scripts", "list", "demo", "--json"]);
    assert_exit(&output, 0);
    let scripts: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(scripts.as_array().unwrap().len(), 2);
    let output = picloud(&config, &["versions", "demo/hello"]);
    assert_exit(&output, 0);
    assert_eq!(text(&output.stdout).lines().count(), 2);

    assert_exit(&picloud(&config, &["rollback", "demo/hello", "1"]), 0);
    let output = picloud(&config, &["invoke", "demo/hello"]);
    assert_eq!(text(&output.stdout), "Hello, world!");

    // An endpoint that fails: the body is printed, the exit code is 1.
    let output = picloud(&config, &["invoke", "demo/missing"]);
    assert_exit(&output, 1);
    assert!(text(&output.stdout).contains("not_found"));

    // A server that is gone: exit 3.
    drop(server);
    assert_exit(&picloud(&config, &["apps", "list"]), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_checks_a_local_server() {
    let instance = Instance::new(Backend::Sqlite).await;
    let server = instance.start();
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("cli.toml");
    let health = |extra: &[(&str, &str)], arguments: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_picloud"));
        command
            .arg("health")
            .args(arguments)
            .env("PICLOUD_CLI_CONFIG", &config)
            .env_remove("PICLOUD_LISTEN");
        for (name, value) in extra {
            command.env(name, value);
        }
        command.output().expect("run picloud health")
    };

    // Readiness by URL: the database answers and the schema is current.
    let output = health(&[], &["--url", &server.base_url]);
    assert_exit(&output, 0);
    assert!(
        text(&output.stdout).contains("\"ok\""),
        "{}",
        text(&output.stdout)
    );
    let output = health(&[], &["--url", &server.base_url, "--live"]);
    assert_exit(&output, 0);

    // The default URL follows PICLOUD_LISTEN, over loopback for a wildcard.
    let port = server.base_url.rsplit(':').next().unwrap();
    let wildcard = format!("0.0.0.0:{port}");
    assert_exit(&health(&[("PICLOUD_LISTEN", wildcard.as_str())], &[]), 0);

    // A server that answers something else than ready: exit 1, with its answer.
    let output = health(&[], &["--url", &format!("{}/no-such-app", server.base_url)]);
    assert_exit(&output, 1);
    assert!(
        text(&output.stderr).contains("404"),
        "{}",
        text(&output.stderr)
    );

    // Nobody listening: exit 3.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = closed.local_addr().unwrap();
    drop(closed);
    assert_exit(&health(&[], &["--url", &format!("http://{address}")]), 3);
}
