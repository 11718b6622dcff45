//! The repository stands alone: no file reads or links anything outside it, the published
//! crates' sources include nothing from outside their own folder (so `cargo package` ships what
//! they need), and each backend's README example needs that backend alone.
//!
//! `cargo xtask clone` runs the fixture-reading tests in a real clone with nothing beside it;
//! this is the cheap check that runs with every `cargo test`.
//!
//! It also keeps the layout readable bottom-up: no backend depends on another backend, and no two
//! source files of a crate import each other. Each scanner has a test of its own on planted
//! inputs, so a rule that silently stopped firing would fail too.

use std::path::{Component, Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask is one level below the root").to_path_buf()
}

/// Text files of the repository that could name a path: sources, manifests, docs, workflows,
/// generator scripts. Build output, installed tools and git's own files are not the repository.
fn files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("dir entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if path.is_dir() {
                if !matches!(name, "target" | ".git" | "node_modules" | "__pycache__") {
                    stack.push(path);
                }
            } else if ["rs", "toml", "yml", "yaml", "md", "py", "mjs", "js", "sh", "json"]
                .iter()
                .any(|ext| path.extension().is_some_and(|e| e == *ext))
                && !name.ends_with(".expected.json")
            {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// `path` with `.` and `..` applied, or `None` if it climbs above the filesystem root.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Some(out)
}

/// The nearest folder at or above `file` holding a Cargo.toml (what `CARGO_MANIFEST_DIR` is).
fn manifest_dir(file: &Path) -> PathBuf {
    let mut dir = file.parent().expect("file in a folder").to_path_buf();
    loop {
        if dir.join("Cargo.toml").is_file() || dir == root() {
            return dir;
        }
        if !dir.pop() {
            return root();
        }
    }
}

/// Every relative path in `text` that climbs with `..`, and whether it hangs off the crate's
/// folder: a leading `/` is how a path is appended to `CARGO_MANIFEST_DIR`. Other relative paths
/// (Markdown links, `include_str!`, manifests' `path =`) are relative to the file's folder.
fn climbing_paths(text: &str) -> Vec<(String, bool)> {
    let is_path = |c: char| c.is_ascii_alphanumeric() || "._/-%".contains(c);
    let mut out = Vec::new();
    let mut token = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if is_path(c) {
            token.push(c);
            continue;
        }
        let (rel, from_manifest) = match token.strip_prefix('/') {
            Some(t) if t.starts_with("..") => (t, true),
            _ => (token.as_str(), false),
        };
        // A bare `..` names no file (prose such as "a `..` path"); `a/..` and `../x` do.
        let climbs = rel.contains("../") || (rel.ends_with("..") && rel != "..");
        if !rel.starts_with('/') && climbs && !rel.contains("...") {
            out.push((rel.to_owned(), from_manifest));
        }
        token.clear();
    }
    out
}

fn escapes(file: &Path, rel: &str, from_manifest: bool) -> bool {
    let base = if from_manifest { manifest_dir(file) } else { file.parent().expect("parent").to_path_buf() };
    let rel = rel.trim_end_matches(['.', '/']);
    let rel = if rel.is_empty() { ".." } else { rel };
    normalize(&base.join(rel)).is_none_or(|p| !p.starts_with(root()))
}

#[test]
fn no_file_names_a_path_outside_the_repository() {
    let all = files();
    assert!(all.len() > 50, "only {} files found under {}", all.len(), root().display());
    let mut bad = Vec::new();
    for file in &all {
        let Ok(text) = std::fs::read_to_string(file) else { continue };
        let shown = file.strip_prefix(root()).unwrap_or(file).display().to_string();
        for (rel, from_manifest) in climbing_paths(&text) {
            if escapes(file, &rel, from_manifest) {
                bad.push(format!("{shown}: {rel}"));
            }
        }
        // The old home of the fixtures and design notes, beside the checkout.
        for outside in ["shared/fixtures", "shared/DESIGN", "/work/shared"] {
            if text.contains(outside) && !shown.ends_with("repository.rs") {
                bad.push(format!("{shown}: names {outside}"));
            }
        }
    }
    assert!(bad.is_empty(), "paths that leave the repository:\n{}", bad.join("\n"));
}

