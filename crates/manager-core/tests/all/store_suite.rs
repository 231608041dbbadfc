//! The store conformance suite: each case is called once per backend by the
//! `run_store_suite!` macro in `main.rs`, so both backends must behave alike.

use std::collections::BTreeSet;
use std::time::Duration;

use picloud_manager_core::{
    AppRole, AppUpdate, Backend, InstanceRole, NewAuditEntry, NewSession, NewUser, RouteChange,
    StoreError, Timestamp, User, UserId, UserUpdate, auth,
};
use serde_json::json;

use crate::harness::TestDatabase;

/// A syntactically valid PHC string; the store never checks passwords, so the
/// suite does not pay for real argon2 hashing.
const PASSWORD_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";

async fn create_user(database: &TestDatabase, username: &str, role: InstanceRole) -> User {
    database
        .store
        .create_user(&NewUser {
            username: username.to_owned(),
            email: format!("{username}@example.com"),
            password_hash: PASSWORD_HASH.to_owned(),
            instance_role: role,
        })
        .await
        .expect("create user")
}

fn sha256_hex(text: &str) -> String {
    auth::hash_token(text)
}

#[track_caller]
fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    assert!(
        matches!(result, Err(StoreError::Conflict { .. })),
        "expected a conflict, got {result:?}"
    );
}

#[track_caller]
fn assert_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    assert!(
        matches!(result, Err(StoreError::NotFound { .. })),
        "expected not found, got {result:?}"
    );
}

#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(result: Result<T, StoreError>, expected_field: &str) {
    match result {
        Err(StoreError::Invalid { field, .. }) => assert_eq!(field, expected_field),
        other => panic!("expected invalid {expected_field}, got {other:?}"),
    }
}

pub async fn migrations_are_idempotent_and_data_survives_a_reconnect(database: &TestDatabase) {
    let store = &database.store;
    assert_eq!(store.pending_migrations().await.unwrap(), 0);
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    assert_eq!(store.pending_migrations().await.unwrap(), 0);
    assert!(store.binary_schema_version() >= 1);

    store.create_app("kept", "Kept").await.unwrap();
    let second_store = database.reconnect().await;
    second_store.migrate().await.unwrap();
    assert_eq!(second_store.app_by_slug("kept").await.unwrap().name, "Kept");
    second_store.close().await;
}

pub async fn a_database_newer_than_the_binary_is_refused(database: &TestDatabase) {
    let store = &database.store;
    let future_version = 99_991_231_000_000_i64;
    let checksum = match store.backend() {
        Backend::Sqlite => "X'00'",
        Backend::Postgres => "decode('00', 'hex')",
    };
    database
        .execute_raw(&format!(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES ({future_version}, 'from the future', TRUE, {checksum}, 0)"
        ))
        .await
        .unwrap();

    let fresh_store = database.reconnect().await;
    for result in [store.migrate().await, fresh_store.migrate().await] {
        match result {
            Err(
                error @ StoreError::DatabaseNewerThanBinary {
                    database_version,
                    binary_version,
                },
            ) => {
                assert_eq!(database_version, future_version);
                assert_eq!(binary_version, store.binary_schema_version());
                assert!(error.to_string().contains("upgrade this binary"), "{error}");
            }
            other => panic!("expected DatabaseNewerThanBinary, got {other:?}"),
        }
    }
    assert!(matches!(
        store.pending_migrations().await,
        Err(StoreError::DatabaseNewerThanBinary { .. })
    ));
    fresh_store.close().await;
}

