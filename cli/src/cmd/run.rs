//! `portd run`: a supervised lease.
//!
//! Three processes, each with one job:
//! - `portd run` (this one) owns the lease, forwards signals to the child's
//!   process group, ends the lease when the child exits, and exits with its
//!   status;
//! - `portd __supervise` leads the child's process group. It receives a
//!   parent-death signal, so if `portd run` is SIGKILLed it kills the whole
//!   group at once: no orphaned server keeps the port. It also turns a
//!   second Ctrl-C within [`DOUBLE_INT`] into SIGKILL for the group;
//! - the command itself (with `--fd`, through `portd __exec`, which sets
//!   `LISTEN_PID` to its own pid and then execs the command: the pid is the
//!   command's, and no environment is touched after fork).

use crate::Ctx;
use crate::args::RunArgs;
use portd_core::sys::{self, SignalSet};
use portd_store::{Error, ErrorKind, GetOptions, Owner};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

/// A second SIGINT within this window kills the child's group.
const DOUBLE_INT: Duration = Duration::from_secs(2);

/// The exit code a shell would report for `status`.
fn code_of(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(c), _) => c as u8,
        (None, Some(sig)) => 128u8.wrapping_add(sig as u8),
        _ => 1,
    }
}

fn self_exe() -> Result<std::path::PathBuf, Error> {
    std::env::current_exe()
        .map_err(|e| Error::new(ErrorKind::Other, format!("cannot find the portd binary: {e}")))
}

pub fn run(ctx: &Ctx, a: &RunArgs) -> Result<u8, Error> {
    let reg = ctx.registry()?;
    let project = super::project(&a.project)?;
    let me = Owner::this_process();
    let opts = GetOptions {
        range: a.range.clone(),
        port: a.port,
        udp: a.udp,
        owner: Some(me),
        command: Some(a.command.clone()),
        require_free: true,
        move_port: a.move_port,
        ..Default::default()
    };
    let lease = reg.get_with(&project, &opts)?;
    let port = lease.entry.port;
    if let Some(from) = lease.moved_from {
        ctx.out.info(&super::moved(&project, from, port, lease.moved_because.as_ref()));
    }
    let started = start(ctx, a, &project, port, lease.bind_tcp_if(a.fd));
    let (child, signals) = match started {
        Ok(x) => x,
        Err(e) => {
            let _ = reg.end_lease(&project, me);
            return Err(e);
        }
    };
    ctx.out.detail(&format!("portd: `{}` on port {port}, pid {}", project.display(), child.id()));
    let terminal = sys::give_terminal(child.id());
    if let Err(e) = reg.set_child(&project, me, child.id()) {
        ctx.out.warn(&format!("could not record the child's pid: {}", e.message()));
    }
    let status = forward_until_exit(child, &signals);
    if let Some(pg) = terminal {
        sys::take_terminal(pg);
    }
    if let Err(e) = reg.end_lease(&project, me) {
        ctx.out.warn(&format!("could not end the lease: {}", e.message()));
    }
    Ok(code_of(status))
}

trait BindIf {
    fn bind_tcp_if(&self, fd: bool) -> Result<Option<std::net::TcpListener>, Error>;
}

impl BindIf for portd_store::Allocation {
    fn bind_tcp_if(&self, fd: bool) -> Result<Option<std::net::TcpListener>, Error> {
        if !fd {
            return Ok(None);
        }
        self.bind_tcp().map(Some).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                portd_store::busy_error(self.entry.port, false)
            } else {
                Error::new(
                    ErrorKind::Other,
                    format!("cannot listen on port {}: {e}", self.entry.port),
                )
            }
        })
    }
}

