//! Starting, stopping and restarting managed servers from another process
//! (`portd start|stop|restart`, and the proxy): get-or-start, with the
//! supervisor ([`crate::serve`]) started detached.
//!
//! Nothing here keeps running: [`start`] spawns `portd __serve NAME` in a
//! new session (no terminal; its output and the server's go to the
//! project's log) and reads its one-line report; a server whose supervisor
//! runs already is waited for through the registry.

use crate::serve::{SERVER_FAILED, log_path};
use portd_core::{Liveness, sys};
use portd_store::server_state::Phase;
use portd_store::{Error, ErrorKind, Project, Registry, now_ms};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How a start ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Healthy, on this port.
    Ready(u16),
    /// On demand: the supervisor holds this port; the first connection
    /// starts the server.
    Sleeping(u16),
    /// It failed: the exit code `portd start` exits with, and why.
    Failed {
        /// The exit code (10: not healthy; 127/126: cannot start; 4, 5, …).
        code: u8,
        /// One line.
        message: String,
        /// The fix, if any.
        hint: String,
    },
}

/// Gets or starts `project`'s server: if its supervisor lives, waits until
/// the server is ready (or sleeping); otherwise starts the supervisor
/// (`exe __serve NAME`) and waits for its report. The project must be
/// defined (else [`ErrorKind::UnknownProject`]).
pub fn start(
    reg: &Registry,
    exe: &Path,
    project: &Project,
    move_port: bool,
) -> Result<Outcome, Error> {
    start_noting(reg, exe, project, move_port, &mut Vec::new())
}

/// [`start`], adding to `notes` the lines the supervisor has for the user
/// (the flags it added to a dev server's command), to print on stderr.
pub fn start_noting(
    reg: &Registry,
    exe: &Path,
    project: &Project,
    move_port: bool,
    notes: &mut Vec<String>,
) -> Result<Outcome, Error> {
    let Some(d) = reg.defined(Some(project.key()))?.pop() else {
        return Err(not_defined(project));
    };
    // The supervisor's own bound: the start timeout, then stopping what
    // did not become healthy (the kill grace, twice for leftovers).
    let limit = Duration::from_millis(d.def.start_timeout_ms + 2 * d.def.kill_grace_ms)
        + Duration::from_secs(10);
    if d.state.as_ref().is_some_and(|s| s.live_supervisor().is_some()) {
        return wait(reg, project, limit);
    }
    let report = spawn(reg, exe, project, move_port, limit)?;
    let mut line = "";
    for l in report.lines() {
        match l.strip_prefix("note ") {
            Some(n) => notes.push(n.to_owned()),
            None => line = l,
        }
    }
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    Ok(match word {
        "ready" => Outcome::Ready(rest.parse().unwrap_or(0)),
        "sleeping" => Outcome::Sleeping(rest.parse().unwrap_or(0)),
        "exists" => wait(reg, project, limit)?,
        "error" => {
            let (code, rest) = rest.split_once(' ').unwrap_or(("1", rest));
            let (message, hint) = rest.split_once('\t').unwrap_or((rest, ""));
            Outcome::Failed {
                code: code.parse().unwrap_or(1),
                message: message.to_owned(),
                hint: hint.to_owned(),
            }
        }
        _ => Outcome::Failed {
            code: SERVER_FAILED,
            message: match running_supervisor(reg, project) {
                Some(pid) => format!(
                    "the supervisor of `{}` (pid {pid}) did not answer within {}",
                    project.display(),
                    secs(limit)
                ),
                None => format!(
                    "the supervisor of `{}` ended before the server was ready",
                    project.display()
                ),
            },
            hint: format!(
                "see its log: `portd logs {0}`; `portd stop {0}` stops it",
                project.display()
            ),
        },
    })
}

/// The pid of `project`'s live supervisor, if one runs.
fn running_supervisor(reg: &Registry, project: &Project) -> Option<u32> {
    let d = reg.defined(Some(project.key())).ok()?.pop()?;
    d.state?.live_supervisor().map(|o| o.pid)
}

