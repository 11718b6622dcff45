//! `StringSessionBackend`: the conformance suite, large sessions, the watch channel and invalid
//! strings.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::sync::Arc;

use session_core::{AuthKey, BoxError, Change, SelfUser, SessionBackend, SessionError, SessionStore};
use session_string::foreign::{self, StringFormat};
use session_string::StringSessionBackend;
use session_testkit::{run_all, sample_session, Fresh};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    run_all(&Fresh(|| async { Ok::<_, BoxError>(StringSessionBackend::new("")) })).await;
}

#[test]
fn seventy_thousand_peers_round_trip_through_the_full_string() {
    let data = sample_session(70_000);
    assert_eq!(data.peers.len(), 70_000);
    let s = session_string::encode_full(&data).unwrap();
    assert!(s.starts_with(session_string::FULL_PREFIX));
    assert_eq!(session_string::decode(&s).unwrap(), data);
    assert_eq!(foreign::import(&s).unwrap(), (data.clone(), StringFormat::Full));
    // And through a fresh backend built from the string alone.
    let backend = StringSessionBackend::new(&s);
    assert_eq!(backend.current(), s);
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    assert_eq!(rt.block_on(backend.load_session()).unwrap(), Some(data));
}

#[tokio::test]
async fn every_change_is_published_and_the_latest_string_reloads() {
    let backend = Arc::new(StringSessionBackend::new(""));
    let mut rx = backend.subscribe();
    assert_eq!(backend.current(), "");
    let store = SessionStore::open_default(Arc::clone(&backend)).await.unwrap();
    store.apply(Change::SetAuthKey { dc_id: 2, key: Some(AuthKey::new([9; 256])) }).await.unwrap();
    store.apply(Change::SetHomeDc(2)).await.unwrap();
    store.apply(Change::SetUser(Some(SelfUser::new(42, true)))).await.unwrap();
    assert!(rx.has_changed().unwrap());
    let saved = rx.borrow_and_update().clone();
    assert_eq!(saved, backend.current());
    store.close().await.unwrap();

    // A restart from the re-saved string sees everything.
    let again = StringSessionBackend::new(&saved);
    let data = again.load_session().await.unwrap().unwrap();
    assert_eq!(data.home_dc, 2);
    assert_eq!(data.user, Some(SelfUser::new(42, true)));
    assert_eq!(data.auth_key(2), Some(&AuthKey::new([9; 256])));

    // Persisting the same state again does not notify.
    again.persist(&[Change::SetHomeDc(2)], &data).await.unwrap();
    let rx2 = again.subscribe();
    again.persist(&[Change::SetHomeDc(2)], &data).await.unwrap();
    assert!(!rx2.has_changed().unwrap());
    again.persist(&[Change::SetHomeDc(4)], &data).await.unwrap();
    assert!(rx2.has_changed().unwrap());

    // Logging out empties the string.
    again.persist(&[Change::LogOut], &data).await.unwrap();
    assert_eq!(again.current(), "");
    assert_eq!(again.load_session().await.unwrap(), None);
}

#[tokio::test]
async fn an_invalid_string_is_an_error_not_an_empty_session() {
    for bad in ["L1.AAAA*", "L9.AAAA", "Lc1.AAAA", "not a session", "1AAAA", "L1.TFlTUwEA"] {
        let backend = StringSessionBackend::new(bad);
        let err = backend.load_session().await.expect_err(bad);
        let err = SessionError::from_boxed(err, "string");
        assert!(
            matches!(
                err,
                SessionError::Invalid { .. } | SessionError::Corrupt { .. } | SessionError::UnsupportedVersion { .. }
            ),
            "{bad}: {err}"
        );
        assert!(backend.load().await.is_err(), "{bad}");
        assert!(backend.persist(&[Change::SetHomeDc(2)], &Default::default()).await.is_err(), "{bad}");
        // The string the user gave is kept until something replaces it.
        assert_eq!(backend.current(), bad);
        assert!(backend.error().is_some());
        backend.delete().await.unwrap();
        assert_eq!(backend.load_session().await.unwrap(), None);
        assert_eq!(backend.current(), "");
    }
}

