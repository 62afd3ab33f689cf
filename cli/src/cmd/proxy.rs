//! `portd proxy`: runs the `portd-proxy` binary (found beside `portd`, or
//! `PORTD_PROXY_BIN`) in the foreground, or starts, stops and shows it in
//! the background. `portd` itself links no async runtime: the proxy is
//! its own program.
//!
//! One proxy runs per registry: it holds `proxy.lock` (flock) while it
//! runs and describes itself in `proxy.json` (`{"pid", "port", "token",
//! "started"}`) in the registry directory. The lock says whether it runs;
//! the file says where.

use crate::Ctx;
use crate::args::{ProxyAction, ProxyArgs};
use portd_serve::proxy_instance::{self, Info, read_info};
use portd_store::{Error, ErrorKind};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long `start` waits for the proxy to listen, and `stop` for it to end.
const WAIT: Duration = Duration::from_secs(10);

/// Runs `portd proxy …`; the exit code.
pub fn proxy(ctx: &Ctx, args: &ProxyArgs) -> Result<u8, Error> {
    match &args.action {
        None => foreground(ctx, args.port),
        Some(ProxyAction::Start) => start(ctx, args.port),
        Some(ProxyAction::Stop | ProxyAction::Status) if args.port.is_some() => {
            Err(Error::usage("`--port` goes with `portd proxy` and `portd proxy start`")
                .with_hint("`portd proxy stop` and `status` find the proxy by its registry"))
        }
        Some(ProxyAction::Stop) => stop(ctx),
        Some(ProxyAction::Status) => status(ctx),
    }
}

/// The `portd-proxy` binary: `PORTD_PROXY_BIN`, else beside this one.
fn proxy_bin() -> Result<PathBuf, Error> {
    let path = match std::env::var_os("PORTD_PROXY_BIN").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => {
            let exe = std::env::current_exe().map_err(|e| {
                Error::new(ErrorKind::Other, format!("cannot find the portd binary: {e}"))
            })?;
            exe.with_file_name("portd-proxy")
        }
    };
    if !path.is_file() {
        return Err(Error::new(
            ErrorKind::Other,
            format!("the proxy binary `{}` is missing", path.display()),
        )
        .with_hint(
            "install `portd-proxy` beside `portd` (see the README), or set PORTD_PROXY_BIN",
        ));
    }
    Ok(path)
}

/// The proxy's command: `portd-proxy --home DIR [--port P]`, with
/// `PORTD_BIN` naming this `portd` (which starts managed servers).
fn command(ctx: &Ctx, port: Option<u16>) -> Result<Command, Error> {
    let mut cmd = Command::new(proxy_bin()?);
    cmd.arg("--home").arg(&ctx.home);
    if let Some(p) = port {
        cmd.arg("--port").arg(p.to_string());
    }
    if let Ok(me) = std::env::current_exe() {
        cmd.env("PORTD_BIN", me);
    }
    Ok(cmd)
}

/// A proxy that runs for a registry.
#[derive(Debug, Clone)]
pub(crate) struct Running {
    /// The pid holding `proxy.lock` (unknown only where the platform
    /// cannot say who holds a lock).
    pub pid: Option<u32>,
    /// Its `proxy.json`, once it has written it (it does so once it
    /// listens). `None` while it starts.
    pub info: Option<Info>,
}

/// The proxy of the registry at `home`, if one runs: a live process holds
/// `proxy.lock`. `proxy.json` alone proves nothing (a proxy killed with
/// SIGKILL leaves it): it counts only when it names the holder. The lock
/// is not taken, so that a probe never gets in the way of a proxy's claim.
pub(crate) fn running(home: &Path) -> Option<Running> {
    match proxy_instance::holder(home) {
        Ok(Some(pid)) => {
            let info = read_info(home).filter(|i| i.pid == pid);
            Some(Running { pid: Some(pid), info })
        }
        Ok(None) => None,
        // No `/proc/locks` here: is the lock free? (The proxy's claim
        // allows for such a probe's moment.)
        Err(_) => {
            let file = std::fs::File::open(home.join(proxy_instance::LOCK_FILE)).ok()?;
            match file.try_lock() {
                Err(std::fs::TryLockError::WouldBlock) => {
                    let info =
                        read_info(home).filter(|i| portd_core::sys::kill(i.pid as i32, 0).is_ok());
                    Some(Running { pid: info.as_ref().map(|i| i.pid), info })
                }
                Ok(()) | Err(std::fs::TryLockError::Error(_)) => None,
            }
        }
    }
}

