//! `portd url` and `portd open`: a project's local URL.

use crate::Ctx;
use portd_serve::client::{self, Outcome};
use portd_store::{Error, Project};

fn url_of(port: u16) -> String {
    format!("http://localhost:{port}/")
}

/// Prints the URL of a project that has a port (it starts nothing).
pub fn url(ctx: &Ctx, name: &str) -> Result<(), Error> {
    let project = Project::name(name)?;
    let reg = ctx.registry()?;
    let port = reg.show(&project)?.entry.port;
    if ctx.out.json {
        ctx.out.json(
            &serde_json::json!({"project": project.display(), "port": port, "url": url_of(port)}),
        );
    } else {
        ctx.out.data(&url_of(port));
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
