//! The book's structure holds: every chapter in SUMMARY.md exists, and every `{{#include}}`
//! points at a file (the backend pages are the crate READMEs, included).

use std::path::{Path, PathBuf};

fn book() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/src")
}

#[test]
fn every_chapter_and_include_exists() {
    let summary = std::fs::read_to_string(book().join("SUMMARY.md")).expect("SUMMARY.md");
    let mut chapters = 0;
    for part in summary.split("](").skip(1) {
        let target = part.split(')').next().unwrap_or_default();
        let chapter = book().join(target);
        assert!(chapter.is_file(), "SUMMARY.md links to a missing chapter: {target}");
        chapters += 1;
        let text = std::fs::read_to_string(&chapter).expect("chapter");
        for inc in text.split("{{#include ").skip(1) {
            let rel = inc.split("}}").next().unwrap_or_default().trim();
            let dir = chapter.parent().expect("chapter dir");
            let included = dir.join(rel);
            assert!(included.is_file(), "{target} includes a missing file: {rel}");
            let body = std::fs::read_to_string(&included).expect("included");
            assert!(body.lines().count() > 10, "{target} includes an almost empty file: {rel}");
        }
        assert!(text.lines().filter(|l| !l.trim().is_empty()).count() >= 2, "{target} is empty");
    }
    assert!(chapters >= 12, "only {chapters} chapters");
}
