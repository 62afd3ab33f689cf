//! `portd ls` and `portd show` (the JSON shape of an entry is
//! [`portd_serve::json`], shared with the dashboard).

use super::{ago, rfc3339};
use crate::Ctx;
use crate::args::ProjectArg;
use crate::printer::{self, table};
use portd_serve::json::{EntryJson, ServerJson, servers};
use portd_store::{Error, Listed, State};

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
                ..EntryJson::listed(l, s)
            })
            .collect();
        rows.extend(history.iter().zip(shown_history).map(|((k, p), s)| EntryJson {
            project: s.clone(),
            key: k.clone(),
            port: *p,
            range: range_of(*p),
            state: Some("released".into()),
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
            EntryJson { server: server.take(), ..EntryJson::listed(&l, l.entry.display_name()) };
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
