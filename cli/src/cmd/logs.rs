//! `portd logs`: a managed server's log.

use crate::Ctx;
use portd_serve::logs;
use portd_serve::serve::log_path;
use portd_store::{Error, ErrorKind, Project};

pub fn logs(ctx: &Ctx, name: &str, follow: bool, lines: usize) -> Result<(), Error> {
    if ctx.out.json && follow {
        return Err(super::usage(
            "`logs -f` prints the log as it comes, so `--json` does not apply",
        )
        .with_hint("drop `--json`, or `-f` for the last lines as JSON"));
    }
    let project = Project::name(name)?;
    let reg = ctx.registry()?;
    if reg.definition(&project)?.is_none() {
        return Err(portd_serve::client::not_defined(&project));
    }
    let path = log_path(reg.dir(), project.key());
    if follow {
        let mut out = std::io::stdout();
        return logs::follow(&path, lines, &mut out, || false).map_err(|e| {
            Error::new(ErrorKind::Other, format!("cannot read `{}`: {e}", path.display()))
        });
    }
    match logs::tail(&path, lines) {
        Ok(l) if ctx.out.json => {
            ctx.out.json(&serde_json::json!({"project": project.display(), "lines": l}));
            Ok(())
        }
        Ok(l) => {
            for line in l {
                ctx.out.data(&line);
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && ctx.out.json => {
            ctx.out.json(&serde_json::json!({"project": project.display(), "lines": []}));
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            ctx.out
                .info(&format!("`{}` has no log yet: it has not been started", project.display()));
            Ok(())
        }
        Err(e) => {
            Err(Error::new(ErrorKind::Other, format!("cannot read `{}`: {e}", path.display())))
        }
    }
}
