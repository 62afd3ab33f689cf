//! `portd start` and `portd restart`: get-or-start managed servers and
//! print their ports.

use crate::Ctx;
use portd_serve::client::{self, Outcome};
use portd_serve::logs;
use portd_serve::serve::log_path;
use portd_store::{Error, ErrorKind, Project, Registry};

/// The projects named, or every defined one with `all`.
pub fn named(reg: &Registry, names: &[String], all: bool) -> Result<Vec<Project>, Error> {
    if all {
        return reg.defined(None)?.iter().map(|d| Project::name(&d.key)).collect();
    }
    let projects = names.iter().map(|n| Project::name(n)).collect::<Result<Vec<_>, _>>()?;
    for p in &projects {
        if reg.definition(p)?.is_none() {
            return Err(client::not_defined(p));
        }
    }
    Ok(projects)
}

/// The running `portd` binary (it starts supervisors and is their command).
pub(crate) fn exe() -> Result<std::path::PathBuf, Error> {
    std::env::current_exe()
        .map_err(|e| Error::new(ErrorKind::Other, format!("cannot find the portd binary: {e}")))
}

pub fn start(ctx: &Ctx, names: &[String], all: bool, move_port: bool) -> Result<u8, Error> {
    let reg = ctx.registry()?;
    let projects = named(&reg, names, all)?;
    let exe = exe()?;
    // Defined projects they refer to start first (once each).
    let mut started = std::collections::HashSet::new();
    for p in &projects {
        let order = portd_serve::refs::order(p.key(), |k| referred(&reg, k)).map_err(|cycle| {
            super::usage(format!("reference cycle: {}", cycle.join(" → "))).with_hint(
                "a server cannot refer (`{port:NAME}`, `{url:NAME}`) to one that refers back to it",
            )
        })?;
        for dep in order.iter().filter(|k| *k != p.key()) {
            if !started.insert(dep.clone()) {
                continue;
            }
            let dp = Project::name(dep)?;
            let running = reg
                .defined(Some(dp.key()))?
                .pop()
                .and_then(|d| d.state)
                .is_some_and(|s| s.live_supervisor().is_some());
            if !running {
                ctx.out
                    .info(&format!("portd: starting `{dep}` first ({} refers to it)", p.display()));
            }
            if let Outcome::Failed { code, message, hint } = client::start(&reg, &exe, &dp, false)?
            {
                failed(reg.dir(), &dp, code, &message, &hint);
                return Ok(code);
            }
        }
    }
    each(ctx, &reg, &projects, |p| {
        let mut notes = Vec::new();
        let out = client::start_noting(&reg, &exe, p, move_port, &mut notes);
        for n in &notes {
            ctx.out.info(n);
        }
        out
    })
}

/// The defined projects `key`'s command and environment refer to.
fn referred(reg: &Registry, key: &str) -> Vec<String> {
    let Ok(Some(d)) = Project::name(key).and_then(|p| reg.definition(&p)) else {
        return Vec::new();
    };
    let texts = d.argv.iter().chain(d.env.iter().map(|(_, v)| v));
    let mut out: Vec<String> = Vec::new();
    for t in texts {
        for n in portd_serve::refs::names(t) {
            let defined =
                Project::name(&n).and_then(|p| reg.definition(&p)).is_ok_and(|d| d.is_some());
            if defined && !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out
}

pub fn restart(ctx: &Ctx, names: &[String]) -> Result<u8, Error> {
    let reg = ctx.registry()?;
    let projects = named(&reg, names, false)?;
    let exe = exe()?;
    each(ctx, &reg, &projects, |p| client::restart(&reg, &exe, p))
}

/// A failed start on stderr: the error line; for a server that started
/// but failed (exit 10), the last lines of its log, indented `  | `; the
/// hint.
fn failed(dir: &std::path::Path, p: &Project, code: u8, message: &str, hint: &str) {
    use std::io::Write;
    let tail = if code == portd_serve::serve::SERVER_FAILED {
        logs::tail(&log_path(dir, p.key()), 10).unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "error: {message}");
    for l in &tail {
        let _ = writeln!(err, "  | {l}");
    }
    if !hint.is_empty() {
        let _ = writeln!(err, "hint: {hint}");
    }
}

/// Runs `f` for each project in order, printing each port; the exit code
/// is the first failure's.
fn each(
    ctx: &Ctx,
    reg: &Registry,
    projects: &[Project],
    mut f: impl FnMut(&Project) -> Result<Outcome, Error>,
) -> Result<u8, Error> {
    let mut code = 0;
    let mut json = Vec::new();
    for p in projects {
        match f(p)? {
            Outcome::Ready(port) | Outcome::Sleeping(port) if ctx.out.json => {
                json.push(serde_json::json!({"project": p.display(), "port": port}));
            }
            Outcome::Ready(port) => ctx.out.data(&port.to_string()),
            Outcome::Sleeping(port) => {
                ctx.out.detail(&format!(
                    "`{}` sleeps on port {port} until its first connection",
                    p.display()
                ));
                ctx.out.data(&port.to_string());
            }
            Outcome::Failed { code: c, message, hint } => {
                failed(reg.dir(), p, c, &message, &hint);
                if code == 0 {
                    code = c;
                }
            }
        }
    }
    if ctx.out.json {
        ctx.out.json(&json);
    }
    Ok(code)
}
