//! A loopback MTProto peer that the real client (grammers, through layer-client) talks to.
//!
//! Telegram is unreachable from the test machines and grammers only completes a fresh key
//! exchange with Telegram's own RSA keys, so every DC here holds a pre-shared auth key that the
//! test stores in the session before connecting. The peer is built from grammers' own pieces:
//! the `Full` transport framing (`grammers_mtproto`), AES-IGE (`grammers_crypto`) and TL
//! (de)serialization (`grammers_tl_types`). Only the message-key derivation of MTProto 2.0 is
//! written here, because grammers implements the client side of it only (x = 0 to encrypt,
//! x = 8 to decrypt) and a server needs the opposite.

#![allow(dead_code, clippy::unwrap_used, clippy::cast_possible_truncation)]

pub mod blank;

use std::collections::HashMap;
use std::collections::HashSet;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use grammers_crypto::{aes, DequeBuffer};
use grammers_mtproto::transport::{self, Full, Transport};
use grammers_tl_types::{self as tl, Deserializable, Identifiable, Serializable};
use layer_client::core::{AuthKey, Change, DcOption, SelfUser, SessionData};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const MSG_CONTAINER: u32 = 0x73f1_f8dc;
const GZIP_PACKED: u32 = 0x3072_cfa1;
const RPC_RESULT: u32 = 0xf35c_6d01;

/// One request the peer received, after unwrapping invokeWithLayer / initConnection.
#[derive(Clone, Debug)]
pub struct Call {
    /// The DC that received it.
    pub dc_id: i32,
    /// Constructor id of the function.
    pub constructor: u32,
    /// The serialized function, constructor id included.
    pub body: Vec<u8>,
}

impl Call {
    /// Whether this is a call of function `F`.
    pub fn is<F: Identifiable>(&self) -> bool {
        self.constructor == F::CONSTRUCTOR_ID
    }

    /// The call's arguments (functions deserialize from after their constructor id).
    pub fn parse<F: Deserializable>(&self) -> F {
        F::from_bytes(&self.body[4..]).expect("well-formed request")
    }
}

/// The peer's answer to a call.
pub enum Reply {
    /// `rpc_result` with this serialized object.
    Ok(Vec<u8>),
    /// `rpc_result` with `rpc_error`.
    Err(i32, String),
}

impl Reply {
    /// A successful answer.
    pub fn ok(value: &impl Serializable) -> Reply {
        Reply::Ok(value.to_bytes())
    }

    /// An RPC error.
    pub fn err(code: i32, name: &str) -> Reply {
        Reply::Err(code, name.to_owned())
    }
}

/// What a DC answers to application calls (everything but help.getConfig, which the peer
/// answers itself).
pub type Handler = Arc<dyn Fn(&Call) -> Reply + Send + Sync>;

/// A running loopback DC.
pub struct Dc {
    pub id: i32,
    pub addr: SocketAddr,
    pub key: [u8; 256],
    /// Every call received, in order (help.getConfig included).
    pub calls: Arc<Mutex<Vec<Call>>>,
    /// The api_id of every initConnection received.
    pub init_api_ids: Arc<Mutex<Vec<i32>>>,
    /// One sender per open connection, for messages the server sends unasked (updates).
    pushers: Arc<Mutex<Vec<mpsc::UnboundedSender<Vec<u8>>>>>,
    /// The server salt every client message must carry (0: any salt is accepted, and neither
    /// `bad_server_salt` nor `new_session_created` is ever sent).
    salt: Arc<AtomicI64>,
    /// MTProto service messages sent: `bad_server_salt` and `new_session_created`.
    pub service: Arc<ServiceCounts>,
    task: JoinHandle<()>,
}

/// How many MTProto service messages a DC sent.
#[derive(Default, Debug)]
pub struct ServiceCounts {
    /// `bad_server_salt` answers (a message carried a salt other than the server's).
    pub bad_server_salt: AtomicUsize,
    /// `new_session_created` notices (the first message of a session id this DC had not seen).
    pub new_session_created: AtomicUsize,
    /// `get_future_salts` requests answered.
    pub future_salts: AtomicUsize,
}

