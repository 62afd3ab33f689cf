//! `portd status --detailed`: managed servers at a glance — how many run,
//! sleep or are stopped, the memory they use and the memory sleeping saves,
//! startups, idle shutdowns and restarts in the last 24 hours, and one line
//! per server.

use super::rfc3339;
use crate::Ctx;
use crate::printer::table;
use portd_core::sys;
use portd_store::events::{EventKind, StopWhy};
use portd_store::server_state::Phase;
use portd_store::{Error, age, now_ms};
use serde::Serialize;
use std::collections::HashMap;

const DAY_MS: u64 = 86_400_000;

#[derive(Debug, Serialize)]
struct Detailed {
    defined: usize,
    running: usize,
    sleeping: usize,
    stopped: usize,
    starting: usize,
    unhealthy: usize,
    crash_looping: usize,
    /// Sum of the resident memory of running servers' process groups.
    memory_bytes: u64,
    /// Sleeping and idle-stopped servers × their last measured memory.
    saved_bytes: u64,
    last_24h: Day,
    servers: Vec<ServerLine>,
}

#[derive(Debug, Serialize)]
struct Day {
    starts: usize,
    avg_startup_ms: Option<u64>,
    idle_shutdowns: usize,
    restarts: usize,
}

#[derive(Debug, Serialize)]
struct ServerLine {
    project: String,
    state: &'static str,
    port: Option<u16>,
    uptime_s: Option<u64>,
    rss_bytes: Option<u64>,
    connections: Option<usize>,
    /// Relayed servers (on demand without `--fd`): HTTP requests in the
    /// last minute, counted by the relay.
    requests_per_minute: Option<u64>,
    /// Why it is stopped, unhealthy or crash-looping.
    reason: Option<String>,
    /// How it last ended.
    last_exit: Option<String>,
    last_event: Option<LastEvent>,
}

#[derive(Debug, Serialize)]
struct LastEvent {
    at: String,
    kind: &'static str,
    text: String,
}

fn mb(b: u64) -> String {
    format!("{:.1} MB", b as f64 / 1e6)
}

