//! `portd check PORT…`: everything portd knows about a port. The library
//! decides ([`portd_store::Registry::explain`]: the probes allocation makes,
//! the ownership rule `get` and `doctor` use); this module prints it.

use crate::{Ctx, printer};
use portd_core::sys;
use portd_store::{Error, PortReport};
use serde::Serialize;

#[derive(Serialize)]
struct HolderJson {
    pid: u32,
    name: String,
    command: Option<Vec<String>>,
    /// Whether this process is the project's own: its owner, the lease's
    /// child, a descendant or group member of either, or the server started
    /// with its port (which `get` adopts).
    is_owner: bool,
    /// False for a TCP socket bound but not listening.
    listening: bool,
}

#[derive(Serialize)]
struct CheckJson {
    port: u16,
    /// Could a server bind it right now (with `SO_REUSEADDR`)?
    bindable: bool,
    /// Could portd hand it to a new project right now?
    free: bool,
    /// This user may not bind it (`EACCES`, e.g. below 1024).
    denied: bool,
    /// Connections in TIME_WAIT keep it from a server binding without `SO_REUSEADDR`.
    time_wait: bool,
    range: Option<String>,
    excluded: Option<String>,
    project: Option<String>,
    state: Option<&'static str>,
    owner_pid: Option<u32>,
    bound_by: Vec<HolderJson>,
    in_ephemeral_range: bool,
}

impl CheckJson {
    fn new(r: PortReport, eph: Option<(u16, u16)>) -> CheckJson {
        CheckJson {
            port: r.port,
            bindable: r.bindable,
            free: r.free,
            denied: r.denied,
            time_wait: r.time_wait,
            range: r.range,
            excluded: r.excluded,
            project: r.held.as_ref().map(|l| l.entry.display_name().to_owned()),
            state: r.held.as_ref().map(|l| l.state.as_str()),
            owner_pid: r.held.as_ref().and_then(|l| l.entry.owner.map(|o| o.pid)),
            bound_by: r
                .binders
                .into_iter()
                .map(|b| HolderJson {
                    pid: b.holder.pid,
                    name: b.holder.name,
                    command: b.holder.cmdline,
                    is_owner: b.own,
                    listening: b.holder.listening,
                })
                .collect(),
            in_ephemeral_range: eph.is_some_and(|(a, b)| (a..=b).contains(&r.port)),
        }
    }

    /// One word (or phrase) for the first line.
    fn summary(&self) -> &'static str {
        if self.free {
            "free"
        } else if self.excluded.is_some() {
            "excluded"
        } else if self.project.is_some() {
            "held"
        } else if self.denied {
            "cannot be bound by this user"
        } else if !self.bindable || !self.bound_by.is_empty() {
            "bound"
        } else if self.range.is_none() {
            "outside every range"
        } else {
            "busy"
        }
    }
}

pub fn check(ctx: &Ctx, ports: &[u16], udp: bool) -> Result<(), Error> {
    let reg = ctx.registry()?;
    let eph = sys::ephemeral_range();
    let mut out = Vec::new();
    for &port in ports {
        out.push(CheckJson::new(reg.explain(port, udp)?, eph));
    }
    if ctx.out.json {
        ctx.out.json(&out);
        return Ok(());
    }
    let mut s = String::new();
    for c in &out {
        s.push_str(&format!("port {}: {}\n", c.port, c.summary()));
        s.push_str(&format!("  range      {}\n", c.range.as_deref().unwrap_or("none")));
        if let Some(x) = &c.excluded {
            s.push_str(&format!("  excluded   {x}\n"));
        }
        if let Some(p) = &c.project {
            let pid = c.owner_pid.map_or(String::new(), |p| format!(", pid {p}"));
            s.push_str(&format!("  project    `{p}` ({}{pid})\n", c.state.unwrap_or("-")));
        }
        if c.denied {
            let why = if c.port < 1024 {
                "ports below 1024 need root or CAP_NET_BIND_SERVICE"
            } else {
                "the system refuses this user the port"
            };
            s.push_str(&format!("  bind       denied: {why}\n"));
        } else if c.bound_by.is_empty() {
            if c.time_wait {
                s.push_str("  bound      no; connections in TIME_WAIT keep it from a new server\n");
            } else if c.bindable {
                s.push_str("  bound      no\n");
            } else {
                s.push_str("  bound      yes, by a process portd cannot see (another user's?)\n");
            }
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
            let how = if h.listening { "" } else { "not listening, " };
            s.push_str(&format!("  bound      {how}by pid {} ({}){who}{cmd}\n", h.pid, h.name));
        }
        if c.in_ephemeral_range {
            s.push_str("  note       inside the kernel's ephemeral range: outgoing connections may take it\n");
        }
    }
    ctx.out.data(&s);
    Ok(())
}
