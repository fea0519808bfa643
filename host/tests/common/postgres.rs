//! A fresh PostgreSQL database for a test, on the server `IRONHOST_TEST_POSTGRES_URL` names
//! (`scripts/test.sh` starts one for the whole run). Without it a test that needs PostgreSQL
//! fails, saying how to get one: it is never skipped. Included with
//! `#[path = "common/postgres.rs"] mod postgres;` next to `mod common;`.

use sqlx::{AnyConnection, Connection};

/// The variable naming the test server: `postgres://postgres@127.0.0.1:PORT/postgres`.
pub const SERVER_VAR: &str = "IRONHOST_TEST_POSTGRES_URL";

/// The test server's URL.
pub fn server_url() -> String {
    std::env::var(SERVER_VAR).unwrap_or_else(|_| {
        panic!(
            "{SERVER_VAR} is not set: this test runs on PostgreSQL. Run the tests through \
             scripts/test.sh, or start a server with `scripts/postgres.sh start DIR` and export \
             {SERVER_VAR}=<the URL it prints>"
        )
    })
}

/// A new, empty database on the test server; its URL (for `IRONHOST_DATABASE_URL`).
pub async fn fresh_database() -> String {
    let server = server_url();
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).expect("random bytes");
    let name = format!(
        "ironhost_it_{}",
        random
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    sqlx::any::install_default_drivers();
    let mut conn = AnyConnection::connect(&server)
        .await
        .unwrap_or_else(|e| panic!("{SERVER_VAR}={server}: cannot connect: {e}"));
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    let _ = conn.close().await;
    let (base, query) = match server.split_once('?') {
        Some((b, q)) => (b.to_owned(), format!("?{q}")),
        None => (server.clone(), String::new()),
    };
    let start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[start..].find('/') {
        Some(i) => &base[..start + i],
        None => &base,
    };
    format!("{base}/{name}{query}")
}
