//! Health checks: `tcp`, `http:/PATH` and `cmd:COMMAND`.
//!
//! A [`Check`] is parsed from what the user wrote (`--health`) and printed
//! back the same way. [`check`] runs one check once, bounded by a timeout,
//! and says why it failed in words fit for `portd ls` and the log. How often
//! to check, and what to do after failures, is the supervisor's business.

use portd_core::sys;
use portd_store::format_duration;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// The forms a health check is written in, for messages.
pub const FORMS: &str = "`tcp`, `http:/PATH` or `cmd:COMMAND`";

/// How a server's health is checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Check {
    /// The port accepts a connection (on 127.0.0.1 or ::1).
    #[default]
    Tcp,
    /// `GET PATH` answers 2xx or 3xx. The path starts with `/`.
    Http(String),
    /// `sh -c COMMAND` exits 0.
    Cmd(String),
}

impl FromStr for Check {
    type Err = String;

    /// Parses `tcp`, `http:/PATH` or `cmd:COMMAND`; the error is one line
    /// that names the accepted forms.
    fn from_str(s: &str) -> Result<Check, String> {
        let bad =
            |why: &str| format!("`{}` is not a health check{why} (use {FORMS})", s.escape_debug());
        if s == "tcp" {
            return Ok(Check::Tcp);
        }
        if let Some(path) = s.strip_prefix("http:") {
            if !path.starts_with('/') {
                return Err(bad(": the path must start with `/`"));
            }
            // It goes into the request line as it is.
            if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(bad(": the path must not hold spaces or control characters"));
            }
            return Ok(Check::Http(path.to_owned()));
        }
        if let Some(command) = s.strip_prefix("cmd:") {
            if command.trim().is_empty() {
                return Err(bad(": the command is empty"));
            }
            return Ok(Check::Cmd(command.to_owned()));
        }
        Err(bad(""))
    }
}

impl fmt::Display for Check {
    /// The text [`Check::from_str`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Check::Tcp => f.write_str("tcp"),
            Check::Http(path) => write!(f, "http:{path}"),
            Check::Cmd(command) => write!(f, "cmd:{command}"),
        }
    }
}

/// Runs `check` once against a server on `port`, for at most `timeout`.
///
/// - `tcp`: connects to 127.0.0.1, then ::1 (a server on `localhost` may
///   listen on either).
/// - `http:/PATH`: connects the same way and sends `GET PATH HTTP/1.1` with
///   `Host: localhost:PORT` and `Connection: close`; a 2xx or 3xx status is
///   healthy.
/// - `cmd:COMMAND`: runs `sh -c COMMAND` in `dir` with `env` and `PORT`
///   set, no input and its output discarded, in a process group of its
///   own; exit status 0 is healthy. At the timeout the whole group is
///   killed (SIGKILL), and so is whatever the command left running.
///
/// The error says why, in one line: "connection refused on port 4000",
/// "GET /health answered 500", "`curl …` exited 1", "… timed out after 2s".
pub fn check(
    check: &Check,
    port: u16,
    env: &[(String, String)],
    dir: &Path,
    timeout: Duration,
) -> Result<(), String> {
    check_on(check, None, port, env, dir, timeout)
}

/// [`check`] of a server that listens on `host` rather than loopback
/// (`None`, or an unspecified address such as `0.0.0.0`: loopback).
pub fn check_on(
    check: &Check,
    host: Option<IpAddr>,
    port: u16,
    env: &[(String, String)],
    dir: &Path,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let host = host.filter(|h| !h.is_unspecified());
    match check {
        Check::Tcp => connect(host, port, deadline, timeout).map(drop),
        Check::Http(path) => http(host, path, port, deadline, timeout),
        Check::Cmd(command) => run(command, port, env, dir, deadline, timeout),
    }
}

