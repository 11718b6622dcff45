//! The sealing layer: round trips, wrong keys, damage, moved values, rotation, passphrases, and
//! that no key or passphrase is ever printed.

use session_core::seal::{self, Binding, OVERHEAD};
use session_core::{KdfParams, KdfRecord, KeyId, Keyring, Passphrase, SealingKey, SessionError};

/// Cheap Argon2id costs so the tests stay fast; the default costs are exercised once.
const FAST: KdfParams = KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 };

fn key(byte: u8) -> SealingKey {
    SealingKey::from_bytes([byte; 32])
}

fn binding() -> Binding {
    Binding::new("test-row").session("alice").dc(2).row(b"auth_key")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn round_trip_with_a_raw_key() {
    let ring = Keyring::new(key(7));
    let plain = b"the auth key of DC 2, 256 bytes of secret".repeat(7);
    let sealed = ring.seal(None, &binding(), &plain).expect("seal");
    assert_eq!(sealed.len(), plain.len() + OVERHEAD);
    assert!(!sealed.windows(8).any(|w| plain.windows(8).any(|p| p == w)), "plaintext visible in the envelope");
    assert_eq!(seal::key_id_of(&sealed), Some(key(7).id()));
    let opened = ring.open(None, "test", &binding(), &sealed).expect("open");
    assert_eq!(opened.as_slice(), plain.as_slice());
    // A fresh nonce each time: the same value never seals to the same bytes.
    assert_ne!(ring.seal(None, &binding(), &plain).expect("seal"), sealed);
    // The empty value round-trips too.
    let empty = ring.seal(None, &binding(), b"").expect("seal");
    assert!(ring.open(None, "test", &binding(), &empty).expect("open").is_empty());
}

#[test]
fn hex_keys_parse_and_bad_ones_are_refused() {
    let text = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF\n";
    assert!(SealingKey::is_hex_key(text));
    let k = SealingKey::from_hex(text).expect("hex");
    let mut bytes = [0u8; 32];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = [0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff][i % 16];
    }
    assert_eq!(k.id(), SealingKey::from_bytes(bytes).id());
    for bad in ["", "00", &"g".repeat(64), &"0".repeat(63), &"0".repeat(65), "correct horse battery staple"] {
        assert!(!SealingKey::is_hex_key(bad) || bad.trim().len() == 64);
        let err = SealingKey::from_hex(bad).expect_err(bad);
        assert!(matches!(err, SessionError::Invalid { .. }), "{err}");
    }
}

#[test]
fn a_key_the_keyring_lacks_is_wrong_key_not_corrupt() {
    let sealed = Keyring::new(key(1)).seal(None, &binding(), b"secret").expect("seal");
    let err = Keyring::new(key(2)).open(None, "alice.session", &binding(), &sealed).expect_err("wrong key");
    match &err {
        SessionError::WrongKey { resource, key_id } => {
            assert_eq!(resource, "alice.session");
            assert_eq!(*key_id, key(1).id());
        }
        other => panic!("expected WrongKey, got {other:?}"),
    }
    let shown = err.to_string();
    assert!(shown.contains(&key(1).id().to_string()) && shown.contains("wrong key"), "{shown}");
    // A passphrase keyring that derives another key is a wrong key too.
    let record = KdfRecord::generate(FAST);
    let by_pass = SealingKey::derive(&Passphrase::new("right"), &record).expect("derive");
    let sealed = seal::seal(&by_pass, &binding(), b"secret").expect("seal");
    let wrong = Keyring::from_passphrase(Passphrase::new("wrong"), FAST);
    assert!(matches!(wrong.open(Some(&record), "s", &binding(), &sealed), Err(SessionError::WrongKey { .. })));
    let right = Keyring::from_passphrase(Passphrase::new("right"), FAST);
    assert_eq!(right.open(Some(&record), "s", &binding(), &sealed).expect("open").as_slice(), b"secret");
}

