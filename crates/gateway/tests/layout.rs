//! The gateway's modules form layers: no module imports one that imports it back, directly or
//! through others. Read from the sources: every `crate::…` and `super::…` path outside the
//! `#[cfg(test)]` tail of a file is an import of the module it names. A parent's use of its
//! own children (`mod child;` and `child::Item`) is the module tree itself and is not counted;
//! a child's use of its parent is.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`store::sqlite`, `crate` for lib.rs) → its source.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(root).unwrap().with_extension("");
            let mut name = relative.to_string_lossy().replace('/', "::");
            if let Some(parent) = name.strip_suffix("::mod") {
                name = parent.to_owned();
            }
            if name == "lib" {
                name = "crate".to_owned();
            }
            out.insert(name, std::fs::read_to_string(&path).unwrap());
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    walk(&root, &root, &mut out);
    out
}

/// A module's code: its source without the `#[cfg(test)] mod tests` tail and comments.
fn code(source: &str) -> String {
    let source = source.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
    source.lines().map(|l| l.split("//").next().unwrap_or_default()).collect::<Vec<_>>().join("\n")
}

/// The paths after each `prefix` in `code`, with a `{a, b::c}` group spread into its paths.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut found = Vec::new();
    for (at, _) in code.match_indices(prefix) {
        if code[..at].chars().next_back().is_some_and(|c| ident(c) || c == ':') {
            continue;
        }
        let rest = &code[at + prefix.len()..];
        let mut segments = Vec::new();
        let mut rest = rest;
        loop {
            let end = rest.find(|c: char| !ident(c)).unwrap_or(rest.len());
            if end > 0 {
                segments.push(rest[..end].to_owned());
            }
            rest = &rest[end..];
            let next = rest.strip_prefix("::").or_else(|| rest.starts_with('{').then_some(rest));
            if let Some(next) = next {
                if let Some(group) = next.strip_prefix('{') {
                    let inner = &group[..group.find('}').unwrap_or(group.len())];
                    for item in inner.split(',') {
                        let item: Vec<String> =
                            item.trim().split("::").map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
                        found.push(segments.iter().cloned().chain(item).collect());
                    }
                    segments.clear();
                    break;
                }
                rest = next;
                continue;
            }
            break;
        }
        if !segments.is_empty() {
            found.push(segments);
        }
    }
    found
}

/// Which modules each module imports.
fn imports(modules: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let resolve = |base: &[String], path: &[String]| -> Option<String> {
        let full: Vec<String> = base.iter().cloned().chain(path.iter().cloned()).collect();
        (1..=full.len()).rev().map(|n| full[..n].join("::")).find(|m| modules.contains_key(m))
    };
    let mut graph = BTreeMap::new();
    for (name, source) in modules {
        let code = code(source);
        let code = code.as_str();
        let own: Vec<String> = if name == "crate" { vec![] } else { name.split("::").map(str::to_owned).collect() };
        let parent = &own[..own.len().saturating_sub(1)];
        let mut to = BTreeSet::new();
        for path in paths_after(code, "crate::") {
            to.extend(resolve(&[], &path));
        }
        for path in paths_after(code, "super::") {
            // `super::super::x` climbs once more for each further `super`.
            let ups = path.iter().take_while(|s| *s == "super").count();
            let base = &parent[..parent.len().saturating_sub(ups)];
            to.insert(resolve(base, &path[ups..]).unwrap_or_else(|| base.join("::")));
        }
        // Its own children, and itself, are not imports.
        to.retain(|m: &String| m != name && !(name == "crate" || m.starts_with(&format!("{name}::"))));
        to.retain(|m| !m.is_empty() && m != "crate");
        graph.insert(name.clone(), to);
    }
    graph
}

/// The strongly connected groups of more than one module (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        for w in s.graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.stack.contains(&w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut group = Vec::new();
            while let Some(w) = s.stack.pop() {
                group.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if group.len() > 1 {
                group.sort();
                s.found.push(group);
            }
        }
    }
    let mut s = State { graph, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), found: Vec::new() };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.found
}

#[test]
fn module_imports_have_no_cycle() {
    let modules = modules();
    assert!(modules.contains_key("store::sqlite") && modules.contains_key("service"), "{:?}", modules.keys());
    let graph = imports(&modules);
    let found = cycles(&graph);
    let explain = |group: &Vec<String>| {
        group
            .iter()
            .map(|m| format!("{m} -> {:?}", graph[m].iter().filter(|t| group.contains(t)).collect::<Vec<_>>()))
            .collect::<Vec<_>>()
            .join("; ")
    };
    assert!(
        found.is_empty(),
        "modules that import each other: {}",
        found.iter().map(explain).collect::<Vec<_>>().join(" | ")
    );
}

#[test]
fn the_reader_finds_imports_and_cycles() {
    let modules: BTreeMap<String, String> = [
        ("crate", "pub mod a; pub mod b; pub mod c;"),
        ("a", "use crate::b::Thing; fn f() { crate::c::go() }"),
        ("b", "use super::{a::Other, c};"),
        ("c", "// crate::a::never\nfn go() {}"),
        ("c::inner", "use super::super::a;"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let graph = imports(&modules);
    assert_eq!(graph["a"], BTreeSet::from(["b".to_owned(), "c".to_owned()]));
    assert_eq!(graph["b"], BTreeSet::from(["a".to_owned(), "c".to_owned()]));
    assert!(graph["c"].is_empty(), "a comment is not an import: {:?}", graph["c"]);
    assert_eq!(graph["c::inner"], BTreeSet::from(["a".to_owned()]));
    assert_eq!(cycles(&graph), vec![vec!["a".to_owned(), "b".to_owned()]]);
}
