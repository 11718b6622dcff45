//! Golden layer-client / ferogram files of every version 1-8, built byte by byte from the
//! layouts in FORMATS.md (independently of the decoder), frozen under `tests/golden/`, and
//! loaded with exact values; plus the ambiguous v1 files, hostile input, the encoders' refusals
//! and the backend's handling of a legacy file (read it, keep it as `.vN.bak` on first write).

use std::net::SocketAddr;
use std::path::PathBuf;

use session_core::{
    AuthKey, Change, DcFlags, DcOption, MinPeerContext, Peer, PeerKind, SessionBackend, SessionData, UpdateState,
};
use session_file::legacy::{self, LegacyFormat};
use session_file::BinaryFileBackend;

struct Dc {
    id: i32,
    key: Option<u8>,
    salt: i64,
    offset: i32,
    addr: &'static str,
    flags: u8,
}

struct PeerRow {
    id: i64,
    hash: i64,
    kind: u8,
    channel_kind: u8,
    community: u8,
}

fn key(seed: u8) -> [u8; 256] {
    let mut k = [0u8; 256];
    for (i, b) in k.iter_mut().enumerate() {
        *b = seed ^ u8::try_from(i % 256).expect("byte");
    }
    k
}

fn dcs() -> Vec<Dc> {
    vec![
        Dc { id: 2, key: Some(1), salt: -5, offset: 7, addr: "149.154.167.51:443", flags: 0 },
        Dc { id: 2, key: None, salt: 0, offset: 0, addr: "[2001:67c:4e8:f002::a]:443", flags: 1 },
        Dc { id: 4, key: Some(2), salt: i64::MIN, offset: -1, addr: "149.154.167.91:80", flags: 2 | 16 },
        Dc { id: 203, key: None, salt: i64::MAX, offset: 0, addr: "91.108.56.180:443", flags: 8 },
    ]
}

fn peer_rows() -> Vec<PeerRow> {
    let row = |id, hash, kind, channel_kind, community| PeerRow { id, hash, kind, channel_kind, community };
    vec![
        row(10, 1000, 0, 0xFF, 0),
        row(11, -1, 1, 1, 0),
        row(12, 0, 1, 0xFF, 0),
        row(13, 0, 2, 0xFF, 0),
        row(14, 9, 0, 0xFF, 1),
        row(15, 3, 1, 0, 0),
        row(16, 4, 1, 2, 0),
        row(17, 6, 1, 7, 0),
        row(1_099_511_627_776, i64::MIN, 0, 0xFF, 0),
    ]
}

const CHANNELS: [(i64, i32); 2] = [(1_234_567_890, 555), (777, -1)];
const MIN: [(i64, i64, i32); 2] = [(10, 11, 99), (20, 0, 5)];

fn home(version: u8) -> i32 {
    // v1 with home DC 4: its first byte is also ferogram's version 4.
    if version == 1 {
        4
    } else {
        2
    }
}

fn token(version: u8) -> Option<Vec<u8>> {
    match version {
        7 => Some(Vec::new()),
        8 => Some(vec![0xAB; 40]),
        _ => None,
    }
}

/// The file, written the way FORMATS.md lays it out.
fn build(version: u8, home_dc: i32) -> Vec<u8> {
    let mut b = Vec::new();
    if version >= 2 {
        b.push(version);
    }
    b.extend_from_slice(&home_dc.to_le_bytes());
    let table = dcs();
    b.push(u8::try_from(table.len()).expect("count"));
    for dc in &table {
        b.extend_from_slice(&dc.id.to_le_bytes());
        match dc.key {
            Some(seed) => {
                b.push(1);
                b.extend_from_slice(&key(seed));
            }
            None => b.push(0),
        }
        b.extend_from_slice(&dc.salt.to_le_bytes());
        b.extend_from_slice(&dc.offset.to_le_bytes());
        b.push(u8::try_from(dc.addr.len()).expect("len"));
        b.extend_from_slice(dc.addr.as_bytes());
        if version >= 3 {
            b.push(dc.flags);
        }
    }
    if version == 1 {
        return b;
    }
    for v in [100i32, 7, 1_700_000_000, 42] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&u16::try_from(CHANNELS.len()).expect("count").to_le_bytes());
    for (id, pts) in CHANNELS {
        b.extend_from_slice(&id.to_le_bytes());
        b.extend_from_slice(&pts.to_le_bytes());
    }
    let rows = peer_rows();
    b.extend_from_slice(&u16::try_from(rows.len()).expect("count").to_le_bytes());
    for p in &rows {
        b.extend_from_slice(&p.id.to_le_bytes());
        b.extend_from_slice(&p.hash.to_le_bytes());
        b.push(p.kind);
        if version >= 6 {
            b.push(p.channel_kind);
        }
        if version >= 8 {
            b.push(p.community);
        }
    }
    if version >= 4 {
        b.extend_from_slice(&u16::try_from(MIN.len()).expect("count").to_le_bytes());
        for (user, peer, msg) in MIN {
            b.extend_from_slice(&user.to_le_bytes());
            b.extend_from_slice(&peer.to_le_bytes());
            b.extend_from_slice(&msg.to_le_bytes());
        }
    }
    if version >= 7 {
        match token(version) {
            Some(t) => {
                b.push(1);
                b.extend_from_slice(&u16::try_from(t.len()).expect("len").to_le_bytes());
                b.extend_from_slice(&t);
            }
            None => b.push(0),
        }
    }
    b
}

