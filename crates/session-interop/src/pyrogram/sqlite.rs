//! The Pyrogram family's `FileStorage`: Pyrogram 2.0 (`version` 3), pyrofork 2.3 (4) and
//! kurigram 2.2 (4 to 7).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use session_core::{
    AuthKey, Change, DcOption, Peer, PeerClass, PeerKey, PeerKind, SelfUser, SessionData, SessionError,
    UpdateStateChange,
};

use crate::sqlite::format::{
    ExportPlan, ForeignFormat, Statement, KURIGRAM_VERSION, PYROFORK_VERSION, PYROGRAM_VERSION,
};
use crate::sqlite::value::{field, get, update_state, ForeignFile as File, Value};

/// Pyrogram 2.0.106 `SCHEMA`.
const PYROGRAM_SCHEMA: &str = "
CREATE TABLE sessions
(
    dc_id     INTEGER PRIMARY KEY,
    api_id    INTEGER,
    test_mode INTEGER,
    auth_key  BLOB,
    date      INTEGER NOT NULL,
    user_id   INTEGER,
    is_bot    INTEGER
);

CREATE TABLE peers
(
    id             INTEGER PRIMARY KEY,
    access_hash    INTEGER,
    type           INTEGER NOT NULL,
    username       TEXT,
    phone_number   TEXT,
    last_update_on INTEGER NOT NULL DEFAULT (CAST(STRFTIME('%s', 'now') AS INTEGER))
);

CREATE TABLE version
(
    number INTEGER PRIMARY KEY
);

CREATE INDEX idx_peers_id ON peers (id);
CREATE INDEX idx_peers_username ON peers (username);
CREATE INDEX idx_peers_phone_number ON peers (phone_number);

CREATE TRIGGER trg_peers_last_update_on
    AFTER UPDATE
    ON peers
BEGIN
    UPDATE peers
    SET last_update_on = CAST(STRFTIME('%s', 'now') AS INTEGER)
    WHERE id = NEW.id;
END;
";

/// pyrofork 2.3.69 `SCHEMA` followed by `UNAME_SCHEMA`.
const PYROFORK_SCHEMA: &str = "
CREATE TABLE sessions
(
    dc_id     INTEGER PRIMARY KEY,
    api_id    INTEGER,
    test_mode INTEGER,
    auth_key  BLOB,
    date      INTEGER NOT NULL,
    user_id   INTEGER,
    is_bot    INTEGER
);

CREATE TABLE peers
(
    id             INTEGER PRIMARY KEY,
    access_hash    INTEGER,
    type           INTEGER NOT NULL,
    username       TEXT,
    phone_number   TEXT,
    last_update_on INTEGER NOT NULL DEFAULT (CAST(STRFTIME('%s', 'now') AS INTEGER))
);

CREATE TABLE update_state
(
    id   INTEGER PRIMARY KEY,
    pts  INTEGER,
    qts  INTEGER,
    date INTEGER,
    seq  INTEGER
);

CREATE TABLE version
(
    number INTEGER PRIMARY KEY
);

CREATE INDEX idx_peers_id ON peers (id);
CREATE INDEX idx_peers_username ON peers (username);
CREATE INDEX idx_peers_phone_number ON peers (phone_number);

CREATE TRIGGER trg_peers_last_update_on
    AFTER UPDATE
    ON peers
BEGIN
    UPDATE peers
    SET last_update_on = CAST(STRFTIME('%s', 'now') AS INTEGER)
    WHERE id = NEW.id;
END;

CREATE TABLE IF NOT EXISTS usernames
(
    id             TEXT PRIMARY KEY,
    peer_id        INTEGER NOT NULL,
    last_update_on INTEGER NOT NULL DEFAULT (CAST(STRFTIME('%s', 'now') AS INTEGER))
);

CREATE TRIGGER IF NOT EXISTS trg_usernames_last_update_on
    AFTER UPDATE
    ON usernames
BEGIN
    UPDATE usernames
    SET last_update_on = CAST(STRFTIME('%s', 'now') AS INTEGER)
    WHERE id = NEW.id;
END;
";

/// kurigram 2.2.26 `SCHEMA`.
const KURIGRAM_SCHEMA: &str = "
CREATE TABLE sessions
(
    dc_id          INTEGER PRIMARY KEY,
    server_address TEXT,
    port           INTEGER,
    api_id         INTEGER,
    test_mode      INTEGER,
    auth_key       BLOB,
    date           INTEGER NOT NULL,
    user_id        INTEGER,
    is_bot         INTEGER
);

