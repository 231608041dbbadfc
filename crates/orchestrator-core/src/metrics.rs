//! PiCloud's metrics: the name of every series, what feeds it, and the
//! Prometheus recorder that `picloud serve` installs.
//!
//! Series are emitted through the [`metrics`] facade (`counter!`,
//! `histogram!`, `gauge!`), so any crate can add one without touching this
//! module: name it here as a constant, describe it in [`describe`] and in
//! `docs/observability.md`, and emit it where the event happens. Until a
//! recorder is installed (library tests, tools), emitting costs one atomic
//! load and records nothing.
//!
//! - Per invocation: [`observe_invocation`], called by the ingress for every
//!   [`InvocationRecord`], through handles each script keeps ([`ScriptSeries`]).
//! - Sampled when the endpoint renders: [`observe_executor`] (warm pools,
//!   instances created, evicted, discarded) and [`observe_record_buffer`].
//! - Emitted by their own subsystems: [`QUEUE_DEPTH`] and
//!   [`SCHEDULE_LAG_SECONDS`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use metrics::{Counter, Histogram, Unit, histogram};
use metrics::{SharedString, counter, describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
pub use metrics_exporter_prometheus::{PrometheusHandle, PrometheusRecorder};
use picloud_executor_core::ExecutorStats;

use crate::records::{InvocationRecord, RecordBuffer, Trigger};

/// Counter: invocations, by `app`, `script`, `trigger` (`http`, ...) and
/// `status` (the HTTP status code sent, as a string such as `"200"`).
pub const INVOCATIONS_TOTAL: &str = "picloud_invocations_total";
/// Histogram, seconds: how long an invocation took, by `app` and `script`
/// (buckets [`DURATION_BUCKETS_SECONDS`]).
pub const INVOCATION_DURATION_SECONDS: &str = "picloud_invocation_duration_seconds";
/// Counter: fuel the scripts used, by `app` and `script`.
pub const FUEL_USED_TOTAL: &str = "picloud_fuel_used_total";
/// Counter: invocations that had to compile their script first (no warm
/// instance was free), by `app` and `script`.
pub const COLD_STARTS_TOTAL: &str = "picloud_cold_starts_total";
/// Gauge: idle instances waiting in the executor's warm pools.
pub const WARM_INSTANCES: &str = "picloud_warm_instances";
/// Gauge: script versions with a warm pool (used within the idle timeout).
pub const SCRIPT_POOLS: &str = "picloud_script_pools";
/// Gauge: invocations running now.
pub const ACTIVE_INVOCATIONS: &str = "picloud_active_invocations";
/// Counter: instances created (cold starts and deploy-time preparation).
pub const INSTANCES_CREATED_TOTAL: &str = "picloud_instances_created_total";
/// Counter: invocations served by an instance that was already warm.
pub const WARM_STARTS_TOTAL: &str = "picloud_warm_starts_total";
/// Counter: idle instances dropped (expired, version retired, pool full).
pub const INSTANCES_EVICTED_TOTAL: &str = "picloud_instances_evicted_total";
/// Counter: instances thrown away after a trap, a host-enforced limit or
/// memory growth.
pub const INSTANCES_DISCARDED_TOTAL: &str = "picloud_instances_discarded_total";
/// Counter: invocation records dropped because the in-memory buffer was full.
pub const RECORDS_DROPPED_TOTAL: &str = "picloud_records_dropped_total";
/// Gauge, reserved for the async-invocation queue: invocations queued and
/// not yet started.
pub const QUEUE_DEPTH: &str = "picloud_queue_depth";
/// Histogram, seconds, reserved for the scheduler: how late a schedule tick
/// started after its due time (buckets [`SCHEDULE_LAG_BUCKETS_SECONDS`]).
pub const SCHEDULE_LAG_SECONDS: &str = "picloud_schedule_lag_seconds";

/// Upper bounds of the [`INVOCATION_DURATION_SECONDS`] buckets: 1 ms to
/// 30 s (the longest request timeout by default).
pub const DURATION_BUCKETS_SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Upper bounds of the [`SCHEDULE_LAG_BUCKETS_SECONDS`] buckets: 10 ms to
/// 10 minutes.
pub const SCHEDULE_LAG_BUCKETS_SECONDS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0,
];

/// Histograms keep their raw samples until an upkeep folds them into
/// buckets; running one every this many invocations bounds that memory
/// without a timer (no CPU at rest).
const INVOCATIONS_PER_UPKEEP: u64 = 1024;

static INSTALLED: OnceLock<PrometheusHandle> = OnceLock::new();
static INVOCATIONS_SINCE_START: AtomicU64 = AtomicU64::new(0);

/// A Prometheus recorder with PiCloud's histogram buckets and no HTTP
/// listener of its own: render it with [`PrometheusHandle::render`] from
/// any endpoint. Use it as is in tests (`metrics::with_local_recorder`);
/// servers call [`install`].
pub fn recorder() -> PrometheusRecorder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(INVOCATION_DURATION_SECONDS.to_owned()),
            DURATION_BUCKETS_SECONDS,
        )
        .and_then(|builder| {
            builder.set_buckets_for_metric(
                Matcher::Full(SCHEDULE_LAG_SECONDS.to_owned()),
                SCHEDULE_LAG_BUCKETS_SECONDS,
            )
        })
        .expect("the bucket lists are not empty")
        .build_recorder()
}