#[test]
fn every_flipped_bit_and_every_cut_is_an_error() {
    let ring = Keyring::new(key(3));
    let sealed = ring.seal(None, &binding(), b"0123456789abcdef0123456789").expect("seal");
    let mut tried = 0;
    for i in 0..sealed.len() {
        for bit in 0..8 {
            let mut damaged = sealed.clone();
            damaged[i] ^= 1 << bit;
            let err = ring.open(None, "s", &binding(), &damaged).expect_err("flipped");
            match (i, &err) {
                // The version byte: a newer or unknown envelope.
                (0, SessionError::UnsupportedVersion { .. } | SessionError::Corrupt { .. }) => {}
                // The key id: a key this keyring does not hold.
                (1..=8, SessionError::WrongKey { .. }) => {}
                (9.., SessionError::Corrupt { .. }) => {}
                _ => panic!("byte {i} bit {bit}: unexpected {err:?}"),
            }
            tried += 1;
        }
    }
    for len in 0..sealed.len() {
        assert!(ring.open(None, "s", &binding(), &sealed[..len]).is_err(), "cut at {len}");
        tried += 1;
    }
    assert_eq!(tried, sealed.len() * 9);
}

#[test]
fn a_value_moved_to_another_place_does_not_open() {
    let ring = Keyring::new(key(4));
    let sealed = ring.seal(None, &binding(), b"dc 2 key").expect("seal");
    let elsewhere = [
        Binding::new("test-row").session("bob").dc(2).row(b"auth_key"),
        Binding::new("test-row").session("alice").dc(4).row(b"auth_key"),
        Binding::new("test-row").session("alice").dc(2).row(b"future_auth_token"),
        Binding::new("other-kind").session("alice").dc(2).row(b"auth_key"),
        // Length prefixes: the same bytes split differently are another place.
        Binding::new("test-row").session("alic").part(b"e").dc(2).row(b"auth_key"),
    ];
    for other in &elsewhere {
        let err = ring.open(None, "s", other, &sealed).expect_err("moved");
        assert!(matches!(err, SessionError::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains("moved"), "{err}");
    }
}

#[test]
fn rotation_opens_with_the_old_key_and_seals_with_the_new() {
    let old = Keyring::new(key(5));
    let sealed_old = old.seal(None, &binding(), b"before").expect("seal");
    let rotated = Keyring::new(key(6)).with_old_key(key(5));
    assert_eq!(rotated.open(None, "s", &binding(), &sealed_old).expect("old opens").as_slice(), b"before");
    let sealed_new = rotated.seal(None, &binding(), b"after").expect("seal");
    assert_eq!(seal::key_id_of(&sealed_new), Some(key(6).id()));
    // The old keyring alone cannot read what the rotated one wrote.
    assert!(matches!(old.open(None, "s", &binding(), &sealed_new), Err(SessionError::WrongKey { .. })));
    let mut ids = rotated.known_ids();
    ids.sort();
    let mut want = vec![key(5).id(), key(6).id()];
    want.sort();
    assert_eq!(ids, want);
}

#[test]
fn passphrase_derivation_is_deterministic_with_the_stored_salt() {
    let pass = Passphrase::new("correct horse battery staple");
    let record = KdfRecord::generate(FAST);
    let a = SealingKey::derive(&pass, &record).expect("derive");
    let b = SealingKey::derive(&pass, &KdfRecord::from_bytes(&record.to_bytes()).expect("record")).expect("derive");
    assert_eq!(a.id(), b.id());
    assert_eq!(a.kdf(), Some(&record));
    // Another salt, other parameters or another passphrase: another key.
    assert_ne!(SealingKey::derive(&pass, &KdfRecord::generate(FAST)).expect("derive").id(), a.id());
    let slower = KdfRecord { params: KdfParams { iterations: 2, ..FAST }, salt: record.salt };
    assert_ne!(SealingKey::derive(&pass, &slower).expect("derive").id(), a.id());
    assert_ne!(SealingKey::derive(&Passphrase::new("Correct horse"), &record).expect("derive").id(), a.id());
    // A passphrase keyring reuses the stored salt for sealing (one passphrase, one key id)...
    let ring = Keyring::from_passphrase(pass.clone(), FAST);
    assert_eq!(ring.sealing_key(Some(&record)).expect("key").id(), a.id());
    // ... keeps using it where nothing is stored yet (one passphrase, one key id) ...
    assert_eq!(ring.sealing_key(None).expect("key").id(), a.id());
    // ... and with nothing stored at all derives under a fresh salt once, then keeps it.
    let new_ring = Keyring::from_passphrase(pass.clone(), FAST);
    let fresh = new_ring.sealing_key(None).expect("key");
    assert_ne!(fresh.id(), a.id());
    assert_eq!(new_ring.sealing_key(None).expect("key").id(), fresh.id());
    assert_eq!(fresh.kdf().map(|r| r.params), Some(FAST));
    // The default costs work (and are what a keyring uses unless told otherwise).
    let default = KdfRecord::generate(KdfParams::default());
    let k = SealingKey::derive(&pass, &default).expect("default costs");
    assert_eq!(k.kdf().map(|r| r.params), Some(KdfParams::default()));
}

#[test]
fn stored_parameters_are_bounded() {
    let mut bytes = KdfRecord::generate(FAST).to_bytes();
    // 4 TiB of memory from a hostile file: refused, not allocated.
    bytes[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
    let record = KdfRecord::from_bytes(&bytes).expect("parses");
    let err = SealingKey::derive(&Passphrase::new("x"), &record).expect_err("bounded");
    assert!(matches!(err, SessionError::Invalid { .. }), "{err}");
    assert_eq!(KdfRecord::from_bytes(&bytes[1..]), None);
    let mut unknown = bytes;
    unknown[0] = 9;
    assert_eq!(KdfRecord::from_bytes(&unknown), None);
}

#[test]
fn no_key_or_passphrase_is_ever_printed() {
    let raw = [0xabu8; 32];
    let k = SealingKey::from_bytes(raw);
    let pass_text = "hunter2-very-secret-passphrase";
    let record = KdfRecord::generate(FAST);
    let derived = SealingKey::derive(&Passphrase::new(pass_text), &record).expect("derive");
    let ring = Keyring::new(k.clone()).with_old_passphrase(Passphrase::new(pass_text));
    let sealed = seal::seal(&k, &binding(), b"x").expect("seal");
    let errors = [
        Keyring::new(key(9)).open(None, "s", &binding(), &sealed).expect_err("wrong"),
        ring.open(None, "s", &Binding::new("elsewhere"), &sealed).expect_err("moved"),
        SessionError::Sealed { resource: "s".into(), key_id: Some(k.id()) },
        SealingKey::from_hex(&format!("{}zz", hex(&raw[..31]))).expect_err("bad hex"),
    ];
    let mut shown = vec![
        format!("{k:?}"),
        format!("{derived:?}"),
        format!("{ring:?}"),
        format!("{:?}", Passphrase::new(pass_text)),
        format!("{:?}", k.id()),
    ];
    for e in &errors {
        shown.push(e.to_string());
        shown.push(format!("{e:?}"));
    }
    let derived_ring = Keyring::from_passphrase(Passphrase::new(pass_text), FAST);
    let _ = derived_ring.sealing_key(Some(&record)).expect("derive");
    shown.push(format!("{derived_ring:?}"));
    for text in &shown {
        assert!(!text.contains(&hex(&raw[..8])), "key bytes in {text}");
        assert!(!text.contains("171, 171, 171"), "key bytes in {text}");
        assert!(!text.contains(pass_text), "passphrase in {text}");
    }
    assert!(format!("{k:?}").contains(&k.id().to_string()));
    let sealed_msg = errors[2].to_string();
    assert!(sealed_msg.contains("sealed") && sealed_msg.contains("key"), "{sealed_msg}");
}

#[test]
fn key_ids_are_stable_and_distinct() {
    // The id is a MAC of the key: the same key always has the same id, and it is not the key.
    let id: KeyId = key(1).id();
    assert_eq!(id, SealingKey::from_bytes([1; 32]).id());
    assert_ne!(id, key(2).id());
    assert_ne!(id.0, [1u8; 8]);
    assert_eq!(id.to_string().len(), 16);
    let a = SealingKey::generate();
    let b = SealingKey::generate();
    assert_ne!(a.id(), b.id());
}

#[test]
fn clones_of_a_keyring_share_the_keys_derived_by_any_of_them() {
    // A backend keeps a clone of the keyring it was given: a passphrase's key derived while
    // opening must not be derived again (tens of milliseconds) or, for sealing, under a new salt.
    let ring = Keyring::from_passphrase(Passphrase::new("shared"), FAST);
    let copy = ring.clone();
    let key = ring.sealing_key(None).expect("derive");
    assert!(copy.known_ids().contains(&key.id()));
    assert_eq!(copy.sealing_key(None).expect("cached").id(), key.id());
}

#[test]
fn nonces_never_repeat_across_threads_and_calls() {
    // Nonces come from one generator shared by every thread: each seal, on any thread, must
    // still draw its own. The same plaintext and binding are sealed each time, so two equal
    // envelopes could only come from a repeated nonce.
    let k = std::sync::Arc::new(key(3));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let k = std::sync::Arc::clone(&k);
            std::thread::spawn(move || {
                (0..2_000).map(|_| seal::seal(&k, &binding(), b"same").expect("seal")).collect::<Vec<_>>()
            })
        })
        .collect();
    let mut nonces = std::collections::HashSet::new();
    for t in threads {
        for sealed in t.join().expect("thread") {
            assert!(nonces.insert(sealed[9..21].to_vec()), "a nonce was drawn twice");
            assert_eq!(seal::open_with(&k, "t", &binding(), &sealed).expect("open").as_slice(), b"same");
        }
    }
    assert_eq!(nonces.len(), 8_000);
}

