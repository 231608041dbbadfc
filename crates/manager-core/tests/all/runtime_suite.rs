//! Store cases for the script runtime's data: key-value entries with quotas
//! and TTLs, variables, encrypted secrets and the outbound-HTTP allow-list.
//! Each runs on both backends through `run_store_suite!`.

use picloud_manager_core::{KvQuota, KvUsage, SecretKey, StoreError};
use serde_json::json;

use crate::harness::TestDatabase;

const NOW: i64 = 1_800_000_000_000;

#[track_caller]
fn assert_quota<T: std::fmt::Debug>(result: Result<T, StoreError>, expected_what: &str) {
    match result {
        Err(StoreError::QuotaExceeded { what, .. }) => assert_eq!(what, expected_what),
        other => panic!("expected the {expected_what} quota, got {other:?}"),
    }
}

pub async fn kv_values_round_trip_and_expire(database: &TestDatabase) {
    let store = &database.store;
    let app = store.create_app("kv-ttl", "KV").await.unwrap();
    let quota = KvQuota::default();
    let value = json!({ "name": "Ada", "tags": ["a", 1, 2.5, null, true] });
    store
        .kv_set(app.id, "user:1", &value, None, NOW, &quota)
        .await
        .unwrap();
    assert_eq!(
        store.kv_get(app.id, "user:1", NOW).await.unwrap(),
        Some(value)
    );
    assert_eq!(store.kv_get(app.id, "missing", NOW).await.unwrap(), None);

    store
        .kv_set(app.id, "session", &json!("s"), Some(1_000), NOW, &quota)
        .await
        .unwrap();
    assert_eq!(
        store.kv_get(app.id, "session", NOW + 999).await.unwrap(),
        Some(json!("s"))
    );
    assert_eq!(
        store.kv_get(app.id, "session", NOW + 1_000).await.unwrap(),
        None
    );
    let page = store
        .kv_list(app.id, "", None, 10, NOW + 1_000)
        .await
        .unwrap();
    assert_eq!(page.entries.len(), 1, "an expired key is not listed");
    let page = store.kv_list(app.id, "", None, 10, NOW).await.unwrap();
    assert_eq!(page.entries[0].key, "session");
    assert_eq!(page.entries[0].expires_at, Some(NOW + 1_000));

    // Setting again without a TTL makes the key permanent.
    store
        .kv_set(app.id, "session", &json!("t"), None, NOW, &quota)
        .await
        .unwrap();
    assert_eq!(
        store.kv_get(app.id, "session", NOW + 10_000).await.unwrap(),
        Some(json!("t"))
    );
    store
        .kv_set(app.id, "short", &json!(1), Some(5), NOW, &quota)
        .await
        .unwrap();
    assert_eq!(store.purge_expired_kv(NOW + 5).await.unwrap(), 1);
    assert_eq!(store.purge_expired_kv(NOW + 5).await.unwrap(), 0);

    assert!(store.kv_delete(app.id, "session").await.unwrap());
    assert!(!store.kv_delete(app.id, "session").await.unwrap());
    assert!(matches!(
        store
            .kv_set(app.id, "zero", &json!(1), Some(0), NOW, &quota)
            .await,
        Err(StoreError::Invalid { field: "ttl", .. })
    ));
    for bad_key in ["", "a\0b", "line\nbreak"] {
        assert!(matches!(
            store
                .kv_set(app.id, bad_key, &json!(1), None, NOW, &quota)
                .await,
            Err(StoreError::Invalid { field: "key", .. })
        ));
    }
    assert!(matches!(
        store
            .kv_set(
                picloud_manager_core::AppId(999_999),
                "k",
                &json!(1),
                None,
                NOW,
                &quota
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn kv_lists_by_prefix_with_paging_and_literal_wildcards(database: &TestDatabase) {
    let store = &database.store;
    let app = store.create_app("kv-list", "KV").await.unwrap();
    let quota = KvQuota::default();
    for index in 0..25 {
        store
            .kv_set(
                app.id,
                &format!("item:{index:03}"),
                &json!(index),
                None,
                NOW,
                &quota,
            )
            .await
            .unwrap();
    }
    for key in [
        "a%b",
        "a%c",
        "axb",
        "a_1",
        "a_2",
        "ab",
        "b",
        "é:1",
        "\u{10FFFF}x",
    ] {
        store
            .kv_set(app.id, key, &json!(key), None, NOW, &quota)
            .await
            .unwrap();
    }

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store
            .kv_list(app.id, "item:", after.as_deref(), 10, NOW)
            .await
            .unwrap();
        pages += 1;
        seen.extend(page.entries.iter().map(|entry| entry.key.clone()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..25).map(|index| format!("item:{index:03}")).collect();
    assert_eq!(seen, expected);

    let keys = |page: picloud_manager_core::KvPage| -> Vec<String> {
        page.entries.into_iter().map(|entry| entry.key).collect()
    };
    assert_eq!(
        keys(store.kv_list(app.id, "a%", None, 100, NOW).await.unwrap()),
        ["a%b", "a%c"],
        "`%` is a literal character"
    );
    assert_eq!(
        keys(store.kv_list(app.id, "a_", None, 100, NOW).await.unwrap()),
        ["a_1", "a_2"],
        "`_` is a literal character"
    );
    assert_eq!(
        keys(store.kv_list(app.id, "é", None, 100, NOW).await.unwrap()),
        ["é:1"]
    );
    assert_eq!(
        keys(
            store
                .kv_list(app.id, "\u{10FFFF}", None, 100, NOW)
                .await
                .unwrap()
        ),
        ["\u{10FFFF}x"]
    );
    let everything = store.kv_list(app.id, "", None, 5000, NOW).await.unwrap();
    assert_eq!(everything.entries.len(), 34, "the limit is clamped to 1000");
    assert_eq!(everything.next, None);
    let one = store.kv_list(app.id, "", None, 0, NOW).await.unwrap();
    assert_eq!(one.entries.len(), 1, "a limit of 0 is clamped to 1");
    assert_eq!(one.next.as_deref(), Some("a%b"));
    // Byte-wise order on both backends.
    let all_keys = keys(everything);
    let mut sorted = all_keys.clone();
    sorted.sort();
    assert_eq!(all_keys, sorted);
}

pub async fn kv_increments_are_atomic(database: &TestDatabase) {
    let store = &database.store;
    let app = store.create_app("kv-counter", "KV").await.unwrap();
    let quota = KvQuota::default();
    assert_eq!(
        store
            .kv_increment(app.id, "hits", 5, NOW, &quota)
            .await
            .unwrap(),
        5
    );
    assert_eq!(
        store
            .kv_increment(app.id, "hits", -7, NOW, &quota)
            .await
            .unwrap(),
        -2
    );
    store
        .kv_set(app.id, "hits", &json!(0), None, NOW, &quota)
        .await
        .unwrap();

    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                store
                    .kv_increment(app.id, "hits", 1, NOW, &KvQuota::default())
                    .await
                    .expect("increment");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(
        store.kv_get(app.id, "hits", NOW).await.unwrap(),
        Some(json!(200))
    );

    store
        .kv_set(app.id, "name", &json!("Ada"), None, NOW, &quota)
        .await
        .unwrap();
    assert!(matches!(
        store.kv_increment(app.id, "name", 1, NOW, &quota).await,
        Err(StoreError::Invalid { field: "value", .. })
    ));
    store
        .kv_set(app.id, "big", &json!(i64::MAX), None, NOW, &quota)
        .await
        .unwrap();
    assert!(matches!(
        store.kv_increment(app.id, "big", 1, NOW, &quota).await,
        Err(StoreError::Invalid { field: "value", .. })
    ));
    // An increment keeps the TTL, and an expired counter starts again at 0.
    store
        .kv_set(app.id, "window", &json!(3), Some(100), NOW, &quota)
        .await
        .unwrap();
    assert_eq!(
        store
            .kv_increment(app.id, "window", 1, NOW + 50, &quota)
            .await
            .unwrap(),
        4
    );
    assert_eq!(
        store.kv_get(app.id, "window", NOW + 100).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .kv_increment(app.id, "window", 1, NOW + 100, &quota)
            .await
            .unwrap(),
        1
    );
}

pub async fn kv_quotas_refuse_cleanly_and_keep_earlier_data(database: &TestDatabase) {
    let store = &database.store;
    let app = store.create_app("kv-quota", "KV").await.unwrap();
    let quota = KvQuota {
        max_keys: 3,
        max_value_bytes: 10,
        max_total_bytes: 30,
        max_key_bytes: 8,
    };
    // Each entry is 2 bytes of key + 3 bytes of value ("\"x\"" or "100").
    for key in ["k1", "k2", "k3"] {
        store
            .kv_set(app.id, key, &json!("x"), None, NOW, &quota)
            .await
            .unwrap();
    }
    let before = store.kv_usage(app.id).await.unwrap();
    assert_eq!(before, KvUsage { keys: 3, bytes: 15 });

    assert_quota(
        store
            .kv_set(app.id, "k4", &json!("x"), None, NOW, &quota)
            .await,
        "key count",
    );
    assert_quota(
        store.kv_increment(app.id, "k4", 1, NOW, &quota).await,
        "key count",
    );
    // Replacing an existing key does not add one.
    store
        .kv_set(app.id, "k3", &json!("y"), None, NOW, &quota)
        .await
        .unwrap();
    assert_quota(
        store
            .kv_set(app.id, "k1", &json!("eleven char"), None, NOW, &quota)
            .await,
        "value size in bytes",
    );
    assert_quota(
        store
            .kv_set(app.id, "too-long-key", &json!(1), None, NOW, &quota)
            .await,
        "key size in bytes",
    );
    // 15 bytes used; replacing k1 (5 bytes) with 2 + 10 = 12 bytes gives 22; fine.
    store
        .kv_set(app.id, "k1", &json!("12345678"), None, NOW, &quota)
        .await
        .unwrap();
    // Now 22; replacing k2 (5) with 12 gives 29; fine. Then k3 (5) with 12 gives 36: refused.
    store
        .kv_set(app.id, "k2", &json!("abcdefgh"), None, NOW, &quota)
        .await
        .unwrap();
    assert_quota(
        store
            .kv_set(app.id, "k3", &json!("ABCDEFGH"), None, NOW, &quota)
            .await,
        "total bytes of keys and values",
    );

    // Nothing of the refused writes is there.
    assert_eq!(
        store.kv_usage(app.id).await.unwrap(),
        KvUsage { keys: 3, bytes: 29 }
    );
    assert_eq!(
        store.kv_get(app.id, "k1", NOW).await.unwrap(),
        Some(json!("12345678"))
    );
    assert_eq!(
        store.kv_get(app.id, "k3", NOW).await.unwrap(),
        Some(json!("y"))
    );
    assert_eq!(store.kv_get(app.id, "k4", NOW).await.unwrap(), None);

    // Expired keys free their room.
    store.kv_delete(app.id, "k3").await.unwrap();
    store
        .kv_set(app.id, "k3", &json!("x"), Some(10), NOW, &quota)
        .await
        .unwrap();
    store
        .kv_set(app.id, "k4", &json!("x"), None, NOW + 10, &quota)
        .await
        .unwrap();
    assert_eq!(store.kv_usage(app.id).await.unwrap().keys, 3);

    // Concurrent writers cannot overshoot the key count together.
    let racing = store.create_app("kv-race", "KV").await.unwrap();
    let mut tasks = Vec::new();
    for index in 0..12 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let quota = KvQuota {
                max_keys: 5,
                ..KvQuota::default()
            };
            store
                .kv_set(
                    racing.id,
                    &format!("key{index}"),
                    &json!(index),
                    None,
                    NOW,
                    &quota,
                )
                .await
        }));
    }
    let mut stored = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => stored += 1,
            Err(StoreError::QuotaExceeded { .. }) => {}
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(stored, 5);
    assert_eq!(store.kv_usage(racing.id).await.unwrap().keys, 5);
}

pub async fn kv_apps_are_isolated(database: &TestDatabase) {
    let store = &database.store;
    let first = store.create_app("kv-first", "First").await.unwrap();
    let second = store.create_app("kv-second", "Second").await.unwrap();
    let quota = KvQuota::default();
    store
        .kv_set(first.id, "shared", &json!("first"), None, NOW, &quota)
        .await
        .unwrap();
    store
        .kv_set(second.id, "shared", &json!("second"), None, NOW, &quota)
        .await
        .unwrap();
    store
        .kv_increment(first.id, "count", 1, NOW, &quota)
        .await
        .unwrap();
    assert_eq!(
        store.kv_get(first.id, "shared", NOW).await.unwrap(),
        Some(json!("first"))
    );
    assert_eq!(
        store.kv_get(second.id, "shared", NOW).await.unwrap(),
        Some(json!("second"))
    );
    assert_eq!(store.kv_get(second.id, "count", NOW).await.unwrap(), None);
    let listed = store.kv_list(second.id, "", None, 100, NOW).await.unwrap();
    assert_eq!(listed.entries.len(), 1);
    assert!(store.kv_delete(second.id, "shared").await.unwrap());
    assert_eq!(
        store.kv_get(first.id, "shared", NOW).await.unwrap(),
        Some(json!("first"))
    );
    assert_eq!(store.kv_usage(second.id).await.unwrap().keys, 0);
    assert_eq!(store.kv_usage(first.id).await.unwrap().keys, 2);
    // Deleting an app takes its entries along.
    store.delete_app(first.id).await.unwrap();
    assert_eq!(store.kv_usage(first.id).await.unwrap().keys, 0);
}

pub async fn vars_are_set_listed_and_deleted_with_audit(database: &TestDatabase) {
    let store = &database.store;
    let app = store.create_app("vars", "Vars").await.unwrap();
    let other = store.create_app("vars-other", "Other").await.unwrap();
    let variable = store
        .set_var(app.id, "API_URL", "https://example.com", None)
        .await
        .unwrap();
    assert_eq!(variable.value, "https://example.com");
    store
        .set_var(app.id, "API_URL", "https://b.example", None)
        .await
        .unwrap();
    store.set_var(app.id, "_debug", "1", None).await.unwrap();
    let listed = store.list_vars(app.id).await.unwrap();
    let names: Vec<&str> = listed
        .iter()
        .map(|variable| variable.name.as_str())
        .collect();
    assert_eq!(names, ["API_URL", "_debug"]);
    assert_eq!(
        store.get_var(app.id, "API_URL").await.unwrap().as_deref(),
        Some("https://b.example")
    );
    assert_eq!(store.get_var(other.id, "API_URL").await.unwrap(), None);
    for bad in ["", "1x", "a-b", "a.b", &"x".repeat(65)] {
        assert!(matches!(
            store.set_var(app.id, bad, "v", None).await,
            Err(StoreError::Invalid { field: "name", .. })
        ));
    }
    assert!(matches!(
        store.set_var(app.id, "BIG", &"v".repeat(4097), None).await,
        Err(StoreError::Invalid { field: "value", .. })
    ));
    store
        .set_var(app.id, "EDGE", &"v".repeat(4096), None)
        .await
        .unwrap();
    store.delete_var(app.id, "_debug", None).await.unwrap();
    assert!(matches!(
        store.delete_var(app.id, "_debug", None).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.delete_var(other.id, "API_URL", None).await,
        Err(StoreError::NotFound { .. })
    ));
    let audit = store.list_audit(None, 10).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|entry| entry.action.as_str()).collect();
    assert_eq!(
        actions,
        ["var.delete", "var.set", "var.set", "var.set", "var.set"]
    );
    assert_eq!(audit[0].target, "app:vars/var:_debug");
}

