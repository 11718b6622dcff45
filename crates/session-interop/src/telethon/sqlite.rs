//! Telethon's `SQLiteSession` (Telethon 1.x, schema `version` 8).

use std::net::{IpAddr, SocketAddr};

use session_core::{
    AuthKey, Change, DcOption, Peer, PeerClass, PeerKey, PeerKind, SelfUser, SessionData, SessionError,
    UpdateStateChange,
};

use crate::sqlite::format::{ExportPlan, Statement, TELETHON_VERSION as VERSION};
use crate::sqlite::value::{field, get, phone_digits, update_state, ForeignFile as File, Value};

/// Telethon's own table definitions (its `_create_table` calls), so that Telethon sees its
/// own file.
const SCHEMA: &str = "
create table version (version integer primary key);
create table sessions (
                    dc_id integer primary key,
                    server_address text,
                    port integer,
                    auth_key blob,
                    takeout_id integer,
                    tmp_auth_key blob
                );
create table entities (
                    id integer primary key,
                    hash integer not null,
                    username text,
                    phone integer,
                    name text,
                    date integer
                );
create table sent_files (
                    md5_digest blob,
                    file_size integer,
                    type integer,
                    id integer,
                    hash integer,
                    primary key(md5_digest, file_size, type)
                );
create table update_state (
                    id integer primary key,
                    pts integer,
                    qts integer,
                    date integer,
                    seq integer
                );
";

/// Reads the session of a Telethon file.
pub(crate) fn read(file: &File<'_>) -> Result<SessionData, SessionError> {
    let version = file.rows("SELECT version FROM version")?;
    let version: Option<u32> = match version.first() {
        Some(row) => field(file, get(row, 0), "version")?,
        None => None,
    };
    match version {
        Some(v) if v > VERSION => {
            return Err(SessionError::UnsupportedVersion { what: "Telethon session", found: v, supported: VERSION })
        }
        // Versions before 8 lack only columns this importer does not read (tmp_auth_key,
        // takeout_id, entities.date); a missing column we need fails the query below.
        Some(_) => {}
        None => return Err(file.invalid("the version table is empty")),
    }

    let mut s = SessionData::default();
    let sessions = file.rows("SELECT dc_id, server_address, port, auth_key FROM sessions")?;
    // Telethon keeps one row (it deletes the others whenever it writes).
    let Some(row) = sessions.first() else {
        return Err(file.invalid("the sessions table is empty"));
    };
    let dc_id: i32 =
        field(file, get(row, 0), "sessions.dc_id")?.ok_or_else(|| file.invalid("sessions.dc_id is NULL"))?;
    let ip: IpAddr = get(row, 1)
        .text()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| file.invalid("sessions.server_address is not an IP address"))?;
    let port: u16 = field(file, get(row, 2), "sessions.port")?.ok_or_else(|| file.invalid("sessions.port is NULL"))?;
    let key = auth_key(file, get(row, 3).blob())?;
    s.apply(&Change::SetDc(DcOption::new(dc_id, SocketAddr::new(ip, port)).with_auth_key(key)));
    s.apply(&Change::SetHomeDc(dc_id));

    let mut peers = Vec::new();
    for row in file.rows("SELECT id, hash, username, phone FROM entities")? {
        let id: i64 = field(file, get(&row, 0), "entities.id")?.ok_or_else(|| file.invalid("entities.id is NULL"))?;
        let hash: i64 = field(file, get(&row, 1), "entities.hash")?.unwrap_or(0);
        if id == 0 {
            // Telethon's own hack: the row with id 0 holds the logged-in user's id as its hash.
            s.apply(&Change::SetUser(Some(SelfUser::new(hash, false))));
            continue;
        }
        let key = PeerKey::from_marked(id);
        let kind = match key.class {
            PeerClass::User => PeerKind::User,
            PeerClass::Chat => PeerKind::BasicGroup,
            PeerClass::Channel => PeerKind::Channel,
        };
        let usernames = get(&row, 2).text().filter(|u| !u.is_empty()).into_iter().collect();
        let phone = get(&row, 3).text().filter(|p| !p.is_empty());
        peers.push(Peer::new(key.id, kind, hash).with_usernames(usernames).with_phone(phone));
    }
    s.peers = peers.into_iter().collect();

    if file.has_table("update_state")? {
        // Telethon keys channel states by the bare channel id.
        let state = update_state(file, |id| id)?;
        s.apply(&Change::UpdateState(UpdateStateChange::All(state)));
    }
    Ok(s)
}

/// Telethon writes `b''` for "no key"; an all-zero key also means none.
fn auth_key(file: &File<'_>, bytes: Option<&[u8]>) -> Result<Option<AuthKey>, SessionError> {
    match bytes {
        None | Some([]) => Ok(None),
        Some(b) => {
            let key = AuthKey::from_slice(b)
                .ok_or_else(|| file.invalid(&format!("sessions.auth_key is {} bytes, not 256", b.len())))?;
            Ok(if key.is_zero() { None } else { Some(key) })
        }
    }
}

/// The rows of a new Telethon file holding `data`; `now` (Unix seconds) is the entities' `date`.
pub(crate) fn write(data: &SessionData, now: i64) -> Result<ExportPlan, SessionError> {
    let home = data.home().ok_or_else(|| {
        SessionError::invalid("session to export", "it has no home DC option (nothing to log in with)")
    })?;
    let mut rows = vec![Statement::new("insert into version values (?)", vec![VERSION.into()])];
    let key: Vec<u8> = home.auth_key.as_ref().map(|k| k.as_bytes().to_vec()).unwrap_or_default();
    rows.push(Statement::new(
        "insert or replace into sessions values (?,?,?,?,?,?)",
        vec![
            home.id.into(),
            home.addr.ip().to_string().into(),
            home.addr.port().into(),
            key.into(),
            Value::Null,
            Vec::<u8>::new().into(),
        ],
    ));
    const ENTITY: &str = "insert or replace into entities values (?,?,?,?,?,?)";
    if let Some(user) = data.user {
        rows.push(Statement::new(
            ENTITY,
            vec![0i64.into(), user.id.into(), Value::Null, Value::Null, Value::Null, now.into()],
        ));
    }
    for peer in data.peers.iter().filter(|p| !p.min) {
        let username = peer.usernames.first().map(|u| u.to_lowercase());
        let phone = peer.phone.as_deref().and_then(phone_digits);
        rows.push(Statement::new(
            ENTITY,
            vec![
                peer.key().marked().into(),
                peer.access_hash.into(),
                username.into(),
                phone.into(),
                Value::Null,
                now.into(),
            ],
        ));
    }
    const STATE: &str = "insert or replace into update_state values (?,?,?,?,?)";
    let u = &data.updates;
    rows.push(Statement::new(STATE, vec![0i64.into(), u.pts.into(), u.qts.into(), u.date.into(), u.seq.into()]));
    for (channel, pts) in &u.channels {
        rows.push(Statement::new(STATE, vec![(*channel).into(), (*pts).into(), 0i64.into(), 0i64.into(), 0i64.into()]));
    }
    Ok(ExportPlan { schema: SCHEMA, statements: rows })
}
