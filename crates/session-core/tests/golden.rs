//! Golden files: the bytes of every codec version ever shipped must keep decoding to the same
//! session. Never regenerate an existing file; add one per new version.

use std::net::SocketAddr;
use std::path::PathBuf;

use session_core::{
    codec, AuthKey, Change, DcFlags, DcOption, MinPeerContext, Peer, PeerKind, SelfUser, SessionData, UpdateState,
    UpdateStateChange,
};

/// The session stored in `tests/golden/v1.bin`, built field by field (independent of any helper
/// that might change later).
fn golden_v1_session() -> SessionData {
    let mut key = [0u8; 256];
    for (i, b) in key.iter_mut().enumerate() {
        *b = u8::try_from(i).unwrap_or(0) ^ 0x5A;
    }
    let mut state = UpdateState::new(3_141_592, 31, 1_771_000_123, 5813);
    state.channels.insert(2_173_825_110, 1_305_406);
    state.channels.insert(1, i32::MAX);
    let v6: SocketAddr = "[2001:b28:f23d:f003::e]:443".parse().expect("v6");
    let changes = vec![
        Change::SetTestMode(true),
        Change::SetApiId(Some(12345)),
        Change::SetDc(
            DcOption::new(1, SocketAddr::from(([149, 154, 175, 10], 443)))
                .with_auth_key(Some(AuthKey::new(key)))
                .with_salt(2_718_281_828_459_045_235, -11),
        ),
        Change::SetDc(DcOption::new(3, v6).with_flags(DcFlags::STATIC)),
        Change::SetDc(DcOption::new(4, SocketAddr::from(([149, 154, 166, 120], 80))).with_flags(DcFlags(6))),
        Change::SetHomeDc(1),
        Change::SetUser(Some(SelfUser::new(5_000_000_001, true))),
        Change::UpdateState(UpdateStateChange::All(state)),
        Change::UpsertPeer(Peer::new(1_888_351_078, PeerKind::User, i64::MIN + 1)),
        Change::UpsertPeer(Peer::new(7, PeerKind::Bot, 9).with_usernames(vec!["golden_bot".into(), "alt".into()])),
        Change::UpsertPeer(Peer::new(8, PeerKind::BasicGroup, 0)),
        Change::UpsertPeer(Peer::new(2_179_386_965, PeerKind::Megagroup, i64::MAX - 1).with_min(true)),
        Change::UpsertPeer(Peer::new(5, PeerKind::Broadcast, -1)),
        Change::UpsertPeer(Peer::new(6, PeerKind::Gigagroup, 42)),
        Change::UpsertPeer(Peer::new(9, PeerKind::Channel, 0).with_min(true)),
        Change::UpsertPeer(Peer::new(10, PeerKind::Community, 77)),
        Change::UpsertPeer(Peer::new(11, PeerKind::User, 1).with_phone(Some("+15550001111".into()))),
        Change::SetMinContexts(vec![MinPeerContext::new(4_046_583_855, 2_505_787_380, 2_147_483_646)]),
        Change::SetFutureAuthToken(Some(vec![0x3c, 0xa9, 0x3f, 0x68])),
    ];
    let mut data = SessionData::default();
    data.apply_all(&changes);
    data
}

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name)
}

#[test]
fn v1_golden_file_decodes_to_the_same_session_forever() {
    let path = golden("v1.bin");
    let expected = golden_v1_session();
    if std::env::var_os("LAYER_WRITE_GOLDEN").is_some() && !path.exists() {
        std::fs::write(&path, codec::encode(&expected).expect("encode")).expect("write golden");
    }
    let bytes = std::fs::read(&path).expect("tests/golden/v1.bin is missing: it must be kept forever");
    assert_eq!(codec::decode(&bytes).expect("golden v1 must decode"), expected);
    // The current writer still produces exactly these bytes while FORMAT_VERSION is 1.
    if codec::FORMAT_VERSION == 1 {
        assert_eq!(codec::encode(&expected).expect("encode"), bytes, "v1 encoding changed");
    }
}
