//! `portd release`: free projects' ports (all named ones, or none).

use crate::Ctx;
use portd_store::{Error, Project};
use serde::Serialize;

#[derive(Serialize)]
struct Released {
    project: String,
    key: String,
    port: u16,
}

pub fn release(ctx: &Ctx, names: &[String], idle: bool, force: bool) -> Result<(), Error> {
    let reg = ctx.registry()?;
    let gone = if idle {
        reg.release_idle()?
    } else {
        let projects = names
            .iter()
            .map(|n| super::project_to_change(&reg, n, "release"))
            .collect::<Result<Vec<Project>, _>>()?;
        reg.release_many(&projects, force)?
    };
    if ctx.out.json {
        let v: Vec<Released> = gone
            .iter()
            .map(|e| Released {
                project: e.display_name().to_owned(),
                key: e.project.clone(),
                port: e.port,
            })
            .collect();
        ctx.out.json(&serde_json::json!({ "released": v }));
    } else if gone.is_empty() {
        ctx.out.info("nothing to release");
    } else {
        for e in &gone {
            // A directory project by its path: its base name may be
            // another project's name, or another directory's.
            let shown = if e.is_dir() { &e.project } else { e.display_name() };
            ctx.out.info(&format!("released `{shown}` (port {})", e.port));
        }
    }
    Ok(())
}
