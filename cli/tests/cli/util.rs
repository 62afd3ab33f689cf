//! Shared helpers: a private registry per test, running `portd`, checking
//! exit code, stdout and stderr together, and the JSON shapes of the
//! output.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::ffi::OsStr;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_portd");

/// What one `portd` run produced. Occurrences of the test's temporary
/// directory are replaced by `[ROOT]`, so messages can be compared exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The exit code (`-1` if killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Asserts exit 0 with nothing on stderr, and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!((self.code, self.stderr.as_str()), (0, ""), "expected success: {self:#?}");
        self.no_panic();
        &self.stdout
    }

    /// Asserts exit 0, an empty stderr, and one port on stdout; returns it.
    #[track_caller]
    pub fn port(&self) -> u16 {
        let out = self.ok();
        assert!(out.ends_with('\n') && out.lines().count() == 1, "one line expected: {self:#?}");
        out.trim_end().parse().unwrap_or_else(|_| panic!("not a port: {self:#?}"))
    }

    /// Asserts success and parses stdout as JSON.
    #[track_caller]
    pub fn json<T: DeserializeOwned>(&self) -> T {
        let out = self.ok();
        serde_json::from_str(out).unwrap_or_else(|e| panic!("bad JSON ({e}): {self:#?}"))
    }

    /// Asserts a portd error: exit `code`, nothing on stdout, and on stderr
    /// exactly one `error:` line, optionally followed by one `hint:` line.
    /// Returns stderr.
    #[track_caller]
    pub fn error(&self, code: i32) -> &str {
        assert_eq!((self.code, self.stdout.as_str()), (code, ""), "{self:#?}");
        self.no_panic();
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert!(self.stderr.ends_with('\n'), "stderr must end with a newline: {self:#?}");
        match lines.as_slice() {
            [e] => assert!(e.starts_with("error: "), "{self:#?}"),
            [e, h] => assert!(e.starts_with("error: ") && h.starts_with("hint: "), "{self:#?}"),
            _ => panic!("expected an error line and at most a hint line: {self:#?}"),
        }
        &self.stderr
    }

    /// Asserts a failed `portd env`: as [`Output::error`], but with `false`
    /// on stdout, which makes `eval "$(portd env)"` fail. Returns stderr.
    #[track_caller]
    pub fn env_error(&self, code: i32) -> &str {
        assert_eq!(self.stdout, "false\n", "{self:#?}");
        let rest = Output { stdout: String::new(), ..self.clone() };
        rest.error(code);
        &self.stderr
    }

    /// Asserts a clap usage error: exit 2, nothing on stdout, an `error:`
    /// on stderr (clap may add usage lines). Returns stderr.
    #[track_caller]
    pub fn usage(&self) -> &str {
        assert_eq!((self.code, self.stdout.as_str()), (2, ""), "{self:#?}");
        self.no_panic();
        assert!(self.stderr.starts_with("error: "), "{self:#?}");
        &self.stderr
    }

    /// Asserts that neither stream shows a panic.
    #[track_caller]
    pub fn no_panic(&self) {
        for s in [&self.stdout, &self.stderr] {
            assert!(!s.contains("panicked") && !s.contains("internal error"), "panic: {self:#?}");
        }
    }
}