/// What each version holds, by the mapping rules written out here once more.
fn expected(version: u8, home_dc: i32) -> SessionData {
    let mut s = SessionData::default();
    s.home_dc = home_dc;
    for dc in dcs() {
        let addr: SocketAddr = dc.addr.parse().expect("addr");
        let flags = if version >= 3 { u32::from(dc.flags) } else { 0 };
        let option = DcOption::new(dc.id, addr)
            .with_flags(DcFlags(flags))
            .with_auth_key(dc.key.map(|seed| AuthKey::new(key(seed))))
            .with_salt(dc.salt, dc.offset);
        s.dcs.insert(option.key(), option);
    }
    if version == 1 {
        return s;
    }
    let mut state = UpdateState::new(100, 7, 1_700_000_000, 42);
    state.channels = CHANNELS.into_iter().collect();
    s.updates = state;
    s.peers = peer_rows()
        .into_iter()
        .map(|p| {
            if version <= 3 {
                // layer: any non-zero byte is a channel.
                let kind = if p.kind != 0 { PeerKind::Channel } else { PeerKind::User };
                return Peer::new(p.id, kind, p.hash);
            }
            if version >= 8 && p.community == 1 {
                return Peer::new(p.id, PeerKind::Community, p.hash);
            }
            match p.kind {
                1 => {
                    let kind = match (version >= 6).then_some(p.channel_kind) {
                        Some(0) => PeerKind::Broadcast,
                        Some(1) => PeerKind::Megagroup,
                        Some(2) => PeerKind::Gigagroup,
                        _ => PeerKind::Channel,
                    };
                    Peer::new(p.id, kind, p.hash).with_min(kind == PeerKind::Channel && p.hash == 0)
                }
                2 => Peer::new(p.id, PeerKind::BasicGroup, p.hash),
                _ => Peer::new(p.id, PeerKind::User, p.hash),
            }
        })
        .collect();
    if version >= 4 {
        s.min_contexts = MIN.iter().map(|(u, p, m)| MinPeerContext::new(*u, *p, *m)).collect();
    }
    s.future_auth_token = token(version);
    s
}

fn golden_path(version: u8) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden")).join(format!("legacy-v{version}.session"))
}

#[test]
fn golden_files_of_every_version_load_with_exact_values() {
    let bless = std::env::var_os("SESSION_FILE_BLESS").is_some();
    for version in 1..=8u8 {
        let built = build(version, home(version));
        let path = golden_path(version);
        if bless {
            std::fs::write(&path, &built).expect("bless");
        }
        let golden = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run once with SESSION_FILE_BLESS=1)", path.display()));
        assert_eq!(golden, built, "v{version}: the frozen golden file differs from the layout");
        let decoded = legacy::decode(&golden).unwrap_or_else(|e| panic!("v{version}: {e}"));
        assert_eq!(decoded.format.version(), version, "v{version}: detected as {}", decoded.format);
        assert_eq!(Some(decoded.format), LegacyFormat::from_version(version));
        assert_eq!(decoded.data, expected(version, home(version)), "v{version}: values differ");
        assert_eq!(decoded.data.dcs.len(), 4, "v{version}: one option per DC entry");
    }
}

