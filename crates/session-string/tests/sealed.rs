//! The sealed string form (`Le1.`): round trips, no secret visible, a missing or wrong key and
//! any change to the string are typed errors, rotation and passphrases, and the backend.

use base64::Engine;
use session_core::{AuthKey, Change, KdfParams, Keyring, Passphrase, SealingKey, SessionBackend, SessionError};
use session_string::{
    decode, decode_sealed, encode_full, encode_sealed, foreign, is_sealed, StringSessionBackend, SEALED_PREFIX,
};
use session_testkit::sample_session;

const FAST: KdfParams = KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 };

fn key(byte: u8) -> SealingKey {
    SealingKey::from_bytes([byte; 32])
}

fn session() -> session_core::SessionData {
    let mut data = sample_session(20);
    let auth: Vec<u8> = (0..=255u8).map(|b| b.wrapping_mul(167).wrapping_add(13)).collect();
    data.apply(&Change::SetAuthKey { dc_id: 2, key: AuthKey::from_slice(&auth) });
    data.apply(&Change::SetFutureAuthToken(Some((0..48u8).map(|b| b.wrapping_mul(29) ^ 0x5a).collect())));
    data
}

fn body(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&s[SEALED_PREFIX.len()..]).expect("base64")
}

#[test]
fn sealed_strings_round_trip_and_show_no_secret() {
    let data = session();
    let ring = Keyring::new(key(1));
    let s = encode_sealed(&data, &ring).expect("seal");
    assert!(s.starts_with(SEALED_PREFIX) && is_sealed(&s));
    assert_eq!(decode_sealed(&s, &ring).expect("open"), data);
    assert_eq!(decode_sealed(&format!("  {s}\n"), &ring).expect("trimmed"), data);
    let bytes = body(&s);
    let mut secrets: Vec<Vec<u8>> =
        data.dcs.values().filter_map(|d| d.auth_key.as_ref()).map(|k| k.as_bytes().to_vec()).collect();
    secrets.extend(data.future_auth_token.clone());
    for secret in &secrets {
        assert!(!secret.windows(8).any(|w| bytes.windows(8).any(|b| b == w)), "a secret is visible");
    }
    // Two seals of one session differ (fresh nonce), and plain strings still decode with a key.
    assert_ne!(encode_sealed(&data, &ring).expect("seal"), s);
    assert_eq!(decode_sealed(&encode_full(&data).expect("full"), &ring).expect("plain"), data);
}

#[test]
fn a_sealed_string_without_a_key_or_with_a_wrong_one_is_a_typed_error() {
    let s = encode_sealed(&session(), &Keyring::new(key(2))).expect("seal");
    for err in [decode(&s).expect_err("no key"), foreign::import(&s).expect_err("import")] {
        match &err {
            SessionError::Sealed { key_id, .. } => assert_eq!(*key_id, Some(key(2).id())),
            other => panic!("expected Sealed, got {other:?}"),
        }
        assert!(err.to_string().contains("sealed"), "{err}");
    }
    match decode_sealed(&s, &Keyring::new(key(3))) {
        Err(SessionError::WrongKey { key_id, .. }) => assert_eq!(key_id, key(2).id()),
        other => panic!("expected WrongKey, got {other:?}"),
    }
    // The backend keeps the typed error and never reads the string as "no session".
    let plain_backend = StringSessionBackend::new(&s);
    assert!(matches!(plain_backend.error(), Some(SessionError::Sealed { .. })));
    assert_eq!(plain_backend.current(), s, "the string given is kept as it is");
    let wrong = StringSessionBackend::new_sealed(&s, Keyring::new(key(3)));
    assert!(matches!(wrong.error(), Some(SessionError::WrongKey { .. })));
}

#[test]
fn every_changed_character_is_an_error() {
    let ring = Keyring::new(key(4));
    let s = encode_sealed(&sample_session(0), &ring).expect("seal");
    let mut tried = 0;
    for i in SEALED_PREFIX.len()..s.len() {
        let mut chars: Vec<char> = s.chars().collect();
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        let changed: String = chars.into_iter().collect();
        // The last character may carry only padding bits that base64 ignores; otherwise the
        // bytes changed and the seal must not open.
        match decode_sealed(&changed, &ring) {
            Ok(d) => assert_eq!(i, s.len() - 1, "char {i} changed, yet it opened as {d:?}"),
            Err(
                SessionError::Corrupt { .. }
                | SessionError::WrongKey { .. }
                | SessionError::Invalid { .. }
                | SessionError::UnsupportedVersion { .. },
            ) => {}
            Err(e) => panic!("char {i}: unexpected {e:?}"),
        }
        tried += 1;
    }
    assert!(tried > 100);
    for len in SEALED_PREFIX.len()..s.len() {
        assert!(decode_sealed(&s[..len], &ring).is_err(), "cut at {len}");
    }
    // A newer layout is refused by name.
    let newer = s.replacen("Le1.", "Le2.", 1);
    assert!(matches!(decode_sealed(&newer, &ring), Err(SessionError::UnsupportedVersion { found: 2, .. })));
}

#[test]
fn rotation_and_passphrases() {
    let data = session();
    let old = encode_sealed(&data, &Keyring::new(key(5))).expect("seal");
    let rotated = Keyring::new(key(6)).with_old_key(key(5));
    assert_eq!(decode_sealed(&old, &rotated).expect("old key opens"), data);
    let new = encode_sealed(&data, &rotated).expect("reseal");
    assert!(matches!(decode_sealed(&new, &Keyring::new(key(5))), Err(SessionError::WrongKey { .. })));

    let pass = || Keyring::from_passphrase(Passphrase::new("a long passphrase"), FAST);
    let s = encode_sealed(&data, &pass()).expect("seal");
    // A fresh keyring (no cached key) derives the key from the salt in the string.
    assert_eq!(decode_sealed(&s, &pass()).expect("open"), data);
    let other = Keyring::from_passphrase(Passphrase::new("another passphrase"), FAST);
    assert!(matches!(decode_sealed(&s, &other), Err(SessionError::WrongKey { .. })));
    // The passphrase's salt travels in the string, in the clear (it is not secret).
    assert_eq!(body(&s)[0], 29);
}

#[tokio::test]
async fn a_sealed_backend_publishes_sealed_strings_and_reads_them_back() {
    let data = session();
    let plain = encode_full(&data).expect("full");
    // A plain string given to a sealed backend is sealed at once.
    let backend = StringSessionBackend::new_sealed(&plain, Keyring::new(key(7)));
    let sealed = backend.current();
    assert!(is_sealed(&sealed), "{}", &sealed[..8]);
    assert_eq!(backend.sealed_with(), Some(key(7).id()));
    let mut rx = backend.subscribe();
    let mut next = data.clone();
    let change = [Change::SetHomeDc(4)];
    next.apply_all(&change);
    backend.persist(&change, &next).await.expect("persist");
    let published = rx.borrow_and_update().clone();
    assert!(is_sealed(&published));
    assert_eq!(decode_sealed(&published, &Keyring::new(key(7))).expect("open"), next);
    let again = StringSessionBackend::new_sealed(&published, Keyring::new(key(7)));
    assert_eq!(again.load_session().await.expect("load"), Some(next));
    assert!(!format!("{again:?}").contains(&published[4..20]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_suite_passes_on_a_sealed_backend() {
    use session_core::BoxError;
    use session_testkit::{run_all, Fresh};
    run_all(&Fresh(|| async { Ok::<_, BoxError>(StringSessionBackend::new_sealed("", Keyring::new(key(9)))) })).await;
}