pub async fn users_are_created_and_found(database: &TestDatabase) {
    let store = &database.store;
    assert!(store.is_empty().await.unwrap());
    let owner = create_user(database, "root", InstanceRole::Owner).await;
    assert!(!store.is_empty().await.unwrap());
    let bob = store
        .create_user(&NewUser {
            username: "bob".into(),
            email: "Bob@Example.com".into(),
            password_hash: PASSWORD_HASH.into(),
            instance_role: InstanceRole::Member,
        })
        .await
        .unwrap();
    assert!(bob.active);
    assert_eq!(bob.instance_role, InstanceRole::Member);
    assert_eq!(bob.email, "Bob@Example.com");

    assert_eq!(store.user(bob.id).await.unwrap(), bob);
    assert_eq!(store.user_by_username("bob").await.unwrap(), bob);
    assert_eq!(store.user_by_email("bob@example.COM").await.unwrap(), bob);
    assert_not_found(store.user_by_username("Bob").await);
    assert_not_found(store.user_by_email("nobody@example.com").await);

    let by_username = store.user_credentials("bob").await.unwrap().unwrap();
    assert_eq!(by_username.user, bob);
    assert_eq!(by_username.password_hash, PASSWORD_HASH);
    let by_email = store
        .user_credentials("BOB@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_email.user, bob);
    assert!(store.user_credentials("nobody").await.unwrap().is_none());

    store
        .set_password_hash(bob.id, "$argon2id$new")
        .await
        .unwrap();
    let credentials = store.user_credentials("bob").await.unwrap().unwrap();
    assert_eq!(credentials.password_hash, "$argon2id$new");

    let users = store.list_users().await.unwrap();
    assert_eq!(users, vec![owner.clone(), bob.clone()]);
    assert_eq!(store.count_active_owners().await.unwrap(), 1);

    let admin = store
        .set_instance_role(bob.id, InstanceRole::Admin)
        .await
        .unwrap();
    assert_eq!(admin.instance_role, InstanceRole::Admin);
    let deactivated = store.set_user_active(bob.id, false).await.unwrap();
    assert!(!deactivated.active);
    // Inactive users still show up for a log-in check, which refuses them.
    assert!(
        !store
            .user_credentials("bob")
            .await
            .unwrap()
            .unwrap()
            .user
            .active
    );
    assert!(store.set_user_active(bob.id, true).await.unwrap().active);
    assert_not_found(store.user(picloud_manager_core::UserId(999_999)).await);
    assert_not_found(
        store
            .set_user_active(picloud_manager_core::UserId(999_999), false)
            .await,
    );
}

pub async fn unique_fields_conflict(database: &TestDatabase) {
    let store = &database.store;
    let alice = create_user(database, "alice", InstanceRole::Member).await;
    assert_conflict(
        store
            .create_user(&NewUser {
                username: "alice".into(),
                email: "other@example.com".into(),
                password_hash: PASSWORD_HASH.into(),
                instance_role: InstanceRole::Member,
            })
            .await,
    );
    match store
        .create_user(&NewUser {
            username: "alice2".into(),
            email: "ALICE@example.com".into(),
            password_hash: PASSWORD_HASH.into(),
            instance_role: InstanceRole::Member,
        })
        .await
    {
        Err(StoreError::Conflict { what }) => assert!(what.contains("e-mail"), "{what}"),
        other => panic!("expected an e-mail conflict, got {other:?}"),
    }

    let shop = store.create_app("shop", "Shop").await.unwrap();
    match store.create_app("shop", "Another shop").await {
        Err(StoreError::Conflict { what }) => assert!(what.contains("shop"), "{what}"),
        other => panic!("expected a slug conflict, got {other:?}"),
    }

    // A script name is unique within its app: deploying it again adds a
    // version, and another app may use the same name.
    let blog = store.create_app("blog", "Blog").await.unwrap();
    store.deploy(shop.id, "hello", "1", alice.id).await.unwrap();
    store.deploy(shop.id, "hello", "2", alice.id).await.unwrap();
    store.deploy(blog.id, "hello", "3", alice.id).await.unwrap();
    assert_eq!(store.list_scripts(shop.id).await.unwrap().len(), 1);
    assert_eq!(store.list_scripts(blog.id).await.unwrap().len(), 1);

    store.add_domain(shop.id, "shop.example.com").await.unwrap();
    assert_conflict(store.add_domain(blog.id, "SHOP.example.com").await);
    assert_conflict(store.add_domain(shop.id, "shop.example.com.").await);

    let token_hash = sha256_hex("token");
    store
        .create_api_token(alice.id, "laptop", &token_hash)
        .await
        .unwrap();
    assert_conflict(store.create_api_token(alice.id, "again", &token_hash).await);
}

pub async fn invalid_input_names_the_field(database: &TestDatabase) {
    let store = &database.store;
    let alice = create_user(database, "alice", InstanceRole::Member).await;
    for slug in [
        "",
        "Shop",
        "-shop",
        "my_shop",
        "a/b",
        "api",
        &"a".repeat(64),
    ] {
        assert_invalid(store.create_app(slug, "Name").await, "slug");
    }
    assert_invalid(store.create_app("shop", "   ").await, "name");
    let shop = store.create_app("shop", "Shop").await.unwrap();
    for name in ["", "Hello", "_hello", "a.b", "a/b", &"a".repeat(64)] {
        assert_invalid(store.deploy(shop.id, name, "1", alice.id).await, "name");
    }
    assert_invalid(
        store
            .update_app(
                shop.id,
                &AppUpdate {
                    settings: Some(json!([1, 2])),
                    ..AppUpdate::default()
                },
            )
            .await,
        "settings",
    );
    assert_invalid(
        store.add_domain(shop.id, "shop.example.com:8080").await,
        "host",
    );
    for (username, email, field) in [
        ("Alice", "a@example.com", "username"),
        ("", "a@example.com", "username"),
        ("carol", "not-an-email", "email"),
    ] {
        assert_invalid(
            store
                .create_user(&NewUser {
                    username: username.into(),
                    email: email.into(),
                    password_hash: PASSWORD_HASH.into(),
                    instance_role: InstanceRole::Member,
                })
                .await,
            field,
        );
    }
    assert_invalid(
        store.create_api_token(alice.id, "", &sha256_hex("x")).await,
        "name",
    );
    // Nothing was stored by the refused calls.
    assert_eq!(store.list_apps().await.unwrap().len(), 1);
    assert!(store.list_scripts(shop.id).await.unwrap().is_empty());
    assert_eq!(store.list_users().await.unwrap().len(), 1);
}

pub async fn the_last_active_owner_cannot_be_removed(database: &TestDatabase) {
    let store = &database.store;
    // With no owner at all (before the bootstrap), changes are not blocked.
    let member = create_user(database, "member", InstanceRole::Member).await;
    store.set_user_active(member.id, false).await.unwrap();

    let root = create_user(database, "root", InstanceRole::Owner).await;
    assert_conflict(store.set_instance_role(root.id, InstanceRole::Admin).await);
    assert_conflict(store.set_user_active(root.id, false).await);
    assert_eq!(store.user(root.id).await.unwrap(), root);

    let second = create_user(database, "second", InstanceRole::Admin).await;
    store
        .set_instance_role(second.id, InstanceRole::Owner)
        .await
        .unwrap();
    assert_eq!(store.count_active_owners().await.unwrap(), 2);
    store.set_user_active(root.id, false).await.unwrap();
    assert_eq!(store.count_active_owners().await.unwrap(), 1);
    assert_conflict(
        store
            .set_instance_role(second.id, InstanceRole::Member)
            .await,
    );
    // Re-activating the first owner lets the second one go.
    store.set_user_active(root.id, true).await.unwrap();
    store
        .set_instance_role(second.id, InstanceRole::Member)
        .await
        .unwrap();
    assert_eq!(store.count_active_owners().await.unwrap(), 1);
}

pub async fn deploy_numbers_versions_and_activates_the_newest(database: &TestDatabase) {
    let store = &database.store;
    let alice = create_user(database, "alice", InstanceRole::Member).await;
    let shop = store.create_app("shop", "Shop").await.unwrap();
    let before_deploy = Timestamp::now();

    let sources = [r#""one""#, r#""two""#, r#""three""#];
    let mut versions = Vec::new();
    for source in sources {
        versions.push(
            store
                .deploy(shop.id, "hello", source, alice.id)
                .await
                .unwrap(),
        );
    }
    assert_eq!(
        versions
            .iter()
            .map(|version| version.number)
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    for (version, source) in versions.iter().zip(sources) {
        assert_eq!(version.source, source);
        assert_eq!(version.hash, sha256_hex(source));
        assert_eq!(version.author_id, alice.id);
        assert_eq!(version.script_id, versions[0].script_id);
        assert!(version.created_at >= before_deploy);
    }

    let script = store.script(shop.id, "hello").await.unwrap();
    assert_eq!(script.id, versions[0].script_id);
    assert_eq!(script.active_version_id, Some(versions[2].id));
    assert_eq!(store.script_by_id(script.id).await.unwrap(), script);
    assert_not_found(store.script(shop.id, "missing").await);

    let summaries = store.list_scripts(shop.id).await.unwrap();
    assert_eq!(summaries.len(), 1);
    assert_eq!(summaries[0].name, "hello");
    assert_eq!(summaries[0].active_version_number, Some(3));
    assert_eq!(summaries[0].latest_version_number, Some(3));
    assert_eq!(summaries[0].last_deployed_at, Some(versions[2].created_at));

    let listed = store.list_versions(script.id).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|version| version.number)
            .collect::<Vec<_>>(),
        [3, 2, 1]
    );
    assert_eq!(
        listed
            .iter()
            .map(|version| version.active)
            .collect::<Vec<_>>(),
        [true, false, false]
    );
    assert!(
        listed
            .iter()
            .all(|version| version.author_username == "alice")
    );
    assert_eq!(store.version(script.id, 2).await.unwrap(), versions[1]);
    assert_not_found(store.version(script.id, 4).await);

    // A second script of the same app counts from 1 again.
    let other = store.deploy(shop.id, "other", "1", alice.id).await.unwrap();
    assert_eq!(other.number, 1);
}

pub async fn rollback_activates_an_earlier_version(database: &TestDatabase) {
    let store = &database.store;
    let alice = create_user(database, "alice", InstanceRole::Member).await;
    let shop = store.create_app("shop", "Shop").await.unwrap();
    for source in ["1", "2", "3"] {
        store
            .deploy(shop.id, "hello", source, alice.id)
            .await
            .unwrap();
    }
    let script = store.script(shop.id, "hello").await.unwrap();

    let first = store.activate_version(script.id, 1).await.unwrap();
    assert_eq!(first.number, 1);
    assert_eq!(first.source, "1");
    let active = store.active_scripts().await.unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!((active[0].number, active[0].source.as_str()), (1, "1"));
    let summary = &store.list_scripts(shop.id).await.unwrap()[0];
    assert_eq!(summary.active_version_number, Some(1));
    assert_eq!(summary.latest_version_number, Some(3));
    let flags: Vec<_> = store
        .list_versions(script.id)
        .await
        .unwrap()
        .into_iter()
        .map(|version| (version.number, version.active))
        .collect();
    assert_eq!(flags, [(3, false), (2, false), (1, true)]);

    assert_not_found(store.activate_version(script.id, 7).await);
    assert_not_found(
        store
            .activate_version(picloud_manager_core::ScriptId(999_999), 1)
            .await,
    );
    assert_eq!(
        store
            .script(shop.id, "hello")
            .await
            .unwrap()
            .active_version_id,
        Some(first.id)
    );

    // A deploy after a rollback takes the next number, not the next after the active one.
    let fourth = store.deploy(shop.id, "hello", "4", alice.id).await.unwrap();
    assert_eq!(fourth.number, 4);
    assert_eq!(
        store.activate_version(script.id, 3).await.unwrap().source,
        "3"
    );
}

pub async fn deploy_to_a_missing_app_or_author_stores_nothing(database: &TestDatabase) {
    let store = &database.store;
    let alice = create_user(database, "alice", InstanceRole::Member).await;
    assert_not_found(
        store
            .deploy(picloud_manager_core::AppId(999_999), "hello", "1", alice.id)
            .await,
    );
    let shop = store.create_app("shop", "Shop").await.unwrap();
    assert_not_found(
        store
            .deploy(shop.id, "hello", "1", picloud_manager_core::UserId(999_999))
            .await,
    );
    assert!(store.list_scripts(shop.id).await.unwrap().is_empty());
    assert!(store.active_scripts().await.unwrap().is_empty());

    // A failed deploy of an existing script leaves its versions alone.
    store.deploy(shop.id, "hello", "1", alice.id).await.unwrap();
    assert_not_found(
        store
            .deploy(shop.id, "hello", "2", picloud_manager_core::UserId(999_999))
            .await,
    );
    let script = store.script(shop.id, "hello").await.unwrap();
    assert_eq!(store.list_versions(script.id).await.unwrap().len(), 1);
    assert_eq!(
        store
            .deploy(shop.id, "hello", "2", alice.id)
            .await
            .unwrap()
            .number,
        2
    );
}

pub async fn concurrent_deploys_get_distinct_consecutive_numbers(database: &TestDatabase) {
    let store = &database.store;
    let alice = create_user(database, "alice", InstanceRole::Member).await;
    let shop = store.create_app("shop", "Shop").await.unwrap();
    const DEPLOYS: i64 = 20;

    // The script does not exist yet: the deploys also race to create it.
    let tasks: Vec<_> = (0..DEPLOYS)
        .map(|index| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .deploy(shop.id, "busy", &format!("\"deploy {index}\""), alice.id)
                    .await
            })
        })
        .collect();
    let mut numbers = Vec::new();
    let mut newest_source = String::new();
    for task in tasks {
        let version = task
            .await
            .expect("the deploy task panicked")
            .expect("deploy");
        if version.number == DEPLOYS {
            newest_source = version.source.clone();
        }
        numbers.push(version.number);
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=DEPLOYS).collect::<Vec<_>>());

    let summaries = store.list_scripts(shop.id).await.unwrap();
    assert_eq!(summaries.len(), 1, "exactly one script was created");
    assert_eq!(summaries[0].active_version_number, Some(DEPLOYS));
    let active = store.active_scripts().await.unwrap();
    assert_eq!(active[0].source, newest_source);
    let script = store.script(shop.id, "busy").await.unwrap();
    let sources: BTreeSet<_> = sources_of_versions(database, script.id, DEPLOYS).await;
    assert_eq!(
        sources.len(),
        DEPLOYS as usize,
        "every deploy kept its own source"
    );
}