pub async fn secrets_are_encrypted_bound_to_their_app_and_never_listed(database: &TestDatabase) {
    let store = &database.store;
    let app = store.create_app("secrets", "Secrets").await.unwrap();
    let other = store.create_app("secrets-other", "Other").await.unwrap();
    let key = SecretKey::generate();
    let plaintext = "sk_live_very-secret-value";
    let info = store
        .set_secret(app.id, "STRIPE_KEY", plaintext, &key, None)
        .await
        .unwrap();
    assert_eq!(info.name, "STRIPE_KEY");
    assert_eq!(
        store
            .get_secret(app.id, "STRIPE_KEY", &key)
            .await
            .unwrap()
            .as_deref(),
        Some(plaintext)
    );
    assert_eq!(
        store.get_secret(app.id, "MISSING", &key).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .get_secret(other.id, "STRIPE_KEY", &key)
            .await
            .unwrap(),
        None
    );

    let listed = store.list_secrets(app.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    let listed_json = serde_json::to_string(&listed).unwrap();
    assert!(!listed_json.contains(plaintext));
    assert!(listed_json.contains("STRIPE_KEY"));

    // A wrong key does not decrypt.
    assert!(matches!(
        store
            .get_secret(app.id, "STRIPE_KEY", &SecretKey::generate())
            .await,
        Err(StoreError::SecretUndecryptable { .. })
    ));

    // The value is not stored in clear, and a row copied to another app (or
    // renamed) does not decrypt there.
    let copy = format!(
        "INSERT INTO app_secrets (app_id, name, nonce, ciphertext, updated_at) \
         SELECT {other}, name, nonce, ciphertext, updated_at FROM app_secrets WHERE app_id = {app}; \
         INSERT INTO app_secrets (app_id, name, nonce, ciphertext, updated_at) \
         SELECT app_id, 'RENAMED', nonce, ciphertext, updated_at FROM app_secrets WHERE app_id = {app}",
        other = other.id,
        app = app.id
    );
    database.execute_raw(&copy).await.unwrap();
    assert!(matches!(
        store.get_secret(other.id, "STRIPE_KEY", &key).await,
        Err(StoreError::SecretUndecryptable { .. })
    ));
    assert!(matches!(
        store.get_secret(app.id, "RENAMED", &key).await,
        Err(StoreError::SecretUndecryptable { .. })
    ));

    // Replacing re-encrypts with a fresh nonce; deleting removes it.
    store
        .set_secret(app.id, "STRIPE_KEY", "second", &key, None)
        .await
        .unwrap();
    assert_eq!(
        store
            .get_secret(app.id, "STRIPE_KEY", &key)
            .await
            .unwrap()
            .as_deref(),
        Some("second")
    );
    store
        .delete_secret(app.id, "STRIPE_KEY", None)
        .await
        .unwrap();
    assert_eq!(
        store.get_secret(app.id, "STRIPE_KEY", &key).await.unwrap(),
        None
    );
    assert!(matches!(
        store.delete_secret(app.id, "STRIPE_KEY", None).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.set_secret(app.id, "bad-name", "x", &key, None).await,
        Err(StoreError::Invalid { field: "name", .. })
    ));

    // The audit log records the changes, never the values.
    let audit = store.list_audit(None, 10).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|entry| entry.action.as_str()).collect();
    assert_eq!(actions, ["secret.delete", "secret.set", "secret.set"]);
    let audit_json = serde_json::to_string(&audit).unwrap();
    assert!(!audit_json.contains(plaintext));
    assert!(!audit_json.contains("second"));
}

