//! `portd stop`: stop managed servers.

use crate::Ctx;
use portd_serve::client;
use portd_store::Error;

pub fn stop(ctx: &Ctx, names: &[String], all: bool) -> Result<(), Error> {
    let reg = ctx.registry()?;
    let projects = super::start::named(&reg, names, all)?;
    for p in &projects {
        if client::stop(&reg, p)? {
            ctx.out.info(&format!("stopped `{}`", p.display()));
        } else if !all {
            ctx.out.info(&format!("`{}` is not running", p.display()));
        }
    }
    Ok(())
}
