//! `list`: the named sessions of a database (a SQLite or libSQL file, a libSQL server, a
//! PostgreSQL database, a Redis server), with who holds each one's lease and until when. Reads
//! only: takes no lock and no lease, creates and migrates nothing.

use std::time::Duration;

use session_libsql::LibSqlBackend;
use session_sqlite::SqliteBackend;

use crate::error::{CliError, CliResult};
use crate::location::{remote_url, shown_path, Family, ServerKind, Source};
use crate::server;

/// One session of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The session's name.
    pub name: String,
    /// Whether a session is stored under the name.
    pub stored: bool,
    /// Who holds its lease (`pid N on HOST (instance I)`), when one is held.
    pub holder: Option<String>,
    /// How long that lease has left by the store's clock (zero: expired, anyone may take it).
    pub expires_in: Option<Duration>,
}

/// The sessions of `source`, by name.
pub async fn list(source: &Source, token: Option<&str>) -> CliResult<Vec<Listed>> {
    let shown = source.to_string();
    let sql = |infos: Vec<session_libsql::SessionInfo>| -> Vec<Listed> {
        infos
            .into_iter()
            .map(|i| Listed {
                name: i.name,
                stored: i.stored,
                holder: i.holder.map(|h| h.to_string()),
                expires_in: i.expires_in,
            })
            .collect()
    };
    match source {
        Source::Path { path, family: None | Some(Family::Sqlite | Family::Libsql) } => {
            let p = path.clone();
            let is_sqlite = crate::blocking(move || {
                let mut head = [0u8; 16];
                let mut file =
                    session_core::fs::open_nonblocking(&p, false).map_err(|e| CliError::source(shown_path(&p), e))?;
                let n = std::io::Read::read(&mut file, &mut head).map_err(|e| CliError::source(shown_path(&p), e))?;
                Ok(head[..n].starts_with(session_sqlite::read_only::SQLITE_HEADER))
            })
            .await?;
            if !is_sqlite {
                return Err(CliError::source(
                    shown_path(path),
                    "is not a SQLite database: `list` takes a database that holds named sessions",
                ));
            }
            let infos = SqliteBackend::list_sessions(path).await.map_err(|e| CliError::source(shown_path(path), e))?;
            Ok(sql(infos))
        }
        Source::Remote { url } => {
            let timeout = server::call_timeout()?;
            let infos = LibSqlBackend::list_remote_sessions(&remote_url(url), token.unwrap_or(""), timeout)
                .await
                .map_err(|e| CliError::source(&shown, e))?;
            Ok(sql(infos))
        }
        Source::Server(s) => {
            let purpose = server::Purpose::Read;
            let describe = |e: &session_core::SessionError| CliError::source(&shown, server::describe(s, e, purpose));
            match s.kind {
                ServerKind::Postgres => {
                    let infos = server::list_postgres(s).await?.map_err(|e| describe(&e))?;
                    Ok(sql(infos))
                }
                ServerKind::Redis => {
                    let infos = server::list_redis(s).await?.map_err(|e| describe(&e))?;
                    Ok(infos
                        .into_iter()
                        .map(|i| Listed {
                            name: i.name,
                            stored: i.stored,
                            holder: i.holder.map(|h| h.to_string()),
                            expires_in: i.expires_in,
                        })
                        .collect())
                }
            }
        }
        _ => Err(CliError::usage(format!(
            "{shown}: `list` takes a database that holds named sessions: a SQLite or libSQL file, a libSQL URL, \
             a postgres:// or a redis:// URL"
        ))),
    }
}

/// The lease column of a listing.
fn lease_text(l: &Listed) -> String {
    match (&l.holder, l.expires_in) {
        (Some(h), Some(left)) if left.is_zero() => format!("lease expired (last held by {h})"),
        (Some(h), Some(left)) => format!("held by {h}, lease expires in {:.1} s unless renewed", left.as_secs_f64()),
        (Some(h), None) => format!("held by {h}"),
        (None, _) => "not held".to_owned(),
    }
}

/// The listing as text: a line per session.
pub fn text(listed: &[Listed], shown: &str) -> String {
    let mut out = format!("{shown}: {} session{}\n", listed.len(), if listed.len() == 1 { "" } else { "s" });
    for l in listed {
        let stored = if l.stored { "stored" } else { "nothing stored" };
        out.push_str(&format!("  {:?}: {stored}; {}\n", l.name, lease_text(l)));
    }
    out
}

/// The listing as JSON.
pub fn json(listed: &[Listed], shown: &str) -> serde_json::Value {
    let sessions: Vec<serde_json::Value> = listed
        .iter()
        .map(|l| {
            serde_json::json!({
                "name": l.name,
                "stored": l.stored,
                "holder": l.holder,
                "expires_in_ms": l.expires_in.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            })
        })
        .collect();
    serde_json::json!({ "location": shown, "sessions": sessions })
}
