//! `portd config`: the effective configuration and where each value came from.

use crate::Ctx;
use crate::printer::table;
use portd_store::{Error, Source, format_duration};

pub fn config(ctx: &Ctx) -> Result<(), Error> {
    let c = &ctx.config;
    let src = |k: &str| c.sources.get(k).cloned().unwrap_or(Source::Default);
    let ranges: Vec<String> = c
        .ranges
        .iter()
        .map(|r| {
            format!(
                "{} {}-{}{}",
                r.name,
                r.start,
                r.end,
                if r.fallback { "" } else { " (on request)" }
            )
        })
        .collect();
    let exclude: Vec<String> = c
        .exclude
        .iter()
        .map(|&(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") })
        .collect();
    let file_source = if std::env::var_os("PORTD_CONFIG").is_some_and(|v| !v.is_empty()) {
        Source::Env("PORTD_CONFIG")
    } else {
        Source::Default
    };
    let file = ctx.config_file.as_ref().map(|p| {
        let state = if p.exists() { "" } else { " (not found)" };
        format!("{}{state}", p.display())
    });
    if ctx.out.json {
        let ranges_json: Vec<_> = c
            .ranges
            .iter()
            .map(|r| serde_json::json!({"name": r.name, "start": r.start, "end": r.end, "fallback": r.fallback}))
            .collect();
        let v = serde_json::json!({
            "home": { "value": ctx.home, "source": ctx.home_source.to_string() },
            "config_file": {
                "value": ctx.config_file,
                "source": file_source.to_string(),
                "exists": ctx.config_file.as_ref().is_some_and(|p| p.exists()),
            },
            "ranges": { "value": ranges_json, "source": src("ranges").to_string() },
            "exclude": { "value": exclude, "source": src("exclude").to_string() },
            "idle_ttl": { "value": format_duration(c.idle_ttl), "source": src("idle_ttl").to_string() },
            "lock_timeout": { "value": format_duration(c.lock_timeout), "source": src("lock_timeout").to_string() },
            "range": { "value": c.default_range, "source": src("range").to_string() },
            "port": { "value": c.pinned_port, "source": src("port").to_string() },
            "shared": { "value": c.shared, "source": src("shared").to_string() },
            "allow_privileged": { "value": c.allow_privileged, "source": src("allow_privileged").to_string() },
            "proxy_port": { "value": c.proxy_port, "source": src("proxy_port").to_string() },
        });
        ctx.out.json(&v);
        return Ok(());
    }
    let dash = |v: String| if v.is_empty() { "-".to_owned() } else { v };
    let rows = vec![
        vec!["home".into(), ctx.home.display().to_string(), ctx.home_source.to_string()],
        vec!["config file".into(), file.unwrap_or_else(|| "-".into()), file_source.to_string()],
        vec!["ranges".into(), ranges.join(", "), src("ranges").to_string()],
        vec!["exclude".into(), dash(exclude.join(", ")), src("exclude").to_string()],
        vec!["idle_ttl".into(), format_duration(c.idle_ttl), src("idle_ttl").to_string()],
        vec![
            "lock_timeout".into(),
            format_duration(c.lock_timeout),
            src("lock_timeout").to_string(),
        ],
        vec![
            "range".into(),
            c.default_range.clone().unwrap_or_else(|| "-".into()),
            src("range").to_string(),
        ],
        vec![
            "port".into(),
            c.pinned_port.map_or("-".into(), |p| p.to_string()),
            src("port").to_string(),
        ],
        vec!["shared".into(), c.shared.to_string(), src("shared").to_string()],
        vec![
            "allow_privileged".into(),
            c.allow_privileged.to_string(),
            src("allow_privileged").to_string(),
        ],
        vec!["proxy_port".into(), c.proxy_port.to_string(), src("proxy_port").to_string()],
    ];
    ctx.out.data(&table(&["KEY", "VALUE", "SOURCE"], &rows));
    Ok(())
}
