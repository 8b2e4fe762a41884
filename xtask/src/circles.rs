//! Import circles inside a crate, found by reading its source as text (as rust-analyzer's tidy
//! does): every `crate::…` and `super::…` path in a module file (in `use` trees, braces
//! expanded, and inline) is an edge to the deepest module it names. Edges to a module's own
//! ancestors (its doors, which re-export) and descendants are not circles; any other circle is.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// A module's path inside its crate, e.g. `["engine", "plan"]`; the root is empty.
type Module = Vec<String>;

/// Every module file of the crate whose root is `src/lib.rs` (or `main.rs`) under `src`.
fn modules(src: &Path) -> Result<BTreeMap<Module, PathBuf>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src)?.with_extension("");
            let mut m: Module = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(m.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                m.pop();
            }
            out.insert(m, path);
        }
    }
    Ok(out)
}

/// The `use` trees of `text` (statements that begin a line, `pub` or not), braces expanded
/// into whole paths.
fn use_paths(text: &str) -> Vec<String> {
    let mut out = vec![];
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let l = line.trim_start();
        let l = match l.strip_prefix("pub") {
            Some(rest) if rest.starts_with('(') => rest.split_once(')').map_or("", |(_, r)| r),
            Some(rest) => rest,
            None => l,
        };
        let Some(tree) = l.trim_start().strip_prefix("use ") else {
            continue;
        };
        let mut stmt = tree.to_string();
        while !stmt.contains(';') {
            match lines.next() {
                Some(next) => stmt += next,
                None => break,
            }
        }
        let stmt = stmt.split(';').next().unwrap_or_default();
        expand("", &stmt.replace(char::is_whitespace, ""), &mut out);
    }
    out
}

/// Expands `prefix` + a use tree (`a::{b, c::{d}}`) into paths.
fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    match tree.find('{') {
        None => out.push(format!("{prefix}{tree}")),
        Some(open) => {
            let head = format!("{prefix}{}", &tree[..open]);
            let close = tree.rfind('}').filter(|&c| c > open).unwrap_or(tree.len());
            let inner = &tree[open + 1..close];
            let (mut depth, mut start) = (0, 0);
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        expand(&head, &inner[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            if start < inner.len() {
                expand(&head, &inner[start..], out);
            }
        }
    }
}

/// Inline `crate::a::b` and `super::a` paths outside `use` lines.
fn inline_paths(text: &str) -> Vec<String> {
    let mut out = vec![];
    for key in ["crate::", "super::"] {
        for (at, _) in text.match_indices(key) {
            if text[..at]
                .chars()
                .last()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$')
            {
                continue;
            }
            let path: String = text[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            out.push(path);
        }
    }
    out
}

/// The module a path from module `from` names: the deepest known one.
fn target(from: &Module, path: &str, known: &BTreeMap<Module, PathBuf>) -> Option<Module> {
    let mut parts = path.split("::").filter(|p| !p.is_empty());
    let mut m: Module = match parts.next()? {
        "crate" => vec![],
        "super" => from[..from.len().checked_sub(1)?].to_vec(),
        "self" => from.clone(),
        _ => return None,
    };
    for p in parts {
        match p {
            "super" => {
                m.pop();
            }
            "self" => {}
            name => {
                let mut next = m.clone();
                next.push(name.to_string());
                if !known.contains_key(&next) {
                    break;
                }
                m = next;
            }
        }
    }
    Some(m)
}

/// Import edges between modules that are neither ancestors nor descendants of each other.
fn edges(src: &Path) -> Result<BTreeMap<Module, BTreeSet<Module>>> {
    let known = modules(src)?;
    let mut graph = BTreeMap::new();
    for (m, path) in &known {
        let text = std::fs::read_to_string(path)?;
        // Tests may import anything; comments (doc links among them) import nothing.
        let text: String = text
            .split("#[cfg(test)]")
            .next()
            .unwrap_or_default()
            .lines()
            .map(|l| l.split("//").next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        let text = text.as_str();
        let mut to = BTreeSet::new();
        for p in use_paths(text).into_iter().chain(inline_paths(text)) {
            if let Some(t) = target(m, &p, &known)
                && !t.starts_with(m)
                && !m.starts_with(&t)
            {
                to.insert(t);
            }
        }
        graph.insert(m.clone(), to);
    }
    Ok(graph)
}

fn name(m: &Module) -> String {
    match m.is_empty() {
        true => "crate".into(),
        false => m.join("::"),
    }
}

/// The import circles of the crate in `src`, each as `a → b → a`.
pub fn circles(src: &Path) -> Result<Vec<String>> {
    let graph = edges(src)?;
    let mut found = BTreeSet::new();
    for start in graph.keys() {
        // Depth-first from `start`, looking for a way back to it through larger names only,
        // so each circle is reported once (from its smallest module).
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        while let Some((at, path)) = stack.pop() {
            for next in graph.get(&at).into_iter().flatten() {
                if next == start {
                    let mut names: Vec<String> = path.iter().map(name).collect();
                    names.push(name(start));
                    found.insert(names.join(" → "));
                } else if next > start && !path.contains(next) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
    Ok(found.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, file: &str, text: &str) {
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn a_circle_through_braces_and_super_is_found_and_doors_are_not_circles() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path();
        write(src, "lib.rs", "mod a; mod b; pub use a::A;\n");
        write(
            src,
            "a/mod.rs",
            "mod inner;\nuse crate::{b::{self, B}};\npub struct A;\n",
        );
        write(src, "a/inner.rs", "use super::A; use crate::A as Root;\n");
        write(
            src,
            "b.rs",
            "pub struct B;\nfn f() -> crate::a::A { todo!() }\n/// [`crate::c`]\n",
        );
        assert_eq!(circles(src).unwrap(), ["a → b → a"]);
        write(
            src,
            "b.rs",
            "pub struct B;\n#[cfg(test)]\nmod t { use crate::a::A; }\n",
        );
        assert!(circles(src).unwrap().is_empty());
        // A longer circle, reported once.
        write(src, "lib.rs", "mod a; mod b; mod c;\n");
        write(src, "b.rs", "use crate::c::C;\n");
        write(src, "c.rs", "pub struct C; use crate::a;\n");
        assert_eq!(circles(src).unwrap(), ["a → b → c → a"]);
    }
}