/// A test's private world: registry, configuration, scratch space.
#[derive(Debug)]
pub struct Env {
    tmp: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env { tmp: tempfile::Builder::new().prefix("portd-cli-").tempdir().unwrap() }
    }

    /// The temporary directory (also `XDG_CONFIG_HOME` and `HOME`).
    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// `PORTD_HOME`, created by portd on first use.
    pub fn home(&self) -> PathBuf {
        self.root().join("home")
    }

    /// The registry file.
    pub fn registry(&self) -> PathBuf {
        self.home().join("registry.redb")
    }

    /// Where portd looks for its config file (`$XDG_CONFIG_HOME/portd/config.toml`).
    pub fn config_path(&self) -> PathBuf {
        self.root().join("portd").join("config.toml")
    }

    /// Writes the config file.
    pub fn write_config(&self, text: impl AsRef<[u8]>) {
        std::fs::create_dir_all(self.root().join("portd")).unwrap();
        std::fs::write(self.config_path(), text).unwrap();
    }

    /// Removes the config file.
    pub fn remove_config(&self) {
        let _ = std::fs::remove_file(self.config_path());
    }

    /// `portd ARGS` with a clean environment: only `PATH`, `HOME`,
    /// `XDG_CONFIG_HOME` and `PORTD_HOME`, all pointing into the test's
    /// directory (no `PORTD_*` of the user's).
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.wrapped(&[], args)
    }

    /// `portd ARGS` started through `wrapper` (e.g. `prlimit --fsize=0`),
    /// with the environment of [`Env::command`].
    pub fn wrapped<I, S>(&self, wrapper: &[&str], args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = match wrapper.split_first() {
            Some((w, rest)) => {
                let mut c = Command::new(w);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.root())
            .env("XDG_CONFIG_HOME", self.root())
            .env("PORTD_HOME", self.home())
            .current_dir(self.root())
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `script` with `bash -c` in the test's directory, with the
    /// environment of [`Env::command`] and the binary under test first on
    /// `PATH` as `portd`: the README's shell lines, as a user types them.
    pub fn shell(&self, script: &str) -> Output {
        let bin_dir = Path::new(BIN).parent().unwrap().to_owned();
        let mut path = vec![bin_dir];
        path.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
        let mut cmd = Command::new("bash");
        cmd.args(["-c", script])
            .env_clear()
            .env("PATH", std::env::join_paths(path).unwrap())
            .env("HOME", self.root())
            .env("XDG_CONFIG_HOME", self.root())
            .env("PORTD_HOME", self.home())
            .current_dir(self.root())
            .stdin(Stdio::null());
        self.output(cmd)
    }

    /// Runs `portd ARGS`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.output(self.command(args))
    }

    /// Runs `portd ARGS` with extra environment variables.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.command(args);
        cmd.envs(env.iter().copied());
        self.output(cmd)
    }

    /// Runs a prepared command and collects its output.
    pub fn output(&self, mut cmd: Command) -> Output {
        let out = cmd.output().expect("cannot run portd");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: self.scrub(&String::from_utf8_lossy(&out.stdout)),
            stderr: self.scrub(&String::from_utf8_lossy(&out.stderr)),
        }
    }

    /// Replaces the temporary directory's path by `[ROOT]`.
    pub fn scrub(&self, s: &str) -> String {
        let mut s = s.to_owned();
        let canon = std::fs::canonicalize(self.root()).unwrap();
        for p in [canon.as_path(), self.root()] {
            s = s.replace(p.to_str().unwrap(), "[ROOT]");
        }
        s
    }

    /// `ls --json`, raw, for before/after comparisons.
    #[track_caller]
    pub fn ls_raw(&self) -> String {
        self.run(&["ls", "--json"]).ok().to_owned()
    }

    /// `ls --json`, parsed.
    #[track_caller]
    pub fn ls(&self) -> Vec<EntryJson> {
        self.run(&["ls", "--json"]).json()
    }
}

