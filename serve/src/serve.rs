//! `portd __serve NAME`: a managed server's supervisor, started detached
//! by `portd start` (its own session, no terminal, its output in the
//! project's log).
//!
//! It takes the project's lease ([`Registry::lease_server`]: one supervisor
//! per server), starts the command under the same supervisor as
//! `portd run` ([`Foreground`], with `portd __supervise` between it and the
//! command), waits until the health check passes, and then checks health
//! every interval, restarts under the policy with backoff, stops the
//! server when told (SIGTERM: stop; SIGHUP: restart), and records every
//! transition (state and events) in the registry. On demand, it holds the
//! listening socket(s) with no server until the first connection.
//!
//! Threads: the main thread runs the loop below, blocked in sigtimedwait
//! between deadlines; it is the only one that forks (the parent-death
//! signal of `__supervise` is tied to it) and reaps. A second thread
//! copies the server's output into the log. On demand, waker threads block
//! in poll(2) on the listening sockets and wake the loop with SIGUSR2.
//!
//! The first start's outcome goes to `portd start` as one line on the
//! report pipe (descriptor 3): `ready PORT`, `sleeping PORT`, `exists PID`
//! (another supervisor runs this server) or `error CODE MESSAGE\tHINT`,
//! after any `note TEXT` lines (what was added to the command) for it to
//! print.

use crate::backoff::{Backoff, Decision};
use crate::health::{self, Check};
use crate::logs::{self, LogFile};
use crate::relay::Relay;
use portd_core::Owner;
use portd_core::sys::{self, SignalSet};
use portd_store::definition::{RestartPolicy, ServerDef};
use portd_store::events::{Event, EventKind, StopWhy};
use portd_store::server_state::{Phase, ServerState};
use portd_store::supervisor::{self, Exit, Foreground, Launch, Polled, StartError};
use portd_store::{Error, ErrorKind, GetOptions, Project, Registry, ServerLease, now_ms};
use std::fs::File;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The exit code of a server that failed to become healthy (`portd start`
/// exits with it).
pub const SERVER_FAILED: u8 = 10;
/// The largest log kept before it is rotated (one rotated copy is kept).
pub const LOG_CAP: u64 = 10 << 20;

/// Where a project's log is: `DIR/logs/NAME.log` beside the registry.
pub fn log_path(registry_dir: &Path, key: &str) -> PathBuf {
    registry_dir.join("logs").join(format!("{key}.log"))
}

/// Where a relayed server's supervisor writes its figures when asked
/// (SIGUSR1): `DIR/run/NAME.stats.json` beside the registry.
pub fn stats_path(registry_dir: &Path, key: &str) -> PathBuf {
    registry_dir.join("run").join(format!("{key}.stats.json"))
}

/// How the server ended, in words (`exit 1`, `signal 9`).
pub fn describe(exit: Exit) -> String {
    match exit {
        Exit::Code(c) => format!("exit {c}"),
        Exit::Signal(s) => format!("signal {s}"),
    }
}

/// What the loop is told by a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Told {
    /// Nothing for the loop (SIGCHLD, job-control noise).
    Nothing,
    /// SIGTERM, SIGINT, SIGQUIT: stop and exit.
    Stop,
    /// SIGHUP: restart.
    Restart,
    /// SIGUSR2 from a waker thread: a connection arrived.
    Wake,
    /// SIGUSR1 from `portd status`: write the relay's figures.
    Report,
}

fn told(r: sys::Received) -> Told {
    match r.signal {
        s if s == sys::SIGTERM || s == sys::SIGINT || s == sys::SIGQUIT => Told::Stop,
        s if s == sys::SIGHUP => Told::Restart,
        s if s == sys::SIGUSR2 => Told::Wake,
        s if s == sys::SIGUSR1 => Told::Report,
        _ => Told::Nothing,
    }
}

/// What follows a run that ended on its own.
enum After {
    /// Start it again (the backoff delay has passed).
    Restart,
    /// On demand: record these events and this reason, and sleep.
    Sleep(Vec<EventKind>, String),
    /// The supervisor is done (state recorded, lease ended).
    End,
}

/// How a run of the server ended.
enum Ended {
    /// Stopped on request; `restart`: start again at once.
    Stopped { restart: bool, exit: Exit },
    /// It exited (or was stopped as unhealthy) on its own.
    Failed { why: StopWhy, exit: Exit, reason: String },
    /// Idle for the timeout (and stopped).
    Idle(Exit),
}

/// The supervisor of one managed server.
struct Serve<'r> {
    reg: &'r Registry,
    project: Project,
    def: ServerDef,
    check: Check,
    me: Owner,
    exe: PathBuf,
    port: u16,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    state: ServerState,
    signals: SignalSet,
    report: Option<File>,
    log: PathBuf,
    log_writer: Option<std::io::PipeWriter>,
    /// The public listening sockets (on demand).
    listeners: Vec<TcpListener>,
    /// Set by the waker threads when a connection arrives.
    activity: Arc<Activity>,
    /// The lease is this supervisor's (before, a failure records nothing).
    leased: bool,
    /// The port the server listens on: the project's, or behind the relay
    /// the private one (the entry `NAME@relay`).
    private: u16,
    /// On demand without `--fd`: the relay on the public port.
    relay: Option<Relay>,
    /// A server command runs (the relay joins connections to it).
    serving: Arc<AtomicBool>,
    /// The hint of the next failure reported, when it is not the log.
    hint: Option<String>,
    /// A connection woke the supervisor (recorded with the start).
    woke: bool,
    /// A stop or restart that arrived while the server was being stopped
    /// for another reason (idle, health, a leftover to wait for): acted
    /// on next.
    pending: Option<Told>,
    /// [`Activity::asked`] when the last run started.
    asked_seen: u64,
    backoff: Backoff,
}