impl Drop for Dc {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Dc {
    /// Starts DC `id` on 127.0.0.1 with a key derived from `seed`.
    pub async fn start(id: i32, seed: u8, handler: Handler) -> Dc {
        Dc::start_with_config(id, seed, handler, Vec::new()).await
    }

    /// [`start`](Self::start), announcing `dc_options` in its `help.getConfig` answer.
    pub async fn start_with_config(id: i32, seed: u8, handler: Handler, dc_options: Vec<tl::enums::DcOption>) -> Dc {
        Dc::start_full(id, seed, handler, dc_options, 0).await
    }

    /// [`start`](Self::start) with a server salt that client messages must carry, as Telegram
    /// checks it: a message with another salt is answered `bad_server_salt` (code 48, with the
    /// right salt) and not executed, and the first message of a new session id gets
    /// `new_session_created`.
    pub async fn start_salted(id: i32, seed: u8, handler: Handler, salt: i64) -> Dc {
        assert_ne!(salt, 0, "salt 0 means unchecked");
        Dc::start_full(id, seed, handler, Vec::new(), salt).await
    }

    async fn start_full(id: i32, seed: u8, handler: Handler, dc_options: Vec<tl::enums::DcOption>, salt: i64) -> Dc {
        let dc_options = Arc::new(dc_options);
        let salt = Arc::new(AtomicI64::new(salt));
        let service: Arc<ServiceCounts> = Arc::default();
        let sessions: Arc<Mutex<HashSet<i64>>> = Arc::default();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let key = test_key(seed);
        let calls = Arc::new(Mutex::new(Vec::new()));
        let init_api_ids = Arc::new(Mutex::new(Vec::new()));
        let pushers: Arc<Mutex<Vec<mpsc::UnboundedSender<Vec<u8>>>>> = Arc::default();
        let (c, i, p) = (Arc::clone(&calls), Arc::clone(&init_api_ids), Arc::clone(&pushers));
        let (salt2, service2) = (Arc::clone(&salt), Arc::clone(&service));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let conn = Conn {
                    dc_id: id,
                    key,
                    key_id: key_id(&key),
                    handler: Arc::clone(&handler),
                    calls: Arc::clone(&c),
                    init_api_ids: Arc::clone(&i),
                    dc_options: Arc::clone(&dc_options),
                    transport: Full::new(),
                    session_id: 0,
                    seq: 0,
                    salt: Arc::clone(&salt2),
                    service: Arc::clone(&service2),
                    sessions: Arc::clone(&sessions),
                };
                let (tx, rx) = mpsc::unbounded_channel();
                p.lock().unwrap().push(tx);
                tokio::spawn(conn.serve(stream, rx));
            }
        });
        Dc { id, addr, key, calls, init_api_ids, pushers, salt, service, task }
    }

    /// Changes the server salt (as Telegram rotates salts): the next client message that still
    /// carries the old one is answered `bad_server_salt`.
    pub fn rotate_salt(&self, salt: i64) {
        assert_ne!(salt, 0, "salt 0 means unchecked");
        self.salt.store(salt, Ordering::SeqCst);
    }

    /// The session option a client needs to reach this DC with its key.
    pub fn option(&self) -> DcOption {
        DcOption::new(self.id, self.addr).with_auth_key(Some(AuthKey::new(self.key)))
    }

    /// Sends `updates` unasked on every open connection that has spoken (as Telegram pushes
    /// updates); returns how many connections it went to.
    pub fn push(&self, updates: &tl::enums::Updates) -> usize {
        let body = updates.to_bytes();
        let mut pushers = self.pushers.lock().unwrap();
        pushers.retain(|tx| !tx.is_closed());
        pushers.iter().filter(|tx| tx.send(body.clone()).is_ok()).count()
    }

    /// The calls of `F` received so far, parsed.
    pub fn calls_of<F: Identifiable + Deserializable>(&self) -> Vec<F> {
        self.calls.lock().unwrap().iter().filter(|c| c.is::<F>()).map(Call::parse).collect()
    }

    /// How many calls of `F` this DC received.
    pub fn count<F: Identifiable>(&self) -> usize {
        self.calls.lock().unwrap().iter().filter(|c| c.is::<F>()).count()
    }
}