#[test]
fn a_v1_file_whose_home_dc_looks_like_a_version_byte_is_read_as_v1() {
    for home_dc in 1..=8 {
        let bytes = build(1, home_dc);
        assert_eq!(bytes[0], u8::try_from(home_dc).expect("byte"));
        let decoded = legacy::decode(&bytes).unwrap_or_else(|e| panic!("home {home_dc}: {e}"));
        assert_eq!(decoded.format, LegacyFormat::LayerV1, "home {home_dc}");
        assert_eq!(decoded.data, expected(1, home_dc), "home {home_dc}");
    }
    // And files of versions 2-8 are not mistaken for v1 whatever their home DC.
    for version in 2..=8u8 {
        for home_dc in [1, 2, 3, 4, 5, 8, 203] {
            let decoded = legacy::decode(&build(version, home_dc)).expect("decodes");
            assert_eq!(decoded.format.version(), version);
            assert_eq!(decoded.data.home_dc, home_dc);
        }
    }
}

#[test]
fn input_that_fits_no_layout_is_refused_without_panicking() {
    for version in 1..=8u8 {
        let full = build(version, home(version));
        for len in 0..full.len() {
            assert!(legacy::decode(&full[..len]).is_err(), "v{version} cut to {len} bytes decoded");
        }
        let mut longer = full.clone();
        longer.push(0);
        assert!(legacy::decode(&longer).is_err(), "v{version} with a trailing byte decoded");
    }
    // A count that promises far more than is present.
    let mut hostile = vec![3u8];
    hostile.extend_from_slice(&2i32.to_le_bytes());
    hostile.push(0);
    hostile.extend_from_slice(&[0u8; 16]);
    hostile.extend_from_slice(&u16::MAX.to_le_bytes());
    assert!(legacy::decode(&hostile).is_err());
    // A plausible-looking v1 header with an address that is not ip:port.
    let mut bad_addr = build(1, 2);
    let at = bad_addr.windows(3).position(|w| w == b"149").expect("address");
    bad_addr[at] = b'x';
    assert!(legacy::decode(&bad_addr).is_err());
    // Random bytes.
    let mut rng = session_testkit::Rng::new(99);
    for _ in 0..20_000 {
        let len = usize::try_from(rng.below(400)).expect("len");
        let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64().to_le_bytes()[0]).collect();
        let _ = legacy::decode(&bytes);
    }
}

#[test]
fn encoders_refuse_what_the_format_cannot_hold() {
    let too_many = |what: &str, r: Result<Vec<u8>, session_core::SessionError>| match r {
        Err(session_core::SessionError::Invalid { reason, .. }) => {
            assert!(reason.contains(what), "{reason} does not mention {what}")
        }
        other => panic!("expected Invalid about {what}, got {other:?}"),
    };
    let mut many_peers = SessionData::default();
    many_peers.peers = (0..65_536i64).map(|i| Peer::new(i + 1, PeerKind::User, i)).collect();
    too_many("65536 peers", legacy::encode_layer_v3(&many_peers));
    too_many("65536 peers", legacy::encode_ferogram_v8(&many_peers));
    let mut many_dcs = SessionData::default();
    for i in 0..256 {
        let o = DcOption::new(i + 1, SocketAddr::from(([1, 2, 3, 4], 443)));
        many_dcs.dcs.insert(o.key(), o);
    }
    too_many("256 DC options", legacy::encode_layer_v3(&many_dcs));
    too_many("256 DC options", legacy::encode_ferogram_v8(&many_dcs));
    let mut many_channels = SessionData::default();
    many_channels.updates.channels = (0..65_536i64).map(|i| (i, 1)).collect();
    too_many("65536 channel", legacy::encode_ferogram_v8(&many_channels));
    let mut group = SessionData::default();
    group.peers.insert(Peer::new(5, PeerKind::BasicGroup, 0));
    too_many("chat", legacy::encode_layer_v3(&group));
    let mut community = SessionData::default();
    community.peers.insert(Peer::new(5, PeerKind::Community, 1));
    too_many("community", legacy::encode_layer_v3(&community));
    let mut contexts = SessionData::default();
    contexts.min_contexts = vec![MinPeerContext::new(1, 2, 3)];
    too_many("min-peer contexts", legacy::encode_layer_v3(&contexts));
    let mut tok = SessionData::default();
    tok.future_auth_token = Some(vec![0; 70_000]);
    too_many("future auth token", legacy::encode_layer_v3(&tok));
    too_many("future auth token", legacy::encode_ferogram_v8(&tok));
    let mut flags = SessionData::default();
    let o = DcOption::new(1, SocketAddr::from(([1, 2, 3, 4], 443))).with_flags(DcFlags(0x100));
    flags.dcs.insert(o.key(), o);
    too_many("flags", legacy::encode_ferogram_v8(&flags));
}

