//! Store suite cases for invocation records: batches, filters, paging, the
//! live tail's catch-up, chart buckets and retention.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use futures_util::StreamExt;
use picloud_manager_core::api::{
    API_TOKEN_PREFIX, ApiConfig, ApiState, BoxFuture, CheckError, RoutePublisher, ScriptCompiler,
    api_router,
};
use picloud_manager_core::{
    ActiveScript, AppId, Backend, DomainRoute, InstanceRole, InvocationFilter, NewInvocation,
    NewUser, OutputLine, ScriptId, StatusFilter, Timestamp, VersionId, auth,
};
use tower::ServiceExt;

use crate::harness::TestDatabase;

/// A record of `script` with `status`, started `age` ago and lasting `duration_ms`.
fn record(
    app_id: AppId,
    script: &str,
    status: u16,
    age: Duration,
    duration_ms: i64,
) -> NewInvocation {
    NewInvocation {
        app_id,
        script_id: ScriptId(7),
        script_name: script.to_owned(),
        version_id: VersionId(3),
        trigger: "http".to_owned(),
        status,
        error_code: (status >= 500).then(|| "script_error".to_owned()),
        error_message: (status >= 500).then(|| "boom at line 2".to_owned()),
        request_id: format!("req-{script}-{status}-{}", age.as_millis()),
        started_at: Timestamp::now().before(age),
        duration_us: duration_ms * 1000,
        fuel_used: 500,
        fuel_limit: 1000,
        memory_bytes: 1 << 20,
        memory_limit_bytes: 1 << 22,
        cold_start: false,
        output: vec![OutputLine {
            level: "print".to_owned(),
            text: format!("hello from {script}"),
        }],
        output_truncated: false,
    }
}

