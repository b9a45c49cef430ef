//! The shape of the crate: its modules form layers, and a module uses only those below it;
//! `compute/` and `tensor/` stay pure (no HTTP, no async runtime).
//!
//! The check reads the sources: every `crate::…` path in code (not in comments) names a
//! top-level module, which must sit in a lower layer than the module that uses it. A new
//! top-level module must be given its layer in [`LAYERS`].

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeSet;
use std::path::Path;

/// The layers, lowest first. A module may use modules of lower layers only; modules of one
/// layer do not use each other.
const LAYERS: &[&[&str]] = &[
    // Pure: the math, request tensors decoded into buffers, and what of a request an error
    // may repeat.
    &["compute", "tensor", "echo"],
    // Used by all, using nothing of ours above.
    &["config", "request_id", "healthcheck", "tables"],
    &["error", "telemetry"],
    &["cpu", "coding"],
    // Bytes ⇄ answers; admission; the metrics that read it; the state that holds both.
    &["answer"],
    &["admission"],
    &["metrics"],
    &["body"],
    &["state"],
    // The routes and what wraps them: neither uses the other.
    &["api", "middleware"],
    &["app"],
    &["server"],
];

/// Crates the pure modules must not use.
const IMPURE: &[&str] = &[
    "axum",
    "hyper",
    "hyper_util",
    "http",
    "http_body",
    "http_body_util",
    "tokio",
    "tower",
    "tower_http",
];

/// The layer of top-level module `name`.
fn layer(name: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&name))
}

/// A source file: its top-level module and its text.
struct Source {
    module: String,
    path: String,
    text: String,
}

/// Every `.rs` file under `src/` but the crate roots.
fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let relative = path.strip_prefix(&root).unwrap();
            let first = relative.components().next().unwrap().as_os_str();
            let module = first.to_str().unwrap().trim_end_matches(".rs").to_owned();
            if module == "lib" || module == "main" {
                continue;
            }
            out.push(Source {
                module,
                path: relative.display().to_string(),
                text: std::fs::read_to_string(&path).unwrap(),
            });
        }
    }
    out
}

/// The text of `source` without comments (line comments and doc comments).
fn code(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules `code` names through `crate::` (also inside `use crate::{a, b}`).
fn crate_modules(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        if at > 0 && code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue; // `$crate::` or a longer identifier
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            found.extend(top_level_items(group).into_iter().filter_map(first_ident));
        } else if let Some(name) = first_ident(rest) {
            found.insert(name);
        }
    }
    found
}

/// The comma-separated items of a `{…}` group whose opening brace `group` follows, nested
/// groups kept inside their item.
fn top_level_items(group: &str) -> Vec<&str> {
    let (mut items, mut depth, mut start) = (Vec::new(), 0usize, 0);
    for (at, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&group[start..at]);
                return items;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    items.push(&group[start..]);
    items
}

/// The identifier `text` starts with, after whitespace.
fn first_ident(text: &str) -> Option<String> {
    let text = text.trim_start();
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    (end > 0).then(|| text[..end].to_owned())
}

/// Whether `code` uses the crate `name` (`use name::…`, `name::…` in a path).
fn uses_crate(code: &str, name: &str) -> bool {
    let pattern = format!("{name}::");
    code.match_indices(&pattern).any(|(at, _)| {
        at == 0
            || !code[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
    })
}

/// Every way `sources` break the layers, as readable lines.
fn violations(sources: &[Source]) -> Vec<String> {
    let mut found = Vec::new();
    for source in sources {
        let Some(own) = layer(&source.module) else {
            found.push(format!(
                "{}: module `{}` has no layer in LAYERS",
                source.path, source.module
            ));
            continue;
        };
        let code = code(&source.text);
        for used in crate_modules(&code) {
            if used == source.module {
                continue;
            }
            match layer(&used) {
                Some(theirs) if theirs < own => {}
                Some(_) => found.push(format!(
                    "{}: `{}` uses `crate::{used}`, which is not below it",
                    source.path, source.module
                )),
                None => found.push(format!(
                    "{}: `crate::{used}` is not a module with a layer",
                    source.path
                )),
            }
        }
        if own == 0 {
            for name in IMPURE {
                if uses_crate(&code, name) {
                    found.push(format!(
                        "{}: `{}` is pure but uses `{name}`",
                        source.path, source.module
                    ));
                }
            }
        }
    }
    found
}

#[test]
fn every_module_uses_only_modules_below_it_and_compute_and_tensor_stay_pure() {
    let sources = sources();
    assert!(sources.len() > 30, "found only {} files", sources.len());
    let found = violations(&sources);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn every_layer_names_a_module_that_exists() {
    let modules: BTreeSet<String> = sources().into_iter().map(|s| s.module).collect();
    for name in LAYERS.iter().flat_map(|layer| layer.iter()) {
        assert!(
            modules.contains(*name),
            "LAYERS names `{name}`, not in src/"
        );
    }
}

#[test]
fn upward_imports_impure_crates_and_unplaced_modules_are_reported() {
    let file = |module: &str, text: &str| Source {
        module: module.to_owned(),
        path: format!("{module}/x.rs"),
        text: text.to_owned(),
    };
    let bad = [
        file(
            "compute",
            "use axum::Router;\nfn f() { tokio::spawn(async {}); }",
        ),
        file("tensor", "use crate::{error::ApiError, compute};"),
        file(
            "answer",
            "use crate::{compute::{Metric, Cancel}, admission::{self, x}};",
        ),
        file("api", "use crate::middleware::observe;"),
        file("state", "fn f() -> crate::app::Router { todo!() }"),
        file("newcomer", "use crate::error::ApiError;"),
    ];
    let found = violations(&bad);
    for expected in [
        "compute/x.rs: `compute` is pure but uses `axum`",
        "compute/x.rs: `compute` is pure but uses `tokio`",
        "tensor/x.rs: `tensor` uses `crate::error`",
        "tensor/x.rs: `tensor` uses `crate::compute`",
        "answer/x.rs: `answer` uses `crate::admission`",
        "api/x.rs: `api` uses `crate::middleware`",
        "state/x.rs: `state` uses `crate::app`",
        "newcomer/x.rs: module `newcomer` has no layer",
    ] {
        assert!(
            found.iter().any(|line| line.starts_with(expected)),
            "{expected:?} not in {found:#?}"
        );
    }
    let fine = [
        file("api", "use crate::state::AppState; // crate::app::routes"),
        file(
            "compute",
            "/// [`crate::app`] and axum::Router in a doc\nuse super::x;",
        ),
        file("body", "macro_rules! m { () => { $crate::error::x } }"),
        file("api", "use crate::{admission::{Admitted, estimate}, body};"),
    ];
    assert_eq!(violations(&fine), Vec::<String>::new());
}
