//! `portd url` and `portd open`: a project's local URL. While the proxy
//! of the registry runs, `portd url` gives the project's named URL through
//! it (`http://NAME.localhost:P/`), else the port's own.

use crate::Ctx;
use portd_serve::client::{self, Outcome};
use portd_serve::hosts;
use portd_store::{Error, Project, Registry};

fn url_of(port: u16) -> String {
    format!("http://localhost:{port}/")
}

/// The project's URL through the running proxy: `Ok(None)` when no proxy
/// runs; `Err(why)` when one runs but does not route the project (it has
/// no host name, or shares one).
fn proxy_url(ctx: &Ctx, reg: &Registry, project: &Project) -> Result<Option<String>, String> {
    let Some(info) = super::proxy::running(&ctx.home).and_then(|r| r.info) else {
        return Ok(None);
    };
    let entries = reg.list().map_err(|e| e.message().to_owned())?;
    let label_of = |key: &str| {
        entries
            .iter()
            .find(|l| l.entry.project == key)
            .and_then(|l| hosts::key_label(key, l.entry.is_dir()))
    };
    let Some(label) = label_of(project.key()) else {
        return Err(format!("`{}` makes no host name", project.display()));
    };
    if label == hosts::DASHBOARD_LABEL {
        return Err(format!("`{label}.localhost` is the dashboard's"));
    }
    let others: Vec<&str> = entries
        .iter()
        .map(|l| l.entry.project.as_str())
        .filter(|&k| k != project.key() && !k.ends_with(portd_store::RELAY_SUFFIX))
        .filter(|&k| label_of(k).as_deref() == Some(label.as_str()))
        .collect();
    if let Some(other) = others.first() {
        return Err(format!(
            "`{label}.localhost` is also the host name of `{}`, so the proxy routes neither",
            portd_store::display_name(other)
        ));
    }
    Ok(Some(portd_serve::hosts::proxy_url(&format!("{label}.localhost"), info.port)))
}

/// Prints the URL of a project that has a port (it starts nothing): the
/// proxy's named URL while the proxy runs, else the port's own. `--json`
/// gives both.
pub fn url(ctx: &Ctx, name: &str) -> Result<(), Error> {
    let project = Project::name(name)?;
    let reg = ctx.registry()?;
    let port = reg.show(&project)?.entry.port;
    let direct = url_of(port);
    let proxied = match proxy_url(ctx, &reg, &project) {
        Ok(u) => u,
        Err(why) => {
            ctx.out.warn(&format!("the proxy runs, but {why}: the port's own URL instead"));
            None
        }
    };
    if ctx.out.json {
        ctx.out.json(&serde_json::json!({
            "project": project.display(),
            "port": port,
            "url": proxied.clone().unwrap_or_else(|| direct.clone()),
            "direct_url": direct,
            "proxy_url": proxied,
        }));
    } else {
        ctx.out.data(proxied.as_ref().unwrap_or(&direct));
    }
    Ok(())
}

/// Starts a defined server if needed, then opens its URL with the
/// desktop's opener (`xdg-open`), or prints it where there is none.
pub fn open(ctx: &Ctx, name: &str) -> Result<u8, Error> {
    let project = Project::name(name)?;
    let reg = ctx.registry()?;
    let port = if reg.definition(&project)?.is_some() {
        let exe = super::start::exe()?;
        match client::start(&reg, &exe, &project, false)? {
            Outcome::Ready(p) | Outcome::Sleeping(p) => p,
            Outcome::Failed { code, message, hint } => {
                ctx.out.error(&message, (!hint.is_empty()).then_some(hint.as_str()));
                return Ok(code);
            }
        }
    } else {
        reg.show(&project)?.entry.port
    };
    let url = url_of(port);
    let opened = std::process::Command::new("xdg-open")
        .arg(&url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ctx.out.json {
        ctx.out.json(&serde_json::json!({"project": project.display(), "port": port, "url": url, "opened": opened}));
    } else if opened {
        ctx.out.info(&format!("opened {url}"));
    } else {
        ctx.out.info("no desktop opener (`xdg-open`) here; the URL:");
        ctx.out.data(&url);
    }
    Ok(0)
}
