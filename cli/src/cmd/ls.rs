//! `portd ls` and `portd show`, and the JSON shape of an entry.

use super::{ago, rfc3339};
use crate::Ctx;
use crate::args::ProjectArg;
use crate::printer::{self, table};
use portd_store::{Entry, Error, Listed};
use serde::Serialize;

/// One entry in `--json` output (`get`, `ls`, `show`).
#[derive(Debug, Serialize)]
pub struct EntryJson {
    /// Shown name: the name, or a directory's base name.
    pub project: String,
    /// The registry key: the name, or the directory's absolute path.
    pub key: String,
    pub port: u16,
    pub range: String,
    /// `active`, `idle`, `unknown`, or `released` (`ls --all` history rows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<&'static str>,
    /// The owner's pid, when the entry has an owner.
    pub pid: Option<u32>,
    /// The child started by `portd run`, when there is one.
    pub child_pid: Option<u32>,
    pub command: Option<Vec<String>>,
    /// RFC 3339 UTC.
    pub created: Option<String>,
    /// RFC 3339 UTC.
    pub last_used: Option<String>,
}

impl EntryJson {
    pub fn new(e: &Entry, state: Option<&'static str>) -> Self {
        EntryJson {
            project: e.display_name().to_owned(),
            key: e.project.clone(),
            port: e.port,
            range: e.range.clone(),
            state,
            pid: e.owner.map(|o| o.pid),
            child_pid: e.child_pid,
            command: e.command.clone(),
            created: Some(rfc3339(e.created_ms)),
            last_used: Some(rfc3339(e.last_used_ms)),
        }
    }

    fn of(l: &Listed) -> Self {
        Self::new(&l.entry, Some(l.state.as_str()))
    }
}

fn row(l: &Listed) -> Vec<String> {
    let e = &l.entry;
    vec![
        e.display_name().to_owned(),
        e.port.to_string(),
        e.range.clone(),
        l.state.as_str().to_owned(),
        e.owner.map_or("-".into(), |o| o.pid.to_string()),
        e.command.as_ref().map_or("-".into(), |c| truncate(&printer::command_line(c), 40)),
        ago(e.last_used_ms),
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
    let history = if all { reg.history()? } else { Vec::new() };
    if ctx.out.json {
        let mut rows: Vec<EntryJson> = list.iter().map(EntryJson::of).collect();
        rows.extend(history.iter().map(|(k, p)| EntryJson {
            project: portd_store::display_name(k).to_owned(),
            key: k.clone(),
            port: *p,
            range: reg.config().ranges.containing(*p).map_or("-".into(), |r| r.name.clone()),
            state: Some("released"),
            pid: None,
            child_pid: None,
            command: None,
            created: None,
            last_used: None,
        }));
        ctx.out.json(&rows);
        return Ok(());
    }
    if list.is_empty() && history.is_empty() {
        ctx.out.info("no projects yet: `portd get NAME` allocates one");
        return Ok(());
    }
    let mut rows: Vec<Vec<String>> = list.iter().map(row).collect();
    for (k, p) in &history {
        let name = portd_store::display_name(k).to_owned();
        rows.push(vec![
            name,
            p.to_string(),
            "-".into(),
            "released".into(),
            "-".into(),
            "-".into(),
            "-".into(),
        ]);
    }
    ctx.out
        .data(&table(&["PROJECT", "PORT", "RANGE", "STATE", "PID", "COMMAND", "LAST USED"], &rows));
    Ok(())
}

pub fn show(ctx: &Ctx, project: &ProjectArg) -> Result<(), Error> {
    let p = super::project(project)?;
    let l = ctx.registry()?.show(&p)?;
    if ctx.out.json {
        ctx.out.json(&EntryJson::of(&l));
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
    kv("pid", e.owner.map_or("-".into(), |o| o.pid.to_string()));
    if let Some(c) = e.child_pid {
        kv("child", c.to_string());
    }
    kv("command", e.command.as_ref().map_or("-".into(), |c| printer::command_line(c)));
    kv("created", rfc3339(e.created_ms));
    kv("last used", format!("{} ({})", rfc3339(e.last_used_ms), ago(e.last_used_ms)));
    ctx.out.data(&s);
    Ok(())
}
