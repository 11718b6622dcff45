//! Pyrogram, kurigram and pyrofork strings with an `api_id` above `i32::MAX`, written by the real
//! libraries (`fixtures/*/api-id-above-i32/`): the libraries pack api_id unsigned and read such a
//! string back. The import keeps every other value exactly and drops the api_id (Telegram's is a
//! signed 32-bit int) with a warning; before, the whole string, auth key included, was refused.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::path::PathBuf;

use serde_json::Value;
use session_string::foreign::{self, StringFormat};

const LIBRARIES: [&str; 3] = ["pyrogram", "kurigram", "pyrofork"];

fn artifact(lib: &str) -> (String, Value) {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures")).join(lib).join("api-id-above-i32");
    let stem = format!("{lib}-api-id-above-i32.string");
    let text = std::fs::read_to_string(dir.join(format!("{stem}.txt"))).unwrap();
    let expected = serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{stem}.expected.json"))).unwrap());
    (text, expected.unwrap())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn every_value_but_the_api_id_is_kept_and_the_drop_is_reported() {
    for lib in LIBRARIES {
        let (text, e) = artifact(lib);
        let api_id = e["api_id"].as_i64().unwrap();
        assert!(api_id > i64::from(i32::MAX), "{lib}: artifact api_id {api_id}");
        let imported = foreign::import_with_warnings(&text).unwrap_or_else(|err| panic!("{lib}: {err}"));
        assert_eq!(imported.format, StringFormat::Pyrogram, "{lib}");
        let data = &imported.session;
        assert_eq!(i64::from(data.home_dc), e["dc_id"].as_i64().unwrap(), "{lib}: DC");
        let key = data.auth_key(data.home_dc).unwrap_or_else(|| panic!("{lib}: no auth key"));
        assert_eq!(hex(key.as_bytes()), e["auth_key_hex"].as_str().unwrap(), "{lib}: auth key");
        assert_eq!(key.key_id(), e["auth_key_id_i64"].as_i64().unwrap(), "{lib}: key id");
        let user = data.user.unwrap();
        assert_eq!((user.id, user.bot), (e["user_id"].as_i64().unwrap(), e["is_bot"].as_bool().unwrap()), "{lib}");
        assert_eq!(data.test_mode, e["test_mode"].as_bool().unwrap(), "{lib}: test mode");
        assert_eq!(data.api_id, None, "{lib}: api_id not kept");
        assert_eq!(imported.warnings.len(), 1, "{lib}: {:?}", imported.warnings);
        assert!(imported.warnings[0].contains(&api_id.to_string()), "{lib}: {:?}", imported.warnings);
        // The plain `import` agrees, without the warnings.
        assert_eq!(foreign::import(&text).unwrap(), (data.clone(), StringFormat::Pyrogram), "{lib}");
    }
}

#[test]
fn the_string_re_exports_once_an_api_id_is_supplied() {
    for lib in LIBRARIES {
        let (text, _) = artifact(lib);
        let mut data = foreign::import(&text).unwrap().0;
        // Pyrogram strings need an api_id; without one the export says so instead of inventing it.
        let err = foreign::export(&data, StringFormat::Pyrogram).unwrap_err().to_string();
        assert!(err.contains("api_id"), "{lib}: {err}");
        data.api_id = Some(12345);
        let again = foreign::export(&data, StringFormat::Pyrogram).unwrap();
        let back = foreign::import_with_warnings(&again).unwrap();
        assert!(back.warnings.is_empty(), "{lib}");
        assert_eq!(back.session, data, "{lib}");
    }
}

#[test]
fn strings_whose_api_id_fits_give_no_warning() {
    for lib in LIBRARIES {
        let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures")).join(lib);
        for stem in [format!("{lib}-file.string"), format!("{lib}-bot-string")] {
            let text = std::fs::read_to_string(dir.join(format!("{stem}.txt"))).unwrap();
            let imported = foreign::import_with_warnings(&text).unwrap();
            assert!(imported.warnings.is_empty(), "{stem}: {:?}", imported.warnings);
            assert_eq!(imported.session.api_id, Some(12345), "{stem}");
        }
    }
}