/// Binds `127.0.0.1:port` with std, retrying briefly: another test's portd
/// may be probing the same port at this very microsecond.
pub fn bind_v4_loopback(port: u16) -> std::io::Result<TcpListener> {
    let mut last = None;
    for _ in 0..20 {
        match TcpListener::bind(("127.0.0.1", port)) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(last.unwrap())
}

/// Skips the rest of a test that cannot run here: prints `SKIP: reason` on
/// stderr (visible with `--nocapture`, and counted by `.ci/run`). Where
/// `PORTD_NO_SKIP` is set (CI: root, IPv6, Linux), skipping is a failure.
#[track_caller]
pub fn skip(reason: &str) {
    // Written to the process's stderr, not through `eprintln!`, which the
    // test harness captures: a skip stays visible when the test passes.
    let _ = writeln!(std::io::stderr(), "SKIP: {reason}");
    assert!(
        std::env::var_os("PORTD_NO_SKIP").is_none(),
        "SKIP not allowed here (PORTD_NO_SKIP is set): {reason}"
    );
}

/// Whether this process runs as root (files it creates are owned by uid 0).
pub fn is_root(env: &Env) -> bool {
    use std::os::unix::fs::MetadataExt;
    let probe = env.root().join(".uid-probe");
    std::fs::write(&probe, b"").unwrap();
    let uid = std::fs::metadata(&probe).unwrap().uid();
    std::fs::remove_file(probe).unwrap();
    uid == 0
}

/// A live process to own leases (`sleep 60`); killed and reaped on drop.
pub struct Sleeper(pub std::process::Child);

impl Sleeper {
    pub fn spawn() -> Sleeper {
        let child = Command::new("sleep")
            .arg("60")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start `sleep`");
        Sleeper(child)
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The first of `n` consecutive ports at or above `from` that can be bound
/// on every address now and are not reserved by the kernel: a private
/// range for a test that needs every port of it.
pub fn free_ports(from: u16, n: u16) -> u16 {
    let reserved = portd_core::sys::reserved_ports();
    let is_reserved = |p: u16| reserved.iter().any(|&(a, b)| (a..=b).contains(&p));
    let bindable = |p: u16| {
        TcpListener::bind(("0.0.0.0", p)).is_ok()
            && (!ipv6_available() || TcpListener::bind(("::", p)).is_ok())
    };
    let mut start = from;
    while start < 30000 {
        if (start..start + n).all(|p| !is_reserved(p) && bindable(p)) {
            return start;
        }
        start += n;
    }
    panic!("no {n} consecutive free ports between {from} and 30000");
}

/// A test's own world whose only range is `start`..`start + len`: ports
/// are machine-wide, so tests running at once keep to ranges of their own.
pub fn private_range(start: u16, len: u16) -> Env {
    let env = Env::new();
    let end = start + len - 1;
    env.write_config(format!("[[range]]\nname = \"test\"\nstart = {start}\nend = {end}\n"));
    env
}

/// Polls `cond` every 10 ms until it holds; fails the test naming `what`
/// once `limit` has passed.
#[track_caller]
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + limit;
    while !cond() {
        assert!(std::time::Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The running kernel's (major, minor) version.
pub fn kernel_version() -> (u32, u32) {
    let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut it = r.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok());
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// Whether IPv6 loopback can be bound here.
pub fn ipv6_available() -> bool {
    TcpListener::bind(("::1", 0)).is_ok()
}

// ---- JSON shapes --------------------------------------------------------

/// An entry in `ls --json` and `show --json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EntryJson {
    pub project: String,
    pub key: String,
    pub port: u16,
    pub range: String,
    pub state: String,
    pub pid: Option<u32>,
    pub child_pid: Option<u32>,
    pub supervisor_pid: Option<u32>,
    pub command: Option<Vec<String>>,
    pub created: Option<String>,
    pub last_used: Option<String>,
}

/// `get --json`: the entry (without state) plus what this call did.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GetJson {
    pub project: String,
    pub key: String,
    pub port: u16,
    pub range: String,
    pub pid: Option<u32>,
    pub child_pid: Option<u32>,
    pub command: Option<Vec<String>>,
    pub created: Option<String>,
    pub last_used: Option<String>,
    pub fresh: bool,
    pub moved_from: Option<u16>,
    pub evicted: Vec<DroppedJson>,
    pub expired: Vec<DroppedJson>,
}

/// An entry an allocation removed, in `get --json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DroppedJson {
    pub project: String,
    pub key: String,
    pub port: u16,
}

/// `env --json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[allow(non_snake_case)]
pub struct EnvJson {
    pub PORT: String,
    pub PORTD_PORT: String,
    pub PORTD_PROJECT: String,
    pub PORTD_PROJECT_KEY: String,
}

/// One range in `status --json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RangeStatusJson {
    pub name: String,
    pub start: u16,
    pub end: u16,
    pub fallback: bool,
    pub usable: usize,
    pub used: usize,
    pub active: usize,
    pub idle: usize,
}

/// `status --json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StatusJson {
    pub registry: String,
    pub file_bytes: u64,
    pub ranges: Vec<RangeStatusJson>,
    pub outside_ranges: usize,
}

