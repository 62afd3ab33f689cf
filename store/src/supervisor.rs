//! Supervising a command on a leased port: one implementation, used in the
//! foreground by `portd run` (and meant for background servers too).
//!
//! Two processes do the work, each with one job:
//! - the **owner** ([`Foreground`], inside `portd run`) holds the lease,
//!   forwards SIGINT/SIGTERM/SIGHUP/SIGQUIT to the command's process group
//!   (each followed by SIGCONT, so that a stopped group can die) and
//!   SIGUSR1/SIGUSR2 (log rotation, upgrades), drops
//!   SIGALRM/SIGVTALRM/SIGPROF/SIGIO, does job control on a terminal, and
//!   returns the command's status;
//! - the **supervisor** ([`supervise`], the process `portd __supervise`,
//!   whose arguments come on a pipe so that its command line does not hold
//!   the command's) starts the command as the leader of a new process group
//!   and joins that group itself, is a child subreaper (orphaned
//!   descendants are reparented to it), reports the command's pid to the
//!   owner once its exec has succeeded, tells the owner when the command
//!   stops (with a real-time signal of its own,
//!   [`sys::stop_report_signal`], which a user's SIGUSR1 cannot hide) and
//!   continues the owner when someone else continues the command, and
//!   when the command exits stops everything the command left behind:
//!   SIGTERM (and SIGCONT), then SIGKILL after a grace period or at a
//!   second Ctrl-C. It forwards nothing: a signal that reaches it from
//!   outside was, as far as it can tell, sent to the whole group (which the
//!   command got too), so it only counts Ctrl-Cs and drops the rest, never
//!   dying of one. It gets a real-time parent-death signal from the owner
//!   and takes it as the owner's death only if its parent is no longer the
//!   owner; then it takes the whole group down. It signals the owner only
//!   while the owner is its parent. The command gets SIGKILL when the
//!   supervisor dies.
//!
//! Threads: [`Foreground`] must run in the main thread of a
//! single-threaded process (see [`Foreground::start`]).
//!
//! The command's pid is also its process group id, which is what the
//! registry records as the lease's `child_pid`.
//!
//! What this module does not do: decide the port (the registry does) or
//! print anything but the one line about stopped leftovers.

use crate::error::{Error, ErrorKind};
use portd_core::sys::{self, ChildEvent, SignalSet};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long what a command leaves behind gets between SIGTERM and SIGKILL.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(5);

/// A second SIGINT within this window kills the command's group.
pub const DOUBLE_INT: Duration = Duration::from_secs(2);

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

impl Exit {
    /// The exit code a shell reports for it (128+N for signal N).
    pub fn shell_code(self) -> u8 {
        match self {
            Exit::Code(c) => c as u8,
            Exit::Signal(s) => 128u8.wrapping_add(s as u8),
        }
    }
}

/// Where a supervised command is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The supervisor is starting the command.
    Starting,
    /// The command runs.
    Running,
    /// The command's group is stopped (job control); the owner, on a
    /// terminal, has stopped itself too.
    Suspended,
    /// The command has exited; what it left behind is being stopped.
    Stopping,
    /// Done.
    Exited(Exit),
}

/// A command that cannot be started, as a shell reports it: exit 127 when
/// the program is not found, 126 when it is found but cannot be executed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CannotStart {
    /// The program as given.
    pub program: String,
    /// Why, in a few words.
    pub reason: String,
    /// 127 (not found) or 126 (not executable, a directory, …).
    pub code: u8,
}

impl fmt::Display for CannotStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot run `{}`: {}", self.program, self.reason)
    }
}

impl CannotStart {
    fn new(program: &str, reason: &str, code: u8) -> Self {
        CannotStart { program: program.to_owned(), reason: reason.to_owned(), code }
    }

    fn of_io(program: &str, e: &std::io::Error) -> Self {
        let code = if e.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 };
        let text = e.to_string();
        let reason = text.split(" (os error").next().unwrap_or(&text).to_lowercase();
        CannotStart::new(program, &reason, code)
    }

    /// A failed exec of `program`, which [`resolve_program`] found: "not
    /// found" then means its interpreter (`#!` line) or loader is missing,
    /// which a shell reports as 126.
    pub(crate) fn of_exec(program: &str, e: &std::io::Error) -> Self {
        let c = CannotStart::of_io(program, e);
        if c.code == 127 && resolve_program(program).is_ok() {
            return CannotStart::new(program, "bad interpreter or loader: not found", 126);
        }
        c
    }
}

impl From<CannotStart> for Error {
    /// [`ErrorKind::CommandNotFound`] for 127,
    /// [`ErrorKind::CommandNotExecutable`] for 126.
    fn from(c: CannotStart) -> Error {
        let kind = if c.code == 127 {
            ErrorKind::CommandNotFound
        } else {
            ErrorKind::CommandNotExecutable
        };
        Error::new(kind, c.to_string())
    }
}

/// Finds the file `program` names, as `execvp` would: a name with a `/` is
/// a path, anything else is looked up in `PATH`. Checked before a lease is
/// taken, so a command that cannot start changes nothing.
pub fn resolve_program(program: &str) -> Result<PathBuf, CannotStart> {
    resolve_program_in(program, None, None)
}