/// The error for a project with no definition.
pub fn not_defined(project: &Project) -> Error {
    Error::new(
        ErrorKind::UnknownProject,
        format!("`{}` is not a defined server", project.display()),
    )
    .with_hint(format!("define it first: `portd add {} -- COMMAND ARGS…`", project.display()))
}

/// Starts `exe __serve NAME` detached and returns what it reported.
fn spawn(
    reg: &Registry,
    exe: &Path,
    project: &Project,
    move_port: bool,
    limit: Duration,
) -> Result<String, Error> {
    let io = |what: &str, e: std::io::Error| Error::new(ErrorKind::Other, format!("{what}: {e}"));
    let log = log_path(reg.dir(), project.key());
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io("cannot make the log directory", e))?;
    }
    let out =
        crate::logs::open_log(&log).map_err(|e| Error::new(ErrorKind::Other, e.to_string()))?;
    let err = out.try_clone().map_err(|e| io("cannot open the log", e))?;
    let (mut reader, writer) = std::io::pipe().map_err(|e| io("cannot make a pipe", e))?;
    let mut cmd = Command::new(exe);
    cmd.arg("__serve").arg(project.key());
    if move_port {
        cmd.arg("--move");
    }
    cmd.arg("--home").arg(reg.dir());
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    sys::new_session(&mut cmd);
    sys::clear_signal_mask(&mut cmd);
    sys::pass_fds(&mut cmd, vec![writer.as_raw_fd()]);
    let child = cmd
        .spawn()
        .map_err(|e| io(&format!("cannot start the supervisor `{}`", exe.display()), e))?;
    drop(cmd);
    drop(writer);
    // The supervisor enforces the start timeout itself; this bound only
    // keeps a supervisor that hangs from holding `portd start` forever.
    let until = Instant::now() + limit;
    let mut report = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        use std::os::fd::AsFd;
        match sys::wait_readable(reader.as_fd(), Some(left)) {
            Ok(true) => match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => report.extend_from_slice(&buf[..n]),
            },
            Ok(false) => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let report = String::from_utf8_lossy(&report).into_owned();
    // The supervisor lives on; it is not this process's to wait for once
    // it has reported (it is reparented when this process exits).
    drop(child);
    Ok(report)
}

