//! Fresh, migrated databases for the store suite, and raw SQL access for the
//! cases that must reach behind the store's back.

use picloud_manager_core::{Backend, Store};
use rand::Rng;
use sqlx::Connection;

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A migrated database that exists for one test.
pub struct TestDatabase {
    /// The store under test.
    pub store: Store,
    url: String,
    /// Held only for its `Drop`.
    _cleanup: Cleanup,
}

enum Cleanup {
    /// The temporary directory holding the SQLite file, removed on drop.
    Sqlite { _directory: tempfile::TempDir },
    /// The PostgreSQL database, dropped on drop.
    Postgres { _database: DropPostgresDatabase },
}

impl TestDatabase {
    /// A new SQLite file in a temporary directory (in a subdirectory that does
    /// not exist yet, to check that the store creates it).
    pub async fn sqlite() -> Self {
        let directory = tempfile::tempdir().expect("create a temporary directory");
        let path = directory.path().join("data").join("picloud.db");
        let url = format!("sqlite://{}", path.display());
        let store = Store::connect(&url)
            .await
            .expect("open the SQLite database");
        store.migrate().await.expect("migrate the SQLite database");
        Self {
            store,
            url,
            _cleanup: Cleanup::Sqlite {
                _directory: directory,
            },
        }
    }

    /// A new database on the PostgreSQL server of `PICLOUD_TEST_POSTGRES_URL`.
    pub async fn postgres() -> Self {
        let server_url = std::env::var("PICLOUD_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
        let database_name = format!("picloud_test_{:016x}", rand::thread_rng().r#gen::<u64>());
        let mut server = sqlx::PgConnection::connect(&server_url)
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "cannot reach PostgreSQL at {server_url} ({error}); start it, or point \
                 PICLOUD_TEST_POSTGRES_URL at a server where this user may CREATE DATABASE"
                )
            });
        sqlx::raw_sql(&format!("CREATE DATABASE {database_name}"))
            .execute(&mut server)
            .await
            .expect("create the test database");
        server.close().await.ok();
        let cleanup = DropPostgresDatabase {
            server_url: server_url.clone(),
            database_name: database_name.clone(),
        };
        let url = with_database(&server_url, &database_name);
        let store = Store::connect(&url)
            .await
            .expect("connect to the test database");
        store
            .migrate()
            .await
            .expect("migrate the PostgreSQL database");
        Self {
            store,
            url,
            _cleanup: Cleanup::Postgres { _database: cleanup },
        }
    }

    /// Opens a second, independent store on the same database.
    pub async fn reconnect(&self) -> Store {
        Store::connect(&self.url).await.expect("reconnect")
    }

    /// Runs `sql` on a connection of its own, bypassing the store.
    pub async fn execute_raw(&self, sql: &str) -> Result<(), sqlx::Error> {
        match self.store.backend() {
            Backend::Sqlite => {
                let mut connection = sqlx::SqliteConnection::connect(&self.url).await?;
                sqlx::raw_sql(sql).execute(&mut connection).await?;
                connection.close().await
            }
            Backend::Postgres => {
                let mut connection = sqlx::PgConnection::connect(&self.url).await?;
                sqlx::raw_sql(sql).execute(&mut connection).await?;
                connection.close().await
            }
        }
    }

    /// Closes the store; the database itself goes when `self` is dropped
    /// (which also happens when a case panics).
    pub async fn close(self) {
        self.store.close().await;
    }
}

/// Drops a test database from a thread of its own, so that it also happens
/// while a failed test unwinds.
struct DropPostgresDatabase {
    server_url: String,
    database_name: String,
}

impl Drop for DropPostgresDatabase {
    fn drop(&mut self) {
        let server_url = self.server_url.clone();
        let database_name = self.database_name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("build a runtime to drop the test database");
            runtime.block_on(async {
                let mut server = sqlx::PgConnection::connect(&server_url).await?;
                sqlx::raw_sql(&format!(
                    "DROP DATABASE IF EXISTS {database_name} WITH (FORCE)"
                ))
                .execute(&mut server)
                .await?;
                server.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the test database {}", self.database_name);
        }
    }
}

/// `url` with its database name replaced by `database_name`.
fn with_database(url: &str, database_name: &str) -> String {
    let (without_query, query) = match url.split_once('?') {
        Some((without_query, query)) => (without_query, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_start = without_query.find("://").map_or(0, |index| index + 3);
    let path_start = without_query[authority_start..]
        .find('/')
        .map_or(without_query.len(), |index| authority_start + index);
    format!("{}/{database_name}{query}", &without_query[..path_start])
}
