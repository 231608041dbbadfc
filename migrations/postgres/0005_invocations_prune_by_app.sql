-- Pruning by age now goes app by app, on invocations_app_started_at, so the
-- index on started_at alone only cost every invocation record one more
-- B-tree insert.
-- Keep this file in step with migrations/sqlite/0005_invocations_prune_by_app.sql.
DROP INDEX IF EXISTS invocations_started_at;