pub async fn http_allow_lists_are_validated_and_replaced(database: &TestDatabase) {
    let store = &database.store;
    let app = store.create_app("allow", "Allow").await.unwrap();
    let other = store.create_app("allow-other", "Other").await.unwrap();
    assert!(store.list_http_allow(app.id).await.unwrap().is_empty());
    let stored = store
        .set_http_allow(
            app.id,
            vec![
                "API.Example.com".into(),
                "*.example.org".into(),
                "127.0.0.1:8080".into(),
                "api.example.com".into(),
            ],
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        stored,
        ["*.example.org", "127.0.0.1:8080", "api.example.com"]
    );
    assert_eq!(store.list_http_allow(app.id).await.unwrap(), stored);
    assert!(store.list_http_allow(other.id).await.unwrap().is_empty());

    // A bad pattern refuses the whole list and keeps the old one.
    assert!(matches!(
        store
            .set_http_allow(app.id, vec!["ok.example.com".into(), "*.com".into()], None)
            .await,
        Err(StoreError::Invalid { field: "hosts", .. })
    ));
    assert_eq!(store.list_http_allow(app.id).await.unwrap(), stored);

    store
        .set_http_allow(app.id, Vec::new(), None)
        .await
        .unwrap();
    assert!(store.list_http_allow(app.id).await.unwrap().is_empty());
    let audit = store.list_audit(None, 1).await.unwrap();
    assert_eq!(audit[0].action, "http_allow.set");
    assert_eq!(audit[0].before.as_ref().unwrap()["hosts"], json!(stored));
    assert_eq!(audit[0].after.as_ref().unwrap()["hosts"], json!([]));
}
