//! The upstream pool of the `portd-proxy` binary, seen from outside: one
//! kept-alive connection serves a project's requests one after the other,
//! and it is closed about a second after the last one (a managed server
//! counts open connections before it stops when idle). Ports 43000–43019.
#![allow(clippy::print_stderr)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_portd-proxy");
const FIRST: u16 = 43000;
const PROXY_PORT: u16 = 43019;

/// Kills and reaps the processes a test started, also when it panics.
struct Kill(Vec<Child>);

impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The `portd` binary beside this test's `portd-proxy` (built when missing).
fn portd_bin() -> std::path::PathBuf {
    let bin = Path::new(BIN).with_file_name("portd");
    if !bin.exists() {
        let ok = Command::new(env!("CARGO"))
            .args(["build", "-p", "portd", "--bin", "portd"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot build `portd`");
    }
    bin
}

fn wait_port(port: u16) {
    let end = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One GET through the proxy on a new connection: status and body.
fn get(host: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", PROXY_PORT)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    let mut rest = String::new();
    r.read_to_string(&mut rest).unwrap();
    let code = status.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, rest.rsplit("\r\n\r\n").next().unwrap_or("").to_owned())
}

/// Established TCP connections whose remote end is `port` on loopback
/// (from /proc/net/tcp: only the proxy connects to the upstream here).
fn connections_to(port: u16) -> usize {
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    tcp.lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[3] == "01" && f[2].ends_with(&format!(":{port:04X}"))
        })
        .count()
}

#[test]
fn one_pooled_connection_serves_successive_requests_and_closes_a_second_after_the_last() {
    if !Command::new("python3").arg("-c").arg("pass").status().is_ok_and(|s| s.success()) {
        return skip("python3 is not installed");
    }
    let tmp = tempfile::tempdir().unwrap();
    let (home, config) = (tmp.path().join("home"), tmp.path().join("config.toml"));
    std::fs::write(
        &config,
        format!("[[range]]\nname = \"test\"\nstart = {FIRST}\nend = {}\n", PROXY_PORT - 1),
    )
    .unwrap();
    let portd = |args: &[&str]| {
        let out = Command::new(portd_bin())
            .args(args)
            .env("PORTD_HOME", &home)
            .env("PORTD_CONFIG", &config)
            .output()
            .unwrap();
        assert!(out.status.success(), "portd {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let up: u16 = portd(&["get", "up"]).trim().parse().unwrap();
    // An HTTP/1.1 upstream that keeps connections open.
    let server = "import http.server as h, sys\n\
        class H(h.BaseHTTPRequestHandler):\n\
        \x20   protocol_version = 'HTTP/1.1'\n\
        \x20   def do_GET(self):\n\
        \x20       self.send_response(200); self.send_header('Content-Length', '2')\n\
        \x20       self.end_headers(); self.wfile.write(b'ok')\n\
        \x20   def log_message(self, *a): pass\n\
        h.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()\n";
    let mut kill = Kill(Vec::new());
    kill.0.push(Command::new("python3").args(["-c", server, &up.to_string()]).spawn().unwrap());
    kill.0.push(
        Command::new(BIN)
            .args(["--port", &PROXY_PORT.to_string(), "--home"])
            .arg(&home)
            .env("PORTD_CONFIG", &config)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(up);
    wait_port(PROXY_PORT);
    let host = format!("up.localhost:{PROXY_PORT}");
    for _ in 0..5 {
        assert_eq!(get(&host), (200, "ok".to_owned()));
    }
    assert_eq!(connections_to(up), 1, "five requests one after the other share one connection");
    let last = Instant::now();
    while connections_to(up) > 0 {
        assert!(last.elapsed() < Duration::from_secs(3), "the pooled connection is still open");
        std::thread::sleep(Duration::from_millis(20));
    }
    let closed = last.elapsed();
    assert!(closed >= Duration::from_millis(800), "closed too early: {closed:?}");
    // A request after that dials a new connection and is answered.
    assert_eq!(get(&host), (200, "ok".to_owned()));
}

fn skip(why: &str) {
    assert!(std::env::var_os("PORTD_NO_SKIP").is_none(), "cannot skip under PORTD_NO_SKIP: {why}");
    eprintln!("SKIP: {why}");
}
