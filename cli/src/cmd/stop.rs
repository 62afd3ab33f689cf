//! `portd stop`: stop managed servers.

use crate::Ctx;
use portd_serve::client;
use portd_store::Error;

pub fn stop(ctx: &Ctx, names: &[String], all: bool) -> Result<(), Error> {
    let reg = ctx.registry()?;
    let projects = super::start::named(&reg, names, all)?;
    let (mut stopped, mut idle) = (Vec::new(), Vec::new());
    for p in &projects {
        // With `--json`, what happened is said on stdout only.
        let say = |m: String| {
            if !ctx.out.json {
                ctx.out.info(&m)
            }
        };
        if client::stop(&reg, p)? {
            say(format!("stopped `{}`", p.display()));
            stopped.push(p.display().to_owned());
        } else {
            if !all {
                say(format!("`{}` is not running", p.display()));
            }
            idle.push(p.display().to_owned());
        }
    }
    if ctx.out.json {
        ctx.out.json(&serde_json::json!({"stopped": stopped, "not_running": idle}));
    }
    Ok(())
}
