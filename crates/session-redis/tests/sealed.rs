//! A sealed (encrypted at rest) Redis session, on a real `redis-server`: no stored byte (every
//! key's fields read raw, and the server's AOF on disk) holds 8 bytes of an auth key or of the
//! future auth token; a wrong or missing key, a value moved to another field or session, a
//! flipped bit are each a typed error that changes nothing stored; plain sessions still load and
//! are sealed by their first write; keys rotate; passphrases keep their salt; and the testkit's
//! conformance suite passes on a sealed backend.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use session_core::{
    AuthKey, BoxError, Change, DcOption, KdfParams, Keyring, Passphrase, Peer, PeerKind, SealingKey, SessionBackend,
    SessionData, SessionError,
};
use session_redis::{RedisBackend, RedisOptions};
use session_testkit::{run_all, sample_session, Harness};
use support::Redis;

const FAST: KdfParams = KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 };

fn key(byte: u8) -> SealingKey {
    SealingKey::from_bytes([byte; 32])
}

/// A session with two known auth keys and a future auth token, of random-looking bytes so that an
/// 8-byte window of them cannot occur by chance.
fn secret_session() -> SessionData {
    let mut data = sample_session(300);
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed.to_le_bytes()[0]
    };
    let key2: Vec<u8> = (0..256).map(|_| next()).collect();
    let key4: Vec<u8> = (0..256).map(|_| next()).collect();
    let token: Vec<u8> = (0..64).map(|_| next()).collect();
    data.apply(&Change::SetDc(
        DcOption::new(2, "149.154.167.51:443".parse().unwrap()).with_auth_key(AuthKey::from_slice(&key2)),
    ));
    data.apply(&Change::SetAuthKey { dc_id: 4, key: AuthKey::from_slice(&key4) });
    data.apply(&Change::SetFutureAuthToken(Some(token)));
    // Peers of random ids too (the sample's ids are evenly spaced, which the bucket hash spreads
    // one per bucket): some buckets then hold two peers.
    for _ in 0..1_000 {
        let id = i64::from_le_bytes(std::array::from_fn(|_| next())) >> 8;
        data.apply(&Change::UpsertPeer(Peer::new(id, PeerKind::User, id ^ 0x5555)));
    }
    data
}

fn secrets(data: &SessionData) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> =
        data.dcs.values().filter_map(|d| d.auth_key.as_ref()).map(|k| k.as_bytes().to_vec()).collect();
    out.extend(data.future_auth_token.clone());
    assert!(out.len() >= 3, "the session holds the secrets the test looks for");
    out
}

/// Every key of the server, each as its fields (a string as one field named ""), raw bytes.
type Dump = BTreeMap<Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>>;

async fn dump(url: &str) -> Dump {
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query_async(&mut c).await.unwrap();
    let mut out = Dump::new();
    for k in keys {
        let kind: String = redis::cmd("TYPE").arg(&k).query_async(&mut c).await.unwrap();
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = match kind.as_str() {
            "hash" => redis::cmd("HGETALL").arg(&k).query_async(&mut c).await.unwrap(),
            "string" => vec![(Vec::new(), redis::cmd("GET").arg(&k).query_async(&mut c).await.unwrap())],
            other => panic!("key {:?} is a {other}: the backend stores hashes only", String::from_utf8_lossy(&k)),
        };
        fields.sort();
        out.insert(k, fields);
    }
    out
}

/// The dump without the lease hashes (which every open and close changes).
fn data_only(d: &Dump) -> Dump {
    d.iter().filter(|(k, _)| !k.ends_with(b":lease")).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// How many 8-byte windows of `bytes` are windows of one of `secrets`.
fn windows_in(bytes: &[u8], secrets: &[Vec<u8>]) -> usize {
    let set: std::collections::HashSet<&[u8]> = secrets.iter().flat_map(|s| s.windows(8)).collect();
    bytes.windows(8).filter(|w| set.contains(w)).count()
}

/// How many 8-byte windows of the session's secrets appear in any stored field name or value,
/// or in any file of the server's folder (the AOF).
async fn exposed(redis: &Redis, data: &SessionData) -> usize {
    let secrets = secrets(data);
    let mut found = 0;
    for (k, fields) in dump(&redis.url()).await {
        found += windows_in(&k, &secrets);
        for (f, v) in fields {
            found += windows_in(&f, &secrets) + windows_in(&v, &secrets);
        }
    }
    found + files_exposed(redis.dir(), &secrets)
}

fn files_exposed(dir: &Path, secrets: &[Vec<u8>]) -> usize {
    let mut found = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found += files_exposed(&path, secrets);
        } else if path.is_file() {
            found += windows_in(&std::fs::read(&path).unwrap(), secrets);
        }
    }
    found
}