/// A value of `config --json` and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Sourced<T> {
    pub value: T,
    pub source: String,
}

/// A range in `config --json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RangeJson {
    pub name: String,
    pub start: u16,
    pub end: u16,
    pub fallback: bool,
}

/// `config --json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ConfigJson {
    pub home: Sourced<String>,
    pub config_file: ConfigFileJson,
    pub ranges: Sourced<Vec<RangeJson>>,
    pub exclude: Sourced<Vec<String>>,
    pub idle_ttl: Sourced<String>,
    pub lock_timeout: Sourced<String>,
    pub range: Sourced<Option<String>>,
    pub port: Sourced<Option<u16>>,
    pub shared: Sourced<bool>,
    pub allow_privileged: Sourced<bool>,
    pub proxy_port: Sourced<u16>,
}

/// `config_file` in `config --json`: the file read (or looked for).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ConfigFileJson {
    pub value: Option<String>,
    pub source: String,
    pub exists: bool,
}

/// A process bound to a port, in `check --json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HolderJson {
    pub pid: u32,
    pub name: String,
    pub command: Option<Vec<String>>,
    pub is_owner: bool,
    /// False for a TCP socket that is bound but not listening.
    pub listening: bool,
}

/// One port in `check --json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CheckJson {
    pub port: u16,
    pub bindable: bool,
    pub free: bool,
    /// This user may not bind it (EACCES).
    pub denied: bool,
    /// Connections in TIME_WAIT keep it from a new server.
    pub time_wait: bool,
    pub range: Option<String>,
    pub excluded: Option<String>,
    pub project: Option<String>,
    pub state: Option<String>,
    pub owner_pid: Option<u32>,
    pub bound_by: Vec<HolderJson>,
    pub in_ephemeral_range: bool,
}

/// `cleanup --json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CleanupJson {
    pub reclaimed: Vec<String>,
    pub expired: Vec<String>,
}

/// One project in `release --json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReleasedJson {
    pub project: String,
    pub key: String,
    pub port: u16,
}

/// `release --json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReleaseJson {
    pub released: Vec<ReleasedJson>,
}

/// `reset --yes --json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ResetJson {
    pub backup: Option<String>,
}

/// SIGKILLs the processes it names if the test panics, so that a failed
/// test leaves no `portd run` (whose children die with it) behind to hold
/// ports and load the machine for the tests after it.
pub struct Reaper(pub Vec<u32>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for pid in &self.0 {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            }
        }
    }
}

// ---- Managed servers ----------------------------------------------------

/// The fixtures of the managed-server tests (`cli/tests/fixtures/servers/NAME`).
pub fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/servers").join(name);
    assert!(p.is_file(), "missing fixture {}", p.display());
    p.to_str().unwrap().to_owned()
}

/// A world for managed-server tests: the private range `start`..`start + 20`.
/// When dropped — also when the test panics — it runs `portd stop --all`
/// and then SIGKILLs every process whose environment holds this test's
/// `PORTD_HOME` (supervisors, servers and what they started), so that no
/// test leaves a background server behind.
pub struct Servers {
    env: Env,
}

impl std::ops::Deref for Servers {
    type Target = Env;
    fn deref(&self) -> &Env {
        &self.env
    }
}

/// [`Servers`] on the 20 ports from `start`.
pub fn servers_env(start: u16) -> Servers {
    Servers { env: private_range(start, 20) }
}

/// [`Servers`] on the `len` ports from `start`.
pub fn servers_env_n(start: u16, len: u16) -> Servers {
    Servers { env: private_range(start, len) }
}