#[test]
fn ferogram_v8_export_keeps_every_kind() {
    let mut s = expected(8, 2);
    s.peers.insert(Peer::new(50, PeerKind::Bot, 5).with_usernames(vec!["bot".into()]));
    s.peers.insert(Peer::new(51, PeerKind::Megagroup, 77).with_min(true));
    let decoded = legacy::decode(&legacy::encode_ferogram_v8(&s).expect("encode")).expect("decode");
    assert_eq!(decoded.format, LegacyFormat::FerogramV8);
    let mut want = s.clone();
    // What v8 cannot say: bots are users, usernames are not stored, a min channel is hash 0.
    want.peers.insert(Peer::new(50, PeerKind::User, 5));
    want.peers.insert(Peer::new(51, PeerKind::Channel, 0).with_min(true));
    assert_eq!(decoded.data, want);
    let layer = expected(3, 2);
    let decoded = legacy::decode(&legacy::encode_layer_v3(&layer).expect("encode")).expect("decode");
    assert_eq!((decoded.format, decoded.data), (LegacyFormat::LayerV3, layer));
}

#[tokio::test]
async fn the_backend_reads_a_legacy_file_and_keeps_it_on_first_write() {
    for version in 1..=8u8 {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("bot.session");
        let golden = build(version, home(version));
        std::fs::write(&path, &golden).expect("write");
        let backend = BinaryFileBackend::open(&path).await.unwrap_or_else(|e| panic!("v{version}: {e}"));
        assert_eq!(backend.legacy_format().map(LegacyFormat::version), Some(version));
        let mut data = backend.load_session().await.expect("load").expect("a session");
        assert_eq!(data, expected(version, home(version)));
        assert_eq!(std::fs::read(&path).expect("read"), golden, "v{version}: opening changed the file");
        let batch = [Change::SetHomeDc(5)];
        data.apply_all(&batch);
        backend.persist(&batch, &data).await.expect("persist");
        let backup = dir.path().join(format!("bot.session.v{version}.bak"));
        assert_eq!(std::fs::read(&backup).expect("backup"), golden, "v{version}: the old file was not kept");
        // A second write does not touch the backup.
        let more = [Change::SetApiId(Some(1))];
        data.apply_all(&more);
        backend.persist(&more, &data).await.expect("persist");
        drop(backend);
        assert_eq!(std::fs::read(&backup).expect("backup"), golden);
        let backend = BinaryFileBackend::open(&path).await.expect("reopen");
        assert_eq!(backend.legacy_format(), None, "v{version}: still legacy after a write");
        assert_eq!(backend.load_session().await.expect("load"), Some(data));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".bak"))
            .collect();
        assert_eq!(names.len(), 1, "v{version}: {names:?}");
    }
    // Deleting a legacy session also keeps the old file.
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("old.session");
    std::fs::write(&path, build(3, 2)).expect("write");
    let backend = BinaryFileBackend::open(&path).await.expect("open");
    backend.delete().await.expect("delete");
    assert!(backend.load_session().await.expect("load").is_none());
    assert_eq!(std::fs::read(dir.path().join("old.session.v3.bak")).expect("backup"), build(3, 2));
}

#[tokio::test]
async fn a_real_ferogram_file_opens_through_the_backend() {
    let fixture =
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/ferogram/ferogram-v8-dev.session"));
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("f.session");
    std::fs::copy(&fixture, &path).expect("copy fixture");
    let backend = BinaryFileBackend::open(&path).await.expect("open");
    assert_eq!(backend.legacy_format(), Some(LegacyFormat::FerogramV8));
    let data = backend.load_session().await.expect("load").expect("session");
    assert_eq!(data.peers.len(), 24);
    assert_eq!(data.home_dc, 3);
}
