//! Format detection, in particular the Telethon-IPv6 / GramJS case of equal length.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine;
use session_string::foreign::{self, StringFormat};

/// GramJS payload for DC 4, "149.154.167.91", port 443 and the given key.
fn gramjs_payload(key: [u8; 256]) -> Vec<u8> {
    let mut b = vec![4u8, 0x00, 0x0e];
    b.extend_from_slice(b"149.154.167.91");
    b.extend_from_slice(&443u16.to_be_bytes());
    b.extend_from_slice(&key);
    b
}

#[test]
fn gramjs_and_telethon_ipv6_of_equal_length() {
    // Neither `+/` nor `-_` shows: GramJS's layout fits exactly (length field 0x000e + text).
    let plain = format!("1{}", STANDARD.encode(gramjs_payload([0; 256])));
    assert_eq!(plain.len(), 369);
    assert!(!plain.contains(['+', '/', '-', '_']));
    assert_eq!(foreign::detect(&plain).unwrap(), StringFormat::GramJs);

    // These very bytes are also a valid Telethon IPv6 string (any 275 bytes are): the alphabet
    // decides when it shows.
    let key = [0xfb; 256];
    let std = format!("1{}", STANDARD.encode(gramjs_payload(key)));
    let url = format!("1{}", URL_SAFE.encode(gramjs_payload(key)));
    assert!(std.contains(['+', '/']) && url.contains(['-', '_']));
    assert_eq!(std.len(), url.len());
    let (g, f) = foreign::import(&std).unwrap();
    assert_eq!(f, StringFormat::GramJs);
    assert_eq!(g.home().unwrap().addr.to_string(), "149.154.167.91:443");
    let (t, f) = foreign::import(&url).unwrap();
    assert_eq!(f, StringFormat::Telethon);
    assert!(t.home().unwrap().addr.is_ipv6());

    // A real Telethon IPv6 string stays Telethon in either alphabet: its bytes 1-2 are the first
    // IPv6 group (0x2001), not a GramJS address length followed by that much text.
    let telethon = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/telethon/telethon-string-ipv6.txt"
    ))
    .unwrap();
    let telethon = telethon.trim();
    assert_eq!(foreign::detect(telethon).unwrap(), StringFormat::Telethon);
    let as_std = telethon.replace('-', "+").replace('_', "/");
    assert_eq!(foreign::detect(&as_std).unwrap(), StringFormat::Telethon);
    // A real GramJS string stays GramJS without its padding.
    let gramjs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/gramjs/gramjs-string.txt"))
            .unwrap();
    assert_eq!(foreign::detect(gramjs.trim().trim_end_matches('=')).unwrap(), StringFormat::GramJs);
}

#[test]
fn every_exportable_format_is_detected_as_itself() {
    let data = session_testkit::sample_session(3);
    let mut exported = 0;
    for format in StringFormat::ALL {
        let Ok(s) = foreign::export(&data, format) else { continue };
        assert_eq!(foreign::detect(&s).unwrap(), format, "{s}");
        exported += 1;
    }
    // Only layer-client v3 cannot hold the sample (basic groups, communities, min contexts).
    assert_eq!(exported, StringFormat::ALL.len() - 1);
}

#[test]
fn detection_errors_say_why() {
    let err = foreign::detect("").unwrap_err().to_string();
    assert!(err.contains("empty"), "{err}");
    let err = foreign::detect("1AB*").unwrap_err().to_string();
    assert!(err.contains("position 3"), "{err}");
    let err = foreign::detect("AAAA").unwrap_err().to_string();
    assert!(err.contains("no layout fits"), "{err}");
}

/// An IPv4 `ip:port` whose text is exactly `len` characters (9..=21).
fn v4_text(len: usize) -> String {
    let mut octets = [1u32; 4];
    let mut port = 1u32;
    let mut extra = len - 9;
    for o in &mut octets {
        let add = extra.min(2);
        *o = [1, 11, 111][add];
        extra -= add;
    }
    let add = extra.min(4);
    port = [port, 11, 111, 1111, 11111][add];
    format!("{}.{}.{}.{}:{port}", octets[0], octets[1], octets[2], octets[3])
}

#[test]
fn a_keyless_native_session_of_pyrogram_length_is_not_taken_for_pyrogram() {
    use session_core::{DcOption, SessionData};
    // layer v3 without keys, peers or channels: 26 bytes + (19 + address length) per DC. With
    // home DC 1 and 7 DCs, 263 bytes is Pyrogram's oldest layout; its flag bytes fit too.
    let mut data = SessionData::default();
    data.home_dc = 1;
    let lengths = [15usize, 15, 15, 15, 15, 15, 14];
    for (i, len) in lengths.iter().enumerate() {
        let id = i32::try_from(i + 1).unwrap();
        let option = DcOption::new(id, v4_text(*len).parse().unwrap());
        data.dcs.insert(option.key(), option);
    }
    let s = foreign::export(&data, StringFormat::LayerClient).unwrap();
    assert_eq!(s.len(), 351, "the native string must have the 351-character Pyrogram length");
    let (back, format) = foreign::import(&s).unwrap();
    assert_eq!(format, StringFormat::LayerClient);
    assert_eq!(back, data);
}
