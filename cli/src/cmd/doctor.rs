//! `portd doctor [--repair]`.

use crate::Printer;
use crate::args::Cli;
use crate::printer::table;
use portd_store::doctor::{self, Report, Severity};
use portd_store::{Config, Error};

/// Prints every finding with its fix; exits 0 when nothing is broken, else
/// with the exit code of the first error. `--repair` moves a damaged
/// registry aside and starts a fresh one, and removes a touch log that
/// every command refuses.
pub fn doctor(cli: &Cli, out: Printer, repair: bool) -> Result<u8, Error> {
    let env = |k: &str| std::env::var(k).ok();
    let (config, config_error) = match Config::load(&env) {
        Ok(c) => (c, None),
        Err(e) => (Config::default(), Some(e)),
    };
    let (home, _) = crate::home(cli)?;
    if repair && let Some(e) = &config_error {
        // Repairing under the built-in defaults could, e.g., make a shared
        // registry private: fix the configuration first.
        return Err(Error::new(e.kind(), e.message().to_owned())
            .with_hint("fix the configuration first; `--repair` uses it"));
    }
    let report = doctor::examine(&home, &config, config_error.as_ref());
    let touch_removed = if repair && report.touch_refused {
        doctor::remove_unsafe_touch_log(&home, &config)?
    } else {
        None
    };
    let repaired =
        if repair && report.damaged { Some(doctor::repair(&home, &config)?) } else { None };
    if out.json {
        let findings: Vec<_> = report
            .findings
            .iter()
            .map(|f| {
                serde_json::json!({
                    "check": f.check, "status": f.severity.as_str(),
                    "message": f.message, "fix": f.fix,
                })
            })
            .collect();
        let repaired = repaired.as_ref().map(|r| {
            serde_json::json!({
                "moved_to": r.moved_to, "rebuilt": r.rebuilt, "remembered": r.remembered,
                "lost": r.lost, "readable": r.readable(),
                "servers": r.servers, "lost_servers": r.lost_servers,
            })
        });
        out.json(&serde_json::json!({
            "registry": home, "findings": findings, "damaged": report.damaged,
            "repaired": repaired, "touch_log_removed": touch_removed.is_some(),
        }));
    } else {
        out.data(&render(&report));
    }
    if let Some(why) = &touch_removed {
        let log = home.join(portd_store::TOUCH_FILE);
        out.info(&format!("removed the touch log `{}`, which {why}", log.display()));
    }
    if let Some(r) = &repaired {
        out.info(&format!("moved the damaged registry to `{}`", r.moved_to.display()));
        let lost = match r.lost {
            Some(n) => format!("{n} unreadable entr{} lost", if n == 1 { "y" } else { "ies" }),
            None => "the file could not be read: its entries are lost".to_owned(),
        };
        out.info(&format!(
            "fresh registry: {} running lease{} rebuilt, {} idle project{} remembered (they get their old port back when it is free), {lost}",
            r.rebuilt.len(),
            if r.rebuilt.len() == 1 { "" } else { "s" },
            r.remembered.len(),
            if r.remembered.len() == 1 { "" } else { "s" },
        ));
        if !r.servers.is_empty() || r.lost_servers > 0 {
            let n = r.servers.len();
            let lost = match r.lost_servers {
                0 => String::new(),
                l => format!(", {l} unreadable one{} lost", if l == 1 { "" } else { "s" }),
            };
            out.info(&format!(
                "kept {n} managed server definition{}{lost}; their recorded states and events are dropped",
                if n == 1 { "" } else { "s" },
            ));
        }
        return Ok(0);
    }
    // What is left once a refused touch log is gone.
    let left = report
        .findings
        .iter()
        .filter(|f| {
            f.severity == Severity::Error && !(f.check == "touch" && touch_removed.is_some())
        })
        .find_map(|f| f.kind);
    if repair && touch_removed.is_none() {
        out.info(if left.is_some() {
            "nothing repaired: `--repair` replaces a damaged registry file and removes an unsafe touch log, nothing else; fix the problems above first"
        } else {
            "nothing to repair: the registry file is not damaged"
        });
    }
    Ok(left.map_or(0, portd_store::ErrorKind::exit_code))
}

fn render(report: &Report) -> String {
    let mut rows = Vec::new();
    for f in &report.findings {
        rows.push(vec![f.severity.as_str().to_owned(), f.check.to_owned(), f.message.clone()]);
        if let Some(fix) = &f.fix {
            rows.push(vec![String::new(), String::new(), format!("fix: {fix}")]);
        }
    }
    let mut s = table(&["STATUS", "CHECK", "FINDING"], &rows);
    let count = |sev| report.findings.iter().filter(|f| f.severity == sev).count();
    let (errors, warnings) = (count(Severity::Error), count(Severity::Warn));
    s.push_str(&match (errors, warnings) {
        (0, 0) => "no problems found\n".to_owned(),
        (e, w) => format!(
            "{e} problem{}, {w} warning{}\n",
            if e == 1 { "" } else { "s" },
            if w == 1 { "" } else { "s" }
        ),
    });
    s
}
