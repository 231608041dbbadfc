//! The integration tests of picloud-manager-core, in one binary.
//!
//! `store_suite` is a conformance suite for [`Store`]: every case runs once on
//! SQLite (a fresh temporary file) and once on PostgreSQL (a fresh database on
//! the server at `PICLOUD_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`). The PostgreSQL cases fail, not
//! skip, when the server cannot be reached.
//!
//! [`Store`]: picloud_manager_core::Store

mod harness;
mod health_suite;
mod invocations_suite;
mod login_throttle;
mod runtime_suite;
mod store_suite;
mod triggers_suite;

/// Generates one `#[tokio::test]` per suite case per backend, in the modules
/// `sqlite` and `postgres`.
macro_rules! run_store_suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let database = crate::harness::TestDatabase::sqlite().await;
                    crate::store_suite::$case(&database).await;
                    database.close().await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let database = crate::harness::TestDatabase::postgres().await;
                    crate::store_suite::$case(&database).await;
                    database.close().await;
                }
            )*
        }
    };
}

run_store_suite!(
    migrations_are_idempotent_and_data_survives_a_reconnect,
    a_database_newer_than_the_binary_is_refused,
    users_are_created_and_found,
    unique_fields_conflict,
    invalid_input_names_the_field,
    the_last_active_owner_cannot_be_removed,
    deploy_numbers_versions_and_activates_the_newest,
    rollback_activates_an_earlier_version,
    deploy_to_a_missing_app_or_author_stores_nothing,
    concurrent_deploys_get_distinct_consecutive_numbers,
    versions_are_immutable,
    deleting_an_app_cascades,
    apps_are_listed_updated_and_deleted,
    memberships_are_added_changed_listed_and_removed,
    sessions_are_looked_up_until_expiry_or_deactivation,
    api_tokens_are_looked_up_until_revoked,
    domains_are_normalised_listed_and_removed,
    audit_log_is_append_only_and_paged,
    active_scripts_lists_every_active_version,
    account_changes_and_their_audit_entries_commit_together,
    kv_values_round_trip_and_expire,
    kv_lists_by_prefix_with_paging_and_literal_wildcards,
    kv_increments_are_atomic,
    kv_quotas_refuse_cleanly_and_keep_earlier_data,
    kv_apps_are_isolated,
    vars_are_set_listed_and_deleted_with_audit,
    secrets_are_encrypted_bound_to_their_app_and_never_listed,
    http_allow_lists_are_validated_and_replaced,
    invocations_are_stored_in_batches_and_read_back,
    invocations_are_listed_with_filters_and_pages,
    invocation_stats_bucket_counts_errors_and_durations,
    retention_removes_old_records_and_keeps_recent_ones,
    pruning_one_app_keeps_its_newest_records_in_chunks,
    a_live_tail_without_a_feed_polls_the_store,
    schedules_are_created_listed_updated_and_deleted,
    bad_cron_expressions_and_time_zones_are_refused,
    a_due_tick_is_claimed_once_across_nodes_and_missed_ticks_run_once,
    async_jobs_are_claimed_once_completed_and_retried_until_failed,
    a_job_whose_worker_died_is_claimed_again_after_its_lease,
    deleting_a_script_removes_its_schedules_and_jobs,
    ping_answers_until_the_pool_is_closed,
    large_batches_keep_order_and_ids_never_repeat,
    records_of_an_older_schema_survive_the_upgrade,
    chunks_are_trimmed_to_the_record,
    route_changes_are_announced_between_nodes_on_postgres,
);