/// Connects to `port` on `host`, or on 127.0.0.1, else on ::1.
fn connect(
    host: Option<IpAddr>,
    port: u16,
    deadline: Instant,
    timeout: Duration,
) -> Result<TcpStream, String> {
    let addrs: Vec<SocketAddr> = match host {
        Some(h) => vec![SocketAddr::from((h, port))],
        None => vec![
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
        ],
    };
    let mut v4_error = None;
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => return Ok(s),
            Err(e) if v4_error.is_none() => v4_error = Some(e),
            // ::1 matters only when it took the time that was left: when
            // IPv6 is off or nothing listens there either, 127.0.0.1 says it.
            Err(e) if timed_out(&e) => v4_error = Some(e),
            Err(_) => {}
        }
    }
    Err(match v4_error {
        Some(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            format!("connection refused on port {port}")
        }
        Some(e) if !timed_out(&e) => format!("cannot connect to port {port}: {e}"),
        _ => format!("connecting to port {port} timed out after {}", format_duration(timeout)),
    })
}

fn timed_out(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock)
}

/// The largest status line read, and the most of the rest read (and
/// discarded) so that the server is not answered with a reset.
const STATUS_LINE_MAX: usize = 8 << 10;
const DRAIN_MAX: usize = 256 << 10;

fn http(
    host: Option<IpAddr>,
    path: &str,
    port: u16,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), String> {
    let mut stream = connect(host, port, deadline, timeout)?;
    let what = format!("GET {path}");
    let late = || format!("{what} timed out after {}", format_duration(timeout));
    let failed = |e: io::Error| if timed_out(&e) { late() } else { format!("{what}: {e}") };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\nUser-Agent: portd\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(late());
    }
    stream.set_write_timeout(Some(left)).map_err(failed)?;
    stream.write_all(request.as_bytes()).map_err(failed)?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let line_end = loop {
        if let Some(i) = answer.iter().position(|&b| b == b'\n') {
            break i;
        }
        if answer.len() >= STATUS_LINE_MAX {
            return Err(format!("{what}: not an HTTP answer ({})", shown(&answer)));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(late());
        }
        stream.set_read_timeout(Some(left)).map_err(failed)?;
        match stream.read(&mut buf) {
            Ok(0) if answer.is_empty() => {
                return Err(format!("{what}: the connection was closed without an answer"));
            }
            Ok(0) => return Err(format!("{what}: not an HTTP answer ({})", shown(&answer))),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(failed(e)),
        }
    };
    let line = &answer[..line_end];
    let Some(status) = status_code(line) else {
        return Err(format!("{what}: not an HTTP answer ({})", shown(line)));
    };
    drain(&mut stream, deadline, answer.len());
    if (200..400).contains(&status) { Ok(()) } else { Err(format!("{what} answered {status}")) }
}

/// The status of an HTTP/1 status line (`HTTP/1.1 200 OK`).
fn status_code(line: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    let code = parts.next()?;
    if !version.starts_with("HTTP/1.")
        || code.len() != 3
        || !code.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    code.parse().ok()
}