/// Installs [`recorder`] as the process's global recorder, describes every
/// series, and returns the handle that renders them. Installing twice
/// returns the first handle; fails only when another recorder was installed
/// by someone else.
pub fn install() -> Result<PrometheusHandle, metrics::SetRecorderError<PrometheusRecorder>> {
    if let Some(handle) = INSTALLED.get() {
        return Ok(handle.clone());
    }
    let recorder = recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)?;
    let handle = INSTALLED.get_or_init(|| handle).clone();
    describe();
    Ok(handle)
}

/// Describes every series (help text and unit) to the installed recorder.
pub fn describe() {
    describe_counter!(
        INVOCATIONS_TOTAL,
        "Invocations by app, script, trigger and HTTP status."
    );
    describe_histogram!(
        INVOCATION_DURATION_SECONDS,
        Unit::Seconds,
        "How long invocations took, by app and script."
    );
    describe_counter!(FUEL_USED_TOTAL, "Fuel used by scripts, by app and script.");
    describe_counter!(
        COLD_STARTS_TOTAL,
        "Invocations that compiled their script first, by app and script."
    );
    describe_gauge!(WARM_INSTANCES, "Idle instances in the warm pools.");
    describe_gauge!(
        SCRIPT_POOLS,
        "Script versions with a warm pool (used within the idle timeout)."
    );
    describe_gauge!(ACTIVE_INVOCATIONS, "Invocations running now.");
    describe_counter!(INSTANCES_CREATED_TOTAL, "Sandbox instances created.");
    describe_counter!(
        WARM_STARTS_TOTAL,
        "Invocations served by an already warm instance."
    );
    describe_counter!(
        INSTANCES_EVICTED_TOTAL,
        "Idle instances dropped: expired, version retired or pool full."
    );
    describe_counter!(
        INSTANCES_DISCARDED_TOTAL,
        "Instances thrown away after a trap, a limit or memory growth."
    );
    describe_counter!(
        RECORDS_DROPPED_TOTAL,
        "Invocation records dropped because the buffer was full."
    );
    describe_gauge!(QUEUE_DEPTH, "Async invocations queued and not yet started.");
    describe_histogram!(
        SCHEDULE_LAG_SECONDS,
        Unit::Seconds,
        "How late schedule ticks started after their due time."
    );
}

/// The series [`observe_invocation`] feeds for one script, registered with
/// the recorder on the script's first invocation and kept with it
/// ([`ActiveScript::series`](crate::ActiveScript::series)): looking a
/// labelled series up costs the recorder a dozen allocations and a hash
/// lookup per series, which every request paid before.
///
/// A clone starts empty and registers its own handles (they point at the
/// same series). Handles belong to the recorder current when they were
/// registered, so install the recorder before the first invocation.
#[derive(Default)]
pub struct ScriptSeries {
    registered: OnceLock<Registered>,
}

struct Registered {
    duration: Histogram,
    fuel_used: Counter,
    cold_starts: Counter,
    /// [`INVOCATIONS_TOTAL`] by trigger and status, as they are first seen;
    /// a script answers with a handful of statuses at most.
    invocations: Mutex<Vec<(Trigger, u16, Counter)>>,
    app: SharedString,
    script: SharedString,
}

impl Clone for ScriptSeries {
    fn clone(&self) -> Self {
        ScriptSeries::default()
    }
}

impl std::fmt::Debug for ScriptSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptSeries")
            .field("registered", &self.registered.get().is_some())
            .finish()
    }
}

impl ScriptSeries {
    fn registered(&self, record: &InvocationRecord) -> &Registered {
        self.registered.get_or_init(|| {
            let app = SharedString::from_shared(Arc::<str>::from(record.app_slug.as_str()));
            let script = SharedString::from_shared(Arc::<str>::from(record.script_name.as_str()));
            Registered {
                duration: histogram!(
                    INVOCATION_DURATION_SECONDS,
                    "app" => app.clone(),
                    "script" => script.clone(),
                ),
                fuel_used: counter!(FUEL_USED_TOTAL, "app" => app.clone(), "script" => script.clone()),
                cold_starts: counter!(COLD_STARTS_TOTAL, "app" => app.clone(), "script" => script.clone()),
                invocations: Mutex::new(Vec::new()),
                app,
                script,
            }
        })
    }
}

