//! The proxy under bad input and faults, through the real `portd-proxy`
//! and real upstream servers (python): malformed or missing `Host`
//! headers, unknown names, hop loops, an upstream that resets in the
//! middle of an answer, a WebSocket upgrade the upstream refuses, a start
//! that fails, a project that does not answer, a damaged registry, a
//! registry locked for seconds and a client that never finishes its
//! headers. Each gets a clear answer, and the proxy goes on serving.
//! Ports: the band 44000–44999 (ranges from 44100, proxies from 44900).

use crate::proxy::{Page, Proc, Resp, get, get_json, parse, proxy_bin};
use crate::util::{self, Servers, servers_env, wait_for};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A free port of this file's band for a proxy (`n`: which test).
fn proxy_port(n: u16) -> u16 {
    let bindable = |p: u16| {
        std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
            && (!util::ipv6_available() || std::net::TcpListener::bind(("::1", p)).is_ok())
    };
    (44900 + n * 4..44904 + n * 4)
        .find(|&p| bindable(p))
        .unwrap_or_else(|| panic!("no free proxy port at {}", 44900 + n * 4))
}

/// `portd proxy --port PORT` in the foreground (it execs `portd-proxy`,
/// so the child's pid is the proxy's), with `extra` environment, once it
/// accepts.
fn run_proxy(env: &Servers, port: u16, extra: &[(&str, &str)]) -> Proc {
    proxy_bin();
    let child = env
        .command(["proxy", "--port", &port.to_string()])
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let p = Proc(child);
    wait_for("the proxy to listen", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    p
}

/// An upstream with faults on request, on 127.0.0.1:PORT:
/// - `/reset`: 200 with `Content-Length: 100000`, 1000 bytes of it, then
///   a reset (`SO_LINGER` 0) instead of the rest;
/// - `/reset-chunked`: the same with a chunked body;
/// - `/reset-early`, `/close-early`: a reset, or a close, before any
///   answer; `/not-http`: an answer that is not HTTP;
/// - any request asking for an `Upgrade`: 404 "no websocket here", kept
///   alive (no upgrade);
/// - `/loop`: sent on to the proxy (second argument) with its headers, as
///   a dev server's own proxy does, and that answer relayed;
/// - anything else: 200 `ok PATH hop=X-PORTD-HOP`.
const FAULTY: &str = r#"
import http.client, socket, struct, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
port, proxy = int(sys.argv[1]), int(sys.argv[2])

class H(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def log_message(self, *a):
        pass
    def reply(self, code, body, ctype='text/plain'):
        b = body if isinstance(body, bytes) else body.encode()
        self.send_response(code)
        self.send_header('Content-Type', ctype)
        self.send_header('Content-Length', str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def reset(self):
        time.sleep(0.3)
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
        self.connection.close()
        self.close_connection = True
    def do_GET(self):
        if self.path == '/reset':
            self.send_response(200)
            self.send_header('Content-Length', '100000')
            self.end_headers()
            self.wfile.write(b'x' * 1000)
            self.reset()
        elif self.path == '/reset-early':
            self.reset()
        elif self.path == '/close-early':
            self.close_connection = True
        elif self.path == '/not-http':
            self.wfile.write(b'SSH-2.0-OpenSSH_9.2\r\n')
            self.close_connection = True
        elif self.path == '/reset-chunked':
            self.send_response(200)
            self.send_header('Transfer-Encoding', 'chunked')
            self.end_headers()
            self.wfile.write(b'3e8\r\n' + b'y' * 1000 + b'\r\n')
            self.reset()
        elif self.headers.get('Upgrade'):
            self.reply(404, 'no websocket here: ' + self.path)
        elif self.path == '/loop':
            c = http.client.HTTPConnection('127.0.0.1', proxy, timeout=20)
            c.request('GET', '/loop', headers=dict(self.headers.items()))
            r = c.getresponse()
            self.reply(r.status, r.read(), r.getheader('Content-Type', 'text/plain'))
        else:
            self.reply(200, 'ok %s hop=%s' % (self.path, self.headers.get('x-portd-hop', '')))

ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(('127.0.0.1', port), H).serve_forever()
"#;

/// [`FAULTY`] on `port`, sending `/loop` on to the proxy on `proxy`.
fn faulty_upstream(port: u16, proxy: u16) -> Proc {
    let child = Command::new("python3")
        .args(["-c", FAULTY, &port.to_string(), &proxy.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 is required");
    let p = Proc(child);
    wait_for("python to listen", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    p
}

/// Sends `raw` on a new connection and reads until the proxy closes it.
fn exchange(port: u16, raw: &[u8]) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(raw).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    parse(&out)
}

/// Asserts a 400 "Bad Host header" page: its HTML holds `host_html`, its
/// JSON's reason contains `why`.
#[track_caller]
fn assert_bad_host(pp: u16, request: &str, host_html: &str, why: &str) {
    let r = exchange(pp, format!("{request}\r\n").as_bytes());
    assert_eq!(r.status, 400, "{request:?}: {r:#?}");
    assert!(r.headers["content-type"].starts_with("text/html"), "{r:#?}");
    assert!(r.body.contains("<h1>Bad Host header</h1>"), "{}", r.body);
    assert!(r.body.contains(host_html), "{request:?}: {}", r.body);
    assert!(r.body.contains(&format!("<code>http://NAME.localhost:{pp}/</code>")), "{}", r.body);
    let r = exchange(pp, format!("{request}Accept: application/json\r\n\r\n").as_bytes());
    let p: Page = r.json();
    assert_eq!((p.error.as_str(), p.status, r.status), ("Bad Host header", 400, 400), "{p:#?}");
    assert!(p.reason.as_deref().is_some_and(|r| r.contains(why)), "{request:?}: {p:#?}");
}

#[test]
fn missing_and_malformed_host_headers_get_400_saying_what_is_wrong_and_unknown_names_404() {
    let env = servers_env(44100);
    let web = env.run(&["get", "web"]).port();
    let api = env.run(&["get", "shop:api"]).port();
    let pp = proxy_port(0);
    let _proxy = run_proxy(&env, pp, &[]);

    // HTTP/1.1 and HTTP/1.0 without a Host header.
    for v in ["1.1", "1.0"] {
        let req = format!("GET / HTTP/{v}\r\nConnection: close\r\n");
        assert_bad_host(pp, &req, "<code>Host</code> header is missing, so it names", "missing");
        let p: Page =
            exchange(pp, format!("{req}Accept: application/json\r\n\r\n").as_bytes()).json();
        assert_eq!(p.host, None);
    }
    let long = "x".repeat(64);
    let empty = "it has an empty label (`..`, or a dot at the start)";
    let empty_html = "it has an empty label (<code>..</code>, or a dot at the start)";
    let too_long = "a label of it is 64 characters long (at most 63)";
    for (host, why, html) in [
        ("a b", "it holds a space", "it holds a space"),
        ("..localhost", empty, empty_html),
        (".web.localhost", empty, empty_html),
        (&format!("{long}.localhost"), too_long, too_long),
        (
            "web.localhost:http",
            "`http` after the `:` is not a port",
            "<code>http</code> after the <code>:</code> is not a port",
        ),
        (
            "we$b.localhost",
            "`$` cannot be part of a host name",
            "<code>$</code> cannot be part of a host name",
        ),
    ] {
        let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
        let shown = format!("header <code>{host}</code> is not a host name: {html}.");
        assert_bad_host(pp, &req, &shown, why);
    }
    // A well-formed name that maps to nothing: 404 with the known
    // projects as links.
    let r = get(pp, &format!("nothing.localhost:{pp}"), "/", "");
    assert_eq!(r.status, 404, "{r:#?}");
    assert!(r.body.contains("No project answers to <code>nothing.localhost</code>"), "{}", r.body);
    for (host, port) in [("web.localhost", web), ("api.shop.localhost", api)] {
        let link = format!("<a href=\"http://{host}:{pp}/\">{host}</a>");
        assert!(r.body.contains(&link), "{link} missing: {}", r.body);
        assert!(r.body.contains(&format!("port {port} · idle")), "{}", r.body);
    }
    let p: Page = get_json(pp, "nothing.localhost").json();
    assert_eq!((p.error.as_str(), p.registry_error.as_deref()), ("Unknown project", None));
    let listed: Vec<(&str, u16)> =
        p.projects.iter().map(|p| (p.project.as_str(), p.port)).collect();
    assert_eq!(listed, [("shop:api", api), ("web", web)]);
    assert_eq!(p.projects[1].url.as_deref(), Some(format!("http://web.localhost:{pp}/").as_str()));
    // The proxy serves on after all of that.
    assert_eq!(get_json(pp, "web.localhost").status, 502);
}

#[test]
fn a_loop_through_an_upstream_and_a_request_carrying_the_proxys_own_mark_answer_508() {
    let env = servers_env(44120);
    let port = env.run(&["get", "relay"]).port();
    let pp = proxy_port(1);
    let _up = faulty_upstream(port, pp);
    let _proxy = run_proxy(&env, pp, &[]);

    // The upstream sends `/loop` back to the proxy with the headers it got
    // (as a dev server's proxy does): the proxy sees its own mark.
    let t = Instant::now();
    let r = get(pp, "relay.localhost", "/loop", "");
    assert_eq!(r.status, 508, "{r:#?}");
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
    assert!(r.body.contains("<h1>Proxy loop</h1>"), "{}", r.body);
    assert!(
        r.body.contains(&format!(
            "Project <code>relay</code> has port {port}, which leads back to the proxy"
        )),
        "{}",
        r.body
    );
    let r = get(pp, "relay.localhost", "/loop", "Accept: application/json\r\n");
    let p: Page = r.json();
    assert_eq!(
        (r.status, p.error.as_str(), p.project.as_deref(), p.port),
        (508, "Proxy loop", Some("relay"), Some(port))
    );

    // The proxy's mark, as the upstream sees it; another proxy's mark
    // before it is kept.
    let r = get(pp, "relay.localhost", "/mark", "x-portd-hop: elsewhere\r\n");
    assert_eq!(r.status, 200, "{r:#?}");
    let hop = r.body.strip_prefix("ok /mark hop=elsewhere,").unwrap_or_else(|| panic!("{r:#?}"));
    assert!(!hop.is_empty() && !hop.contains(','), "{r:#?}");
    // A request that already carries it (alone or in a list) is refused
    // without reaching the upstream.
    for mark in [hop.to_owned(), format!("elsewhere, {hop}")] {
        let r = get(pp, "relay.localhost", "/x", &format!("x-portd-hop: {mark}\r\n"));
        assert_eq!(r.status, 508, "{mark}: {r:#?}");
        assert!(r.body.contains("came back to this proxy"), "{}", r.body);
    }
    assert_eq!(get(pp, "relay.localhost", "/after", "").body, format!("ok /after hop={hop}"));
}

/// What a client read on a connection the proxy ended.
#[derive(Debug)]
struct Cut {
    raw: Vec<u8>,
    took: Duration,
}

/// `GET path` on a new connection, read until the proxy ends it.
fn read_until_cut(pp: u16, host: &str, path: &str) -> Cut {
    let mut s = TcpStream::connect(("127.0.0.1", pp)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let t = Instant::now();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    // Closed or reset by the proxy: either ends the answer.
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("{path}: {e} after {:?} (a hang?), read {raw:?}", t.elapsed()),
        }
    }
    Cut { raw, took: t.elapsed() }
}

#[test]
fn an_upstream_reset_mid_answer_aborts_the_clients_connection_and_the_proxy_serves_on() {
    let env = servers_env(44140);
    let port = env.run(&["get", "flaky"]).port();
    let pp = proxy_port(2);
    let _up = faulty_upstream(port, pp);
    let _proxy = run_proxy(&env, pp, &[]);

    // Content-Length: the head went out with the length the upstream
    // promised, and the connection ends short of it.
    let cut = read_until_cut(pp, "flaky.localhost", "/reset");
    assert!(cut.took < Duration::from_secs(10), "{cut:?}");
    let text = String::from_utf8_lossy(&cut.raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("{cut:?}"));
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-length: 100000"), "{head}");
    assert!(body.len() < 100_000 && body.bytes().all(|b| b == b'x'), "{} bytes", body.len());
    // Chunked: no last chunk, so the client knows the body is cut.
    let cut = read_until_cut(pp, "flaky.localhost", "/reset-chunked");
    assert!(cut.took < Duration::from_secs(10), "{cut:?}");
    let text = String::from_utf8_lossy(&cut.raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("{cut:?}"));
    assert!(head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "{head}");
    assert!(!body.ends_with("0\r\n\r\n"), "the body was presented as complete: {body:?}");
    assert!(body.len() < 1100, "{body:?}");
    // Ended before any answer, or answered in another protocol: the
    // proxy answers, saying so.
    for (path, why) in [
        ("/reset-early", "it reset the connection before answering"),
        ("/close-early", "it closed the connection before answering"),
        ("/not-http", "its answer is not HTTP/1.1 ("),
    ] {
        let r = get(pp, "flaky.localhost", path, "");
        assert_eq!(r.status, 502, "{r:#?}");
        let line = format!("Project <code>flaky</code> does not answer on port {port}: {why}");
        assert!(r.body.contains(&line), "{line} missing: {}", r.body);
        assert!(r.body.contains("<code>portd run flaky -- COMMAND ARGS…</code>"), "{}", r.body);
    }
    // The next requests are served, on new connections and on the
    // upstream's next connection.
    for i in 0..3 {
        let r = get(pp, "flaky.localhost", &format!("/next{i}"), "");
        assert_eq!((r.status, r.body.starts_with(&format!("ok /next{i}"))), (200, true), "{r:#?}");
    }
}

#[test]
fn a_websocket_upgrade_the_upstream_refuses_gets_its_answer_and_the_proxy_serves_on() {
    let env = servers_env(44160);
    let port = env.run(&["get", "nows"]).port();
    let pp = proxy_port(3);
    let _up = faulty_upstream(port, pp);
    let _proxy = run_proxy(&env, pp, &[]);
    let mut s = TcpStream::connect(("127.0.0.1", pp)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /hmr HTTP/1.1\r\nHost: nows.localhost:{pp}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut head = String::new();
    while !head.ends_with("\r\n\r\n") {
        let n = reader.read_line(&mut head).unwrap();
        assert!(n > 0, "closed during the answer: {head:?}");
    }
    let r = parse(head.as_bytes());
    assert_eq!(r.status, 404, "{r:#?}");
    let len: usize = r.headers["content-length"].parse().unwrap();
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).unwrap();
    assert_eq!(String::from_utf8(body).unwrap(), "no websocket here: /hmr");
    assert!(!r.headers.contains_key("upgrade"), "{r:#?}");
    // The connection is HTTP still, or closed: never switched half-way.
    let again =
        write!(s, "GET /same HTTP/1.1\r\nHost: nows.localhost\r\nConnection: close\r\n\r\n");
    let mut rest = String::new();
    let read = again.and_then(|()| reader.read_to_string(&mut rest));
    if read.is_ok() && !rest.is_empty() {
        let r = parse(rest.as_bytes());
        assert_eq!((r.status, r.body.starts_with("ok /same hop=")), (200, true), "{r:#?}");
    }
    // New connections are served.
    let r = get(pp, "nows.localhost", "/next", "");
    assert_eq!(r.status, 200, "{r:#?}");
    assert!(r.body.starts_with("ok /next hop="), "{r:#?}");
}

#[test]
fn a_failed_start_and_a_project_that_does_not_answer_get_pages_with_reason_state_log_and_command() {
    let env = servers_env(44180);
    let broken =
        env.add("broken", &["--", "sh", "-c", "echo broken-line-1; echo broken-line-2; exit 3"]);
    // Healthy by its own check, but it never listens on its port.
    let deaf = env.add(
        "deaf",
        &["--health", "cmd:true", "--", "sh", "-c", "echo deaf-says-hello; exec sleep 60"],
    );
    env.start("deaf");
    let idle = env.run(&["get", "idle"]).port();
    let pp = proxy_port(4);
    let _proxy = run_proxy(&env, pp, &[]);

    // A start that fails at once: 502 (the gateway got no server; asking
    // again does not help until the command is fixed), the reason, the
    // log tail and the commands.
    let r = get(pp, "broken.localhost", "/", "");
    assert_eq!(r.status, 502, "{r:#?}");
    assert!(r.body.contains("<h1>Start failed</h1>"), "{}", r.body);
    assert!(r.body.contains(&format!("Starting <code>broken</code> (port {broken}) failed: ")));
    assert!(r.body.contains("broken-line-1\nbroken-line-2"), "{}", r.body);
    assert!(r.body.contains("<code>portd start broken</code>"), "{}", r.body);
    assert!(r.body.contains("<code>portd logs broken</code>"), "{}", r.body);
    let p: Page = get_json(pp, "broken.localhost").json();
    assert_eq!(
        (p.error.as_str(), p.status, p.project.as_deref(), p.port),
        ("Start failed", 502, Some("broken"), Some(broken))
    );
    assert_eq!(
        p.reason.as_deref(),
        Some("`broken` failed to start: it ended before it was ready (exit 3)")
    );
    assert!(p.log.windows(2).any(|w| w == ["broken-line-1", "broken-line-2"]), "{p:#?}");
    assert_eq!(p.start_command.as_deref(), Some("portd start broken"));

    // A defined server that runs but does not answer on its port: 502
    // with its port, state, last log lines and the command that starts it.
    let r = get(pp, "deaf.localhost", "/", "");
    assert_eq!(r.status, 502, "{r:#?}");
    assert!(r.body.contains("<h1>Project not answering</h1>"), "{}", r.body);
    assert!(
        r.body.contains(&format!("Project <code>deaf</code> does not answer on port {deaf}")),
        "{}",
        r.body
    );
    assert!(r.body.contains("<dt>state</dt><dd>running</dd>"), "{}", r.body);
    assert!(r.body.contains("<code>portd start deaf</code>"), "{}", r.body);
    assert!(r.body.contains("deaf-says-hello"), "{}", r.body);
    let p: Page = get_json(pp, "deaf.localhost").json();
    assert_eq!(
        (p.error.as_str(), p.port, p.state.as_deref(), p.start_command.as_deref()),
        ("Project not answering", Some(deaf), Some("running"), Some("portd start deaf"))
    );
    assert!(p.log.iter().any(|l| l == "deaf-says-hello"), "{p:#?}");
    assert!(p.reason.as_deref().is_some_and(|r| r.contains("127.0.0.1 nor ::1")), "{p:#?}");
    // A known name whose port nobody listens on (no definition): the
    // same page, with the `portd run` line to start it.
    let r = get(pp, "idle.localhost", "/", "");
    assert_eq!(r.status, 502, "{r:#?}");
    assert!(
        r.body.contains(&format!("Project <code>idle</code> does not answer on port {idle}")),
        "{}",
        r.body
    );
    assert!(r.body.contains("<dt>state</dt><dd>idle</dd>"), "{}", r.body);
    assert!(r.body.contains("<code>portd run idle -- COMMAND ARGS…</code>"), "{}", r.body);
    // The failed start is tried again on the next request (still failing).
    let p: Page = get_json(pp, "broken.localhost").json();
    assert_eq!((p.error.as_str(), p.status), ("Start failed", 502));
}

/// Context switches of the proxy's thread named `name` so far.
fn switches(pid: u32, name: &str) -> u64 {
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = t.unwrap().path();
        if std::fs::read_to_string(dir.join("comm")).unwrap_or_default().trim() != name {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap();
        return status
            .lines()
            .filter(|l| l.starts_with("voluntary_ctxt_switches") || l.starts_with("nonvoluntary"))
            .map(|l| l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap())
            .sum();
    }
    panic!("no thread `{name}` in process {pid}");
}

/// The dashboard's `GET /api/projects`: status and JSON.
fn dashboard_projects(pp: u16) -> (u16, serde_json::Value) {
    let r = get(pp, &format!("localhost:{pp}"), "/api/projects", "");
    (r.status, r.json())
}

#[test]
fn a_damaged_registry_keeps_the_last_routes_says_so_and_costs_nothing_until_it_changes() {
    let env = servers_env(44200);
    let web = env.run(&["get", "web"]).port();
    let quiet = env.run(&["get", "quiet"]).port();
    let pp = proxy_port(5);
    let _up = faulty_upstream(web, pp);
    let proxy = run_proxy(&env, pp, &[]);
    assert_eq!(get(pp, "web.localhost", "/", "").status, 200);
    assert_eq!(dashboard_projects(pp).0, 200);

    let garbage: Vec<u8> =
        (0..8192u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(env.registry(), garbage).unwrap();
    wait_for("the damage to be noticed", Duration::from_secs(5), || {
        get_json(pp, "nothing.localhost").json::<Page>().registry_error.is_some()
    });
    // Known routes are served from the last good table.
    let r = get(pp, "web.localhost", "/still", "");
    assert_eq!((r.status, r.body.starts_with("ok /still")), (200, true), "{r:#?}");
    // The pages say the registry is damaged.
    let p: Page = get_json(pp, "nothing.localhost").json();
    let err = p.registry_error.clone().unwrap();
    assert!(err.starts_with("registry damaged: "), "{err}");
    let listed: Vec<&str> = p.projects.iter().map(|p| p.project.as_str()).collect();
    assert_eq!(listed, ["quiet", "web"]);
    let r = get(pp, "quiet.localhost", "/", "");
    assert_eq!(r.status, 502, "{r:#?}");
    assert!(r.body.contains(&format!("does not answer on port {quiet}")), "{}", r.body);
    assert!(
        r.body.contains(
            "<strong>The registry could not be read at its last change</strong>: registry damaged: "
        ),
        "{}",
        r.body
    );
    assert!(get(pp, "nothing.localhost", "/", "").body.contains("registry damaged: "));
    let p: Page = get_json(pp, "quiet.localhost").json();
    assert!(
        p.registry_error.as_deref().is_some_and(|e| e.starts_with("registry damaged: ")),
        "{p:#?}"
    );
    let (status, v) = dashboard_projects(pp);
    assert_eq!(status, 500, "{v}");
    assert!(v["error"].as_str().is_some_and(|e| e.starts_with("registry damaged: ")), "{v}");

    // The route thread sleeps while the file stays damaged (it used to
    // retry every 200 ms).
    let pid = proxy.0.id();
    let before = switches(pid, "routes");
    std::thread::sleep(Duration::from_secs(1));
    let after = switches(pid, "routes");
    assert!(after <= before + 1, "the route thread woke {} times in 1 s", after - before);

    // Repaired: the table is read again at once, and changes are routed.
    let out = env.run(&["doctor", "--repair"]);
    out.no_panic();
    wait_for("the repaired registry to be read", Duration::from_secs(5), || {
        get_json(pp, "nothing.localhost").json::<Page>().registry_error.is_none()
    });
    let fresh = env.run(&["get", "fresh"]).port();
    wait_for("the new route", Duration::from_secs(2), || {
        get_json(pp, "fresh.localhost").json::<Page>().port == Some(fresh)
    });
    assert_eq!(dashboard_projects(pp).0, 200);
}

/// A python process holding `registry.lock` (flock, as portd's lock is),
/// its pid written the way portd does. Killed on drop.
fn hold_lock(env: &Servers) -> Proc {
    const SCRIPT: &str = "import fcntl, os, sys, time\n\
        fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n\
        fcntl.flock(fd, fcntl.LOCK_EX)\n\
        os.pwrite(fd, b'%-10d\\n' % os.getpid(), 0)\n\
        print('locked', flush=True)\n\
        time.sleep(60)\n";
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(env.home().join("registry.lock"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 is required");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line, "locked\n");
    Proc(child)
}

#[test]
fn a_registry_locked_for_seconds_delays_no_request_and_a_change_after_it_is_routed() {
    let env = servers_env(44220);
    let web = env.run(&["get", "web"]).port();
    let pp = proxy_port(6);
    let _up = faulty_upstream(web, pp);
    // The proxy gives up waiting for the lock after 1 s (and tries again).
    let _proxy = run_proxy(&env, pp, &[("PORTD_LOCK_TIMEOUT", "1s")]);
    assert_eq!(get(pp, "web.localhost", "/", "").status, 200);

    let mut holder = hold_lock(&env);
    let held = Instant::now();
    // The holder writes the file while it keeps the lock: the proxy must
    // read it again, and finds the lock taken.
    let f = std::fs::File::options().write(true).open(env.registry()).unwrap();
    f.set_modified(std::time::SystemTime::now() + Duration::from_secs(1)).unwrap();
    drop(f);
    // A `portd get` that waits for the lock meanwhile.
    let mut waiting = Proc(
        env.command(["get", "fresh"]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap(),
    );
    let mut slowest = Duration::ZERO;
    let mut busy_seen = false;
    while held.elapsed() < Duration::from_secs(3) {
        let t = Instant::now();
        let r = get(pp, "web.localhost", "/locked", "");
        let p: Page = get_json(pp, "nothing.localhost").json();
        slowest = slowest.max(t.elapsed());
        assert_eq!(r.status, 200, "{r:#?}");
        assert_eq!(p.projects.len(), 1, "{p:#?}");
        busy_seen |= p.registry_error.as_deref().is_some_and(|e| e.starts_with("registry busy"));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(busy_seen, "the pages never said the registry was busy");
    assert!(
        slowest < Duration::from_millis(500),
        "a request took {slowest:?} while the lock was held"
    );
    // Let go: the waiting `get` commits, and the proxy routes it.
    holder.0.kill().unwrap();
    holder.0.wait().unwrap();
    let mut stdout = String::new();
    waiting.0.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    assert!(waiting.0.wait().unwrap().success());
    let fresh: u16 = stdout.trim().parse().unwrap();
    wait_for("the change made after the lock was released", Duration::from_secs(3), || {
        get_json(pp, "fresh.localhost").json::<Page>().port == Some(fresh)
    });
    wait_for("the busy note to go", Duration::from_secs(3), || {
        get_json(pp, "nothing.localhost").json::<Page>().registry_error.is_none()
    });
}

#[test]
fn a_client_that_never_finishes_its_headers_is_disconnected_while_others_are_served() {
    let env = servers_env(44240);
    let web = env.run(&["get", "web"]).port();
    let pp = proxy_port(7);
    let _up = faulty_upstream(web, pp);
    let _proxy = run_proxy(&env, pp, &[]);
    let mut slow = TcpStream::connect(("127.0.0.1", pp)).unwrap();
    let t = Instant::now();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: web.localhost\r\nX-Slow: ").unwrap();
    // Others are served meanwhile, as fast as ever.
    for i in 0..20 {
        let r = get(pp, "web.localhost", &format!("/other{i}"), "");
        assert_eq!(r.status, 200, "{r:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    slow.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut out = Vec::new();
    let end = slow.read_to_end(&mut out);
    let took = t.elapsed();
    assert!(
        matches!(&end, Ok(0)) || matches!(&end, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "{end:?}: {out:?}"
    );
    assert!(out.is_empty(), "{:?}", String::from_utf8_lossy(&out));
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(20),
        "closed after {took:?}"
    );
    assert_eq!(get(pp, "web.localhost", "/after", "").status, 200);
}
