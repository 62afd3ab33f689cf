//! `portd get` and `portd env`: a project's port, allocated on first use.

use super::ls::EntryJson;
use crate::Ctx;
use crate::args::GetArgs;
use portd_core::{ProbeOptions, Verdict, probe, sys};
use portd_store::{Allocation, Error, GetOptions, Owner, Project, Registry, busy_error};
use serde::Serialize;

#[derive(Serialize)]
struct GetJson {
    #[serde(flatten)]
    entry: EntryJson,
    /// Allocated by this call.
    fresh: bool,
    /// The previous port, when this call moved the project.
    moved_from: Option<u16>,
}

/// Resolves, allocates, and re-checks the port against the OS.
fn allocate(ctx: &Ctx, a: &GetArgs) -> Result<(Project, Allocation), Error> {
    let reg = ctx.registry()?;
    let project = super::project(&a.project)?;
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
        ..Default::default()
    };
    let alloc = reg.get_with(&project, &opts)?;
    let alloc = recheck(
        ctx,
        &reg,
        &project,
        &opts,
        alloc,
        a.free || a.move_port,
        a.move_port,
    )?;
    Ok((project, alloc))
}

/// Checks that the project's port is not bound by someone else (probing as
/// its own server would, so its own TIME_WAIT does not count). A foreign
/// holder is a warning, an error with `--free`, or a move with `--move`.
fn recheck(
    ctx: &Ctx,
    reg: &Registry,
    project: &Project,
    opts: &GetOptions,
    alloc: Allocation,
    strict: bool,
    move_port: bool,
) -> Result<Allocation, Error> {
    let port = alloc.entry.port;
    if alloc.fresh
        || probe(
            port,
            ProbeOptions {
                udp: opts.udp,
                reuse: true,
            },
        ) == Verdict::Free
    {
        return Ok(alloc);
    }
    let holders = sys::holders(port, opts.udp);
    let owner_pids: Vec<u32> = alloc
        .entry
        .owner
        .map(|o| o.pid)
        .into_iter()
        .chain(alloc.entry.child_pid)
        .collect();
    if !holders.is_empty() && holders.iter().all(|h| owner_pids.contains(&h.pid)) {
        return Ok(alloc);
    }
    if move_port {
        let moved = reg.get_with(
            project,
            &GetOptions {
                move_port: true,
                ..opts.clone()
            },
        )?;
        ctx.out.info(&format!(
            "moved `{}` from port {port} (bound by another process) to {}",
            project.display(),
            moved.entry.port
        ));
        return Ok(Allocation {
            moved_from: Some(port),
            ..moved
        });
    }
    let err = busy_error(port, opts.udp);
    if strict {
        return Err(err);
    }
    ctx.out.warn(&format!(
        "{} and not by `{}`'s owner",
        err.message(),
        project.display()
    ));
    Ok(alloc)
}

pub fn get(ctx: &Ctx, a: &GetArgs) -> Result<(), Error> {
    let (_, alloc) = allocate(ctx, a)?;
    if ctx.out.json {
        ctx.out.json(&GetJson {
            entry: EntryJson::new(&alloc.entry, None),
            fresh: alloc.fresh,
            moved_from: alloc.moved_from,
        });
    } else {
        ctx.out.data(&alloc.entry.port.to_string());
    }
    Ok(())
}

pub fn env(ctx: &Ctx, a: &GetArgs) -> Result<(), Error> {
    let (project, alloc) = allocate(ctx, a)?;
    let port = alloc.entry.port;
    let name = project.display();
    if ctx.out.json {
        let v = serde_json::json!({ "PORT": port.to_string(), "PORTD_PORT": port.to_string(), "PORTD_PROJECT": name });
        ctx.out.json(&v);
    } else {
        ctx.out.data(&format!(
            "export PORT={port}\nexport PORTD_PORT={port}\nexport PORTD_PROJECT={}",
            shell_quote(name)
        ));
    }
    Ok(())
}

/// Single-quotes `s` for POSIX shells when it needs it.
fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "._:-/".contains(c))
    {
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
