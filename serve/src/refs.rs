//! `{port:NAME}` and `{url:NAME}`: references to other projects, resolved, and the order to start them in.
//!
//! A frontend's command or environment can name its backend's port
//! (`API_URL={url:api}`) wherever the ports land. This module finds the
//! names ([`names`]), replaces the references once the ports are known
//! ([`substitute`]) and orders a project after everything it refers to
//! ([`order`]). It knows nothing of the registry: callers pass closures.
//!
//! A reference is exactly `{port:NAME}` or `{url:NAME}` where NAME is a
//! valid project name (`myapp`, `myapp:api`: 1–128 of `[A-Za-z0-9._:-]`,
//! starting alphanumeric). Any other text in braces is left as it is, and so
//! is `{port}` alone: that is the project's own port, replaced elsewhere.

use std::collections::{HashMap, HashSet};

/// What a reference asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `{port:NAME}`: the port number.
    Port,
    /// `{url:NAME}`: `http://localhost:PORT`.
    Url,
}

/// One reference found in a text: where it is, what it asks for.
struct Ref<'a> {
    start: usize,
    end: usize,
    kind: Kind,
    name: &'a str,
}

/// The references in `text`, in order.
fn scan(text: &str) -> Vec<Ref<'_>> {
    let mut refs = Vec::new();
    let mut from = 0;
    while let Some(off) = text[from..].find('{') {
        let start = from + off;
        from = start + 1;
        let rest = &text[start + 1..];
        let (kind, body) = if let Some(b) = rest.strip_prefix("port:") {
            (Kind::Port, b)
        } else if let Some(b) = rest.strip_prefix("url:") {
            (Kind::Url, b)
        } else {
            continue;
        };
        let Some(len) = body.find('}') else { continue };
        let name = &body[..len];
        if portd_core::validate_name(name).is_ok() {
            let end = text.len() - body.len() + len + 1;
            refs.push(Ref { start, end, kind, name });
            from = end;
        }
    }
    refs
}

/// The project names `text` refers to, each once, in order of first mention.
pub fn names(text: &str) -> Vec<String> {
    let mut seen = HashSet::new();
    scan(text).into_iter().filter(|r| seen.insert(r.name)).map(|r| r.name.to_owned()).collect()
}

/// Replaces every `{port:NAME}` with the port and every `{url:NAME}` with
/// `http://localhost:PORT`, asking `resolve` for each distinct (kind, name)
/// once. A name it answers `None` for is an error that names it; nothing
/// else in the text changes.
pub fn substitute(
    text: &str,
    mut resolve: impl FnMut(Kind, &str) -> Option<u16>,
) -> Result<String, String> {
    let mut ports: HashMap<(Kind, &str), u16> = HashMap::new();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for r in scan(text) {
        let port = match ports.get(&(r.kind, r.name)) {
            Some(&p) => p,
            None => {
                let Some(p) = resolve(r.kind, r.name) else {
                    return Err(format!(
                        "`{}` refers to `{}`, which is not a project",
                        &text[r.start..r.end],
                        r.name
                    ));
                };
                ports.insert((r.kind, r.name), p);
                p
            }
        };
        out.push_str(&text[copied..r.start]);
        match r.kind {
            Kind::Port => out.push_str(&port.to_string()),
            Kind::Url => out.push_str(&format!("http://localhost:{port}")),
        }
        copied = r.end;
    }
    out.push_str(&text[copied..]);
    Ok(out)
}

/// The projects to start for `root`: everything it refers to, directly or
/// not, dependencies first, `root` last, each once. `deps_of` is asked once
/// per project reached. A cycle is an error carrying its path, from the
/// first project on it back to that project (`["web", "api", "web"]`).
pub fn order(
    root: &str,
    mut deps_of: impl FnMut(&str) -> Vec<String>,
) -> Result<Vec<String>, Vec<String>> {
    let mut walk =
        Walk { deps_of: &mut deps_of, path: Vec::new(), done: HashSet::new(), out: Vec::new() };
    walk.visit(root)?;
    Ok(walk.out)
}

/// A depth-first walk: `path` is the chain being followed (a project met
/// again on it closes a cycle), `done` the projects already placed in `out`.
struct Walk<'a> {
    deps_of: &'a mut dyn FnMut(&str) -> Vec<String>,
    path: Vec<String>,
    done: HashSet<String>,
    out: Vec<String>,
}

