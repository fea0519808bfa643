//! Stores for the unit tests, so a test runs the same on both backends: SQLite in a temporary
//! home, PostgreSQL in a fresh database on the server `IRONHOST_TEST_POSTGRES_URL` names
//! (`scripts/test.sh` starts one for the run; `scripts/postgres.sh start DIR` starts one by
//! hand). Without that variable a PostgreSQL test fails, saying so: it is never skipped.

use sqlx::{AnyConnection, Connection};

use super::{Backend, Location, Store, StoreError};

/// The variable naming the test server: `postgres://postgres@127.0.0.1:PORT/postgres`.
pub(crate) const POSTGRES_URL_VAR: &str = "IRONHOST_TEST_POSTGRES_URL";

/// Both backends, for a test to run on each.
pub(crate) const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

/// A database for one test: a home (always, as the host needs one) and where the store is.
#[derive(Debug)]
pub(crate) struct TestDb {
    pub backend: Backend,
    pub home: tempfile::TempDir,
    pub location: Location,
}

impl TestDb {
    /// An empty database on `backend`.
    pub async fn new(backend: Backend) -> TestDb {
        let home = tempfile::tempdir().expect("tempdir");
        let location = match backend {
            Backend::Sqlite => Location::Home,
            Backend::Postgres => {
                Location::parse(&fresh_postgres_database().await).expect("the test database URL")
            }
        };
        TestDb {
            backend,
            home,
            location,
        }
    }

    /// Open (again) the store in this database.
    pub async fn open(&self) -> Result<Store, StoreError> {
        Store::open_at(self.home.path(), &self.location).await
    }

    /// [`open`](TestDb::open), which must succeed.
    pub async fn store(&self) -> Store {
        self.open()
            .await
            .unwrap_or_else(|e| panic!("{:?}: open the store: {e}", self.backend))
    }
}

/// The test server's URL.
pub(crate) fn postgres_server_url() -> String {
    std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| {
        panic!(
            "{POSTGRES_URL_VAR} is not set: the store's tests run on PostgreSQL too. Run them \
             through scripts/test.sh, or start a server with `scripts/postgres.sh start DIR` and \
             export {POSTGRES_URL_VAR}=<the URL it prints>"
        )
    })
}

/// A new, empty database on the test server; its URL.
pub(crate) async fn fresh_postgres_database() -> String {
    let server = postgres_server_url();
    super::drivers();
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).expect("random bytes");
    let name = format!("ironhost_test_{}", hex::encode(random));
    let mut conn = AnyConnection::connect(&server)
        .await
        .unwrap_or_else(|e| panic!("{POSTGRES_URL_VAR}={server}: cannot connect: {e}"));
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    let _ = conn.close().await;
    with_database(&server, &name)
}

/// `server` (a PostgreSQL URL) naming the database `name` instead of its own.
pub(crate) fn with_database(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (server, String::new()),
    };
    let start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[start..].find('/') {
        Some(i) => &base[..start + i],
        None => base,
    };
    format!("{base}/{name}{query}")
}

/// A current-thread runtime for one test.
pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn a_database_name_replaces_the_servers() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5999/postgres", "t1"),
        "postgres://postgres@127.0.0.1:5999/t1"
    );
    assert_eq!(
        with_database("postgres://u:p@h:1/db?sslmode=disable", "t2"),
        "postgres://u:p@h:1/t2?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h", "t3"), "postgres://h/t3");
}
