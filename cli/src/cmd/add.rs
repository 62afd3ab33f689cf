//! `portd add` and `portd rm`: a managed server's definition.

use crate::Ctx;
use crate::args::AddArgs;
use portd_serve::client;
use portd_serve::health::Check;
use portd_store::definition::{ServerDef, shell_words};
use portd_store::{Error, Project};
use serde::Serialize;

/// What `add --json` prints.
#[derive(Debug, Serialize)]
struct Added<'a> {
    project: &'a str,
    port: u16,
    created: bool,
    changes: Vec<String>,
}

pub fn add(ctx: &Ctx, a: &AddArgs) -> Result<(), Error> {
    let project = Project::name(&a.name)?;
    let check: Check = a.health.parse().map_err(|e: String| {
        super::usage(e).with_hint("e.g. `--health tcp`, `--health http:/health`, `--health cmd:'curl -f localhost:$PORT'`")
    })?;
    if let Some(h) = &a.host
        && h != "localhost"
        && h.parse::<std::net::IpAddr>().is_err()
    {
        return Err(super::usage(format!("`--host {h}` is not an IP address"))
            .with_hint("use e.g. `127.0.0.1`, `::1`, `0.0.0.0` (every interface) or `localhost`"));
    }
    let at_least = |flag: &str, d: std::time::Duration, min: std::time::Duration| {
        if d < min {
            Err(super::usage(format!(
                "`{flag} {}` is too short: at least {}",
                portd_store::format_duration(d),
                portd_store::format_duration(min)
            )))
        } else {
            Ok(())
        }
    };
    let ms = std::time::Duration::from_millis;
    if let Some(t) = a.idle_timeout {
        at_least("--idle-timeout", t, portd_serve::serve::MIN_IDLE)?;
    }
    at_least("--start-timeout", a.start_timeout, ms(100))?;
    at_least("--health-interval", a.health_interval, ms(100))?;
    let dir = match &a.dir {
        Some(d) => d.clone(),
        None => std::env::current_dir()
            .map_err(|e| super::usage(format!("cannot read the current directory: {e}")))?,
    };
    let dir = std::fs::canonicalize(&dir).ok().filter(|d| d.is_dir()).ok_or_else(|| {
        super::usage(format!("`{}` is not a directory", dir.display()))
            .with_hint("pass the server's directory with `--dir`")
    })?;
    let dir = dir
        .to_str()
        .ok_or_else(|| super::usage(format!("`{}` is not valid UTF-8", dir.display())))?
        .to_owned();
    let mut def = ServerDef::new(a.command.clone(), dir);
    def.env = a.env.clone();
    def.path = std::env::var("PATH").ok();
    def.health = check.to_string();
    def.health_interval_ms = a.health_interval.as_millis() as u64;
    def.health_failures = a.health_failures;
    def.restart = a.restart;
    def.on_demand = a.on_demand;
    def.idle_timeout_ms = a.idle_timeout.map(|d| d.as_millis() as u64);
    def.start_timeout_ms = a.start_timeout.as_millis() as u64;
    def.kill_grace_ms = a.kill_grace.as_millis() as u64;
    def.fd = a.fd;
    def.host = a.host.clone();
    def.inject = !a.no_inject;
    let reg = ctx.registry()?;
    let (old, port) = reg.define(&project, &def)?;
    let changes = old.as_ref().map(|o| def.changes_from(o)).unwrap_or_default();
    if ctx.out.json {
        ctx.out.json(&Added { project: project.display(), port, created: old.is_none(), changes });
        return Ok(());
    }
    match &old {
        None => ctx.out.info(&format!(
            "defined `{}` on port {port}: {}",
            project.display(),
            shell_words(&def.argv)
        )),
        Some(_) if changes.is_empty() => {
            ctx.out.info(&format!("`{}` is defined so already; nothing changed", project.display()))
        }
        Some(_) => {
            ctx.out.info(&format!("changed `{}`:", project.display()));
            for c in &changes {
                ctx.out.info(&format!("  {c}"));
            }
            let running = reg
                .defined(Some(project.key()))?
                .pop()
                .and_then(|d| d.state)
                .is_some_and(|s| s.live_supervisor().is_some());
            if running {
                let o = old.as_ref().expect("a changed definition had one");
                // How the port is held stays with the supervisor, and so
                // does the relay's hold time.
                let relayed = o.on_demand && !o.fd;
                let held = |d: &ServerDef| {
                    (d.on_demand, d.fd, d.host.clone(), relayed.then_some(d.start_timeout_ms))
                };
                let how = if held(o) != held(&def) {
                    format!("`portd stop {0} && portd start {0}` applies", project.display())
                } else {
                    format!("`portd restart {}` applies", project.display())
                };
                ctx.out.info(&format!("it is running as before: {how} the change"));
            }
        }
    }
    ctx.out.data(&port.to_string());
    Ok(())
}

pub fn rm(ctx: &Ctx, names: &[String]) -> Result<(), Error> {
    let projects = names.iter().map(|n| Project::name(n)).collect::<Result<Vec<_>, _>>()?;
    let reg = ctx.registry()?;
    for p in &projects {
        if reg.definition(p)?.is_none() {
            return Err(client::not_defined(p));
        }
    }
    let mut removed = Vec::new();
    for p in &projects {
        let stopped = client::stop(&reg, p)?;
        reg.undefine(p)?;
        // With `--json`, what happened is said on stdout only.
        if !ctx.out.json {
            if stopped {
                ctx.out.info(&format!("stopped `{}`", p.display()));
            }
            ctx.out
                .info(&format!("removed `{}` (its port is remembered for next time)", p.display()));
        }
        removed.push(serde_json::json!({"project": p.display(), "stopped": stopped}));
    }
    if ctx.out.json {
        ctx.out.json(&serde_json::json!({"removed": removed}));
    }
    Ok(())
}
