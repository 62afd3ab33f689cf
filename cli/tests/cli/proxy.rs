//! The proxy (`portd proxy`, the `portd-proxy` binary beside `portd`):
//! routing by Host to real servers (node, python), forwarded headers,
//! upstream keep-alive, WebSocket passthrough, the error pages, starting
//! defined servers on the first request, how soon a registry change is
//! routed, the background proxy's start/stop/status, and systemd's socket
//! handoff. Ports: the band 40000–40999 (ranges from 40100, proxies from
//! 40900) and 42000–42499.

use crate::util::{self, BIN, ConfigJson, Env, Servers, servers_env, wait_for, wait_state};
use serde::Deserialize;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The proxy binary beside `portd`, built (once per test run) if it is
/// missing or older than its sources: `cargo test -p portd` does not build
/// another package's binary.
pub(crate) fn proxy_bin() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let p = Path::new(BIN).with_file_name("portd-proxy");
            let release = p.parent().and_then(Path::file_name).is_some_and(|d| d == "release");
            let mut cmd = Command::new(env!("CARGO"));
            cmd.args(["build", "-q", "-p", "portd-proxy", "--bin", "portd-proxy"]);
            if release {
                cmd.arg("--release");
            }
            let status = cmd.current_dir(env!("CARGO_MANIFEST_DIR")).status().unwrap();
            assert!(status.success(), "cannot build `portd-proxy`");
            assert!(p.is_file(), "no `portd-proxy` at {}", p.display());
            p
        })
        .clone()
}