/// Counts one finished invocation of the script `series` belongs to:
/// [`INVOCATIONS_TOTAL`], [`INVOCATION_DURATION_SECONDS`],
/// [`FUEL_USED_TOTAL`] and [`COLD_STARTS_TOTAL`].
pub fn observe_invocation(record: &InvocationRecord, series: &ScriptSeries) {
    let registered = series.registered(record);
    {
        let mut known = registered.invocations.lock().unwrap();
        let seen = known.iter().position(|(trigger, status, _)| {
            *trigger == record.trigger && *status == record.status
        });
        let index = seen.unwrap_or_else(|| {
            let counter = counter!(
                INVOCATIONS_TOTAL,
                "app" => registered.app.clone(),
                "script" => registered.script.clone(),
                "trigger" => record.trigger.as_str(),
                "status" => status_label(record.status),
            );
            known.push((record.trigger, record.status, counter));
            known.len() - 1
        });
        known[index].2.increment(1);
    }
    registered
        .duration
        .record(record.duration_us as f64 / 1_000_000.0);
    registered.fuel_used.increment(record.fuel_used);
    // Incremented by 0 on a warm start, so the series exists from the first
    // invocation and rates work.
    registered
        .cold_starts
        .increment(u64::from(record.cold_start));

    let count = INVOCATIONS_SINCE_START.fetch_add(1, Ordering::Relaxed) + 1;
    if count.is_multiple_of(INVOCATIONS_PER_UPKEEP)
        && let Some(handle) = INSTALLED.get()
    {
        handle.run_upkeep();
    }
}

/// Sets the executor's gauges and counters from a snapshot of its stats;
/// call it right before rendering.
pub fn observe_executor(stats: &ExecutorStats) {
    gauge!(WARM_INSTANCES).set(stats.warm_instances as f64);
    gauge!(SCRIPT_POOLS).set(stats.script_pools as f64);
    gauge!(ACTIVE_INVOCATIONS).set(stats.active_invocations as f64);
    counter!(INSTANCES_CREATED_TOTAL).absolute(stats.instances_created);
    counter!(WARM_STARTS_TOTAL).absolute(stats.warm_starts);
    counter!(INSTANCES_EVICTED_TOTAL).absolute(stats.instances_evicted);
    counter!(INSTANCES_DISCARDED_TOTAL).absolute(stats.instances_discarded);
}

/// Sets [`RECORDS_DROPPED_TOTAL`] from the buffer; call it right before
/// rendering.
pub fn observe_record_buffer(records: &RecordBuffer) {
    counter!(RECORDS_DROPPED_TOTAL).absolute(records.dropped());
}

/// The status code as a `'static` label value, without allocating: every
/// code from 100 to 599 is formatted once.
fn status_label(status: u16) -> SharedString {
    static LABELS: OnceLock<Vec<String>> = OnceLock::new();
    let labels = LABELS.get_or_init(|| (100..600).map(|code| code.to_string()).collect());
    match status
        .checked_sub(100)
        .and_then(|index| labels.get(usize::from(index)))
    {
        Some(label) => SharedString::const_str(label.as_str()),
        None => SharedString::from(status.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(script: &str, status: u16, cold_start: bool) -> InvocationRecord {
        InvocationRecord {
            request_id: "r".into(),
            app_id: 1,
            app_slug: "shop".into(),
            script_name: script.into(),
            script_id: 1,
            version_id: 1,
            trigger: Trigger::Http,
            status,
            error_code: None,
            started_at_unix_ms: 0,
            duration_us: 1_500,
            fuel_used: 1_000,
            fuel_limit: 10_000,
            memory_bytes: 0,
            memory_limit_bytes: 0,
            cold_start,
            output: Vec::new(),
            output_truncated: false,
            error_message: None,
        }
    }

    #[test]
    fn invocations_are_counted_by_app_script_trigger_and_status() {
        let recorder = recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe();
            let series = ScriptSeries::default();
            observe_invocation(&record("orders", 200, true), &series);
            observe_invocation(&record("orders", 200, false), &series);
            observe_invocation(&record("orders", 500, false), &series);
            // A copy of a script (a new version) counts into the same series.
            observe_invocation(&record("orders", 200, false), &series.clone());
            observe_executor(&ExecutorStats {
                warm_instances: 3,
                script_pools: 2,
                instances_created: 7,
                ..ExecutorStats::default()
            });
        });
        let text = handle.render();
        for line in [
            r#"picloud_invocations_total{app="shop",script="orders",trigger="http",status="200"} 3"#,
            r#"picloud_invocations_total{app="shop",script="orders",trigger="http",status="500"} 1"#,
            r#"picloud_invocation_duration_seconds_bucket{app="shop",script="orders",le="0.0025"} 4"#,
            r#"picloud_invocation_duration_seconds_bucket{app="shop",script="orders",le="0.001"} 0"#,
            r#"picloud_invocation_duration_seconds_count{app="shop",script="orders"} 4"#,
            r#"picloud_fuel_used_total{app="shop",script="orders"} 4000"#,
            r#"picloud_cold_starts_total{app="shop",script="orders"} 1"#,
            "picloud_warm_instances 3",
            "picloud_script_pools 2",
            "picloud_instances_created_total 7",
            "# TYPE picloud_invocation_duration_seconds histogram",
        ] {
            assert!(
                text.lines().any(|rendered| rendered == line),
                "missing {line:?} in:\n{text}"
            );
        }
    }

    #[test]
    fn status_labels_are_static_strings() {
        assert_eq!(&*status_label(200), "200");
        assert_eq!(&*status_label(599), "599");
        assert_eq!(&*status_label(42), "42");
        assert_eq!(&*status_label(600), "600");
    }
}
