//! The shape of the workspace, checked: the crate graph `docs/architecture.md`
//! draws, files that own one noun (a size bound), and no import cycles
//! between the modules of a crate, and every metric a crate records given
//! its HELP text. Each check names what breaks it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Most lines of a source file, counted above its first `#[cfg(test)]`
/// (the whole file when it has none), comments included.
const MAX_FILE_LINES: usize = 700;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Which Herald crates each crate may depend on. `normal` covers normal and
/// build dependencies; `dev` is what its own tests may add.
struct Rule {
    krate: &'static str,
    normal: &'static [&'static str],
    dev: Option<&'static [&'static str]>,
}

const RULES: &[Rule] = &[
    Rule { krate: "herald-proto", normal: &[], dev: Some(&[]) },
    Rule { krate: "herald-bus", normal: &["herald-proto"], dev: Some(&["herald-proto"]) },
    // The two deployables meet only in the contracts and the bus, also in
    // their tests.
    Rule {
        krate: "herald-edge",
        normal: &["herald-proto", "herald-bus"],
        dev: Some(&["herald-proto", "herald-bus", "herald-edge"]),
    },
    Rule {
        krate: "herald-control-plane",
        normal: &["herald-proto", "herald-bus"],
        dev: Some(&["herald-proto", "herald-bus", "herald-control-plane"]),
    },
    // Apps link the SDK: it brings only the contracts. Its tests run a real
    // edge and control plane.
    Rule { krate: "herald-sdk", normal: &["herald-proto"], dev: None },
    Rule { krate: "herald-bench", normal: &["herald-proto"], dev: None },
];

#[derive(Default)]
struct Deps {
    normal: BTreeSet<String>,
    dev: BTreeSet<String>,
}

/// The Herald crates each workspace package depends on, from `cargo
/// metadata`.
fn workspace_deps() -> BTreeMap<String, Deps> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    let mut all = BTreeMap::new();
    for package in meta["packages"].as_array().expect("packages") {
        let name = package["name"].as_str().expect("package name").to_owned();
        let mut deps = Deps::default();
        for dep in package["dependencies"].as_array().expect("dependencies") {
            let dep_name = dep["name"].as_str().expect("dependency name");
            if !dep_name.starts_with("herald") {
                continue;
            }
            match dep["kind"].as_str() {
                Some("dev") => deps.dev.insert(dep_name.to_owned()),
                _ => deps.normal.insert(dep_name.to_owned()),
            };
        }
        all.insert(name, deps);
    }
    all
}

#[test]
fn crates_depend_only_as_the_architecture_draws() {
    let deps = workspace_deps();
    let mut broken = Vec::new();
    for rule in RULES {
        let Some(have) = deps.get(rule.krate) else {
            broken.push(format!("{} is not in the workspace", rule.krate));
            continue;
        };
        for dep in &have.normal {
            if !rule.normal.contains(&dep.as_str()) {
                broken.push(format!("{} depends on {dep}", rule.krate));
            }
        }
        if let Some(allowed) = rule.dev {
            for dep in &have.dev {
                if !allowed.contains(&dep.as_str()) {
                    broken.push(format!("{}'s tests depend on {dep}", rule.krate));
                }
            }
        }
    }
    assert!(broken.is_empty(), "forbidden crate edges (see docs/architecture.md):\n  {}", broken.join("\n  "));
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target" || n == "node_modules") {
                continue;
            }
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The workspace's crate folders, with the root package's `src`.
const CRATE_DIRS: &[&str] = &["proto", "bus", "edge", "control-plane", "sdk", "bench", "tests", "."];

/// A file's lines above its first `#[cfg(test)]`, doc comments left out:
/// the bound is on what a module does, and an example on every public item
/// (which publishable crates owe their users) is not more of it.
fn counted_lines(text: &str) -> Vec<&str> {
    text.lines()
        .take_while(|l| !l.trim_start().starts_with("#[cfg(test)]"))
        .filter(|l| {
            let l = l.trim_start();
            !l.starts_with("///") && !l.starts_with("//!")
        })
        .collect()
}