/// `include_str!`/`include_bytes!` in a published crate's `src/` must stay inside the crate:
/// `cargo package` ships only the crate's folder, so anything else breaks the published build.
#[test]
fn published_sources_include_only_their_own_files() {
    let mut bad = Vec::new();
    for file in files() {
        let shown = file.strip_prefix(root()).unwrap_or(&file).display().to_string();
        if !(shown.starts_with("crates/") && shown.contains("/src/") && shown.ends_with(".rs")) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("source");
        for marker in ["include_str!(\"", "include_bytes!(\""] {
            for (at, _) in text.match_indices(marker) {
                let rest = &text[at + marker.len()..];
                let rel = &rest[..rest.find('"').unwrap_or(0)];
                let krate = manifest_dir(&file);
                let resolved = normalize(&file.parent().expect("parent").join(rel));
                if resolved.is_none_or(|p| !p.starts_with(&krate)) {
                    bad.push(format!("{shown}: {rel}"));
                }
            }
        }
    }
    assert!(bad.is_empty(), "published sources including files outside their crate:\n{}", bad.join("\n"));
}

/// The first example of each backend's README (a doc test of the crate) names only that crate:
/// `session_core` and its types come through the backend's re-exports.
#[test]
fn each_backend_readme_example_needs_that_backend_alone() {
    for krate in ["session-file", "session-string", "session-sqlite", "session-libsql"] {
        let readme = std::fs::read_to_string(root().join("crates").join(krate).join("README.md")).expect("README");
        let start = readme.find("```rust").unwrap_or_else(|| panic!("{krate}: no rust example"));
        let body = &readme[start..];
        let body = &body[..body[3..].find("```").map_or(body.len(), |e| e + 3)];
        let own = krate.replace('-', "_");
        let mut bad = Vec::new();
        for line in body.lines() {
            let code = line.trim_start_matches('#').trim();
            if let Some(path) = code.strip_prefix("use ") {
                if !(path.starts_with(&format!("{own}::")) || path.starts_with("std::")) {
                    bad.push(code.to_owned());
                }
            }
            // `session_core::` only as the backend's re-export (`<backend>::session_core::`).
            for (at, _) in code.match_indices("session_core::") {
                if !code[..at].ends_with(&format!("{own}::")) {
                    bad.push(code.to_owned());
                }
            }
        }
        assert!(bad.is_empty(), "{krate}'s README example names other crates: {bad:#?}");
    }
}

/// The scanner finds climbing paths in every form a file writes them, and leaves prose alone.
/// (The planted paths are built at run time: written out here, this file would fail the scan.)
#[test]
fn climbing_paths_are_found_and_prose_is_not() {
    let up = ["..", "..", ".."].join("/");
    let text = format!(
        r#"concat!(env!("CARGO_MANIFEST_DIR"), "/{up}/outside/x") see {up}/elsewhere/y, docs/{dots} and a `{dots}` path"#,
        dots = "..",
    );
    let found = climbing_paths(&text);
    let rels: Vec<&str> = found.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(rels, [format!("{up}/outside/x"), format!("{up}/elsewhere/y"), "docs/..".to_owned()]);
    assert!(found[0].1, "a path appended to CARGO_MANIFEST_DIR hangs off the crate");
    let readme = root().join("README.md");
    assert!(escapes(&readme, &format!("{up}/outside/x"), false));
    assert!(!escapes(&readme, "docs/..", false));
}

/// The backends: each stores a session its own way, and an application picks one (or several).
/// A backend shares code with another only through the layers below them all (`session-core`,
/// `session-sql`, `session-interop`), never by depending on it: the dependency picture reads
/// bottom-up with no sideways edge. The next backends are listed before they exist.
const BACKENDS: [&str; 6] =
    ["session-file", "session-string", "session-sqlite", "session-libsql", "session-postgres", "session-redis"];

/// One dependency between two packages of a workspace (path dependencies only).
#[derive(Debug)]
struct Dep {
    from: String,
    to: String,
    /// `normal`, `dev` or `build`.
    kind: String,
    optional: bool,
}

/// Every path dependency between the packages of the workspace at `root`, as cargo reads the
/// manifests (workspace inheritance, target tables and renames resolved).
fn workspace_deps(root: &Path) -> Vec<Dep> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline", "--manifest-path"])
        .arg(root.join("Cargo.toml"))
        .output()
        .expect("run cargo metadata");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    let mut deps = Vec::new();
    for package in meta["packages"].as_array().expect("packages") {
        let from = package["name"].as_str().expect("package name");
        for dep in package["dependencies"].as_array().expect("dependencies") {
            if dep["path"].is_null() {
                continue;
            }
            deps.push(Dep {
                from: from.to_owned(),
                to: dep["name"].as_str().expect("dependency name").to_owned(),
                kind: dep["kind"].as_str().unwrap_or("normal").to_owned(),
                optional: dep["optional"].as_bool().unwrap_or(false),
            });
        }
    }
    deps
}

