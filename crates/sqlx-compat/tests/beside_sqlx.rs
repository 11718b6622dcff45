//! sqlx 0.8 (SQLite) and session-sqlite in one binary: each opens its own database file and both
//! read back what they wrote, while the other's connection is open.

use session_sqlite::session_core::{AuthKey, Change, SessionBackend, SessionStore};
use session_sqlite::SqliteBackend;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::Row;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlx_pool_and_sqlite_backend_work_side_by_side() -> Result<(), session_sqlite::session_core::BoxError> {
    let dir = tempfile::tempdir()?;

    let app = SqlitePoolOptions::new()
        .max_connections(2)
        .connect_with(SqliteConnectOptions::new().filename(dir.path().join("app.db")).create_if_missing(true))
        .await?;
    sqlx::query("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)").execute(&app).await?;
    sqlx::query("INSERT INTO users (id, name) VALUES (?, ?)").bind(7_i64).bind("alice").execute(&app).await?;

    let path = dir.path().join("session.db");
    let store = SessionStore::open_default(SqliteBackend::open(&path).await?).await?;
    store.apply(Change::SetAuthKey { dc_id: 2, key: Some(AuthKey::new([9; 256])) }).await?;
    store.apply(Change::SetHomeDc(2)).await?;

    // The app's pool keeps working while the session database is open, and sees its own row.
    let row = sqlx::query("SELECT name FROM users WHERE id = ?").bind(7_i64).fetch_one(&app).await?;
    assert_eq!(row.try_get::<String, _>("name")?, "alice");

    store.close().await?;
    drop(store);
    let session = SqliteBackend::open(&path).await?.load_session().await?.ok_or("the session was not saved")?;
    assert_eq!(session.home_dc, 2);
    assert!(session.has_home_key());

    // sqlx reads the file session-sqlite wrote (one SQLite engine, one file format).
    let session_db = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(SqliteConnectOptions::new().filename(&path).read_only(true))
        .await?;
    let tables: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetch_one(&session_db).await?;
    assert!(tables > 0, "sqlx sees no table in session-sqlite's database");
    session_db.close().await;
    app.close().await;
    Ok(())
}
