//! The codecs without any I/O: a SQLite layout read through a fake [`Query`] that answers from
//! rows built in memory, export plans inspected as data, GramJS folder contents as a map, and
//! what [`Carries`] promises checked against what each string format keeps.

use std::collections::BTreeMap;

use session_interop::session_core::{
    AuthKey, DcOption, Peer, PeerKind, SelfUser, SessionData, SessionError, UpdateState,
};
use session_interop::sqlite::{ForeignFile, Query, Row, Value};
use session_interop::{gramjs, Carries, ForeignFormat, StringFormat};

fn session() -> SessionData {
    let mut data = SessionData::default();
    data.home_dc = 2;
    let dc =
        DcOption::new(2, "149.154.167.51:443".parse().expect("addr")).with_auth_key(AuthKey::from_slice(&[0x5a; 256]));
    data.dcs.insert(dc.key(), dc);
    data.user = Some(SelfUser::new(777_000_111, false));
    data.api_id = Some(12345);
    data.updates = UpdateState::new(10, 20, 30, 40);
    data.updates.channels.insert(1_234_567, 99);
    data.peers = [
        Peer::new(5_000_001, PeerKind::User, 11).with_usernames(vec!["Alice".into()]),
        Peer::new(1_500_000_002, PeerKind::Channel, 22),
        Peer::new(1_500_000_003, PeerKind::Channel, 0).with_min(true),
    ]
    .into_iter()
    .collect();
    data
}

/// Answers each statement from a table of canned rows; anything else is a driver error.
struct Fake(BTreeMap<String, Vec<Row>>);

impl Fake {
    fn with(mut self, sql: &str, rows: Vec<Row>) -> Self {
        self.0.insert(sql.to_owned(), rows);
        self
    }
}

impl Query for Fake {
    fn rows(&self, sql: &str) -> Result<Vec<Row>, SessionError> {
        self.0.get(sql).cloned().ok_or_else(|| SessionError::invalid("fake driver", format!("no answer for {sql}")))
    }
}

fn names(list: &[&str]) -> Vec<Row> {
    list.iter().map(|n| vec![Value::from(*n)]).collect()
}

fn telethon_file(version: i64) -> Fake {
    let key = vec![0x5au8; 256];
    Fake(BTreeMap::new())
        .with(
            session_interop::sqlite::value::TABLES_SQL,
            names(&["entities", "sent_files", "sessions", "update_state", "version"]),
        )
        .with("SELECT name FROM pragma_table_info('version')", names(&["version"]))
        .with("SELECT version FROM version", vec![vec![Value::Integer(version)]])
        .with(
            "SELECT dc_id, server_address, port, auth_key FROM sessions",
            vec![vec![2i64.into(), "149.154.167.51".into(), 443i64.into(), key.into()]],
        )
        .with(
            "SELECT id, hash, username, phone FROM entities",
            vec![
                // Telethon's own row 0: the logged-in user's id as its hash.
                vec![0i64.into(), 777_000_111i64.into(), Value::Null, Value::Null],
                // A float in an INTEGER column, as Python may write it.
                vec![5_000_001i64.into(), Value::Real(11.0), "alice".into(), Value::Integer(15_551_234)],
                vec![(-1_001_500_000_002i64).into(), "22".into(), Value::Null, Value::Null],
            ],
        )
        .with(
            "SELECT id, pts, qts, date, seq FROM update_state",
            vec![
                vec![0i64.into(), 10i64.into(), 20i64.into(), 30i64.into(), 40i64.into()],
                vec![1_234_567i64.into(), 99i64.into(), 0i64.into(), 0i64.into(), 0i64.into()],
            ],
        )
}

#[test]
fn a_telethon_layout_reads_through_any_driver() {
    let fake = telethon_file(8);
    let file = ForeignFile::new(&fake, "t.session");
    assert_eq!(session_interop::detect_sqlite(&file).expect("detects"), ForeignFormat::Telethon);
    let imported = session_interop::import_sqlite(&file).expect("imports");
    let s = imported.session;
    assert_eq!(s.home_dc, 2);
    assert_eq!(s.home().map(|d| d.addr.to_string()), Some("149.154.167.51:443".to_owned()));
    assert_eq!(s.user, Some(SelfUser::new(777_000_111, false)));
    assert_eq!(s.updates.pts, 10);
    assert_eq!(s.updates.channels.get(&1_234_567), Some(&99));
    assert_eq!(s.peers.len(), 2);
    let alice = s.peers.iter().find(|p| p.id == 5_000_001).expect("alice");
    assert_eq!(
        (alice.access_hash, alice.usernames.clone(), alice.phone.clone()),
        (11, vec!["alice".to_owned()], Some("15551234".to_owned()))
    );
    assert!(s.peers.iter().any(|p| p.id == 1_500_000_002 && p.kind == PeerKind::Channel && p.access_hash == 22));
}