/// The section of DEPS.md about `krate` (from its `## krate` heading to the next heading).
fn deps_md_section<'a>(deps_md: &'a str, krate: &str) -> &'a str {
    let heading = format!("## {krate}\n");
    let Some(start) =
        deps_md.match_indices(&heading).map(|(at, _)| at).find(|&at| at == 0 || deps_md[..at].ends_with('\n'))
    else {
        return "";
    };
    let body = &deps_md[start + heading.len()..];
    &body[..body.find("\n## ").unwrap_or(body.len())]
}

/// Dependencies of a backend on another backend (normal, build or dev). The one exception:
/// session-libsql's local and replica modes run on session-sqlite, so it may depend on it as an
/// optional dependency whose reason DEPS.md gives under session-libsql.
fn sideways_backend_edges(deps: &[Dep], deps_md: &str) -> Vec<String> {
    let libsql_reason = deps_md_section(deps_md, "session-libsql").contains("`session-sqlite`");
    deps.iter()
        .filter(|d| BACKENDS.contains(&d.from.as_str()) && BACKENDS.contains(&d.to.as_str()))
        .filter(|d| {
            let excepted = d.from == "session-libsql"
                && d.to == "session-sqlite"
                && d.kind == "normal"
                && d.optional
                && libsql_reason;
            !excepted
        })
        .map(|d| {
            let how = if d.optional { format!("{}, optional", d.kind) } else { d.kind.clone() };
            format!("{} -> {} ({how})", d.from, d.to)
        })
        .collect()
}

#[test]
fn no_backend_depends_on_another_backend() {
    let deps = workspace_deps(&root());
    let present: Vec<&str> = BACKENDS.iter().copied().filter(|b| deps.iter().any(|d| d.from == *b)).collect();
    assert!(present.len() >= 4, "backends found in cargo metadata: {present:?}");
    let deps_md = std::fs::read_to_string(root().join("DEPS.md")).expect("DEPS.md");
    let bad = sideways_backend_edges(&deps, &deps_md);
    assert!(bad.is_empty(), "backends depending on other backends:\n{}", bad.join("\n"));
}

/// A temporary directory of planted files, removed on drop.
struct Planted(PathBuf);

impl Planted {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("xtask-repository-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Planted(dir)
    }

    fn write(&self, rel: &str, text: &str) {
        let path = self.0.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
        std::fs::write(path, text).expect("write planted file");
    }
}