#[tokio::test]
async fn error_messages_say_what_was_wrong() {
    let data = sample_session(3);
    let full = session_string::encode_full(&data).unwrap();
    let msg = |s: &str| session_string::decode(s).unwrap_err().to_string();

    let mut bad = full.clone();
    bad.insert(10, '*');
    assert!(msg(&bad).contains("position 10"), "{}", msg(&bad));
    assert!(
        msg(&full.replacen("L1.", "L7.", 1)).contains("version 7 is newer"),
        "{}",
        msg(&full.replacen("L1.", "L7.", 1))
    );
    assert!(msg("X1.AAAA").contains("wrong prefix"), "{}", msg("X1.AAAA"));
    let telethon = foreign::export(&data, StringFormat::Telethon).unwrap();
    assert!(msg(&telethon).contains("Telethon"), "{}", msg(&telethon));

    let compact = session_string::encode_compact(&data).unwrap();
    // Flip a character in the middle: the checksum catches it.
    let mut chars: Vec<char> = compact.chars().collect();
    let mid = chars.len() / 2;
    chars[mid] = if chars[mid] == 'A' { 'B' } else { 'A' };
    let flipped: String = chars.into_iter().collect();
    assert!(msg(&flipped).contains("checksum"), "{}", msg(&flipped));
    // Cut: either a base64 length error or the checksum.
    let cut = &compact[..compact.len() - 8];
    assert!(session_string::decode(cut).is_err());
}

#[test]
fn padding_alphabets_and_whitespace_are_accepted() {
    let data = sample_session(10);
    for s in [session_string::encode_full(&data).unwrap(), session_string::encode_compact(&data).unwrap()] {
        let expected = session_string::decode(&s).unwrap();
        let body_start = s.find('.').unwrap() + 1;
        let (prefix, body) = s.split_at(body_start);
        let padded = format!("{prefix}{body}{}", "=".repeat((4 - body.len() % 4) % 4));
        let std_alpha = format!("{prefix}{}", body.replace('-', "+").replace('_', "/"));
        let spaced = format!("  {s}\n");
        for v in [padded, std_alpha, spaced] {
            assert_eq!(session_string::decode(&v).unwrap(), expected, "{v}");
        }
    }
}

#[test]
fn compact_is_about_as_short_as_telethon() {
    let data = sample_session(0);
    let compact = session_string::encode_compact(&data).unwrap();
    let telethon = foreign::export(&data, StringFormat::Telethon).unwrap();
    assert_eq!(telethon.len(), 353);
    assert!(compact.len() <= telethon.len() + 12, "compact {} vs Telethon {}", compact.len(), telethon.len());
}

#[tokio::test]
async fn foreign_strings_are_accepted_and_rewritten_in_full_form() {
    let data = sample_session(0);
    let pyro = foreign::export(&data, StringFormat::Pyrogram).unwrap();
    let backend = StringSessionBackend::new(&pyro);
    assert_eq!(backend.format(), Some(StringFormat::Pyrogram));
    assert!(backend.current().starts_with(session_string::FULL_PREFIX));
    let loaded = backend.load_session().await.unwrap().unwrap();
    assert_eq!(loaded.user, data.user);
    assert_eq!(loaded.api_id, data.api_id);
    assert_eq!(loaded.auth_key(2), data.auth_key(2));
    assert!(!format!("{backend:?}").contains(&backend.current()[3..20]));
}

#[tokio::test]
async fn without_subscribers_changes_are_encoded_only_when_asked() {
    let data = sample_session(50);
    let given = session_string::encode_full(&data).unwrap();
    let backend = StringSessionBackend::new(&given);
    // Our own full string comes back exactly as given.
    assert_eq!(backend.current(), given);
    let mut next = data.clone();
    let change = Change::SetUser(Some(SelfUser::new(777, true)));
    next.apply(&change);
    backend.persist(std::slice::from_ref(&change), &next).await.unwrap();
    // Nobody listened, yet `current` is the new session, and a late subscriber starts from it.
    assert_eq!(session_string::decode(&backend.current()).unwrap(), next);
    let rx = backend.subscribe();
    assert_eq!(session_string::decode(&rx.borrow()).unwrap(), next);
    let change = Change::SetHomeDc(5);
    next.apply(&change);
    backend.persist(std::slice::from_ref(&change), &next).await.unwrap();
    assert!(rx.has_changed().unwrap(), "a subscriber must be told at once");
    assert_eq!(session_string::decode(&rx.borrow()).unwrap().home_dc, 5);
}
