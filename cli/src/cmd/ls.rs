//! `portd ls` and `portd show`, and the JSON shape of an entry.

use super::{ago, rfc3339};
use crate::Ctx;
use crate::args::ProjectArg;
use crate::printer::{self, table};
use portd_store::{Entry, Error, Listed, State};
use serde::Serialize;

/// One entry in `--json` output (`get`, `ls`, `show`).
#[derive(Debug, Serialize)]
pub struct EntryJson {
    /// Shown name: the name, or a directory's base name (in `ls`, with as
    /// many parent directories as tell it apart from a project shown alike).
    pub project: String,
    /// The registry key: the name, or the directory's absolute path.
    pub key: String,
    pub port: u16,
    pub range: String,
    /// `active`, `idle`, `unknown`, or `released` (`ls --all` history rows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<&'static str>,
    /// The owner's pid, while the owner runs (`null` when idle: no owner,
    /// or a dead one).
    pub pid: Option<u32>,
    /// The command started by `portd run` (or a library spawn), while its
    /// owner runs.
    pub child_pid: Option<u32>,
    /// The process between the owner and the command (`portd run`'s
    /// supervisor): the command's parent, when it is not the owner itself.
    pub supervisor_pid: Option<u32>,
    pub command: Option<Vec<String>>,
    /// RFC 3339 UTC.
    pub created: Option<String>,
    /// RFC 3339 UTC.
    pub last_used: Option<String>,
    /// A defined server's state (`portd add`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerJson>,
}