pub fn detailed(ctx: &Ctx) -> Result<(), Error> {
    let reg = ctx.registry()?;
    let defined = reg.defined(None)?;
    let now = now_ms();
    // One read of the events: the last of each project, and the last
    // 24 hours' for the figures.
    let all = reg.events_since(0)?;
    let mut last: HashMap<&str, &portd_store::events::Event> = HashMap::new();
    for e in &all {
        last.insert(e.project.as_str(), e);
    }
    let day_from = now.saturating_sub(DAY_MS);
    let events: Vec<&portd_store::events::Event> =
        all.iter().filter(|e| e.at_ms >= day_from).collect();
    let startups: Vec<u64> = events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Ready { startup_ms } => Some(startup_ms),
            _ => None,
        })
        .collect();
    let day = Day {
        starts: startups.len(),
        avg_startup_ms: (!startups.is_empty())
            .then(|| startups.iter().sum::<u64>() / startups.len() as u64),
        idle_shutdowns: events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Stopped { why: StopWhy::Idle }))
            .count(),
        restarts: events.iter().filter(|e| matches!(e.kind, EventKind::Restarted { .. })).count(),
    };
    let mut d = Detailed {
        defined: defined.len(),
        running: 0,
        sleeping: 0,
        stopped: 0,
        starting: 0,
        unhealthy: 0,
        crash_looping: 0,
        memory_bytes: 0,
        saved_bytes: 0,
        last_24h: day,
        servers: Vec::new(),
    };
    // One dump of the established connections for every server.
    let open = sys::established_by_port().ok();
    for s in &defined {
        let st = s.state.as_ref().map(|x| x.effective());
        let phase = st.as_ref().map_or(Phase::Stopped, |x| x.phase);
        match phase {
            Phase::Running => d.running += 1,
            Phase::Sleeping => d.sleeping += 1,
            Phase::Stopped => d.stopped += 1,
            Phase::Starting => d.starting += 1,
            Phase::Unhealthy => d.unhealthy += 1,
            Phase::CrashLooping => d.crash_looping += 1,
        }
        let rss = st.as_ref().and_then(|x| x.command_pid).map(sys::group_rss);
        if let Some(r) = rss {
            d.memory_bytes += r;
        }
        let idle_stopped = phase == Phase::Stopped
            && st.as_ref().is_some_and(|x| x.reason.as_deref() == Some("idle"));
        if phase == Phase::Sleeping || idle_stopped {
            d.saved_bytes += st.as_ref().and_then(|x| x.last_rss).unwrap_or(0);
        }
        let live = phase.supervised();
        d.servers.push(ServerLine {
            project: s.key.clone(),
            state: phase.as_str(),
            port: s.port,
            uptime_s: st
                .as_ref()
                .filter(|_| matches!(phase, Phase::Running | Phase::Unhealthy))
                .and_then(|x| x.ready_ms.or(x.started_ms))
                .map(|t| age(t).as_secs()),
            rss_bytes: rss,
            connections: s
                .port
                .filter(|_| live)
                .and_then(|p| open.as_ref().map(|o| o.get(&p).copied().unwrap_or(0))),
            requests_per_minute: st
                .as_ref()
                .filter(|x| x.relay_port.is_some())
                .and_then(|x| x.live_supervisor())
                .and_then(|o| relay_rpm(reg.dir(), &s.key, o.pid)),
            reason: st.as_ref().and_then(|x| x.reason.clone()),
            last_exit: st.as_ref().and_then(|x| x.last_exit.clone()),
            last_event: last.get(s.key.as_str()).map(|e| LastEvent {
                at: rfc3339(e.at_ms),
                kind: e.kind.name(),
                text: e.to_string(),
            }),
        });
    }
    if ctx.out.json {
        ctx.out.json(&d);
        return Ok(());
    }
    let mut text = format!(
        "servers: {} running, {} sleeping, {} stopped of {} defined",
        d.running, d.sleeping, d.stopped, d.defined
    );
    for (n, what) in
        [(d.starting, "starting"), (d.unhealthy, "unhealthy"), (d.crash_looping, "crash-looping")]
    {
        if n > 0 {
            text.push_str(&format!(", {n} {what}"));
        }
    }
    text.push_str(&format!(
        "\nmemory: {} used by running servers, {} saved by sleeping and idle-stopped ones\n",
        mb(d.memory_bytes),
        mb(d.saved_bytes)
    ));
    let n = |k: usize, one: &str, many: &str| format!("{k} {}", if k == 1 { one } else { many });
    text.push_str(&format!(
        "last 24 h: {}{}, {}, {}\n",
        n(d.last_24h.starts, "start", "starts"),
        d.last_24h.avg_startup_ms.map(|a| format!(" (average startup {a} ms)")).unwrap_or_default(),
        n(d.last_24h.idle_shutdowns, "idle shutdown", "idle shutdowns"),
        n(d.last_24h.restarts, "restart", "restarts")
    ));
    let rows: Vec<Vec<String>> = d
        .servers
        .iter()
        .map(|s| {
            vec![
                s.project.clone(),
                s.state.to_owned(),
                s.port.map_or("-".into(), |p| p.to_string()),
                s.uptime_s.map_or("-".into(), |u| format!("{u}s")),
                s.rss_bytes.map_or("-".into(), mb),
                s.connections.map_or("-".into(), |c| c.to_string()),
                s.requests_per_minute.map_or("-".into(), |r| r.to_string()),
                s.last_event.as_ref().map_or("-".into(), |e| e.text.clone()),
            ]
        })
        .collect();
    if !rows.is_empty() {
        text.push('\n');
        text.push_str(&table(
            &["PROJECT", "STATE", "PORT", "UPTIME", "MEMORY", "CONNS", "REQ/MIN", "LAST EVENT"],
            &rows,
        ));
    }
    ctx.out.data(&text);
    Ok(())
}

/// Asks the relaying supervisor `pid` for its figures (SIGUSR1) and reads
/// the requests per minute it writes, waiting at most 200 ms.
fn relay_rpm(dir: &std::path::Path, key: &str, pid: u32) -> Option<u64> {
    let path = portd_serve::serve::stats_path(dir, key);
    let before = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
    sys::kill(pid as i32, sys::SIGUSR1).ok()?;
    let until = std::time::Instant::now() + std::time::Duration::from_millis(200);
    while std::time::Instant::now() < until {
        let now = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        if now.is_some() && now != before {
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
            return v.get("requests_per_minute")?.as_u64();
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    None
}
