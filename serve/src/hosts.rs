//! Host names and projects: which `NAME.localhost` label each project
//! answers to, and what a request's `Host` header asks for.
//!
//! The rules (the README's "Named URLs" repeats them):
//! - Host names are compared in lower case, without a trailing dot or a
//!   port: `Api.Localhost.:7780` is `api.localhost`.
//! - A name project's label is its name in lower case, with the parts of a
//!   `:`-name in reverse order, as subdomains: `myapp` → `myapp.localhost`,
//!   `myapp:api` → `api.myapp.localhost`. A `.` in a name separates DNS
//!   labels as written (`my.app` → `my.app.localhost`); `_` and `-` are
//!   kept (browsers accept `_` in host names).
//! - A directory project's label is its directory's base name, lower case,
//!   every character other than `a-z 0-9 . _ -` turned into `-`; a
//!   directory that is a linked git worktree gets its branch first, and the
//!   main work tree's name: `BRANCH.NAME.localhost` (a `/` in the branch
//!   becomes `-`).
//! - Two projects with the same label (`MyApp` and `myapp`; `app:my` and
//!   `my.app`) are ambiguous: that host answers 409 naming both, and
//!   neither is routed until one is renamed. `portd` is the dashboard's.
//! - `localhost`, `portd.localhost` and the loopback addresses `127.0.0.1`
//!   and `[::1]` are the dashboard's (an address typed in the browser's bar
//!   cannot be a rebinding attack: that needs a name the attacker owns).
//!
//! This module knows no registry and no HTTP: only strings. It lives here,
//! not in the proxy, so that `portd url` (which links no async code) names
//! the same host as the proxy routes.

use std::path::Path;

/// The label the dashboard answers to (and that no project may take).
pub const DASHBOARD_LABEL: &str = "portd";

/// What a request's `Host` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `localhost`, `portd.localhost`, `127.0.0.1` or `[::1]`.
    Dashboard,
    /// `LABEL.localhost`: this label (lower case, no trailing dot).
    Project(String),
    /// A host that is not a `.localhost` name (another IP address, a
    /// domain).
    Foreign(String),
}

/// The URL of host `host` (`api.localhost`) through a proxy on `port`
/// (no port in it for 80).
pub fn proxy_url(host: &str, port: u16) -> String {
    match port {
        80 => format!("http://{host}/"),
        p => format!("http://{host}:{p}/"),
    }
}

/// Parses a `Host` header value (`name[:port]`, `[v6]:port`).
pub fn parse_host(host: &str) -> Option<Target> {
    let host = host.trim();
    if host.is_empty() || host.len() > 1024 {
        return None;
    }
    let name = if let Some(rest) = host.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(valid_port)) {
            return None;
        }
        // `[::1]`, as browsers write it (not `[0:0:0:0:0:0:0:1]`).
        let addr = addr.to_ascii_lowercase();
        if addr == "::1" {
            return Some(Target::Dashboard);
        }
        return Some(Target::Foreign(format!("[{addr}]")));
    } else {
        match host.rsplit_once(':') {
            Some((n, p)) if valid_port(p) => n,
            Some(_) => return None,
            None => host,
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        return None;
    }
    if name == "localhost" || name == "127.0.0.1" {
        return Some(Target::Dashboard);
    }
    match name.strip_suffix(".localhost") {
        Some(DASHBOARD_LABEL) => Some(Target::Dashboard),
        Some(label) if valid_label(label) => Some(Target::Project(label.to_owned())),
        Some(_) => None,
        None => Some(Target::Foreign(name)),
    }
}

fn valid_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `label` (without `.localhost`) is a well-formed host name:
/// dot-separated parts of 1–63 characters of `a-z 0-9 _ -`.
pub fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 253
        && label.split('.').all(|p| {
            !p.is_empty()
                && p.len() <= 63
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b))
        })
}

/// The label of a name project (see the module docs), or `None` when the
/// name makes no host name (`a..b`, a part longer than 63 characters).
pub fn name_label(name: &str) -> Option<String> {
    let label = name.to_ascii_lowercase().rsplit(':').collect::<Vec<_>>().join(".");
    valid_label(&label).then_some(label)
}

/// The label of the project stored as `key` (a directory project's key is
/// its absolute path): [`dir_label`] or [`name_label`].
pub fn key_label(key: &str, is_dir: bool) -> Option<String> {
    if is_dir { dir_label(Path::new(key)) } else { name_label(key) }
}

/// The label of a directory project at `dir` (see the module docs).
pub fn dir_label(dir: &Path) -> Option<String> {
    match worktree(dir) {
        Some((branch, main)) => {
            let label = format!("{}.{}", sanitize(&branch.replace('/', "-")), sanitize(&main));
            valid_label(&label).then_some(label)
        }
        None => {
            let base = dir.file_name()?.to_str()?;
            let label = sanitize(base);
            valid_label(&label).then_some(label)
        }
    }
}

/// Lower case, every character outside `a-z 0-9 . _ -` made `-`, runs of
/// `-` and dots at the ends removed.
fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        let c =
            if c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c) { c } else { '-' };
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    out.trim_matches(|c| c == '-' || c == '.').to_owned()
}

