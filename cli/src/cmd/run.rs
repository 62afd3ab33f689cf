//! `portd run`: a supervised lease in the foreground. This module maps the
//! arguments onto the library's lease for a command
//! (`portd_store::CommandLease`, shared with `Registry::spawn`) and its
//! supervisor (`portd_store::supervisor`, which documents the processes,
//! their states and signals), and prints; `__supervise` and `__exec` are
//! the supervisor's own processes.

use crate::Ctx;
use crate::args::RunArgs;
use portd_serve::inject;
use portd_store::supervisor::{self, Foreground, Launch, StartError};
use portd_store::{Allocation, CommandLease, Error, ErrorKind, GetOptions};
use std::net::{IpAddr, TcpListener};

/// Where `--fd` listens.
enum Listen {
    /// No `--fd`.
    No,
    /// 127.0.0.1 and, where IPv6 is up, ::1.
    Loopback,
    /// `--host ADDR`.
    On(IpAddr),
}

fn listen_of(a: &RunArgs) -> Result<Listen, Error> {
    Ok(match (a.fd, a.host.as_deref()) {
        (false, _) => Listen::No,
        (true, None | Some("localhost")) => Listen::Loopback,
        (true, Some(h)) => Listen::On(h.parse().map_err(|_| {
            super::usage(format!("`--host {h}` is not an IP address, which `--fd` needs"))
                .with_hint(
                    "use e.g. `127.0.0.1`, `::1`, `0.0.0.0` (every interface) or `localhost`",
                )
        })?),
    })
}

pub fn run(ctx: &Ctx, a: &RunArgs) -> Result<u8, Error> {
    if ctx.out.json {
        return Err(super::usage("`run` prints no data, so `--json` does not apply")
            .with_hint("drop `--json`; `portd show NAME --json` describes the running lease"));
    }
    let listen = listen_of(a)?;
    let project = super::project(&a.project)?;
    // A command that cannot start must not touch the registry (nor make
    // its directory): checked before it is opened, and by the lease again.
    supervisor::resolve_program(&a.command[0]).map_err(Error::from)?;
    let exe = super::start::exe()?;
    let reg = ctx.registry()?;
    let opts = GetOptions {
        range: a.range.clone(),
        port: a.port,
        udp: a.udp,
        move_port: a.move_port,
        ..Default::default()
    };
    let mut lease = reg.lease_command(&project, &a.command, &opts)?;
    let port = lease.port();
    // The error that follows stays the command's; a lease left behind is
    // said first.
    let abandon = |lease: CommandLease<'_>| {
        if let Err(e) = lease.abandon() {
            ctx.out.warn(&format!(
                "could not undo the lease of `{}` (port {port}): {}",
                project.display(),
                e.message()
            ));
        }
    };
    let listeners = match bind(lease.allocation(), &listen) {
        Ok(l) => l,
        Err(e) => {
            abandon(lease);
            return Err(e);
        }
    };
    let name = project.display().to_owned();
    let argv = inject(ctx, a, lease.argv(), port);
    let launch = Launch { name: name.clone(), argv, listeners, kill_grace: a.kill_grace };
    let started = Foreground::start(&exe, launch, |cmd| {
        lease.set_env(cmd);
        if let Some(h) = &a.host {
            cmd.env("HOST", h);
        }
    });
    let fg = match started {
        Ok(fg) => fg,
        Err(e) => {
            abandon(lease);
            return Err(match e {
                StartError::Command(c) => c.into(),
                StartError::Other(e) => e,
            });
        }
    };
    // Said once the command runs: a start that fails undoes them.
    super::allocation_notes(ctx, &project, lease.allocation());
    if !a.fd {
        safety_net(ctx.out, name.clone(), fg.command_pid(), port, &a.command);
    }
    ctx.out.detail(&format!(
        "portd: `{name}` on port {port}, pid {} (supervisor {})",
        fg.command_pid(),
        fg.supervisor_pid()
    ));
    if let Err(e) = lease.started(fg.command_pid()) {
        ctx.out.warn(&format!("could not record the command's pid: {}", e.message()));
    }
    let exit = fg.wait();
    if let Err(e) = lease.end() {
        ctx.out.warn(&format!("could not end the lease: {}", e.message()));
    }
    // Killed by a signal, the command's status is passed on as such (a
    // shell's loop around `portd run` stops on Ctrl-C, as around the
    // command itself); 128+N only if the signal does not end a process.
    if let supervisor::Exit::Signal(n) = exit {
        portd_core::sys::die_of_signal(n);
    }
    Ok(exit.shell_code())
}