/// Reads the rest of the answer (bounded in size and time), so that closing
/// the connection does not reset it under the server's feet.
fn drain(stream: &mut TcpStream, deadline: Instant, mut read: usize) {
    let mut buf = [0u8; 4096];
    while read < DRAIN_MAX {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => read += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Bytes for a message: the first few, escaped, in backticks.
fn shown(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let short: String = text.chars().take(40).collect();
    let more = if text.chars().count() > 40 { "…" } else { "" };
    format!("`{}{more}`", short.escape_debug())
}

/// A command for a message: its first line, shortened.
fn shown_command(command: &str) -> String {
    let first = command.trim().lines().next().unwrap_or("");
    let short: String = first.chars().take(60).collect();
    let more = if short.len() < command.trim().len() { " …" } else { "" };
    format!("`{}{more}`", short.escape_debug())
}

fn run(
    command: &str,
    port: u16,
    env: &[(String, String)],
    dir: &Path,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), String> {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let shown = shown_command(command);
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run {shown} in `{}`: {e}", dir.display()))?;
    // The child leads its group: the group's id is its pid, and stays
    // taken while the child is not reaped or the group has members.
    let group = -(child.id() as i32);
    let kill_group = || {
        let _ = sys::kill(group, sys::SIGKILL);
    };
    // Polled: a check is short and rare, and std has no wait with a
    // timeout. From 1 ms, so that a quick command is seen quickly.
    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => {
                kill_group();
                let _ = child.wait();
                return Err(format!("cannot wait for {shown}: {e}"));
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            kill_group();
            let _ = child.wait();
            return Err(format!("{shown} timed out after {}", format_duration(timeout)));
        }
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(25));
    };
    // Whatever it started in the background goes with it.
    kill_group();
    match (status.code(), status.signal()) {
        (Some(0), _) => Ok(()),
        (Some(code), _) => Err(format!("{shown} exited {code}")),
        (None, Some(signal)) => Err(format!("{shown} was killed by signal {signal}")),
        (None, None) => Err(format!("{shown} failed ({status})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Child;

    /// Says a test cannot run here; fails where skipping is not allowed.
    fn skip(why: &str) {
        let _ = writeln!(io::stderr(), "SKIP: {why}");
        // The test suites' switch (set in CI), not a variable of portd's.
        let no_skip = "PORTD_NO_SKIP";
        assert!(std::env::var_os(no_skip).is_none(), "SKIP not allowed here: {why}");
    }

    /// A server process, killed and reaped when dropped.
    struct Server(Child);
    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// A Python server answering by path: /health 500, /moved 302, /ok 204,
    /// /host 200 if the Host header is `localhost:PORT`, /slow after 5 s,
    /// /garbage not HTTP, anything else 404.
    const SERVER: &str = r#"
import http.server, socket, sys, time
port, family, host = int(sys.argv[1]), sys.argv[2], sys.argv[3]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == '/slow':
            time.sleep(5)
        if self.path == '/garbage':
            self.wfile.write(b'hello there\r\n')
            return
        code = {'/health': 500, '/moved': 302, '/ok': 204}.get(self.path, 404)
        if self.path == '/host':
            code = 200 if self.headers['Host'] == 'localhost:%d' % port else 400
        self.send_response(code)
        self.send_header('Content-Length', '0')
        self.end_headers()
    def log_message(self, *args):
        pass
class S(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6 if family == '6' else socket.AF_INET
    daemon_threads = True
S((host, port), H).serve_forever()
"#;

    fn python(args: &[&str], port: u16, v6: bool) -> Server {
        let child = Command::new("python3")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs");
        let server = Server(child);
        let addr: SocketAddr = if v6 {
            (Ipv6Addr::LOCALHOST, port).into()
        } else {
            (Ipv4Addr::LOCALHOST, port).into()
        };
        let t = Instant::now();
        while TcpStream::connect(addr).is_err() {
            assert!(t.elapsed() < Duration::from_secs(15), "the server on {port} never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn test_server(port: u16, v6: bool) -> Server {
        let p = port.to_string();
        let (family, host) = if v6 { ("6", "::1") } else { ("4", "127.0.0.1") };
        python(&["-c", SERVER, &p, family, host], port, v6)
    }

    fn http(path: &str) -> Check {
        Check::Http(path.to_owned())
    }

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn parses_and_prints_every_form_back() {
        for text in
            ["tcp", "http:/", "http:/health?full=1", "cmd:curl -fs localhost:$PORT", "cmd:a\nb"]
        {
            let c: Check = text.parse().unwrap();
            assert_eq!(c.to_string(), text);
        }
        assert_eq!("http:/h".parse(), Ok(http("/h")));
        assert_eq!("cmd:true".parse(), Ok(Check::Cmd("true".into())));
        assert_eq!(Check::default(), Check::Tcp);
    }

    #[test]
    fn a_bad_check_is_one_line_naming_the_accepted_forms() {
        let cases = [
            ("", "`` is not a health check"),
            ("TCP", "`TCP` is not a health check"),
            ("http", "`http` is not a health check"),
            ("http:health", "`http:health` is not a health check: the path must start with `/`"),
            ("http:/a b", "`http:/a b` is not a health check: the path must not hold spaces"),
            ("http:/a\r\nX: y", "`http:/a\\r\\nX: y` is not a health check: the path must not"),
            ("cmd:", "`cmd:` is not a health check: the command is empty"),
            ("cmd:  ", "`cmd:  ` is not a health check: the command is empty"),
            ("udp", "`udp` is not a health check"),
        ];
        for (text, start) in cases {
            let e = text.parse::<Check>().unwrap_err();
            assert!(e.starts_with(start), "{text:?}: {e}");
            assert!(e.ends_with("(use `tcp`, `http:/PATH` or `cmd:COMMAND`)"), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn tcp_and_http_against_python_http_server() {
        let port = 31501;
        let dir = tmp();
        let root = dir.path().to_str().unwrap();
        let _server = python(
            &["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1", "--directory", root],
            port,
            false,
        );
        let d = dir.path();
        assert_eq!(check(&Check::Tcp, port, &[], d, SECOND), Ok(()));
        assert_eq!(check(&http("/"), port, &[], d, SECOND), Ok(()));
        assert_eq!(
            check(&http("/missing"), port, &[], d, SECOND),
            Err("GET /missing answered 404".into())
        );
    }

    #[test]
    fn http_takes_2xx_and_3xx_and_reports_the_rest() {
        let port = 31502;
        let _server = test_server(port, false);
        let d = Path::new("/");
        assert_eq!(
            check(&http("/health"), port, &[], d, SECOND),
            Err("GET /health answered 500".into())
        );
        assert_eq!(check(&http("/moved"), port, &[], d, SECOND), Ok(()));
        assert_eq!(check(&http("/ok"), port, &[], d, SECOND), Ok(()));
        assert_eq!(check(&http("/host"), port, &[], d, SECOND), Ok(()), "Host: localhost:PORT");
        assert_eq!(
            check(&http("/garbage"), port, &[], d, SECOND),
            Err("GET /garbage: not an HTTP answer (`hello there\\r`)".into())
        );
        let t = Instant::now();
        let r = check(&http("/slow"), port, &[], d, Duration::from_millis(300));
        assert_eq!(r, Err("GET /slow timed out after 300ms".into()));
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }

    #[test]
    fn nothing_listening_is_connection_refused() {
        let port = 31599;
        let d = Path::new("/");
        let refused = Err(format!("connection refused on port {port}"));
        assert_eq!(check(&Check::Tcp, port, &[], d, SECOND), refused);
        assert_eq!(check(&http("/"), port, &[], d, SECOND), refused);
    }

    #[test]
    fn a_server_on_ipv6_localhost_only_is_found() {
        let port = 31503;
        if std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_err() {
            return skip("IPv6 loopback is not available");
        }
        let _server = test_server(port, true);
        let d = Path::new("/");
        assert_eq!(check(&Check::Tcp, port, &[], d, SECOND), Ok(()));
        assert_eq!(check(&http("/ok"), port, &[], d, SECOND), Ok(()));
        assert_eq!(
            check(&http("/health"), port, &[], d, SECOND),
            Err("GET /health answered 500".into())
        );
    }

    #[test]
    fn a_full_backlog_times_out() {
        // A listener that never accepts, with its backlog full: the kernel
        // drops further SYNs, so a connection attempt hangs.
        let port = 31504;
        let listener =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        listener.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)).into()).unwrap();
        listener.listen(0).unwrap();
        let mut held = Vec::new();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        while let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            held.push(s);
            assert!(held.len() < 64, "the backlog never filled");
        }
        let t = Instant::now();
        let r = check(&Check::Tcp, port, &[], Path::new("/"), Duration::from_millis(300));
        assert_eq!(r, Err(format!("connecting to port {port} timed out after 300ms")));
        assert!(t.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn cmd_is_healthy_when_it_exits_0() {
        let d = tmp();
        assert_eq!(check(&Check::Cmd("true".into()), 31505, &[], d.path(), SECOND), Ok(()));
        assert_eq!(
            check(&Check::Cmd("false".into()), 31505, &[], d.path(), SECOND),
            Err("`false` exited 1".into())
        );
        assert_eq!(
            check(&Check::Cmd("kill -9 $$".into()), 31505, &[], d.path(), SECOND),
            Err("`kill -9 $$` was killed by signal 9".into())
        );
        let long = format!("test {} = x", "a".repeat(80));
        let e = check(&Check::Cmd(long), 31505, &[], d.path(), SECOND).unwrap_err();
        assert_eq!(e, format!("`test {} …` exited 1", "a".repeat(55)));
    }

    #[test]
    fn cmd_runs_in_the_directory_with_port_and_the_environment() {
        let d = tmp();
        let dir = d.path().canonicalize().unwrap();
        let script = format!(
            "test \"$PORT\" = 31506 && test \"$API_URL\" = http://localhost:4000 && test \"$(pwd -P)\" = '{}' && test ! -t 0 && echo noise && echo noise >&2",
            dir.display()
        );
        let env = [
            ("API_URL".to_owned(), "http://localhost:4000".to_owned()),
            ("PORT".to_owned(), "1".to_owned()),
        ];
        assert_eq!(check(&Check::Cmd(script), 31506, &env, &dir, SECOND), Ok(()));
        let e =
            check(&Check::Cmd("true".into()), 31506, &[], &dir.join("gone"), SECOND).unwrap_err();
        assert!(e.starts_with("cannot run `true` in `"), "{e}");
    }

    /// Whether any process is in process group `pgid`, waiting up to 5 s
    /// for killed ones to be reaped.
    fn group_alive(pgid: u32) -> bool {
        let t = Instant::now();
        loop {
            let alive = sys::process_table().iter().any(|p| p.pgrp == pgid && p.state != 'Z');
            if !alive || t.elapsed() > Duration::from_secs(5) {
                return alive;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn read_pid(path: &Path) -> u32 {
        std::fs::read_to_string(path).unwrap().trim().parse().unwrap()
    }

    #[test]
    fn cmd_past_the_timeout_is_killed_with_its_whole_group() {
        let d = tmp();
        let pidfile = d.path().join("pid");
        // An odd duration names this test's sleep among all processes.
        let sleeping = || {
            let want = ["sleep".to_owned(), "10.31507".to_owned()];
            sys::process_table()
                .iter()
                .any(|p| p.state != 'Z' && sys::cmdline(p.pid).is_some_and(|c| c[..] == want[..]))
        };
        let watcher = std::thread::spawn(move || {
            let t = Instant::now();
            while !sleeping() {
                if t.elapsed() > Duration::from_secs(5) {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            true
        });
        let t = Instant::now();
        let e = check(
            &Check::Cmd("sleep 10.31507".into()),
            31507,
            &[],
            d.path(),
            Duration::from_millis(300),
        );
        assert_eq!(e, Err("`sleep 10.31507` timed out after 300ms".into()));
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert!(watcher.join().unwrap(), "the sleep was seen running during the check");
        let t = Instant::now();
        while sleeping() {
            assert!(t.elapsed() < Duration::from_secs(5), "the sleep is still running");
            std::thread::sleep(Duration::from_millis(10));
        }

        // A shell with two children: all three go.
        let script = "echo $$ > pid; sleep 10 & sleep 11; wait";
        let e = check(&Check::Cmd(script.into()), 31507, &[], d.path(), Duration::from_millis(300));
        assert_eq!(e, Err(format!("`{script}` timed out after 300ms")));
        let pgid = read_pid(&pidfile);
        assert!(!group_alive(pgid), "processes of group {pgid} are left");
        assert!(!Path::new(&format!("/proc/{pgid}")).exists());
    }

    #[test]
    fn cmd_leaves_nothing_running_in_its_group_after_it_exits() {
        let d = tmp();
        let pidfile = d.path().join("pid");
        let script = "echo $$ > pid; sleep 10 & exit 0";
        assert_eq!(check(&Check::Cmd(script.into()), 31508, &[], d.path(), SECOND), Ok(()));
        let pgid = read_pid(&pidfile);
        assert!(!group_alive(pgid), "the background sleep of group {pgid} is left");
    }
}
