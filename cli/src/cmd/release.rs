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
            .map(|n| super::known_project(&reg, n))
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
            ctx.out.info(&format!("released `{}` (port {})", e.display_name(), e.port));
        }
    }
    Ok(())
}
