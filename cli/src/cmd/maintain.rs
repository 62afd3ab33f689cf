//! `portd cleanup`, `portd status` and `portd reset`.

use crate::Ctx;
use crate::printer::table;
use portd_store::Error;

pub fn cleanup(ctx: &Ctx) -> Result<(), Error> {
    let r = ctx.registry()?.cleanup()?;
    if ctx.out.json {
        ctx.out.json(&serde_json::json!({ "reclaimed": r.reclaimed, "expired": r.expired }));
    } else {
        ctx.out.info(&format!(
            "reclaimed {} lease{} of dead processes, dropped {} expired idle entr{}",
            r.reclaimed.len(),
            if r.reclaimed.len() == 1 { "" } else { "s" },
            r.expired.len(),
            if r.expired.len() == 1 { "y" } else { "ies" },
        ));
    }
    Ok(())
}

fn bar(used: usize, total: usize) -> String {
    const W: usize = 20;
    let filled = if total == 0 { 0 } else { (used * W).div_ceil(total).min(W) };
    format!("[{}{}]", "#".repeat(filled), ".".repeat(W - filled))
}

pub fn status(ctx: &Ctx) -> Result<(), Error> {
    let reg = ctx.registry()?;
    let st = reg.status()?;
    if ctx.out.json {
        let ranges: Vec<_> = st
            .ranges
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.range.name, "start": r.range.start, "end": r.range.end,
                    "fallback": r.range.fallback, "usable": r.usable,
                    "used": r.active + r.idle, "active": r.active, "idle": r.idle,
                })
            })
            .collect();
        ctx.out.json(&serde_json::json!({
            "registry": reg.path(), "file_bytes": st.file_bytes,
            "ranges": ranges, "outside_ranges": st.outside,
        }));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = st
        .ranges
        .iter()
        .map(|r| {
            let used = r.active + r.idle;
            vec![
                r.range.name.clone(),
                format!("{}-{}", r.range.start, r.range.end),
                format!("{used}/{}", r.usable),
                bar(used, r.usable),
                r.active.to_string(),
                r.idle.to_string(),
                if r.range.fallback { "auto".into() } else { "on request".into() },
            ]
        })
        .collect();
    let mut s = table(&["RANGE", "PORTS", "USED", "", "ACTIVE", "IDLE", "USE"], &rows);
    if st.outside > 0 {
        s.push_str(&format!("{} entries lie outside every configured range\n", st.outside));
    }
    s.push_str(&format!(
        "registry {} ({} KiB)\n",
        reg.path().display(),
        st.file_bytes.div_ceil(1024)
    ));
    ctx.out.data(&s);
    Ok(())
}

pub fn reset(ctx: &Ctx, yes: bool, force: bool) -> Result<(), Error> {
    if !yes {
        return Err(super::usage("refusing to empty the registry without `--yes`")
            .with_hint("run `portd reset --yes`; the old registry is kept as a backup"));
    }
    let backup = ctx.registry()?.reset(force)?;
    if ctx.out.json {
        ctx.out.json(&serde_json::json!({ "backup": backup }));
    } else {
        match backup {
            Some(b) => {
                ctx.out.info(&format!("registry emptied; the old one is kept at `{}`", b.display()))
            }
            None => ctx.out.info("registry was already empty"),
        }
    }
    Ok(())
}