/// [`running`], waiting (up to [`WAIT`]) for a proxy that is starting to
/// describe itself.
fn running_described(home: &Path) -> Option<Running> {
    let end = Instant::now() + WAIT;
    loop {
        match running(home) {
            Some(r) if r.info.is_none() && r.pid.is_some() && Instant::now() < end => {}
            other => return other,
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn url(port: u16) -> String {
    format!("http://localhost:{port}/")
}

fn foreground(ctx: &Ctx, port: Option<u16>) -> Result<u8, Error> {
    use std::os::unix::process::CommandExt;
    ctx.registry()?;
    let mut cmd = command(ctx, port)?;
    let e = cmd.exec();
    Err(Error::new(ErrorKind::Other, format!("cannot run the proxy: {e}")))
}

/// Checks a `--port` the way the proxy will, before it is started.
fn check_port(ctx: &Ctx, port: Option<u16>) -> Result<(), Error> {
    match port {
        Some(p) => ctx.config.clone().set_proxy_port(p, "--port"),
        None => ctx.config.check_proxy_port(),
    }
}

fn start(ctx: &Ctx, port: Option<u16>) -> Result<u8, Error> {
    ctx.registry()?;
    if let Some(r) = running_described(&ctx.home) {
        return Ok(already(ctx, &r));
    }
    check_port(ctx, port)?;
    let log_dir = ctx.home.join("logs");
    let io = |what: String, e: std::io::Error| Error::new(ErrorKind::Other, format!("{what}: {e}"));
    std::fs::create_dir_all(&log_dir)
        .map_err(|e| io(format!("cannot make `{}`", log_dir.display()), e))?;
    let log = log_dir.join("proxy.log");
    let out = portd_core::sys::open_append_nofollow(&log, 0o600)
        .map_err(|e| io(format!("cannot open `{}`", log.display()), e))?;
    let from = out.metadata().map_or(0, |m| m.len());
    let err = out.try_clone().map_err(|e| io("cannot open the log".into(), e))?;
    let mut cmd = command(ctx, port)?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    portd_core::sys::new_session(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| io("cannot start the proxy".into(), e))?;
    let end = Instant::now() + WAIT;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            // It ended: its error lines are in the log, after `from`.
            let text = std::fs::read(&log).unwrap_or_default();
            let text = String::from_utf8_lossy(text.get(from as usize..).unwrap_or_default());
            let err = text.lines().rev().find(|l| l.starts_with("error: "));
            let hint = text.lines().rev().find(|l| l.starts_with("hint: "));
            if err.is_some_and(|e| e.contains("a proxy already runs"))
                && let Some(r) = running_described(&ctx.home)
            {
                return Ok(already(ctx, &r));
            }
            let msg = err.map_or_else(
                || format!("the proxy ended at once ({st})"),
                |e| e.trim_start_matches("error: ").to_owned(),
            );
            ctx.out.error(&msg, hint.map(|h| h.trim_start_matches("hint: ")));
            return Ok(st
                .code()
                .and_then(|c| u8::try_from(c).ok())
                .filter(|&c| c != 0)
                .unwrap_or(1));
        }
        // It holds the lock and has described itself: it listens.
        if let Some(Running { info: Some(info), .. }) = running(&ctx.home)
            && info.pid == child.id()
        {
            report(ctx, &info, "started");
            return Ok(0);
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::new(
                ErrorKind::Other,
                format!("the proxy did not start within {}s", WAIT.as_secs()),
            )
            .with_hint(format!("see its log: `{}`", log.display())));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A second start: says where the first one is, and succeeds.
fn already(ctx: &Ctx, r: &Running) -> u8 {
    match (&r.info, r.pid) {
        (Some(i), _) => report(ctx, i, "already running"),
        (None, Some(pid)) => ctx.out.info(&format!(
            "the proxy already runs (pid {pid}), but has not said where (no `proxy.json`)"
        )),
        (None, None) => ctx.out.info("the proxy already runs (its `proxy.json` is unreadable)"),
    }
    0
}

fn report(ctx: &Ctx, info: &Info, what: &str) {
    if ctx.out.json {
        ctx.out.json(&serde_json::json!({
            "running": true, "pid": info.pid, "port": info.port,
            "url": url(info.port), "started": info.started, "what": what,
        }));
    } else {
        ctx.out.info(&format!("proxy {what} (pid {}) on {}", info.pid, url(info.port)));
        ctx.out.data(&info.port.to_string());
    }
}

fn stop(ctx: &Ctx) -> Result<u8, Error> {
    let Some(r) = running(&ctx.home) else {
        if ctx.out.json {
            ctx.out.json(&serde_json::json!({"running": false, "stopped": false}));
        } else {
            ctx.out.info("the proxy is not running");
        }
        return Ok(0);
    };
    let Some(pid) = r.pid else {
        return Err(Error::new(
            ErrorKind::Other,
            "the proxy runs, but its `proxy.json` is unreadable",
        )
        .with_hint(format!(
            "find its pid with `fuser {}`",
            ctx.home.join(proxy_instance::LOCK_FILE).display()
        )));
    };
    let _ = portd_core::sys::kill(pid as i32, portd_core::sys::SIGTERM);
    let end = Instant::now() + WAIT;
    while running(&ctx.home).is_some_and(|r| r.pid == Some(pid)) {
        if Instant::now() >= end {
            let _ = portd_core::sys::kill(pid as i32, portd_core::sys::SIGKILL);
        }
        if Instant::now() >= end + Duration::from_secs(2) {
            return Err(Error::new(
                ErrorKind::Other,
                format!("the proxy (pid {pid}) does not end"),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let port = r.info.as_ref().map(|i| i.port);
    if ctx.out.json {
        ctx.out.json(
            &serde_json::json!({"running": false, "stopped": true, "pid": pid, "port": port}),
        );
    } else {
        let at = port.map_or(String::new(), |p| format!(" on {}", url(p)));
        ctx.out.info(&format!("stopped the proxy (pid {pid}){at}"));
    }
    Ok(0)
}

fn status(ctx: &Ctx) -> Result<u8, Error> {
    let Some(r) = running(&ctx.home) else {
        if ctx.out.json {
            ctx.out.json(&serde_json::json!({"running": false}));
        } else {
            ctx.out.data("not running");
        }
        return Ok(0);
    };
    let info = r.info.as_ref();
    if ctx.out.json {
        ctx.out.json(&serde_json::json!({
            "running": true,
            "pid": r.pid,
            "port": info.map(|i| i.port),
            "url": info.map(|i| url(i.port)),
            "started": info.map(|i| i.started.clone()),
        }));
    } else {
        match (info, r.pid) {
            (Some(i), _) => ctx.out.data(&format!(
                "running pid {} port {} url {} since {}",
                i.pid,
                i.port,
                url(i.port),
                i.started
            )),
            (None, Some(pid)) => ctx.out.data(&format!("starting pid {pid}")),
            (None, None) => ctx.out.data("running"),
        }
    }
    Ok(0)
}
