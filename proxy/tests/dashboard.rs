//! The dashboard served by hyper on loopback, against a real registry with
//! real managed servers (`python3 -m http.server`), driven over plain
//! HTTP/1.1 as a browser (or an attacker's page) would send it.
//!
//! Ports: each test's registry range is 20 ports from 41000 + 20·k, and its
//! dashboard listens on 41900 + k.
#![allow(clippy::print_stderr)]

mod common;

use common::{Events, World, eventually, get, post, request};
use portd_proxy::dashboard::api::{ActionJson, LogsJson, ProjectJson};
use portd_serve::json::EntryJson;
use std::time::{Duration, Instant};

/// Whether something answers HTTP on `127.0.0.1:port`.
fn answers(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok_and(|mut s| {
        use std::io::{Read, Write};
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = write!(s, "GET / HTTP/1.0\r\nHost: x\r\n\r\n");
        let mut b = [0u8; 12];
        s.read_exact(&mut b).is_ok() && b.starts_with(b"HTTP/1.0 200")
    })
}

fn projects(port: u16) -> Vec<ProjectJson> {
    let r = get(port, "/api/projects");
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(r.header("content-type"), Some("application/json"));
    r.json()
}

/// Request headers as written.
type Headers<'a> = &'a [(&'a str, &'a str)];

fn find<'a>(list: &'a [ProjectJson], key: &str) -> &'a ProjectJson {
    list.iter().find(|p| p.entry.key == key).unwrap_or_else(|| panic!("no `{key}` in {list:#?}"))
}

fn server_state(p: &ProjectJson) -> &str {
    p.entry.server.as_ref().map(|s| s.state.as_str()).unwrap_or("-")
}