CREATE TABLE peers
(
    id             INTEGER PRIMARY KEY,
    access_hash    INTEGER,
    type           INTEGER NOT NULL,
    phone_number   TEXT,
    last_update_on INTEGER NOT NULL DEFAULT (CAST(STRFTIME('%s', 'now') AS INTEGER))
);

CREATE TABLE usernames
(
    id       INTEGER,
    username TEXT,
    FOREIGN KEY (id) REFERENCES peers(id)
);

CREATE TABLE update_state
(
    id   INTEGER PRIMARY KEY,
    pts  INTEGER,
    qts  INTEGER,
    date INTEGER,
    seq  INTEGER
);

CREATE TABLE version
(
    number INTEGER PRIMARY KEY
);

CREATE INDEX idx_peers_id ON peers (id);
CREATE INDEX idx_peers_phone_number ON peers (phone_number);
CREATE INDEX idx_usernames_id ON usernames (id);
CREATE INDEX idx_usernames_username ON usernames (username);

CREATE TRIGGER trg_peers_last_update_on
    AFTER UPDATE
    ON peers
BEGIN
    UPDATE peers
    SET last_update_on = CAST(STRFTIME('%s', 'now') AS INTEGER)
    WHERE id = NEW.id;
END;
";

/// How the family's files differ, found from the tables themselves.
struct Layout {
    version: u32,
    address: bool,
    api_id: bool,
    peer_username: bool,
    /// pyrofork: `usernames(id TEXT = username, peer_id)`.
    usernames_by_name: bool,
    /// kurigram: `usernames(id = peer, username)`.
    usernames_by_peer: bool,
    update_state: bool,
}

fn layout(file: &File<'_>) -> Result<Layout, SessionError> {
    let version: Option<u32> = match file.rows("SELECT number FROM version")?.first() {
        Some(row) => field(file, get(row, 0), "version.number")?,
        None => None,
    };
    let version = version.ok_or_else(|| file.invalid("the version table is empty"))?;
    if version > KURIGRAM_VERSION {
        return Err(SessionError::UnsupportedVersion {
            what: "Pyrogram-family session",
            found: version,
            supported: KURIGRAM_VERSION,
        });
    }
    let sessions = file.columns("sessions")?;
    let peers = file.columns("peers")?;
    let tables = file.tables()?;
    let usernames = if tables.iter().any(|t| t == "usernames") { file.columns("usernames")? } else { Vec::new() };
    let has = |cols: &[String], c: &str| cols.iter().any(|n| n == c);
    Ok(Layout {
        version,
        address: has(&sessions, "server_address") && has(&sessions, "port"),
        api_id: has(&sessions, "api_id"),
        peer_username: has(&peers, "username"),
        usernames_by_name: has(&usernames, "peer_id"),
        usernames_by_peer: has(&usernames, "username"),
        update_state: tables.iter().any(|t| t == "update_state"),
    })
}

/// Which member of the family wrote the file (its tables say).
pub(crate) fn detect(file: &File<'_>) -> Result<ForeignFormat, SessionError> {
    let l = layout(file)?;
    Ok(if l.address || l.usernames_by_peer {
        ForeignFormat::Kurigram
    } else if l.usernames_by_name || l.version == PYROFORK_VERSION {
        ForeignFormat::Pyrofork
    } else {
        ForeignFormat::Pyrogram
    })
}

fn kind_of(peer_type: Option<&str>, class: PeerClass) -> PeerKind {
    let kind = match peer_type {
        Some("user") => PeerKind::User,
        Some("bot") => PeerKind::Bot,
        Some("group") => PeerKind::BasicGroup,
        // Pyrogram: "channel" if the chat is a broadcast channel, else "supergroup".
        Some("channel") => PeerKind::Broadcast,
        Some("supergroup" | "forum") => PeerKind::Megagroup,
        // kurigram's "direct" (monoforum) and "community" live in the channel id space.
        _ => PeerKind::Channel,
    };
    if kind.class() == class {
        kind
    } else {
        match class {
            PeerClass::User => PeerKind::User,
            PeerClass::Chat => PeerKind::BasicGroup,
            PeerClass::Channel => PeerKind::Channel,
        }
    }
}

fn type_of(kind: PeerKind) -> &'static str {
    match kind {
        PeerKind::Bot => "bot",
        PeerKind::BasicGroup => "group",
        PeerKind::Channel | PeerKind::Broadcast => "channel",
        PeerKind::Megagroup | PeerKind::Gigagroup => "supergroup",
        _ => match kind.class() {
            PeerClass::User => "user",
            PeerClass::Chat => "group",
            PeerClass::Channel => "channel",
        },
    }
}