/// A managed server in `--json` output (`ls`, `show`).
#[derive(Debug, Serialize)]
pub struct ServerJson {
    /// `starting`, `running`, `unhealthy`, `sleeping`, `stopped`, `crash-looping`.
    pub state: &'static str,
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
#[derive(Debug, Serialize)]
pub struct EventJson {
    /// RFC 3339 UTC.
    pub at: String,
    /// `started`, `ready`, `stopped`, `crashed`, `restarted`, …
    pub kind: &'static str,
    /// In words.
    pub text: String,
}

impl ServerJson {
    pub fn new(d: &portd_store::Defined, last: Option<&portd_store::events::Event>) -> ServerJson {
        use portd_store::server_state::Phase;
        let s = d.state.as_ref().map(|s| s.effective());
        let phase = s.as_ref().map_or(Phase::Stopped, |s| s.phase);
        let pid = s.as_ref().and_then(|s| s.command_pid);
        ServerJson {
            state: phase.as_str(),
            pid,
            supervisor_pid: s.as_ref().and_then(|s| s.live_supervisor()).map(|o| o.pid),
            started: s.as_ref().and_then(|s| s.started_ms).map(rfc3339),
            restarts: s.as_ref().map_or(0, |s| s.restarts),
            rss_bytes: pid.map(portd_core::sys::group_rss).or(s.as_ref().and_then(|s| s.last_rss)),
            last_exit: s.as_ref().and_then(|s| s.last_exit.clone()),
            reason: s.as_ref().and_then(|s| s.reason.clone()),
            last_event: last.map(|e| EventJson {
                at: rfc3339(e.at_ms),
                kind: e.kind.name(),
                text: e.to_string(),
            }),
        }
    }
}

/// The defined servers by key, with their last events.
pub fn servers(
    reg: &portd_store::Registry,
    with_events: bool,
) -> Result<std::collections::HashMap<String, ServerJson>, Error> {
    let defined = reg.defined(None)?;
    if defined.is_empty() {
        return Ok(Default::default());
    }
    // The last events only where they are shown (`--json`).
    let events = if with_events { reg.events_since(0)? } else { Vec::new() };
    let mut last = std::collections::HashMap::new();
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
            state,
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

    fn of(l: &Listed, shown: &str) -> Self {
        EntryJson { project: shown.to_owned(), ..Self::new(&l.entry, Some(l.state.as_str())) }
    }
}

fn row(l: &Listed, shown: &str, server: Option<&ServerJson>) -> Vec<String> {
    let e = &l.entry;
    let pid = e.owner.filter(|_| l.state != State::Idle);
    vec![
        shown.to_owned(),
        e.port.to_string(),
        e.range.clone(),
        l.state.as_str().to_owned(),
        pid.map_or("-".into(), |o| o.pid.to_string()),
        e.command.as_ref().map_or("-".into(), |c| truncate(&printer::command_line(c), 40)),
        ago(e.last_used_ms),
        server.map_or("-".into(), |s| s.state.to_owned()),
    ]
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

pub fn ls(ctx: &Ctx, all: bool) -> Result<(), Error> {
    let reg = ctx.registry()?;
    let list = reg.list()?;
    let mut servers = servers(&reg, ctx.out.json)?;
    let history = if all { reg.history()? } else { Vec::new() };
    let keys: Vec<&str> = list
        .iter()
        .map(|l| l.entry.project.as_str())
        .chain(history.iter().map(|(k, _)| k.as_str()))
        .collect();
    let shown = portd_store::shown_names(&keys);
    let (shown, shown_history) = shown.split_at(list.len());
    // A released project's range: the configured range holding its port.
    let range_of =
        |p: u16| reg.config().ranges.containing(p).map_or("-".to_owned(), |r| r.name.clone());
    if ctx.out.json {
        let mut rows: Vec<EntryJson> = list
            .iter()
            .zip(shown)
            .map(|(l, s)| EntryJson {
                server: servers.remove(&l.entry.project),
                ..EntryJson::of(l, s)
            })
            .collect();
        rows.extend(history.iter().zip(shown_history).map(|((k, p), s)| EntryJson {
            project: s.clone(),
            key: k.clone(),
            port: *p,
            range: range_of(*p),
            state: Some("released"),
            pid: None,
            child_pid: None,
            supervisor_pid: None,
            command: None,
            created: None,
            last_used: None,
            server: None,
        }));
        ctx.out.json(&rows);
        return Ok(());
    }
    if list.is_empty() && history.is_empty() {
        ctx.out.info("no projects yet: `portd get NAME` allocates one");
        return Ok(());
    }
    let mut rows: Vec<Vec<String>> =
        list.iter().zip(shown).map(|(l, s)| row(l, s, servers.get(&l.entry.project))).collect();
    for ((_, p), name) in history.iter().zip(shown_history) {
        rows.push(vec![
            name.clone(),
            p.to_string(),
            range_of(*p),
            "released".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
        ]);
    }
    ctx.out.data(&table(
        &["PROJECT", "PORT", "RANGE", "STATE", "PID", "COMMAND", "LAST USED", "SERVER"],
        &rows,
    ));
    Ok(())
}

pub fn show(ctx: &Ctx, project: &ProjectArg) -> Result<(), Error> {
    let reg = ctx.registry()?;
    let p = match (&project.name, &project.dir) {
        (Some(n), None) => super::known_project(&reg, n)?,
        _ => super::project(project)?,
    };
    let l = reg.show(&p)?;
    // One read of the project's definition, state and port.
    let defined = reg.defined(Some(p.key()))?.pop();
    let mut server = match &defined {
        Some(d) => {
            let events = reg.events_since(0)?;
            let last = events.iter().rev().find(|e| e.project == d.key);
            Some(ServerJson::new(d, last))
        }
        None => None,
    };
    let def = defined.map(|d| d.def);
    if ctx.out.json {
        let entry =
            EntryJson { server: server.take(), ..EntryJson::of(&l, l.entry.display_name()) };
        let mut v = serde_json::to_value(&entry).unwrap_or_default();
        if let (Some(d), Some(obj)) = (&def, v.as_object_mut()) {
            obj.insert("definition".into(), serde_json::to_value(d).unwrap_or_default());
        }
        ctx.out.json(&v);
        return Ok(());
    }
    let e = &l.entry;
    let mut s = String::new();
    let mut kv = |k: &str, v: String| s.push_str(&format!("{k:<10} {v}\n"));
    kv("project", e.display_name().to_owned());
    if e.is_dir() {
        kv("directory", e.project.clone());
    }
    kv("port", e.port.to_string());
    kv("range", e.range.clone());
    kv("state", l.state.as_str().to_owned());
    let live = l.state != State::Idle;
    kv("pid", e.owner.filter(|_| live).map_or("-".into(), |o| o.pid.to_string()));
    if let Some(c) = e.child_pid.filter(|_| live) {
        kv("child", c.to_string());
    }
    kv("command", e.command.as_ref().map_or("-".into(), |c| printer::command_line(c)));
    kv("created", rfc3339(e.created_ms));
    kv("last used", format!("{} ({})", rfc3339(e.last_used_ms), ago(e.last_used_ms)));
    if let Some(d) = &def {
        kv("server", server.as_ref().map_or("stopped".into(), |s| s.state.to_owned()));
        if let Some(sv) = &server {
            if let Some(r) = &sv.reason {
                kv("reason", r.clone());
            }
            if let Some(x) = &sv.last_exit {
                kv("last exit", x.clone());
            }
            if let Some(ev) = &sv.last_event {
                kv("last event", format!("{} ({})", ev.text, ev.at));
            }
        }
        kv("runs", portd_store::definition::shell_words(&d.argv));
        kv("in", d.dir.clone());
        for (k, v) in &d.env {
            kv("env", format!("{k}={v}"));
        }
        kv(
            "health",
            format!(
                "{} every {} ms, {} failures",
                d.health, d.health_interval_ms, d.health_failures
            ),
        );
        kv("restart", d.restart.to_string());
        if d.on_demand {
            kv(
                "on demand",
                d.idle_timeout().map_or("yes".into(), |t| {
                    format!("idle timeout {}", portd_store::format_duration(t))
                }),
            );
        }
    }
    ctx.out.data(&s);
    Ok(())
}
