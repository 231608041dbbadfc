//! End-to-end tests of the real `picloud` binary: each starts it on a free
//! port with a temporary data directory, once on SQLite and once on
//! PostgreSQL (`PICLOUD_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`; the PostgreSQL cases fail, never
//! skip, when the server is unreachable).

mod harness;

mod accounts;
mod authentication;
mod cli;
mod cluster;
mod endpoints;
mod errors;
mod invocations;
mod observability;
mod restart;
mod runtime;
mod runtime_api;
mod static_files;
mod triggers;
