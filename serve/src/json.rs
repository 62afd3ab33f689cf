//! The JSON shape of a registry entry and of a managed server, as `portd
//! ls --json`, `portd show --json` and `portd get --json` print it and the
//! dashboard's API serves it: one definition for every consumer.
//!
//! Only the shape and its construction from registry records live here;
//! reading the registry and printing are the callers' business.

use portd_store::{Defined, Entry, Error, Listed, Registry, State};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// One entry in `--json` output (`get`, `ls`, `show`) and in the
/// dashboard's `GET /api/projects`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntryJson {
    /// Shown name: the name, or a directory's base name (in `ls`, with as
    /// many parent directories as tell it apart from a project shown alike).
    pub project: String,
    /// The registry key: the name, or the directory's absolute path.
    pub key: String,
    /// The project's port.
    pub port: u16,
    /// The name of the range the port is in.
    pub range: String,
    /// `active`, `idle`, `unknown`, or `released` (`ls --all` history rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The owner's pid, while the owner runs (`null` when idle: no owner,
    /// or a dead one).
    pub pid: Option<u32>,
    /// The command started by `portd run` (or a library spawn), while its
    /// owner runs.
    pub child_pid: Option<u32>,
    /// The process between the owner and the command (`portd run`'s
    /// supervisor): the command's parent, when it is not the owner itself.
    pub supervisor_pid: Option<u32>,
    /// The owner's command line, when known.
    pub command: Option<Vec<String>>,
    /// RFC 3339 UTC.
    pub created: Option<String>,
    /// RFC 3339 UTC.
    pub last_used: Option<String>,
    /// A defined server's state (`portd add`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerJson>,
}

/// A managed server in `--json` output (`ls`, `show`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerJson {
    /// `starting`, `running`, `unhealthy`, `sleeping`, `stopped`, `crash-looping`.
    pub state: String,
    /// The server command's pid (its process group), while it runs.
    pub pid: Option<u32>,
    /// Its supervisor (`portd __serve`), while it lives.
    pub supervisor_pid: Option<u32>,
    /// When the command last started (RFC 3339 UTC).
    pub started: Option<String>,
    /// Restarts since the supervisor started.
    pub restarts: u32,
    /// Resident memory of the command's process group now (or when last
    /// measured, if it is not running).
    pub rss_bytes: Option<u64>,
    /// How it last ended.
    pub last_exit: Option<String>,
    /// Why it is stopped, unhealthy or crash-looping.
    pub reason: Option<String>,
    /// The last recorded event.
    pub last_event: Option<EventJson>,
}

/// One recorded event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventJson {
    /// RFC 3339 UTC.
    pub at: String,
    /// `started`, `ready`, `stopped`, `crashed`, `restarted`, …
    pub kind: String,
    /// In words.
    pub text: String,
}

impl ServerJson {
    /// A defined server's state now, with its last event.
    pub fn new(d: &Defined, last: Option<&portd_store::events::Event>) -> ServerJson {
        use portd_store::server_state::Phase;
        let s = d.state.as_ref().map(|s| s.effective());
        let phase = s.as_ref().map_or(Phase::Stopped, |s| s.phase);
        let pid = s.as_ref().and_then(|s| s.command_pid);
        ServerJson {
            state: phase.as_str().to_owned(),
            pid,
            supervisor_pid: s.as_ref().and_then(|s| s.live_supervisor()).map(|o| o.pid),
            started: s.as_ref().and_then(|s| s.started_ms).map(rfc3339),
            restarts: s.as_ref().map_or(0, |s| s.restarts),
            rss_bytes: pid.map(portd_core::sys::group_rss).or(s.as_ref().and_then(|s| s.last_rss)),
            last_exit: s.as_ref().and_then(|s| s.last_exit.clone()),
            reason: s.as_ref().and_then(|s| s.reason.clone()),
            last_event: last.map(|e| EventJson {
                at: rfc3339(e.at_ms),
                kind: e.kind.name().to_owned(),
                text: e.to_string(),
            }),
        }
    }
}

/// The defined servers by key, with their last events.
pub fn servers(reg: &Registry, with_events: bool) -> Result<HashMap<String, ServerJson>, Error> {
    let defined = reg.defined(None)?;
    if defined.is_empty() {
        return Ok(Default::default());
    }
    // The last events only where they are shown (`--json`, the dashboard).
    let events = if with_events { reg.events_since(0)? } else { Vec::new() };
    let mut last = HashMap::new();
    for e in &events {
        last.insert(e.project.as_str(), e);
    }
    Ok(defined
        .iter()
        .map(|d| (d.key.clone(), ServerJson::new(d, last.get(d.key.as_str()).copied())))
        .collect())
}

impl EntryJson {
    /// `state`: as listed; `None` (for `get`) checks the owner here.
    pub fn new(e: &Entry, state: Option<&'static str>) -> Self {
        let idle = match state {
            Some(s) => s == State::Idle.as_str(),
            None => State::of(e) == State::Idle,
        };
        EntryJson {
            project: e.display_name().to_owned(),
            key: e.project.clone(),
            port: e.port,
            range: e.range.clone(),
            state: state.map(str::to_owned),
            pid: e.owner.filter(|_| !idle).map(|o| o.pid),
            child_pid: e.child_pid.filter(|_| !idle),
            supervisor_pid: e
                .child_pid
                .filter(|_| !idle)
                .and_then(|c| portd_core::sys::proc_stat(c).ok())
                .map(|st| st.ppid)
                .filter(|&p| p > 1 && e.owner.is_some_and(|o| o.pid != p)),
            command: e.command.clone(),
            created: Some(rfc3339(e.created_ms)),
            last_used: Some(rfc3339(e.last_used_ms)),
            server: None,
        }
    }

    /// A listed entry, shown as `shown` (see [`portd_store::shown_names`]).
    pub fn listed(l: &Listed, shown: &str) -> Self {
        EntryJson { project: shown.to_owned(), ..Self::new(&l.entry, Some(l.state.as_str())) }
    }
}

/// Every entry as `portd ls --json` lists it (without history), each
/// defined server's state in its `server` object.
pub fn entries(reg: &Registry) -> Result<Vec<EntryJson>, Error> {
    let list = reg.list()?;
    let mut servers = servers(reg, true)?;
    let keys: Vec<&str> = list.iter().map(|l| l.entry.project.as_str()).collect();
    let shown = portd_store::shown_names(&keys);
    Ok(list
        .iter()
        .zip(&shown)
        .map(|(l, s)| EntryJson {
            server: servers.remove(&l.entry.project),
            ..EntryJson::listed(l, s)
        })
        .collect())
}

/// Milliseconds since the epoch as RFC 3339 UTC (no time crate needed).
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86400, secs % 86400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(1_764_028_800_123), "2025-11-25T00:00:00Z");
    }
}