#[test]
fn no_source_file_is_over_the_size_bound() {
    let mut files = Vec::new();
    for dir in CRATE_DIRS {
        for sub in ["src", "tests", "examples", "benches"] {
            rust_files(&root().join(dir).join(sub), &mut files);
        }
    }
    assert!(files.len() > 50, "found only {} source files", files.len());
    let mut over = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("source file readable");
        let n = counted_lines(&text).len();
        if n > MAX_FILE_LINES {
            over.push(format!("{} ({n} lines)", file.strip_prefix(root()).unwrap_or(file).display()));
        }
    }
    assert!(
        over.is_empty(),
        "files over {MAX_FILE_LINES} lines above their first #[cfg(test)] (split them by noun):\n  {}",
        over.join("\n  ")
    );
}

/// The module path of a source file under `src`: `a/b.rs` and `a/b/mod.rs`
/// are `["a", "b"]`; `lib.rs` and `main.rs` are the root, `[]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("file under src");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if !(stem == "mod" || (parts.is_empty() && (stem == "lib" || stem == "main"))) {
        parts.push(stem.to_owned());
    }
    parts
}

/// The module paths `text` (a file of module `module`) refers to through
/// `crate::` and `super::` paths, outside comments.
fn references(module: &[String], text: &str) -> BTreeSet<Vec<String>> {
    let mut found = BTreeSet::new();
    for line in counted_lines(text) {
        let code = line.split("//").next().unwrap_or("");
        for (at, _) in code.match_indices("crate::").chain(code.match_indices("super::")) {
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let path: Vec<&str> = code[at..]
                .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .next()
                .unwrap_or("")
                .split("::")
                .filter(|s| !s.is_empty())
                .collect();
            let (mut base, rest): (Vec<String>, &[&str]) = if path.first() == Some(&"crate") {
                (Vec::new(), &path[1..])
            } else {
                // `super` is the parent module, for `a/b.rs` and
                // `a/b/mod.rs` alike.
                let mut base = module.to_vec();
                let mut rest = &path[..];
                while rest.first() == Some(&"super") {
                    base.pop();
                    rest = &rest[1..];
                }
                (base, rest)
            };
            base.extend(
                rest.iter().take_while(|s| s.chars().next().is_some_and(char::is_lowercase)).map(|s| (*s).to_owned()),
            );
            found.insert(base);
        }
    }
    found
}

/// The cycles among the children of each module (a child depends on a
/// sibling when any file inside it refers into the sibling).
fn module_cycles(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(src, f)).collect();
    // parent → child → siblings it refers to
    let mut edges: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in &files {
        let module = module_of(src, file);
        let text = std::fs::read_to_string(file).expect("source file readable");
        for target in references(&module, &text) {
            // The deepest existing module on the referred path.
            let mut target = target;
            while !target.is_empty() && !modules.contains(&target) {
                target.pop();
            }
            // The nearest common parent, and the two children of it.
            let common = module.iter().zip(&target).take_while(|(a, b)| a == b).count();
            if common >= module.len() || common >= target.len() {
                continue; // an ancestor or a descendant: not a sibling edge
            }
            edges
                .entry(module[..common].to_vec())
                .or_default()
                .entry(module[common].clone())
                .or_default()
                .insert(target[common].clone());
        }
    }
    let mut cycles = Vec::new();
    for (parent, graph) in &edges {
        // Each pair reachable both ways is a cycle; report each one once.
        let reach = |from: &str| {
            let mut seen = BTreeSet::new();
            let mut todo = vec![from.to_owned()];
            while let Some(m) = todo.pop() {
                for next in graph.get(&m).into_iter().flatten() {
                    if seen.insert(next.clone()) {
                        todo.push(next.clone());
                    }
                }
            }
            seen
        };
        let mut reported = BTreeSet::new();
        for node in graph.keys() {
            if reach(node).contains(node) && !reported.contains(node) {
                let members: BTreeSet<String> =
                    graph.keys().filter(|o| reach(node).contains(*o) && reach(o).contains(node)).cloned().collect();
                reported.extend(members.iter().cloned());
                let at = if parent.is_empty() { "crate".to_owned() } else { format!("crate::{}", parent.join("::")) };
                cycles.push(format!(
                    "{}: {at}: {}",
                    src.display(),
                    members.into_iter().collect::<Vec<_>>().join(" ↔ ")
                ));
            }
        }
    }
    cycles
}