async fn sources_of_versions(
    database: &TestDatabase,
    script_id: picloud_manager_core::ScriptId,
    count: i64,
) -> BTreeSet<String> {
    let mut sources = BTreeSet::new();
    for number in 1..=count {
        sources.insert(
            database
                .store
                .version(script_id, number)
                .await
                .unwrap()
                .source,
        );
    }
    sources
}

pub async fn versions_are_immutable(database: &TestDatabase) {
    let store = &database.store;
    let alice = create_user(database, "alice", InstanceRole::Member).await;
    let shop = store.create_app("shop", "Shop").await.unwrap();
    let version = store
        .deploy(shop.id, "hello", "\"original\"", alice.id)
        .await
        .unwrap();
    // The store has no method that changes a version; the schema refuses it too.
    let refused = database
        .execute_raw(&format!(
            "UPDATE script_versions SET source = 'tampered' WHERE id = {}",
            version.id
        ))
        .await;
    assert!(refused.is_err(), "the database let a version change");
    assert_eq!(store.version(version.script_id, 1).await.unwrap(), version);
}

pub async fn deleting_an_app_cascades(database: &TestDatabase) {
    let store = &database.store;
    let alice = create_user(database, "alice", InstanceRole::Member).await;
    let shop = store.create_app("shop", "Shop").await.unwrap();
    let blog = store.create_app("blog", "Blog").await.unwrap();
    let shop_version = store.deploy(shop.id, "hello", "1", alice.id).await.unwrap();
    store.deploy(shop.id, "hello", "2", alice.id).await.unwrap();
    store.deploy(blog.id, "hello", "1", alice.id).await.unwrap();
    store
        .add_member(shop.id, alice.id, AppRole::Editor)
        .await
        .unwrap();
    store
        .add_member(blog.id, alice.id, AppRole::Viewer)
        .await
        .unwrap();
    store.add_domain(shop.id, "shop.example.com").await.unwrap();
    store.add_domain(blog.id, "blog.example.com").await.unwrap();

    store.delete_app(shop.id).await.unwrap();
    assert_not_found(store.app(shop.id).await);
    assert_not_found(store.app_by_slug("shop").await);
    assert_not_found(store.script_by_id(shop_version.script_id).await);
    assert_not_found(store.version(shop_version.script_id, 1).await);
    assert!(
        store
            .list_versions(shop_version.script_id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.list_members(shop.id).await.unwrap().is_empty());
    assert!(store.list_domains(shop.id).await.unwrap().is_empty());
    assert_not_found(store.delete_app(shop.id).await);

    // The other app is untouched.
    let active = store.active_scripts().await.unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].app_slug, "blog");
    let routes = store.all_domains().await.unwrap();
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].host, "blog.example.com");
    let apps_of_alice = store.list_apps_of_member(alice.id).await.unwrap();
    assert_eq!(apps_of_alice.len(), 1);
    assert_eq!(apps_of_alice[0].app.slug, "blog");
    // The user and the deleted app's slug are free again.
    store.user(alice.id).await.unwrap();
    store.create_app("shop", "Shop again").await.unwrap();

    // Deleting one script deletes its versions only.
    let blog_script = store.script(blog.id, "hello").await.unwrap();
    store.delete_script(blog_script.id).await.unwrap();
    assert!(store.active_scripts().await.unwrap().is_empty());
    assert_not_found(store.delete_script(blog_script.id).await);
}