#[test]
fn page_loads_with_its_token_and_embedded_assets() {
    let world = World::new(41000);
    let dash = world.dashboard();
    let served = common::Served::start(dash.clone(), 41900);
    let r = get(served.port, "/");
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(
        r.body.contains(&format!(r#"<meta name="portd-token" content="{}">"#, dash.token())),
        "the page carries this run's token"
    );
    assert!(!r.body.contains("{{TOKEN}}"));
    // Nothing from elsewhere: every asset is the dashboard's own.
    assert!(!r.body.contains("://"), "an external reference in the page");
    let csp = r.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    for (path, ty, has) in [
        ("/app.js", "text/javascript; charset=utf-8", "EventSource"),
        ("/app.css", "text/css; charset=utf-8", "prefers-color-scheme: dark"),
    ] {
        let a = get(served.port, path);
        assert_eq!((a.status, a.header("content-type")), (200, Some(ty)), "{path}");
        assert!(a.body.contains(has), "{path} lacks {has}");
        assert!(
            !a.body.contains("http://") && !a.body.contains("https://"),
            "{path} loads from elsewhere"
        );
    }
    let none = get(served.port, "/nothing");
    assert_eq!(none.status, 404);
    assert_eq!(none.error(), "nothing at `/nothing`");
}

#[test]
fn api_projects_is_the_ls_json_schema_with_server_and_live_figures() {
    if !common::have_python() {
        return common::skip("python3 is not installed");
    }
    let world = World::new(41020);
    world.add_python("web");
    world.add_python("idle-srv");
    world.run(&["get", "plain"]);
    world.run(&["start", "web"]);
    let served = common::Served::start(world.dashboard(), 41901);
    let t = Instant::now();
    let list = projects(served.port);
    eprintln!("GET /api/projects with {} entries: {:?}", list.len(), t.elapsed());
    // The same entries, in the same order and shape, as `portd ls --json`.
    let ls: Vec<EntryJson> = serde_json::from_str(&world.run(&["ls", "--json"])).unwrap();
    let keys = |v: Vec<(String, u16, Option<String>)>| v;
    assert_eq!(
        keys(
            list.iter()
                .map(|p| (p.entry.key.clone(), p.entry.port, p.entry.state.clone()))
                .collect()
        ),
        keys(ls.iter().map(|e| (e.key.clone(), e.port, e.state.clone())).collect()),
    );
    let web = find(&list, "web");
    let s = web.entry.server.as_ref().expect("a defined server has its server object");
    assert_eq!(s.state, "running");
    assert!(s.pid.is_some() && s.supervisor_pid.is_some() && s.started.is_some(), "{s:#?}");
    assert!(web.defined);
    assert_eq!(web.host, "web.localhost");
    assert!(web.rss_bytes.is_some_and(|b| b > 1_000_000), "python's memory: {:?}", web.rss_bytes);
    assert!(web.connections.is_some(), "a running server's connections are counted");
    assert!(s.last_event.as_ref().is_some_and(|e| !e.text.is_empty()), "{s:#?}");

    let idle = find(&list, "idle-srv");
    assert_eq!(server_state(idle), "stopped");
    assert_eq!((idle.connections, idle.rss_bytes), (None, None));
    let plain = find(&list, "plain");
    assert!(!plain.defined && plain.entry.server.is_none());
    assert_eq!(plain.entry.state.as_deref(), Some("idle"));
    // The raw JSON has the entry's fields at the top level, as `ls` prints them.
    let raw: serde_json::Value =
        serde_json::from_str(&get(served.port, "/api/projects").body).unwrap();
    for field in [
        "project",
        "key",
        "port",
        "range",
        "state",
        "pid",
        "command",
        "last_used",
        "connections",
        "host",
    ] {
        assert!(raw[0].get(field).is_some(), "no `{field}` in {raw}");
    }
}

#[test]
fn start_stop_restart_need_same_origin_token_and_json() {
    if !common::have_python() {
        return common::skip("python3 is not installed");
    }
    let world = World::new(41040);
    world.add_python("web");
    let dash = world.dashboard();
    let served = common::Served::start(dash.clone(), 41902);
    let p = served.port;
    let token = dash.token().to_owned();
    let port = find(&projects(p), "web").entry.port;
    let host = format!("localhost:{p}");
    let origin = format!("http://{host}");
    let json = ("Content-Type", "application/json");
    let path = "/api/projects/web/start";
    let refused: [(Headers, u16, &str); 7] = [
        (&[("Host", &host), ("X-Portd-Token", &token), json], 403, "needs an `Origin` header"),
        (
            &[("Host", &host), ("Origin", "http://evil.example"), ("X-Portd-Token", &token), json],
            403,
            "cross-origin request refused: `Origin` is `http://evil.example`",
        ),
        (&[("Host", &host), ("Origin", &origin), json], 403, "needs the dashboard's token"),
        (
            &[("Host", &host), ("Origin", &origin), ("X-Portd-Token", "0123"), json],
            403,
            "wrong `X-Portd-Token`",
        ),
        (
            &[("Host", &host), ("Origin", &origin), ("X-Portd-Token", &token)],
            403,
            "the body must be JSON",
        ),
        (
            &[
                ("Host", &host),
                ("Origin", &origin),
                ("X-Portd-Token", &token),
                ("Content-Type", "text/plain"),
            ],
            403,
            "not `text/plain`",
        ),
        // A page of another site that a DNS rebinding points here.
        (
            &[
                ("Host", &format!("evil.example:{p}")),
                ("Origin", &format!("http://evil.example:{p}")),
                ("X-Portd-Token", &token),
                json,
            ],
            421,
            "answers only to its own names",
        ),
    ];
    for (headers, status, says) in refused {
        let r = request(p, "POST", path, headers, "{}");
        assert_eq!(r.status, status, "{headers:?}: {r:#?}");
        assert!(r.error().contains(says), "{headers:?}: {r:#?}");
    }
    let bad = request(
        p,
        "POST",
        path,
        &[("Host", &host), ("Origin", &origin), ("X-Portd-Token", &token), json],
        "{not json",
    );
    assert_eq!(
        (bad.status, bad.error().starts_with("the body is not JSON")),
        (400, true),
        "{bad:#?}"
    );
    // None of those started anything.
    assert_eq!(server_state(find(&projects(p), "web")), "stopped");
    assert!(!answers(port), "something answers on {port}");

    let t = Instant::now();
    let r = post(p, path, &token);
    eprintln!("start through the API: {:?}", t.elapsed());
    assert_eq!(r.status, 200, "{r:#?}");
    let a: ActionJson = r.json();
    assert_eq!((a.project.as_str(), a.outcome.as_str(), a.port), ("web", "ready", Some(port)));
    assert!(answers(port), "the server answers once started");
    let first_pid = find(&projects(p), "web").entry.server.as_ref().and_then(|s| s.pid).unwrap();

    let r = post(p, "/api/projects/web/restart", &token);
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(r.json::<ActionJson>().outcome, "ready");
    let list = projects(p);
    let s = find(&list, "web").entry.server.as_ref().unwrap();
    assert_eq!(s.state, "running");
    assert_ne!(s.pid, Some(first_pid), "restart runs a new process");
    assert!(answers(port));

    let r = post(p, "/api/projects/web/stop", &token);
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(r.json::<ActionJson>().outcome, "stopped");
    assert_eq!(server_state(find(&projects(p), "web")), "stopped");
    assert!(!answers(port), "the server still answers after stop");
    let again = post(p, "/api/projects/web/stop", &token);
    assert_eq!((again.status, again.json::<ActionJson>().outcome.as_str()), (200, "not-running"));

    let unknown = post(p, "/api/projects/nope/start", &token);
    assert_eq!(unknown.status, 404, "{unknown:#?}");
    assert_eq!(unknown.error(), "`nope` is not a defined server");
    let verb = post(p, "/api/projects/web/explode", &token);
    assert_eq!((verb.status, verb.error()), (404, "no action `explode`".to_owned()));
    let bad_name = post(p, "/api/projects/%2Fetc/start", &token);
    assert_eq!(bad_name.status, 400, "{bad_name:#?}");
    let get_action = get(p, "/api/projects/web/start");
    assert_eq!((get_action.status, get_action.header("allow")), (405, Some("POST")));
}

#[test]
fn a_failed_start_answers_502_with_the_reason_and_log() {
    let world = World::new(41060);
    world.run(&[
        "add",
        "broken",
        "--start-timeout",
        "3s",
        "--",
        "sh",
        "-c",
        "echo about to fail; exit 3",
    ]);
    let dash = world.dashboard();
    let served = common::Served::start(dash.clone(), 41903);
    let r = post(served.port, "/api/projects/broken/start", dash.token());
    assert_eq!(r.status, 502, "{r:#?}");
    let v: serde_json::Value = r.json();
    assert!(v["error"].as_str().unwrap().contains("broken"), "{v}");
    assert_eq!(v["code"], 10, "{v}");
    let log: Vec<String> = serde_json::from_value(v["log"].clone()).unwrap();
    assert!(log.iter().any(|l| l.contains("about to fail")), "{log:?}");
}

#[test]
fn events_send_a_snapshot_at_once_and_after_a_change() {
    if !common::have_python() {
        return common::skip("python3 is not installed");
    }
    let world = World::new(41080);
    world.add_python("web");
    let dash = world.dashboard();
    let served = common::Served::start(dash.clone(), 41904);
    let mut events = Events::open(served.port);
    let first: Vec<ProjectJson> = serde_json::from_str(
        &events.next("projects", Duration::from_secs(10)).expect("no snapshot"),
    )
    .unwrap();
    assert_eq!(server_state(find(&first, "web")), "stopped");

    // A change by another process (`portd start` here), which the proxy's
    // registry watch reports.
    world.run(&["start", "web"]);
    let t = Instant::now();
    dash.notify_changed();
    let mut running = false;
    while let Some(data) = events.next("projects", Duration::from_secs(5)) {
        let list: Vec<ProjectJson> = serde_json::from_str(&data).unwrap();
        if server_state(find(&list, "web")) == "running" {
            running = true;
            break;
        }
    }
    let took = t.elapsed();
    eprintln!("snapshot after a change: {took:?}");
    assert!(running, "no snapshot with `web` running");
    assert!(took < Duration::from_secs(1), "the change took {took:?} to arrive");

    // A stop through the API sends the stopped state by itself.
    assert_eq!(post(served.port, "/api/projects/web/stop", dash.token()).status, 200);
    let stopped = eventually(Duration::from_secs(5), || {
        events.next("projects", Duration::from_millis(200)).is_some_and(|d| {
            let list: Vec<ProjectJson> = serde_json::from_str(&d).unwrap();
            server_state(find(&list, "web")) == "stopped"
        })
    });
    assert!(stopped, "no snapshot with `web` stopped");
}

#[test]
fn only_the_dashboards_own_host_names_are_served() {
    let world = World::new(41100);
    let served = common::Served::start(world.dashboard(), 41905);
    let p = served.port;
    for host in [
        format!("portd.localhost:{p}"),
        format!("localhost:{p}"),
        format!("127.0.0.1:{p}"),
        format!("[::1]:{p}"),
        "localhost".to_owned(),
        format!("PORTD.LOCALHOST:{p}"),
    ] {
        for path in ["/", "/api/projects"] {
            let r = request(p, "GET", path, &[("Host", &host)], "");
            assert_eq!(r.status, 200, "{host} {path}: {r:#?}");
        }
    }
    for (host, status) in [
        (format!("evil.example:{p}"), 421),
        (format!("api.localhost:{p}"), 421),
        (format!("portd.localhost.evil.example:{p}"), 421),
        (format!("127.0.0.2:{p}"), 421),
        ("localhost:99999".to_owned(), 400),
        ("local host".to_owned(), 400),
    ] {
        for path in ["/", "/api/projects", "/api/events"] {
            let r = request(p, "GET", path, &[("Host", &host)], "");
            assert_eq!(r.status, status, "{host} {path}: {r:#?}");
            assert!(!r.body.contains("portd-token"), "the page went to {host}");
        }
    }
    let r = request(p, "GET", "/", &[("Host", &format!("evil.example:{p}"))], "");
    assert_eq!(
        r.error(),
        "the dashboard answers only to its own names (portd.localhost, localhost, 127.0.0.1, [::1]), not `evil.example`"
    );
    let none = request(p, "GET", "/", &[], "");
    assert_eq!((none.status, none.error()), (400, "the request has no `Host` header".to_owned()));
}

#[test]
fn logs_answer_the_tail_of_a_servers_log() {
    if !common::have_python() {
        return common::skip("python3 is not installed");
    }
    let world = World::new(41120);
    world.add_python("web");
    world.run(&["get", "plain"]);
    let served = common::Served::start(world.dashboard(), 41906);
    let p = served.port;
    let before: LogsJson = get(p, "/api/projects/web/logs").json();
    assert_eq!((before.project.as_str(), before.lines.len()), ("web", 0), "{before:?}");
    world.run(&["start", "web"]);
    let port = world.run(&["get", "web"]).trim().parse::<u16>().unwrap();
    assert!(answers(port));
    // http.server logs each request on stderr.
    let logged = eventually(Duration::from_secs(5), || {
        let l: LogsJson = get(p, "/api/projects/web/logs?n=50").json();
        l.lines.iter().any(|x| x.contains("\"GET / HTTP/1.0\" 200"))
    });
    assert!(logged, "{:?}", get(p, "/api/projects/web/logs?n=50").body);
    let two: LogsJson = get(p, "/api/projects/web/logs?n=2").json();
    assert!(two.lines.len() <= 2 && !two.lines.is_empty(), "{two:?}");
    for bad in ["0", "x", "-1"] {
        let r = get(p, &format!("/api/projects/web/logs?n={bad}"));
        assert_eq!(r.status, 400, "{bad}: {r:#?}");
    }
    let r = get(p, "/api/projects/plain/logs");
    assert_eq!((r.status, r.error()), (404, "`plain` is not a defined server".to_owned()));
}

#[test]
fn a_watch_woken_by_the_dashboards_own_reads_does_not_loop() {
    let world = World::new(41140);
    world.run(&["get", "plain"]);
    let dash = world.dashboard();
    let served = common::Served::start(dash.clone(), 41907);
    // A watch on the whole registry directory, as naive as can be: every
    // wake-up (the lock file that each reader writes included) is a change.
    let watch = portd_core::sys::Watch::new(&world.home()).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (dash, stop) = (dash.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut wakes = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if watch.wait(Duration::from_millis(50)).unwrap() {
                    wakes += 1;
                    dash.notify_changed();
                }
            }
            wakes
        })
    };
    let mut events = Events::open(served.port);
    assert!(events.next("projects", Duration::from_secs(5)).is_some());
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let wakes = watcher.join().unwrap();
    // The first read, then one refresh every 2 s, each waking the watch a
    // few times: a handful (8 measured), not a loop (321 measured when every
    // wake-up made a read).
    assert!(
        wakes <= 20,
        "the dashboard read the registry again on each of its own reads: {wakes} wake-ups in 3 s"
    );
    // A real change still gets through.
    world.run(&["get", "second"]);
    dash.notify_changed();
    let got = events.next("projects", Duration::from_secs(2)).expect("no snapshot after a change");
    assert!(got.contains("\"key\":\"second\""), "{got}");
}