/// Starts `portd __supervise` as the leader of a new process group.
fn start(
    ctx: &Ctx,
    a: &RunArgs,
    project: &portd_store::Project,
    port: u16,
    listener: Result<Option<std::net::TcpListener>, Error>,
) -> Result<(std::process::Child, SignalSet), Error> {
    let listener = listener?;
    let args: Vec<String> = a.command.iter().map(|s| portd_store::with_port(s, port)).collect();
    // Block before spawning, so no signal slips between spawn and wait.
    let signals =
        SignalSet::block(&[sys::SIGINT, sys::SIGTERM, sys::SIGHUP, sys::SIGQUIT, sys::SIGCHLD])
            .map_err(|e| Error::new(ErrorKind::Other, format!("cannot block signals: {e}")))?;
    let mut cmd = Command::new(self_exe()?);
    cmd.arg("__supervise").arg("--name").arg(project.display());
    if listener.is_some() {
        cmd.arg("--fd");
    }
    cmd.arg("--").args(&args);
    portd_store::lease_env(&mut cmd, port, project);
    if let Some(h) = &a.host {
        cmd.env("HOST", h);
    }
    cmd.process_group(0);
    sys::clear_signal_mask(&mut cmd);
    sys::parent_death_signal(&mut cmd, sys::SIGUSR2);
    if let Some(l) = &listener {
        sys::pass_fd3(&mut cmd, l.as_raw_fd());
    }
    let child = cmd
        .spawn()
        .map_err(|e| Error::new(ErrorKind::Other, format!("cannot start `{}`: {e}", args[0])))?;
    drop(listener);
    ctx.out.detail(&format!("portd: supervising pid {}", child.id()));
    Ok((child, signals))
}

/// Forwards INT/TERM/HUP/QUIT to the child's group until it exits.
fn forward_until_exit(mut child: std::process::Child, signals: &SignalSet) -> ExitStatus {
    let group = -(child.id() as i32);
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return st;
        }
        match signals.wait() {
            Ok(s) if s == sys::SIGCHLD => {}
            Ok(s) => {
                let _ = sys::kill(group, s);
            }
            Err(_) => {
                if let Ok(st) = child.wait() {
                    return st;
                }
            }
        }
    }
}

/// `portd __supervise`: leads the child's process group (see module docs).
pub fn supervise(name: &str, fd: bool, command: &[String]) -> u8 {
    let Ok(signals) = SignalSet::block(&[
        sys::SIGINT,
        sys::SIGTERM,
        sys::SIGHUP,
        sys::SIGQUIT,
        sys::SIGUSR2,
        sys::SIGCHLD,
    ]) else {
        return 1;
    };
    let group = -(sys::pgrp() as i32);
    let mut cmd = if fd {
        let Ok(exe) = std::env::current_exe() else { return 127 };
        let mut c = Command::new(exe);
        c.arg("__exec").arg("--name").arg(name).arg("--").args(command);
        c
    } else {
        let mut c = Command::new(&command[0]);
        c.args(&command[1..]);
        c
    };
    sys::clear_signal_mask(&mut cmd);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return exec_failed(&command[0], &e),
    };
    let mut last_int: Option<Instant> = None;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return code_of(st);
        }
        match signals.wait() {
            Ok(s) if s == sys::SIGUSR2 => {
                // `portd run` died: take the whole group down, ourselves included.
                let _ = sys::kill(group, sys::SIGKILL);
            }
            Ok(s) if s == sys::SIGINT => {
                if last_int.is_some_and(|t| t.elapsed() < DOUBLE_INT) {
                    let _ = sys::kill(group, sys::SIGKILL);
                }
                last_int = Some(Instant::now());
            }
            // The child got the same signal through the group.
            Ok(_) => {}
            Err(_) => return child.wait().map(code_of).unwrap_or(1),
        }
    }
}

/// `portd __exec`: sets the systemd socket-activation variables for fd 3
/// with this process's own pid, then becomes the command.
pub fn exec(name: &str, command: &[String]) -> u8 {
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..])
        .env("LISTEN_FDS", "1")
        .env("LISTEN_PID", std::process::id().to_string())
        .env("LISTEN_FDNAMES", name);
    // This process's main ignored SIGXFSZ; the server gets the default.
    sys::clear_signal_mask(&mut cmd);
    let err = cmd.exec();
    exec_failed(&command[0], &err)
}

fn exec_failed(program: &str, e: &std::io::Error) -> u8 {
    crate::printer::Printer { json: false, quiet: false, verbose: false }
        .error(&format!("cannot run `{program}`: {e}"), None);
    if e.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 }
}
