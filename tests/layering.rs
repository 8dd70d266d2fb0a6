//! The modules of `src/` import each other in one direction only: the
//! `use crate::…` lines form no cycle (data flows writer → segment files and
//! manifest → published state → search, with the merger beside the writer).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The top-level module each file of `src/` belongs to, and the modules it
/// names in `use crate::` lines and `crate::` paths.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&src).unwrap();
            let module = rel
                .iter()
                .next()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string();
            if module == "lib" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let deps = graph.entry(module.clone()).or_default();
            for (at, _) in text.match_indices("crate::") {
                let rest = &text[at + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                // Doc links (`[`x`](crate::y)`) are not imports.
                let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
                let line = text[line_start..].trim_start();
                if line.starts_with("//") || name.is_empty() || name == module {
                    continue;
                }
                deps.insert(name);
            }
        }
    }
    graph
}

#[test]
fn src_modules_import_each_other_without_a_cycle() {
    let graph = imports();
    // Depth-first search for a back edge.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) {
        match state.get(m) {
            Some(2) => return,
            Some(1) => {
                let from = path.iter().position(|p| p == m).unwrap();
                panic!("import cycle: {} -> {m}", path[from..].join(" -> "));
            }
            _ => {}
        }
        state.insert(m.to_string(), 1);
        path.push(m.to_string());
        for d in graph.get(m).into_iter().flatten() {
            visit(d, graph, state, path);
        }
        path.pop();
        state.insert(m.to_string(), 2);
    }
    let mut state = BTreeMap::new();
    for m in graph.keys() {
        visit(m, &graph, &mut state, &mut Vec::new());
    }
    assert!(graph.contains_key("writer") && graph.contains_key("merger"));
}

#[test]
fn readers_never_reach_the_writer_or_the_merger() {
    let graph = imports();
    for reader in ["search", "snapshot", "state", "growing", "publish"] {
        let deps = &graph[reader];
        for forbidden in ["writer", "merger", "db", "compact"] {
            assert!(!deps.contains(forbidden), "{reader} imports {forbidden}");
        }
    }
}
