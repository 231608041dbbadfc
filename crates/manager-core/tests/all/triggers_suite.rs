//! Store cases for cron schedules and the async-invocation queue, run on
//! both backends by `run_store_suite!`.

use std::time::Duration;

use picloud_manager_core::{
    AppId, AsyncFailure, AsyncResult, AsyncStatus, InstanceRole, NewAsyncInvocation, NewSchedule,
    NewUser, ScheduleId, ScheduleUpdate, ScriptId, StoreError, Timestamp,
};
use serde_json::json;

use crate::harness::TestDatabase;

/// 2030-01-01T00:00:00Z, a Tuesday.
const T0: i64 = 1_893_456_000_000;
const MINUTE: i64 = 60_000;

fn at(millis: i64) -> Timestamp {
    Timestamp::from_unix_millis(millis)
}

/// An app `shop` with an owner and a deployed script `tick`.
async fn app_with_script(database: &TestDatabase) -> (AppId, ScriptId) {
    let store = &database.store;
    let owner = store
        .create_user(&NewUser {
            username: "root".into(),
            email: "root@example.com".into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
                .into(),
            instance_role: InstanceRole::Owner,
        })
        .await
        .unwrap();
    let app = store.create_app("shop", "Shop").await.unwrap();
    let version = store
        .deploy(app.id, "tick", r#""tick""#, owner.id)
        .await
        .unwrap();
    (app.id, version.script_id)
}

fn every_minute(script_id: ScriptId) -> NewSchedule {
    NewSchedule {
        script_id,
        cron: "* * * * *".into(),
        timezone: None,
        payload: Some(json!({"job": "cleanup"})),
        enabled: true,
        created_by: None,
    }
}

#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(result: Result<T, StoreError>, expected_field: &str) {
    match result {
        Err(StoreError::Invalid { field, .. }) => assert_eq!(field, expected_field),
        other => panic!("expected invalid {expected_field}, got {other:?}"),
    }
}