#[test]
fn a_long_binding_binds_as_a_short_one_does() {
    // Associated data past the inline buffer is built on the heap: it must bind all the same.
    for len in [0usize, 200, 256, 300, 4_000] {
        let b = Binding::new("test-row").row(vec![7u8; len]);
        let sealed = seal::seal(&key(1), &b, b"value").expect("seal");
        assert_eq!(seal::open_with(&key(1), "t", &b, &sealed).expect("open").as_slice(), b"value", "{len}");
        let mut other = vec![7u8; len];
        if let Some(last) = other.last_mut() {
            *last = 8;
        } else {
            other.push(7);
        }
        let moved = Binding::new("test-row").row(other);
        assert!(matches!(seal::open_with(&key(1), "t", &moved, &sealed), Err(SessionError::Corrupt { .. })), "{len}");
    }
}

/// An envelope of version 1 (XChaCha20-Poly1305), written by the build before version 2 with
/// key `[7; 32]`, [`binding`] and the plaintext below.
const V1_ENVELOPE: &str = "0185d3a54690e83333d4a06a11281166fb5262c331089140e768e43d939653cb10e6e3d4a7cadd24053765fe60cc8412adbf4ac6ecda62918295f71f0275851477c69c954ce3819c2933d33abd0cea9df0678ebbb2c68f";

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect()
}