/// Connections seen on the public port (on demand, `--fd`).
#[derive(Debug, Default)]
struct Activity {
    /// Wake the loop on the next connection (sleeping).
    armed: AtomicBool,
    /// When a connection last arrived, ms since the epoch.
    last_ms: AtomicU64,
    /// Until then (ms since the epoch) connections are the supervisor's
    /// own health checks, not activity.
    probe_until_ms: AtomicU64,
    /// Connections that found no server behind the relay and asked for one.
    asked: AtomicU64,
}

/// After a health check, its connection may wait this long to be accepted.
const PROBE_QUIET_MS: u64 = 200;
/// After going to sleep, when the resident memory is trimmed once more.
const TRIM_AGAIN_AFTER: Duration = Duration::from_millis(200);
/// The shortest idle timeout.
pub const MIN_IDLE: Duration = Duration::from_secs(1);

/// Runs `portd __serve` for project `key`; returns the exit code.
pub fn run(reg: &Registry, key: &str, exe: &Path, move_port: bool, report: Option<File>) -> u8 {
    // Before any thread starts: every thread inherits the mask, so the
    // signals reach the loop only.
    let signals = match supervisor::block_owner_signals() {
        Ok(s) => s,
        Err(e) => return fail_report(report, 1, &format!("cannot block signals: {e}"), ""),
    };
    let _ = sys::set_child_subreaper();
    let project = match Project::name(key) {
        Ok(p) => p,
        Err(e) => return fail_report(report, 2, e.message(), ""),
    };
    let def = match reg.definition(&project) {
        Ok(Some(d)) => d,
        Ok(None) => {
            return fail_report(
                report,
                4,
                &format!("`{key}` is not defined"),
                &format!("define it: `portd add {key} -- COMMAND`"),
            );
        }
        Err(e) => return fail_report(report, e.exit_code(), e.message(), e.hint().unwrap_or("")),
    };
    let check = match def.health.parse::<Check>() {
        Ok(c) => c,
        Err(e) => return fail_report(report, 2, &e, "fix it with `portd add`"),
    };
    let me = Owner::this_process();
    let log = log_path(reg.dir(), key);
    let mut s = Serve {
        reg,
        project,
        def,
        check,
        me,
        exe: exe.to_owned(),
        port: 0,
        argv: Vec::new(),
        env: Vec::new(),
        state: ServerState::new(Phase::Starting),
        signals,
        report,
        log,
        log_writer: None,
        listeners: Vec::new(),
        activity: Arc::default(),
        backoff: Backoff::new(),
        leased: false,
        private: 0,
        relay: None,
        serving: Arc::default(),
        hint: None,
        woke: false,
        pending: None,
        asked_seen: 0,
    };
    s.state.since_ms = now_ms();
    s.state.supervisor = Some(me);
    match s.main(move_port) {
        Ok(code) => code,
        Err(e) => {
            let code = e.exit_code();
            s.say(&format!("error: {}", e.message()));
            if s.leased {
                s.finish(
                    Phase::Stopped,
                    Some(e.message().to_owned()),
                    vec![EventKind::StartFailed],
                );
            }
            s.fail(code, e.message(), e.hint().unwrap_or(""))
        }
    }
}

fn fail_report(report: Option<File>, code: u8, msg: &str, hint: &str) -> u8 {
    if let Some(mut r) = report {
        let _ = writeln!(r, "error {code} {}\t{}", one_line(msg), one_line(hint));
    }
    code
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\t'], " ")
}