/// [`resolve_program`] for a command run in `dir` (a relative path is
/// taken from there) with `path` as its `PATH` (`None`: this process's).
pub fn resolve_program_in(
    program: &str,
    dir: Option<&Path>,
    path: Option<&std::ffi::OsStr>,
) -> Result<PathBuf, CannotStart> {
    let check = |p: &Path| -> Result<(), CannotStart> {
        let m = std::fs::metadata(p).map_err(|e| CannotStart::of_io(program, &e))?;
        if m.is_dir() {
            return Err(CannotStart::new(program, "is a directory", 126));
        }
        if !m.is_file() || !sys::executable(p) {
            return Err(CannotStart::new(program, "permission denied", 126));
        }
        Ok(())
    };
    if program.is_empty() {
        return Err(CannotStart::new(program, "command not found", 127));
    }
    let base = dir.map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    if program.contains('/') {
        let p = if dir.is_some() { base.join(program) } else { PathBuf::from(program) };
        return check(&p).map(|()| p);
    }
    let path = path
        .map(std::ffi::OsStr::to_os_string)
        .or_else(|| std::env::var_os("PATH"))
        .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    let mut denied = None;
    for dir in std::env::split_paths(&path) {
        let dir = if dir.as_os_str().is_empty() { base.clone() } else { base.join(dir) };
        let p = dir.join(program);
        match check(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.code == 126 && std::fs::metadata(&p).is_ok_and(|m| m.is_file()) => {
                denied.get_or_insert(e);
            }
            Err(_) => {}
        }
    }
    Err(denied.unwrap_or_else(|| CannotStart::new(program, "command not found", 127)))
}

/// Why [`Foreground::start`] failed.
#[derive(Debug)]
pub enum StartError {
    /// The command could not be started (exit 127 or 126).
    Command(CannotStart),
    /// Anything else: the supervisor could not be started.
    Other(Error),
}

/// What to supervise.
#[derive(Debug)]
pub struct Launch {
    /// The name the command serves under (`LISTEN_FDNAMES`, messages).
    pub name: String,
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// Listening sockets for the command, as descriptors 3, 4, … with the
    /// systemd variables (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`).
    pub listeners: Vec<std::net::TcpListener>,
    /// Between SIGTERM and SIGKILL for what the command leaves behind.
    pub kill_grace: Duration,
}

/// What the supervisor process is told by its owner. Only `--fds` is on
/// its command line (`EXE __supervise --fds N`); the rest, the command's
/// argv included, comes on an inherited pipe (descriptor `4 + fds`, after
/// the sockets and the report pipe), so that a `pkill -f PATTERN` aimed at
/// the command does not match the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuperviseArgs {
    /// See [`Launch::name`].
    pub name: String,
    /// How many listening sockets arrive as descriptors 3, 4, …; the
    /// report pipe and the pipe these arguments come on follow them.
    pub fds: usize,
    /// See [`Launch::kill_grace`].
    pub kill_grace: Duration,
    /// The owner runs on its session's terminal (job control): stop along
    /// with the command, and give the command's group the terminal if the
    /// owner has it.
    pub terminal: bool,
    /// The owner's pid: the supervisor's parent, as long as it lives.
    pub owner: u32,
    /// The program and its arguments.
    pub argv: Vec<String>,
}

impl SuperviseArgs {
    /// The command-line arguments after `EXE` (`__supervise --fds N`).
    pub fn to_args(&self) -> Vec<String> {
        vec!["__supervise".to_owned(), "--fds".to_owned(), self.fds.to_string()]
    }

    /// The rest, as written on the pipe: the length in bytes of what
    /// follows, then NUL-terminated fields (name, grace in ms, terminal
    /// 0/1, owner pid, then the argv; none of them can hold a NUL). The
    /// length is a field too, NUL-terminated, in decimal.
    pub fn encode(&self) -> Vec<u8> {
        let mut fields = vec![
            self.name.clone(),
            self.kill_grace.as_millis().to_string(),
            u8::from(self.terminal).to_string(),
            self.owner.to_string(),
        ];
        fields.extend(self.argv.iter().cloned());
        let mut out = Vec::new();
        for f in fields {
            out.extend_from_slice(f.as_bytes());
            out.push(0);
        }
        let mut all = format!("{}\0", out.len()).into_bytes();
        all.append(&mut out);
        all
    }