#[test]
fn envelopes_of_version_1_still_open_and_new_ones_are_version_2() {
    let ring = Keyring::new(key(7));
    let v1 = unhex(V1_ENVELOPE);
    assert_eq!(v1[0], 1);
    assert_eq!(seal::key_id_of(&v1), Some(key(7).id()));
    let plain = ring.open(None, "test", &binding(), &v1).expect("a version 1 envelope opens");
    assert_eq!(plain.as_slice(), b"written by an envelope version 1 build");
    // Bound as before: moved, or opened by another key, it fails the same ways.
    let moved = ring.open(None, "test", &Binding::new("test-row").session("bob").dc(2).row(b"auth_key"), &v1);
    assert!(matches!(moved, Err(SessionError::Corrupt { .. })), "{moved:?}");
    assert!(matches!(Keyring::new(key(8)).open(None, "test", &binding(), &v1), Err(SessionError::WrongKey { .. })));

    let v2 = ring.seal(None, &binding(), b"written by an envelope version 1 build").expect("seal");
    assert_eq!(v2[0], seal::ENVELOPE_VERSION);
    assert_eq!(seal::ENVELOPE_VERSION, 2);
    assert_eq!(v2.len(), v1.len() - 12, "12-byte nonces instead of 24");
    // The version is authenticated: the same bytes read as the other version do not open.
    for (mut relabelled, what) in [(v2.clone(), "v2 as v1"), (v1.clone(), "v1 as v2")] {
        relabelled[0] ^= 3;
        let err = ring.open(None, "test", &binding(), &relabelled).expect_err(what);
        assert!(matches!(err, SessionError::Corrupt { .. }), "{what}: {err:?}");
    }
    // A version 1 envelope cut to less than its own header and tag is damage, not an open.
    let cut = &v1[..1 + 8 + 24 + 15];
    assert!(matches!(ring.open(None, "test", &binding(), cut), Err(SessionError::Corrupt { .. })));
}

