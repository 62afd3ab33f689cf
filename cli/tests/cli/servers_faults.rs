//! Managed servers when things go wrong: a server that crashes at start,
//! an unknown project, a command that does not exist, a foreign listener
//! on the port, 20 concurrent starts, a supervisor killed with SIGKILL, a
//! server that keeps crashing, one that fails its health checks.
//!
//! Every test runs in a [`Servers`] world (its own 20 ports, in the band
//! 32200–32399) that stops and kills whatever it started when it ends.

use crate::util::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Waits until `cond` holds for `name`'s line in `status --detailed`;
/// returns that line.
#[track_caller]
fn wait_server(
    env: &Env,
    name: &str,
    what: &str,
    limit: Duration,
    cond: impl Fn(&ServerLineJson, &DetailedJson) -> bool,
) -> ServerLineJson {
    let end = Instant::now() + limit;
    loop {
        let d = env.detailed();
        let s = d.servers.iter().find(|s| s.project == name).cloned();
        let s = s.unwrap_or_else(|| panic!("`{name}` not in status --detailed: {d:#?}"));
        if cond(&s, &d) {
            return s;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}; last: {d:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_server_that_crashes_at_start_exits_10_with_its_log_and_leaves_nothing() {
    let env = servers_env(32200);
    let script = fixture("crash_at_start.sh");
    env.add("api", &["--", "sh", &script]);
    let out = env.run(&["start", "api"]);
    out.no_panic();
    assert_eq!((out.code, out.stdout.as_str()), (10, ""), "{out:#?}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert!(lines[0].starts_with("error: ") && lines[0].contains("`api`"), "{out:#?}");
    assert!(lines.last().unwrap().starts_with("hint: "), "{out:#?}");
    let log: Vec<&str> = lines[1..lines.len() - 1].to_vec();
    assert!(!log.is_empty() && log.iter().all(|l| l.starts_with("  | ")), "{out:#?}");
    assert!(log.contains(&"  | crash-at-start: reading config"), "{out:#?}");
    assert!(
        log.contains(&"  | crash-at-start: cannot open the database: no such file"),
        "{out:#?}"
    );

    assert_eq!(env.matching(&script), Vec::<u32>::new(), "the script is gone");
    env.assert_nothing_runs("nothing left running");
    let s = env.server("api");
    assert_eq!(s.state, "stopped", "{s:#?}");
    assert_eq!(env.entry("api").pid, None, "the lease is ended");
    // `logs` shows the same lines.
    let logs = env.run(&["logs", "api"]);
    assert!(logs.ok().contains("crash-at-start: cannot open the database"), "{logs:#?}");
}

#[test]
fn start_of_an_unknown_project_exits_4_naming_portd_add() {
    let env = servers_env(32220);
    env.run(&["get", "plain"]).port();
    let before = env.ls_raw();
    let out = env.run(&["start", "nope"]);
    assert_eq!(
        out.error(4),
        "error: `nope` is not a defined server\n\
         hint: define it first: `portd add nope -- COMMAND ARGS…`\n"
    );
    // A project with a port but no definition is not a server either.
    let out = env.run(&["start", "plain"]);
    assert!(out.error(4).contains("portd add plain"), "{out:#?}");
    for cmd in ["stop", "restart", "logs", "rm"] {
        let out = env.run(&[cmd, "nope"]);
        assert!(out.error(4).contains("`nope`"), "{cmd}: {out:#?}");
    }
    env.run(&["url", "nope"]).error(4);
    assert_eq!(env.ls_raw(), before, "nothing changed");
    env.assert_nothing_runs("nothing runs");
}

#[test]
fn a_command_that_does_not_exist_exits_127_and_is_recorded_stopped() {
    let env = servers_env(32240);
    env.add("ghost", &["--", "no-such-command-portd-test", "--port", "{port}"]);
    let out = env.run(&["start", "ghost"]);
    out.no_panic();
    assert_eq!((out.code, out.stdout.as_str()), (127, ""), "{out:#?}");
    let first = out.stderr.lines().next().unwrap_or("");
    assert!(
        first.starts_with("error: ") && first.contains("no-such-command-portd-test"),
        "{out:#?}"
    );
    assert!(out.stderr.lines().last().unwrap().starts_with("hint: "), "{out:#?}");
    env.assert_nothing_runs("nothing left running");
    let s = env.server("ghost");
    assert_eq!(s.state, "stopped", "{s:#?}");
    let why = s.reason.clone().or(s.last_event.as_ref().map(|e| e.text.clone()));
    assert!(
        why.as_deref().is_some_and(|w| w.contains("no-such-command-portd-test")),
        "`status --detailed` should say why it is stopped: {s:#?}"
    );
}

#[test]
fn a_foreign_listener_makes_start_exit_5_and_move_takes_another_port() {
    let env = servers_env(32260);
    let port = env.add("api", HTTP_SERVER);
    let listener = bind_v4_loopback(port).expect("bind the project's port");
    let before = env.ls_raw();
    let out = env.run(&["start", "api"]);
    assert!(out.error(5).lines().next().unwrap().contains(&port.to_string()), "{out:#?}");
    env.assert_nothing_runs("nothing runs");
    assert_eq!(env.ls_raw(), before, "a failed start leaves the registry as it was");
    assert_ne!(env.server("api").state, "running");

    let moved = env.run(&["start", "api", "--move"]);
    moved.no_panic();
    assert_eq!(moved.code, 0, "{moved:#?}");
    let new: u16 = moved.stdout.trim_end().parse().unwrap_or_else(|_| panic!("{moved:#?}"));
    assert_ne!(new, port);
    assert!((32260..32280).contains(&new), "{new}");
    assert_eq!(http_get(new, "/").unwrap().0, 200);
    assert_eq!(env.entry("api").port, new);
    assert_eq!(env.run(&["url", "api"]).ok(), format!("http://localhost:{new}/\n"));
    drop(listener);
}

#[test]
fn twenty_concurrent_starts_run_exactly_one_server() {
    let env = servers_env(32280);
    let port = env.add("api", HTTP_SERVER);
    let children: Vec<_> = (0..20)
        .map(|_| {
            env.command(["start", "api"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let _reaper = Reaper(children.iter().map(|c| c.id()).collect());
    for c in children {
        let out = c.wait_with_output().unwrap();
        let out = Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert_eq!(out.port(), port);
    }
    // Late starters, if any, would show up now.
    std::thread::sleep(Duration::from_millis(500));
    let servers: Vec<u32> = env
        .matching("http.server")
        .into_iter()
        .filter(|&p| portd_core::sys::proc_stat(p).is_ok_and(|s| s.comm.starts_with("python")))
        .collect();
    assert_eq!(servers.len(), 1, "exactly one server: {servers:?}");
    assert_eq!(env.entry("api").child_pid, Some(servers[0]));
    let sups = env.matching("__serve");
    assert_eq!(sups.len(), 1, "exactly one supervisor: {sups:?}");
    assert_eq!(http_get(port, "/").unwrap().0, 200);
}

#[test]
fn killing_the_supervisor_kills_its_server_and_start_works_again() {
    let env = servers_env(32300);
    let port = env.add("api", &["--", "node", &fixture("server.js")]);
    assert_eq!(env.start("api"), port);
    let e = env.entry("api");
    let (sup, child) = (e.pid.unwrap(), e.child_pid.unwrap());
    let cmd = portd_core::sys::cmdline(sup).unwrap_or_default();
    assert!(cmd.iter().any(|a| a == "__serve"), "the owner is the supervisor: {cmd:?}");

    portd_core::sys::kill(sup as i32, portd_core::sys::SIGKILL).unwrap();
    let t = Instant::now();
    wait_for("the server to die with its supervisor", Duration::from_secs(3), || {
        !alive(child) && group_members(child).is_empty()
    });
    let took = t.elapsed();
    assert!(took < Duration::from_millis(2500), "{took:?}");
    assert!(http_get(port, "/").is_err());
    let s = env.server("api");
    assert_eq!((s.state.as_str(), s.rss_bytes), ("stopped", None), "{s:#?}");
    assert_eq!(env.entry("api").state, "idle", "the lease is reclaimed");

    assert_eq!(env.start("api"), port);
    let (status, body) = http_get(port, "/").unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(env.server("api").state, "running");
}

#[test]
fn a_crashing_server_is_restarted_then_declared_crash_looping() {
    let env = servers_env(32320);
    let port =
        env.add("api", &["--env", "CRASH_AFTER_MS=300", "--", "node", &fixture("server.js")]);
    assert_eq!(env.start("api"), port);
    let first = env.entry("api").child_pid.unwrap();

    wait_server(&env, "api", "a restart", Duration::from_secs(10), |_, d| d.last_24h.restarts >= 1);
    wait_for("a new server process", Duration::from_secs(10), || {
        env.entry("api").child_pid.is_some_and(|p| p != first)
    });

    let s = wait_server(&env, "api", "crash-looping", Duration::from_secs(60), |s, _| {
        s.state == "crash-looping"
    });
    assert_eq!(s.last_event.as_ref().map(|e| e.kind.as_str()), Some("crash-looping"), "{s:#?}");
    let d = env.detailed();
    assert_eq!((d.crash_looping, d.running), (1, 0), "{d:#?}");
    assert_eq!(d.last_24h.restarts, 4, "restarted after each of 4 quick failures: {d:#?}");
    env.assert_nothing_runs("retries stopped: nothing runs");
    assert!(http_get(port, "/").is_err());

    // `start` tries again.
    assert_eq!(env.start("api"), port);
}

/// `add` with an HTTP health check every 200 ms, failing after two 500s
/// in a row, on the node server whose `/health` fails while `sick` exists.
fn add_sickly(env: &Env, sick: &std::path::Path, extra: &[&str]) -> u16 {
    let sick_env = format!("SICK_FILE={}", sick.display());
    let mut args = vec![
        "--health",
        "http:/health",
        "--health-interval",
        "200ms",
        "--health-failures",
        "2",
        "--env",
        &sick_env,
    ];
    args.extend_from_slice(extra);
    let server = fixture("server.js");
    args.extend(["--", "node", &server]);
    env.add("api", &args)
}

#[test]
fn a_server_failing_its_health_checks_is_restarted() {
    let env = servers_env(32340);
    let sick = env.root().join("sick");
    let port = add_sickly(&env, &sick, &[]);
    assert_eq!(env.start("api"), port);
    let first = env.entry("api").child_pid.unwrap();
    assert_eq!(http_get(port, "/health").unwrap().0, 200);

    std::fs::write(&sick, "").unwrap();
    assert_eq!(http_get(port, "/health").unwrap().0, 500);
    wait_server(&env, "api", "a restart after failed checks", Duration::from_secs(10), |_, d| {
        d.last_24h.restarts >= 1
    });
    wait_for("the unhealthy server to be stopped", Duration::from_secs(10), || !alive(first));
    std::fs::remove_file(&sick).unwrap();
    let s = wait_server(&env, "api", "running again", Duration::from_secs(30), |s, _| {
        s.state == "running"
    });
    let second = env.entry("api").child_pid.unwrap();
    assert_ne!(second, first, "{s:#?}");
    let (status, body) = http_get(port, "/").unwrap();
    assert_eq!((status, body), (200, format!("hello from node {second} on {port}\n")));
}

#[test]
fn a_server_failing_its_health_checks_with_restart_no_is_unhealthy_and_keeps_running() {
    let env = servers_env(32360);
    let sick = env.root().join("sick");
    let port = add_sickly(&env, &sick, &["--restart", "no"]);
    assert_eq!(env.start("api"), port);
    let pid = env.entry("api").child_pid.unwrap();

    std::fs::write(&sick, "").unwrap();
    let s = wait_server(&env, "api", "unhealthy", Duration::from_secs(10), |s, _| {
        s.state == "unhealthy"
    });
    assert_eq!(s.last_event.as_ref().map(|e| e.kind.as_str()), Some("unhealthy"), "{s:#?}");
    assert!(alive(pid), "it keeps running");
    assert_eq!(env.entry("api").child_pid, Some(pid));
    let (status, body) = http_get(port, "/").unwrap();
    assert_eq!((status, body), (200, format!("hello from node {pid} on {port}\n")));
    let d = env.detailed();
    assert_eq!((d.unhealthy, d.last_24h.restarts), (1, 0), "{d:#?}");

    // Healthy again: running again, the same process.
    std::fs::remove_file(&sick).unwrap();
    wait_server(&env, "api", "running again", Duration::from_secs(10), |s, _| s.state == "running");
    assert_eq!(env.entry("api").child_pid, Some(pid));
}

#[test]
fn a_server_that_ignores_port_fails_naming_the_port_it_listens_on() {
    // Ports 39100–39109 are the test's range; 39115, in its band but
    // outside that range, is where the server listens instead.
    let env = servers_env_n(39100, 10);
    // Listens on 39115 whatever PORT says.
    let script = "import http.server as h; h.HTTPServer(('127.0.0.1', 39115), h.SimpleHTTPRequestHandler).serve_forever()";
    let port =
        env.add("deaf", &["--start-timeout", "2s", "--no-inject", "--", "python3", "-c", script]);
    let out = env.run(&["start", "deaf"]);
    assert_eq!((out.code, out.stdout.as_str()), (10, ""), "{out:#?}");
    let first = out.stderr.lines().next().unwrap_or("");
    assert!(
        first.contains("listens on port 39115") && first.contains(&format!("its port {port}")),
        "the error names where it listens: {out:#?}"
    );
    let hint = out.stderr.lines().last().unwrap_or("");
    assert!(hint.starts_with("hint: ") && hint.contains("--port {port}"), "{out:#?}");
    env.assert_nothing_runs("nothing left running");
}

#[test]
fn run_warns_when_its_command_listens_on_another_port() {
    // Ports 39120–39129 are the test's range; 39135, in its band but
    // outside that range, is where the command listens instead.
    let env = servers_env_n(39120, 10);
    // Listens on 39135 whatever PORT says, after 6 s: slower than the first
    // look.
    let script = "import time; time.sleep(6); import http.server as h; h.HTTPServer(('127.0.0.1', 39135), h.SimpleHTTPRequestHandler).serve_forever()";
    let mut child = env
        .command(["run", "deaf", "--", "python3", "-c", script])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Lines of stderr as they come.
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The first look comes 5 s after the start (again every 5 s while the
    // command listens nowhere yet); the server keeps running.
    let t = Instant::now();
    let mut text = String::new();
    while !text.contains("warning:") {
        match lines.recv_timeout(Duration::from_secs(70).saturating_sub(t.elapsed())) {
            Ok(line) => text.push_str(&format!("{line}\n")),
            Err(_) => break,
        }
    }
    // The look at 5 s found it listening nowhere yet; the next one warns.
    assert!(t.elapsed() >= Duration::from_secs(10), "warned before the second look: {text}");
    // The hint follows the warning.
    if let Ok(line) = lines.recv_timeout(Duration::from_secs(5)) {
        text.push_str(&format!("{line}\n"));
    }
    let port = env.entry("deaf").port;
    assert!(http_get(39135, "/").is_ok(), "the command still runs");
    let _ = portd_core::sys::kill(child.id() as i32, portd_core::sys::SIGTERM);
    let _ = child.wait();
    assert!(
        text.contains(&format!(
            "warning: `deaf` listens on port 39135, not on its port {port}: it ignores `PORT`"
        )),
        "{text}"
    );
    assert!(text.contains("hint: pass it the port, e.g. `portd run deaf -- python3 -c"), "{text}");
}

#[test]
fn restart_during_a_restart_delay_returns_once_the_server_is_ready() {
    let env = servers_env(39140);
    // Crashes at its first two starts (a counter file), then serves.
    let script = "n=$(cat count 2>/dev/null || echo 0); echo $((n+1)) > count; \
                  [ $n -ge 2 ] || { sleep 0.2; exit 1; }; \
                  exec python3 -m http.server $PORT --bind 127.0.0.1";
    let port = env.add("flaky", &["--start-timeout", "10s", "--", "sh", "-c", script]);
    // The first start fails (reported), so start it through a crash after
    // it was healthy instead: count 2 makes the next start serve at once.
    std::fs::write(env.root().join("count"), "2").unwrap();
    assert_eq!(env.start("flaky"), port);
    // Now crash it twice in a row: the supervisor restarts with backoff.
    std::fs::write(env.root().join("count"), "0").unwrap();
    let pid = env.entry("flaky").child_pid.unwrap();
    let _ = portd_core::sys::kill(pid as i32, portd_core::sys::SIGKILL);
    wait_for("a restart under way", Duration::from_secs(5), || {
        env.server("flaky").state == "starting"
    });
    let t = std::time::Instant::now();
    let out = env.run(&["restart", "flaky"]);
    assert_eq!(out.port(), port, "{out:#?}");
    assert!(t.elapsed() < Duration::from_secs(8), "restart took {:?}", t.elapsed());
    assert!(http_get(port, "/").is_ok(), "ready when restart returned");
}

#[test]
fn stop_during_an_idle_stop_stops_at_once() {
    let env = servers_env(39160);
    // Ends 2 s after SIGTERM.
    let script = "import signal, time, sys, socket, os\n\
def term(*a):\n    print('got TERM', flush=True)\n    time.sleep(2)\n    sys.exit(0)\n\
signal.signal(signal.SIGTERM, term)\n\
s = socket.socket(fileno=3)\n\
while True:\n    c, _ = s.accept()\n    c.recv(1024)\n    c.sendall(b'HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\nok')\n    c.close()\n";
    std::fs::write(env.root().join("slowstop.py"), script).unwrap();
    let file = env.root().join("slowstop.py");
    let port = env.add(
        "slowstop",
        &[
            "--on-demand",
            "--fd",
            "--idle-timeout",
            "1s",
            "--kill-grace",
            "5s",
            "--",
            "python3",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(env.start("slowstop"), port);
    assert_eq!(http_get(port, "/").map(|(s, _)| s).ok(), Some(200));
    // The idle stop begins: the server says it got SIGTERM.
    wait_for("the idle stop", Duration::from_secs(10), || {
        env.run(&["logs", "slowstop"]).stdout.contains("got TERM")
    });
    let t = std::time::Instant::now();
    let out = env.run(&["stop", "slowstop"]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(t.elapsed() < Duration::from_secs(5), "stop took {:?}", t.elapsed());
    let s = env.server("slowstop");
    assert_eq!(s.state, "stopped", "{s:#?}");
    assert_eq!(s.reason.as_deref(), Some("stopped by the user"), "{s:#?}");
    env.assert_nothing_runs("nothing left");
}