/// A deterministic 256-byte key, distinct per seed.
pub fn test_key(seed: u8) -> [u8; 256] {
    let mut key = [0u8; 256];
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed).wrapping_mul(0x85eb_ca6b);
    for b in &mut key {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    key
}

/// A session whose home is `home` and that holds every DC's address and key (as a session
/// restored from disk would), optionally logged in.
pub fn session_for(dcs: &[&Dc], home: i32, user: Option<SelfUser>) -> SessionData {
    let mut data = SessionData::default();
    data.apply(&Change::SetHomeDc(home));
    for dc in dcs {
        data.apply(&Change::SetDc(dc.option()));
    }
    data.apply(&Change::SetUser(user));
    data
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn key_id(key: &[u8; 256]) -> [u8; 8] {
    AuthKey::new(*key).key_id().to_le_bytes()
}

/// MTProto 2.0 key derivation: x = 0 for client-to-server messages, x = 8 for server-to-client.
fn kdf(key: &[u8; 256], msg_key: &[u8; 16], x: usize) -> ([u8; 32], [u8; 32]) {
    let a = sha256(&[msg_key, &key[x..x + 36]]);
    let b = sha256(&[&key[40 + x..76 + x], msg_key]);
    let mut aes_key = [0u8; 32];
    aes_key[..8].copy_from_slice(&a[..8]);
    aes_key[8..24].copy_from_slice(&b[8..24]);
    aes_key[24..].copy_from_slice(&a[24..]);
    let mut iv = [0u8; 32];
    iv[..8].copy_from_slice(&b[..8]);
    iv[8..24].copy_from_slice(&a[8..24]);
    iv[24..].copy_from_slice(&b[24..]);
    (aes_key, iv)
}

static MSG_COUNTER: AtomicU64 = AtomicU64::new(0);

fn server_msg_id() -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let n = MSG_COUNTER.fetch_add(1, Ordering::Relaxed) & 0x3fff_ffff;
    ((now << 32) | (n << 2) | 1) as i64
}

