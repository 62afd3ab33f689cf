//! Running a command under an active lease: [`CommandLease`], the lease
//! taken for a command and ended with it, which `portd run` (supervising
//! the command in the foreground) and [`Registry::spawn`] (for launchers
//! that use the library) share.
//!
//! With [`Registry::spawn`], the lease is owned by the calling process. The child gets `PORT`,
//! `PORTD_PORT`, `PORTD_PROJECT` and `PORTD_PROJECT_KEY`, `{port}` in its arguments is replaced,
//! it runs in its own process group, starts with no blocked signals, and is
//! sent SIGKILL by the kernel when this process exits (Linux parent-death
//! signal). A program that cannot be started is found out before the lease
//! is taken, so it changes nothing. [`LeasedChild::wait`] stops what the
//! child left in its process group (SIGTERM, then SIGKILL after
//! [`DEFAULT_KILL_GRACE`](crate::supervisor::DEFAULT_KILL_GRACE)) and ends
//! the lease; dropping a `LeasedChild` that was not waited for kills its
//! process group and ends the lease, so nothing is left behind. A program
//! that cannot be started is an error of kind
//! [`ErrorKind::CommandNotFound`] (a shell's 127) or
//! [`ErrorKind::CommandNotExecutable`] (126: not executable, a bad `#!`
//! interpreter), and the registry is left as it was; if the lease taken for
//! it cannot be undone (a busy, damaged or read-only registry), the error
//! keeps its kind and its hint names the entry left behind, its port, and
//! why it stayed.
//!
//! Threads: [`Registry::spawn`] may be called from any thread, including
//! one that exits right after. The kernel ties the parent-death signal to
//! the *thread* that forks, so the fork and exec do not happen on the
//! calling thread: they run on one spawner thread per process, started on
//! the first `spawn` and never ending, which hands the started child back.
//! The child is therefore killed when the process exits, not when the
//! calling thread does. Only the direct child gets the signal: what the
//! child starts in turn is not killed with it. The child is an ordinary
//! child of this process: [`LeasedChild::wait`] and dropping work from any
//! thread. Nothing here blocks signals; for the full supervision of
//! `portd run` (signal forwarding, job control, a whole tree stopped) see
//! [`crate::supervisor::Foreground`], which must be used from a
//! single-threaded process.

#[cfg(doc)]
use crate::error::ErrorKind;
use crate::error::{Error, Result};
use crate::{Allocation, GetOptions, Project, Registry};
use portd_core::{Owner, sys};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::{Mutex, mpsc};

/// A lease taken for a command that is about to start: the one
/// implementation of running a command under a lease, shared by
/// [`Registry::spawn`] and `portd run` (which starts the command under
/// [`Foreground`](crate::supervisor::Foreground)).
///
/// [`Registry::lease_command`] checks that the program can be started and
/// takes an active lease owned by this process, recording the command line
/// and refusing a port that is bound now. Then the caller starts the
/// command with [`argv`](Self::argv) and [`set_env`](Self::set_env), and
/// says how that went: [`abandon`](Self::abandon) when it could not start
/// (the entry is put back as it was), [`started`](Self::started) with the
/// command's pid, and [`end`](Self::end) when it has exited (the entry goes
/// idle and keeps its port). Dropped without either, it does the same
/// itself: a lease never started is abandoned, a started one ended.
#[derive(Debug)]
pub struct CommandLease<'r> {
    registry: &'r Registry,
    project: Project,
    owner: Owner,
    argv: Vec<String>,
    lease: Allocation,
    stage: Stage,
}

/// Where a [`CommandLease`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Taken; the command is not started yet.
    Taken,
    /// The command runs.
    Started,
    /// Abandoned or ended: nothing left to do.
    Done,
}

