//! Nothing to use: this crate exists for its test (`tests/beside_sqlx.rs`), which links
//! session-sqlite and sqlx 0.8's SQLite into one binary, as a bot with its own sqlx database
//! does. If the two ever asked for different `libsqlite3-sys` versions (`links = "sqlite3"`
//! allows one per binary), this crate would stop resolving and CI would say so.