fn options(name: &str) -> RedisOptions {
    RedisOptions::new().session(name).call_timeout(Duration::from_secs(10)).wait_for_owner(Duration::from_secs(5))
}

async fn open(redis: &Redis, name: &str, keys: Option<Keyring>) -> Result<RedisBackend, SessionError> {
    match keys {
        Some(k) => options(name).key(k).open(&redis.url()).await,
        None => options(name).open(&redis.url()).await,
    }
}

fn kind(e: BoxError) -> SessionError {
    SessionError::from_boxed(e, "redis")
}

/// Writes `data` sealed with `keys` (a full save, then changes of every kind through `persist`,
/// peers included, so both the whole-session and the script's bucket merge are sealed).
async fn sealed_session(redis: &Redis, name: &str, keys: Keyring) -> SessionData {
    let mut data = secret_session();
    let b = open(redis, name, Some(keys)).await.unwrap();
    b.save_session(&data).await.unwrap();
    let batch = vec![
        Change::UpsertPeer(Peer::new(77, PeerKind::User, -5).with_phone(Some("+15550001".into()))),
        Change::RemovePeer(data.peers.iter().next().unwrap().key()),
        Change::SetHomeDc(4),
        Change::UpdateState(session_core::UpdateStateChange::Channel { id: 99, pts: 12 }),
    ];
    data.apply_all(&batch);
    b.persist(&batch, &data).await.unwrap();
    assert_eq!(b.load_session().await.unwrap(), Some(data.clone()));
    b.close().await.unwrap();
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stored_byte_holds_a_window_of_a_key_or_the_token() {
    // The check itself: the same session written plain is found, in the values and the AOF.
    let plain = Redis::durable();
    let data = secret_session();
    let b = open(&plain, "p", None).await.unwrap();
    b.save_session(&data).await.unwrap();
    b.close().await.unwrap();
    let found = exposed(&plain, &data).await;
    assert!(found > 500, "the plain session shows only {found} windows of its secrets: the check is blind");

    let redis = Redis::durable();
    let data = sealed_session(&redis, "s", Keyring::new(key(1))).await;
    assert_eq!(exposed(&redis, &data).await, 0, "a sealed session shows its secrets");
    // Nor an access hash or a phone number.
    let stored: Vec<u8> = dump(&redis.url()).await.into_values().flatten().flat_map(|(f, v)| [f, v].concat()).collect();
    let peer = data.peers.get(Peer::new(77, PeerKind::User, 0).key()).unwrap();
    assert!(!stored.windows(8).any(|w| w == peer.access_hash.to_le_bytes()), "an access hash in the clear");
    assert!(!stored.windows(9).any(|w| w == b"+15550001"), "a phone number in the clear");
    // Still the same session for its key, after a reopen.
    let b = open(&redis, "s", Some(Keyring::new(key(1)))).await.unwrap();
    assert_eq!(b.load_session().await.unwrap(), Some(data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_key_or_with_a_wrong_one_nothing_changes() {
    let redis = Redis::durable();
    let data = sealed_session(&redis, "s", Keyring::new(key(1))).await;
    let before = dump(&redis.url()).await;
    let sealed_id = key(1).id();

    match open(&redis, "s", None).await {
        Err(SessionError::Sealed { key_id, .. }) => assert_eq!(key_id, Some(sealed_id)),
        other => panic!("opened without a key: {other:?}"),
    }
    match open(&redis, "s", Some(Keyring::new(key(2)))).await {
        Err(SessionError::WrongKey { key_id, .. }) => assert_eq!(key_id, sealed_id),
        other => panic!("opened with a wrong key: {other:?}"),
    }
    match open(&redis, "s", Some(Keyring::from_passphrase(Passphrase::new("not it"), FAST))).await {
        Err(SessionError::WrongKey { .. }) => {}
        other => panic!("opened with a passphrase: {other:?}"),
    }
    // Nothing was written (the lease hash aside: each open took and released the lease).
    let after = dump(&redis.url()).await;
    assert!(data_only(&before) == data_only(&after), "a refused open changed the stored session");
    // The lease was handed back at once: the right key opens without waiting.
    let b = RedisOptions::new().session("s").key(key(1)).open(&redis.url()).await.unwrap();
    assert_eq!(b.load_session().await.unwrap(), Some(data));
}

async fn raw(redis: &Redis) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap()
}

/// Sets `field` of the hash `key` to `value` behind the backend's back, loads, checks the load
/// left the value as it was, and restores the old value. Returns the load's error.
async fn load_after(
    c: &mut redis::aio::MultiplexedConnection,
    backend: &RedisBackend,
    key: &[u8],
    field: &[u8],
    value: &[u8],
) -> SessionError {
    let old: Vec<u8> = redis::cmd("HGET").arg(key).arg(field).query_async(c).await.unwrap();
    let () = redis::cmd("HSET").arg(key).arg(field).arg(value).query_async(c).await.unwrap();
    let e = match backend.load_session().await {
        Ok(loaded) => panic!(
            "{:?} changed to {} bytes loaded as {}",
            String::from_utf8_lossy(field),
            value.len(),
            if loaded.is_some() { "a session" } else { "nothing" }
        ),
        Err(e) => kind(e),
    };
    let now: Vec<u8> = redis::cmd("HGET").arg(key).arg(field).query_async(c).await.unwrap();
    assert_eq!(now, value, "the load changed the damaged value");
    let () = redis::cmd("HSET").arg(key).arg(field).arg(old).query_async(c).await.unwrap();
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flipped_byte_is_a_typed_error_never_a_wrong_key_or_other_data() {
    let redis = Redis::durable();
    let mut data = sealed_session(&redis, "s", Keyring::new(key(1))).await;
    // A small session, so that every byte of every value is tried.
    let b = open(&redis, "s", Some(Keyring::new(key(1)))).await.unwrap();
    data.peers = [Peer::new(5, PeerKind::Bot, 9).with_usernames(vec!["x".into()])].into_iter().collect();
    b.save_session(&data).await.unwrap();
    let before = dump(&redis.url()).await;
    let hash = b"layer-session:{s}:s".to_vec();
    let fields = before.get(&hash).unwrap().clone();
    let (mut tried, mut corrupt, mut newer) = (0, 0, 0);
    let mut c = raw(&redis).await;
    for (field, value) in &fields {
        for i in 0..value.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = value.clone();
                bad[i] ^= bit;
                match load_after(&mut c, &b, &hash, field, &bad).await {
                    SessionError::Corrupt { .. } => corrupt += 1,
                    // The layout or an envelope's version byte raised past what this build reads.
                    SessionError::UnsupportedVersion { .. } if i == 0 || field.starts_with(b"p:") => newer += 1,
                    other => panic!("{:?} byte {i} ^ {bit:#x}: {other:?}", String::from_utf8_lossy(field)),
                }
                tried += 1;
            }
        }
    }
    eprintln!("{tried} flipped bits in {} fields: {corrupt} Corrupt, {newer} UnsupportedVersion", fields.len());
    // Each value's version byte (2) reads as a newer version with either bit flipped (3, 130).
    assert!(
        tried > 1_000 && corrupt + newer == tried && newer <= 2 * (fields.len() + 1),
        "{tried}: {corrupt}, {newer}"
    );
    assert!(dump(&redis.url()).await.get(&hash) == before.get(&hash), "the stored session changed");
    assert_eq!(b.load_session().await.unwrap(), Some(data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_moved_to_another_field_or_session_do_not_open() {
    let redis = Redis::durable();
    let data = sealed_session(&redis, "a", Keyring::new(key(1))).await;
    let _ = sealed_session(&redis, "b", Keyring::new(key(1))).await;
    let _ = sealed_session(&redis, "c", Keyring::new(key(2))).await;
    let stored = dump(&redis.url()).await;
    let (ha, hb, hc) =
        (b"layer-session:{a}:s".to_vec(), b"layer-session:{b}:s".to_vec(), b"layer-session:{c}:s".to_vec());
    let value = |h: &Vec<u8>, f: &[u8]| stored[h].iter().find(|(n, _)| n == f).unwrap().1.clone();
    let b = open(&redis, "a", Some(Keyring::new(key(1)))).await.unwrap();
    let mut c = raw(&redis).await;
    let bucket = stored[&ha].iter().find(|(f, _)| f.starts_with(b"p:")).unwrap().0.clone();
    let other_bucket = stored[&ha].iter().rev().find(|(f, _)| f.starts_with(b"p:") && *f != bucket).unwrap().0.clone();
    let other_channel = stored[&ha].iter().find(|(f, _)| f.starts_with(b"c:") && f != b"c:99").unwrap().0.clone();
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        ("meta from session b", b"meta".to_vec(), value(&hb, b"meta")),
        ("DC 2 from session b", b"dc:2:0".to_vec(), value(&hb, b"dc:2:0")),
        ("a bucket from session b", bucket.clone(), value(&hb, &bucket)),
        ("DC 4's value as DC 2's", b"dc:2:0".to_vec(), value(&ha, b"dc:4:0")),
        ("meta as DC 2", b"dc:2:0".to_vec(), value(&ha, b"meta")),
        ("channel 99's pts as another channel's", other_channel, value(&ha, b"c:99")),
        ("a bucket as another bucket", other_bucket.clone(), value(&ha, &bucket)),
        ("meta sealed with another key", b"meta".to_vec(), value(&hc, b"meta")),
    ];
    for (what, field, moved) in cases {
        assert!(stored[&ha].iter().any(|(f, _)| *f == field), "{what}: no field {:?}", String::from_utf8_lossy(&field));
        let e = load_after(&mut c, &b, &ha, &field, &moved).await;
        assert!(matches!(e, SessionError::Corrupt { .. }), "{what}: {e:?}");
    }
    // A peer's record moved to another peer of the same bucket: swap the two keys of a bucket
    // that holds two records.
    let two = stored[&ha]
        .iter()
        .find(|(f, v)| f.starts_with(b"p:") && records(v).len() >= 2)
        .map(|(f, v)| (f.clone(), v.clone()));
    let (field, blob) = two.expect("a bucket with two peers (1,000 random ids in 65,536 buckets: about 8 such)");
    let r = records(&blob);
    let mut swapped = blob.clone();
    swapped[r[0]..r[0] + 9].copy_from_slice(&blob[r[1]..r[1] + 9]);
    swapped[r[1]..r[1] + 9].copy_from_slice(&blob[r[0]..r[0] + 9]);
    let e = load_after(&mut c, &b, &ha, &field, &swapped).await;
    assert!(matches!(e, SessionError::Corrupt { .. }), "swapped peer records: {e:?}");
    assert!(data_only(&dump(&redis.url()).await) == data_only(&stored), "the stored sessions changed");
    assert_eq!(b.load_session().await.unwrap(), Some(data));
}

/// The offsets of the records of a bucket.
fn records(blob: &[u8]) -> Vec<usize> {
    let (mut at, mut out) = (0, Vec::new());
    while at + 13 <= blob.len() {
        out.push(at);
        let len = u32::from_le_bytes(blob[at + 9..at + 13].try_into().unwrap());
        at += 13 + usize::try_from(len).unwrap();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_session_opened_with_a_key_loads_and_its_first_write_seals_it() {
    let redis = Redis::durable();
    let mut data = secret_session();
    let b = open(&redis, "s", None).await.unwrap();
    b.save_session(&data).await.unwrap();
    assert_eq!(b.sealed_with(), None);
    b.close().await.unwrap();
    assert!(exposed(&redis, &data).await > 0);
    let b = open(&redis, "s", Some(Keyring::new(key(3)))).await.unwrap();
    assert_eq!(b.load_session().await.unwrap(), Some(data.clone()));
    // One small change: the whole session is rewritten sealed (values would otherwise mix).
    let batch = [Change::SetHomeDc(5)];
    data.apply_all(&batch);
    b.persist(&batch, &data).await.unwrap();
    b.close().await.unwrap();
    let stored = dump(&redis.url()).await;
    let hash = &stored[b"layer-session:{s}:s".as_slice()];
    assert!(hash.iter().any(|(f, v)| f == b"format" && v == b"2"), "not sealed after its first write");
    let secrets = secrets(&data);
    assert!(hash.iter().all(|(f, v)| windows_in(f, &secrets) + windows_in(v, &secrets) == 0), "a secret left plain");
    // Sealed now: a plain open is refused, the key reads it.
    assert!(matches!(open(&redis, "s", None).await, Err(SessionError::Sealed { .. })));
    let b = open(&redis, "s", Some(Keyring::new(key(3)))).await.unwrap();
    assert_eq!(b.load_session().await.unwrap(), Some(data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_reads_with_the_old_key_and_the_first_write_reseals_with_the_new() {
    let redis = Redis::durable();
    let mut data = sealed_session(&redis, "s", Keyring::new(key(1))).await;
    let rotated = || Keyring::new(key(2)).with_old_key(key(1));
    let b = open(&redis, "s", Some(rotated())).await.unwrap();
    assert_eq!(b.sealed_with(), Some(key(2).id()));
    assert_eq!(b.load_session().await.unwrap(), Some(data.clone()));
    let batch = [Change::UpsertPeer(Peer::new(1234, PeerKind::Broadcast, 1))];
    data.apply_all(&batch);
    b.persist(&batch, &data).await.unwrap();
    assert_eq!(b.load_session().await.unwrap(), Some(data.clone()));
    b.close().await.unwrap();
    // Every value is under the new key: the old key alone no longer opens it, the new alone does.
    assert!(matches!(open(&redis, "s", Some(Keyring::new(key(1)))).await, Err(SessionError::WrongKey { .. })));
    let b = open(&redis, "s", Some(Keyring::new(key(2)))).await.unwrap();
    assert_eq!(b.load_session().await.unwrap(), Some(data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passphrase_keeps_its_salt_so_changes_stay_small() {
    let redis = Redis::durable();
    let ring = || Keyring::from_passphrase(Passphrase::new("correct horse battery staple"), FAST);
    let mut data = sealed_session(&redis, "s", ring()).await;
    let before = dump(&redis.url()).await;
    let b = open(&redis, "s", Some(ring())).await.unwrap();
    let id = b.sealed_with().unwrap();
    assert_eq!(b.load_session().await.unwrap(), Some(data.clone()));
    let batch = [Change::UpdateState(session_core::UpdateStateChange::Channel { id: 99, pts: 13 })];
    data.apply_all(&batch);
    b.persist(&batch, &data).await.unwrap();
    assert_eq!(b.sealed_with(), Some(id), "same passphrase, same salt, same key");
    let after = dump(&redis.url()).await;
    let hash = b"layer-session:{s}:s".as_slice();
    let changed: Vec<String> = after[hash]
        .iter()
        .filter(|fv| !before[hash].contains(fv))
        .map(|(f, _)| String::from_utf8_lossy(f).into_owned())
        .collect();
    assert_eq!(changed, ["c:99"], "one change rewrote more than its field");
    b.close().await.unwrap();
    assert!(matches!(open(&redis, "s", Some(Keyring::new(key(1)))).await, Err(SessionError::WrongKey { .. })));
    let b = open(&redis, "s", Some(ring())).await.unwrap();
    assert_eq!(b.load_session().await.unwrap(), Some(data.clone()));
    assert_eq!(exposed(&redis, &data).await, 0);
}

/// The conformance suite with every session sealed (each `fresh` a new named session).
struct Sealed {
    redis: Redis,
    next: AtomicUsize,
}

#[session_core::async_trait]
impl Harness for Sealed {
    type Backend = RedisBackend;

    async fn fresh(&self) -> Result<RedisBackend, BoxError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Ok(options(&format!("s{n}")).key(key(9)).open(&self.redis.url()).await?)
    }

    async fn reopen(&self, old: Arc<RedisBackend>) -> Result<Arc<RedisBackend>, BoxError> {
        let name = old.session().to_owned();
        drop(old);
        Ok(Arc::new(options(&name).key(key(9)).open(&self.redis.url()).await?))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_backend_passes_the_suite() {
    let h = Sealed { redis: Redis::durable(), next: AtomicUsize::new(0) };
    run_all(&h).await;
    // The suite's sessions were sealed, not written plain.
    let stored = dump(&h.redis.url()).await;
    let formats: Vec<&Vec<u8>> = stored.values().flatten().filter(|(f, _)| f == b"format").map(|(_, v)| v).collect();
    assert!(!formats.is_empty() && formats.iter().all(|v| v.as_slice() == b"2"), "{formats:?}");
}
