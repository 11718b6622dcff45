//! Every session format the tool reads or writes. What the other libraries' formats hold and
//! their stable names are [`session_interop::carries`]; this adds our own backends.

use std::fmt;

use session_interop::carries;
use session_interop::{ForeignFormat, LegacyFormat, StringFormat};

/// What a format can hold (moved to [`session_interop::carries`]; re-exported here, kept for 0.6).
pub use session_interop::Carries;

/// A session format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// Our log file (`session_file::BinaryFileBackend`).
    File,
    /// Our SQLite database (`session_sqlite::SqliteBackend`).
    Sqlite,
    /// A local libSQL database (same schema as [`Format::Sqlite`]).
    LibsqlLocal,
    /// A remote libSQL database.
    LibsqlRemote,
    /// A named session in a PostgreSQL database (`session_postgres::PostgresBackend`).
    Postgres,
    /// A named session on a Redis server (`session_redis::RedisBackend`).
    Redis,
    /// A layer-client 0.5 or ferogram binary file.
    Legacy(LegacyFormat),
    /// The native string of layer-client 0.5 or ferogram (base64url of their binary file).
    NativeString(LegacyFormat),
    /// Another library's SQLite `.session` file.
    ForeignSqlite(ForeignFormat),
    /// A GramJS `StoreSession` folder.
    GramjsStore,
    /// A string session.
    String(StringFormat),
}

impl Format {
    /// The stable machine-readable name (the `format` field of `inspect --json`).
    pub fn id(self) -> String {
        match self {
            Format::File => "file".into(),
            Format::Sqlite => "sqlite".into(),
            Format::LibsqlLocal => "libsql".into(),
            Format::LibsqlRemote => "libsql-remote".into(),
            Format::Postgres => "postgres".into(),
            Format::Redis => "redis".into(),
            Format::Legacy(f) => carries::binary_file_id(f),
            Format::NativeString(f) => carries::native_string_id(f),
            Format::ForeignSqlite(f) => carries::sqlite_id(f),
            Format::GramjsStore => carries::GRAMJS_STORE_ID.into(),
            Format::String(f) => carries::string_id(f).into(),
        }
    }

    /// A human-readable description.
    pub fn describe(self) -> String {
        match self {
            Format::File => "layer session file (log)".into(),
            Format::Sqlite => "layer SQLite database".into(),
            Format::LibsqlLocal => "layer libSQL database (local)".into(),
            Format::LibsqlRemote => "layer libSQL database (remote)".into(),
            Format::Postgres => "layer session in PostgreSQL".into(),
            Format::Redis => "layer session in Redis".into(),
            Format::Legacy(f) => format!("{f} binary session file"),
            Format::NativeString(f) => format!("{f} native string"),
            Format::ForeignSqlite(f) => format!("{} SQLite session file", f.name()),
            Format::GramjsStore => "GramJS StoreSession folder".into(),
            Format::String(f) => format!("{} string session", f.name()),
        }
    }

    /// The format version where the format has one.
    pub fn version(self) -> Option<u32> {
        match self {
            Format::Legacy(f) | Format::NativeString(f) => Some(u32::from(f.version())),
            Format::File
            | Format::Sqlite
            | Format::LibsqlLocal
            | Format::LibsqlRemote
            | Format::Postgres
            | Format::Redis => Some(1),
            Format::String(StringFormat::Full | StringFormat::Compact) => Some(session_string::STRING_VERSION),
            Format::String(f) => carries::string_version(f),
            Format::ForeignSqlite(f) => f.export_version(),
            Format::GramjsStore => None,
        }
    }

    /// What the format can hold.
    pub fn carries(self) -> Carries {
        match self {
            Format::File
            | Format::Sqlite
            | Format::LibsqlLocal
            | Format::LibsqlRemote
            | Format::Postgres
            | Format::Redis => Carries::ALL,
            Format::Legacy(f) | Format::NativeString(f) => Carries::binary(f),
            Format::ForeignSqlite(f) => Carries::sqlite(f),
            Format::GramjsStore => Carries::GRAMJS_STORE,
            Format::String(f) => Carries::string(f),
        }
    }

    /// True for the formats of this project (which hold everything).
    pub fn is_ours(self) -> bool {
        matches!(
            self,
            Format::File
                | Format::Sqlite
                | Format::LibsqlLocal
                | Format::LibsqlRemote
                | Format::Postgres
                | Format::Redis
                | Format::String(StringFormat::Full)
        )
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}
