//! Invocation records: their fields, and how the buffer batches, flushes and
//! drops them.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use picloud_executor_core::OutputLevel;
use picloud_orchestrator_core::{
    IDLE_AFTER, IngressConfig, InvocationRecord, RecordBuffer, RecordConfig, Trigger,
};

use crate::{MemorySink, TestServer, executor};

#[tokio::test]
async fn every_invocation_is_recorded_with_its_fields() {
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let server = TestServer::start().await;
    let deployed = server.deploy(
        "rec",
        "talk",
        "print(\"hello\");\ndebug(\"details\");\n\"done\"",
    );
    let response = server
        .client
        .get(server.url("/rec/talk/sub"))
        .header("x-request-id", "record-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "done");
    server.records.flush().await;

    let record = server
        .sink
        .for_request("record-1")
        .pop()
        .expect("the invocation is recorded");
    let version = &deployed.version;
    assert_eq!(
        (
            record.app_slug.as_str(),
            record.script_name.as_str(),
            record.script_id,
            record.version_id
        ),
        ("rec", "talk", deployed.script_id, version.version_id)
    );
    assert_eq!(
        (record.trigger, record.trigger.as_str()),
        (Trigger::Http, "http")
    );
    assert_eq!(
        (
            record.status,
            record.error_code.as_deref(),
            record.error_message.as_deref()
        ),
        (200, None, None)
    );
    assert!(record.started_at_unix_ms >= before);
    assert!(record.duration_us > 0);
    assert!(record.fuel_used > 0 && record.fuel_used < record.fuel_limit);
    assert_eq!(record.fuel_limit, version.limits.fuel);
    assert!(record.memory_bytes > 0 && record.memory_bytes <= record.memory_limit_bytes);
    assert_eq!(record.memory_limit_bytes, version.limits.memory_bytes);
    assert!(record.cold_start, "the first request compiles the script");
    assert_eq!(record.output.len(), 2);
    assert_eq!(record.output[0], (OutputLevel::Print, "hello".to_owned()));
    assert_eq!(record.output[1].0, OutputLevel::Debug);
    assert!(!record.output_truncated);

    server
        .client
        .get(server.url("/rec/talk"))
        .header("x-request-id", "record-2")
        .send()
        .await
        .unwrap();
    server.records.flush().await;
    assert!(
        !server.sink.for_request("record-2")[0].cold_start,
        "the second request finds a warm instance"
    );
    // Unknown paths are not invocations.
    server
        .client
        .get(server.url("/rec/nothing"))
        .header("x-request-id", "record-3")
        .send()
        .await
        .unwrap();
    server.records.flush().await;
    assert!(server.sink.for_request("record-3").is_empty());
    server.stop().await;
}

#[tokio::test]
async fn refused_requests_and_long_output_are_recorded_too() {
    let records = RecordConfig {
        max_output_bytes: 10,
        ..RecordConfig::default()
    };
    let config = IngressConfig {
        max_body_bytes: 4,
        records,
        ..IngressConfig::default()
    };
    let server = TestServer::start_with(executor(), config, axum::Router::new()).await;
    server.deploy("rec", "loud", "for i in 0..10 { print(\"0123\"); }\n\"ok\"");

    server
        .client
        .post(server.url("/rec/loud"))
        .header("x-request-id", "big")
        .body("12345")
        .send()
        .await
        .unwrap();
    server
        .client
        .get(server.url("/rec/loud"))
        .header("x-request-id", "loud")
        .send()
        .await
        .unwrap();
    server.records.flush().await;

    let refused = server.sink.for_request("big").pop().unwrap();
    assert_eq!(
        (refused.status, refused.error_code.as_deref()),
        (413, Some("payload_too_large"))
    );
    assert_eq!(refused.fuel_used, 0);
    let loud = server.sink.for_request("loud").pop().unwrap();
    assert_eq!(loud.output.len(), 2, "two 4-byte lines fit in 10 bytes");
    assert!(loud.output_truncated);
    server.stop().await;
}

fn record(request_id: &str) -> InvocationRecord {
    InvocationRecord {
        request_id: request_id.into(),
        app_id: 1,
        app_slug: "app".into(),
        script_name: "script".into(),
        script_id: 1,
        version_id: 1,
        trigger: Trigger::Http,
        status: 200,
        error_code: None,
        started_at_unix_ms: 0,
        duration_us: 0,
        fuel_used: 0,
        fuel_limit: 0,
        memory_bytes: 0,
        memory_limit_bytes: 0,
        cold_start: false,
        output: Vec::new(),
        output_truncated: false,
        error_message: None,
    }
}

fn ids(sink: &MemorySink) -> Vec<String> {
    sink.records
        .lock()
        .unwrap()
        .iter()
        .map(|record| record.request_id.clone())
        .collect()
}

#[tokio::test]
async fn a_full_buffer_drops_its_oldest_records_and_counts_them() {
    let sink = Arc::new(MemorySink::default());
    let config = RecordConfig {
        capacity: 2,
        batch_size: 100,
        flush_interval_ms: 3_600_000,
        ..RecordConfig::default()
    };
    let buffer = RecordBuffer::start(config, sink.clone());
    for id in ["1", "2", "3"] {
        buffer.push(record(id));
    }
    assert_eq!((buffer.pending(), buffer.dropped()), (2, 1));
    buffer.flush().await;
    assert_eq!(ids(&sink), ["2", "3"]);
    assert_eq!((buffer.pending(), buffer.written()), (0, 2));
    buffer.shutdown().await;
}

#[tokio::test]
async fn a_full_batch_is_written_at_once_and_the_rest_after_the_interval() {
    let sink = Arc::new(MemorySink::default());
    let config = RecordConfig {
        capacity: 100,
        batch_size: 3,
        flush_interval_ms: 200,
        ..RecordConfig::default()
    };
    let buffer = RecordBuffer::start(config, sink.clone());
    for id in ["1", "2", "3", "4"] {
        buffer.push(record(id));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ids(&sink).len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the full batch is written without a flush"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    while ids(&sink).len() < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "the last record is written after the interval"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ids(&sink), ["1", "2", "3", "4"]);
    assert!(sink.batches.load(Ordering::Relaxed) >= 2);
    buffer.shutdown().await;
}

#[tokio::test]
async fn shutdown_writes_what_is_left() {
    let sink = Arc::new(MemorySink::default());
    let config = RecordConfig {
        flush_interval_ms: 3_600_000,
        ..RecordConfig::default()
    };
    let buffer = RecordBuffer::start(config, sink.clone());
    buffer.push(record("last"));
    buffer.shutdown().await;
    assert_eq!(ids(&sink), ["last"]);
}

#[tokio::test(start_paused = true)]
async fn the_sink_hears_once_when_traffic_stops_and_never_at_rest() {
    let sink = Arc::new(MemorySink::default());
    let config = RecordConfig {
        flush_interval_ms: 100,
        ..RecordConfig::default()
    };
    let buffer = RecordBuffer::start(config, sink.clone());
    let idles = || sink.idles.load(Ordering::Relaxed);
    tokio::time::sleep(IDLE_AFTER * 6).await;
    assert_eq!(idles(), 0, "a buffer that never saw a record is not told");

    buffer.push(record("a"));
    tokio::time::sleep(IDLE_AFTER / 2).await;
    assert_eq!((ids(&sink).len(), idles()), (1, 0), "written, not idle yet");
    buffer.push(record("b"));
    tokio::time::sleep(IDLE_AFTER / 2 + Duration::from_millis(200)).await;
    assert_eq!(idles(), 0, "the wait starts again after each batch");
    tokio::time::sleep(IDLE_AFTER).await;
    assert_eq!(idles(), 1, "told once the traffic stopped");
    tokio::time::sleep(IDLE_AFTER * 6).await;
    assert_eq!(idles(), 1, "and only once");

    buffer.push(record("c"));
    tokio::time::sleep(IDLE_AFTER * 2).await;
    assert_eq!(
        (ids(&sink).len(), idles()),
        (3, 2),
        "again after new traffic"
    );
    buffer.shutdown().await;
}

/// A sink that takes `delay` to write each batch.
struct SlowSink {
    inner: MemorySink,
    delay: Duration,
}

impl picloud_orchestrator_core::RecordSink for SlowSink {
    fn write_batch(
        &self,
        batch: Vec<InvocationRecord>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            picloud_orchestrator_core::RecordSink::write_batch(&self.inner, batch).await;
        })
    }
}

#[tokio::test(start_paused = true)]
async fn records_that_arrive_during_a_write_wait_for_their_own_batch() {
    let sink = Arc::new(SlowSink {
        inner: MemorySink::default(),
        delay: Duration::from_millis(50),
    });
    let config = RecordConfig {
        batch_size: 100,
        flush_interval_ms: 1_000,
        ..RecordConfig::default()
    };
    let buffer = RecordBuffer::start(config, sink.clone());
    let batches = || sink.inner.batches.load(Ordering::Relaxed);
    for n in 0..100 {
        buffer.push(record(&format!("first-{n}")));
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    for n in 0..10 {
        buffer.push(record(&format!("later-{n}")));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        (batches(), buffer.written(), buffer.pending()),
        (1, 100, 10),
        "the full batch is written; the 10 that came meanwhile are not chased with a small one"
    );
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!((batches(), buffer.written(), buffer.pending()), (2, 110, 0));
    buffer.shutdown().await;
}