/// A child process killed (and reaped) when dropped, also on panic.
pub(crate) struct Proc(pub(crate) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A Python server on `{port}` that keeps connections open (HTTP/1.1):
/// the side that closes a connection first keeps its port in TIME_WAIT
/// for a minute, and portd's allocator rightly counts a port in TIME_WAIT
/// as taken. Python's default HTTP/1.0 closes after every answer, so each
/// run of these tests would take the next ports of its band for a minute,
/// and a few runs in a row would find the band full. With HTTP/1.1 the
/// proxy, the client, closes first, on a port of the kernel's choosing.
const PY_SERVER: &[&str] =
    &["python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1", "--protocol", "HTTP/1.1"];

/// A free port of the band for a proxy (`n`: which test).
fn proxy_port(n: u16) -> u16 {
    let bindable = |p: u16| {
        std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
            && (!util::ipv6_available() || std::net::TcpListener::bind(("::1", p)).is_ok())
    };
    (40900 + n * 4..40904 + n * 4)
        .find(|&p| bindable(p) && bindable(p + 1))
        .unwrap_or_else(|| panic!("no free proxy port at {}", 40900 + n * 4))
}

/// `portd proxy --port PORT` in the foreground, once it has started: it
/// listens and has written `proxy.json` naming itself. (A connection
/// alone proves less: a proxy that binds 127.0.0.1 and then fails on ::1
/// accepts for a moment before it ends.) If it ends instead, the test
/// fails with its error.
fn run_proxy(env: &Env, port: u16) -> Proc {
    proxy_bin();
    let log = env.root().join(format!("proxy-{port}.log"));
    let child = env
        .command(["proxy", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut p = Proc(child);
    let pid = p.0.id();
    wait_for("the proxy to start", Duration::from_secs(10), || {
        if let Some(st) = p.0.try_wait().unwrap() {
            panic!("the proxy ended ({st}): {}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        proxy_json(env).is_some_and(|i| i.pid == pid)
    });
    p
}

/// What `proxy.json` says.
#[derive(Debug, Deserialize)]
struct ProxyJson {
    pid: u32,
    port: u16,
}

/// The registry's `proxy.json`, if there.
fn proxy_json(env: &Env) -> Option<ProxyJson> {
    let text = std::fs::read_to_string(env.home().join("proxy.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// The node upstream of the fixtures on `port` (bound on `host`).
fn node_upstream(port: u16, host: &str) -> Proc {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proxy/upstream.js");
    let child = Command::new("node")
        .arg(script)
        .arg(port.to_string())
        .arg(host)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("node is required");
    let p = Proc(child);
    let ip: std::net::IpAddr = host.parse().unwrap();
    wait_for("node to listen", Duration::from_secs(10), || TcpStream::connect((ip, port)).is_ok());
    p
}

/// An HTTP answer.
#[derive(Debug)]
pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) headers: HashMap<String, String>,
    pub(crate) body: String,
}

impl Resp {
    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("bad JSON ({e}): {self:#?}"))
    }
}

/// Parses one HTTP/1.1 response (content-length, chunked or until close).
pub(crate) fn parse(raw: &[u8]) -> Resp {
    let text = String::from_utf8_lossy(raw);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head: {text:?}"));
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = if headers.get("transfer-encoding").is_some_and(|t| t == "chunked") {
        let mut out = String::new();
        let mut rest = rest;
        loop {
            let (size, after) = rest.split_once("\r\n").unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        out
    } else {
        rest.to_owned()
    };
    Resp { status, headers, body }
}

/// `GET path` with `Host: host` (and `extra` header lines) on a new
/// connection to 127.0.0.1:port, closed after the answer.
pub(crate) fn get(port: u16, host: &str, path: &str, extra: &str) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{extra}\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    parse(&raw)
}

/// `GET path` on a kept-alive connection to 127.0.0.1:port, which this
/// side closes once the answer (with its `Content-Length`) is in: a
/// server's port is then left out of TIME_WAIT (see [`PY_SERVER`]).
fn get_first_closing(port: u16, host: &str, path: &str) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the answer: {:?}", String::from_utf8_lossy(&raw));
        raw.extend_from_slice(&buf[..n]);
        let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
        let head = parse(&raw[..end + 4]);
        let len: usize = head.headers["content-length"].parse().unwrap();
        if raw.len() >= end + 4 + len {
            return parse(&raw);
        }
    }
}

/// [`get`] asking for JSON.
pub(crate) fn get_json(port: u16, host: &str) -> Resp {
    get(port, host, "/", "Accept: application/json\r\n")
}

/// What the node upstream echoes.
#[derive(Debug, Deserialize)]
struct Echo {
    url: String,
    headers: HashMap<String, String>,
    remote_port: u16,
}

/// A project listed in an error page's JSON.
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub(crate) struct PageProject {
    pub(crate) project: String,
    pub(crate) port: u16,
    pub(crate) state: String,
    pub(crate) url: Option<String>,
}

/// The JSON of an error page (the fields the tests read).
#[derive(Debug, Deserialize)]
pub(crate) struct Page {
    pub(crate) error: String,
    pub(crate) status: u16,
    #[serde(default)]
    pub(crate) host: Option<String>,
    #[serde(default)]
    pub(crate) projects: Vec<PageProject>,
    #[serde(default)]
    pub(crate) project: Option<String>,
    #[serde(default)]
    pub(crate) port: Option<u16>,
    #[serde(default)]
    pub(crate) state: Option<String>,
    #[serde(default)]
    pub(crate) reason: Option<String>,
    #[serde(default)]
    pub(crate) start_command: Option<String>,
    #[serde(default)]
    pub(crate) log: Vec<String>,
    #[serde(default)]
    pub(crate) registry_error: Option<String>,
}

#[test]
fn requests_are_routed_by_host_with_host_kept_and_forwarded_headers_added() {
    let env = servers_env(40100);
    let web = env.run(&["get", "web"]).port();
    let api = env.run(&["get", "myapp:api"]).port();
    let _web = node_upstream(web, "127.0.0.1");
    // Only on ::1, as Vite on `localhost` is on some systems.
    let _api = util::ipv6_available().then(|| node_upstream(api, "::1"));
    let pp = proxy_port(0);
    let _proxy = run_proxy(&env, pp);

    // Case-insensitive, a trailing dot and the port ignored; Host kept.
    let host = format!("WEB.LocalHost.:{pp}");
    let r = get(pp, &host, "/a/b?c=1", "");
    assert_eq!(r.status, 200, "{r:#?}");
    let e: Echo = r.json();
    assert_eq!(e.url, "/a/b?c=1");
    assert_eq!(e.headers["host"], host);
    assert_eq!(e.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(e.headers["x-forwarded-proto"], "http");
    assert_eq!(e.headers["x-forwarded-host"], host);
    assert!(!e.headers["x-portd-hop"].is_empty(), "{e:#?}");
    // A `:` name's parts reversed, as subdomains; dialled on ::1.
    if util::ipv6_available() {
        let r = get(pp, &format!("api.myapp.localhost:{pp}"), "/", "");
        assert_eq!(r.status, 200, "{r:#?}");
        assert_eq!(r.json::<Echo>().headers["host"], format!("api.myapp.localhost:{pp}"));
    } else {
        util::skip("no IPv6 here: the ::1 upstream is not tested");
    }
    // `.` separates labels, `_` is kept: routed (502: nothing listens there).
    let odd = env.run(&["get", "my_site.v2"]).port();
    wait_for("the route of my_site.v2", Duration::from_secs(2), || {
        get_json(pp, "my_site.v2.localhost").status == 502
    });
    let p: Page = get_json(pp, "my_site.v2.localhost").json();
    assert_eq!((p.project.as_deref(), p.port), (Some("my_site.v2"), Some(odd)));
    // Two names on one host name: refused, naming both.
    env.run(&["get", "Dup"]).port();
    env.run(&["get", "dup"]).port();
    wait_for("the ambiguous route", Duration::from_secs(2), || {
        get_json(pp, "dup.localhost").status == 409
    });
    let p: Page = get_json(pp, "dup.localhost").json();
    let mut names: Vec<&str> = p.projects.iter().map(|p| p.project.as_str()).collect();
    names.sort_unstable();
    assert_eq!((p.error.as_str(), names), ("Ambiguous host name", vec!["Dup", "dup"]));
}

#[test]
fn upstream_connections_are_reused_across_requests() {
    let env = servers_env(40120);
    let web = env.run(&["get", "web"]).port();
    let _web = node_upstream(web, "127.0.0.1");
    let pp = proxy_port(1);
    let _proxy = run_proxy(&env, pp);
    let ports: Vec<u16> = (0..5)
        .map(|_| {
            let r = get(pp, "web.localhost", "/", "");
            assert_eq!(r.status, 200, "{r:#?}");
            r.json::<Echo>().remote_port
        })
        .collect();
    // Five client connections, one upstream connection.
    assert!(ports.iter().all(|&p| p == ports[0]), "{ports:?}");
}

#[test]
fn a_websocket_echo_passes_through_the_proxy() {
    let env = servers_env(40140);
    let ws = env.run(&["get", "ws"]).port();
    let _ws = node_upstream(ws, "127.0.0.1");
    let pp = proxy_port(2);
    let _proxy = run_proxy(&env, pp);
    let (mut s, r) = websocket(pp, "ws.localhost", "/chat");
    // RFC 6455's own example key and accept value.
    assert_eq!(r.headers["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    for msg in ["hello", "through the proxy"] {
        assert_eq!(ws_echo(&mut s, msg), msg);
    }
}

#[test]
fn an_unknown_name_answers_404_listing_the_known_projects_as_links() {
    let env = servers_env(40160);
    let web = env.run(&["get", "web"]).port();
    let pp = proxy_port(3);
    let _proxy = run_proxy(&env, pp);
    let r = get(pp, &format!("nope.localhost:{pp}"), "/", "");
    assert_eq!(r.status, 404, "{r:#?}");
    assert!(r.headers["content-type"].starts_with("text/html"), "{r:#?}");
    assert!(r.body.contains("No project answers to <code>nope.localhost</code>"), "{}", r.body);
    assert!(
        r.body.contains(&format!("<a href=\"http://web.localhost:{pp}/\">web.localhost</a>")),
        "{}",
        r.body
    );
    let p: Page = get_json(pp, "nope.localhost").json();
    assert_eq!((p.error.as_str(), p.status), ("Unknown project", 404));
    let listed: Vec<(&str, u16, &str)> =
        p.projects.iter().map(|p| (p.project.as_str(), p.port, p.state.as_str())).collect();
    assert_eq!(listed, [("web", web, "idle")]);
    assert_eq!(p.projects[0].url.as_deref(), Some(format!("http://web.localhost:{pp}/").as_str()));
}

#[test]
fn a_project_that_does_not_answer_gets_502_with_its_port_state_and_start_command() {
    let env = servers_env(40180);
    let port = env.run(&["get", "quiet"]).port();
    let pp = proxy_port(4);
    let _proxy = run_proxy(&env, pp);
    let p: Page = get_json(pp, "quiet.localhost").json();
    assert_eq!((p.error.as_str(), p.status), ("Project not answering", 502));
    assert_eq!(
        (p.project.as_deref(), p.port, p.state.as_deref()),
        (Some("quiet"), Some(port), Some("idle"))
    );
    assert_eq!(p.start_command.as_deref(), Some("portd run quiet -- COMMAND ARGS…"));
    assert!(p.reason.as_deref().is_some_and(|r| r.contains("127.0.0.1 nor ::1")), "{p:#?}");
    let r = get(pp, "quiet.localhost", "/", "");
    assert_eq!(r.status, 502);
    assert!(r.body.contains(&format!("does not answer on port {port}")), "{}", r.body);
}

#[test]
fn a_request_that_comes_back_to_the_proxy_answers_508() {
    let env = servers_env(40200);
    // The project's port forwards to the proxy (a dev server's own proxy
    // pointed at the wrong place): forwarding loops.
    let port = env.run(&["get", "loop"]).port();
    let pp = proxy_port(11);
    let proxy = run_proxy(&env, pp);
    let relay = tcp_relay(port, pp);
    let r = get(pp, "loop.localhost", "/", "Accept: application/json\r\n");
    assert_eq!(r.status, 508, "{r:#?}");
    let p: Page = r.json();
    assert_eq!((p.error.as_str(), p.project.as_deref()), ("Proxy loop", Some("loop")));
    drop(proxy);
    drop(relay);
}

/// A TCP relay from 127.0.0.1:`from` to 127.0.0.1:`to` (Python). It never
/// closes a connection it accepted first: the side that closes first keeps
/// the port in TIME_WAIT for a minute, where the allocator (rightly) sees
/// it taken, and `from` is a port of the test's band. Start it after the
/// proxy (it connects to `to` for each connection) and drop it after.
fn tcp_relay(from: u16, to: u16) -> Proc {
    let script = "import socket,sys,threading\n\
        l=socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
        l.bind(('127.0.0.1', int(sys.argv[1]))); l.listen(64)\n\
        def pipe(a, b, last):\n\
        \x20 try:\n\
        \x20   while (d := a.recv(65536)): b.sendall(d)\n\
        \x20 except OSError: pass\n\
        \x20 if last: a.close(); b.close()\n\
        while True:\n\
        \x20 c, _ = l.accept(); u = socket.create_connection(('127.0.0.1', int(sys.argv[2])))\n\
        \x20 threading.Thread(target=pipe, args=(c, u, True), daemon=True).start()\n\
        \x20 threading.Thread(target=pipe, args=(u, c, False), daemon=True).start()\n";
    let child = Command::new("python3")
        .args(["-c", script, &from.to_string(), &to.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let p = Proc(child);
    wait_for("the relay to listen", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", from)).is_ok()
    });
    p
}

#[test]
fn bad_and_foreign_host_headers_get_400_and_421() {
    let env = servers_env(40220);
    let pp = proxy_port(5);
    let _proxy = run_proxy(&env, pp);
    let mut s = TcpStream::connect(("127.0.0.1", pp)).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    assert_eq!(parse(&raw).status, 400);
    assert_eq!(get(pp, "bad host!", "/", "").status, 400);
    assert_eq!(get(pp, "example.com", "/", "").status, 421);
    assert_eq!(get(pp, &format!("127.0.0.2:{pp}"), "/", "").status, 421);
}

#[test]
fn the_dashboard_answers_on_localhost_and_the_loopback_addresses_alike() {
    let env = servers_env(40400);
    env.run(&["get", "web"]).port();
    let pp = proxy_port(16);
    let _proxy = run_proxy(&env, pp);
    let v6 = util::ipv6_available();
    if !v6 {
        util::skip("no IPv6 here: `[::1]` is asked for over 127.0.0.1 only");
    }
    for host in ["portd.localhost", "localhost", "127.0.0.1", "[::1]"] {
        let host = format!("{host}:{pp}");
        // The page, and the API behind it (same answer whichever name).
        let r = get(pp, &host, "/", "");
        assert_eq!(r.status, 200, "{host}: {r:#?}");
        assert!(r.body.contains("<title>portd</title>"), "{host}: {}", r.body);
        let r = get(pp, &host, "/api/projects", "");
        assert_eq!(r.status, 200, "{host}: {r:#?}");
        let projects: Vec<serde_json::Value> = r.json();
        assert_eq!(projects.iter().filter(|p| p["project"] == "web").count(), 1, "{host}: {r:#?}");
    }
    if v6 {
        // Over ::1 itself, with the address the browser puts in Host.
        let mut s = TcpStream::connect(("::1", pp)).unwrap();
        write!(s, "GET / HTTP/1.1\r\nHost: [::1]:{pp}\r\nConnection: close\r\n\r\n").unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        assert_eq!(parse(&raw).status, 200);
    }
}

#[test]
fn options_star_is_answered_by_the_proxy_itself() {
    let env = servers_env(40420);
    // A project that does not answer: the request is not forwarded to it.
    env.run(&["get", "quiet"]).port();
    let pp = proxy_port(17);
    let _proxy = run_proxy(&env, pp);
    for host in ["quiet.localhost", "nope.localhost", "localhost", "127.0.0.1"] {
        let mut s = TcpStream::connect(("127.0.0.1", pp)).unwrap();
        write!(s, "OPTIONS * HTTP/1.1\r\nHost: {host}:{pp}\r\nConnection: close\r\n\r\n").unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let r = parse(&raw);
        assert_eq!(
            (r.status, r.headers.get("allow").map(String::as_str), r.body.as_str()),
            (200, Some("GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS"), ""),
            "{host}: {r:#?}"
        );
    }
    // A foreign or missing Host is refused first, as for any method.
    let mut s = TcpStream::connect(("127.0.0.1", pp)).unwrap();
    s.write_all(b"OPTIONS * HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    assert_eq!(parse(&raw).status, 421);
}

#[test]
fn the_first_request_starts_a_defined_on_demand_project_and_a_stopped_one() {
    // A wide band (42000–42099): the supervisors' health checks and relays
    // can leave a used port in TIME_WAIT, which the allocator counts as
    // taken for a minute, and test runs in a row must not run out.
    let env = util::servers_env_n(42000, 100);
    let lazy = env.add("lazy", &[&["--on-demand", "--"], PY_SERVER].concat());
    env.add("later", &[&["--"], PY_SERVER].concat());
    let pp = proxy_port(6);
    let _proxy = run_proxy(&env, pp);
    let r = get(pp, "lazy.localhost", "/", "");
    assert_eq!(r.status, 200, "{r:#?}");
    assert!(r.body.contains("Directory listing"), "{}", r.body);
    assert_eq!(env.server("lazy").port, Some(lazy));
    // Concurrent first requests for a stopped project share one start.
    let answers: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> =
            (0..4).map(|_| s.spawn(|| get(pp, "later.localhost", "/", "").status)).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(answers, [200; 4]);
    assert_eq!(env.server("later").state, "running");
    assert_eq!(env.matching("__serve later").len(), 1, "one supervisor");
}

#[test]
fn a_failed_start_answers_502_with_the_reason_and_the_log_tail() {
    let env = servers_env(40260);
    env.add("broken", &["--", "sh", "-c", "echo broken-output-line; exit 3"]);
    let pp = proxy_port(7);
    let _proxy = run_proxy(&env, pp);
    let p: Page = get_json(pp, "broken.localhost").json();
    assert_eq!(
        (p.error.as_str(), p.status, p.project.as_deref()),
        ("Start failed", 502, Some("broken"))
    );
    assert!(!p.reason.as_deref().unwrap_or("").is_empty(), "{p:#?}");
    assert!(p.log.iter().any(|l| l.contains("broken-output-line")), "{p:#?}");
    let r = get(pp, "broken.localhost", "/", "");
    assert!(
        r.body.contains("broken-output-line") && r.body.contains("portd logs broken"),
        "{}",
        r.body
    );
}

#[test]
fn a_new_project_is_routed_within_200ms_of_get_and_add() {
    let env = servers_env(40280);
    let pp = proxy_port(8);
    let _proxy = run_proxy(&env, pp);
    let add: Vec<&str> =
        ["add", "added", "--"].into_iter().chain(PY_SERVER.iter().copied()).collect();
    for (name, args) in [("fresh", vec!["get", "fresh"]), ("added", add)] {
        assert_eq!(get_json(pp, &format!("{name}.localhost")).status, 404);
        let out = env.run(&args);
        assert_eq!(out.code, 0, "{out:#?}");
        let t = Instant::now();
        // The time the first request that found the route was sent (the
        // answer itself may wait for a start).
        let found = loop {
            let sent = t.elapsed();
            assert!(sent < Duration::from_millis(200), "`{name}` not routed after 200 ms");
            if get_json(pp, &format!("{name}.localhost")).status != 404 {
                break sent;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        assert!(found < Duration::from_millis(200), "{found:?}");
    }
}

/// `proxy status --json`.
#[derive(Debug, Deserialize, PartialEq, Eq)]
struct StatusJson {
    running: bool,
    #[serde(default)]
    pid: Option<u32>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    url: Option<String>,
}

#[test]
fn proxy_start_stop_status_and_a_second_start_that_says_where_the_first_is() {
    let env = servers_env(40300);
    proxy_bin();
    let pp = proxy_port(9);
    let st: StatusJson = env.run(&["proxy", "status", "--json"]).json();
    assert_eq!(st, StatusJson { running: false, pid: None, port: None, url: None });
    let out = env.run(&["proxy", "start", "--port", &pp.to_string()]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(out.stdout, format!("{pp}\n"));
    let st: StatusJson = env.run(&["proxy", "status", "--json"]).json();
    let log = || std::fs::read_to_string(env.home().join("logs/proxy.log")).unwrap_or_default();
    let pid = st.pid.unwrap_or_else(|| panic!("{st:?} {out:#?} {}", log()));
    assert_eq!(
        st,
        StatusJson {
            running: true,
            pid: Some(pid),
            port: Some(pp),
            url: Some(format!("http://localhost:{pp}/"))
        }
    );
    assert_eq!(out.stderr, format!("proxy started (pid {pid}) on http://localhost:{pp}/\n"));
    // A second start, on another port even: it says where the first is.
    let again = env.run(&["proxy", "start", "--port", &(pp + 1).to_string()]);
    assert_eq!(
        (again.code, again.stdout.as_str(), again.stderr.as_str()),
        (
            0,
            format!("{pp}\n").as_str(),
            format!("proxy already running (pid {pid}) on http://localhost:{pp}/\n").as_str()
        )
    );
    // A foreground proxy beside it is refused.
    let fg = env.run(&["proxy", "--port", &(pp + 1).to_string()]);
    assert!(fg.error(5).contains("a proxy already runs for the registry"), "{fg:#?}");
    // Killed with SIGKILL: the next start is clean.
    portd_core::sys::kill(pid as i32, portd_core::sys::SIGKILL).unwrap();
    wait_for("the proxy to die", Duration::from_secs(5), || !util::alive(pid));
    let out = env.run(&["proxy", "start", "--port", &pp.to_string()]);
    assert_eq!((out.code, out.stdout.as_str()), (0, format!("{pp}\n").as_str()), "{out:#?}");
    let pid2 = env.run(&["proxy", "status", "--json"]).json::<StatusJson>().pid.unwrap();
    assert_ne!(pid2, pid);
    assert_eq!(out.stderr, format!("proxy started (pid {pid2}) on http://localhost:{pp}/\n"));
    let out = env.run(&["proxy", "stop"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:#?}");
    assert_eq!(out.stderr, format!("stopped the proxy (pid {pid2}) on http://localhost:{pp}/\n"));
    assert!(!util::alive(pid2));
    assert_eq!(env.run(&["proxy", "status"]).ok(), "not running\n");
    assert!(TcpStream::connect(("127.0.0.1", pp)).is_err(), "still listening");
}

/// The `ini` block of the README that starts with `# /etc/systemd/system/NAME`.
fn readme_unit(name: &str) -> String {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let text = std::fs::read_to_string(&readme).unwrap();
    let start = format!("```ini\n# /etc/systemd/system/{name}\n");
    let at = text.find(&start).unwrap_or_else(|| panic!("no `{name}` unit in the README"));
    let body = &text[at + start.len()..];
    body[..body.find("```").unwrap()].to_owned()
}

/// The values of `KEY=` lines in a unit.
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    unit.lines().filter_map(|l| l.trim().strip_prefix(&prefix)).map(str::to_owned).collect()
}

#[test]
fn the_proxy_serves_the_readme_systemd_sockets() {
    let env: Servers = servers_env(40320);
    let web = env.run(&["get", "web"]).port();
    let _web = node_upstream(web, "127.0.0.1");
    // The README's units: the sockets it listens on, and a service that
    // runs `portd-proxy` with no arguments.
    let socket = readme_unit("portd-proxy.socket");
    let service = readme_unit("portd-proxy.service");
    let listen = unit_values(&socket, "ListenStream");
    assert_eq!(listen, ["127.0.0.1:80", "[::1]:80"], "{socket}");
    let exec = unit_values(&service, "ExecStart");
    let argv: Vec<&str> = exec[0].split_whitespace().collect();
    assert!(argv.len() == 1 && argv[0].ends_with("/portd-proxy"), "{service}");
    assert_eq!(unit_values(&service, "Requires"), ["portd-proxy.socket"]);
    // The same addresses on a free port instead of 80 (IPv6 where the
    // host has it).
    let pp = proxy_port(10);
    let v6 = util::ipv6_available();
    if !v6 {
        util::skip("no IPv6 here: the README's `[::1]` socket is left out, as it says");
    }
    let addrs: Vec<String> = listen
        .iter()
        .map(|a| a.strip_suffix(":80").unwrap().trim_matches(['[', ']']).to_owned())
        .filter(|a| v6 || !a.contains(':'))
        .collect();
    // The proxy's own port, which it must not bind: systemd's sockets
    // replace it.
    let own = proxy_port(19);
    // Python does what systemd does: binds each socket, puts them on
    // descriptors 3, 4, …, sets LISTEN_FDS, LISTEN_PID (its own pid, which
    // exec keeps) and LISTEN_FDNAMES, and execs the unit's command line.
    let script = "import fcntl,os,socket,sys\n\
        port, exe, addrs = int(sys.argv[1]), sys.argv[2], sys.argv[3:]\n\
        high = []\n\
        for a in addrs:\n\
        \x20 s = socket.socket(socket.AF_INET6 if ':' in a else socket.AF_INET)\n\
        \x20 s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
        \x20 s.bind((a, port)); s.listen(64)\n\
        \x20 high.append(fcntl.fcntl(s.fileno(), fcntl.F_DUPFD, 100)); s.close()\n\
        for i, fd in enumerate(high):\n\
        \x20 os.dup2(fd, 3 + i); os.set_inheritable(3 + i, True); os.close(fd)\n\
        os.environ['LISTEN_FDS'] = str(len(high))\n\
        os.environ['LISTEN_PID'] = str(os.getpid())\n\
        os.environ['LISTEN_FDNAMES'] = ':'.join(['portd-proxy.socket'] * len(high))\n\
        os.execv(exe, [exe])\n";
    let log = env.root().join("systemd-proxy.log");
    let child = Command::new("python3")
        .args(["-c", script, &pp.to_string()])
        .arg(proxy_bin())
        .args(&addrs)
        .env("PORTD_HOME", env.home())
        .env("XDG_CONFIG_HOME", env.root())
        .env("PORTD_PROXY_PORT", own.to_string())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut proxy = Proc(child);
    let pid = proxy.0.id();
    wait_for("the proxy to start", Duration::from_secs(10), || {
        if let Some(st) = proxy.0.try_wait().unwrap() {
            panic!("the proxy ended ({st}): {}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        proxy_json(&env).is_some_and(|i| i.pid == pid)
    });
    assert_eq!(proxy_json(&env).unwrap().port, pp);
    // Each socket serves.
    for a in &addrs {
        let ip: std::net::IpAddr = a.parse().unwrap();
        let mut s = TcpStream::connect((ip, pp)).unwrap();
        write!(s, "GET / HTTP/1.1\r\nHost: web.localhost:{pp}\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let r = parse(&raw);
        assert_eq!(r.status, 200, "{a}: {r:#?}");
        assert_eq!(r.json::<Echo>().headers["host"], format!("web.localhost:{pp}"));
    }
    // It bound nothing itself, and says where it is like any proxy.
    assert!(TcpStream::connect(("127.0.0.1", own)).is_err(), "it listens on its own port");
    let st: StatusJson = env.run(&["proxy", "status", "--json"]).json();
    assert_eq!((st.running, st.pid, st.port), (true, Some(pid), Some(pp)));
}

#[test]
fn the_port_comes_from_the_flag_before_or_after_start_then_the_environment_then_the_config() {
    let env = servers_env(40340);
    proxy_bin();
    let (file, from_env, flag) = (proxy_port(12), proxy_port(13), proxy_port(14));
    env.write_config(format!(
        "proxy_port = {file}\n[[range]]\nname = \"test\"\nstart = 40340\nend = 40359\n"
    ));
    let cfg: ConfigJson = env.run(&["config", "--json"]).json();
    // (Output shows the test's directory as `[ROOT]`.)
    let src = "file [ROOT]/portd/config.toml".to_owned();
    assert_eq!((cfg.proxy_port.value, cfg.proxy_port.source), (file, src));
    let e = [("PORTD_PROXY_PORT", from_env.to_string())];
    let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let cfg: ConfigJson = env.run_env(&["config", "--json"], &e).json();
    assert_eq!(
        (cfg.proxy_port.value, cfg.proxy_port.source.as_str()),
        (from_env, "env PORTD_PROXY_PORT")
    );
    let start_stop = |args: &[&str], env_vars: &[(&str, &str)], want: u16| {
        let out = env.run_env(args, env_vars);
        assert_eq!((out.code, out.stdout.clone()), (0, format!("{want}\n")), "{out:#?}");
        assert!(out.stderr.ends_with(&format!(" on http://localhost:{want}/\n")), "{out:#?}");
        let st: StatusJson = env.run(&["proxy", "status", "--json"]).json();
        assert_eq!(st.port, Some(want));
        let out = env.run(&["proxy", "stop"]);
        assert_eq!(out.code, 0, "{out:#?}");
    };
    start_stop(&["proxy", "start"], &[], file);
    start_stop(&["proxy", "start"], &e, from_env);
    start_stop(&["proxy", "--port", &flag.to_string(), "start"], &e, flag);
    start_stop(&["proxy", "start", "--port", &flag.to_string()], &e, flag);
    // `--port` means nothing to stop and status.
    let out = env.run(&["proxy", "status", "--port", &flag.to_string()]);
    assert_eq!(
        out.error(2),
        "error: `--port` goes with `portd proxy` and `portd proxy start`\n\
         hint: `portd proxy stop` and `status` find the proxy by its registry\n"
    );
}

#[test]
fn an_invalid_proxy_port_is_a_configuration_error_with_a_hint() {
    let env = servers_env(40360);
    proxy_bin();
    let hint = "hint: give a port above 1023 and outside every range, such as the default 7780\n";
    let range = "[[range]]\nname = \"test\"\nstart = 40360\nend = 40379\n";
    let path = "[ROOT]/portd/config.toml";
    let cases = [
        (
            "proxy_port = 40365\n",
            format!(
                "error: invalid proxy port 40365 (in `{}`: `proxy_port`): it is inside range `test` \
                 (40360-40379), whose ports go to projects\n",
                path
            ),
        ),
        (
            "proxy_port = \"x\"\n",
            format!(
                "error: invalid configuration in `{}` line 1: `proxy_port`: expected a port number\n",
                path
            ),
        ),
        (
            "proxy_port = 70000\n",
            format!(
                "error: invalid configuration in `{}` line 1: `proxy_port`: port 70000 is outside 1-65535\n",
                path
            ),
        ),
        (
            "proxy_port = 6000\n",
            format!(
                "error: invalid proxy port 6000 (in `{}`: `proxy_port`): browsers refuse to connect to it\n",
                path
            ),
        ),
    ];
    for (text, want) in cases {
        env.write_config(format!("{text}{range}"));
        // Every command reads the configuration.
        for args in [&["proxy", "start"][..], &["get", "x"], &["config"]] {
            let out = env.run(args);
            assert_eq!(out.error(8), format!("{want}{hint}"), "{text}");
        }
    }
    env.write_config(range);
    let out = env.run_env(&["proxy", "start"], &[("PORTD_PROXY_PORT", "80")]);
    assert_eq!(
        out.error(8),
        format!(
            "error: invalid proxy port 80 (environment variable `PORTD_PROXY_PORT`): ports below 1024 \
             need root (port 80 without root: socket activation, see the README)\n{hint}"
        )
    );
    let out = env.run_env(&["proxy", "start"], &[("PORTD_PROXY_PORT", "abc")]);
    assert_eq!(
        out.error(8),
        format!(
            "error: invalid environment variable `PORTD_PROXY_PORT`: `abc` is not a port number\n{hint}"
        )
    );
    let out = env.run(&["proxy", "start", "--port", "40370"]);
    assert_eq!(
        out.error(8),
        format!(
            "error: invalid proxy port 40370 (`--port`): it is inside range `test` (40360-40379), \
             whose ports go to projects\n{hint}"
        )
    );
    // Nothing was started.
    assert_eq!(env.run(&["proxy", "status"]).ok(), "not running\n");
}

/// `url --json`.
#[derive(Debug, Deserialize, PartialEq, Eq)]
struct UrlJson {
    project: String,
    port: u16,
    url: String,
    direct_url: String,
    proxy_url: Option<String>,
}

#[test]
fn url_names_the_proxy_url_while_the_proxy_runs_and_the_port_otherwise() {
    let env = servers_env(40380);
    proxy_bin();
    let web = env.run(&["get", "web"]).port();
    let api = env.run(&["get", "myapp:api"]).port();
    env.run(&["get", "Dup"]).port();
    env.run(&["get", "dup"]).port();
    let direct = |p: u16| format!("http://localhost:{p}/");
    assert_eq!(env.run(&["url", "web"]).ok(), format!("{}\n", direct(web)));
    let j: UrlJson = env.run(&["url", "web", "--json"]).json();
    assert_eq!(
        j,
        UrlJson {
            project: "web".into(),
            port: web,
            url: direct(web),
            direct_url: direct(web),
            proxy_url: None
        }
    );

    let pp = proxy_port(15);
    let out = env.run(&["proxy", "start", "--port", &pp.to_string()]);
    assert_eq!(out.code, 0, "{out:#?}");
    let named = format!("http://web.localhost:{pp}/");
    let out = env.run(&["url", "web"]);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (0, format!("{named}\n").as_str(), "")
    );
    let j: UrlJson = env.run(&["url", "web", "--json"]).json();
    assert_eq!(
        j,
        UrlJson {
            project: "web".into(),
            port: web,
            url: named.clone(),
            direct_url: direct(web),
            proxy_url: Some(named)
        }
    );
    assert_eq!(env.run(&["url", "myapp:api"]).ok(), format!("http://api.myapp.localhost:{pp}/\n"));
    // The proxy routes that very name to the project (502: nothing listens).
    let p: Page = get_json(pp, &format!("api.myapp.localhost:{pp}")).json();
    assert_eq!((p.project.as_deref(), p.port), (Some("myapp:api"), Some(api)));
    // A host name two projects share is routed for neither: the port's URL.
    let out = env.run(&["url", "dup"]);
    let dup = env.run(&["get", "dup"]).port();
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (
            0,
            format!("{}\n", direct(dup)).as_str(),
            "warning: the proxy runs, but `dup.localhost` is also the host name of `Dup`, so the \
             proxy routes neither: the port's own URL instead\n"
        )
    );
    let out = env.run(&["proxy", "stop"]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(env.run(&["url", "web"]).ok(), format!("{}\n", direct(web)));
}

#[test]
fn servers_started_by_a_proxy_killed_with_sigkill_run_on_and_a_new_proxy_reaches_them() {
    let env = servers_env(40440);
    proxy_bin();
    let port = env.add("lazy", &[&["--on-demand", "--"], PY_SERVER].concat());
    let pp = proxy_port(18);
    let out = env.run(&["proxy", "start", "--port", &pp.to_string()]);
    assert_eq!(out.code, 0, "{out:#?}");
    let proxy = env.run(&["proxy", "status", "--json"]).json::<StatusJson>().pid.unwrap();
    // The first request through the proxy starts the server.
    let r = get(pp, "lazy.localhost", "/", "");
    assert_eq!(r.status, 200, "{r:#?}");
    // The relay passed the request on once the server accepted it; its
    // supervisor records it running after its readiness check.
    wait_state(&env, "lazy", "running", Duration::from_secs(5));
    let supervisors = env.matching("__serve lazy");
    assert_eq!(supervisors.len(), 1, "one supervisor");

    portd_core::sys::kill(proxy as i32, portd_core::sys::SIGKILL).unwrap();
    wait_for("the proxy to die", Duration::from_secs(5), || !util::alive(proxy));
    assert_eq!(env.run(&["proxy", "status"]).ok(), "not running\n");
    // The server and its supervisor run on, on the project's own port.
    let r = get_first_closing(port, "lazy.localhost", "/");
    assert!(r.status == 200 && r.body.contains("Directory listing"), "{r:#?}");
    let line = env.server("lazy");
    assert_eq!((line.state.as_str(), line.port), ("running", Some(port)));
    assert_eq!(env.matching("__serve lazy"), supervisors);

    // A new proxy starts cleanly and reaches the same server.
    let out = env.run(&["proxy", "start", "--port", &pp.to_string()]);
    assert_eq!(out.code, 0, "{out:#?}");
    let again = env.run(&["proxy", "status", "--json"]).json::<StatusJson>().pid.unwrap();
    assert_ne!(again, proxy);
    assert_eq!(out.stderr, format!("proxy started (pid {again}) on http://localhost:{pp}/\n"));
    let r = get(pp, "lazy.localhost", "/", "");
    assert_eq!(r.status, 200, "{r:#?}");
    assert!(r.body.contains("Directory listing"), "{}", r.body);
    assert_eq!(env.matching("__serve lazy"), supervisors, "the same supervisor");
    let out = env.run(&["proxy", "stop"]);
    assert_eq!(out.code, 0, "{out:#?}");
}

/// Opens a WebSocket to `path` of project `host` through the proxy on
/// `pp` (RFC 6455's example key); the socket and the 101 answer.
fn websocket(pp: u16, host: &str, path: &str) -> (TcpStream, Resp) {
    let mut s = TcpStream::connect(("127.0.0.1", pp)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}:{pp}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).unwrap(), 1, "closed during the handshake: {head:?}");
        head.push(b[0]);
    }
    let r = parse(&head);
    assert_eq!(r.status, 101, "{r:#?}");
    (s, r)
}

/// One text frame there and back through a WebSocket.
fn ws_echo(s: &mut TcpStream, msg: &str) -> String {
    let mask = [9u8, 8, 7, 6];
    let mut frame = vec![0x81, 0x80 | msg.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(msg.bytes().enumerate().map(|(i, c)| c ^ mask[i % 4]));
    s.write_all(&frame).unwrap();
    let mut hdr = [0u8; 2];
    s.read_exact(&mut hdr).unwrap();
    let mut data = vec![0u8; usize::from(hdr[1] & 0x7f)];
    s.read_exact(&mut data).unwrap();
    String::from_utf8(data).unwrap()
}

#[test]
fn a_project_the_proxy_started_sleeps_after_its_idle_timeout_counting_requests_and_open_websockets()
{
    // A wide band, as for the other on-demand test (42100–42199).
    let env = util::servers_env_n(42100, 100);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proxy/upstream.js");
    env.add(
        "chat",
        &["--on-demand", "--idle-timeout", "2s", "--", "node", script.to_str().unwrap(), "{port}"],
    );
    let pp = proxy_port(20);
    let _proxy = run_proxy(&env, pp);
    assert_eq!(env.server("chat").state, "stopped");
    // The first request starts it.
    assert_eq!(get(pp, "chat.localhost", "/", "").status, 200);
    wait_state(&env, "chat", "running", Duration::from_secs(5));
    // Requests through the proxy every half second for 4 s (twice the idle
    // timeout): it keeps running.
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(4) {
        assert_eq!(get(pp, "chat.localhost", "/", "").status, 200);
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(env.server("chat").state, "running", "requests through the proxy are activity");
    // A WebSocket open through the proxy and silent for 5 s: it keeps
    // running, and the socket still echoes.
    let (mut ws, _) = websocket(pp, "chat.localhost", "/hmr");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(env.server("chat").state, "running", "an open WebSocket is activity");
    assert_eq!(ws_echo(&mut ws, "still there"), "still there");
    // Closed, and nothing else comes: it sleeps after its idle timeout
    // (the proxy's pooled connection closes a second after its last use).
    drop(ws);
    let t = Instant::now();
    wait_state(&env, "chat", "sleeping", Duration::from_secs(15));
    let idle = t.elapsed();
    assert!(idle >= Duration::from_secs(2), "slept after {idle:?}: before its idle timeout");
    // And the next request through the proxy wakes it.
    assert_eq!(get(pp, "chat.localhost", "/", "").status, 200);
}

#[test]
fn an_upgraded_connection_half_closed_by_the_client_is_closed_once_the_upstream_falls_silent() {
    let env = servers_env(40460);
    let port = env.run(&["get", "halfopen"]).port();
    // An upstream that agrees to the upgrade, echoes what comes, writes
    // "bye" after the client's end of stream, then a dot every 2 s three
    // times, and then keeps its side open without a word for a minute.
    let script = format!(
        "import socket, time\n\
         s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('127.0.0.1', {port})); s.listen(8)\n\
         while True:\n\
         \x20   c, _ = s.accept()\n\
         \x20   head = b''\n\
         \x20   while b'\\r\\n\\r\\n' not in head:\n\
         \x20       d = c.recv(1024)\n\
         \x20       if not d: break\n\
         \x20       head += d\n\
         \x20   if not head.endswith(b'\\r\\n\\r\\n'):\n\
         \x20       c.close(); continue\n\
         \x20   c.sendall(b'HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: raw\\r\\nConnection: Upgrade\\r\\n\\r\\n')\n\
         \x20   while True:\n\
         \x20       d = c.recv(1024)\n\
         \x20       if not d: break\n\
         \x20       c.sendall(d)\n\
         \x20   c.sendall(b'bye')\n\
         \x20   for _ in range(3):\n\
         \x20       time.sleep(2); c.sendall(b'.')\n\
         \x20   time.sleep(60)\n"
    );
    let _upstream =
        Proc(Command::new("python3").args(["-c", &script]).stdout(Stdio::null()).spawn().unwrap());
    wait_for("the upstream to listen", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let pp = proxy_port(21);
    let _proxy = run_proxy(&env, pp);
    let mut s = TcpStream::connect(("127.0.0.1", pp)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET / HTTP/1.1\r\nHost: halfopen.localhost:{pp}\r\nConnection: Upgrade\r\nUpgrade: raw\r\n\r\n")
        .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).unwrap(), 1, "closed during the handshake: {head:?}");
        head.push(b[0]);
    }
    assert_eq!(parse(&head).status, 101);
    s.write_all(b"ping").unwrap();
    let mut echo = [0u8; 4];
    s.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"ping");
    // The client ends its side; what the upstream says after still comes
    // (for 6 s: longer than the grace, which counts from the last byte),
    // and the connection ends the grace after the upstream fell silent.
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let t = Instant::now();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let took = t.elapsed();
    assert_eq!(rest, b"bye...");
    assert!(took >= Duration::from_secs(10), "closed after {took:?}: before 6 s + the grace");
    assert!(took < Duration::from_secs(15), "closed after {took:?}: not at the grace");
}