impl Registry {
    /// Checks that `argv`'s program can be started, then takes an active
    /// lease for `project` owned by this process (its port bindable now,
    /// `argv` recorded as the command), with `opts` otherwise as given. A
    /// program that cannot be started fails with
    /// [`ErrorKind::CommandNotFound`] or [`ErrorKind::CommandNotExecutable`]
    /// and changes nothing. See [`CommandLease`] for what follows.
    pub fn lease_command<S: AsRef<str>>(
        &self,
        project: &Project,
        argv: &[S],
        opts: &GetOptions,
    ) -> Result<CommandLease<'_>> {
        let argv: Vec<String> = argv.iter().map(|a| a.as_ref().to_owned()).collect();
        let Some(program) = argv.first() else {
            return Err(
                Error::usage("no command to run").with_hint("pass the program and its arguments")
            );
        };
        crate::supervisor::resolve_program(program).map_err(Error::from)?;
        let owner = Owner::this_process();
        let opts = GetOptions {
            owner: Some(owner),
            command: Some(argv.clone()),
            require_free: true,
            ..opts.clone()
        };
        let lease = self.get_with(project, &opts)?;
        Ok(CommandLease {
            registry: self,
            project: project.clone(),
            owner,
            argv,
            lease,
            stage: Stage::Taken,
        })
    }

    /// Takes an active lease for `project` (owned by this process, port
    /// bindable now) and starts `argv` on it. A program that cannot be
    /// started fails with [`ErrorKind::CommandNotFound`] or
    /// [`ErrorKind::CommandNotExecutable`] and changes nothing. Safe to call
    /// from any thread, even one that exits right after: the child is
    /// started by the process's spawner thread and lives until it exits,
    /// is waited for or dropped, or this process exits (see the module
    /// docs).
    pub fn spawn<S: AsRef<str>>(
        &self,
        project: &Project,
        argv: &[S],
        opts: &GetOptions,
    ) -> Result<LeasedChild<'_>> {
        let lease = self.lease_command(project, argv, opts)?;
        let argv = lease.argv();
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        lease.set_env(&mut cmd);
        cmd.process_group(0);
        sys::clear_signal_mask(&mut cmd);
        sys::parent_death_signal(&mut cmd, sys::SIGKILL);
        let mut lease = lease;
        let child = match spawn_from_spawner(cmd) {
            Ok(c) => c,
            Err(failure) => {
                let err = match failure {
                    SpawnFailure::Exec(e) => {
                        Error::from(crate::supervisor::CannotStart::of_exec(&argv[0], &e))
                    }
                    SpawnFailure::Spawner(e) => Error::io("cannot start the spawner thread", e),
                };
                let (project, port) = (lease.project.display().to_owned(), lease.port());
                return Err(match lease.abandon() {
                    Ok(()) => err,
                    Err(u) => err.with_hint(format!(
                        "the lease of `{project}` (port {port}) could not be undone: {}",
                        u.message()
                    )),
                });
            }
        };
        let _ = lease.started(child.id());
        Ok(LeasedChild { lease, child: Some(child) })
    }
}

impl CommandLease<'_> {
    /// The lease: the entry, and what allocating it did.
    pub fn allocation(&self) -> &Allocation {
        &self.lease
    }

    /// The leased port.
    pub fn port(&self) -> u16 {
        self.lease.entry.port
    }

    /// The project.
    pub fn project(&self) -> &Project {
        &self.project
    }

    /// The command to start: the program as given, then its arguments
    /// with every `{port}` replaced by the port.
    pub fn argv(&self) -> Vec<String> {
        let port = self.port();
        let (program, args) = self.argv.split_first().expect("checked when taken");
        std::iter::once(program.clone()).chain(args.iter().map(|a| with_port(a, port))).collect()
    }

    /// Sets the lease's environment on `cmd`: `PORT`, `PORTD_PORT`,
    /// `PORTD_PROJECT` (the shown name), `PORTD_PROJECT_KEY` (the registry
    /// key, which limits the `PORTD_PORT` pin to exactly this project), and
    /// no inherited socket-activation variables.
    pub fn set_env(&self, cmd: &mut Command) {
        let port = self.port().to_string();
        cmd.env("PORT", &port)
            .env("PORTD_PORT", &port)
            .env("PORTD_PROJECT", self.project.display())
            .env("PORTD_PROJECT_KEY", self.project.key())
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDNAMES");
    }

    /// The command could not be started: the lease is undone, the entry
    /// put back as it was before [`Registry::lease_command`]. An error says
    /// why the undo failed (a busy, damaged or read-only registry); the
    /// entry is then left as leased.
    pub fn abandon(mut self) -> Result<()> {
        self.stage = Stage::Done;
        self.registry.undo_get(&self.project, &self.lease).map(|_| ())
    }

    /// The command runs as `pid`: recorded on the entry, so that the
    /// processes it starts count as the project's own. An error says why
    /// it could not be recorded; the lease holds all the same.
    pub fn started(&mut self, pid: u32) -> Result<()> {
        self.stage = Stage::Started;
        self.registry.set_child(&self.project, self.owner, pid).map(|_| ())
    }

    /// The command has exited: the lease ends, the entry goes idle and
    /// keeps its port.
    pub fn end(mut self) -> Result<()> {
        self.end_now()
    }

    fn end_now(&mut self) -> Result<()> {
        self.stage = Stage::Done;
        self.registry.end_lease(&self.project, self.owner).map(|_| ())
    }
}