    /// Reads what [`SuperviseArgs::encode`] wrote; `None` if it is not
    /// that, or not all of it (a write cut short, which could otherwise
    /// read as a shorter argv).
    pub fn decode(fds: usize, bytes: &[u8]) -> Option<SuperviseArgs> {
        let at = bytes.iter().position(|&b| b == 0)?;
        let len: usize = std::str::from_utf8(&bytes[..at]).ok()?.parse().ok()?;
        let rest = &bytes[at + 1..];
        if rest.len() != len {
            return None;
        }
        let body = rest.strip_suffix(&[0])?;
        let mut it = body.split(|&b| b == 0).map(|f| String::from_utf8(f.to_vec()).ok());
        let name = it.next()??;
        let kill_grace = Duration::from_millis(it.next()??.parse().ok()?);
        let terminal = match it.next()??.as_str() {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        let owner = it.next()??.parse().ok()?;
        let argv = it.collect::<Option<Vec<String>>>()?;
        Some(SuperviseArgs { name, fds, kill_grace, terminal, owner, argv })
    }
}

/// The owner's side of a supervised command, in the foreground.
#[derive(Debug)]
pub struct Foreground {
    supervisor: u32,
    command: u32,
    /// This process's group, to take the terminal back to, when on a terminal.
    terminal: Option<u32>,
    signals: SignalSet,
    name: String,
    kill_grace: Duration,
    phase: Phase,
    /// Signals taken while stopping leftovers in [`Foreground::poll`].
    stashed: Vec<sys::Received>,
}

impl Foreground {
    /// Starts `exe __supervise …` (see [`SuperviseArgs`]), which starts the
    /// command. `configure` sets the environment, which the command
    /// inherits. Returns once the command runs, with its pid known.
    ///
    /// Blocks SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCHLD,
    /// SIGCONT, SIGALRM, SIGVTALRM, SIGPROF, SIGIO and the supervisor's
    /// stop report ([`sys::stop_report_signal`]) in the calling thread
    /// (they are handled in [`Foreground::wait`]: the timer and I/O signals,
    /// which a `pkill` meant for the command may send, are dropped) and
    /// makes this process a child subreaper.
    ///
    /// Threads: call it from the main thread of a single-threaded process
    /// that supervises this one command, and call [`Foreground::wait`]
    /// from the same thread. The signal mask is per thread, so another
    /// thread that does not block these signals would take them instead
    /// (a Ctrl-C would kill the process instead of being forwarded); the
    /// supervisor's parent-death signal fires when the *calling thread*
    /// exits; and [`Foreground::wait`] reaps every child of the process
    /// and stops its descendants, including those of other threads.
    pub fn start(
        exe: &Path,
        launch: Launch,
        configure: impl FnOnce(&mut Command),
    ) -> Result<Foreground, StartError> {
        let other = |what: &str, e: std::io::Error| {
            StartError::Other(Error::new(ErrorKind::Other, format!("{what}: {e}")).with_source(e))
        };
        // Blocked before spawning, so no signal slips between spawn and wait.
        let signals = block_owner_signals().map_err(|e| other("cannot block signals", e))?;
        let terminal = sys::controlling_terminal().then(sys::pgrp);
        // If the supervisor dies, what it adopted comes here to be stopped.
        let _ = sys::set_child_subreaper();
        let (mut reader, writer) = std::io::pipe().map_err(|e| other("cannot make a pipe", e))?;
        let (args_in, mut args_out) =
            std::io::pipe().map_err(|e| other("cannot make a pipe", e))?;
        let args = SuperviseArgs {
            name: launch.name.clone(),
            fds: launch.listeners.len(),
            kill_grace: launch.kill_grace,
            terminal: terminal.is_some(),
            owner: std::process::id(),
            argv: launch.argv,
        };
        let mut cmd = Command::new(exe);
        cmd.args(args.to_args());
        configure(&mut cmd);
        sys::clear_signal_mask(&mut cmd);
        sys::parent_death_signal(&mut cmd, sys::owner_death_signal());
        let mut fds: Vec<_> = launch.listeners.iter().map(AsRawFd::as_raw_fd).collect();
        fds.push(writer.as_raw_fd());
        fds.push(args_in.as_raw_fd());
        sys::pass_fds(&mut cmd, fds);
        let child = cmd
            .spawn()
            .map_err(|e| other(&format!("cannot start the supervisor `{}`", exe.display()), e))?;
        drop(writer);
        drop(args_in);
        drop(launch.listeners);
        // A supervisor that died already closed its end: it reports nothing
        // and is waited for below.
        let _ = args_out.write_all(&args.encode());
        drop(args_out);
        let supervisor = child.id();
        let mut report = String::new();
        let _ = reader.read_to_string(&mut report);
        let mut fg = Foreground {
            supervisor,
            command: 0,
            terminal,
            signals,
            name: launch.name,
            kill_grace: launch.kill_grace,
            phase: Phase::Starting,
            stashed: Vec::new(),
        };
        match Report::parse(&report) {
            Some(Report::Started(pid)) => {
                fg.command = pid;
                fg.phase = Phase::Running;
                Ok(fg)
            }
            failed => {
                // The supervisor exits at once after a failed start.
                let exit = loop {
                    match sys::wait_child(supervisor as i32, true) {
                        Ok(Some((_, ChildEvent::Exited(c)))) => break Exit::Code(c),
                        Ok(Some((_, ChildEvent::Signaled(s)))) => break Exit::Signal(s),
                        Ok(_) => {}
                        Err(_) => break Exit::Code(1),
                    }
                };
                // A command that failed to exec may have taken the terminal
                // for a group that no longer exists: take it back.
                if let (Some(ours), Some(g)) = (terminal, sys::foreground_group())
                    && g != ours
                    && sys::kill(-(g as i32), 0).is_err()
                {
                    let _ = sys::set_foreground(ours);
                }
                Err(match failed {
                    Some(Report::Failed(c)) => StartError::Command(c),
                    _ => StartError::Other(Error::new(
                        ErrorKind::Other,
                        format!(
                            "the supervisor of `{}` ended before starting it ({})",
                            fg.name,
                            describe(exit)
                        ),
                    )),
                })
            }
        }
    }