#[test]
fn seal_append_and_open_into_work_inside_the_callers_buffers() {
    let k = key(9);
    let plain = b"a long value: the snapshot of a session file".repeat(40);
    let mut out = b"frame".to_vec();
    seal::seal_append(&k, &binding(), &plain, &mut out).expect("seal");
    assert_eq!(&out[..5], b"frame", "what the buffer held stays");
    let envelope = &out[5..];
    assert_eq!(envelope.len(), plain.len() + OVERHEAD);
    assert_eq!(seal::opened_len(envelope), Some(plain.len()));
    assert_eq!(seal::open_with(&k, "s", &binding(), envelope).expect("open").as_slice(), plain.as_slice());
    let mut into = vec![0u8; plain.len()];
    seal::open_into(&k, "s", &binding(), envelope, &mut into).expect("open into");
    assert_eq!(into, plain);
    // A buffer of another length than the value: Corrupt (the place says how long it is).
    for len in [plain.len() - 1, plain.len() + 1] {
        let mut wrong = vec![0u8; len];
        let err = seal::open_into(&k, "s", &binding(), envelope, &mut wrong).expect_err("length");
        assert!(matches!(err, SessionError::Corrupt { .. }), "{err:?}");
    }
    // A value that fails its tag leaves no plaintext in the buffer.
    let mut damaged = envelope.to_vec();
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    let mut into = vec![0u8; plain.len()];
    let err = seal::open_into(&k, "s", &binding(), &damaged, &mut into).expect_err("damaged");
    assert!(matches!(err, SessionError::Corrupt { .. }), "{err:?}");
    assert!(!into.windows(8).any(|w| plain.windows(8).any(|p| p == w)), "plaintext left in the buffer");
    // Another key: WrongKey, as with open_with.
    let mut into = vec![0u8; plain.len()];
    assert!(matches!(
        seal::open_into(&key(10), "s", &binding(), envelope, &mut into),
        Err(SessionError::WrongKey { .. })
    ));
    assert_eq!(seal::opened_len(&envelope[..OVERHEAD - 1]), None);
}

/// A version 2 envelope sealed by the build that used aes-gcm-siv 0.11 (key `[7; 32]`,
/// [`binding`]): the same AES-256-GCM-SIV, whatever crate version computes it.
const V2_ENVELOPE_AES_GCM_SIV_0_11: &str = "0285d3a54690e833336631615e710bfaac0caa7f639ad99d0a50c1da3fa32b65766e2de287f37a9d2b4f443b49fc4a42cb2a2c1438e3fac8c473736ad25ad47cf2b3838d5a263d8e55c2b70818f11170967ea0d3ec4b04490d83fb175bed";

#[test]
fn a_version_2_envelope_of_the_previous_cipher_crate_still_opens() {
    let v2 = unhex(V2_ENVELOPE_AES_GCM_SIV_0_11);
    assert_eq!(v2[0], 2);
    let plain = Keyring::new(key(7)).open(None, "test", &binding(), &v2).expect("opens");
    assert_eq!(plain.as_slice(), b"written by an envelope version 2 build (aes-gcm-siv 0.11)");
    let mut damaged = v2.clone();
    damaged[20] ^= 1;
    assert!(matches!(Keyring::new(key(7)).open(None, "test", &binding(), &damaged), Err(SessionError::Corrupt { .. })));
}
