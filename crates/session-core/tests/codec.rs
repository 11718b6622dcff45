//! The codec: round trips (property tests) and robustness of the decoder against random,
//! truncated, bit-flipped and re-checksummed mutated input, and against huge declared counts.

use proptest::prelude::*;
use session_core::codec::{self, FORMAT_VERSION, HEADER_LEN};
use session_core::{Change, SessionData, SessionError};
use session_testkit::{sample_changes, sample_peer, sample_session, Rng};

fn build(seed: u64, rounds: u64, peers: u64) -> SessionData {
    let mut rng = Rng::new(seed);
    let mut data = SessionData::default();
    for round in 0..rounds {
        let changes = sample_changes(&mut rng, round.wrapping_mul(seed | 1));
        // A random subset, so that partial sessions are covered too.
        for change in changes {
            if rng.below(3) != 0 {
                data.apply(&change);
            }
        }
    }
    for i in 0..peers {
        data.apply(&Change::UpsertPeer(sample_peer(i.wrapping_mul(seed | 1), &mut rng)));
    }
    data
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn any_session_round_trips(seed in any::<u64>(), rounds in 0u64..6, peers in 0u64..300) {
        let data = build(seed, rounds, peers);
        let bytes = codec::encode(&data).expect("encode");
        prop_assert_eq!(codec::decode(&bytes).expect("decode"), data);
    }
}

/// Re-frames a payload with a correct checksum, so that mutations reach the payload parser.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&codec::MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&FORMAT_VERSION.to_le_bytes());
    h.update(&(payload.len() as u64).to_le_bytes());
    h.update(payload);
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// Every input must give Ok or an error; a wrong session from damaged bytes is a failure too.
fn check(bytes: &[u8], original: Option<&SessionData>, cases: &mut u64) {
    *cases += 1;
    if let Ok(decoded) = codec::decode(bytes) {
        if let Some(original) = original {
            // Only possible for unchanged input: any change is caught by length or checksum.
            assert_eq!(&decoded, original, "damaged bytes decoded to a different session");
        }
    }
}

#[test]
fn decoder_survives_100k_hostile_inputs() {
    let rss_before = peak_rss_kib();
    let mut rng = Rng::new(0xBAD);
    let mut cases = 0u64;

    // Random bytes, with and without a valid header.
    for _ in 0..30_000 {
        let len = usize::try_from(rng.below(400)).unwrap_or(0);
        let payload: Vec<u8> = (0..len).map(|_| rng.next_u64().to_le_bytes()[0]).collect();
        check(&payload, None, &mut cases);
        check(&frame(&payload), None, &mut cases);
    }

    let samples: Vec<SessionData> = (0..6).map(|i| build(i, 2, 8)).chain([sample_session(3)]).collect();
    for data in &samples {
        let bytes = codec::encode(data).expect("encode");
        // Every truncation.
        for cut in 0..bytes.len() {
            let r = codec::decode(&bytes[..cut]);
            assert!(matches!(r, Err(SessionError::Corrupt { .. })), "truncation at {cut} was not refused");
            cases += 1;
        }
        // Every single bit flip.
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            let r = codec::decode(&b);
            assert!(r.is_err(), "bit flip {i} gave a session");
            cases += 1;
        }
        // Mutations of the payload with a recomputed checksum: the parser itself must cope.
        let payload = &bytes[HEADER_LEN..];
        for _ in 0..3_000 {
            let mut p = payload.to_vec();
            for _ in 0..=rng.below(4) {
                if p.is_empty() {
                    p.push(0);
                }
                let at = usize::try_from(rng.below(p.len() as u64)).unwrap_or(0);
                match rng.below(3) {
                    0 => p[at] = rng.next_u64().to_le_bytes()[0],
                    1 => p.truncate(at),
                    _ => p.splice(at..at, [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]).for_each(drop),
                }
            }
            check(&frame(&p), None, &mut cases);
        }
    }

    // Huge declared counts: a varint of u64::MAX / 2^32 where the DC map or the peer list length
    // goes, followed by almost nothing.
    for count in [u64::MAX, 1 << 32, 1 << 40, 100_000_000] {
        let mut varint = Vec::new();
        let mut v = count;
        while v >= 0x80 {
            varint.push(u8::try_from(v & 0x7F).unwrap_or(0) | 0x80);
            v >>= 7;
        }
        varint.push(u8::try_from(v).unwrap_or(0));
        for prefix_len in 0..6 {
            let mut p = vec![0u8; prefix_len];
            p.extend_from_slice(&varint);
            p.extend_from_slice(&[1, 2, 3]);
            let r = codec::decode(&frame(&p));
            assert!(r.is_err(), "a huge count with no data behind it decoded");
            cases += 1;
        }
    }

    assert!(cases >= 100_000, "only {cases} cases");
    let grown = peak_rss_kib().saturating_sub(rss_before);
    assert!(grown < 256 * 1024, "decoding hostile input grew peak memory by {grown} KiB");
}

#[test]
fn newer_and_unknown_versions_are_named() {
    let mut bytes = codec::encode(&sample_session(1)).expect("encode");
    bytes[4..6].copy_from_slice(&(FORMAT_VERSION + 7).to_le_bytes());
    let err = codec::decode(&bytes).expect_err("newer");
    let text = err.to_string();
    assert!(text.contains(&(FORMAT_VERSION + 7).to_string()) && text.contains(&FORMAT_VERSION.to_string()), "{text}");
}