    /// One step of supervision, for an owner that runs its own loop (the
    /// background supervisor of a managed server) rather than
    /// [`Foreground::wait`]: reaps children; once the supervisor has
    /// exited, stops what is left of the command's group and of this
    /// process's adopted descendants (one line on stderr) and returns the
    /// command's exit. Otherwise waits up to `timeout` (`None`: forever)
    /// for one of the blocked signals and returns it unhandled (SIGCHLD is
    /// handled here), or [`Polled::Timeout`].
    pub fn poll(&mut self, timeout: Option<Duration>) -> Polled {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            while let Ok(Some((pid, ev))) = sys::wait_child(-1, false) {
                match ev {
                    _ if pid != self.supervisor => {}
                    ChildEvent::Exited(c) => self.phase = Phase::Exited(Exit::Code(c)),
                    ChildEvent::Signaled(s) => self.phase = Phase::Exited(Exit::Signal(s)),
                    ChildEvent::Stopped(_) | ChildEvent::Continued => {}
                }
            }
            if let Phase::Exited(exit) = self.phase {
                let signals = &self.signals;
                let stashed = &mut self.stashed;
                let left = stop_leftovers_until(Some(self.command), true, self.kill_grace, |d| {
                    if let Ok(Some(r)) = signals.wait_for(Some(d))
                        && r.signal != sys::SIGCHLD
                    {
                        stashed.push(r);
                    }
                    false
                });
                say_stopped(&self.name, &left, self.kill_grace);
                return Polled::Exited(exit);
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            match self.signals.wait_for(left) {
                Ok(Some(r)) if r.signal == sys::SIGCHLD => {}
                Ok(Some(r)) => return Polled::Signal(r),
                Ok(None) => return Polled::Timeout,
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// The signals (other than SIGCHLD) that arrived while
    /// [`Foreground::poll`] was stopping what the command left behind, for
    /// the owner to act on now.
    pub fn take_stashed(&mut self) -> Vec<sys::Received> {
        std::mem::take(&mut self.stashed)
    }

    /// Sends `signal` and SIGCONT to the command's process group (a
    /// stopped group can then act on it).
    pub fn signal_group(&self, signal: i32) {
        let _ = sys::kill(-(self.command as i32), signal);
        let _ = sys::kill(-(self.command as i32), sys::SIGCONT);
    }

    /// The command's pid, which is also its process group id.
    pub fn command_pid(&self) -> u32 {
        self.command
    }

    /// The supervisor's pid.
    pub fn supervisor_pid(&self) -> u32 {
        self.supervisor
    }

    /// Forwards signals and does job control until the supervisor exits,
    /// then returns the command's exit. If the supervisor was killed, stops
    /// what is left of the command's group and of this process's adopted
    /// descendants (saying so on stderr), and returns the supervisor's
    /// signal.
    pub fn wait(mut self) -> Exit {
        let group = -(self.command as i32);
        loop {
            while let Ok(Some((pid, ev))) = sys::wait_child(-1, false) {
                if pid != self.supervisor {
                    continue; // an adopted orphan, reaped
                }
                match ev {
                    ChildEvent::Exited(c) => self.phase = Phase::Exited(Exit::Code(c)),
                    ChildEvent::Signaled(s) => self.phase = Phase::Exited(Exit::Signal(s)),
                    // Only SIGSTOP stops the supervisor (it blocks the
                    // terminal's stop signals): a `kill -STOP` of the whole
                    // group, which the supervisor cannot report.
                    ChildEvent::Stopped(_) if self.command_stopped() => self.suspend(),
                    ChildEvent::Stopped(_) | ChildEvent::Continued => {}
                }
            }
            if let Phase::Exited(exit) = self.phase {
                // Normally the supervisor has stopped everything; if it was
                // killed, what is left is this process's to stop.
                self.phase = Phase::Stopping;
                let mut last_int = None;
                let signals = &self.signals;
                let left = stop_leftovers_until(Some(self.command), true, self.kill_grace, |d| {
                    match signals.wait_for(Some(d)) {
                        Ok(Some(r)) if r.signal == sys::SIGINT => double_int(&mut last_int),
                        _ => false,
                    }
                });
                say_stopped(&self.name, &left, self.kill_grace);
                self.phase = Phase::Exited(exit);
                self.restore_terminal();
                return exit;
            }
            match self.signals.wait_for(None) {
                Ok(Some(r)) if r.signal == sys::SIGCHLD => {}
                Ok(Some(r)) if r.signal == sys::SIGCONT => self.resume(),
                // The supervisor: the command's group stopped (from
                // anyone else, this signal means nothing).
                Ok(Some(r)) if r.signal == sys::stop_report_signal() => {
                    if r.sender != Some(self.supervisor) || !self.command_stopped() {
                        // Not the supervisor's, or stale.
                    } else if self.terminal.is_some() && sys::in_foreground() {
                        // This job is in the foreground already (`fg` of a
                        // running job sends no SIGCONT): the command stopped
                        // reading a terminal it did not have; hand it over.
                        self.resume();
                    } else {
                        self.suspend();
                    }
                }
                // Anyone's USR1/USR2 (log rotation, upgrade): to the group.
                Ok(Some(r)) if r.signal == sys::SIGUSR1 || r.signal == sys::SIGUSR2 => {
                    let _ = sys::kill(group, r.signal);
                }
                Ok(Some(r)) if ENDING.contains(&r.signal) => {
                    let _ = sys::kill(group, r.signal);
                    let _ = sys::kill(group, sys::SIGCONT);
                }
                // Timer and I/O signals: not this process's business.
                Ok(Some(_)) | Ok(None) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    fn command_stopped(&self) -> bool {
        sys::proc_stat(self.command).is_ok_and(|s| s.state == 'T')
    }

    /// The command's group stopped: on a terminal, take it back and stop
    /// this process too (so the shell's job stops); once continued, hand
    /// the terminal over again if this process is in the foreground (`fg`,
    /// not `bg`) and continue the group.
    fn suspend(&mut self) {
        let Some(ours) = self.terminal else { return };
        self.phase = Phase::Suspended;
        self.restore_terminal();
        // The whole job stops, as with `sudo`: a shell waiting in
        // `sh -c 'portd run …; …'` stops too, so the job is reported
        // stopped and the prompt comes back.
        let _ = sys::kill(sys::job_target(std::process::id(), ours), sys::SIGTSTP);
        // Continued.
        self.resume();
    }

    /// This process was continued (`fg`, `bg`, or a SIGCONT from anyone):
    /// in the terminal's foreground, hand the terminal to the command's
    /// group; continue the group.
    fn resume(&mut self) {
        if self.terminal.is_some() && sys::in_foreground() {
            let _ = sys::set_foreground(self.command);
        }
        let _ = sys::kill(-(self.command as i32), sys::SIGCONT);
        if self.phase == Phase::Suspended {
            self.phase = Phase::Running;
        }
    }

    /// Takes the terminal back from the command's group, if it has it.
    fn restore_terminal(&self) {
        if let Some(ours) = self.terminal
            && self.command != 0
            && sys::foreground_group() == Some(self.command)
        {
            let _ = sys::set_foreground(ours);
        }
    }
}

/// Blocks, in the calling thread and the threads it starts later, the
/// signals an owner handles ([`Foreground::start`] lists them). A process
/// that starts threads before [`Foreground::start`] calls this first, so
/// that no thread takes these signals instead of the owner's loop.
pub fn block_owner_signals() -> std::io::Result<SignalSet> {
    SignalSet::block(&[
        sys::SIGINT,
        sys::SIGTERM,
        sys::SIGHUP,
        sys::SIGQUIT,
        sys::SIGUSR1,
        sys::SIGUSR2,
        sys::SIGCHLD,
        sys::SIGCONT,
        sys::SIGALRM,
        sys::SIGVTALRM,
        sys::SIGPROF,
        sys::SIGIO,
        sys::stop_report_signal(),
    ])
}

/// What [`Foreground::poll`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polled {
    /// The command ended (and what it left was stopped).
    Exited(Exit),
    /// A signal other than SIGCHLD arrived.
    Signal(sys::Received),
    /// The time ran out.
    Timeout,
}

/// What the supervisor tells the owner, one line on the report pipe.
enum Report {
    Started(u32),
    Failed(CannotStart),
}

impl Report {
    fn line(&self) -> String {
        match self {
            Report::Started(pid) => format!("started {pid}\n"),
            Report::Failed(c) => format!("failed {} {}\t{}\n", c.code, c.program, c.reason),
        }
    }

    fn parse(s: &str) -> Option<Report> {
        let s = s.strip_suffix('\n')?;
        if let Some(pid) = s.strip_prefix("started ") {
            return pid.parse().ok().map(Report::Started);
        }
        let rest = s.strip_prefix("failed ")?;
        let (code, rest) = rest.split_once(' ')?;
        let (program, reason) = rest.rsplit_once('\t')?;
        Some(Report::Failed(CannotStart::new(program, reason, code.parse().ok()?)))
    }
}

fn describe(exit: Exit) -> String {
    match exit {
        Exit::Code(c) => format!("exit {c}"),
        Exit::Signal(s) => format!("signal {s}"),
    }
}

/// The signals that end the command's group when `portd run` gets them: each
/// is forwarded, then SIGCONT.
const ENDING: [i32; 4] = [sys::SIGINT, sys::SIGTERM, sys::SIGHUP, sys::SIGQUIT];

/// The supervisor process (`portd __supervise --fds N`): reads its
/// [`SuperviseArgs`] from descriptor `4 + fds`, then supervises (see the
/// module docs). Returns the exit code to exit with: the command's, as a
/// shell reports it.
pub fn supervise(fds: usize) -> u8 {
    let mut bytes = Vec::new();
    let read = sys::inherited_fd(4 + fds as i32)
        .map(std::fs::File::from)
        .map(|mut f| f.read_to_end(&mut bytes));
    match (read, SuperviseArgs::decode(fds, &bytes)) {
        (Some(Ok(_)), Some(a)) => supervise_with(&a),
        _ => {
            let _ = writeln!(std::io::stderr(), "error: `__supervise` is started by `portd run`");
            2
        }
    }
}

fn supervise_with(a: &SuperviseArgs) -> u8 {
    // The terminal's stop signals are blocked too: the supervisor must stay
    // able to act while the command is stopped (to report the stop, and to
    // continue the owner when someone else continues the command). So are
    // the signals a `pkill` meant for the command may send that would end
    // this process by default: it drops them (its command line does not
    // hold the command's, but `kill -USR1 -PGID` reaches it as a member of
    // the command's group, and the command got that signal already).
    let death = sys::owner_death_signal();
    let Ok(signals) = SignalSet::block(&[
        sys::SIGINT,
        sys::SIGTERM,
        sys::SIGHUP,
        sys::SIGQUIT,
        sys::SIGUSR1,
        sys::SIGUSR2,
        death,
        sys::SIGCHLD,
        sys::SIGCONT,
        sys::SIGTSTP,
        sys::SIGTTIN,
        sys::SIGTTOU,
        sys::SIGALRM,
        sys::SIGVTALRM,
        sys::SIGPROF,
        sys::SIGIO,
    ]) else {
        return 1;
    };
    let owner = a.owner;
    // The kernel reparents an orphan before it sends the parent-death
    // signal: this process's parent is its owner exactly while the owner
    // lives (a dead owner's pid may be reused; it is never signalled then).
    let owner_alive = || sys::ppid() == owner;
    if !owner_alive() {
        return 1; // the owner died before this process could start anything
    }
    let listeners: Vec<OwnedFd> =
        (0..a.fds).filter_map(|i| sys::inherited_fd(3 + i as i32)).collect();
    let mut report = sys::inherited_fd(3 + a.fds as i32).map(std::fs::File::from);
    let mut tell = |r: Report| {
        if let Some(mut f) = report.take() {
            let _ = f.write_all(r.line().as_bytes());
        }
    };
    let Some(program) = a.argv.first() else {
        tell(Report::Failed(CannotStart::new("", "no command", 127)));
        return 127;
    };
    let _ = sys::set_child_subreaper();
    // With `--fd`, `__exec` tells on this pipe whether the command's exec
    // failed (one line) or succeeded (end of file: the pipe is
    // close-on-exec in `__exec`).
    let mut status = None;
    let mut cmd = if a.fds > 0 {
        // `__exec` sets LISTEN_PID to its own pid, then becomes the command.
        let Ok(exe) = std::env::current_exe() else {
            tell(Report::Failed(CannotStart::new(program, "cannot find portd itself", 127)));
            return 127;
        };
        let Ok(pipe) = std::io::pipe() else {
            tell(Report::Failed(CannotStart::new(program, "cannot make a pipe", 126)));
            return 126;
        };
        status = Some(pipe);
        let mut c = Command::new(exe);
        c.arg("__exec").arg("--name").arg(&a.name).arg("--fds").arg(a.fds.to_string());
        c.arg("--").args(&a.argv);
        c
    } else {
        let mut c = Command::new(program);
        c.args(&a.argv[1..]);
        c
    };
    cmd.process_group(0);
    // The owner's group (this process is still in it): if it has the
    // terminal, the command's group takes it.
    let owner_group = sys::pgrp();
    let grab = a.terminal && sys::foreground_group() == Some(owner_group);
    if grab {
        sys::take_terminal_in_child(&mut cmd, owner_group);
    }
    sys::clear_signal_mask(&mut cmd);
    sys::parent_death_signal(&mut cmd, sys::SIGKILL);
    let mut fds: Vec<_> = listeners.iter().map(AsRawFd::as_raw_fd).collect();
    if let Some((_, w)) = &status {
        fds.push(w.as_raw_fd());
    }
    sys::pass_fds(&mut cmd, fds);
    let spawned = cmd.spawn();
    drop(listeners);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let c = CannotStart::of_exec(program, &e);
            let code = c.code;
            tell(Report::Failed(c));
            return code;
        }
    };
    if let Some((mut r, w)) = status {
        drop(w);
        let mut line = String::new();
        let _ = r.read_to_string(&mut line);
        if let Some(Report::Failed(c)) = Report::parse(&line) {
            let _ = child.wait();
            let code = c.code;
            tell(Report::Failed(c));
            return code;
        }
    }
    let command = child.id();
    drop(child); // waited for with waitpid below
    let group = -(command as i32);
    let me = std::process::id();
    // The owner died: take everything down, this process included.
    let die_with_owner = || {
        for (pid, _) in leftovers(Some(command), true) {
            let _ = sys::kill(pid as i32, sys::SIGKILL);
        }
        let _ = sys::kill(group, sys::SIGKILL);
        let _ = sys::kill(me as i32, sys::SIGKILL);
    };
    // Join the command's group, so that the terminal's signals (Ctrl-C,
    // Ctrl-Z) reach this process too.
    let _ = sys::set_process_group(0, command);
    if grab && sys::foreground_group() == Some(owner_group) {
        let _ = sys::set_foreground(command);
    }
    tell(Report::Started(command));
    let mut phase = Phase::Running;
    let mut last_int: Option<Instant> = None;
    let exit = loop {
        // A pending death of the owner comes before anything sent to it.
        if !owner_alive() {
            die_with_owner();
        }
        let was = phase;
        while let Ok(Some((pid, ev))) = sys::wait_child(-1, false) {
            if pid != command {
                continue; // an adopted orphan, reaped
            }
            match ev {
                ChildEvent::Exited(c) => phase = Phase::Exited(Exit::Code(c)),
                ChildEvent::Signaled(s) => phase = Phase::Exited(Exit::Signal(s)),
                ChildEvent::Stopped(_) => phase = Phase::Suspended,
                ChildEvent::Continued => phase = Phase::Running,
            }
        }
        if let Phase::Exited(exit) = phase {
            break exit;
        }
        match (was, phase) {
            // The command stopped (Ctrl-Z, SIGTTIN, a `kill -STOP`): on a
            // terminal, the owner stops its job and gives the terminal back.
            (Phase::Running, Phase::Suspended) if a.terminal && owner_alive() => {
                let _ = sys::kill(owner as i32, sys::stop_report_signal());
            }
            // Continued, by the owner or by anyone else: if the owner is
            // still stopped, continue its job too, so that it can act.
            (Phase::Suspended, Phase::Running)
                if owner_alive() && sys::proc_stat(owner).is_ok_and(|s| s.state == 'T') =>
            {
                let _ = sys::kill(sys::job_target(owner, owner_group), sys::SIGCONT);
            }
            _ => {}
        }
        let Ok(Some(r)) = signals.wait_for(None) else { continue };
        // The parent-death signal is decided by the check at the top of the
        // loop (sent by anyone else, it is not the owner's death). SIGINT is
        // counted from anyone but this process: the terminal's, the owner's
        // forwarding, a group-directed `kill -INT`. Nothing is forwarded:
        // sent to the group, the command has it already, and sent to this
        // process alone it cannot be told apart from that.
        if r.signal == sys::SIGINT && r.sender != Some(me) && double_int(&mut last_int) {
            let _ = sys::kill(group, sys::SIGKILL);
        }
    };
    let left = stop_leftovers_until(Some(command), true, a.kill_grace, |d| {
        if !owner_alive() {
            return true;
        }
        match signals.wait_for(Some(d)) {
            Ok(Some(r)) if r.signal == death => !owner_alive(),
            Ok(Some(r)) if r.signal == sys::SIGINT && r.sender != Some(me) => {
                double_int(&mut last_int)
            }
            _ => false,
        }
    });
    say_stopped(&a.name, &left, a.kill_grace);
    // Killed by a signal, the command's status reaches the owner as such.
    if let Exit::Signal(n) = exit {
        sys::die_of_signal(n);
    }
    exit.shell_code()
}

/// Records a SIGINT; whether it is the second within [`DOUBLE_INT`].
fn double_int(last: &mut Option<Instant>) -> bool {
    let second = last.is_some_and(|t| t.elapsed() < DOUBLE_INT);
    *last = Some(Instant::now());
    second
}

/// `portd __exec`: sets the systemd socket-activation variables for the
/// `fds` descriptors from 3 with this process's own pid, then becomes the
/// command. Returns only if that fails, with 127 or 126, having said why
/// on the supervisor's status pipe (descriptor `3 + fds`) if there is
/// one, else on stderr.
pub fn exec_with_fds(name: &str, fds: usize, argv: &[String]) -> u8 {
    // Close-on-exec from here: end of file tells the supervisor the exec
    // succeeded.
    let status = sys::inherited_fd(3 + fds as i32).map(std::fs::File::from);
    let Some(program) = argv.first() else { return 127 };
    let names = vec![name; fds].join(":");
    let mut cmd = Command::new(program);
    cmd.args(&argv[1..])
        .env("LISTEN_FDS", fds.to_string())
        .env("LISTEN_PID", std::process::id().to_string())
        .env("LISTEN_FDNAMES", names);
    // portd's main ignored SIGXFSZ; the server gets the default.
    sys::clear_signal_mask(&mut cmd);
    let err = cmd.exec();
    let c = CannotStart::of_exec(program, &err);
    let code = c.code;
    match status {
        Some(mut f) => {
            let _ = f.write_all(Report::Failed(c).line().as_bytes());
        }
        None => {
            let _ = writeln!(std::io::stderr(), "error: {c}");
        }
    }
    code
}

/// What is left to stop: the processes of group `pgid` and, with
/// `descendants`, every live descendant of this process (a subreaper
/// adopts the orphans of its tree), this process excluded.
fn leftovers(pgid: Option<u32>, descendants: bool) -> BTreeMap<u32, String> {
    let me = std::process::id();
    let table = sys::process_table();
    let mut tree = BTreeSet::from([me]);
    if descendants {
        loop {
            let more: Vec<u32> = table
                .iter()
                .filter(|p| tree.contains(&p.ppid) && !tree.contains(&p.pid))
                .map(|p| p.pid)
                .collect();
            if more.is_empty() {
                break;
            }
            tree.extend(more);
        }
    }
    table
        .into_iter()
        .filter(|p| p.pid != me && p.state != 'Z')
        .filter(|p| Some(p.pgrp) == pgid || (descendants && tree.contains(&p.pid)))
        .map(|p| (p.pid, p.comm))
        .collect()
}

/// What [`stop_leftovers`] stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stopped {
    /// Each process signalled, by pid, with its short name.
    pub processes: BTreeMap<u32, String>,
    /// Whether some of them needed SIGKILL after the grace period.
    pub killed: bool,
    /// Whether the grace period was cut short (a second Ctrl-C).
    pub cut_short: bool,
}

/// Stops what a command left behind: the processes of group `pgid` and,
/// with `descendants`, every live descendant of this process (a subreaper
/// adopts the orphans of its tree; they are reaped meanwhile). SIGTERM and
/// SIGCONT to each, then SIGKILL to what is still there after `grace`.
pub fn stop_leftovers(pgid: Option<u32>, descendants: bool, grace: Duration) -> Stopped {
    stop_leftovers_until(pgid, descendants, grace, |d| {
        std::thread::sleep(d);
        false
    })
}

/// [`stop_leftovers`], calling `pause` between rounds (with how long to
/// wait, about 20 ms) instead of sleeping: `pause` returning true (a
/// second Ctrl-C) cuts the grace period short, SIGKILL at once.
fn stop_leftovers_until(
    pgid: Option<u32>,
    descendants: bool,
    grace: Duration,
    mut pause: impl FnMut(Duration) -> bool,
) -> Stopped {
    let mut done = Stopped::default();
    let deadline = Instant::now() + grace;
    let mut killed_at: Option<Instant> = None;
    let mut now_kill = false;
    loop {
        if descendants {
            while let Ok(Some(_)) = sys::wait_child(-1, false) {}
        }
        let now = leftovers(pgid, descendants);
        if now.is_empty() {
            break;
        }
        for (pid, comm) in &now {
            if !done.processes.contains_key(pid) {
                done.processes.insert(*pid, comm.clone());
                let _ = sys::kill(*pid as i32, sys::SIGTERM);
                let _ = sys::kill(*pid as i32, sys::SIGCONT);
            }
        }
        if now_kill || Instant::now() >= deadline {
            for pid in now.keys() {
                let _ = sys::kill(*pid as i32, sys::SIGKILL);
            }
            done.killed = true;
            let t = *killed_at.get_or_insert_with(Instant::now);
            if t.elapsed() > Duration::from_secs(2) {
                break; // unkillable (uninterruptible sleep): give up waiting
            }
        }
        if pause(Duration::from_millis(20)) && !now_kill {
            now_kill = true;
            done.cut_short = Instant::now() < deadline;
        }
    }
    done
}

/// One stderr line about what was stopped, if anything.
fn say_stopped(name: &str, s: &Stopped, grace: Duration) {
    if s.processes.is_empty() {
        return;
    }
    let n = s.processes.len();
    let list: Vec<String> = s.processes.iter().map(|(p, c)| format!("pid {p} ({c})")).collect();
    let how = if s.killed && s.cut_short {
        " (SIGKILL on a second Ctrl-C)".to_owned()
    } else if s.killed {
        format!(" (SIGKILL after {})", crate::config::format_duration(grace))
    } else {
        String::new()
    };
    let _ = writeln!(
        std::io::stderr(),
        "portd: stopped {n} process{} left by `{name}`: {}{how}",
        if n == 1 { "" } else { "es" },
        list.join(", ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_codes() {
        assert_eq!(Exit::Code(7).shell_code(), 7);
        assert_eq!(Exit::Signal(15).shell_code(), 143);
    }

    #[test]
    fn report_lines_round_trip() {
        let r = Report::Failed(CannotStart::new("my prog", "command not found", 127));
        let Some(Report::Failed(c)) = Report::parse(&r.line()) else { panic!() };
        assert_eq!(
            (c.program.as_str(), c.reason.as_str(), c.code),
            ("my prog", "command not found", 127)
        );
        assert!(matches!(Report::parse("started 42\n"), Some(Report::Started(42))));
        assert!(Report::parse("").is_none());
        assert!(Report::parse("started x\n").is_none());
    }

    #[test]
    fn supervise_args_decode_only_whole() {
        let a = SuperviseArgs {
            name: "web".to_owned(),
            fds: 1,
            kill_grace: Duration::from_millis(250),
            terminal: true,
            owner: 42,
            argv: vec!["sh".to_owned(), "-c".to_owned(), "rm -rf build/tmp".to_owned(), "".into()],
        };
        let bytes = a.encode();
        assert_eq!(SuperviseArgs::decode(1, &bytes), Some(a.clone()));
        // A write cut short (its writer killed, or a pipe that took only
        // part of it) is refused, whether it ends within a field or right
        // after one (which would be a shorter argv).
        for n in 0..bytes.len() {
            assert_eq!(SuperviseArgs::decode(1, &bytes[..n]), None, "{:?}", &bytes[..n]);
        }
        let mut longer = bytes.clone();
        longer.extend_from_slice(b"x\0");
        assert_eq!(SuperviseArgs::decode(1, &longer), None);
        let none = SuperviseArgs { argv: Vec::new(), ..a };
        assert_eq!(SuperviseArgs::decode(1, &none.encode()), Some(none));
    }

    #[test]
    fn programs_resolve_as_a_shell_finds_them() {
        assert!(resolve_program("sh").is_ok());
        assert_eq!(resolve_program("/nonexistent/cmd").unwrap_err().code, 127);
        assert_eq!(resolve_program("nosuchcmd-xyz").unwrap_err().code, 127);
        assert_eq!(resolve_program("/").unwrap_err().code, 126);
        assert_eq!(resolve_program("").unwrap_err().code, 127);
    }
}