impl Drop for CommandLease<'_> {
    fn drop(&mut self) {
        let _ = match self.stage {
            Stage::Taken => self.registry.undo_get(&self.project, &self.lease),
            Stage::Started => self.registry.end_lease(&self.project, self.owner),
            Stage::Done => Ok(false),
        };
    }
}

/// A child process holding a project's lease.
#[derive(Debug)]
pub struct LeasedChild<'r> {
    lease: CommandLease<'r>,
    child: Option<Child>,
}

/// A request to the spawner thread: the command, and where to send the child.
type Job = (Command, mpsc::SyncSender<std::io::Result<Child>>);

/// The spawner thread's inbox, once started, with the pid of the process
/// that started it: a process forked after that has no spawner thread.
static SPAWNER: Mutex<Option<(u32, mpsc::Sender<Job>)>> = Mutex::new(None);

/// Why a child could not be started.
enum SpawnFailure {
    /// The command's own exec failed.
    Exec(std::io::Error),
    /// The spawner thread could not be started or is gone: not the
    /// command's fault.
    Spawner(std::io::Error),
}

/// The spawner thread's inbox, starting the thread if this process has none.
fn inbox(restart: bool) -> std::io::Result<mpsc::Sender<Job>> {
    let mut slot = SPAWNER.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let me = std::process::id();
    if let Some((pid, tx)) = &*slot
        && *pid == me
        && !restart
    {
        return Ok(tx.clone());
    }
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new().name("portd-spawner".into()).spawn(move || {
        // Signals meant for the program are never delivered to this thread
        // (a `sigwait`-based program keeps its own handling); the child's
        // mask is reset before exec by `clear_signal_mask`.
        let _mask = sys::SignalSet::block(&sys::catchable_signals());
        // Never ends while the sender is in `SPAWNER`.
        for (mut cmd, reply) in rx {
            let _ = reply.send(cmd.spawn());
        }
    })?;
    *slot = Some((me, tx.clone()));
    Ok(tx)
}

/// Starts `cmd` on the process's spawner thread, which lives as long as the
/// process, so that a parent-death signal set on `cmd` fires when the
/// process exits rather than when the calling thread does. A spawner that
/// is gone (or belongs to the process this one was forked from) is
/// replaced once.
fn spawn_from_spawner(mut cmd: Command) -> std::result::Result<Child, SpawnFailure> {
    let gone = || std::io::Error::other("the spawner thread is gone");
    for restart in [false, true] {
        let inbox = inbox(restart).map_err(SpawnFailure::Spawner)?;
        let (reply, answer) = mpsc::sync_channel(1);
        match inbox.send((cmd, reply)) {
            Ok(()) => {
                return match answer.recv() {
                    Ok(r) => r.map_err(SpawnFailure::Exec),
                    Err(_) => Err(SpawnFailure::Spawner(gone())),
                };
            }
            // Not delivered: the command comes back with the error.
            Err(mpsc::SendError((c, _))) => cmd = c,
        }
    }
    Err(SpawnFailure::Spawner(gone()))
}

/// `arg` with every `{port}` replaced by `port`.
pub fn with_port(arg: &str, port: u16) -> String {
    arg.replace("{port}", &port.to_string())
}

impl LeasedChild<'_> {
    /// The leased port.
    pub fn port(&self) -> u16 {
        self.lease.port()
    }

    /// The child's pid (also its process group id).
    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends `signal` to the child's process group.
    pub fn signal(&self, signal: i32) -> std::io::Result<()> {
        sys::kill(-(self.id() as i32), signal)
    }

    /// Waits for the child, stops what it left in its process group, then
    /// ends the lease (the entry goes idle and keeps its port).
    pub fn wait(mut self) -> Result<ExitStatus> {
        let mut child = self.child.take().expect("present until wait or drop");
        let status = child.wait().map_err(|e| Error::io("cannot wait for the child", e));
        crate::supervisor::stop_leftovers(
            Some(child.id()),
            false,
            crate::supervisor::DEFAULT_KILL_GRACE,
        );
        self.lease.end_now()?;
        status
    }
}

impl Drop for LeasedChild<'_> {
    /// Kills the child's process group; the lease then ends as it drops.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = sys::kill(-(child.id() as i32), sys::SIGKILL);
            let _ = child.wait();
        }
    }
}