/// Reads the session; the second value holds warnings about values that were dropped.
pub(crate) fn read(file: &File<'_>) -> Result<(SessionData, Vec<String>), SessionError> {
    let l = layout(file)?;
    let mut s = SessionData::default();
    let sql = format!(
        "SELECT dc_id, {}, test_mode, auth_key, user_id, is_bot, {} FROM sessions",
        if l.api_id { "api_id" } else { "NULL" },
        if l.address { "server_address, port" } else { "NULL, NULL" },
    );
    let sessions = file.rows(&sql)?;
    let Some(row) = sessions.first() else {
        return Err(file.invalid("the sessions table is empty"));
    };
    let dc_id: i32 =
        field(file, get(row, 0), "sessions.dc_id")?.ok_or_else(|| file.invalid("sessions.dc_id is NULL"))?;
    // The family writes api_id as Python reads it (unsigned 32-bit in its strings), but Telegram's
    // api_id is a signed 32-bit `int`: a value above i32::MAX names no application. Refusing the
    // file would lose its auth key over an informational field, so the value is dropped and
    // said so.
    let mut warnings = Vec::new();
    let api_id = match field::<i64>(file, get(row, 1), "sessions.api_id")? {
        Some(id) => match i32::try_from(id) {
            Ok(id) => Some(id),
            Err(_) => {
                warnings.push(format!(
                    "sessions.api_id {id} was not kept: it is outside {}..={}, the api_ids Telegram \
                     accepts (a signed 32-bit int); the auth key and the rest of the session were \
                     imported",
                    i32::MIN,
                    i32::MAX
                ));
                None
            }
        },
        None => None,
    };
    let test_mode = field::<i64>(file, get(row, 2), "sessions.test_mode")?.unwrap_or(0) != 0;
    let key = match get(row, 3).blob() {
        None | Some([]) => None,
        Some(b) => Some(
            AuthKey::from_slice(b)
                .ok_or_else(|| file.invalid(&format!("sessions.auth_key is {} bytes, not 256", b.len())))?,
        ),
    };
    let user_id: Option<i64> = field(file, get(row, 4), "sessions.user_id")?;
    let is_bot = field::<i64>(file, get(row, 5), "sessions.is_bot")?.unwrap_or(0) != 0;
    let address = get(row, 6).text().and_then(|t| t.parse::<IpAddr>().ok());
    let port: Option<u16> = field(file, get(row, 7), "sessions.port")?;

    s.apply(&Change::SetTestMode(test_mode));
    s.apply(&Change::SetApiId(api_id));
    match (address, port) {
        (Some(ip), Some(port)) => {
            s.apply(&Change::SetDc(DcOption::new(dc_id, SocketAddr::new(ip, port)).with_auth_key(key)))
        }
        // No address stored: the published address of the DC (`SetAuthKey` creates the option
        // there, for production or test servers as the session says).
        _ => s.apply(&Change::SetAuthKey { dc_id, key }),
    }
    s.apply(&Change::SetHomeDc(dc_id));
    s.apply(&Change::SetUser(user_id.map(|id| SelfUser::new(id, is_bot))));

    let mut extra: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    if l.usernames_by_name {
        for row in file.rows("SELECT peer_id, id FROM usernames ORDER BY rowid")? {
            if let (Some(peer), Some(name)) =
                (field::<i64>(file, get(&row, 0), "usernames.peer_id")?, get(&row, 1).text())
            {
                extra.entry(peer).or_default().push(name);
            }
        }
    } else if l.usernames_by_peer {
        for row in file.rows("SELECT id, username FROM usernames ORDER BY rowid")? {
            if let (Some(peer), Some(name)) = (field::<i64>(file, get(&row, 0), "usernames.id")?, get(&row, 1).text()) {
                extra.entry(peer).or_default().push(name);
            }
        }
    }
    let sql = format!(
        "SELECT id, access_hash, type, {}, phone_number FROM peers",
        if l.peer_username { "username" } else { "NULL" }
    );
    let mut peers = Vec::new();
    for row in file.rows(&sql)? {
        let marked: i64 = field(file, get(&row, 0), "peers.id")?.ok_or_else(|| file.invalid("peers.id is NULL"))?;
        let key = PeerKey::from_marked(marked);
        let hash: i64 = field(file, get(&row, 1), "peers.access_hash")?.unwrap_or(0);
        let kind = kind_of(get(&row, 2).text().as_deref(), key.class);
        let mut usernames: Vec<String> = get(&row, 3).text().filter(|u| !u.is_empty()).into_iter().collect();
        for name in extra.remove(&marked).unwrap_or_default() {
            if !usernames.contains(&name) {
                usernames.push(name);
            }
        }
        let phone = get(&row, 4).text().filter(|p| !p.is_empty());
        peers.push(Peer::new(key.id, kind, hash).with_usernames(usernames).with_phone(phone));
    }
    s.peers = peers.into_iter().collect();

    if l.update_state {
        // Channel rows are keyed by the marked channel id.
        let state = update_state(file, |id| {
            let key = PeerKey::from_marked(id);
            if key.class == PeerClass::Channel {
                key.id
            } else {
                id
            }
        })?;
        s.apply(&Change::UpdateState(UpdateStateChange::All(state)));
    }
    Ok((s, warnings))
}