pub async fn schedules_are_created_listed_updated_and_deleted(database: &TestDatabase) {
    let store = &database.store;
    let (app_id, script_id) = app_with_script(database).await;
    let now = at(T0 + 30_000);
    let created = store
        .create_schedule(app_id, &every_minute(script_id), now)
        .await
        .unwrap();
    assert_eq!(created.script, "tick");
    assert_eq!(created.timezone, "UTC");
    assert_eq!(created.payload, Some(json!({"job": "cleanup"})));
    assert_eq!(
        created.next_run_at,
        at(T0 + MINUTE),
        "the first tick after now"
    );
    assert_eq!(created.last_run_at, None);
    assert_eq!(
        store.list_schedules(app_id).await.unwrap(),
        std::slice::from_ref(&created)
    );

    // 09:00 every day in Paris is 08:00 UTC in winter.
    let updated = store
        .update_schedule(
            app_id,
            created.id,
            &ScheduleUpdate {
                cron: Some("0 9 * * *".into()),
                timezone: Some("Europe/Paris".into()),
                payload: Some(None),
                ..ScheduleUpdate::default()
            },
            now,
        )
        .await
        .unwrap();
    assert_eq!(updated.next_run_at, at(T0 + 8 * 60 * MINUTE));
    assert_eq!(updated.payload, None);
    let disabled = store
        .update_schedule(
            app_id,
            created.id,
            &ScheduleUpdate {
                enabled: Some(false),
                ..ScheduleUpdate::default()
            },
            now,
        )
        .await
        .unwrap();
    assert!(!disabled.enabled);
    assert_eq!(disabled.cron, "0 9 * * *");
    assert_eq!(store.next_schedule_due().await.unwrap(), None);

    store.delete_schedule(app_id, created.id).await.unwrap();
    assert!(matches!(
        store.delete_schedule(app_id, created.id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.schedule(app_id, ScheduleId(987_654)).await,
        Err(StoreError::NotFound { .. })
    ));
    // A script of another app cannot be scheduled here.
    let other = store.create_app("other", "Other").await.unwrap();
    assert!(matches!(
        store
            .create_schedule(other.id, &every_minute(script_id), now)
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn bad_cron_expressions_and_time_zones_are_refused(database: &TestDatabase) {
    let store = &database.store;
    let (app_id, script_id) = app_with_script(database).await;
    let now = at(T0);
    for cron in [
        "",
        "* * * *",
        "0 * * * * *",
        "61 * * * *",
        "every minute",
        "@sometimes",
    ] {
        let schedule = NewSchedule {
            cron: cron.into(),
            ..every_minute(script_id)
        };
        assert_invalid(store.create_schedule(app_id, &schedule, now).await, "cron");
    }
    let schedule = NewSchedule {
        timezone: Some("Mars/Olympus_Mons".into()),
        ..every_minute(script_id)
    };
    assert_invalid(
        store.create_schedule(app_id, &schedule, now).await,
        "timezone",
    );
    for cron in [
        "@hourly",
        "@daily",
        "@midnight",
        "@weekly",
        "@monthly",
        "@yearly",
        "*/5 * * * 1-5",
    ] {
        let schedule = NewSchedule {
            cron: cron.into(),
            ..every_minute(script_id)
        };
        store
            .create_schedule(app_id, &schedule, now)
            .await
            .unwrap_or_else(|error| panic!("{cron}: {error}"));
    }
    assert!(store.list_schedules(app_id).await.unwrap().len() == 7);
}

pub async fn a_due_tick_is_claimed_once_across_nodes_and_missed_ticks_run_once(
    database: &TestDatabase,
) {
    let (app_id, script_id) = app_with_script(database).await;
    let node_a = database.store.clone();
    let node_b = database.reconnect().await;
    let schedule = node_a
        .create_schedule(app_id, &every_minute(script_id), at(T0))
        .await
        .unwrap();
    assert_eq!(
        node_a.next_schedule_due().await.unwrap(),
        Some(at(T0 + MINUTE))
    );
    assert!(
        node_a
            .claim_due_schedules(at(T0 + 59_999), 10)
            .await
            .unwrap()
            .is_empty()
    );

    for minute in 1..=5 {
        let now = at(T0 + minute * MINUTE + 150);
        let (a, b) = tokio::join!(
            node_a.claim_due_schedules(now, 10),
            node_b.claim_due_schedules(now, 10)
        );
        let claimed: Vec<_> = a.unwrap().into_iter().chain(b.unwrap()).collect();
        assert_eq!(claimed.len(), 1, "minute {minute}: {claimed:?}");
        assert_eq!(claimed[0].schedule_id, schedule.id);
        assert_eq!(claimed[0].scheduled_for, at(T0 + minute * MINUTE));
        assert_eq!(claimed[0].app_slug, "shop");
        assert_eq!(claimed[0].script_name, "tick");
        assert_eq!(claimed[0].payload.as_deref(), Some(r#"{"job":"cleanup"}"#));
    }

    // Down for an hour: the missed ticks run once, then the next future tick.
    let after_downtime = at(T0 + 65 * MINUTE + 10_000);
    let claimed = node_b
        .claim_due_schedules(after_downtime, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].scheduled_for, at(T0 + 6 * MINUTE));
    assert_eq!(claimed[0].next_run_at, at(T0 + 66 * MINUTE));
    assert!(
        node_a
            .claim_due_schedules(after_downtime, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let stored = node_a.schedule(app_id, schedule.id).await.unwrap();
    assert_eq!(stored.last_run_at, Some(after_downtime));
    assert_eq!(stored.next_run_at, at(T0 + 66 * MINUTE));
    node_b.close().await;
}

fn new_job(app_id: AppId, script_id: ScriptId, max_attempts: u32) -> NewAsyncInvocation {
    NewAsyncInvocation {
        app_id,
        script_id,
        request_id: "req-1".into(),
        method: "POST".into(),
        path: "/shop/tick/orders".into(),
        subpath: "/orders".into(),
        query: vec![("a".into(), "1".into())],
        headers: vec![("prefer".into(), "respond-async".into())],
        body: b"{\"n\":1}".to_vec(),
        max_attempts,
    }
}

pub async fn async_jobs_are_claimed_once_completed_and_retried_until_failed(
    database: &TestDatabase,
) {
    let (app_id, script_id) = app_with_script(database).await;
    let store = &database.store;
    let other_node = database.reconnect().await;
    let lease = Duration::from_secs(60);
    assert_invalid(
        store
            .enqueue_async(&new_job(app_id, script_id, 0), at(T0))
            .await,
        "max_attempts",
    );

    // Succeeds on the first run.
    let id = store
        .enqueue_async(&new_job(app_id, script_id, 3), at(T0))
        .await
        .unwrap();
    assert_eq!(store.async_queue_depth().await.unwrap(), 1);
    assert_eq!(store.next_async_due().await.unwrap(), Some(at(T0)));
    let (a, b) = tokio::join!(
        store.claim_async("a", at(T0 + 1), lease),
        other_node.claim_async("b", at(T0 + 1), lease)
    );
    let (holder, loser, job) = match (a.unwrap(), b.unwrap()) {
        (Some(job), None) => ("a", "b", job),
        (None, Some(job)) => ("b", "a", job),
        other => panic!("exactly one worker gets the job: {other:?}"),
    };
    assert_eq!(job.id, id);
    assert_eq!((job.attempt, job.max_attempts), (1, 3));
    assert_eq!(
        (job.app_slug.as_str(), job.script_name.as_str()),
        ("shop", "tick")
    );
    assert_eq!(job.subpath, "/orders");
    assert_eq!(job.query, [("a".to_owned(), "1".to_owned())]);
    assert_eq!(job.body, b"{\"n\":1}");
    assert_eq!(
        store.async_invocation(app_id, &id).await.unwrap().status,
        AsyncStatus::Running
    );
    let result = AsyncResult {
        status: 201,
        headers: vec![("content-type".into(), "text/plain".into())],
        body: b"done".to_vec(),
    };
    assert!(
        !store
            .complete_async(&id, loser, &result, at(T0 + 2))
            .await
            .unwrap(),
        "only the holder may complete a job"
    );
    assert!(
        store
            .complete_async(&id, holder, &result, at(T0 + 3))
            .await
            .unwrap()
    );
    let done = store.async_invocation(app_id, &id).await.unwrap();
    assert_eq!(done.status, AsyncStatus::Succeeded);
    assert_eq!(done.result, Some(result));
    assert_eq!(done.attempts, 1);
    assert_eq!(done.finished_at, Some(at(T0 + 3)));
    assert_eq!(store.async_queue_depth().await.unwrap(), 0);

    // Fails every time: retried at the given time, then failed.
    let id = store
        .enqueue_async(&new_job(app_id, script_id, 2), at(T0))
        .await
        .unwrap();
    let job = store
        .claim_async("a", at(T0 + 10), lease)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.attempt, 1);
    let outcome = store
        .fail_async(&id, "a", "boom", at(T0 + 20), at(T0 + 1_020))
        .await
        .unwrap();
    assert_eq!(outcome, AsyncFailure::Retry(at(T0 + 1_020)));
    let queued = store.async_invocation(app_id, &id).await.unwrap();
    assert_eq!(queued.status, AsyncStatus::Queued);
    assert_eq!(queued.error.as_deref(), Some("boom"));
    assert!(
        store
            .claim_async("a", at(T0 + 1_019), lease)
            .await
            .unwrap()
            .is_none()
    );
    let job = store
        .claim_async("b", at(T0 + 1_020), lease)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.attempt, 2);
    assert_eq!(
        store
            .fail_async(&id, "a", "not mine", at(T0 + 1_030), at(T0 + 9_999))
            .await
            .unwrap(),
        AsyncFailure::LeaseLost
    );
    let outcome = store
        .fail_async(&id, "b", "boom again", at(T0 + 1_030), at(T0 + 9_999))
        .await
        .unwrap();
    assert_eq!(outcome, AsyncFailure::Failed);
    let failed = store.async_invocation(app_id, &id).await.unwrap();
    assert_eq!(failed.status, AsyncStatus::Failed);
    assert_eq!(failed.attempts, 2);
    assert_eq!(failed.error.as_deref(), Some("boom again"));
    assert_eq!(failed.finished_at, Some(at(T0 + 1_030)));
    assert!(
        store
            .claim_async("a", at(T0 + 99_999), lease)
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        store.async_invocation(app_id, "no-such-id").await,
        Err(StoreError::NotFound { .. })
    ));
    other_node.close().await;
}

pub async fn a_job_whose_worker_died_is_claimed_again_after_its_lease(database: &TestDatabase) {
    let (app_id, script_id) = app_with_script(database).await;
    let store = &database.store;
    let lease = Duration::from_secs(60);
    let id = store
        .enqueue_async(&new_job(app_id, script_id, 2), at(T0))
        .await
        .unwrap();
    store
        .claim_async("dead", at(T0), lease)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.next_async_due().await.unwrap(), Some(at(T0 + 60_000)));
    assert!(
        store
            .claim_async("alive", at(T0 + 59_999), lease)
            .await
            .unwrap()
            .is_none()
    );
    let job = store
        .claim_async("alive", at(T0 + 60_000), lease)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((job.id.as_str(), job.attempt), (id.as_str(), 2));
    // The dead worker's late answer is ignored.
    assert!(
        !store
            .complete_async(&id, "dead", &AsyncResult::default(), at(T0 + 60_001))
            .await
            .unwrap()
    );
    // The second holder dies too, on its last attempt: the job fails.
    assert!(
        store
            .claim_async("third", at(T0 + 200_000), lease)
            .await
            .unwrap()
            .is_none()
    );
    let failed = store.async_invocation(app_id, &id).await.unwrap();
    assert_eq!(failed.status, AsyncStatus::Failed);
    assert!(failed.error.unwrap().contains("stopped"));
}

pub async fn deleting_a_script_removes_its_schedules_and_jobs(database: &TestDatabase) {
    let (app_id, script_id) = app_with_script(database).await;
    let store = &database.store;
    store
        .create_schedule(app_id, &every_minute(script_id), at(T0))
        .await
        .unwrap();
    let id = store
        .enqueue_async(&new_job(app_id, script_id, 1), at(T0))
        .await
        .unwrap();
    store.delete_script(script_id).await.unwrap();
    assert!(store.list_schedules(app_id).await.unwrap().is_empty());
    assert!(matches!(
        store.async_invocation(app_id, &id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(
        store
            .claim_due_schedules(at(T0 + 99 * MINUTE), 10)
            .await
            .unwrap()
            .is_empty()
    );
}
