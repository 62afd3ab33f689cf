//! `portd check PORT…`: everything portd knows about a port.

use crate::{Ctx, printer};
use portd_core::{ProbeOptions, Verdict, probe, sys};
use portd_store::Error;
use serde::Serialize;

#[derive(Serialize)]
struct HolderJson {
    pid: u32,
    name: String,
    command: Option<Vec<String>>,
    /// Whether this process is the owner (or its child) of the project holding the port.
    is_owner: bool,
}

#[derive(Serialize)]
struct CheckJson {
    port: u16,
    /// Could a server bind it right now?
    bindable: bool,
    /// Could portd hand it to a new project right now?
    free: bool,
    range: Option<String>,
    excluded: Option<String>,
    project: Option<String>,
    state: Option<&'static str>,
    owner_pid: Option<u32>,
    bound_by: Vec<HolderJson>,
    in_ephemeral_range: bool,
}

pub fn check(ctx: &Ctx, ports: &[u16], udp: bool) -> Result<(), Error> {
    let reg = ctx.registry()?;
    let eph = sys::ephemeral_range();
    let mut out = Vec::new();
    for &port in ports {
        let held = reg.holder(port)?;
        let verdict = probe(port, ProbeOptions { udp, reuse: true });
        let excluded = reg.exclusions().reason(port).map(|r| r.to_string());
        let owner_pids: Vec<u32> = held
            .as_ref()
            .map(|l| l.entry.owner.map(|o| o.pid).into_iter().chain(l.entry.child_pid).collect())
            .unwrap_or_default();
        let bound_by = if verdict == Verdict::Busy {
            sys::holders(port, udp)
                .into_iter()
                .map(|h| HolderJson {
                    is_owner: owner_pids.contains(&h.pid),
                    pid: h.pid,
                    name: h.name,
                    command: h.cmdline,
                })
                .collect()
        } else {
            Vec::new()
        };
        let range = reg.config().ranges.containing(port).map(|r| r.name.clone());
        out.push(CheckJson {
            port,
            bindable: verdict == Verdict::Free,
            free: verdict == Verdict::Free
                && held.is_none()
                && excluded.is_none()
                && range.is_some(),
            range,
            excluded,
            project: held.as_ref().map(|l| l.entry.display_name().to_owned()),
            state: held.as_ref().map(|l| l.state.as_str()),
            owner_pid: held.as_ref().and_then(|l| l.entry.owner.map(|o| o.pid)),
            bound_by,
            in_ephemeral_range: eph.is_some_and(|(a, b)| (a..=b).contains(&port)),
        });
    }
    if ctx.out.json {
        ctx.out.json(&out);
        return Ok(());
    }
    let mut s = String::new();
    for c in &out {
        let summary = if c.free {
            "free"
        } else if c.excluded.is_some() {
            "excluded"
        } else if c.project.is_some() {
            "held"
        } else if !c.bindable {
            "bound"
        } else {
            "outside every range"
        };
        s.push_str(&format!("port {}: {summary}\n", c.port));
        s.push_str(&format!("  range      {}\n", c.range.as_deref().unwrap_or("none")));
        if let Some(x) = &c.excluded {
            s.push_str(&format!("  excluded   {x}\n"));
        }
        if let Some(p) = &c.project {
            let pid = c.owner_pid.map_or(String::new(), |p| format!(", pid {p}"));
            s.push_str(&format!("  project    `{p}` ({}{pid})\n", c.state.unwrap_or("-")));
        }
        if c.bindable {
            s.push_str("  bound      no\n");
        } else if c.bound_by.is_empty() {
            s.push_str("  bound      yes, by a process portd cannot see (another user's?)\n");
        }
        for h in &c.bound_by {
            let cmd = h
                .command
                .as_ref()
                .map_or(String::new(), |c| format!(": {}", printer::command_line(c)));
            let who = if h.is_owner {
                " (the project's owner)"
            } else if c.project.is_some() {
                " (NOT the project's owner)"
            } else {
                ""
            };
            s.push_str(&format!("  bound      by pid {} ({}){who}{cmd}\n", h.pid, h.name));
        }
        if c.in_ephemeral_range {
            s.push_str("  note       inside the kernel's ephemeral range: outgoing connections may take it\n");
        }
    }
    ctx.out.data(&s);
    Ok(())
}
