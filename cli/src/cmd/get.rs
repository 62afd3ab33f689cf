//! `portd get` and `portd env`: a project's port, allocated on first use.

use crate::Ctx;
use crate::args::GetArgs;
use portd_serve::json::EntryJson;
use portd_store::{Allocation, Entry, Error, GetOptions, Owner, Project};
use serde::Serialize;

#[derive(Serialize)]
struct GetJson {
    #[serde(flatten)]
    entry: EntryJson,
    /// The project got its entry by this call (false: it had one, kept or moved).
    fresh: bool,
    /// The previous port, when this call moved the project.
    moved_from: Option<u16>,
    /// Idle entries evicted, least recently used first, to make room.
    evicted: Vec<Dropped>,
    /// Idle entries dropped for exceeding `idle_ttl` by this call.
    expired: Vec<Dropped>,
}

/// An entry that an allocation removed.
#[derive(Serialize)]
struct Dropped {
    project: String,
    key: String,
    port: u16,
}

impl Dropped {
    fn of(e: &Entry) -> Self {
        Dropped { project: e.display_name().to_owned(), key: e.project.clone(), port: e.port }
    }
}

/// Resolves and allocates. With `--free`/`--move` the port must be
/// bindable now (checked inside the transaction); otherwise a port bound by
/// a process that is not the project's owner is a warning.
fn allocate(ctx: &Ctx, a: &GetArgs) -> Result<(Project, Allocation), Error> {
    let reg = ctx.registry()?;
    let project = super::project_in(&reg, &a.project)?;
    let owner = match a.pid {
        Some(pid) => Some(Owner::of_pid(pid).map_err(|_| {
            super::usage(format!("no running process with pid {pid}"))
                .with_hint("pass the pid of a process that is running now")
        })?),
        None => None,
    };
    let opts = GetOptions {
        range: a.range.clone(),
        port: a.port,
        udp: a.udp,
        owner,
        require_free: a.free || a.move_port,
        move_port: a.move_port,
        ..Default::default()
    };
    let alloc = reg.get_with(&project, &opts)?;
    let moved = super::allocation_notes(ctx, &project, &alloc);
    if !moved && let Some(why) = reg.exclusions().reason(alloc.entry.port) {
        // Kept only because its server runs: it moves once that stops.
        ctx.out.warn(&format!(
            "port {} of `{}` is excluded ({why}); it keeps it while its server runs, and moves on the next `get` after that",
            alloc.entry.port,
            project.display()
        ));
    } else if !moved
        && !alloc.fresh
        && !opts.require_free
        && let Some(err) = reg.foreign_binding(&project, &alloc.entry, a.udp)
    {
        ctx.out.warn(&format!("{}, not by `{}`'s owner", err.message(), project.display()));
    }
    Ok((project, alloc))
}

pub fn get(ctx: &Ctx, a: &GetArgs) -> Result<(), Error> {
    let (_, alloc) = allocate(ctx, a)?;
    if ctx.out.json {
        ctx.out.json(&GetJson {
            entry: EntryJson::new(&alloc.entry, None),
            fresh: alloc.fresh,
            moved_from: alloc.moved_from,
            evicted: alloc.evicted.iter().map(Dropped::of).collect(),
            expired: alloc.expired.iter().map(Dropped::of).collect(),
        });
    } else {
        ctx.out.data(&alloc.entry.port.to_string());
    }
    Ok(())
}

/// What `portd env` prints on stdout when it fails (its error goes to
/// stderr as always): a command that fails, so that
/// `eval "$(portd env x)" && npm start` does not start npm with an empty or
/// stale `PORT`.
pub const ENV_FAILED: &str = "false";

pub fn env(ctx: &Ctx, a: &GetArgs) -> Result<(), Error> {
    let (project, alloc) = allocate(ctx, a)?;
    let port = alloc.entry.port;
    let name = project.display();
    if ctx.out.json {
        let v = serde_json::json!({
            "PORT": port.to_string(),
            "PORTD_PORT": port.to_string(),
            "PORTD_PROJECT": name,
            "PORTD_PROJECT_KEY": project.key(),
        });
        ctx.out.json(&v);
    } else {
        ctx.out.data(&format!(
            "export PORT={port}\nexport PORTD_PORT={port}\nexport PORTD_PROJECT={}\nexport PORTD_PROJECT_KEY={}",
            shell_quote(name),
            shell_quote(project.key())
        ));
    }
    Ok(())
}

/// Single-quotes `s` for POSIX shells when it needs it.
fn shell_quote(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "._:-/".contains(c)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoting() {
        assert_eq!(super::shell_quote("myapp:api"), "myapp:api");
        assert_eq!(super::shell_quote("my app"), "'my app'");
        assert_eq!(super::shell_quote("it's"), "'it'\\''s'");
    }
}