pub async fn apps_are_listed_updated_and_deleted(database: &TestDatabase) {
    let store = &database.store;
    let shop = store.create_app("shop", "Shop").await.unwrap();
    let blog = store.create_app("blog", "Blog").await.unwrap();
    assert_eq!(shop.settings, json!({}));
    assert_eq!(store.app(shop.id).await.unwrap(), shop);
    assert_eq!(store.app_by_slug("shop").await.unwrap(), shop);
    let slugs: Vec<_> = store
        .list_apps()
        .await
        .unwrap()
        .into_iter()
        .map(|app| app.slug)
        .collect();
    assert_eq!(slugs, ["blog", "shop"]);

    let renamed = store
        .update_app(
            shop.id,
            &AppUpdate {
                name: Some("The shop".into()),
                settings: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.name, "The shop");
    assert_eq!(renamed.settings, json!({}));
    // Only known limits, as positive integers, are accepted.
    for bad in [
        json!({"limits": {"timeout_ms": 250}}),
        json!({"limits": {"fuel": 0}}),
        json!({"limits": "fast"}),
    ] {
        let refused = store
            .update_app(
                shop.id,
                &AppUpdate {
                    name: None,
                    settings: Some(bad.clone()),
                },
            )
            .await;
        assert!(
            matches!(refused, Err(StoreError::Invalid { .. })),
            "{bad}: {refused:?}"
        );
    }
    let settings = json!({"limits": {"fuel": 1_000_000, "deadline_ms": 250}});
    let configured = store
        .update_app(
            shop.id,
            &AppUpdate {
                name: None,
                settings: Some(settings.clone()),
            },
        )
        .await
        .unwrap();
    assert_eq!(configured.name, "The shop");
    assert_eq!(configured.settings, settings);
    assert_eq!(store.app(shop.id).await.unwrap(), configured);
    assert_not_found(
        store
            .update_app(picloud_manager_core::AppId(999_999), &AppUpdate::default())
            .await,
    );

    store.delete_app(blog.id).await.unwrap();
    assert_eq!(store.list_apps().await.unwrap(), vec![configured]);
}

pub async fn memberships_are_added_changed_listed_and_removed(database: &TestDatabase) {
    let store = &database.store;
    let alice = create_user(database, "alice", InstanceRole::Member).await;
    let bob = create_user(database, "bob", InstanceRole::Member).await;
    let shop = store.create_app("shop", "Shop").await.unwrap();
    let blog = store.create_app("blog", "Blog").await.unwrap();

    let membership = store
        .add_member(shop.id, bob.id, AppRole::Viewer)
        .await
        .unwrap();
    assert_eq!(
        (membership.app_id, membership.user_id, membership.role),
        (shop.id, bob.id, AppRole::Viewer)
    );
    store
        .add_member(shop.id, alice.id, AppRole::AppAdmin)
        .await
        .unwrap();
    store
        .add_member(blog.id, bob.id, AppRole::Editor)
        .await
        .unwrap();
    assert_conflict(store.add_member(shop.id, bob.id, AppRole::Editor).await);
    assert_not_found(
        store
            .add_member(
                picloud_manager_core::AppId(999_999),
                bob.id,
                AppRole::Viewer,
            )
            .await,
    );
    assert_not_found(
        store
            .add_member(
                shop.id,
                picloud_manager_core::UserId(999_999),
                AppRole::Viewer,
            )
            .await,
    );

    let members = store.list_members(shop.id).await.unwrap();
    let rows: Vec<_> = members
        .iter()
        .map(|member| {
            (
                member.username.as_str(),
                member.email.as_str(),
                member.role,
                member.active,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("alice", "alice@example.com", AppRole::AppAdmin, true),
            ("bob", "bob@example.com", AppRole::Viewer, true),
        ]
    );
    assert_eq!(members[1].instance_role, InstanceRole::Member);
    assert_eq!(members[1].joined_at, membership.joined_at);

    let changed = store
        .set_member_role(shop.id, bob.id, AppRole::Editor)
        .await
        .unwrap();
    assert_eq!(changed.role, AppRole::Editor);
    assert_eq!(changed.joined_at, membership.joined_at);
    assert_eq!(
        store.membership(shop.id, bob.id).await.unwrap(),
        Some(AppRole::Editor)
    );
    assert_not_found(
        store
            .set_member_role(shop.id, bob.id.next_unused(), AppRole::Viewer)
            .await,
    );

    let apps_of_bob: Vec<_> = store
        .list_apps_of_member(bob.id)
        .await
        .unwrap()
        .into_iter()
        .map(|app| (app.app.slug, app.role))
        .collect();
    assert_eq!(
        apps_of_bob,
        [
            ("blog".to_owned(), AppRole::Editor),
            ("shop".to_owned(), AppRole::Editor)
        ]
    );

    store.remove_member(shop.id, bob.id).await.unwrap();
    assert_eq!(store.membership(shop.id, bob.id).await.unwrap(), None);
    assert_not_found(store.remove_member(shop.id, bob.id).await);
    assert_eq!(store.list_members(shop.id).await.unwrap().len(), 1);

    // A deactivated member keeps the membership, marked inactive.
    store.set_user_active(alice.id, false).await.unwrap();
    let members = store.list_members(shop.id).await.unwrap();
    assert!(!members[0].active);
}

pub async fn sessions_are_looked_up_until_expiry_or_deactivation(database: &TestDatabase) {
    let store = &database.store;
    let alice = create_user(database, "alice", InstanceRole::Admin).await;
    let token = auth::generate_token("pcs");
    let token_hash = auth::hash_token(&token);
    let in_an_hour = Timestamp::now().after(Duration::from_secs(3600));
    let session = store
        .create_session(&NewSession {
            token_hash: token_hash.clone(),
            user_id: alice.id,
            csrf_token: "csrf-1".into(),
            expires_at: in_an_hour,
        })
        .await
        .unwrap();
    assert_eq!(session.expires_at, in_an_hour);

    let found = store
        .session_by_token_hash(&token_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.session, session);
    assert_eq!(found.user, alice);
    assert!(
        store
            .session_by_token_hash(&auth::hash_token("wrong"))
            .await
            .unwrap()
            .is_none()
    );

    // Deactivation stops the session at once; reactivation brings it back.
    store.set_user_active(alice.id, false).await.unwrap();
    assert!(
        store
            .session_by_token_hash(&token_hash)
            .await
            .unwrap()
            .is_none()
    );
    store.set_user_active(alice.id, true).await.unwrap();
    assert!(
        store
            .session_by_token_hash(&token_hash)
            .await
            .unwrap()
            .is_some()
    );

    let expired_hash = auth::hash_token("expired");
    store
        .create_session(&NewSession {
            token_hash: expired_hash.clone(),
            user_id: alice.id,
            csrf_token: "csrf-2".into(),
            expires_at: Timestamp::now().before(Duration::from_secs(1)),
        })
        .await
        .unwrap();
    assert!(
        store
            .session_by_token_hash(&expired_hash)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.delete_expired_sessions().await.unwrap(), 1);
    assert_eq!(store.delete_expired_sessions().await.unwrap(), 0);

    store.delete_session(session.id).await.unwrap();
    assert!(
        store
            .session_by_token_hash(&token_hash)
            .await
            .unwrap()
            .is_none()
    );
    store.delete_session(session.id).await.unwrap();

    for number in 0..3 {
        store
            .create_session(&NewSession {
                token_hash: auth::hash_token(&format!("many {number}")),
                user_id: alice.id,
                csrf_token: "csrf".into(),
                expires_at: in_an_hour,
            })
            .await
            .unwrap();
    }
    assert_eq!(store.delete_sessions_of_user(alice.id).await.unwrap(), 3);
    assert_not_found(
        store
            .create_session(&NewSession {
                token_hash: auth::hash_token("orphan"),
                user_id: alice.id.next_unused(),
                csrf_token: "csrf".into(),
                expires_at: in_an_hour,
            })
            .await,
    );
}

pub async fn api_tokens_are_looked_up_until_revoked(database: &TestDatabase) {
    let store = &database.store;
    let alice = create_user(database, "alice", InstanceRole::Member).await;
    let bob = create_user(database, "bob", InstanceRole::Member).await;
    let laptop_hash = auth::hash_token(&auth::generate_token("pc"));
    let ci_hash = auth::hash_token(&auth::generate_token("pc"));
    let laptop = store
        .create_api_token(alice.id, "laptop", &laptop_hash)
        .await
        .unwrap();
    let ci = store
        .create_api_token(alice.id, "ci", &ci_hash)
        .await
        .unwrap();
    assert_eq!((laptop.last_used_at, laptop.revoked_at), (None, None));
    assert_eq!(
        store.list_api_tokens(alice.id).await.unwrap(),
        vec![laptop.clone(), ci.clone()]
    );
    assert!(store.list_api_tokens(bob.id).await.unwrap().is_empty());

    let found = store
        .api_token_by_hash(&laptop_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.token, laptop);
    assert_eq!(found.user, alice);
    assert!(
        store
            .api_token_by_hash(&auth::hash_token("wrong"))
            .await
            .unwrap()
            .is_none()
    );

    store.touch_api_token(laptop.id).await.unwrap();
    let touched = store
        .api_token_by_hash(&laptop_hash)
        .await
        .unwrap()
        .unwrap();
    assert!(touched.token.last_used_at.is_some());

    // Only the owner of a token can revoke it.
    assert_not_found(store.revoke_api_token(bob.id, laptop.id).await);
    let revoked = store.revoke_api_token(alice.id, laptop.id).await.unwrap();
    let revoked_at = revoked.revoked_at.expect("revoked");
    assert!(
        store
            .api_token_by_hash(&laptop_hash)
            .await
            .unwrap()
            .is_none()
    );
    let again = store.revoke_api_token(alice.id, laptop.id).await.unwrap();
    assert_eq!(again.revoked_at, Some(revoked_at));
    let listed = store.list_api_tokens(alice.id).await.unwrap();
    assert_eq!(listed[0].revoked_at, Some(revoked_at));
    assert_eq!(listed[1].revoked_at, None);

    // A deactivated user's tokens stop working at once.
    assert!(store.api_token_by_hash(&ci_hash).await.unwrap().is_some());
    store.set_user_active(alice.id, false).await.unwrap();
    assert!(store.api_token_by_hash(&ci_hash).await.unwrap().is_none());
    assert_not_found(
        store
            .create_api_token(bob.id.next_unused(), "orphan", &auth::hash_token("orphan"))
            .await,
    );
}

pub async fn domains_are_normalised_listed_and_removed(database: &TestDatabase) {
    let store = &database.store;
    let shop = store.create_app("shop", "Shop").await.unwrap();
    let blog = store.create_app("blog", "Blog").await.unwrap();
    let domain = store
        .add_domain(shop.id, "Shop.Example.COM.")
        .await
        .unwrap();
    assert_eq!(domain.host, "shop.example.com");
    assert_eq!(domain.app_id, shop.id);
    store
        .add_domain(shop.id, "www.shop.example.com")
        .await
        .unwrap();
    store.add_domain(blog.id, "blog.example.com").await.unwrap();
    assert_not_found(
        store
            .add_domain(picloud_manager_core::AppId(999_999), "nowhere.example.com")
            .await,
    );

    let hosts: Vec<_> = store
        .list_domains(shop.id)
        .await
        .unwrap()
        .into_iter()
        .map(|domain| domain.host)
        .collect();
    assert_eq!(hosts, ["shop.example.com", "www.shop.example.com"]);
    let routes: Vec<_> = store
        .all_domains()
        .await
        .unwrap()
        .into_iter()
        .map(|route| (route.host, route.app_slug))
        .collect();
    assert_eq!(
        routes,
        [
            ("blog.example.com".to_owned(), "blog".to_owned()),
            ("shop.example.com".to_owned(), "shop".to_owned()),
            ("www.shop.example.com".to_owned(), "shop".to_owned()),
        ]
    );

    assert_not_found(store.remove_domain(blog.id, "shop.example.com").await);
    store
        .remove_domain(shop.id, "SHOP.example.com")
        .await
        .unwrap();
    assert_not_found(store.remove_domain(shop.id, "shop.example.com").await);
    assert_eq!(store.list_domains(shop.id).await.unwrap().len(), 1);
}

pub async fn audit_log_is_append_only_and_paged(database: &TestDatabase) {
    let store = &database.store;
    let root = create_user(database, "root", InstanceRole::Owner).await;
    let system_entry = store
        .append_audit(&NewAuditEntry {
            actor_id: None,
            action: "user.create".into(),
            target: "user:root".into(),
            before: None,
            after: Some(json!({"username": "root", "instance_role": "owner"})),
        })
        .await
        .unwrap();
    assert_eq!(system_entry.actor_id, None);
    assert_eq!(system_entry.actor_username, None);
    assert_eq!(
        system_entry.after,
        Some(json!({"username": "root", "instance_role": "owner"}))
    );

    for number in 1..=5 {
        let entry = store
            .append_audit(&NewAuditEntry {
                actor_id: Some(root.id),
                action: "member.role".into(),
                target: format!("app:shop/user:{number}"),
                before: Some(json!({"role": "viewer"})),
                after: Some(json!({"role": "editor"})),
            })
            .await
            .unwrap();
        assert_eq!(entry.actor_username.as_deref(), Some("root"));
    }

    let newest = store.list_audit(None, 4).await.unwrap();
    let targets: Vec<_> = newest.iter().map(|entry| entry.target.as_str()).collect();
    assert_eq!(
        targets,
        [
            "app:shop/user:5",
            "app:shop/user:4",
            "app:shop/user:3",
            "app:shop/user:2"
        ]
    );
    assert_eq!(newest[0].before, Some(json!({"role": "viewer"})));
    assert_eq!(newest[0].actor_id, Some(root.id));
    let next_page = store.list_audit(Some(newest[3].id), 4).await.unwrap();
    let targets: Vec<_> = next_page
        .iter()
        .map(|entry| entry.target.as_str())
        .collect();
    assert_eq!(targets, ["app:shop/user:1", "user:root"]);
    assert_eq!(next_page[1], system_entry);
    assert!(
        store
            .list_audit(Some(system_entry.id), 4)
            .await
            .unwrap()
            .is_empty()
    );

    assert_invalid(
        store
            .append_audit(&NewAuditEntry {
                action: " ".into(),
                target: "x".into(),
                ..NewAuditEntry::default()
            })
            .await,
        "action",
    );
    assert_not_found(
        store
            .append_audit(&NewAuditEntry {
                actor_id: Some(root.id.next_unused()),
                action: "x".into(),
                target: "y".into(),
                ..NewAuditEntry::default()
            })
            .await,
    );

    // The schema refuses changes behind the store's back.
    for sql in [
        "UPDATE audit_log SET action = 'forged'",
        "DELETE FROM audit_log",
    ] {
        assert!(
            database.execute_raw(sql).await.is_err(),
            "{sql} was allowed"
        );
    }
    assert_eq!(store.list_audit(None, 100).await.unwrap().len(), 6);
}

pub async fn active_scripts_lists_every_active_version(database: &TestDatabase) {
    let store = &database.store;
    let alice = create_user(database, "alice", InstanceRole::Member).await;
    let shop = store.create_app("shop", "Shop").await.unwrap();
    let blog = store.create_app("blog", "Blog").await.unwrap();
    assert!(store.active_scripts().await.unwrap().is_empty());

    store
        .deploy(shop.id, "cart", "\"cart 1\"", alice.id)
        .await
        .unwrap();
    let cart_2 = store
        .deploy(shop.id, "cart", "\"cart 2\"", alice.id)
        .await
        .unwrap();
    let hello_1 = store
        .deploy(shop.id, "hello", "\"hello 1\"", alice.id)
        .await
        .unwrap();
    store
        .deploy(shop.id, "hello", "\"hello 2\"", alice.id)
        .await
        .unwrap();
    store.activate_version(hello_1.script_id, 1).await.unwrap();
    let post_1 = store
        .deploy(blog.id, "post", "\"post 1\"", alice.id)
        .await
        .unwrap();

    let active: Vec<_> = store
        .active_scripts()
        .await
        .unwrap()
        .into_iter()
        .map(|script| {
            (
                script.app_slug,
                script.app_id,
                script.script_name,
                script.script_id,
                script.version_id,
                script.number,
                script.hash,
                script.source,
            )
        })
        .collect();
    assert_eq!(
        active,
        [
            (
                "blog".to_owned(),
                blog.id,
                "post".to_owned(),
                post_1.script_id,
                post_1.id,
                1,
                sha256_hex("\"post 1\""),
                "\"post 1\"".to_owned(),
            ),
            (
                "shop".to_owned(),
                shop.id,
                "cart".to_owned(),
                cart_2.script_id,
                cart_2.id,
                2,
                sha256_hex("\"cart 2\""),
                "\"cart 2\"".to_owned(),
            ),
            (
                "shop".to_owned(),
                shop.id,
                "hello".to_owned(),
                hello_1.script_id,
                hello_1.id,
                1,
                sha256_hex("\"hello 1\""),
                "\"hello 1\"".to_owned(),
            ),
        ]
    );

    // One app's scripts only, in name order.
    let of_shop: Vec<_> = store
        .active_scripts_of_app(shop.id)
        .await
        .unwrap()
        .into_iter()
        .map(|script| (script.script_name, script.version_id))
        .collect();
    assert_eq!(
        of_shop,
        [
            ("cart".to_owned(), cart_2.id),
            ("hello".to_owned(), hello_1.id)
        ]
    );
}

/// Ids that no row has, for "not found" cases.
trait NextUnused {
    fn next_unused(self) -> Self;
}

impl NextUnused for picloud_manager_core::UserId {
    fn next_unused(self) -> Self {
        Self(self.0 + 1_000_000)
    }
}

async fn audit_actions(database: &TestDatabase) -> Vec<(String, String)> {
    database
        .store
        .list_audit(None, 500)
        .await
        .expect("list the audit log")
        .into_iter()
        .rev()
        .map(|entry| (entry.action, entry.target))
        .collect()
}

pub async fn account_changes_and_their_audit_entries_commit_together(database: &TestDatabase) {
    let store = &database.store;
    let owner = create_user(database, "root", InstanceRole::Owner).await;
    let actor = Some(owner.id);
    let new_user = |username: &str, instance_role| NewUser {
        username: username.to_owned(),
        email: format!("{username}@example.com"),
        password_hash: PASSWORD_HASH.to_owned(),
        instance_role,
    };
    let bob = store
        .create_user_audited(&new_user("bob", InstanceRole::Member), actor)
        .await
        .unwrap();
    let ada = store
        .create_user_audited(&new_user("ada", InstanceRole::Admin), actor)
        .await
        .unwrap();
    assert_conflict(
        store
            .create_user_audited(&new_user("bob", InstanceRole::Member), actor)
            .await,
    );
    let app = store.create_app("shop", "Shop").await.unwrap();

    // Only active members can join; refusals write nothing.
    assert_invalid(
        store
            .add_member_audited(app.id, ada.id, AppRole::Viewer, actor)
            .await,
        "user",
    );
    let member = store
        .add_member_audited(app.id, bob.id, AppRole::Viewer, actor)
        .await
        .unwrap();
    assert_eq!(
        (member.username.as_str(), member.role),
        ("bob", AppRole::Viewer)
    );
    assert_conflict(
        store
            .add_member_audited(app.id, bob.id, AppRole::Editor, actor)
            .await,
    );
    let (before, after) = store
        .set_member_role_audited(app.id, bob.id, AppRole::AppAdmin, actor)
        .await
        .unwrap();
    assert_eq!(
        (before.role, after.role),
        (AppRole::Viewer, AppRole::AppAdmin)
    );
    assert_eq!(
        store.membership(app.id, bob.id).await.unwrap(),
        Some(AppRole::AppAdmin)
    );

    // The lookup finds only addable users, by exact username or e-mail.
    let carol = store
        .create_user_audited(&new_user("carol", InstanceRole::Member), actor)
        .await
        .unwrap();
    assert_eq!(
        store
            .addable_user(app.id, "CAROL@example.com")
            .await
            .unwrap()
            .map(|user| user.id),
        Some(carol.id)
    );
    for query in ["bob", "ada", "root", "caro", "nobody"] {
        assert!(
            store.addable_user(app.id, query).await.unwrap().is_none(),
            "{query}"
        );
    }

    // The last owner cannot go; nothing is written when refused.
    let entries_before = audit_actions(database).await.len();
    assert_conflict(
        store
            .update_user_audited(
                owner.id,
                &UserUpdate {
                    instance_role: Some(InstanceRole::Admin),
                    active: None,
                },
                actor,
            )
            .await,
    );
    assert_eq!(
        store.user(owner.id).await.unwrap().instance_role,
        InstanceRole::Owner
    );
    assert_eq!(audit_actions(database).await.len(), entries_before);

    // Deactivation ends sessions at once and is audited with before/after.
    let session = store
        .create_session(&NewSession {
            token_hash: sha256_hex("bob-session"),
            user_id: bob.id,
            csrf_token: "csrf".into(),
            expires_at: Timestamp::now().after(Duration::from_secs(3600)),
        })
        .await
        .unwrap();
    let (before, after) = store
        .update_user_audited(
            bob.id,
            &UserUpdate {
                instance_role: None,
                active: Some(false),
            },
            Some(ada.id),
        )
        .await
        .unwrap();
    assert!(before.active && !after.active);
    assert!(
        store
            .session_by_token_hash(&sha256_hex("bob-session"))
            .await
            .unwrap()
            .is_none(),
        "session {} survived",
        session.id
    );
    assert_eq!(
        store.membership(app.id, bob.id).await.unwrap(),
        Some(AppRole::AppAdmin)
    );
    store
        .remove_member_audited(app.id, bob.id, actor)
        .await
        .unwrap();
    assert_not_found(store.remove_member_audited(app.id, bob.id, actor).await);
    assert_not_found(
        store
            .update_user_audited(UserId(987_654), &UserUpdate::default(), actor)
            .await,
    );

    assert_eq!(
        audit_actions(database).await,
        [
            ("user.create", "user:bob"),
            ("user.create", "user:ada"),
            ("member.add", "app:shop/user:bob"),
            ("member.update", "app:shop/user:bob"),
            ("user.create", "user:carol"),
            ("user.update", "user:bob"),
            ("member.remove", "app:shop/user:bob"),
        ]
        .map(|(action, target)| (action.to_owned(), target.to_owned()))
    );
    let newest = store.list_audit(None, 2).await.unwrap();
    assert_eq!(newest[1].actor_id, Some(ada.id));
    assert_eq!(newest[1].before.as_ref().unwrap()["active"], json!(true));
    assert_eq!(newest[1].after.as_ref().unwrap()["active"], json!(false));
}

pub use crate::health_suite::*;
pub use crate::invocations_suite::*;
pub use crate::runtime_suite::*;
pub use crate::triggers_suite::*;

/// Nodes on one PostgreSQL database hear each other's route announcements
/// (also after their subscription is cut); on SQLite there is one node, no
/// subscription, and announcing does nothing.
pub async fn route_changes_are_announced_between_nodes_on_postgres(database: &TestDatabase) {
    let store = &database.store;
    let Some(mut changes) = store.route_changes().await.unwrap() else {
        assert_eq!(store.backend(), Backend::Sqlite);
        store.announce_route_change("node-a").await.unwrap();
        return;
    };
    assert_eq!(store.backend(), Backend::Postgres);
    let mut second = store.route_changes().await.unwrap().unwrap();
    store.announce_route_change("node-a").await.unwrap();
    store.announce_route_change("node-b").await.unwrap();
    for subscription in [&mut changes, &mut second] {
        for node in ["node-a", "node-b"] {
            let change = tokio::time::timeout(Duration::from_secs(5), subscription.next())
                .await
                .expect("an announcement within 5 s")
                .unwrap();
            assert_eq!(change, RouteChange::Announced(node.into()));
        }
    }

    // A cut subscription comes back, and says that announcements may be lost.
    database
        .execute_raw(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        .await
        .unwrap();
    let change = tokio::time::timeout(Duration::from_secs(5), changes.next())
        .await
        .expect("the cut is noticed within 5 s")
        .unwrap();
    assert_eq!(change, RouteChange::Resubscribed);
    store.announce_route_change("node-c").await.unwrap();
    let change = tokio::time::timeout(Duration::from_secs(5), changes.next())
        .await
        .expect("an announcement after the cut")
        .unwrap();
    assert_eq!(change, RouteChange::Announced("node-c".into()));
    drop((changes, second));
}