impl Drop for Planted {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The rule fires on every kind of sideways edge (normal, build, dev, an optional one outside the
/// exception, the exception without its reason) and lets the exception and the shared layers be.
#[test]
fn sideways_backend_edges_are_found_in_planted_manifests() {
    let ws = Planted::new("backends");
    let members = ["session-core", "session-testkit", "session-file", "session-string", "session-sqlite"];
    let members = [&members[..], &["session-libsql", "session-postgres", "session-redis"]].concat();
    let list: Vec<String> = members.iter().map(|m| format!("\"{m}\"")).collect();
    ws.write("Cargo.toml", &format!("[workspace]\nresolver = \"2\"\nmembers = [{}]\n", list.join(", ")));
    let dep = |name: &str, extra: &str| format!("{name} = {{ path = \"../{name}\"{extra} }}\n");
    let manifests = [
        ("session-core", String::new()),
        ("session-testkit", format!("[dependencies]\n{}", dep("session-core", ""))),
        (
            "session-file",
            format!("[dependencies]\n{}[dev-dependencies]\n{}", dep("session-core", ""), dep("session-testkit", "")),
        ),
        ("session-string", format!("[dependencies]\n{}", dep("session-file", ""))),
        ("session-sqlite", format!("[dependencies]\n{}", dep("session-core", ""))),
        (
            "session-libsql",
            format!(
                "[dependencies]\n{}[dev-dependencies]\n{}",
                dep("session-sqlite", ", optional = true"),
                dep("session-file", "")
            ),
        ),
        ("session-postgres", format!("[build-dependencies]\n{}", dep("session-sqlite", ""))),
        ("session-redis", format!("[target.'cfg(unix)'.dependencies]\n{}", dep("session-sqlite", ", optional = true"))),
    ];
    for (name, deps) in &manifests {
        ws.write(
            &format!("{name}/Cargo.toml"),
            &format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n{deps}"),
        );
        ws.write(&format!("{name}/src/lib.rs"), "");
    }
    let deps = workspace_deps(&ws.0);
    let reason = "## session-libsql\n- `session-sqlite` (optional): the local and replica modes.\n\n## next\n";
    let mut bad = sideways_backend_edges(&deps, reason);
    bad.sort();
    assert_eq!(
        bad,
        [
            "session-libsql -> session-file (dev)",
            "session-postgres -> session-sqlite (build)",
            "session-redis -> session-sqlite (normal, optional)",
            "session-string -> session-file (normal)",
        ]
    );
    // The exception holds only with its reason in DEPS.md, and only for an optional dependency.
    let elsewhere = "## session-cli\n- `session-sqlite`\n\n## session-libsql\n- `libsql`\n";
    assert!(sideways_backend_edges(&deps, elsewhere)
        .contains(&"session-libsql -> session-sqlite (normal, optional)".to_owned()));
    let required =
        [Dep { from: "session-libsql".into(), to: "session-sqlite".into(), kind: "normal".into(), optional: false }];
    assert_eq!(sideways_backend_edges(&required, reason), ["session-libsql -> session-sqlite (normal)"]);
}

/// `text` with comments, string literals and character literals blanked (newlines kept), so
/// that only code is left to look for paths in.
fn code_only(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, s: &[char]| out.extend(s.iter().map(|&ch| if ch == '\n' { '\n' } else { ' ' }));
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut i = 0;
    while i < c.len() {
        let rest = &c[i..];
        let start = i;
        if rest.starts_with(&['/', '/']) {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if rest.starts_with(&['/', '*']) {
            let mut depth = 0;
            while i < c.len() {
                if c[i..].starts_with(&['/', '*']) {
                    depth += 1;
                    i += 2;
                } else if c[i..].starts_with(&['*', '/']) {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c[i] == 'r'
            && (i == 0 || !ident(c[i - 1]) || (c[i - 1] == 'b' && (i == 1 || !ident(c[i - 2]))))
            && rest[1..].iter().position(|&ch| ch != '#').is_some_and(|n| rest[1 + n] == '"')
        {
            // A raw string: r"…", r#"…"#, br#"…"#.
            let hashes = rest[1..].iter().take_while(|&&ch| ch == '#').count();
            i += 2 + hashes;
            while i < c.len()
                && !(c[i] == '"' && c[i + 1..].iter().take(hashes).filter(|&&ch| ch == '#').count() == hashes)
            {
                i += 1;
            }
            i = (i + 1 + hashes).min(c.len());
        } else if c[i] == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i = (i + 1).min(c.len());
        } else if c[i] == '\'' && (rest.get(1) == Some(&'\\') || rest.get(2) == Some(&'\'')) {
            // A character literal ('x', '\n', '\''); a lifetime has no closing quote.
            i += 1;
            while i < c.len() && c[i] != '\'' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i = (i + 1).min(c.len());
        } else {
            out.push(c[i]);
            i += 1;
            continue;
        }
        blank(&mut out, &c[start..i.min(c.len())]);
    }
    out
}

/// The paths of a use tree or path starting at `code[*at..]` (just after `crate::`/`super::`),
/// each as its segments: `a::{self, b::C}` gives `[a]` and `[a, b, C]`.
fn use_tree(code: &[char], at: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let skip_ws = |at: &mut usize| {
        while *at < code.len() && code[*at].is_whitespace() {
            *at += 1;
        }
    };
    let mut path = prefix;
    loop {
        skip_ws(at);
        if code.get(*at) == Some(&'{') {
            *at += 1;
            loop {
                skip_ws(at);
                match code.get(*at) {
                    None => return,
                    Some('}') => {
                        *at += 1;
                        return;
                    }
                    Some(',') => *at += 1,
                    Some(_) => {
                        let before = *at;
                        use_tree(code, at, path.clone(), out);
                        if *at == before {
                            *at += 1;
                        }
                    }
                }
            }
        }
        if code[*at..].starts_with(&['r', '#']) {
            *at += 2;
        }
        let segment = word(code, at);
        if !segment.is_empty() && segment != "self" {
            path.push(segment);
        }
        skip_ws(at);
        if code[*at..].starts_with(&[':', ':']) && !code[*at + 2..].starts_with(&['<']) {
            *at += 2;
            continue;
        }
        if code[*at..].starts_with(&['a', 's']) && code.get(*at + 2).is_some_and(|ch| ch.is_whitespace()) {
            // `x as y`: the alias names nothing.
            *at += 2;
            skip_ws(at);
            word(code, at);
        }
        out.push(path);
        return;
    }
}

/// The identifier at `code[*at..]` (empty if there is none), moving `at` past it.
fn word(code: &[char], at: &mut usize) -> String {
    let start = *at;
    while *at < code.len() && (code[*at].is_alphanumeric() || code[*at] == '_') {
        *at += 1;
    }
    code[start..*at].iter().collect()
}

/// The identifier that ends at `code[..end]` (before any whitespace), and where it starts.
fn word_before(code: &[char], end: usize) -> (String, usize) {
    let end = code[..end].iter().rposition(|ch| !ch.is_whitespace()).map_or(0, |p| p + 1);
    let start = code[..end].iter().rposition(|ch| !(ch.is_alphanumeric() || *ch == '_')).map_or(0, |p| p + 1);
    (code[start..end].iter().collect(), start)
}

/// The files of the crate's source tree `src` that `file` refers to through `crate::` (or
/// `$crate::`) paths and `super::` paths leaving the file, in `use` items and in expressions.
/// Comments and strings are not code; a `mod x;` declaration is not a reference.
fn referenced_files(src: &Path, root_file: &Path, file: &Path) -> Vec<PathBuf> {
    let rel = file.strip_prefix(src).expect("file under src");
    let mut module: Vec<String> = rel.with_extension("").iter().map(|s| s.to_string_lossy().into_owned()).collect();
    if module.last().is_some_and(|m| m == "mod") || file == root_file {
        module.pop();
        if file == root_file {
            module.clear();
        }
    }
    let code: Vec<char> = code_only(&std::fs::read_to_string(file).expect("source")).chars().collect();
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    // Inline `mod x { … }` blocks open at each point: `super` inside them stays in the file.
    let mut braces: Vec<bool> = Vec::new();
    let mut paths = Vec::new();
    let mut i = 0;
    while i < code.len() {
        let rest = &code[i..];
        let word_start = i == 0 || !ident(code[i - 1]);
        if code[i] == '{' {
            let (name, at) = word_before(&code, i);
            braces.push(!name.is_empty() && word_before(&code, at).0 == "mod");
        } else if code[i] == '}' {
            braces.pop();
        } else if word_start && rest.starts_with(&['c', 'r', 'a', 't', 'e', ':', ':']) {
            let mut at = i + 7;
            use_tree(&code, &mut at, Vec::new(), &mut paths);
            i = at;
            continue;
        } else if word_start && rest.starts_with(&['s', 'u', 'p', 'e', 'r', ':', ':']) {
            let mut at = i;
            let mut ups = 0;
            while code[at..].starts_with(&['s', 'u', 'p', 'e', 'r', ':', ':']) {
                ups += 1;
                at += 7;
            }
            let inline = braces.iter().filter(|m| **m).count();
            if ups > inline && ups - inline <= module.len() {
                let base = module[..module.len() - (ups - inline)].to_vec();
                use_tree(&code, &mut at, base, &mut paths);
            }
            i = at;
            continue;
        }
        i += 1;
    }
    let mut files = Vec::new();
    for path in paths {
        let target = (1..=path.len())
            .rev()
            .find_map(|n| {
                let dir = path[..n].iter().fold(src.to_path_buf(), |p, s| p.join(s));
                [dir.with_extension("rs"), dir.join("mod.rs")].into_iter().find(|f| f.is_file())
            })
            .unwrap_or_else(|| root_file.to_path_buf());
        if target != file && !files.contains(&target) {
            files.push(target);
        }
    }
    files
}

/// Every pair of files of one source tree that refer to each other, each pair once.
fn import_pairs(src: &Path, root_file: &Path) -> Vec<(PathBuf, PathBuf)> {
    let mut edges = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                // Each binary of `src/bin` is a crate of its own.
                if path != src.join("bin") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                for to in referenced_files(src, root_file, &path) {
                    edges.push((path.clone(), to));
                }
            }
        }
    }
    let mut pairs: Vec<(PathBuf, PathBuf)> =
        edges.iter().filter(|(a, b)| a < b && edges.iter().any(|(c, d)| c == b && d == a)).cloned().collect();
    pairs.sort();
    pairs
}

/// The source trees of a crate: `src` (rooted at lib.rs, or main.rs) and each `src/bin/<name>/`.
fn source_trees(krate: &Path) -> Vec<(PathBuf, PathBuf)> {
    let src = krate.join("src");
    let mut trees = Vec::new();
    if let Some(root_file) = ["lib.rs", "main.rs"].iter().map(|f| src.join(f)).find(|f| f.is_file()) {
        trees.push((src.clone(), root_file));
    }
    if let Ok(bins) = std::fs::read_dir(src.join("bin")) {
        for bin in bins {
            let dir = bin.expect("dir entry").path();
            if dir.join("main.rs").is_file() {
                trees.push((dir.clone(), dir.join("main.rs")));
            }
        }
    }
    trees
}

#[test]
fn no_two_source_files_import_each_other() {
    let mut bad = Vec::new();
    let mut trees = 0;
    for entry in std::fs::read_dir(root().join("crates")).expect("crates/") {
        for (src, root_file) in source_trees(&entry.expect("dir entry").path()) {
            trees += 1;
            for (a, b) in import_pairs(&src, &root_file) {
                let show = |p: &Path| p.strip_prefix(root()).unwrap_or(p).display().to_string();
                bad.push(format!("{} <-> {}", show(&a), show(&b)));
            }
        }
    }
    assert!(trees >= 10, "only {trees} source trees found");
    assert!(bad.is_empty(), "source files that import each other:\n{}", bad.join("\n"));
}

/// The scanner finds a pair through `crate::` paths (in a use tree and in an expression) and
/// through a sibling's `super::` path, and ignores comments, strings, `mod x;`, a child's
/// `super::` to a parent that only declares it, and `super` inside an inline module.
#[test]
fn import_pairs_are_found_in_planted_sources() {
    let krate = Planted::new("imports");
    let c = "crate";
    krate.write("src/lib.rs", &format!("mod a;\nmod b;\nmod c;\nmod p;\npub use {c}::a::A;\n"));
    krate.write(
        "src/a.rs",
        &format!(
            "//! Names [`{c}::c::C`] in its docs only.\nuse {c}::{{\n    b::{{self, inner::Thing as T}},\n}};\npub struct A;\nconst S: &str = \"{c}::c::C\";\nconst Q: [char; 2] = ['\"', '\\''];\nconst R: &str = r#\"{c}::c::C\"#;\nfn f<'a>(_: &'a T) {{ b::f() }}\n"
        ),
    );
    krate.write("src/b/mod.rs", &format!("mod inner;\npub use inner::Thing;\npub fn f() {{ let _ = {c}::a::A; }}\n"));
    krate.write("src/b/inner.rs", "pub struct Thing;\nfn g() { super::f() }\n");
    krate.write(
        "src/c.rs",
        &format!("use {c}::a::A;\npub struct C;\n/* {c}::a /* nested */ {c}::b */\n#[cfg(test)]\nmod tests {{\n    use super::*;\n}}\n"),
    );
    krate.write("src/p/mod.rs", "mod x;\nmod y;\n");
    krate.write("src/p/x.rs", "use super::y::Y;\npub fn h() {}\n");
    krate.write("src/p/y.rs", &format!("pub struct Y;\nfn g() {{ {c}::p::x::h() }}\n"));
    let src = krate.0.join("src");
    let pairs: Vec<(String, String)> = import_pairs(&src, &src.join("lib.rs"))
        .into_iter()
        .map(|(a, b)| {
            let show = |p: PathBuf| p.strip_prefix(&src).expect("in src").display().to_string();
            (show(a), show(b))
        })
        .collect();
    let expected = [("a.rs", "b/mod.rs"), ("p/x.rs", "p/y.rs")];
    assert_eq!(pairs, expected.map(|(a, b)| (a.to_owned(), b.to_owned())));
    // The use tree reaches each file it names.
    let from_a = referenced_files(&src, &src.join("lib.rs"), &src.join("a.rs"));
    assert_eq!(from_a, [src.join("b/mod.rs"), src.join("b/inner.rs")]);
}
