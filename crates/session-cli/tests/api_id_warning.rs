//! A Pyrogram-family session whose `api_id` is above `i32::MAX` (written by Pyrogram, kurigram
//! and pyrofork themselves: `fixtures/*/api-id-above-i32/`) is read, not refused: `inspect` and
//! `convert` succeed and both say that the api_id was not kept; `verify` passes with a note (the
//! session itself is whole).

mod common;

use common::{copy_fixtures, run};

#[test]
fn inspect_and_convert_show_the_dropped_api_id() {
    let dir = copy_fixtures();
    let out = tempfile::tempdir().expect("tempdir");
    let mut checked = 0;
    for lib in ["pyrogram", "kurigram", "pyrofork"] {
        let folder = dir.path().join(lib).join("api-id-above-i32");
        for name in [format!("{lib}-api-id-above-i32.session"), format!("{lib}-api-id-above-i32.string.txt")] {
            let artifact = folder.join(&name);
            let path = artifact.to_str().expect("utf-8 path");
            let (code, stdout, stderr) = run(&["inspect", path]);
            assert_eq!(code, 0, "inspect {name}: {stderr}");
            assert!(stdout.contains("api_id:      none"), "inspect {name}:\n{stdout}");
            let warning = stdout.lines().find(|l| l.starts_with("warning:")).unwrap_or_default();
            assert!(warning.contains("3000000000"), "inspect {name} shows no api_id warning:\n{stdout}");

            let (code, stdout, stderr) = run(&["inspect", "--json", path]);
            assert_eq!(code, 0, "inspect --json {name}: {stderr}");
            assert!(stdout.contains("3000000000"), "inspect --json {name} shows no api_id warning:\n{stdout}");

            let (code, stdout, stderr) = run(&["verify", path]);
            assert_eq!(code, 0, "verify {name}: {stdout}{stderr}");
            assert!(
                stdout.lines().any(|l| l.starts_with("note:") && l.contains("3000000000")),
                "verify {name} notes no dropped api_id:\n{stdout}"
            );

            let dest = out.path().join(format!("{checked}.db"));
            let dest = format!("sqlite:{}", dest.to_str().expect("utf-8 path"));
            let (code, _, stderr) = run(&["convert", path, &dest]);
            assert_eq!(code, 0, "convert {name}: {stderr}");
            assert!(
                stderr.lines().any(|l| l.starts_with("warning:") && l.contains("3000000000")),
                "convert {name} shows no api_id warning:\n{stderr}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 6);
}
