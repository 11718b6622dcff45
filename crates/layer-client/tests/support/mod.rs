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
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
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
    task: JoinHandle<()>,
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
        let dc_options = Arc::new(dc_options);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let key = test_key(seed);
        let calls = Arc::new(Mutex::new(Vec::new()));
        let init_api_ids = Arc::new(Mutex::new(Vec::new()));
        let pushers: Arc<Mutex<Vec<mpsc::UnboundedSender<Vec<u8>>>>> = Arc::default();
        let (c, i, p) = (Arc::clone(&calls), Arc::clone(&init_api_ids), Arc::clone(&pushers));
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
                };
                let (tx, rx) = mpsc::unbounded_channel();
                p.lock().unwrap().push(tx);
                tokio::spawn(conn.serve(stream, rx));
            }
        });
        Dc { id, addr, key, calls, init_api_ids, pushers, task }
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
        self.session_id = read_i64(plaintext, 8);
        let msg_id = read_i64(plaintext, 16);
        let len = usize::try_from(read_i32(plaintext, 28)).unwrap();
        let body = plaintext[32..32 + len].to_vec();
        let mut replies = Vec::new();
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
        plain.extend_from_slice(&0i64.to_le_bytes()); // salt
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

/// The server side of Telegram's SRP 2FA for one account with password `password`.
pub struct Srp {
    pub salt1: Vec<u8>,
    pub salt2: Vec<u8>,
    pub p: Vec<u8>,
    pub g_b: Vec<u8>,
    pub secure_random: Vec<u8>,
    pub srp_id: i64,
    pub password: &'static str,
}

impl Srp {
    pub fn new(password: &'static str) -> Srp {
        let p = unhex(PRIME_HEX);
        let b = num_bigint::BigUint::from_bytes_be(&test_key(99)[..64]);
        let g_b = num_bigint::BigUint::from(3u32).modpow(&b, &num_bigint::BigUint::from_bytes_be(&p)).to_bytes_be();
        Srp {
            salt1: test_key(11)[..40].to_vec(),
            salt2: test_key(12)[..16].to_vec(),
            p,
            g_b,
            secure_random: test_key(13).to_vec(),
            srp_id: 0x1234_5678,
            password,
        }
    }

    pub fn account_password(&self) -> Reply {
        let mut pw = blank::blank_account_password();
        pw.has_password = true;
        pw.hint = Some("the usual".into());
        pw.current_algo = Some(tl::enums::PasswordKdfAlgo::Sha256Sha256Pbkdf2Hmacsha512iter100000Sha256ModPow(
            tl::types::PasswordKdfAlgoSha256Sha256Pbkdf2Hmacsha512iter100000Sha256ModPow {
                salt1: self.salt1.clone(),
                salt2: self.salt2.clone(),
                g: 3,
                p: self.p.clone(),
            },
        ));
        pw.srp_b = Some(self.g_b.clone());
        pw.srp_id = Some(self.srp_id);
        pw.secure_random = self.secure_random.clone();
        Reply::ok(&tl::enums::account::Password::Password(pw))
    }

    /// Verifies the client's proof: M1 must be what the account's password yields for the
    /// public values this server sent.
    pub fn verify(&self, check: &tl::functions::auth::CheckPassword) -> bool {
        let tl::enums::InputCheckPasswordSrp::Srp(srp) = &check.password else { return false };
        let (m1, g_a) = grammers_crypto::two_factor_auth::calculate_2fa(
            &self.salt1,
            &self.salt2,
            &self.p,
            &3,
            self.g_b.clone(),
            self.secure_random.clone(),
            self.password,
        );
        srp.srp_id == self.srp_id && srp.m1 == m1 && srp.a == g_a
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
