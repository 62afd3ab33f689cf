//! One module per command (or per pair of closely related commands).

pub mod add;
pub mod check;
pub mod completions;
pub mod config;
pub mod doctor;
pub mod get;
pub mod logs;
pub mod ls;
pub mod maintain;
pub mod proxy;
pub mod release;
pub mod run;
pub mod serve;
pub mod start;
pub mod status;
pub mod stop;
pub mod url;

use crate::args::ProjectArg;
use portd_store::{Error, ErrorKind, MoveReason, Project, Registry};

/// The project an argument names: `--dir`, a path-like name, a name, or
/// the current directory.
pub fn project(arg: &ProjectArg) -> Result<Project, Error> {
    if let Some(d) = &arg.dir {
        return Project::dir(d);
    }
    match arg.name.as_deref() {
        Some(n) => project_of(n),
        None => Project::current_dir(),
    }
}

fn is_path(name: &str) -> bool {
    name.contains('/') || name == "." || name == ".."
}

/// A name, or a directory when it looks like a path (`.`, `./web`, `/srv/app`).
pub fn project_of(name: &str) -> Result<Project, Error> {
    if is_path(name) { Project::dir(std::path::Path::new(name)) } else { Project::name(name) }
}

/// The project an argument names, where a path-like name that is not a
/// directory here may also be a directory project as `portd ls` shows it
/// (`a/app`): for `get` and `env`. A plain name is always a named project.
pub fn project_in(reg: &Registry, arg: &ProjectArg) -> Result<Project, Error> {
    match arg.name.as_deref() {
        Some(n) if arg.dir.is_none() && is_path(n) && !std::path::Path::new(n).is_dir() => {
            match reg.lookup(n)? {
                Some(p) => Ok(p),
                None => project_of(n),
            }
        }
        _ => project(arg),
    }
}

/// A project that has an entry, named as `portd ls` shows it (a name, a
/// directory's base name when no other project shares it, or enough of its
/// path to tell it apart) or by a directory: for `show`, which changes
/// nothing.
pub fn known_project(reg: &Registry, name: &str) -> Result<Project, Error> {
    if is_path(name) && std::path::Path::new(name).is_dir() {
        return project_of(name);
    }
    match reg.lookup(name)? {
        Some(p) => Ok(p),
        None => project_of(name),
    }
}

/// A project to change (`release`): a plain name is the named project
/// only, never a directory project that `portd ls` shows by that name; a
/// directory project is named by its directory, or by a shown name that
/// includes a path (`x/web`). A plain name that only directory projects
/// answer to is an unknown project, with a hint naming their directories.
pub fn project_to_change(reg: &Registry, name: &str, verb: &str) -> Result<Project, Error> {
    if is_path(name) {
        return known_project(reg, name);
    }
    let m = reg.matches(name)?;
    if let Some(p) = m.named {
        return Ok(p);
    }
    let keys: Vec<String> = m.directories.iter().map(|p| format!("`{}`", p.key())).collect();
    let hint = match m.directories.as_slice() {
        [] => return project_of(name),
        [one] => format!(
            "`{name}` is not a named project; to {verb} the directory project shown as `{name}`, name its directory: `portd {verb} {}`",
            one.key()
        ),
        _ => format!(
            "`{name}` is not a named project; to {verb} a directory project of that name, name its directory: {}",
            keys.join(", ")
        ),
    };
    Err(Error::new(ErrorKind::UnknownProject, format!("unknown project `{name}`")).with_hint(hint))
}

/// The notes on stderr about what an allocation did besides answering:
/// idle entries it dropped past `idle_ttl` or evicted to make room, and a
/// move of the project's port. Returns whether the project moved.
pub fn allocation_notes(ctx: &crate::Ctx, project: &Project, a: &portd_store::Allocation) -> bool {
    let idle = |e: &portd_store::Entry| {
        format!("`{}` (port {}, idle since {}", e.display_name(), e.port, rfc3339(e.last_used_ms))
    };
    for e in &a.expired {
        ctx.out.info(&format!("dropped {}, past `idle_ttl`)", idle(e)));
    }
    for e in &a.evicted {
        ctx.out.info(&format!("evicted {}) to make room: it was the least recently used", idle(e)));
    }
    if let Some(from) = a.moved_from {
        ctx.out.info(&moved(project, from, a.entry.port, a.moved_because.as_ref()));
    }
    a.moved_from.is_some()
}

/// The note printed when a project's port changed, saying why.
pub fn moved(project: &Project, from: u16, to: u16, why: Option<&MoveReason>) -> String {
    let why = why.map(|w| format!(" ({w})")).unwrap_or_default();
    format!("moved `{}` from port {from} to {to}{why}", project.display())
}

/// A usage error.
pub fn usage(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Usage, msg)
}

pub use portd_serve::json::rfc3339;

/// A short "how long ago" for tables.
pub fn ago(ms: u64) -> String {
    let s = portd_store::age(ms).as_secs();
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..86400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86400),
    }
}