#[test]
fn no_import_cycles_between_modules_of_a_crate() {
    let mut cycles = Vec::new();
    for dir in CRATE_DIRS {
        let src = root().join(dir).join("src");
        if src.is_dir() {
            cycles.extend(module_cycles(&src));
        }
    }
    assert!(
        cycles.is_empty(),
        "modules that import each other (move what both need into its own module):\n  {}",
        cycles.join("\n  ")
    );
}

#[test]
fn the_cycle_check_sees_a_cycle() {
    let dir = std::env::temp_dir().join(format!("herald-arch-{}", std::process::id()));
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("c")).expect("temp dir");
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\nmod c;\n").expect("write");
    std::fs::write(src.join("a.rs"), "use crate::b::Thing;\n").expect("write");
    std::fs::write(src.join("b.rs"), "// crate::a is only mentioned here\npub fn f() { crate::c::x::g() }\n")
        .expect("write");
    std::fs::write(src.join("c/mod.rs"), "mod x;\nmod y;\n").expect("write");
    std::fs::write(src.join("c/x.rs"), "use super::y::Y;\n").expect("write");
    std::fs::write(src.join("c/y.rs"), "use crate::c::x::X;\n").expect("write");
    assert_eq!(module_cycles(&src).len(), 1, "{:?}", module_cycles(&src));
    std::fs::write(src.join("b.rs"), "use crate::a::A;\n").expect("write");
    let cycles = module_cycles(&src);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(cycles.len(), 2, "{cycles:?}");
    assert!(cycles.iter().any(|c| c.ends_with("crate: a ↔ b")), "{cycles:?}");
    assert!(cycles.iter().any(|c| c.ends_with("crate::c: x ↔ y")), "{cycles:?}");
}

/// The text under `# Gap-free recovery` of a module doc, up to the first
/// blank line after its first paragraph.
fn recovery_paragraph(path: &str) -> String {
    let text = std::fs::read_to_string(root().join(path)).expect("recovery module readable");
    let doc: Vec<&str> = text.lines().map_while(|l| l.strip_prefix("//!")).map(str::trim).collect();
    let start = doc.iter().position(|l| *l == "# Gap-free recovery").expect("a `# Gap-free recovery` heading") + 1;
    doc[start..]
        .iter()
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn the_edge_and_the_sdk_describe_recovery_the_same_way() {
    let edge = recovery_paragraph("edge/src/conn/recovery.rs");
    let sdk = recovery_paragraph("sdk/src/recovery.rs");
    assert!(edge.contains("`recovered`"), "{edge}");
    assert_eq!(edge, sdk, "the edge's and the SDK's recovery modules must open with the same paragraph");
}

/// The metric names recorded in `text`: `herald_…` string literals right
/// after a `metrics` macro or a recorder key constructor.
fn recorded_metrics(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for opener in ["counter!(", "gauge!(", "histogram!(", "from_static_name(", "from_parts("] {
        for (at, _) in text.match_indices(opener) {
            let rest = text[at + opener.len()..].trim_start();
            let Some(rest) = rest.strip_prefix('"') else { continue };
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if name.starts_with("herald_") && rest[name.len()..].starts_with('"') {
                names.insert(name);
            }
        }
    }
    names
}

#[test]
fn every_recorded_metric_has_help_text() {
    let mut text = String::new();
    for dir in ["bus/src", "edge/src", "control-plane/src", "src"] {
        let mut files = Vec::new();
        rust_files(&root().join(dir), &mut files);
        for file in files {
            text.push_str(&std::fs::read_to_string(&file).unwrap_or_default());
        }
    }
    let names = recorded_metrics(&text);
    assert!(names.contains("herald_connections") && names.contains("herald_cp_requests_total"), "{names:?}");
    // Tables as rustfmt lays them out, one entry on one line or several.
    let compact: String = text.split_whitespace().collect();
    let undescribed: Vec<&String> = names.iter().filter(|n| !compact.contains(&format!("(\"{n}\",\""))).collect();
    assert!(
        undescribed.is_empty(),
        "metrics without a (name, HELP text) entry in their crate's DESCRIPTIONS table: {undescribed:?}"
    );
}