/// The command with the flags that put a dev server which ignores `PORT`
/// on its port (`portd_serve::inject`), saying what was added; as it is
/// with `--no-inject`. The command runs in the current directory, whose
/// `package.json` holds the scripts it may name.
fn inject(ctx: &Ctx, a: &RunArgs, argv: Vec<String>, port: u16) -> Vec<String> {
    if a.no_inject {
        return argv;
    }
    let dir = std::path::Path::new(".");
    let plan = inject::plan_on(&argv, dir, port, a.host.as_deref().unwrap_or(inject::LOOPBACK));
    for line in plan.lines() {
        ctx.out.info(&line);
    }
    plan.argv
}

/// After a while, a look at where the command's group listens: a server
/// that ignores `PORT` is warned about (with the fix), once. The first look
/// comes [`SAFETY_NET_AFTER`] the start; while the group listens nowhere
/// yet (a slow start), it looks again at that interval, [`SAFETY_NET_LOOKS`]
/// times in all. Only warns: the command may not be a server at all.
fn safety_net(out: crate::printer::Printer, name: String, pgid: u32, port: u16, argv: &[String]) {
    let fix = format!("portd run {name} -- {} --port {{port}}", crate::printer::command_line(argv));
    // A thread started after the signals were blocked keeps them blocked.
    std::thread::spawn(move || {
        for _ in 0..SAFETY_NET_LOOKS {
            std::thread::sleep(SAFETY_NET_AFTER);
            match portd_serve::elsewhere::listens(pgid, &[port]) {
                portd_serve::elsewhere::Listens::Nowhere => continue,
                portd_serve::elsewhere::Listens::Ours => return,
                portd_serve::elsewhere::Listens::Elsewhere(other) => {
                    out.warn(&format!(
                        "`{name}` listens on port {other}, not on its port {port}: it ignores `PORT`"
                    ));
                    out.info(&format!(
                        "hint: pass it the port, e.g. `{fix}`, or read `PORT` in the server"
                    ));
                    return;
                }
            }
        }
    });
}

/// When [`safety_net`] looks first, and how long it waits between looks.
const SAFETY_NET_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// How many times [`safety_net`] looks at a group that listens nowhere.
const SAFETY_NET_LOOKS: u32 = 12;

fn bind(lease: &Allocation, listen: &Listen) -> Result<Vec<TcpListener>, Error> {
    let port = lease.entry.port;
    let (bound, what) = match listen {
        Listen::No => return Ok(Vec::new()),
        Listen::Loopback => (lease.bind_tcp_loopback(), "loopback".to_owned()),
        Listen::On(ip) => (lease.bind_tcp_on(*ip).map(|l| vec![l]), format!("`{ip}`")),
    };
    bound.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            portd_store::busy_error(port, false)
        } else {
            Error::new(ErrorKind::Other, format!("cannot listen on port {port} of {what}: {e}"))
        }
    })
}

/// `portd __supervise`: the supervisor process.
pub fn supervise(fds: usize) -> u8 {
    supervisor::supervise(fds)
}

/// `portd __exec`: the socket-activation variables, then the command.
pub fn exec(name: &str, fds: usize, argv: &[String]) -> u8 {
    supervisor::exec_with_fds(name, fds, argv)
}
