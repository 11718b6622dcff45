//! Decoders survive random and mutated input without panicking: at least 100,000 cases per
//! format, built from a valid string of that format (bit flips, truncations, random bytes, huge
//! length fields, random characters), plus fully random strings.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use session_core::SessionData;
use session_string::foreign::{self, StringFormat};
use session_testkit::{sample_session, Rng};

const CASES: u64 = 100_000;

/// How a format wraps its bytes: prefix and base64 flavour.
fn wrap(format: StringFormat, bytes: &[u8]) -> String {
    match format {
        StringFormat::Full => format!("L1.{}", URL_SAFE_NO_PAD.encode(bytes)),
        StringFormat::Compact => format!("Lc1.{}", URL_SAFE_NO_PAD.encode(bytes)),
        StringFormat::Telethon => format!("1{}", URL_SAFE.encode(bytes)),
        StringFormat::GramJs => format!("1{}", STANDARD.encode(bytes)),
        _ => URL_SAFE_NO_PAD.encode(bytes),
    }
}

fn unwrap(format: StringFormat, s: &str) -> Vec<u8> {
    let body = match format {
        StringFormat::Full => &s[3..],
        StringFormat::Compact => &s[4..],
        StringFormat::Telethon | StringFormat::GramJs => &s[1..],
        _ => s,
    };
    let body = body.trim_end_matches('=').replace('+', "-").replace('/', "_");
    URL_SAFE_NO_PAD.decode(body).unwrap()
}

fn sample(format: StringFormat) -> String {
    let mut data = sample_session(4);
    if matches!(format, StringFormat::LayerClient) {
        // layer v3 holds users and channels only, no min contexts or token.
        data.peers = data
            .peers
            .iter()
            .filter(|p| matches!(p.kind.class(), session_core::PeerClass::User | session_core::PeerClass::Channel))
            .filter(|p| p.kind != session_core::PeerKind::Community)
            .collect();
        data.min_contexts.clear();
        data.future_auth_token = None;
    }
    foreign::export(&data, format).unwrap_or_else(|e| panic!("{format}: {e}"))
}

fn mutate(rng: &mut Rng, valid: &[u8]) -> Vec<u8> {
    let mut b = valid.to_vec();
    let len = u64::try_from(b.len()).unwrap();
    match rng.below(7) {
        0 => {
            for _ in 0..=rng.below(3) {
                if !b.is_empty() {
                    let i = usize::try_from(rng.below(len)).unwrap();
                    b[i] ^= 1 << rng.below(8);
                }
            }
        }
        1 => b.truncate(usize::try_from(rng.below(len + 1)).unwrap()),
        2 => {
            let keep = usize::try_from(rng.below(8)).unwrap().min(b.len());
            for x in b.iter_mut().skip(keep) {
                *x = u8::try_from(rng.below(256)).unwrap();
            }
        }
        3 => {
            // A huge length or count: 0xff / 0xfe runs at a random place.
            let i = usize::try_from(rng.below(len.max(1))).unwrap();
            let v = if rng.below(2) == 0 { 0xff } else { 0xfe };
            for x in b.iter_mut().skip(i).take(usize::try_from(1 + rng.below(4)).unwrap()) {
                *x = v;
            }
        }
        4 => {
            for _ in 0..rng.below(40) {
                b.push(u8::try_from(rng.below(256)).unwrap());
            }
        }
        5 => {
            let i = usize::try_from(rng.below(len + 1)).unwrap();
            let n = usize::try_from(rng.below(16)).unwrap();
            b.drain(i..(i + n).min(b.len()));
        }
        _ => {
            let n = usize::try_from(rng.below(len + 40)).unwrap();
            b = (0..n).map(|_| u8::try_from(rng.below(256)).unwrap()).collect();
            if let (Some(x), Some(y)) = (b.first_mut(), valid.first()) {
                *x = *y;
            }
        }
    }
    b
}

fn check(s: &str) {
    if let Ok((data, format)) = foreign::import(s) {
        // Whatever was accepted is a session we can keep.
        let full = session_string::encode_full(&data).unwrap();
        let back: SessionData = session_string::decode(&full).unwrap();
        assert_eq!(back, data, "{format}");
    }
    let _ = foreign::detect(s);
}

fn fuzz_format(format: StringFormat, seed: u64) {
    let valid = sample(format);
    assert_eq!(foreign::detect(&valid).unwrap(), format);
    let bytes = unwrap(format, &valid);
    let alphabet: Vec<char> =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=. \n*é".chars().collect();
    let mut rng = Rng::new(seed);
    for case in 0..CASES {
        if case % 4 == 3 {
            // Character-level damage to the string itself.
            let mut chars: Vec<char> = valid.chars().collect();
            let n = u64::try_from(chars.len()).unwrap();
            match rng.below(3) {
                0 => chars.truncate(usize::try_from(rng.below(n + 1)).unwrap()),
                1 => {
                    let i = usize::try_from(rng.below(n)).unwrap();
                    chars[i] = alphabet[usize::try_from(rng.below(alphabet.len() as u64)).unwrap()];
                }
                _ => {
                    let i = usize::try_from(rng.below(n)).unwrap();
                    chars.insert(i, alphabet[usize::try_from(rng.below(alphabet.len() as u64)).unwrap()]);
                }
            }
            check(&chars.into_iter().collect::<String>());
        } else {
            check(&wrap(format, &mutate(&mut rng, &bytes)));
        }
    }
}

macro_rules! fuzz_tests {
    ($($name:ident => $format:expr, $seed:expr;)*) => {$(
        #[test]
        fn $name() {
            fuzz_format($format, $seed);
        }
    )*};
}

fuzz_tests! {
    full => StringFormat::Full, 1;
    compact => StringFormat::Compact, 2;
    telethon => StringFormat::Telethon, 3;
    gramjs => StringFormat::GramJs, 4;
    pyrogram => StringFormat::Pyrogram, 5;
    pyrogram_legacy => StringFormat::PyrogramLegacy, 6;
    pyrogram_legacy_u32 => StringFormat::PyrogramLegacyU32, 7;
    mtcute => StringFormat::MtcuteV3, 8;
    ferogram_compact_v1 => StringFormat::FerogramCompactV1, 9;
    ferogram_compact_v2 => StringFormat::FerogramCompactV2, 10;
    layer_client => StringFormat::LayerClient, 11;
    ferogram => StringFormat::Ferogram, 12;
}

#[test]
fn random_strings() {
    let alphabet: Vec<char> =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=.L1c \t".chars().collect();
    let mut rng = Rng::new(99);
    for _ in 0..CASES {
        let n = usize::try_from(rng.below(700)).unwrap();
        let prefix = ["", "1", "L1.", "Lc1.", "A", "Aw", "Ag", "AQ", "Aw"][usize::try_from(rng.below(9)).unwrap()];
        let s: String = prefix
            .chars()
            .chain((0..n).map(|_| alphabet[usize::try_from(rng.below(alphabet.len() as u64)).unwrap()]))
            .collect();
        check(&s);
    }
    for _ in 0..CASES / 10 {
        let n = usize::try_from(rng.below(400)).unwrap();
        let bytes: Vec<u8> = (0..n).map(|_| u8::try_from(rng.below(256)).unwrap()).collect();
        check(&String::from_utf8_lossy(&bytes));
        check(&URL_SAFE_NO_PAD.encode(&bytes));
    }
}