impl Walk<'_> {
    fn visit(&mut self, node: &str) -> Result<(), Vec<String>> {
        if self.done.contains(node) {
            return Ok(());
        }
        if let Some(i) = self.path.iter().position(|p| p == node) {
            let mut cycle = self.path[i..].to_vec();
            cycle.push(node.to_owned());
            return Err(cycle);
        }
        self.path.push(node.to_owned());
        for dep in (self.deps_of)(node) {
            self.visit(&dep)?;
        }
        self.path.pop();
        self.done.insert(node.to_owned());
        self.out.push(node.to_owned());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(kind: Kind, name: &str) -> Option<u16> {
        let _ = kind;
        match name {
            "api" => Some(4123),
            "db" => Some(4200),
            "myapp:api" => Some(4301),
            _ => None,
        }
    }

    #[test]
    fn names_lists_each_valid_reference_once_in_order() {
        assert_eq!(names("API={url:api} DB={port:db} again {port:api}"), ["api", "db"]);
        assert_eq!(names("{port:myapp:api}"), ["myapp:api"]);
        let none = names("--port {port} {} {port:} {url:-x} {port:a b} {host:api} {port:api");
        assert!(none.is_empty(), "{none:?}");
        assert!(names("").is_empty());
    }

    #[test]
    fn substitute_replaces_exact_references_and_leaves_other_braces() {
        let cases = [
            ("{port:api}", "4123"),
            ("{url:api}", "http://localhost:4123"),
            ("API_URL={url:api}/v1", "API_URL=http://localhost:4123/v1"),
            ("{port:api}:{port:db}", "4123:4200"),
            ("{url:myapp:api}", "http://localhost:4301"),
            ("--port {port}", "--port {port}"),
            ("{port:}", "{port:}"),
            ("{port: api}", "{port: api}"),
            ("{port:-api}", "{port:-api}"),
            ("{PORT:api}", "{PORT:api}"),
            ("{port:api", "{port:api"),
            ("{{port:api}}", "{4123}"),
            ("{\"json\": {port:api}}", "{\"json\": 4123}"),
            ("{url:api}{url:db}", "http://localhost:4123http://localhost:4200"),
            ("plain", "plain"),
            ("é{port:api}ü", "é4123ü"),
        ];
        for (text, want) in cases {
            assert_eq!(substitute(text, ports).as_deref(), Ok(want), "{text}");
        }
    }

    #[test]
    fn substitute_of_an_unknown_name_is_an_error_naming_it() {
        let e = substitute("A={url:api} B={port:nope}", ports).unwrap_err();
        assert_eq!(e, "`{port:nope}` refers to `nope`, which is not a project");
        // An invalid name is not a reference at all, so it is no error.
        assert_eq!(substitute("{port:a/b}", ports).as_deref(), Ok("{port:a/b}"));
    }

    #[test]
    fn substitute_asks_once_per_kind_and_name() {
        let mut asked = Vec::new();
        let out = substitute("{port:api} {port:api} {url:api} {url:api}", |k, n| {
            asked.push((k, n.to_owned()));
            Some(4000)
        })
        .unwrap();
        assert_eq!(out, "4000 4000 http://localhost:4000 http://localhost:4000");
        assert_eq!(asked, [(Kind::Port, "api".to_owned()), (Kind::Url, "api".to_owned())]);
    }

    fn graph(
        edges: &'static [(&'static str, &'static [&'static str])],
    ) -> impl FnMut(&str) -> Vec<String> {
        move |n| {
            edges
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, d)| d.iter().map(|s| (*s).to_owned()).collect())
                .unwrap_or_default()
        }
    }

    #[test]
    fn order_puts_dependencies_first_root_last_each_once() {
        assert_eq!(order("web", graph(&[])).unwrap(), ["web"]);
        assert_eq!(order("web", graph(&[("web", &["api"])])).unwrap(), ["api", "web"]);
        // A diamond: db is reached twice and placed once, before both users.
        let g = graph(&[("web", &["api", "auth"]), ("api", &["db"]), ("auth", &["db"])]);
        assert_eq!(order("web", g).unwrap(), ["db", "api", "auth", "web"]);
        // A dependency named twice is placed once.
        assert_eq!(order("web", graph(&[("web", &["api", "api"])])).unwrap(), ["api", "web"]);
    }

    #[test]
    fn order_asks_each_project_once() {
        let mut asked = Vec::new();
        let mut g = graph(&[("web", &["api", "auth"]), ("api", &["db"]), ("auth", &["db"])]);
        order("web", |n| {
            asked.push(n.to_owned());
            g(n)
        })
        .unwrap();
        asked.sort();
        assert_eq!(asked, ["api", "auth", "db", "web"]);
    }

    #[test]
    fn order_reports_a_cycle_as_its_path() {
        assert_eq!(order("web", graph(&[("web", &["web"])])).unwrap_err(), ["web", "web"]);
        assert_eq!(
            order("web", graph(&[("web", &["api"]), ("api", &["web"])])).unwrap_err(),
            ["web", "api", "web"]
        );
        // A cycle below the root: the path starts where the cycle does.
        let g = graph(&[("web", &["api"]), ("api", &["db"]), ("db", &["api"])]);
        assert_eq!(order("web", g).unwrap_err(), ["api", "db", "api"]);
    }

    #[test]
    fn order_copes_with_a_long_chain() {
        // 2,000 projects in a line: deep, but well within the stack.
        let deps = |n: &str| {
            let i: u32 = n[1..].parse().unwrap();
            if i < 2000 { vec![format!("p{}", i + 1)] } else { vec![] }
        };
        let out = order("p0", deps).unwrap();
        assert_eq!(out.len(), 2001);
        assert_eq!(out.first().map(String::as_str), Some("p2000"));
        assert_eq!(out.last().map(String::as_str), Some("p0"));
    }
}