pub async fn invocations_are_stored_in_batches_and_read_back(database: &TestDatabase) {
    let store = &database.store;
    let app = store.create_app("logs", "Logs").await.unwrap();
    let mut first = record(app.id, "hello", 200, Duration::ZERO, 3);
    first.cold_start = true;
    first.output_truncated = true;
    first.output.push(OutputLine {
        level: "debug".to_owned(),
        text: "second line ✓".to_owned(),
    });
    let failed = record(app.id, "hello", 500, Duration::ZERO, 4);
    let stored = store
        .insert_invocations(vec![first.clone(), failed.clone()])
        .await
        .unwrap();
    assert_eq!(stored.len(), 2);
    assert!(stored[0].id < stored[1].id, "ids grow in batch order");
    assert_eq!(stored[0].invocation, first);

    let read = store
        .invocation(app.id, stored[0].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read, stored[0]);
    let by_request = store
        .invocation_by_request_id(app.id, &failed.request_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_request.id, stored[1].id);
    assert_eq!(by_request.error_message.as_deref(), Some("boom at line 2"));

    // Another app's record is invisible through this app.
    let other = store.create_app("other", "Other").await.unwrap();
    assert!(
        store
            .invocation(other.id, stored[0].id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .insert_invocations(Vec::new())
            .await
            .unwrap()
            .is_empty()
    );

    // Records of an app deleted while they waited are skipped, not an error.
    let gone = record(AppId(987_654), "hello", 200, Duration::ZERO, 1);
    let kept = record(app.id, "hello", 201, Duration::ZERO, 1);
    let stored = store.insert_invocations(vec![gone, kept]).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].status, 201);

    // Deleting the app deletes its records.
    store.delete_app(app.id).await.unwrap();
    assert!(
        store
            .invocation(app.id, stored[0].id)
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn invocations_are_listed_with_filters_and_pages(database: &TestDatabase) {
    let store = &database.store;
    let app = store.create_app("shop", "Shop").await.unwrap();
    let minute = Duration::from_secs(60);
    let batch = vec![
        record(app.id, "orders", 200, minute * 30, 5),
        record(app.id, "orders", 500, minute * 20, 6),
        record(app.id, "orders", 404, minute * 10, 7),
        record(app.id, "users", 200, minute * 5, 8),
        record(app.id, "users", 502, minute, 9),
    ];
    let stored = store.insert_invocations(batch.clone()).await.unwrap();
    let statuses = |records: &[picloud_manager_core::StoredInvocation]| {
        records
            .iter()
            .map(|record| record.status)
            .collect::<Vec<_>>()
    };

    let all = store
        .list_invocations(app.id, &InvocationFilter::default(), 50)
        .await
        .unwrap();
    assert_eq!(statuses(&all), [502, 200, 404, 500, 200], "newest first");

    let orders = InvocationFilter {
        script: Some("orders".into()),
        ..InvocationFilter::default()
    };
    let listed = store.list_invocations(app.id, &orders, 50).await.unwrap();
    assert_eq!(statuses(&listed), [404, 500, 200]);

    let errors = InvocationFilter {
        status: Some(StatusFilter::Error),
        ..InvocationFilter::default()
    };
    let listed = store.list_invocations(app.id, &errors, 50).await.unwrap();
    assert_eq!(statuses(&listed), [502, 500]);
    let ok = InvocationFilter {
        status: Some(StatusFilter::Ok),
        ..InvocationFilter::default()
    };
    let listed = store.list_invocations(app.id, &ok, 50).await.unwrap();
    assert_eq!(
        statuses(&listed),
        [200, 404, 200],
        "a 404 the script chose is not an error"
    );
    let exact = InvocationFilter {
        status: Some(StatusFilter::Exact(404)),
        script: Some("orders".into()),
        ..InvocationFilter::default()
    };
    assert_eq!(
        statuses(&store.list_invocations(app.id, &exact, 50).await.unwrap()),
        [404]
    );

    let window = InvocationFilter {
        since: Some(Timestamp::now().before(minute * 25)),
        until: Some(Timestamp::now().before(minute * 3)),
        ..InvocationFilter::default()
    };
    let listed = store.list_invocations(app.id, &window, 50).await.unwrap();
    assert_eq!(statuses(&listed), [200, 404, 500]);

    // Pages of two, following `before`.
    let mut pages = Vec::new();
    let mut filter = InvocationFilter::default();
    loop {
        let page = store.list_invocations(app.id, &filter, 2).await.unwrap();
        if page.is_empty() {
            break;
        }
        filter.before = page.last().map(|record| record.id);
        pages.push(statuses(&page));
    }
    assert_eq!(pages, [vec![502, 200], vec![404, 500], vec![200]]);

    // The live tail's catch-up: oldest first, after an id, per script.
    let after = store
        .invocations_after(app.id, stored[1].id, None, 200)
        .await
        .unwrap();
    assert_eq!(statuses(&after), [404, 200, 502]);
    let after = store
        .invocations_after(app.id, stored[1].id, Some("users"), 1)
        .await
        .unwrap();
    assert_eq!(statuses(&after), [200]);
    assert_eq!(
        store.newest_invocation_id(app.id).await.unwrap(),
        stored[4].id
    );
    let empty = store.create_app("empty", "Empty").await.unwrap();
    assert_eq!(store.newest_invocation_id(empty.id).await.unwrap(), 0);
}

pub async fn invocation_stats_bucket_counts_errors_and_durations(database: &TestDatabase) {
    let store = &database.store;
    let app = store.create_app("charts", "Charts").await.unwrap();
    let until = Timestamp::now();
    let minute = Duration::from_secs(60);
    // The middle of the previous ten-minute bucket, so that records a few
    // seconds apart share a bucket.
    let ten_minutes_ms = 600_000;
    let base = Timestamp::from_unix_millis(
        until.unix_millis().div_euclid(ten_minutes_ms) * ten_minutes_ms - ten_minutes_ms / 2,
    );
    let at = |mut record: NewInvocation, age: Duration| {
        record.started_at = base.before(age);
        record
    };
    let mut batch: Vec<NewInvocation> = (1..=20)
        .map(|ms| {
            at(
                record(app.id, "fast", 200, Duration::ZERO, ms),
                Duration::from_secs(1),
            )
        })
        .collect();
    batch.push(at(
        record(app.id, "fast", 500, Duration::ZERO, 100),
        Duration::from_secs(2),
    ));
    batch.push(at(
        record(app.id, "slow", 200, Duration::ZERO, 1000),
        minute * 30,
    ));
    // Outside the one-hour window.
    batch.push(at(
        record(app.id, "slow", 200, Duration::ZERO, 1000),
        minute * 90,
    ));
    store.insert_invocations(batch.clone()).await.unwrap();

    let since = until.before(minute * 60);
    let series = store
        .invocation_stats(app.id, None, since, until, Duration::from_secs(600))
        .await
        .unwrap();
    let names: Vec<&str> = series.iter().map(|series| series.script.as_str()).collect();
    assert_eq!(names, ["fast", "slow"]);
    for one in &series {
        assert!(
            (6..=7).contains(&one.buckets.len()),
            "an hour in ten-minute buckets: {}",
            one.buckets.len()
        );
        assert!(
            one.buckets
                .windows(2)
                .all(|pair| pair[0].start < pair[1].start)
        );
    }
    let fast = series[0]
        .buckets
        .iter()
        .find(|bucket| bucket.count > 0)
        .unwrap();
    assert_eq!(
        series[0]
            .buckets
            .iter()
            .filter(|bucket| bucket.count > 0)
            .count(),
        1
    );
    assert_eq!((fast.count, fast.errors), (21, 1));
    assert_eq!(fast.max_ms, Some(100.0));
    assert_eq!(fast.p50_ms, Some(11.0));
    assert_eq!(fast.p95_ms, Some(20.0));
    let slow_total: u64 = series[1].buckets.iter().map(|bucket| bucket.count).sum();
    assert_eq!(slow_total, 1);
    assert!(
        series[1]
            .buckets
            .iter()
            .any(|bucket| bucket.avg_ms == Some(1000.0))
    );

    let only_slow = store
        .invocation_stats(app.id, Some("slow"), since, until, Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(only_slow.len(), 1);
}

pub async fn retention_removes_old_records_and_keeps_recent_ones(database: &TestDatabase) {
    let store = &database.store;
    let busy = store.create_app("busy", "Busy").await.unwrap();
    let quiet = store.create_app("quiet", "Quiet").await.unwrap();
    let day = Duration::from_secs(24 * 60 * 60);
    // Busy: 3 records older than a week, then 8 recent ones.
    let mut batch: Vec<NewInvocation> = (0..3)
        .map(|index| record(busy.id, "old", 200, day * (10 + index), 1))
        .collect();
    batch.extend((0..8).map(|index| {
        record(
            busy.id,
            "new",
            200,
            Duration::from_secs(60 * (8 - index)),
            1,
        )
    }));
    // Quiet: one old record and one recent one.
    batch.push(record(quiet.id, "old", 200, day * 30, 1));
    batch.push(record(quiet.id, "new", 200, Duration::from_secs(5), 1));
    let stored = store.insert_invocations(batch.clone()).await.unwrap();

    let outcome = store.prune_invocations(5, day * 7).await.unwrap();
    assert_eq!(outcome.too_old, 4);
    assert_eq!(outcome.over_count, 3);

    let busy_left = store
        .list_invocations(busy.id, &InvocationFilter::default(), 200)
        .await
        .unwrap();
    let busy_ids: Vec<i64> = busy_left.iter().map(|record| record.id).collect();
    let newest_five: Vec<i64> = stored[6..11].iter().rev().map(|record| record.id).collect();
    assert_eq!(busy_ids, newest_five, "the five newest are kept");
    let quiet_left = store
        .list_invocations(quiet.id, &InvocationFilter::default(), 200)
        .await
        .unwrap();
    assert_eq!(quiet_left.len(), 1);
    assert_eq!(quiet_left[0].script_name, "new");

    // Nothing more to do: a second run deletes nothing.
    let again = store.prune_invocations(5, day * 7).await.unwrap();
    assert_eq!((again.too_old, again.over_count), (0, 0));
}

pub async fn pruning_one_app_keeps_its_newest_records_in_chunks(database: &TestDatabase) {
    let store = &database.store;
    let busy = store.create_app("busy", "Busy").await.unwrap();
    let quiet = store.create_app("quiet", "Quiet").await.unwrap();
    // More than two delete chunks' worth for the busy app, a few for the quiet one.
    let batch: Vec<NewInvocation> = (0..11_000)
        .map(|n| {
            let mut invocation = record(busy.id, "bulk", 200, Duration::ZERO, 1);
            invocation.request_id = format!("busy-{n}");
            invocation
        })
        .chain((0..3).map(|n| {
            let mut invocation = record(quiet.id, "few", 200, Duration::ZERO, 1);
            invocation.request_id = format!("quiet-{n}");
            invocation
        }))
        .collect();
    let stored = store.insert_invocations(batch).await.unwrap();

    assert_eq!(
        store.prune_app_invocations(busy.id, 10).await.unwrap(),
        10_990
    );
    let left = store
        .list_invocations(busy.id, &InvocationFilter::default(), 200)
        .await
        .unwrap();
    let left_ids: Vec<i64> = left.iter().map(|record| record.id).collect();
    let newest_ten: Vec<i64> = stored[10_990..11_000]
        .iter()
        .rev()
        .map(|record| record.id)
        .collect();
    assert_eq!(left_ids, newest_ten, "the ten newest are kept");
    let quiet_left = store
        .list_invocations(quiet.id, &InvocationFilter::default(), 200)
        .await
        .unwrap();
    assert_eq!(quiet_left.len(), 3, "another app's records are untouched");

    assert_eq!(store.prune_app_invocations(busy.id, 10).await.unwrap(), 0);
    assert_eq!(store.prune_app_invocations(quiet.id, 10).await.unwrap(), 0);
}

struct NoSandbox;

impl ScriptCompiler for NoSandbox {
    fn check<'a>(&'a self, _source: &'a str) -> BoxFuture<'a, Result<(), CheckError>> {
        Box::pin(async { Ok(()) })
    }
}

struct NoRoutes;

impl RoutePublisher for NoRoutes {
    fn script_activated(&self, _script: &ActiveScript) {}
    fn script_removed(&self, _app_slug: &str, _script_name: &str) {}
    fn app_removed(&self, _app_slug: &str) {}
    fn domains_changed(&self, _app_slug: &str, _hosts: &[String]) {}
    fn routes_reloaded(&self, _scripts: &[ActiveScript], _domains: Vec<DomainRoute>) {}
}

/// Without the server's in-process feed (a manager in another process than
/// the orchestrator), a live tail polls the store; closing the tails ends it.
pub async fn a_live_tail_without_a_feed_polls_the_store(database: &TestDatabase) {
    let store = &database.store;
    let owner = store
        .create_user(&NewUser {
            username: "tailer".into(),
            email: "tailer@example.com".into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
                .into(),
            instance_role: InstanceRole::Owner,
        })
        .await
        .unwrap();
    let secret = auth::generate_token(API_TOKEN_PREFIX);
    store
        .create_api_token(owner.id, "tail", &auth::hash_token(&secret))
        .await
        .unwrap();
    let app = store.create_app("tail", "Tail").await.unwrap();
    store
        .insert_invocations(vec![record(app.id, "old", 200, Duration::ZERO, 1)])
        .await
        .unwrap();
    let state = ApiState::new(
        store.clone(),
        Arc::new(NoSandbox),
        Arc::new(NoRoutes),
        ApiConfig::default(),
    );
    let request = Request::get("/api/v1/apps/tail/invocations/stream")
        .header("authorization", format!("Bearer {secret}"))
        .body(Body::empty())
        .unwrap();
    let response = api_router(state.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body().into_data_stream();

    store
        .insert_invocations(vec![record(app.id, "new", 201, Duration::ZERO, 1)])
        .await
        .unwrap();
    let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
        .await
        .expect("the new record within the poll interval")
        .expect("an event")
        .unwrap();
    let text = String::from_utf8_lossy(&chunk).into_owned();
    assert!(text.starts_with("event: invocation\n"), "{text}");
    assert!(text.contains("\"script\":\"new\""), "{text}");
    assert!(
        !text.contains("\"script\":\"old\""),
        "only new records: {text}"
    );

    state.close_invocation_tails();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = body.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "closing the tails ends them");
}

pub async fn large_batches_keep_order_and_ids_never_repeat(database: &TestDatabase) {
    let store = &database.store;
    let app = store.create_app("busy", "Busy").await.unwrap();
    // More than one multi-row INSERT's worth, with a deleted app's records
    // mixed in.
    let batch: Vec<NewInvocation> = (0..1_203)
        .map(|n| {
            let app_id = if n % 100 == 7 { AppId(987_654) } else { app.id };
            let mut invocation = record(app_id, "bulk", 200, Duration::ZERO, 1);
            invocation.request_id = format!("bulk-{n}");
            invocation
        })
        .collect();
    let stored = store.insert_invocations(batch.clone()).await.unwrap();
    assert_eq!(stored.len(), 1_203 - 12);
    assert!(stored.windows(2).all(|pair| pair[0].id < pair[1].id));
    for stored in [&stored[0], &stored[600], &stored[1_190]] {
        let read = store.invocation(app.id, stored.id).await.unwrap().unwrap();
        assert_eq!(read.request_id, stored.request_id);
    }
    // Ids are not reused after the newest records are deleted.
    let last = stored.last().unwrap().id;
    store.delete_app(app.id).await.unwrap();
    let again = store.create_app("busy2", "Busy").await.unwrap();
    let next = store
        .insert_invocations(vec![record(again.id, "bulk", 200, Duration::ZERO, 1)])
        .await
        .unwrap();
    assert!(next[0].id > last, "{} after {last}", next[0].id);
}

/// Puts the database back to the schema before migration 6 (one row per
/// record), as a database of an older PiCloud has it: the next `migrate`
/// converts its rows.
async fn downgrade_to_record_rows(database: &TestDatabase) {
    let (table, prune_index) = match database.store.backend() {
        Backend::Sqlite => (
            include_str!("../../../../migrations/sqlite/0002_invocations.sql"),
            include_str!("../../../../migrations/sqlite/0005_invocations_prune_by_app.sql"),
        ),
        Backend::Postgres => (
            include_str!("../../../../migrations/postgres/0002_invocations.sql"),
            include_str!("../../../../migrations/postgres/0005_invocations_prune_by_app.sql"),
        ),
    };
    database
        .execute_raw(&format!(
            "DROP TABLE invocation_chunks; DROP TABLE invocation_ids; {table}; {prune_index}; \
             DELETE FROM _sqlx_migrations WHERE version = 6;"
        ))
        .await
        .unwrap();
}

pub async fn records_of_an_older_schema_survive_the_upgrade(database: &TestDatabase) {
    let app = database.store.create_app("legacy", "Legacy").await.unwrap();
    downgrade_to_record_rows(database).await;
    let hour_ago = Timestamp::now().before(Duration::from_secs(3600));
    let minute_ago = Timestamp::now().before(Duration::from_secs(60));
    let app_id = app.id.0;
    let (t1, t2) = (hour_ago.unix_millis(), minute_ago.unix_millis());
    // Three rows; the newest is deleted again, so the old sequence is ahead
    // of the highest id left.
    database
        .execute_raw(&format!(
            "INSERT INTO invocations (app_id, script_id, script_name, version_id, \"trigger\", \
             status, error_code, error_message, request_id, started_at, duration_us, fuel_used, \
             fuel_limit, memory_bytes, memory_limit_bytes, cold_start, output, output_truncated) \
             VALUES ({app_id}, 7, 'hello', 3, 'http', 200, NULL, NULL, 'old-1', {t1}, 1500, 10, \
                     100, 65536, 1048576, TRUE, \
                     '[{{\"level\":\"print\",\"text\":\"hi \\\"there\\\" ✓\"}}]', FALSE), \
                    ({app_id}, 8, 'cron job', 4, 'schedule', 500, 'script_error', \
                     'boom at line 2', 'old-2', {t2}, 2500, 20, 100, 65536, 1048576, FALSE, '[]', \
                     TRUE), \
                    ({app_id}, 7, 'hello', 3, 'http', 200, NULL, NULL, 'old-3', {t2}, 1, 1, 1, 1, \
                     1, FALSE, '[]', FALSE); \
             DELETE FROM invocations WHERE request_id = 'old-3';"
        ))
        .await
        .unwrap();

    let store = database.reconnect().await;
    assert_eq!(store.pending_migrations().await.unwrap(), 1);
    store.migrate().await.unwrap();

    let records = store
        .list_invocations(app.id, &InvocationFilter::default(), 10)
        .await
        .unwrap();
    let request_ids: Vec<&str> = records
        .iter()
        .map(|record| record.request_id.as_str())
        .collect();
    assert_eq!(request_ids, ["old-2", "old-1"], "newest first");
    let expected_first = NewInvocation {
        app_id: app.id,
        script_id: ScriptId(7),
        script_name: "hello".to_owned(),
        version_id: VersionId(3),
        trigger: "http".to_owned(),
        status: 200,
        error_code: None,
        error_message: None,
        request_id: "old-1".to_owned(),
        started_at: hour_ago,
        duration_us: 1500,
        fuel_used: 10,
        fuel_limit: 100,
        memory_bytes: 65536,
        memory_limit_bytes: 1_048_576,
        cold_start: true,
        output: vec![OutputLine {
            level: "print".to_owned(),
            text: "hi \"there\" ✓".to_owned(),
        }],
        output_truncated: false,
    };
    assert_eq!(records[1].invocation, expected_first);
    let failed = &records[0];
    assert_eq!(
        (
            failed.trigger.as_str(),
            failed.status,
            failed.error_code.as_deref()
        ),
        ("schedule", 500, Some("script_error"))
    );
    assert!(failed.output_truncated && !failed.cold_start);
    assert_eq!(
        store
            .invocation_by_request_id(app.id, "old-2")
            .await
            .unwrap()
            .map(|record| record.id),
        Some(failed.id)
    );
    let errors = store
        .list_invocations(
            app.id,
            &InvocationFilter {
                status: Some(StatusFilter::Error),
                ..InvocationFilter::default()
            },
            10,
        )
        .await
        .unwrap();
    assert_eq!(errors.len(), 1);

    // New records take ids after every id the old table handed out,
    // including the deleted one's.
    let new = store
        .insert_invocations(vec![record(app.id, "hello", 200, Duration::ZERO, 1)])
        .await
        .unwrap();
    assert!(
        new[0].id > failed.id + 1,
        "{} after {}",
        new[0].id,
        failed.id
    );
    assert_eq!(store.newest_invocation_id(app.id).await.unwrap(), new[0].id);
    store.close().await;
}

pub async fn chunks_are_trimmed_to_the_record(database: &TestDatabase) {
    let store = &database.store;
    let app = store.create_app("trim", "Trim").await.unwrap();
    let day = Duration::from_secs(24 * 60 * 60);
    // More than one chunk in one batch, ages alternating between old and
    // recent, so that every chunk straddles the age limit.
    let batch: Vec<NewInvocation> = (0..600)
        .map(|n| {
            let age = if n % 2 == 0 {
                day * 9
            } else {
                Duration::from_secs(n)
            };
            let mut invocation = record(app.id, "mixed", 200, age, 1);
            invocation.request_id = format!("mixed-{n}");
            invocation
        })
        .collect();
    let stored = store.insert_invocations(batch).await.unwrap();
    let outcome = store.prune_invocations(1_000, day * 7).await.unwrap();
    assert_eq!((outcome.too_old, outcome.over_count), (300, 0));
    let mut left = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .list_invocations(
                app.id,
                &InvocationFilter {
                    before,
                    ..InvocationFilter::default()
                },
                200,
            )
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        left.extend(page);
    }
    let odd_ids: Vec<i64> = stored
        .iter()
        .skip(1)
        .step_by(2)
        .rev()
        .map(|record| record.id)
        .collect();
    assert_eq!(
        left.iter().map(|record| record.id).collect::<Vec<_>>(),
        odd_ids
    );
    // A record of a trimmed chunk is still found by id and by request id.
    let middle = &stored[301];
    assert_eq!(
        store.invocation(app.id, middle.id).await.unwrap().unwrap(),
        *middle
    );
    assert!(
        store
            .invocation(app.id, stored[300].id)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .invocation_by_request_id(app.id, "mixed-301")
            .await
            .unwrap()
            .unwrap()
            .id,
        middle.id
    );
    assert!(
        store
            .invocation_by_request_id(app.id, "mixed-300")
            .await
            .unwrap()
            .is_none()
    );
    // The live tail's catch-up reads across chunks, oldest first.
    let after = store
        .invocations_after(app.id, stored[100].id, None, 200)
        .await
        .unwrap();
    assert_eq!(after.len(), 200);
    assert_eq!(after[0].id, stored[101].id);
    assert!(after.windows(2).all(|pair| pair[0].id < pair[1].id));
}