/// Waits until `project`'s server is ready or sleeping, or has failed, or
/// `limit` has passed.
pub fn wait(reg: &Registry, project: &Project, limit: Duration) -> Result<Outcome, Error> {
    let until = Instant::now() + limit;
    loop {
        let d = reg.defined(Some(project.key()))?.pop().ok_or_else(|| not_defined(project))?;
        let port = d.port.unwrap_or(0);
        if let Some(s) = d.state.map(|s| s.effective()) {
            match s.phase {
                Phase::Running | Phase::Unhealthy => return Ok(Outcome::Ready(port)),
                Phase::Sleeping => return Ok(Outcome::Sleeping(port)),
                Phase::Stopped | Phase::CrashLooping => {
                    return Ok(Outcome::Failed {
                        code: SERVER_FAILED,
                        message: format!(
                            "`{}` is {}: {}",
                            project.display(),
                            s.phase,
                            s.reason.unwrap_or_else(|| "it stopped".into())
                        ),
                        hint: format!("see its log: `portd logs {}`", project.display()),
                    });
                }
                Phase::Starting => {}
            }
        }
        if Instant::now() >= until {
            return Ok(Outcome::Failed {
                code: SERVER_FAILED,
                message: format!("`{}` was not ready within {}", project.display(), secs(limit)),
                hint: format!("see its log: `portd logs {}`", project.display()),
            });
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn secs(d: Duration) -> String {
    portd_store::format_duration(d)
}

/// Stops `project`'s server and its supervisor: SIGTERM to the supervisor
/// (which stops the server's group, SIGKILL after the kill grace), then
/// SIGKILL to the supervisor if it is still there long after. Returns
/// whether a supervisor was running.
pub fn stop(reg: &Registry, project: &Project) -> Result<bool, Error> {
    let Some(d) = reg.defined(Some(project.key()))?.pop() else {
        return Err(not_defined(project));
    };
    let Some(owner) = d.state.as_ref().and_then(|s| s.live_supervisor()) else {
        return Ok(false);
    };
    signal(project, owner.pid, sys::SIGTERM)?;
    // A stopped supervisor acts on it once continued.
    let _ = sys::kill(owner.pid as i32, sys::SIGCONT);
    // The supervisor may need the kill grace for the server, as much again
    // for what it left behind, and a health check under way.
    let grace = Duration::from_millis(d.def.kill_grace_ms);
    let until = Instant::now() + grace * 2 + Duration::from_secs(10);
    while owner.liveness() != Liveness::Dead {
        if Instant::now() >= until {
            // Its `__supervise` kills the server's whole tree when it dies.
            signal(project, owner.pid, sys::SIGKILL)?;
            let killed = Instant::now();
            while owner.liveness() != Liveness::Dead && killed.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(20));
            }
            if owner.liveness() != Liveness::Dead {
                return Err(Error::new(
                    ErrorKind::Other,
                    format!(
                        "the supervisor of `{}` (pid {}) did not stop",
                        project.display(),
                        owner.pid
                    ),
                )
                .with_hint(format!("look at it with `ps -o stat,cmd -p {}`", owner.pid)));
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(true)
}

/// Sends `sig` to the supervisor `pid`; not permitted (another user's
/// server in a shared registry) is a permission error.
fn signal(project: &Project, pid: u32, sig: i32) -> Result<(), Error> {
    match sys::kill(pid as i32, sig) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(Error::new(
            ErrorKind::Permission,
            format!("`{}` runs as another user (supervisor pid {pid})", project.display()),
        )
        .with_hint("only its user (or root) can stop or restart it")),
        _ => Ok(()),
    }
}

/// Restarts `project`'s server (SIGHUP to its supervisor) and waits until
/// it is ready again; with no supervisor running, starts it.
pub fn restart(reg: &Registry, exe: &Path, project: &Project) -> Result<Outcome, Error> {
    let Some(d) = reg.defined(Some(project.key()))?.pop() else {
        return Err(not_defined(project));
    };
    let live = d.state.as_ref().and_then(|s| s.live_supervisor().map(|o| (o, s.clone())));
    let Some((owner, before)) = live else {
        return start(reg, exe, project, false);
    };
    if before.phase == Phase::Sleeping {
        return Ok(Outcome::Sleeping(d.port.unwrap_or(0)));
    }
    let asked = now_ms();
    signal(project, owner.pid, sys::SIGHUP)?;
    let limit = Duration::from_millis(d.def.start_timeout_ms + d.def.kill_grace_ms)
        + Duration::from_secs(10);
    let until = Instant::now() + limit;
    // Until it has started again (or failed).
    loop {
        let d = reg.defined(Some(project.key()))?.pop().ok_or_else(|| not_defined(project))?;
        let s = d.state.map(|s| s.effective());
        // Started again since it was asked (a restart during a backoff
        // delay counts no new restart), or ended.
        let again = s.as_ref().is_some_and(|s| {
            s.started_ms.is_some_and(|t| t >= asked)
                || s.phase == Phase::Stopped
                || s.phase == Phase::CrashLooping
        });
        if again || Instant::now() >= until {
            let out = wait(reg, project, until.saturating_duration_since(Instant::now()))?;
            // On demand, a run that failed leaves the supervisor sleeping
            // again, with the failure as its reason (an idle stop's is
            // `idle`): the restart failed.
            if let Outcome::Sleeping(_) = out
                && let Some(s) = reg.defined(Some(project.key()))?.pop().and_then(|d| d.state)
                && let Some(why) = s.reason.filter(|r| r != "idle")
            {
                return Ok(Outcome::Failed {
                    code: SERVER_FAILED,
                    message: format!("`{}` failed to restart: {why}", project.display()),
                    hint: format!("see its log: `portd logs {}`", project.display()),
                });
            }
            return Ok(out);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}
