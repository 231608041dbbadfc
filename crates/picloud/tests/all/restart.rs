//! A restart keeps apps, scripts, versions and tokens; a crash (SIGKILL in
//! the middle of deploys) loses no acknowledged deploy and tears none.

use reqwest::Method;
use serde_json::json;

use crate::harness::{Backend, Instance};
use crate::per_backend;

async fn a_restart_keeps_everything(backend: Backend) {
    let instance = Instance::new(backend).await;
    let server = instance.start();
    let owner = server.owner().await;
    let token = owner.token.clone().unwrap();
    let (status, _) = owner
        .send(Method::POST, "/api/v1/apps", Some(json!({"slug": "keep"})))
        .await;
    assert_eq!(status, 201);
    for source in [r#""one""#, r#""two""#, r#""three""#] {
        let (status, _) = owner.deploy("keep", "hello", source).await;
        assert_eq!(status, 201);
    }
    let (status, _) = owner
        .send(
            Method::POST,
            "/api/v1/apps/keep/scripts/hello/rollback",
            Some(json!({"version": 2})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = owner
        .send(
            Method::POST,
            "/api/v1/apps/keep/domains",
            Some(json!({"host": "keep.example.com"})),
        )
        .await;
    assert_eq!(status, 201);
    assert!(server.stop().success(), "a clean stop on SIGTERM");

    let server = instance.start();
    // The old token still works, against the new address.
    let owner = server.anonymous().with_token(&token);
    // The endpoint answers at once, with the active version from before.
    let (status, _, body) = server
        .anonymous()
        .call("GET", "/keep/hello", &[], None)
        .await;
    assert_eq!((status, body.as_str()), (200, "two"));
    let (status, _, body) = server
        .anonymous()
        .call("GET", "/hello", &[("host", "keep.example.com")], None)
        .await;
    assert_eq!((status, body.as_str()), (200, "two"));
    let (status, apps) = owner.send(Method::GET, "/api/v1/apps", None).await;
    assert_eq!(status, 200);
    assert_eq!(apps[0]["slug"], "keep");
    let (_, versions) = owner
        .send(
            Method::GET,
            "/api/v1/apps/keep/scripts/hello/versions",
            None,
        )
        .await;
    let numbers: Vec<_> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|version| version["number"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers.len(), 3, "{versions}");
    for number in 1..=3 {
        assert!(numbers.contains(&number), "{versions}");
    }
    let (_, tokens) = owner.send(Method::GET, "/api/v1/tokens", None).await;
    assert!(!tokens.as_array().unwrap().is_empty());
    // The owner was created once, not again on restart.
    assert!(!server.logs().contains("created the owner account"));
    assert!(server.stop().success());
}
per_backend!(a_restart_keeps_everything);

async fn sigkill_during_deploys_loses_no_acknowledged_deploy(backend: Backend) {
    let instance = Instance::new(backend).await;
    let server = instance.start();
    let owner = server.owner().await;
    let token = owner.token.clone().unwrap();
    let (status, _) = owner
        .send(Method::POST, "/api/v1/apps", Some(json!({"slug": "crash"})))
        .await;
    assert_eq!(status, 201);

    // Four writers deploy as fast as they can; each remembers what the
    // server acknowledged.
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let owner = owner.clone();
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for round in 0.. {
                    let source = format!(
                        "\"writer {writer} round {round} {}\"",
                        "padding ".repeat(500)
                    );
                    let request = owner
                        .http
                        .put(format!(
                            "{}/api/v1/apps/crash/scripts/s{}",
                            owner.base_url,
                            writer % 2
                        ))
                        .bearer_auth(owner.token.as_ref().unwrap())
                        .header("content-type", "text/plain")
                        .body(source.clone())
                        .send()
                        .await;
                    let Ok(response) = request else { break };
                    if response.status() != 201 {
                        break;
                    }
                    let Ok(body) = response.json::<serde_json::Value>().await else {
                        break;
                    };
                    acknowledged.push((
                        format!("s{}", writer % 2),
                        body["version"].as_i64().unwrap(),
                        source,
                    ));
                }
                acknowledged
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    server.kill();
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }
    assert!(
        acknowledged.len() >= 4,
        "too few deploys before the kill: {}",
        acknowledged.len()
    );

    let server = instance.start();
    let owner = server.anonymous().with_token(&token);
    for (script, number, source) in &acknowledged {
        let (status, version) = owner
            .send(
                Method::GET,
                &format!("/api/v1/apps/crash/scripts/{script}/versions/{number}"),
                None,
            )
            .await;
        assert_eq!(
            status, 200,
            "acknowledged {script} v{number} is missing: {version}"
        );
        assert_eq!(
            version["source"].as_str(),
            Some(source.as_str()),
            "{script} v{number} is torn"
        );
    }
    for script in ["s0", "s1"] {
        let (status, versions) = owner
            .send(
                Method::GET,
                &format!("/api/v1/apps/crash/scripts/{script}/versions"),
                None,
            )
            .await;
        assert_eq!(status, 200);
        let versions = versions.as_array().unwrap();
        // Numbers have no gaps, and exactly one version is active.
        let mut numbers: Vec<i64> = versions
            .iter()
            .map(|version| version["number"].as_i64().unwrap())
            .collect();
        numbers.sort();
        assert_eq!(numbers, (1..=numbers.len() as i64).collect::<Vec<_>>());
        let active: Vec<_> = versions
            .iter()
            .filter(|version| version["active"] == true)
            .collect();
        assert_eq!(active.len(), 1);
        // Every stored version is whole: its source hashes to its hash.
        let number = active[0]["number"].as_i64().unwrap();
        let (_, version) = owner
            .send(
                Method::GET,
                &format!("/api/v1/apps/crash/scripts/{script}/versions/{number}"),
                None,
            )
            .await;
        let (status, _, body) = server
            .anonymous()
            .call("GET", &format!("/crash/{script}"), &[], None)
            .await;
        assert_eq!(status, 200);
        let source = version["source"].as_str().unwrap();
        assert_eq!(
            format!("\"{body}\""),
            source,
            "the endpoint serves the active version"
        );
    }
    assert!(server.stop().success());
}
per_backend!(sigkill_during_deploys_loses_no_acknowledged_deploy);