impl Servers {
    /// Asserts that no process of this test runs, allowing one that has
    /// answered but is still exiting half a second to go.
    #[track_caller]
    pub fn assert_nothing_runs(&self, what: &str) {
        let end = std::time::Instant::now() + Duration::from_millis(500);
        loop {
            let left = self.processes();
            if left.is_empty() {
                return;
            }
            if std::time::Instant::now() >= end {
                let cmds: Vec<_> = left.iter().map(|&p| (p, portd_core::sys::cmdline(p))).collect();
                panic!("{what}: still running: {cmds:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Processes whose environment holds this test's `PORTD_HOME`.
    pub fn processes(&self) -> Vec<u32> {
        processes_with_home(&self.home())
    }

    /// Live processes of this test (see [`Servers::processes`]) whose
    /// command line contains `needle`.
    pub fn matching(&self, needle: &str) -> Vec<u32> {
        self.processes()
            .into_iter()
            .filter(|&p| portd_core::sys::cmdline(p).is_some_and(|c| c.join(" ").contains(needle)))
            .collect()
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        // `stop --all`, bounded: a hanging stop must not hang the test run.
        if let Ok(mut child) =
            self.env.command(["stop", "--all"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn()
        {
            let end = std::time::Instant::now() + Duration::from_secs(20);
            while child.try_wait().ok().flatten().is_none() && std::time::Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let home = self.env.home();
        let end = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = processes_with_home(&home);
            if left.is_empty() || std::time::Instant::now() >= end {
                break;
            }
            for pid in left {
                let _ = portd_core::sys::kill(pid as i32, portd_core::sys::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Live (not zombie) processes other than this one whose environment has
/// `PORTD_HOME=home`.
pub fn processes_with_home(home: &Path) -> Vec<u32> {
    let me = std::process::id();
    let want = home.to_str().unwrap();
    portd_core::sys::process_table()
        .into_iter()
        .filter(|p| p.pid != me && p.state != 'Z')
        .filter(|p| {
            portd_core::sys::environ(p.pid)
                .is_some_and(|e| e.iter().any(|(k, v)| k == "PORTD_HOME" && v == want))
        })
        .map(|p| p.pid)
        .collect()
}

/// Whether `pid` runs (a zombie does not).
pub fn alive(pid: u32) -> bool {
    portd_core::sys::proc_stat(pid).is_ok_and(|s| s.state != 'Z')
}

/// Live members of process group `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    portd_core::sys::process_table()
        .into_iter()
        .filter(|p| p.pgrp == pgid && p.state != 'Z')
        .map(|p| p.pid)
        .collect()
}

/// One HTTP/1.0 GET of `path` on 127.0.0.1:port: the status and the body.
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::Read as _;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .split_ascii_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {out:?}")))?;
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    Ok((status, body))
}

/// `add --json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AddedJson {
    pub project: String,
    pub port: u16,
    pub created: bool,
    pub changes: Vec<String>,
}

/// The last event of a server in `status --detailed --json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LastEventJson {
    pub at: String,
    pub kind: String,
    pub text: String,
}

/// One server in `status --detailed --json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ServerLineJson {
    pub project: String,
    pub state: String,
    pub port: Option<u16>,
    pub uptime_s: Option<u64>,
    pub rss_bytes: Option<u64>,
    pub connections: Option<usize>,
    pub last_event: Option<LastEventJson>,
    /// Why it is stopped, unhealthy or crash-looping (where shown).
    #[serde(default)]
    pub reason: Option<String>,
    /// Relayed servers: HTTP requests in the last minute.
    #[serde(default)]
    pub requests_per_minute: Option<u64>,
}

/// `last_24h` in `status --detailed --json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DayJson {
    pub starts: usize,
    pub avg_startup_ms: Option<u64>,
    pub idle_shutdowns: usize,
    pub restarts: usize,
}

/// `status --detailed --json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DetailedJson {
    pub defined: usize,
    pub running: usize,
    pub sleeping: usize,
    pub stopped: usize,
    pub starting: usize,
    pub unhealthy: usize,
    pub crash_looping: usize,
    pub memory_bytes: u64,
    pub saved_bytes: u64,
    pub last_24h: DayJson,
    pub servers: Vec<ServerLineJson>,
}

impl Env {
    /// `status --detailed --json`, parsed.
    #[track_caller]
    pub fn detailed(&self) -> DetailedJson {
        self.run(&["status", "--detailed", "--json"]).json()
    }

    /// `name`'s line in `status --detailed --json`.
    #[track_caller]
    pub fn server(&self, name: &str) -> ServerLineJson {
        let d = self.detailed();
        d.servers
            .iter()
            .find(|s| s.project == name)
            .cloned()
            .unwrap_or_else(|| panic!("`{name}` not in status --detailed: {d:#?}"))
    }

    /// `name`'s entry in `ls --json`.
    #[track_caller]
    pub fn entry(&self, name: &str) -> EntryJson {
        let ls = self.ls();
        ls.iter()
            .find(|e| e.project == name)
            .cloned()
            .unwrap_or_else(|| panic!("`{name}` not in ls: {ls:#?}"))
    }
}

impl Env {
    /// `portd add NAME ARGS…` (ARGS ending with `-- COMMAND…`): asserts the
    /// port alone on stdout and the one `defined …` line on stderr, and
    /// returns the port.
    #[track_caller]
    pub fn add(&self, name: &str, args: &[&str]) -> u16 {
        let mut argv = vec!["add", name];
        argv.extend_from_slice(args);
        let out = self.run(&argv);
        out.no_panic();
        assert_eq!(out.code, 0, "{out:#?}");
        let port: u16 =
            out.stdout.trim_end().parse().unwrap_or_else(|_| panic!("not a port: {out:#?}"));
        assert_eq!(out.stdout, format!("{port}\n"), "{out:#?}");
        let defined = format!("defined `{name}` on port {port}: ");
        assert!(out.stderr.starts_with(&defined) && out.stderr.lines().count() == 1, "{out:#?}");
        port
    }

    /// `portd start NAME`: asserts success, returns the port.
    #[track_caller]
    pub fn start(&self, name: &str) -> u16 {
        self.run(&["start", name]).port()
    }
}

/// `python3 -m http.server` on the project's port, loopback only: the
/// arguments of `portd add NAME` after the name.
pub const HTTP_SERVER: &[&str] =
    &["--", "python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1"];

/// The text of the Vite fixture's `index.html` that proves Vite served it.
pub const VITE_MARKER: &str = "portd-vite-fixture-marker";

/// The Vite fixture project (`tests/fixtures/vite-app`), if Vite and node
/// are installed for it; otherwise [`skip`] says why (CI installs both).
pub fn vite_fixture() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vite-app");
    let vite = dir.join("node_modules/.bin/vite");
    let node = Command::new("node").arg("--version").output();
    if !vite.exists() || !node.is_ok_and(|o| o.status.success()) {
        skip(&format!(
            "Vite is not installed for the fixture (`npm ci --prefix {}`)",
            dir.display()
        ));
        return None;
    }
    Some(dir)
}

/// Whether `program` is on `PATH`.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Waits until `name`'s state in `status --detailed` is `state`; returns
/// that line.
#[track_caller]
pub fn wait_state(env: &Env, name: &str, state: &str, limit: Duration) -> ServerLineJson {
    let mut last = None;
    let end = std::time::Instant::now() + limit;
    loop {
        let s = env.server(name);
        if s.state == state {
            return s;
        }
        assert!(std::time::Instant::now() < end, "`{name}` never became {state}; last: {last:#?}");
        last = Some(s);
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes an executable script at `path` through a child process
/// (`install -m 755`), so that this multi-threaded test process never holds
/// the file open for writing: a child another test thread forks at that
/// moment would inherit the descriptor, and executing the file would then
/// fail with "Text file busy" (ETXTBSY).
pub fn write_executable(path: &Path, text: &str) {
    let src = path.with_extension("src");
    std::fs::write(&src, text).unwrap();
    let st = Command::new("install").arg("-m").arg("755").arg(&src).arg(path).status().unwrap();
    assert!(st.success(), "install {}", path.display());
    let _ = std::fs::remove_file(&src);
}
