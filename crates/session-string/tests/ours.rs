//! Our compact form over every shape it encodes differently, and its refusals.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use session_core::{AuthKey, DcOption, SelfUser, SessionData, SessionError};

fn session(addr: &str, dc: i32, user: Option<SelfUser>, test: bool) -> SessionData {
    let mut data = SessionData::default();
    data.home_dc = dc;
    data.test_mode = test;
    data.user = user;
    let option = DcOption::new(dc, addr.parse().unwrap()).with_auth_key(Some(AuthKey::new([0xa5; 256])));
    data.dcs.insert(option.key(), option);
    data
}

#[test]
fn compact_round_trips_every_shape() {
    let addrs = [
        ("149.154.167.51:443", 2, false),         // published production IPv4: not stored
        ("[2001:67c:4e8:f002::a]:443", 2, false), // published production IPv6: not stored
        ("149.154.167.40:443", 2, true),          // published test IPv4
        ("149.154.167.51:80", 2, false),          // another port: stored
        ("10.0.0.1:4433", 200, false),            // a DC with no published address
        ("[2001:db8::1]:8443", 4, true),          // IPv6, stored
    ];
    let users = [
        None,
        Some(SelfUser::new(1, false)),
        Some(SelfUser::new(5_000_000_001, true)),
        Some(SelfUser::new(i64::MIN, false)),
    ];
    let mut lengths = Vec::new();
    for (addr, dc, test) in addrs {
        for user in users {
            let data = session(addr, dc, user, test);
            let s = session_string::encode_compact(&data).unwrap();
            assert!(s.starts_with("Lc1."));
            assert_eq!(session_string::decode(&s).unwrap(), data, "{addr} {user:?}");
            lengths.push(s.len());
        }
    }
    // Published address and a typical user id: about Telethon's 353 characters.
    let typical = session_string::encode_compact(&session("149.154.167.51:443", 2, users[2], false)).unwrap();
    assert!(typical.len() <= 362, "{}", typical.len());
    assert!(lengths.iter().all(|l| *l <= 392), "{lengths:?}");
}

#[test]
fn compact_refuses_what_it_cannot_hold() {
    let mut data = session("149.154.167.51:443", 2, None, false);
    data.home_dc = 3;
    let err = session_string::encode_compact(&data).unwrap_err().to_string();
    assert!(err.contains("home DC 3"), "{err}");
    let mut data = session("149.154.167.51:443", 2, None, false);
    data.dcs.values_mut().for_each(|o| o.auth_key = None);
    let err = session_string::encode_compact(&data).unwrap_err().to_string();
    assert!(err.contains("auth key"), "{err}");
    let data = session("149.154.167.51:443", 300, None, false);
    let err = session_string::encode_compact(&data).unwrap_err().to_string();
    assert!(err.contains("300"), "{err}");
}

#[test]
fn versions_and_checksums() {
    let data = session("149.154.167.51:443", 2, Some(SelfUser::new(7, false)), false);
    let compact = session_string::encode_compact(&data).unwrap();
    let newer = compact.replacen("Lc1.", "Lc2.", 1);
    let err = session_string::decode(&newer).unwrap_err();
    assert!(matches!(err, SessionError::UnsupportedVersion { found: 2, supported: 1, .. }), "{err}");
    let zero = compact.replacen("Lc1.", "Lc0.", 1);
    assert!(matches!(session_string::decode(&zero).unwrap_err(), SessionError::Invalid { .. }));
    // Every single-character change of the body is caught (checksum or base64).
    let body_start = 4;
    for i in body_start..compact.len() {
        let mut bytes = compact.clone().into_bytes();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8(bytes).unwrap();
        let err = session_string::decode(&changed).unwrap_err();
        assert!(matches!(err, SessionError::Corrupt { .. } | SessionError::Invalid { .. }), "{i}: {err}");
    }
    // The full form: the codec's own checksum and version.
    let full = session_string::encode_full(&data).unwrap();
    let mut bytes = full.clone().into_bytes();
    let i = full.len() - 3;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let err = session_string::decode(&String::from_utf8(bytes).unwrap()).unwrap_err();
    assert!(matches!(err, SessionError::Corrupt { .. }), "{err}");
}