/// For a linked git worktree at `dir`: its branch and the main work tree's
/// directory name. `dir/.git` is then a file `gitdir: MAIN/.git/worktrees/X`
/// whose `HEAD` names the branch. A detached head has no branch: `None`.
pub fn worktree(dir: &Path) -> Option<(String, String)> {
    let dotgit = std::fs::read_to_string(dir.join(".git")).ok()?;
    let gitdir = dotgit.lines().next()?.strip_prefix("gitdir:")?.trim();
    let gitdir = dir.join(gitdir);
    let head = std::fs::read_to_string(gitdir.join("HEAD")).ok()?;
    let branch = head.trim().strip_prefix("ref: refs/heads/")?.to_owned();
    // MAIN/.git/worktrees/X → MAIN/.git (`commondir` says so, relative).
    // A `.git` file without it is no linked worktree but a submodule
    // (`gitdir: ../.git/modules/NAME`) or a separate git dir: named by its
    // directory, as any other.
    let common = gitdir.join(std::fs::read_to_string(gitdir.join("commondir")).ok()?.trim());
    let common = std::fs::canonicalize(&common).unwrap_or(common);
    let main = if common.file_name()? == ".git" {
        common.parent()?.file_name()?
    } else {
        // A bare repository: `name.git`.
        common.file_name()?
    };
    let main = main.to_str()?;
    Some((branch, main.strip_suffix(".git").unwrap_or(main).to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_headers_parse_case_insensitively_without_port_or_trailing_dot() {
        let p = |h: &str| parse_host(h);
        assert_eq!(p("api.localhost"), Some(Target::Project("api".into())));
        assert_eq!(p("Api.LocalHost.:7780"), Some(Target::Project("api".into())));
        assert_eq!(p("api.myapp.localhost:80"), Some(Target::Project("api.myapp".into())));
        assert_eq!(p("my_app.localhost"), Some(Target::Project("my_app".into())));
        assert_eq!(p("localhost:7780"), Some(Target::Dashboard));
        assert_eq!(p("PORTD.localhost"), Some(Target::Dashboard));
        assert_eq!(p("127.0.0.1:7780"), Some(Target::Dashboard));
        assert_eq!(p("127.0.0.1"), Some(Target::Dashboard));
        assert_eq!(p("[::1]:7780"), Some(Target::Dashboard));
        assert_eq!(p("[::1]"), Some(Target::Dashboard));
        assert_eq!(p("127.0.0.2:7780"), Some(Target::Foreign("127.0.0.2".into())));
        assert_eq!(p("[::2]:7780"), Some(Target::Foreign("[::2]".into())));
        assert_eq!(p("192.168.1.5"), Some(Target::Foreign("192.168.1.5".into())));
        assert_eq!(p("example.com"), Some(Target::Foreign("example.com".into())));
        for bad in ["", " ", "a b.localhost", "x.localhost:port", "..localhost", "a..b.localhost"] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
        assert_eq!(p("[::1"), None);
        assert_eq!(p("a/b.localhost"), None);
    }

    #[test]
    fn names_map_to_labels_with_colon_parts_reversed() {
        assert_eq!(name_label("myapp").as_deref(), Some("myapp"));
        assert_eq!(name_label("MyApp").as_deref(), Some("myapp"));
        assert_eq!(name_label("myapp:api").as_deref(), Some("api.myapp"));
        assert_eq!(name_label("a:b:c").as_deref(), Some("c.b.a"));
        assert_eq!(name_label("my.app").as_deref(), Some("my.app"));
        assert_eq!(name_label("my_app-2").as_deref(), Some("my_app-2"));
        assert_eq!(name_label("a..b"), None);
        assert_eq!(name_label("a:"), None);
        assert_eq!(name_label(&"x".repeat(64)), None);
        // Distinct names can meet on one label: the route table refuses them.
        assert_eq!(name_label("app:my"), name_label("my.app"));
    }

    #[test]
    fn directories_map_to_their_base_name_and_worktrees_to_branch_dot_main() {
        let tmp = tempfile::tempdir().unwrap();
        let plain = tmp.path().join("My Site");
        std::fs::create_dir(&plain).unwrap();
        assert_eq!(dir_label(&plain).as_deref(), Some("my-site"));
        // A main work tree and a linked worktree of it, as git lays them out.
        let main = tmp.path().join("shop");
        let wt_git = main.join(".git/worktrees/feat");
        std::fs::create_dir_all(&wt_git).unwrap();
        std::fs::write(wt_git.join("HEAD"), "ref: refs/heads/feature/cart\n").unwrap();
        std::fs::write(wt_git.join("commondir"), "../..\n").unwrap();
        let wt = tmp.path().join("shop-feat");
        std::fs::create_dir(&wt).unwrap();
        std::fs::write(wt.join(".git"), format!("gitdir: {}\n", wt_git.display())).unwrap();
        assert_eq!(dir_label(&wt).as_deref(), Some("feature-cart.shop"));
        assert_eq!(dir_label(&main).as_deref(), Some("shop"));
        // A submodule checked out on a branch: `.git` is a file too, but its
        // git dir has no `commondir`. It is named by its directory.
        let sub_git = main.join(".git/modules/lib");
        std::fs::create_dir_all(&sub_git).unwrap();
        std::fs::write(sub_git.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        let sub = main.join("vendor/lib");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(".git"), "gitdir: ../../.git/modules/lib\n").unwrap();
        assert_eq!(dir_label(&sub).as_deref(), Some("lib"));
    }

    #[test]
    fn a_proxy_on_port_80_gives_urls_without_a_port() {
        assert_eq!(proxy_url("api.localhost", 80), "http://api.localhost/");
        assert_eq!(proxy_url("api.localhost", 7780), "http://api.localhost:7780/");
    }
}