#[test]
fn a_newer_telethon_schema_is_refused_and_unknown_tables_are_named() {
    let fake = telethon_file(9);
    let file = ForeignFile::new(&fake, "t.session");
    match session_interop::import_sqlite(&file) {
        Err(SessionError::UnsupportedVersion { found: 9, supported: 8, .. }) => {}
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
    let fake = Fake(BTreeMap::new()).with(session_interop::sqlite::value::TABLES_SQL, names(&["notes", "todo"]));
    let err = session_interop::detect_sqlite(&ForeignFile::new(&fake, "x.db")).expect_err("not a session");
    let text = err.to_string();
    assert!(text.contains("x.db") && text.contains("notes, todo"), "{text}");
}

#[test]
fn export_plans_are_data_with_what_the_format_holds() {
    let data = session();
    let plan = session_interop::export_sqlite(&data, ForeignFormat::Telethon, 1_700_000_000).expect("plan");
    assert!(plan.schema.contains("create table entities"));
    let sessions = plan.statements.iter().find(|s| s.sql.contains("into sessions")).expect("sessions row");
    assert_eq!(sessions.params[1], Value::from("149.154.167.51"));
    let entities: Vec<_> = plan.statements.iter().filter(|s| s.sql.contains("into entities")).collect();
    // The user's row 0 and the two full peers; the min channel is left out.
    assert_eq!(entities.len(), 3);
    assert!(entities.iter().all(|s| s.params[5] == Value::Integer(1_700_000_000)));

    let plan = session_interop::export_sqlite(&data, ForeignFormat::Pyrogram, 0).expect("plan");
    assert!(!plan.statements.iter().any(|s| s.sql.contains("update_state")), "Pyrogram has no update_state");
    let plan = session_interop::export_sqlite(&data, ForeignFormat::Kurigram, 0).expect("plan");
    assert!(plan.statements.iter().any(|s| s.sql.contains("update_state")));
    assert!(session_interop::export_sqlite(&data, ForeignFormat::Mtcute, 0).is_err(), "mtcute is read only");
    assert!(session_interop::export_sqlite(&SessionData::default(), ForeignFormat::Telethon, 0).is_err());
}

#[test]
fn gramjs_folder_contents_round_trip_without_a_folder() {
    let data = session();
    let files: BTreeMap<String, Vec<u8>> =
        gramjs::encode(&data, "bot", 1_700_000_000_000, "bot").expect("encodes").into_iter().collect();
    assert!(gramjs::is_store(files.keys().map(String::as_str)));
    assert!(files.contains_key("bot%3AauthKey") && files.contains_key("bot%3AdcId"));
    let back = gramjs::decode("bot", &files).expect("decodes");
    assert_eq!(back.home(), data.home());
    // What the folder holds: full peers with their first username (lowercased); no min peer.
    assert_eq!(back.peers.len(), 2);
    assert!(back.peers.iter().any(|p| p.id == 5_000_001 && p.usernames == ["alice"]));
    assert_eq!(Carries::GRAMJS_STORE.user, back.user.is_some());

    let mut two = files.clone();
    two.insert("other%3AdcId".into(), b"4".to_vec());
    assert!(gramjs::decode("bot", &two).is_err(), "two sessions in one folder");
    let mut bad = files;
    bad.insert("bot%3Aport".into(), b"{not json".to_vec());
    let err = gramjs::decode("bot", &bad).expect_err("bad JSON").to_string();
    assert!(err.contains("bot%3Aport"), "{err}");
}

#[test]
fn every_foreign_string_keeps_exactly_what_it_carries() {
    let data = session();
    let mut checked = Vec::new();
    for format in StringFormat::ALL.into_iter().filter(|f| !f.is_ours()) {
        let text = session_interop::export_string(&data, format).expect("this session fits every foreign string");
        checked.push(format);
        let imported = session_interop::import_string(&text).expect("reads back");
        assert_eq!(imported.format, format, "{text}");
        let back = imported.session;
        let carries = Carries::string(format);
        assert_eq!(back.user.is_some(), carries.user, "{format}: user");
        assert_eq!(back.api_id.is_some(), carries.api_id, "{format}: api_id");
        assert_eq!(!back.peers.is_empty(), carries.peers, "{format}: peers");
        assert_eq!(back.updates.pts != 0, carries.update_state, "{format}: update state");
        assert_eq!(back.home().and_then(|d| d.auth_key.clone()), data.home().and_then(|d| d.auth_key.clone()));
    }
    assert_eq!(checked.len(), 10);
}