/// The rows of a new `format` file holding `data`.
pub(crate) fn write(data: &SessionData, format: ForeignFormat) -> Result<ExportPlan, SessionError> {
    let home = data.home().ok_or_else(|| {
        SessionError::invalid("session to export", "it has no home DC option (nothing to log in with)")
    })?;
    let (schema, version) = match format {
        ForeignFormat::Pyrofork => (PYROFORK_SCHEMA, PYROFORK_VERSION),
        ForeignFormat::Kurigram => (KURIGRAM_SCHEMA, KURIGRAM_VERSION),
        _ => (PYROGRAM_SCHEMA, PYROGRAM_VERSION),
    };
    let kurigram = format == ForeignFormat::Kurigram;
    let key = home.auth_key.as_ref().map(|k| k.as_bytes().to_vec());
    let user_id = data.user.map(|u| u.id);
    let is_bot = data.user.map(|u| i64::from(u.bot));
    let mut rows = vec![Statement::new("INSERT INTO version VALUES (?)", vec![version.into()])];
    // `date` is what Pyrogram itself writes into a new file (it sets the time on save).
    if kurigram {
        rows.push(Statement::new(
            "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            vec![
                home.id.into(),
                home.addr.ip().to_string().into(),
                home.addr.port().into(),
                data.api_id.into(),
                i64::from(data.test_mode).into(),
                key.into(),
                0i64.into(),
                user_id.into(),
                is_bot.into(),
            ],
        ));
    } else {
        rows.push(Statement::new(
            "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?)",
            vec![
                home.id.into(),
                data.api_id.into(),
                i64::from(data.test_mode).into(),
                key.into(),
                0i64.into(),
                user_id.into(),
                is_bot.into(),
            ],
        ));
    }
    let peers = data.peers.iter().filter(|p| !p.min);
    if kurigram {
        for p in peers {
            let marked = p.key().marked();
            rows.push(Statement::new(
                "REPLACE INTO peers (id, access_hash, type, phone_number) VALUES (?, ?, ?, ?)",
                vec![marked.into(), p.access_hash.into(), type_of(p.kind).into(), p.phone.clone().into()],
            ));
            for u in &p.usernames {
                rows.push(Statement::new(
                    "REPLACE INTO usernames (id, username) VALUES (?, ?)",
                    vec![marked.into(), u.to_lowercase().into()],
                ));
            }
        }
    } else {
        for p in peers {
            let marked = p.key().marked();
            let main = p.usernames.first().map(|u| u.to_lowercase());
            rows.push(Statement::new(
                "REPLACE INTO peers (id, access_hash, type, username, phone_number) VALUES (?, ?, ?, ?, ?)",
                vec![marked.into(), p.access_hash.into(), type_of(p.kind).into(), main.into(), p.phone.clone().into()],
            ));
            if format == ForeignFormat::Pyrofork {
                for u in p.usernames.iter().skip(1) {
                    rows.push(Statement::new(
                        "REPLACE INTO usernames (peer_id, id) VALUES (?, ?)",
                        vec![marked.into(), u.to_lowercase().into()],
                    ));
                }
            }
        }
    }
    if format != ForeignFormat::Pyrogram {
        const STATE: &str = "REPLACE INTO update_state (id, pts, qts, date, seq) VALUES (?, ?, ?, ?, ?)";
        let u = &data.updates;
        rows.push(Statement::new(STATE, vec![0i64.into(), u.pts.into(), u.qts.into(), u.date.into(), u.seq.into()]));
        for (channel, pts) in &u.channels {
            let marked = PeerKey::channel(*channel).marked();
            rows.push(Statement::new(STATE, vec![marked.into(), (*pts).into(), Value::Null, Value::Null, Value::Null]));
        }
    }
    Ok(ExportPlan { schema, statements: rows })
}