fn read_i32(b: &[u8], at: usize) -> i32 {
    i32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn read_i64(b: &[u8], at: usize) -> i64 {
    i64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Length of a TL `string`/`bytes` starting at `at`, padding included.
fn tl_bytes_len(b: &[u8], at: usize) -> usize {
    let (len, head) = if b[at] == 254 {
        (usize::from(b[at + 1]) | usize::from(b[at + 2]) << 8 | usize::from(b[at + 3]) << 16, 4)
    } else {
        (usize::from(b[at]), 1)
    };
    (head + len).div_ceil(4) * 4
}

struct Conn {
    dc_id: i32,
    key: [u8; 256],
    key_id: [u8; 8],
    handler: Handler,
    calls: Arc<Mutex<Vec<Call>>>,
    init_api_ids: Arc<Mutex<Vec<i32>>>,
    dc_options: Arc<Vec<tl::enums::DcOption>>,
    transport: Full,
    session_id: i64,
    seq: i32,
    salt: Arc<AtomicI64>,
    service: Arc<ServiceCounts>,
    /// Session ids this DC has seen (on any connection), for `new_session_created`.
    sessions: Arc<Mutex<HashSet<i64>>>,
}

impl Conn {
    async fn serve(mut self, mut stream: TcpStream, mut pushes: mpsc::UnboundedReceiver<Vec<u8>>) {
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            loop {
                match self.transport.unpack(&mut buf) {
                    Ok(offset) => {
                        let mut packet = buf[offset.data_range.clone()].to_vec();
                        buf.drain(..offset.next_offset);
                        let Some(out) = self.packet(&mut packet) else {
                            // Unknown key: Telegram answers with transport error -404 and closes.
                            let _ = stream.write_all(&(-404i32).to_le_bytes()).await;
                            return;
                        };
                        for frame in out {
                            if stream.write_all(&frame).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(transport::Error::MissingBytes) => break,
                    Err(_) => return,
                }
            }
            tokio::select! {
                read = stream.read(&mut chunk) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                },
                Some(body) = pushes.recv() => {
                    // Only a connection whose session is known can be written to.
                    if self.session_id != 0 {
                        let frame = self.frame(&body);
                        if stream.write_all(&frame).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Decrypts one packet and returns the framed, encrypted answers (`None`: unknown key).
    fn packet(&mut self, packet: &mut [u8]) -> Option<Vec<Vec<u8>>> {
        if packet.len() < 24 || packet[..8] != self.key_id {
            return None;
        }
        let msg_key: [u8; 16] = packet[8..24].try_into().unwrap();
        let (k, iv) = kdf(&self.key, &msg_key, 0);
        let plaintext = &mut packet[24..];
        aes::ige_decrypt(plaintext, &k, &iv);
        let check = sha256(&[&self.key[88..120], plaintext]);
        assert_eq!(check[8..24], msg_key, "client message key mismatch");
        let client_salt = read_i64(plaintext, 0);
        self.session_id = read_i64(plaintext, 8);
        let msg_id = read_i64(plaintext, 16);
        let seq_no = read_i32(plaintext, 24);
        let len = usize::try_from(read_i32(plaintext, 28)).unwrap();
        let body = plaintext[32..32 + len].to_vec();
        let mut replies = Vec::new();
        let salt = self.salt.load(Ordering::SeqCst);
        if salt != 0 {
            if self.sessions.lock().unwrap().insert(self.session_id) {
                let created = tl::enums::NewSession::Created(tl::types::NewSessionCreated {
                    first_msg_id: msg_id,
                    unique_id: i64::from_le_bytes(test_key(77)[..8].try_into().unwrap()) ^ self.session_id,
                    server_salt: salt,
                });
                replies.push(created.to_bytes());
                self.service.new_session_created.fetch_add(1, Ordering::SeqCst);
            }
            if client_salt != salt {
                let bad = tl::enums::BadMsgNotification::BadServerSalt(tl::types::BadServerSalt {
                    bad_msg_id: msg_id,
                    bad_msg_seqno: seq_no,
                    error_code: 48,
                    new_server_salt: salt,
                });
                replies.push(bad.to_bytes());
                self.service.bad_server_salt.fetch_add(1, Ordering::SeqCst);
                return Some(replies.into_iter().map(|body| self.frame(&body)).collect());
            }
        }
        self.message(msg_id, &body, &mut replies);
        Some(replies.into_iter().map(|body| self.frame(&body)).collect())
    }

    fn message(&mut self, msg_id: i64, body: &[u8], replies: &mut Vec<Vec<u8>>) {
        let constructor = read_u32(body, 0);
        match constructor {
            MSG_CONTAINER => {
                let count = read_i32(body, 4);
                let mut at = 8;
                for _ in 0..count {
                    let inner_id = read_i64(body, at);
                    let len = usize::try_from(read_i32(body, at + 12)).unwrap();
                    let inner = body[at + 16..at + 16 + len].to_vec();
                    self.message(inner_id, &inner, replies);
                    at += 16 + len;
                }
            }
            GZIP_PACKED => {
                let packed = Vec::<u8>::from_bytes(&body[4..]).unwrap();
                let mut inner = Vec::new();
                flate2::read::GzDecoder::new(&packed[..]).read_to_end(&mut inner).unwrap();
                self.message(msg_id, &inner, replies);
            }
            tl::types::MsgsAck::CONSTRUCTOR_ID => {}
            tl::functions::GetFutureSalts::CONSTRUCTOR_ID => {
                // future_salts is a service answer, not wrapped in rpc_result.
                let now = i32::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap();
                let salt = self.salt.load(Ordering::SeqCst);
                let salts = (0..3)
                    .map(|i| tl::types::FutureSalt {
                        valid_since: now - 60 + i * 1800,
                        valid_until: now + 1800 + i * 1800,
                        salt,
                    })
                    .collect();
                let out = tl::enums::FutureSalts::Salts(tl::types::FutureSalts {
                    req_msg_id: msg_id,
                    now,
                    salts: tl::RawVec(salts),
                })
                .to_bytes();
                replies.push(out);
                self.service.future_salts.fetch_add(1, Ordering::SeqCst);
            }
            tl::functions::Ping::CONSTRUCTOR_ID | tl::functions::PingDelayDisconnect::CONSTRUCTOR_ID => {
                let pong = tl::types::Pong { msg_id, ping_id: read_i64(body, 4) };
                replies.push(tl::enums::Pong::Pong(pong).to_bytes());
            }
            tl::functions::InvokeWithLayer::<tl::functions::help::GetConfig>::CONSTRUCTOR_ID => {
                self.message(msg_id, &body[8..], replies);
            }
            tl::functions::InitConnection::<tl::functions::help::GetConfig>::CONSTRUCTOR_ID => {
                let flags = read_i32(body, 4);
                self.init_api_ids.lock().unwrap().push(read_i32(body, 8));
                let mut at = 12;
                for _ in 0..6 {
                    at += tl_bytes_len(body, at);
                }
                assert_eq!(flags & 3, 0, "the peer does not parse proxy/params");
                self.message(msg_id, &body[at..], replies);
            }
            _ => {
                let call = Call { dc_id: self.dc_id, constructor, body: body.to_vec() };
                self.calls.lock().unwrap().push(call.clone());
                let reply = if call.is::<tl::functions::help::GetConfig>() {
                    Reply::ok(&tl::enums::Config::Config(self.config()))
                } else {
                    (self.handler)(&call)
                };
                let result = match reply {
                    Reply::Ok(bytes) => bytes,
                    Reply::Err(code, name) => {
                        tl::enums::RpcError::Error(tl::types::RpcError { error_code: code, error_message: name })
                            .to_bytes()
                    }
                };
                let mut out = RPC_RESULT.to_le_bytes().to_vec();
                out.extend_from_slice(&msg_id.to_le_bytes());
                out.extend_from_slice(&result);
                replies.push(out);
            }
        }
    }

    fn config(&self) -> tl::types::Config {
        let mut config = blank::blank_config();
        config.this_dc = self.dc_id;
        config.date = i32::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap();
        config.expires = config.date + 3600;
        config.dc_options = self.dc_options.as_ref().clone();
        config
    }

    /// Wraps one message body: header, padding, MTProto 2.0 encryption (x = 8), Full framing.
    fn frame(&mut self, body: &[u8]) -> Vec<u8> {
        let mut plain = Vec::with_capacity(body.len() + 64);
        plain.extend_from_slice(&self.salt.load(Ordering::SeqCst).to_le_bytes());
        plain.extend_from_slice(&self.session_id.to_le_bytes());
        plain.extend_from_slice(&server_msg_id().to_le_bytes());
        self.seq += 2;
        plain.extend_from_slice(&(self.seq - 1).to_le_bytes());
        plain.extend_from_slice(&i32::try_from(body.len()).unwrap().to_le_bytes());
        plain.extend_from_slice(body);
        let mut pad = 16 - plain.len() % 16;
        if pad < 12 {
            pad += 16;
        }
        plain.extend(std::iter::repeat_n(0x5a, pad));
        let large = sha256(&[&self.key[96..128], &plain]);
        let msg_key: [u8; 16] = large[8..24].try_into().unwrap();
        let (k, iv) = kdf(&self.key, &msg_key, 8);
        aes::ige_encrypt(&mut plain, &k, &iv);
        let mut out = DequeBuffer::with_capacity(plain.len() + 24 + 12, 8);
        out.extend(self.key_id);
        out.extend(msg_key);
        out.extend(plain);
        self.transport.pack(&mut out);
        out.as_ref().to_vec()
    }
}

/// A user as Telegram returns it to the account itself.
pub fn self_user(id: i64, access_hash: i64, bot: bool) -> tl::enums::User {
    let mut user = blank::blank_user();
    user.id = id;
    user.access_hash = Some(access_hash);
    user.is_self = true;
    user.bot = bot;
    user.first_name = Some(if bot { "Loopback Bot".into() } else { "Loopback User".into() });
    if bot {
        user.bot_info_version = Some(1);
    }
    tl::enums::User::User(user)
}

/// `auth.authorization` for `user`.
pub fn authorization(user: tl::enums::User) -> Reply {
    Reply::ok(&tl::enums::auth::Authorization::Authorization(blank::blank_auth_authorization(user)))
}

/// `updates.state`.
pub fn state(pts: i32, qts: i32, date: i32, seq: i32) -> Reply {
    let mut s = blank::blank_updates_state();
    s.pts = pts;
    s.qts = qts;
    s.date = date;
    s.seq = seq;
    Reply::ok(&tl::enums::updates::State::State(s))
}

/// A handler from a map of constructor id to closure; anything else is answered with
/// `400 METHOD_UNKNOWN_IN_TEST`.
pub fn routes(map: HashMap<u32, Handler>) -> Handler {
    Arc::new(move |call: &Call| match map.get(&call.constructor) {
        Some(h) => h(call),
        None => Reply::err(400, "METHOD_UNKNOWN_IN_TEST"),
    })
}

const PRIME_HEX: &str = "c71caeb9c6b1c9048e6c522f70f13f73980d40238e3e21c14934d037563d930f48198a0aa7c14058229493d22530f4dbfa336f6e0ac925139543aed44cce7c3720fd51f69458705ac68cd4fe6b6b13abdc9746512969328454f18faf8c595f642477fe96bb2a941d5bcd1d4ac8cc49880708fa9b378e3c4f3a9060bee67cf9a4a4a695811051907e162753b56b0f6b410dba74d8a84b2a14b3144e0ef1284754fd17ed950d5965b4b9dd46582db1178d169c6bc465b0d6ff9ca3928fef5b9ae4e418fc15e83ebea0f87fa9ff5eed70050ded2849f47bf959d956850ce929851f0d8115f635b105ee2e4e15d04b2454bf6f4fadf034b10403119cd8e3b92fcc5b";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// The server side of Telegram's SRP 2FA (<https://core.telegram.org/api/srp>) for one account
/// with password `password`. It keeps what a server keeps, the verifier `v = g^x mod p`, and
/// checks the client's proof with the server's half of the protocol (`S = (A * v^u)^b`), never
/// with the client's computation (grammers' `calculate_2fa`), so a client that computed M1
/// wrongly in any way is refused.
pub struct Srp {
    pub salt1: Vec<u8>,
    pub salt2: Vec<u8>,
    pub p: Vec<u8>,
    /// `B = (k*v + g^b) mod p`, padded to 256 bytes.
    pub g_b: Vec<u8>,
    pub secure_random: Vec<u8>,
    pub srp_id: i64,
    b: num_bigint::BigUint,
    v: num_bigint::BigUint,
}

const SRP_G: u32 = 3;

fn pad256(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 256 - bytes.len().min(256)];
    out.extend_from_slice(bytes);
    out
}

/// `SH(data, salt) = H(salt | data | salt)`.
fn srp_sh(data: &[u8], salt: &[u8]) -> [u8; 32] {
    sha256(&[salt, data, salt])
}

impl Srp {
    pub fn new(password: &str) -> Srp {
        use num_bigint::BigUint;
        let p = unhex(PRIME_HEX);
        let salt1 = test_key(11)[..40].to_vec();
        let salt2 = test_key(12)[..16].to_vec();
        // x = PH2(password, salt1, salt2), computed once when the password is set.
        let ph1 = srp_sh(&srp_sh(password.as_bytes(), &salt1), &salt2);
        let mut dk = [0u8; 64];
        pbkdf2::pbkdf2_hmac::<sha2::Sha512>(&ph1, &salt1, 100_000, &mut dk);
        let x = BigUint::from_bytes_be(&srp_sh(&dk, &salt2));
        let big_p = BigUint::from_bytes_be(&p);
        let g = BigUint::from(SRP_G);
        let v = g.modpow(&x, &big_p);
        let k = BigUint::from_bytes_be(&sha256(&[&p, &pad256(&[SRP_G as u8])]));
        let b = BigUint::from_bytes_be(&test_key(99)[..64]);
        let g_b = pad256(&((k * &v + g.modpow(&b, &big_p)) % &big_p).to_bytes_be());
        Srp { salt1, salt2, p, g_b, secure_random: test_key(13).to_vec(), srp_id: 0x1234_5678, b, v }
    }

    pub fn account_password(&self) -> Reply {
        let mut pw = blank::blank_account_password();
        pw.has_password = true;
        pw.hint = Some("the usual".into());
        pw.current_algo = Some(tl::enums::PasswordKdfAlgo::Sha256Sha256Pbkdf2Hmacsha512iter100000Sha256ModPow(
            tl::types::PasswordKdfAlgoSha256Sha256Pbkdf2Hmacsha512iter100000Sha256ModPow {
                salt1: self.salt1.clone(),
                salt2: self.salt2.clone(),
                g: SRP_G as i32,
                p: self.p.clone(),
            },
        ));
        pw.srp_b = Some(self.g_b.clone());
        pw.srp_id = Some(self.srp_id);
        pw.secure_random = self.secure_random.clone();
        Reply::ok(&tl::enums::account::Password::Password(pw))
    }

    /// Verifies the client's proof with the server's half of SRP: `u = H(A | B)`,
    /// `S = (A * v^u)^b mod p`, `K = H(S)`, and M1 must be
    /// `H(H(p) xor H(g) | H(salt1) | H(salt2) | A | B | K)`.
    pub fn verify(&self, check: &tl::functions::auth::CheckPassword) -> bool {
        use num_bigint::BigUint;
        let tl::enums::InputCheckPasswordSrp::Srp(srp) = &check.password else { return false };
        let big_p = BigUint::from_bytes_be(&self.p);
        let a = BigUint::from_bytes_be(&srp.a);
        // A client value of 0 mod p (or out of range) would force S = 0: refused, as SRP requires.
        if srp.srp_id != self.srp_id || srp.a.len() > 256 || (&a % &big_p) == BigUint::from(0u32) {
            return false;
        }
        let a_pad = pad256(&srp.a);
        let u = BigUint::from_bytes_be(&sha256(&[&a_pad, &self.g_b]));
        let s = ((a * self.v.modpow(&u, &big_p)) % &big_p).modpow(&self.b, &big_p);
        let k = sha256(&[&pad256(&s.to_bytes_be())]);
        let h_p = sha256(&[&self.p]);
        let h_g = sha256(&[&pad256(&[SRP_G as u8])]);
        let xor: Vec<u8> = h_p.iter().zip(h_g).map(|(x, y)| x ^ y).collect();
        let m1 = sha256(&[&xor, &sha256(&[&self.salt1]), &sha256(&[&self.salt2]), &a_pad, &self.g_b, &k]);
        srp.m1 == m1
    }
}

/// A `dcOption` as Telegram lists it in its config.
pub fn dc_option(id: i32, ip: &str, port: i32, ipv6: bool, is_static: bool) -> tl::enums::DcOption {
    tl::enums::DcOption::Option(tl::types::DcOption {
        ipv6,
        media_only: false,
        tcpo_only: false,
        cdn: false,
        r#static: is_static,
        this_port_only: false,
        id,
        ip_address: ip.into(),
        port,
        secret: None,
    })
}