impl Serve<'_> {
    fn main(&mut self, move_port: bool) -> Result<u8, Error> {
        let opts = GetOptions {
            require_free: true,
            move_port,
            command: Some(self.def.argv.clone()),
            ..GetOptions::default()
        };
        let lease = match self.reg.lease_server(&self.project, self.me, &opts, &self.state, &[])? {
            ServerLease::Exists(pid) => {
                if let Some(r) = &mut self.report {
                    let _ = writeln!(r, "exists {pid}");
                }
                return Ok(0);
            }
            ServerLease::Taken(a) => a,
        };
        self.leased = true;
        self.port = lease.entry.port;
        self.private = self.port;
        self.open_log()?;
        let relayed = self.def.on_demand && !self.def.fd;
        if relayed {
            // The server's own port, kept as the entry `NAME@relay` (its
            // lease this supervisor's): stable from one start to the next.
            let opts =
                GetOptions { owner: Some(self.me), require_free: true, ..GetOptions::default() };
            self.private = self.reg.get_with(&self.project.relay(), &opts)?.entry.port;
            self.state.relay_port = Some(self.private);
        }
        self.resolve()?;
        if self.def.on_demand || self.def.fd {
            self.listeners = bind_public(&lease, self.def.host.as_deref())?;
        }
        if relayed {
            self.start_relay()?;
        } else {
            self.start_wakers();
        }
        // On demand, the supervisor sleeps before each start: first, after
        // an idle stop, and after a run that ended and is not restarted.
        let mut asleep = self.def.on_demand;
        let mut sleep_events = vec![EventKind::Slept];
        let mut sleep_reason = None;
        loop {
            if asleep {
                self.state.command_pid = None;
                self.transition(
                    Phase::Sleeping,
                    sleep_reason.take(),
                    std::mem::take(&mut sleep_events),
                );
                self.answer(&format!("sleeping {}", self.port));
                if !self.sleep() {
                    self.finish(
                        Phase::Stopped,
                        Some("stopped by the user".into()),
                        vec![EventKind::Stopped { why: StopWhy::User }],
                    );
                    return Ok(0);
                }
                asleep = false;
            }
            let Some(mut ended) = self.run_once()? else {
                // The first start failed: reported, recorded, nothing left.
                return Ok(SERVER_FAILED);
            };
            // Told to stop or restart while it was being stopped anyway.
            match (&ended, self.pending.take()) {
                (Ended::Idle(exit) | Ended::Failed { exit, .. }, Some(Told::Stop)) => {
                    ended = Ended::Stopped { restart: false, exit: *exit };
                }
                (Ended::Idle(exit) | Ended::Failed { exit, .. }, Some(Told::Restart)) => {
                    ended = Ended::Stopped { restart: true, exit: *exit };
                }
                (Ended::Stopped { .. }, Some(Told::Stop)) => {
                    if let Ended::Stopped { exit, .. } = ended {
                        ended = Ended::Stopped { restart: false, exit };
                    }
                }
                _ => {}
            }
            match ended {
                Ended::Stopped { restart: true, exit } => {
                    self.state.last_exit = Some(describe(exit));
                    self.state.restarts += 1;
                    // Not ready again until the new one is.
                    self.state.phase = Phase::Starting;
                    self.state.command_pid = None;
                    self.record(vec![
                        EventKind::Stopped { why: StopWhy::User },
                        EventKind::Restarted { delay_ms: 0 },
                    ]);
                }
                Ended::Stopped { restart: false, exit } => {
                    self.state.last_exit = Some(describe(exit));
                    self.finish(
                        Phase::Stopped,
                        Some("stopped by the user".into()),
                        vec![EventKind::Stopped { why: StopWhy::User }],
                    );
                    return Ok(0);
                }
                Ended::Idle(exit) => {
                    self.state.last_exit = Some(describe(exit));
                    let ev = EventKind::Stopped { why: StopWhy::Idle };
                    if !self.def.on_demand {
                        self.finish(Phase::Stopped, Some("idle".into()), vec![ev]);
                        return Ok(0);
                    }
                    asleep = true;
                    sleep_events = vec![ev, EventKind::Slept];
                    sleep_reason = Some("idle".into());
                }
                Ended::Failed { why, exit, reason } => {
                    match self.after_failure(why, exit, reason) {
                        After::Restart => {}
                        After::Sleep(evs, reason) => {
                            asleep = true;
                            sleep_events = evs;
                            sleep_events.push(EventKind::Slept);
                            sleep_reason = Some(reason);
                        }
                        After::End => return Ok(0),
                    }
                }
            }
        }
    }

    /// A run ended on its own: restart under the policy (after the
    /// backoff delay), sleep again (on demand, when it is not restarted),
    /// or end.
    fn after_failure(&mut self, why: StopWhy, exit: Exit, reason: String) -> After {
        let mut evs = vec![EventKind::Stopped { why }];
        if why == StopWhy::Crash {
            evs.push(EventKind::Crashed { exit: describe(exit) });
        }
        self.state.last_exit = Some(describe(exit));
        let restart = match self.def.restart {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure => exit != Exit::Code(0) || why != StopWhy::Crash,
            // (a start timeout or failed health checks are failures
            // whatever the exit code of the stopped server)
            RestartPolicy::Always => true,
        };
        if !restart {
            if self.def.on_demand {
                // The socket stays held: the next connection starts it
                // (a socket-activated server may exit when it is idle).
                return After::Sleep(evs, reason);
            }
            self.finish(Phase::Stopped, Some(reason), evs);
            return After::End;
        }
        match self.backoff.on_exit(Instant::now()) {
            Decision::CrashLoop => {
                evs.push(EventKind::CrashLooping);
                let tail = logs::tail(&self.log, 1).ok().and_then(|l| l.last().cloned());
                let reason = match tail {
                    Some(t) => format!("{reason}; last log line: {t}"),
                    None => reason,
                };
                self.finish(Phase::CrashLooping, Some(reason), evs);
                After::End
            }
            Decision::Restart(d) => {
                evs.push(EventKind::Restarted { delay_ms: d.as_millis() as u64 });
                self.state.restarts += 1;
                self.state.command_pid = None;
                self.transition(Phase::Starting, Some(reason), evs);
                // The delay, unless told to stop meanwhile.
                let until = Instant::now() + d;
                loop {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return After::Restart;
                    }
                    match self.signals.wait_for(Some(left)) {
                        Ok(Some(r)) if told(r) == Told::Stop => {
                            self.finish(
                                Phase::Stopped,
                                Some("stopped by the user".into()),
                                vec![EventKind::Stopped { why: StopWhy::User }],
                            );
                            return After::End;
                        }
                        Ok(Some(r)) if told(r) == Told::Restart => return After::Restart,
                        Ok(Some(r)) if told(r) == Told::Report => self.write_stats(),
                        Ok(_) => {}
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            }
        }
    }

    /// Starts the server and supervises it until it ends. `None`: the
    /// first start failed (reported to `portd start` and recorded).
    fn run_once(&mut self) -> Result<Option<Ended>, Error> {
        let ended = self.run_server();
        self.serving.store(false, Ordering::SeqCst);
        ended
    }

    /// [`Serve::run_once`], while the relay may join connections to it.
    fn run_server(&mut self) -> Result<Option<Ended>, Error> {
        self.asked_seen = self.activity.asked.load(Ordering::SeqCst);
        // A start attempt (even one whose command cannot run) is newer
        // than a `restart` that asked for it.
        self.state.started_ms = Some(now_ms());
        if !self.reload()? {
            // Removed meanwhile (`portd rm` stops it first; a `reset
            // --force` does not): nothing to run.
            return Ok(Some(Ended::Stopped { restart: false, exit: Exit::Code(0) }));
        }
        let started = Instant::now();
        let mut fg = match self.start_command() {
            Ok(fg) => fg,
            Err(StartError::Command(c)) => {
                let msg = c.to_string();
                self.say(&format!("error: {msg}"));
                if self.report.is_some() {
                    self.finish(Phase::Stopped, Some(msg.clone()), vec![EventKind::StartFailed]);
                    self.fail(c.code, &msg, "check the command with `portd show`");
                    return Ok(None);
                }
                // A restart: the lease stays this supervisor's.
                self.transition(Phase::Starting, Some(msg.clone()), vec![EventKind::StartFailed]);
                return Ok(Some(Ended::Failed {
                    why: StopWhy::Crash,
                    exit: Exit::Code(i32::from(c.code)),
                    reason: msg,
                }));
            }
            Err(StartError::Other(e)) => return Err(e),
        };
        self.backoff.on_start(started);
        self.serving.store(true, Ordering::SeqCst);
        self.state.command_pid = Some(fg.command_pid());
        self.state.started_ms = Some(now_ms());
        let mut evs = vec![EventKind::Started];
        if std::mem::take(&mut self.woke) {
            evs.insert(0, EventKind::Woke);
        }
        self.transition(Phase::Starting, None, evs);
        let _ = self.reg.set_child(&self.project, self.me, fg.command_pid());
        // Until healthy.
        let deadline = started + Duration::from_millis(self.def.start_timeout_ms);
        loop {
            let step = if started.elapsed() < Duration::from_secs(1) {
                Duration::from_millis(10)
            } else {
                Duration::from_millis(100)
            };
            if self.healthy(Duration::from_millis(1000)).is_ok() {
                break;
            }
            match fg.poll(Some(step)) {
                Polled::Exited(exit) => {
                    self.keep_stashed(&mut fg);
                    let reason = format!("it ended before it was ready ({})", describe(exit));
                    return Ok(self.start_failed(StopWhy::Crash, exit, reason));
                }
                Polled::Signal(r) if told(r) == Told::Stop => {
                    let exit = self.stop_command(&mut fg);
                    return Ok(Some(Ended::Stopped { restart: false, exit }));
                }
                Polled::Signal(r) if told(r) == Told::Restart => {
                    let exit = self.stop_command(&mut fg);
                    return Ok(Some(Ended::Stopped { restart: true, exit }));
                }
                Polled::Signal(r) if told(r) == Told::Report => self.write_stats(),
                Polled::Signal(_) | Polled::Timeout => {}
            }
            if Instant::now() >= deadline {
                // The safety net: a server that listens, but elsewhere.
                let elsewhere = crate::elsewhere::listens_elsewhere(
                    fg.command_pid(),
                    &[self.private, self.port],
                );
                let exit = self.stop_command(&mut fg);
                let reason = match elsewhere {
                    Some(other) => {
                        self.hint = Some(format!(
                            "pass it the port: `--port {{port}}` in its command (`portd add {} … -- CMD --port {{port}}`; after `--` for `npm run`), or make it read `PORT`",
                            self.project.display()
                        ));
                        format!(
                            "it listens on port {other}, not on its port {}: it ignores `PORT`",
                            self.private
                        )
                    }
                    None => format!(
                        "it was not healthy ({}) within {}",
                        self.def.health,
                        portd_store::format_duration(Duration::from_millis(
                            self.def.start_timeout_ms
                        ))
                    ),
                };
                return Ok(self.start_failed(StopWhy::StartTimeout, exit, reason));
            }
        }
        let startup = started.elapsed();
        self.state.ready_ms = Some(now_ms());
        self.state.reason = None;
        self.transition(
            Phase::Running,
            None,
            vec![EventKind::Ready { startup_ms: startup.as_millis() as u64 }],
        );
        self.answer(&format!("ready {}", self.port));
        self.backoff.on_healthy(Instant::now());
        self.supervise(fg).map(Some)
    }

    /// A start that did not become healthy: the first one is reported
    /// (`None`); a restart counts as a failure.
    fn start_failed(&mut self, why: StopWhy, exit: Exit, reason: String) -> Option<Ended> {
        self.state.last_exit = Some(describe(exit));
        if self.report.is_some() {
            self.say(&format!("error: `{}` failed to start: {reason}", self.project.display()));
            self.finish(Phase::Stopped, Some(reason.clone()), vec![EventKind::StartFailed]);
            let hint = self
                .hint
                .take()
                .unwrap_or_else(|| format!("see its log: `portd logs {}`", self.project.display()));
            self.fail(
                SERVER_FAILED,
                &format!("`{}` failed to start: {reason}", self.project.display()),
                &hint,
            );
            return None;
        }
        Some(Ended::Failed { why, exit, reason })
    }

    /// Supervises a healthy server until it ends.
    fn supervise(&mut self, mut fg: Foreground) -> Result<Ended, Error> {
        let interval = Duration::from_millis(self.def.health_interval_ms.max(100));
        let mut next_check = Instant::now() + interval;
        let mut failures = 0u32;
        let idle = self.def.idle_timeout().map(|t| t.max(MIN_IDLE));
        // Open connections are sampled at a tenth of the timeout (1 s to
        // 60 s); new connections on a socket this supervisor holds are
        // noted by its waker threads as they come.
        let sample = idle.map(|t| (t / 10).clamp(Duration::from_secs(1), Duration::from_secs(60)));
        let mut next_sample = Instant::now() + sample.unwrap_or_default();
        // The grace after a start: idle counts from when it became ready.
        let mut active = Instant::now();
        loop {
            let mut wait = next_check.saturating_duration_since(Instant::now());
            if sample.is_some() {
                wait = wait.min(next_sample.saturating_duration_since(Instant::now()));
            }
            match fg.poll(Some(wait)) {
                Polled::Exited(exit) => {
                    self.keep_stashed(&mut fg);
                    let reason = format!("it ended ({})", describe(exit));
                    return Ok(Ended::Failed { why: StopWhy::Crash, exit, reason });
                }
                Polled::Signal(r) => match told(r) {
                    Told::Stop => {
                        let exit = self.stop_command(&mut fg);
                        return Ok(Ended::Stopped { restart: false, exit });
                    }
                    Told::Restart => {
                        let exit = self.stop_command(&mut fg);
                        return Ok(Ended::Stopped { restart: true, exit });
                    }
                    Told::Report => self.write_stats(),
                    Told::Wake | Told::Nothing => {}
                },
                Polled::Timeout => {}
            }
            let now = Instant::now();
            if now >= next_check {
                next_check = now + interval;
                match self.healthy(interval.min(Duration::from_secs(5))) {
                    Ok(()) => {
                        self.backoff.on_healthy(now);
                        if failures >= self.def.health_failures {
                            self.state.reason = None;
                            self.transition(Phase::Running, None, vec![]);
                        }
                        failures = 0;
                    }
                    Err(why) => {
                        failures += 1;
                        if failures == self.def.health_failures {
                            let reason = format!(
                                "{failures} health checks ({}) failed in a row: {why}",
                                self.def.health
                            );
                            if self.def.restart == RestartPolicy::No {
                                self.transition(
                                    Phase::Unhealthy,
                                    Some(reason),
                                    vec![EventKind::Unhealthy],
                                );
                            } else {
                                self.state.last_rss = Some(sys::group_rss(fg.command_pid()));
                                let exit = self.stop_command(&mut fg);
                                return Ok(Ended::Failed { why: StopWhy::Health, exit, reason });
                            }
                        }
                    }
                }
            }
            if let (Some(t), Some(d)) = (idle, sample) {
                let ago = match &self.relay {
                    Some(r) => Some(r.stats().idle_for()),
                    None => match self.activity.last_ms.load(Ordering::Relaxed) {
                        0 => None,
                        last => Some(Duration::from_millis(now_ms().saturating_sub(last))),
                    },
                };
                if let Some(at) = ago.and_then(|ago| now.checked_sub(ago))
                    && at > active
                {
                    active = at;
                }
                if now >= next_sample {
                    next_sample = now + d;
                    if self.open_connections() > 0 {
                        active = now;
                    }
                }
                if now.duration_since(active) >= t {
                    self.state.last_rss = Some(sys::group_rss(fg.command_pid()));
                    let exit = self.stop_command(&mut fg);
                    return Ok(Ended::Idle(exit));
                }
            }
        }
    }

    /// Writes the relay's figures to [`stats_path`] (replacing the file in
    /// one step), for `portd status --detailed`.
    fn write_stats(&self) {
        let Some(r) = &self.relay else { return };
        let st = r.stats();
        let path = stats_path(self.reg.dir(), self.project.key());
        let tmp = path.with_extension("tmp");
        let text = serde_json::json!({
            "requests_per_minute": st.requests_per_minute(),
            "open_connections": st.open_connections(),
            "connections": st.total_connections(),
            "requests": st.requests(),
        })
        .to_string();
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }

    /// Connections open to the server now (on its public port).
    fn open_connections(&self) -> usize {
        match &self.relay {
            Some(r) => r.stats().open_connections(),
            None => sys::established(self.port).unwrap_or(0),
        }
    }

    /// On demand without `--fd`: the relay takes the public sockets; a
    /// connection while no server runs wakes the loop (armed), and waits.
    fn start_relay(&mut self) -> Result<(), Error> {
        let private = self.private;
        let serving = Arc::clone(&self.serving);
        let activity = Arc::clone(&self.activity);
        let pid = std::process::id() as i32;
        let listeners = std::mem::take(&mut self.listeners);
        let relay = Relay::start(
            listeners,
            move || serving.load(Ordering::SeqCst).then_some(private),
            move || {
                activity.asked.fetch_add(1, Ordering::SeqCst);
                if activity.armed.swap(false, Ordering::SeqCst) {
                    let _ = sys::kill(pid, sys::SIGUSR2);
                }
            },
            Duration::from_millis(self.def.start_timeout_ms),
        )
        .map_err(|e| Error::new(ErrorKind::Other, format!("cannot start the relay: {e}")))?;
        self.relay = Some(relay);
        Ok(())
    }

    /// Stops the server: SIGTERM (and SIGCONT) to its group, SIGKILL after
    /// the kill grace; returns how it ended.
    fn stop_command(&mut self, fg: &mut Foreground) -> Exit {
        // The relay holds new connections from now on (they wake the next
        // start), rather than joining them to a server that is ending.
        self.serving.store(false, Ordering::SeqCst);
        fg.signal_group(sys::SIGTERM);
        let grace = Duration::from_millis(self.def.kill_grace_ms);
        let until = Instant::now() + grace;
        let mut killed = false;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let wait = if killed || left.is_zero() { Duration::from_millis(100) } else { left };
            match fg.poll(Some(wait)) {
                Polled::Exited(exit) => {
                    self.state.command_pid = None;
                    self.keep_stashed(fg);
                    return exit;
                }
                Polled::Signal(r) => self.keep(r),
                Polled::Timeout if !killed && Instant::now() >= until => {
                    fg.signal_group(sys::SIGKILL);
                    let _ = sys::kill(fg.supervisor_pid() as i32, sys::SIGKILL);
                    killed = true;
                }
                Polled::Timeout => {}
            }
        }
    }

    /// A stop or restart told while the loop cannot act on it at once:
    /// kept for later (a stop wins over a restart); a report is written.
    fn keep(&mut self, r: sys::Received) {
        match told(r) {
            Told::Stop => self.pending = Some(Told::Stop),
            Told::Restart if self.pending.is_none() => self.pending = Some(Told::Restart),
            Told::Report => self.write_stats(),
            _ => {}
        }
    }

    /// [`Serve::keep`] for what arrived while `fg` stopped leftovers.
    fn keep_stashed(&mut self, fg: &mut Foreground) {
        for r in fg.take_stashed() {
            self.keep(r);
        }
    }

    /// On demand, no server: blocks until a connection arrives (true) or
    /// the supervisor is told to stop (false).
    fn sleep(&mut self) -> bool {
        match self.pending.take() {
            Some(Told::Stop) => return false,
            Some(Told::Restart) => return true,
            _ => {}
        }
        // A connection that arrived before the waker was armed is found by
        // it: poll(2) is level-triggered.
        self.activity.armed.store(true, Ordering::SeqCst);
        // The relay asks once per connection; one that asked since the
        // last run started (while it was being stopped) waits still. One
        // held across a failed start asked before that run: it does not
        // start another.
        if self.relay.is_some() && self.activity.asked.load(Ordering::SeqCst) > self.asked_seen {
            self.activity.armed.store(false, Ordering::SeqCst);
            self.woke = true;
            return true;
        }
        let _ = sys::trim_resident();
        // Once more a moment later: threads that were still on their way
        // into the kernel (wakers, the relay, the log pump) may have
        // touched pages again. Then no timer at all.
        let mut settle = Some(TRIM_AGAIN_AFTER);
        loop {
            let got = self.signals.wait_for(settle.take());
            if matches!(got, Ok(None)) {
                let _ = sys::trim_resident();
                continue;
            }
            match got {
                Ok(Some(r)) => match told(r) {
                    Told::Stop => return false,
                    Told::Wake | Told::Restart => {
                        self.activity.armed.store(false, Ordering::SeqCst);
                        // Recorded with `started`: no registry write before
                        // the server starts.
                        self.woke = true;
                        return true;
                    }
                    Told::Report => self.write_stats(),
                    Told::Nothing => {}
                },
                Ok(None) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// One waker thread per public socket: while armed, a pending
    /// connection wakes the loop; always, it notes when connections come.
    fn start_wakers(&mut self) {
        for l in &self.listeners {
            let Ok(l) = l.try_clone() else { continue };
            let activity = Arc::clone(&self.activity);
            let pid = std::process::id() as i32;
            std::thread::spawn(move || {
                use std::os::fd::AsFd;
                loop {
                    match sys::wait_readable(l.as_fd(), None) {
                        Ok(true) => {
                            let now = now_ms();
                            if now > activity.probe_until_ms.load(Ordering::SeqCst) {
                                activity.last_ms.store(now, Ordering::Relaxed);
                            }
                            if activity.armed.swap(false, Ordering::SeqCst) {
                                let _ = sys::kill(pid, sys::SIGUSR2);
                            }
                            // The server accepts it; look again in a while
                            // (connections are noted once a second at most).
                            std::thread::sleep(Duration::from_secs(1));
                        }
                        Ok(false) => {}
                        Err(_) => std::thread::sleep(Duration::from_secs(1)),
                    }
                }
            });
        }
    }

    /// Runs the health check. With `--fd` the port is this supervisor's
    /// socket, which accepts a connection whether or not the server runs:
    /// a `tcp` check then passes once the server has accepted it (the
    /// socket's accept queue is empty again). Connections the check makes
    /// are not activity (the waker threads skip them).
    fn healthy(&self, timeout: Duration) -> Result<(), String> {
        let quiet = |ms: u64| self.activity.probe_until_ms.store(ms, Ordering::SeqCst);
        quiet(now_ms() + timeout.as_millis() as u64 + PROBE_QUIET_MS);
        // Behind the relay, where the relay connects: 127.0.0.1.
        let host = if self.def.on_demand && !self.def.fd {
            Some(std::net::Ipv4Addr::LOCALHOST.into())
        } else {
            self.server_host().and_then(|h| h.parse().ok())
        };
        let dir = Path::new(&self.def.dir);
        let mut r = health::check_on(&self.check, host, self.private, &self.env, dir, timeout);
        if r.is_ok() && self.def.fd && self.check == Check::Tcp {
            let until = Instant::now() + timeout;
            r = loop {
                match sys::accept_queue(self.port) {
                    Ok(0) | Err(_) => break Ok(()),
                    Ok(_) if Instant::now() >= until => {
                        break Err(format!(
                            "the server did not accept a connection on port {} within {}",
                            self.port,
                            portd_store::format_duration(timeout)
                        ));
                    }
                    Ok(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            };
        }
        quiet(now_ms() + PROBE_QUIET_MS);
        r
    }

    fn start_command(&mut self) -> Result<Foreground, StartError> {
        let other = |what: &str, e: std::io::Error| {
            StartError::Other(Error::new(ErrorKind::Other, format!("{what}: {e}")))
        };
        let listeners = if self.def.fd {
            self.listeners
                .iter()
                .map(TcpListener::try_clone)
                .collect::<std::io::Result<Vec<_>>>()
                .map_err(|e| other("cannot pass the listening socket", e))?
        } else {
            Vec::new()
        };
        let writer = self.log_writer.as_ref().expect("log opened");
        let out = writer.try_clone().map_err(|e| other("cannot open the log", e))?;
        let err = writer.try_clone().map_err(|e| other("cannot open the log", e))?;
        let launch = Launch {
            name: self.project.display().to_owned(),
            argv: self.argv.clone(),
            listeners,
            kill_grace: Duration::from_millis(self.def.kill_grace_ms),
        };
        let env = self.env.clone();
        let dir = self.def.dir.clone();
        Foreground::start(&self.exe, launch, move |cmd| {
            cmd.current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .env_remove("LISTEN_FDS")
                .env_remove("LISTEN_PID")
                .env_remove("LISTEN_FDNAMES");
            for (k, v) in &env {
                cmd.env(k, v);
            }
        })
    }

    /// Reads the definition again before a start, so that a `portd add`
    /// since the last one applies (`restart`). How the port is held (on
    /// demand, `--fd`, `--host`) stays as it was when this supervisor
    /// started: that takes a stop and a start. `false`: the server is no
    /// longer defined.
    fn reload(&mut self) -> Result<bool, Error> {
        let Some(mut def) = self.reg.definition(&self.project)? else {
            return Ok(false);
        };
        if def == self.def {
            return Ok(true);
        }
        (def.on_demand, def.fd, def.host) =
            (self.def.on_demand, self.def.fd, self.def.host.clone());
        if let Ok(check) = def.health.parse() {
            self.check = check;
        }
        self.def = def;
        self.resolve()?;
        Ok(true)
    }

    /// The host the server itself listens on: the definition's, except
    /// behind the relay, where only the relay's sockets are on `--host` and
    /// the server stays on loopback.
    fn server_host(&self) -> Option<&str> {
        if self.def.on_demand && !self.def.fd { None } else { self.def.host.as_deref() }
    }

    /// The command line and environment the server runs with: `{port}`
    /// replaced, the lease's variables, then the definition's.
    fn resolve(&mut self) -> Result<(), Error> {
        let port = self.private;
        let reg = self.reg;
        // `{port:NAME}` / `{url:NAME}`: a project with an entry, or a
        // defined one (given its port now).
        let resolve = |_: crate::refs::Kind, name: &str| -> Option<u16> {
            let p = Project::name(name).ok()?;
            match reg.show(&p) {
                Ok(l) => Some(l.entry.port),
                Err(_) if reg.definition(&p).ok()??.argv.is_empty() => None,
                Err(_) => reg.get(name).ok(),
            }
        };
        let refs = |text: &str| {
            crate::refs::substitute(text, resolve).map_err(|e| {
                Error::new(ErrorKind::UnknownProject, e)
                    .with_hint("define it with `portd add`, or give it a port with `portd get`")
            })
        };
        let (program, args) = self.def.argv.split_first().expect("a definition has a command");
        let mut argv = vec![refs(program)?];
        for a in args {
            argv.push(portd_store::with_port(&refs(a)?, port));
        }
        if self.def.inject && !self.def.fd {
            let dir = Path::new(&self.def.dir);
            let host = self.server_host().unwrap_or(crate::inject::LOOPBACK);
            let plan = crate::inject::plan_on(&argv, dir, port, host);
            for line in plan.lines() {
                self.say(line.trim_start_matches("portd: "));
                self.note(&line);
            }
            argv = plan.argv;
        }
        self.argv = argv;
        let p = port.to_string();
        self.env = vec![
            ("PORT".into(), p.clone()),
            ("PORTD_PORT".into(), p),
            ("PORTD_PROJECT".into(), self.project.display().to_owned()),
            ("PORTD_PROJECT_KEY".into(), self.project.key().to_owned()),
        ];
        if let Some(path) = &self.def.path {
            self.env.push(("PATH".into(), path.clone()));
        }
        if let Some(h) = self.server_host() {
            self.env.push(("HOST".into(), h.to_owned()));
        }
        for (k, v) in &self.def.env {
            self.env.push((k.clone(), portd_store::with_port(&refs(v)?, port)));
        }
        Ok(())
    }

    fn open_log(&mut self) -> Result<(), Error> {
        let file = LogFile::open(&self.log, LOG_CAP).map_err(|e| {
            Error::new(
                ErrorKind::Other,
                format!("cannot open the log `{}`: {e}", self.log.display()),
            )
        })?;
        let (reader, writer) = std::io::pipe()
            .map_err(|e| Error::new(ErrorKind::Other, format!("cannot make a pipe: {e}")))?;
        std::thread::spawn(move || logs::pump(reader, file));
        self.log_writer = Some(writer);
        Ok(())
    }

    /// A line of the supervisor's own in the log.
    fn say(&self, line: &str) {
        if let Some(w) = &self.log_writer {
            let mut w: &std::io::PipeWriter = w;
            let _ = writeln!(w, "portd: {line}");
        }
    }

    /// Moves to `phase` and records it with `evs`.
    fn transition(&mut self, phase: Phase, reason: Option<String>, evs: Vec<EventKind>) {
        self.state.phase = phase;
        if reason.is_some() || phase == Phase::Running {
            self.state.reason = reason;
        }
        self.record(evs);
    }

    fn events(&self, evs: Vec<EventKind>) -> Vec<Event> {
        let at_ms = now_ms();
        evs.into_iter()
            .map(|kind| {
                // Failures carry their reason.
                let detail = match kind {
                    EventKind::StartFailed
                    | EventKind::CrashLooping
                    | EventKind::Unhealthy
                    | EventKind::Stopped { why: StopWhy::Health } => self.state.reason.clone(),
                    _ => None,
                };
                Event { at_ms, project: self.project.key().to_owned(), kind, detail }
            })
            .collect()
    }

    fn record(&mut self, evs: Vec<EventKind>) {
        let evs = self.events(evs);
        if let Err(e) = self.reg.record_server(&self.project, &self.state, &evs) {
            self.say(&format!("could not record the state: {}", e.message()));
        }
    }

    /// The last state: recorded with `evs`, and the lease ended.
    fn finish(&mut self, phase: Phase, reason: Option<String>, evs: Vec<EventKind>) {
        self.state.phase = phase;
        self.state.reason = reason;
        self.state.command_pid = None;
        self.state.supervisor = None;
        let evs = self.events(evs);
        if let Err(e) = self.reg.end_server(&self.project, self.me, &self.state, &evs) {
            self.say(&format!("could not record the state: {}", e.message()));
        }
        if let Some(relay) = self.relay.take() {
            relay.stop();
            let _ = self.reg.end_lease(&self.project.relay(), self.me);
        }
    }

    /// A line for `portd start` to print on stderr, before its answer.
    fn note(&mut self, line: &str) {
        if let Some(r) = &mut self.report {
            let _ = writeln!(r, "note {}", one_line(line));
        }
    }

    /// Tells `portd start` (once).
    fn answer(&mut self, line: &str) {
        if let Some(mut r) = self.report.take() {
            let _ = writeln!(r, "{line}");
        }
    }

    fn fail(&mut self, code: u8, msg: &str, hint: &str) -> u8 {
        fail_report(self.report.take(), code, msg, hint)
    }
}

/// Binds the public port for an on-demand server: loopback (127.0.0.1 and,
/// where IPv6 is up, ::1) unless `host` names an address.
fn bind_public(
    lease: &portd_store::Allocation,
    host: Option<&str>,
) -> Result<Vec<TcpListener>, Error> {
    let port = lease.entry.port;
    let bound = match host {
        None | Some("localhost") => lease.bind_tcp_loopback(),
        Some(h) => {
            let ip: std::net::IpAddr = h.parse().map_err(|_| {
                Error::usage(format!("`--host {h}` is not an IP address"))
                    .with_hint("use e.g. `127.0.0.1`, `::1` or `0.0.0.0`")
            })?;
            lease.bind_tcp_on(ip).map(|l| vec![l])
        }
    };
    bound.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            portd_store::busy_error(port, false)
        } else {
            Error::new(ErrorKind::Other, format!("cannot listen on port {port}: {e}"))
        }
    })
}
