//! `portd run`: real servers on the leased port, exit codes, signals,
//! crash cleanup, concurrency and busy ports.

use crate::util::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// One HTTP/1.0 GET on 127.0.0.1:port; the whole response.
fn http_get(port: u16) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn signal(pid: u32, sig: &str) {
    let st =
        std::process::Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status();
    assert!(st.unwrap().success(), "kill -{sig} {pid}");
}

fn alive(pid: u32) -> bool {
    portd_core::sys::proc_stat(pid).is_ok_and(|s| s.state != 'Z')
}

/// `portd run ARGS` in the background.
fn spawn(env: &Env, args: &[&str]) -> Child {
    env.command(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
}

/// Waits for `child`, returning its exit code as a shell shows it (128+N
/// for a death by signal N) and its stderr.
fn finish(env: &Env, child: Child) -> (i32, String) {
    let out = child.wait_with_output().unwrap();
    let code = out.status.code().or(out.status.signal().map(|n| 128 + n)).unwrap_or(-1);
    (code, env.scrub(&String::from_utf8_lossy(&out.stderr)))
}

/// [`finish`], failing if `child` has not exited within `limit`.
#[track_caller]
fn finish_within(env: &Env, mut child: Child, limit: Duration) -> (i32, String) {
    let _reaper = Reaper(vec![child.id()]);
    wait_for("`portd run` to exit", limit, || child.try_wait().unwrap().is_some());
    finish(env, child)
}

/// The entry of `name`, once `portd run` (running as `run`) has recorded
/// its child. Fails at once, with its stderr, if `portd run` exits first.
fn active(env: &Env, run: &mut Child, name: &str) -> EntryJson {
    let mut found = None;
    wait_for(&format!("`{name}` to be active"), Duration::from_secs(10), || {
        if let Some(st) = run.try_wait().unwrap() {
            let mut err = String::new();
            run.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("`portd run {name}` exited early ({st}): {err}");
        }
        found = env.ls().into_iter().find(|e| e.project == name && e.child_pid.is_some());
        found.is_some()
    });
    let e = found.unwrap();
    assert_eq!(e.state, "active");
    e
}

fn serves(port: u16) -> String {
    let mut last = None;
    let mut body = String::new();
    wait_for(&format!("a server on {port}"), Duration::from_secs(10), || match http_get(port) {
        Ok(b) => {
            body = b;
            true
        }
        Err(e) => {
            last = Some(e);
            false
        }
    });
    body
}

const PORT_SERVER: &str = "import os, http.server as h\n\
    h.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), h.SimpleHTTPRequestHandler).serve_forever()";

#[test]
fn http_server_with_port_argument_serves_on_the_stable_port_twice() {
    let env = private_range(22000, 100);
    let want = env.run(&["get", "run-web"]).port();
    for round in 0..2 {
        let mut child = spawn(
            &env,
            &[
                "run",
                "run-web",
                "--",
                "python3",
                "-m",
                "http.server",
                "{port}",
                "--bind",
                "127.0.0.1",
            ],
        );
        let e = active(&env, &mut child, "run-web");
        assert_eq!(e.port, want, "round {round}: the run's port is `get`'s port");
        for _ in 0..3 {
            assert!(serves(want).starts_with("HTTP/1.0 200"), "round {round}");
        }
        assert_eq!(env.run(&["get", "run-web"]).port(), want);
        signal(child.id(), "TERM");
        let (code, stderr) = finish(&env, child);
        assert_eq!(code, 143, "round {round}");
        // The server's access log; nothing from portd itself.
        assert!(stderr.lines().all(|l| l.contains("\"GET / HTTP/1.0\" 200")), "{stderr}");
        let after = env.ls().into_iter().find(|e| e.project == "run-web").unwrap();
        assert_eq!((after.state.as_str(), after.port, after.pid), ("idle", want, None));
        // Round 2 starts at once, with the first round's connections in TIME_WAIT.
    }
}

#[test]
fn server_reading_port_from_the_environment() {
    let env = private_range(22100, 100);
    let mut child = spawn(&env, &["run", "run-env", "--", "python3", "-c", PORT_SERVER]);
    let e = active(&env, &mut child, "run-env");
    assert!(serves(e.port).starts_with("HTTP/1.0 200"));
    signal(child.id(), "INT");
    let (code, _) = finish(&env, child);
    // Python exits 1 after KeyboardInterrupt, or 130 if it died of SIGINT.
    assert!(code == 1 || code == 130, "exit {code}");
    assert_eq!(env.ls()[0].state, "idle");
}

#[test]
fn fd3_socket_is_ready_before_the_server_is() {
    let env = private_range(22200, 100);
    let report = env.root().join("fd-report");
    // Sleeps before accepting: a client that connects first must wait in
    // the backlog and still be served.
    let script = format!(
        "import os, socket, time, http.server as h\n\
         open({r:?}, 'w').write('%s %s %s %s' % (os.environ['LISTEN_FDS'], os.environ['LISTEN_PID'], os.getpid(), os.environ['LISTEN_FDNAMES']))\n\
         time.sleep(1)\n\
         s = h.HTTPServer(('', 0), h.SimpleHTTPRequestHandler, bind_and_activate=False)\n\
         s.socket = socket.socket(fileno=3)\n\
         s.serve_forever()",
        r = report.to_str().unwrap()
    );
    let t = Instant::now();
    let mut child = spawn(&env, &["run", "run-fd", "--fd", "--", "python3", "-c", &script]);
    let _reaper = Reaper(vec![child.id()]);
    let e = active(&env, &mut child, "run-fd");
    let body = http_get(e.port).expect("connect succeeds at once: the socket is already listening");
    assert!(body.starts_with("HTTP/1.0 200"), "{body}");
    assert!(t.elapsed() >= Duration::from_millis(900), "served before the server slept?");
    let r = std::fs::read_to_string(&report).unwrap();
    let f: Vec<&str> = r.split(' ').collect();
    // 127.0.0.1 as fd 3 and, where IPv6 is up, ::1 as fd 4.
    let n = if ipv6_available() { 2 } else { 1 };
    assert_eq!(f[0], n.to_string());
    assert_eq!(f[1], f[2], "LISTEN_PID is the server's own pid");
    assert_eq!(f[3], vec!["run-fd"; n].join(":"));
    signal(child.id(), "TERM");
    assert_eq!(finish(&env, child).0, 143);
}

#[test]
fn exit_codes_pass_through() {
    let env = private_range(22300, 100);
    let out = env.run(&["run", "codes", "--", "sh", "-c", "exit 7"]);
    assert_eq!((out.code, out.stdout.as_str(), out.stderr.as_str()), (7, "", ""));
    let out = env.command(["run", "codes", "--", "sh", "-c", "kill -TERM $$"]).output().unwrap();
    assert_eq!(out.status.signal(), Some(15), "dies of the command's signal: {out:?}");
    assert_eq!((out.stdout.as_slice(), out.stderr.as_slice()), (&b""[..], &b""[..]));
    let out = env.run(&[
        "run",
        "codes",
        "--",
        "sh",
        "-c",
        "echo $PORT $PORTD_PORT $PORTD_PROJECT {port}:{port} ${LISTEN_FDS:-none}",
    ]);
    let port = env.run(&["get", "codes"]).port();
    assert_eq!(out.ok(), format!("{port} {port} codes {port}:{port} none\n"));
    let out = env.run(&["run", "codes", "--", "/nonexistent/server"]);
    assert_eq!(out.code, 127, "{out:#?}");
    assert!(out.stderr.starts_with("error: cannot run `/nonexistent/server`"), "{out:#?}");
    assert_eq!(env.ls()[0].state, "idle");
}

#[test]
fn inherited_listen_variables_are_cleared() {
    let env = private_range(22400, 100);
    let out = env.run_env(
        &[
            "run",
            "clean",
            "--",
            "sh",
            "-c",
            "echo ${LISTEN_FDS:-unset} ${LISTEN_PID:-unset} ${LISTEN_FDNAMES:-unset}",
        ],
        &[("LISTEN_FDS", "4"), ("LISTEN_PID", "1"), ("LISTEN_FDNAMES", "x")],
    );
    assert_eq!(out.ok(), "unset unset unset\n");
}

/// A child that records which signal reached it, then exits 42.
fn trapping_child(env: &Env, name: &str, sig: &str) -> (Child, std::path::PathBuf) {
    let file = env.root().join(format!("got-{sig}"));
    let ready = env.root().join(format!("ready-{sig}"));
    let script = format!(
        "trap 'echo {sig} > {f}; exit 42' {sig}; touch {r}; while :; do sleep 0.05; done",
        f = file.display(),
        r = ready.display()
    );
    let child = spawn(env, &["run", name, "--", "sh", "-c", &script]);
    wait_for("the child's trap", Duration::from_secs(10), || ready.exists());
    (child, file)
}

#[test]
fn sigterm_and_sigint_reach_the_child() {
    let env = private_range(22500, 100);
    for sig in ["TERM", "INT", "HUP"] {
        let (child, file) = trapping_child(&env, "sig", sig);
        signal(child.id(), sig);
        let (code, stderr) = finish(&env, child);
        assert_eq!(code, 42, "{sig}");
        // The shell may report its `sleep` killed by the same signal.
        assert!(!stderr.contains("error"), "{sig}: {stderr}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("{sig}\n"));
    }
}

#[test]
fn second_sigint_kills_a_child_that_ignores_the_first() {
    let env = private_range(22600, 100);
    let ready = env.root().join("ready");
    let script = format!("trap '' INT; touch {}; while :; do sleep 0.05; done", ready.display());
    let child = spawn(&env, &["run", "stubborn", "--", "sh", "-c", &script]);
    wait_for("the child", Duration::from_secs(10), || ready.exists());
    signal(child.id(), "INT");
    std::thread::sleep(Duration::from_millis(200));
    signal(child.id(), "INT");
    let (code, _) = finish(&env, child);
    assert_eq!(code, 137, "killed by SIGKILL after the second Ctrl-C");
}

#[test]
fn sigkill_of_portd_run_takes_the_child_and_frees_the_port() {
    let env = Env::new();
    // A one-port range: the next project can only get this port by
    // reclaiming the dead lease.
    let port = (21700..21800)
        // Free as a fresh allocation sees it: not even TIME_WAIT left by an
        // earlier run of this test.
        .find(|&p| {
            let c: Vec<CheckJson> = env.run(&["check", &p.to_string(), "--json"]).json();
            assert_eq!((c.len(), c[0].port, c[0].project.as_deref()), (1, p, None));
            portd_core::probe(p, portd_core::ProbeOptions::default()) == portd_core::Verdict::Free
                && c[0].bindable
                && !c[0].time_wait
                && c[0].bound_by.is_empty()
        })
        .unwrap();
    env.write_config(format!("[[range]]\nname = \"one\"\nstart = {port}\nend = {port}\n"));
    let pidfile = env.root().join("server.pid");
    let script = format!(
        "echo $$ > {}; exec python3 -m http.server {{port}} --bind 127.0.0.1",
        pidfile.display()
    );
    let mut child = spawn(&env, &["run", "victim", "--", "sh", "-c", &script]);
    active(&env, &mut child, "victim");
    assert!(serves(port).starts_with("HTTP/1.0 200"));
    let server: u32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    signal(child.id(), "KILL");
    let (code, _) = finish(&env, child);
    assert_eq!(code, 137, "portd run was killed by SIGKILL");
    let t = Instant::now();
    wait_for("the server to die", Duration::from_secs(1), || !alive(server));
    assert!(t.elapsed() < Duration::from_secs(1));
    let e = env.ls().into_iter().find(|e| e.project == "victim").unwrap();
    assert_eq!(e.state, "idle", "a dead owner's lease is idle");
    wait_for("the port to be bindable", Duration::from_secs(5), || {
        portd_core::probe(port, portd_core::ProbeOptions { reuse: true, udp: false })
            == portd_core::Verdict::Free
    });
    let out = env.run(&["get", "next"]);
    assert_eq!(out.stdout, format!("{port}\n"), "the dead lease was reclaimed: {out:#?}");
    assert!(out.code == 0 && out.stderr.starts_with("evicted `victim` "), "{out:#?}");
}

#[test]
fn fifty_concurrent_runs_serve_on_distinct_ports_and_go_idle() {
    // Room for runs of this test in quick succession: the servers close
    // their connections first, and a fresh allocation does not take a
    // port in TIME_WAIT.
    let env = private_range(23000, 1000);
    let script = "import os, socket\n\
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
        s.bind(('127.0.0.1', int(os.environ['PORT']))); s.listen(16)\n\
        while True:\n\
        \x20   c, _ = s.accept(); c.recv(1024)\n\
        \x20   c.sendall(b'HTTP/1.0 200 OK\\r\\n\\r\\n' + os.environ['PORTD_PROJECT'].encode()); c.close()";
    let names: Vec<String> = (0..50).map(|i| format!("many-{i}")).collect();
    let mut children: Vec<Child> =
        names.iter().map(|n| spawn(&env, &["run", n, "--", "python3", "-c", script])).collect();
    let _reaper = Reaper(children.iter().map(Child::id).collect());
    let mut ports = std::collections::BTreeSet::new();
    for (n, c) in names.iter().zip(&mut children) {
        let e = active(&env, c, n);
        let body = serves(e.port);
        assert!(body.starts_with("HTTP/1.0 200") && body.ends_with(n.as_str()), "{n}: {body}");
        ports.insert(e.port);
    }
    assert_eq!(ports.len(), 50, "distinct ports");
    for c in &children {
        signal(c.id(), "TERM");
    }
    for c in children {
        assert_eq!(finish(&env, c).0, 143);
    }
    let ls = env.ls();
    assert_eq!(ls.len(), 50);
    assert!(ls.iter().all(|e| e.state == "idle" && e.pid.is_none()), "{ls:#?}");
}

#[test]
fn busy_port_refused_with_holder_named_and_move_takes_another() {
    let env = private_range(22800, 100);
    let port = env.run(&["get", "squatted"]).port();
    let squatter = bind_v4_loopback(port).unwrap();
    let before = env.ls_raw();
    let out = env.run(&["run", "squatted", "--", "true"]);
    let err = out.error(5);
    assert!(err.contains(&format!("port {port} is bound by pid {}", std::process::id())), "{err}");
    assert_eq!(env.ls_raw(), before, "a refused run changes nothing");
    let out = env.run(&["run", "squatted", "--move", "--", "sh", "-c", "echo $PORT"]);
    assert_eq!(out.code, 0, "{out:#?}");
    let moved: u16 = out.stdout.trim().parse().unwrap();
    assert_ne!(moved, port);
    assert!(out.stderr.contains(&format!("moved `squatted` from port {port}")), "{out:#?}");
    assert_eq!(env.run(&["get", "squatted"]).port(), moved);
    drop(squatter);
}

/// An IPv4 address of this machine that is not loopback, if it has one.
fn non_loopback_v4() -> Option<std::net::Ipv4Addr> {
    let out = std::process::Command::new("hostname").arg("-I").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_ascii_whitespace()
        .filter_map(|a| a.parse::<std::net::Ipv4Addr>().ok())
        .find(|a| !a.is_loopback())
}

fn connects(addr: std::net::SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

/// Serves on every socket passed to it (LISTEN_FDS from fd 3), after
/// writing the addresses it was given to `report`.
fn fd_server(report: &std::path::Path) -> String {
    format!(
        "import os, socket, selectors\n\
         n = int(os.environ['LISTEN_FDS'])\n\
         socks = [socket.socket(fileno=3 + i) for i in range(n)]\n\
         open({r:?} + '.tmp', 'w').write(' '.join(s.getsockname()[0] for s in socks))\n\
         os.rename({r:?} + '.tmp', {r:?})\n\
         sel = selectors.DefaultSelector()\n\
         for s in socks: sel.register(s, selectors.EVENT_READ)\n\
         while True:\n\
         \x20   for key, _ in sel.select():\n\
         \x20       c, _ = key.fileobj.accept(); c.recv(1024)\n\
         \x20       c.sendall(b'HTTP/1.0 200 OK\\r\\n\\r\\nfd'); c.close()",
        r = report.to_str().unwrap()
    )
}

#[test]
fn fd_sockets_listen_on_loopback_only_unless_a_host_is_given() {
    let env = private_range(24100, 100);
    let lan = non_loopback_v4();
    let v6 = ipv6_available();
    if !v6 {
        skip("no IPv6 here: the default ::1 socket is not tried");
    }
    for (round, host) in [None, Some("127.0.0.1"), Some("0.0.0.0")].into_iter().enumerate() {
        let report = env.root().join(format!("fd-{round}"));
        let script = fd_server(&report);
        let mut args = vec!["run", "fdhost", "--fd"];
        if let Some(h) = host {
            args.extend(["--host", h]);
        }
        args.extend(["--", "python3", "-c", &script]);
        let mut child = spawn(&env, &args);
        let _reaper = Reaper(vec![child.id()]);
        let e = active(&env, &mut child, "fdhost");
        wait_for("the report", Duration::from_secs(10), || report.exists());
        let given = std::fs::read_to_string(&report).unwrap();
        let v4: std::net::SocketAddr = ([127, 0, 0, 1], e.port).into();
        let v6addr: std::net::SocketAddr = (std::net::Ipv6Addr::LOCALHOST, e.port).into();
        match host {
            None if v6 => assert_eq!(given, "127.0.0.1 ::1"),
            None => assert_eq!(given, "127.0.0.1"),
            Some(h) => assert_eq!(given, h, "one socket, on the host asked for"),
        }
        assert!(http_get(e.port).unwrap().ends_with("fd"));
        assert!(connects(v4));
        if v6 && host.is_none() {
            assert!(connects(v6addr), "::1 is served by default");
        }
        match lan {
            Some(ip) => assert_eq!(
                connects((ip, e.port).into()),
                host == Some("0.0.0.0"),
                "{ip} reachable only with --host 0.0.0.0 (round {round})"
            ),
            None => skip("no non-loopback IPv4 address to test exposure with"),
        }
        signal(child.id(), "TERM");
        assert_eq!(finish(&env, child).0, 143);
    }
    let out = env.run(&["run", "fdhost", "--fd", "--host", "my-laptop", "--", "true"]);
    assert!(out.error(2).contains("`--host my-laptop` is not an IP address"), "{out:#?}");
}

/// `app.py` (WSGI, answers with its pid and parent's pid) and `asgi.py`
/// (ASGI) in `dir`.
fn python_apps(dir: &std::path::Path) {
    std::fs::write(
        dir.join("app.py"),
        "import os\n\
         def app(environ, start_response):\n\
         \x20   start_response('200 OK', [('Content-Type', 'text/plain')])\n\
         \x20   return [('%d %d' % (os.getpid(), os.getppid())).encode()]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("asgi.py"),
        "async def app(scope, receive, send):\n\
         \x20   await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n\
         \x20   await send({'type': 'http.response.body', 'body': b'uvicorn'})\n",
    )
    .unwrap();
}

fn python_module(name: &str) -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", &format!("import {name}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        skip(&format!("python3 has no `{name}` (pip install {name})"));
    }
    ok
}

/// The README's gunicorn line: no `--bind`, gunicorn reads LISTEN_FDS.
#[test]
fn gunicorn_master_and_workers_serve_on_the_passed_sockets() {
    if !python_module("gunicorn") {
        return;
    }
    let env = private_range(24200, 100);
    python_apps(env.root());
    let root = env.root().to_str().unwrap().to_owned();
    let mut child = spawn(
        &env,
        &["run", "guni", "--fd", "--", "gunicorn", "--chdir", &root, "-w", "2", "app:app"],
    );
    let _reaper = Reaper(vec![child.id()]);
    let e = active(&env, &mut child, "guni");
    let master = e.child_pid.unwrap();
    let mut workers = std::collections::BTreeSet::new();
    let v6 = ipv6_available();
    if !v6 {
        skip("no IPv6 here: gunicorn's ::1 socket is not tried");
    }
    let end = Instant::now() + Duration::from_secs(20);
    while workers.len() < 2 && Instant::now() < end {
        let body = serves(e.port);
        let ids: Vec<u32> = body
            .rsplit("\r\n\r\n")
            .next()
            .unwrap()
            .split(' ')
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(ids[1], master, "a worker of the master portd started: {body}");
        workers.insert(ids[0]);
        if v6 {
            let mut s = TcpStream::connect((std::net::Ipv6Addr::LOCALHOST, e.port)).unwrap();
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
            let mut b = String::new();
            s.read_to_string(&mut b).unwrap();
            assert!(b.starts_with("HTTP/1.1 200") || b.starts_with("HTTP/1.0 200"), "{b}");
        }
    }
    assert!(!workers.is_empty() && !workers.contains(&master), "{workers:?}");
    // Both workers run under the master portd started (which one accepts a
    // request is gunicorn's choice, so not both need have answered).
    let children: std::collections::BTreeSet<u32> = portd_core::sys::process_table()
        .into_iter()
        .filter(|p| p.ppid == master && p.state != 'Z')
        .map(|p| p.pid)
        .collect();
    assert_eq!(children.len(), 2, "gunicorn -w 2 runs two workers: {children:?}");
    assert!(workers.is_subset(&children), "{workers:?} served, workers {children:?}");
    signal(child.id(), "TERM");
    let (code, stderr) = finish(&env, child);
    // gunicorn exits 0 on SIGTERM after stopping its workers.
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("portd: stopped"), "no worker was left behind: {stderr}");
}

/// The README's uvicorn line: one socket (`--host 127.0.0.1`) for `--fd 3`.
#[test]
fn uvicorn_serves_on_fd_3() {
    if !python_module("uvicorn") {
        return;
    }
    let env = private_range(24300, 100);
    python_apps(env.root());
    let root = env.root().to_str().unwrap().to_owned();
    let mut child = spawn(
        &env,
        &[
            "run",
            "uvi",
            "--fd",
            "--host",
            "127.0.0.1",
            "--",
            "uvicorn",
            "--fd",
            "3",
            "--app-dir",
            &root,
            "--lifespan",
            "off",
            "asgi:app",
        ],
    );
    let _reaper = Reaper(vec![child.id()]);
    let e = active(&env, &mut child, "uvi");
    let body = serves(e.port);
    assert!(body.starts_with("HTTP/1.1 200") && body.ends_with("uvicorn"), "{body}");
    signal(child.id(), "INT");
    let (code, stderr) = finish(&env, child);
    assert!(code == 0 || code == 130, "exit {code}: {stderr}");
}

fn read_pid(path: &std::path::Path) -> u32 {
    wait_for("the pid file", Duration::from_secs(10), || {
        std::fs::read_to_string(path).is_ok_and(|s| s.ends_with('\n'))
    });
    std::fs::read_to_string(path).unwrap().trim().parse().unwrap()
}

#[test]
fn what_the_command_leaves_running_is_stopped_before_the_lease_ends() {
    let env = private_range(24400, 100);
    let pidfile = env.root().join("bg.pid");
    // Returns once the background server has answered a connection.
    let script = format!(
        "python3 -m http.server {{port}} --bind 127.0.0.1 >/dev/null 2>&1 & echo $! > {}; \
         until (exec 3<>/dev/tcp/127.0.0.1/{{port}}) 2>/dev/null; do sleep 0.05; done",
        pidfile.display()
    );
    let out = env.run(&["run", "bg", "--", "bash", "-c", &script]);
    let server = read_pid(&pidfile);
    let port = env.run(&["get", "bg"]).port();
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:#?}");
    let name = portd_core::sys::proc_stat(server).map(|s| s.comm).unwrap_or_default();
    assert!(
        out.stderr.starts_with(&format!("portd: stopped 1 process left by `bg`: pid {server} (")),
        "{out:#?} ({name})"
    );
    assert_eq!(out.stderr.lines().count(), 1, "{out:#?}");
    assert!(!alive(server), "the server is gone");
    assert!(http_get(port).is_err(), "nothing serves on {port}");
    let e = env.ls().into_iter().find(|e| e.project == "bg").unwrap();
    assert_eq!((e.state.as_str(), e.pid, e.child_pid), ("idle", None, None));
    // The port is the project's to run again.
    let out = env.run(&["run", "bg", "--", "sh", "-c", "echo $PORT"]);
    assert_eq!(out.ok(), format!("{port}\n"));
}

#[test]
fn leftovers_that_escape_the_group_or_ignore_sigterm_are_killed_after_the_grace() {
    let env = private_range(24500, 100);
    let (a, b) = (env.root().join("a.pid"), env.root().join("b.pid"));
    // One leftover in a session of its own, one that ignores SIGTERM.
    let script = format!(
        "setsid sleep 300 & echo $! > {a}; (trap '' TERM; echo $BASHPID > {b}.tmp; exec sleep 300) & \
         until [ -s {b}.tmp ]; do sleep 0.01; done; mv {b}.tmp {b}",
        a = a.display(),
        b = b.display()
    );
    let t = Instant::now();
    let out = env.run(&["run", "esc", "--kill-grace", "300ms", "--", "bash", "-c", &script]);
    let (a, b) = (read_pid(&a), read_pid(&b));
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:#?}");
    let (lo, hi) = (a.min(b), a.max(b));
    let err = &out.stderr;
    assert!(
        err.starts_with(&format!("portd: stopped 2 processes left by `esc`: pid {lo} ("))
            && err.contains(&format!("), pid {hi} ("))
            && err.ends_with(") (SIGKILL after 300ms)\n")
            && err.lines().count() == 1,
        "{out:#?}"
    );
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    assert!(!alive(a) && !alive(b));
    let out = env.run(&["run", "esc", "--kill-grace", "soon", "--", "true"]);
    assert!(out.usage().contains("`soon` is not a duration"), "{out:#?}");
}

#[test]
fn child_pid_is_the_command_and_killing_the_supervisor_kills_it() {
    let env = private_range(24600, 100);
    let pidfile = env.root().join("server.pid");
    let script = format!(
        "echo $$ > {}; exec python3 -m http.server {{port}} --bind 127.0.0.1",
        pidfile.display()
    );
    let mut child = spawn(&env, &["run", "sup", "--", "sh", "-c", &script]);
    let _reaper = Reaper(vec![child.id()]);
    let e = active(&env, &mut child, "sup");
    let server = read_pid(&pidfile);
    assert!(serves(e.port).starts_with("HTTP/1.0 200"));
    let shown: EntryJson = env.run(&["show", "sup", "--json"]).json();
    assert_eq!(shown.child_pid, Some(server), "child_pid names the command itself");
    assert_eq!(shown.pid, Some(child.id()), "the owner is `portd run`");
    let supervisor = portd_core::sys::process_table()
        .into_iter()
        .find(|p| p.pid == server)
        .map(|p| p.ppid)
        .unwrap();
    assert_ne!(supervisor, child.id());
    assert_eq!(shown.supervisor_pid, Some(supervisor), "the supervisor has its own field");
    signal(supervisor, "KILL");
    wait_for("the server to die", Duration::from_secs(2), || !alive(server));
    let (code, _) = finish(&env, child);
    assert_eq!(code, 137, "portd run reports its supervisor's SIGKILL");
    let e = env.ls().into_iter().find(|e| e.project == "sup").unwrap();
    assert_eq!((e.state.as_str(), e.pid, e.child_pid), ("idle", None, None));
    assert!(http_get(e.port).is_err());
}

#[test]
fn a_command_that_cannot_start_leaves_the_registry_as_it_was() {
    let env = private_range(24700, 100);
    env.run(&["get", "other"]).port();
    let file = env.root().join("not-executable");
    std::fs::write(&file, "#!/bin/sh\necho hi\n").unwrap();
    let dir = env.root().join("a-dir");
    std::fs::create_dir(&dir).unwrap();
    let cases = [
        ("/nonexistent/cmd".to_owned(), 127, "no such file or directory"),
        ("nosuchcmd-xyz".to_owned(), 127, "command not found"),
        (file.to_str().unwrap().to_owned(), 126, "permission denied"),
        (dir.to_str().unwrap().to_owned(), 126, "is a directory"),
    ];
    let snapshot = || {
        (
            env.run(&["ls", "--all", "--json"]).ok().to_owned(),
            std::fs::read(env.registry()).unwrap(),
        )
    };
    for (program, code, why) in cases {
        for name in ["x", "other"] {
            let before = snapshot();
            let out = env.run(&["run", name, "--", &program, "arg"]);
            assert!(snapshot() == before, "`run {name} -- {program}` changed the registry");
            let shown = env.scrub(&program);
            assert_eq!(
                (out.code, out.stdout.as_str(), out.stderr.as_str()),
                (code, "", format!("error: cannot run `{shown}`: {why}\n").as_str()),
                "{program}"
            );
        }
    }
}

#[test]
fn run_refuses_json_because_it_prints_no_data() {
    let env = private_range(24800, 100);
    let out = env.run(&["run", "j", "--json", "--", "true"]);
    let err = out.error(2);
    assert!(err.starts_with("error: `run` prints no data, so `--json` does not apply\n"), "{err}");
    assert_eq!(env.run(&["ls", "--json"]).ok(), "[]\n");
}

#[test]
fn a_command_killed_by_a_signal_takes_portd_run_with_it() {
    let env = private_range(24900, 100);
    for (sig, n) in [("INT", 2), ("TERM", 15), ("HUP", 1), ("QUIT", 3)] {
        let script = format!("kill -{sig} $$");
        let out = env.command(["run", "sig", "--", "sh", "-c", &script]).output().unwrap();
        assert_eq!(out.status.signal(), Some(n), "{sig}: {out:?}");
        // The status reports no core dump. (Only that: with RLIMIT_CORE 0
        // or a `core_pattern` that writes no file, none would be reported
        // anyway; that portd is made non-dumpable before it re-raises,
        // for a `core_pattern` piping to a handler, is not seen here.)
        assert!(!out.status.core_dumped(), "{sig}: portd run dumped core");
        assert_eq!((out.stdout.as_slice(), out.stderr.as_slice()), (&b""[..], &b""[..]));
        let e = env.ls().into_iter().find(|e| e.project == "sig").unwrap();
        assert_eq!((e.state.as_str(), e.pid), ("idle", None), "the lease ended first");
    }
    // What a shell reports: 128+N.
    let out = env.shell(r#"portd run sig -- sh -c 'kill -INT $$'; echo rc=$?"#);
    assert_eq!(out.ok(), "rc=130\n");
}

/// A script whose `#!` interpreter does not exist: the file is there and
/// executable, but its exec fails (a shell's 126).
fn bad_interpreter(env: &Env) -> String {
    let f = env.root().join("bad.sh");
    write_executable(&f, "#!/nonexistent/interp\necho hi\n");
    f.to_str().unwrap().to_owned()
}

/// Every entry and history row, to the millisecond (`ls --json` shows
/// `last_used` to the second).
fn exact_state(env: &Env) -> (Vec<portd_store::Listed>, Vec<(String, u16)>) {
    let reg = portd_store::Registry::open(env.home(), portd_store::Config::default()).unwrap();
    (reg.list().unwrap(), reg.history().unwrap())
}

#[test]
fn a_command_whose_exec_fails_leaves_the_registry_as_it_was() {
    let env = private_range(26500, 100);
    env.run(&["get", "old"]).port();
    env.run(&["get", "gone"]).port();
    env.run(&["release", "gone"]);
    let bad = bad_interpreter(&env);
    for fd in [false, true] {
        for name in [&["new"][..], &["old"], &["gone"], &["old", "--port", "26550"]] {
            let before = exact_state(&env);
            let mut args = vec!["run"];
            args.extend(name);
            if fd {
                args.push("--fd");
            }
            args.extend(["--", bad.as_str()]);
            // Within `last_used`'s resolution of the previous write, an
            // unrestored entry would still compare equal.
            std::thread::sleep(Duration::from_millis(5));
            let out = env.run(&args);
            assert_eq!(
                (out.code, out.stdout.as_str(), out.stderr.as_str()),
                (
                    126,
                    "",
                    "error: cannot run `[ROOT]/bad.sh`: bad interpreter or loader: not found\n"
                ),
                "{args:?}: no note of a move that was undone"
            );
            assert_eq!(exact_state(&env), before, "{args:?} changed the registry");
        }
    }
}

#[test]
fn a_failed_start_puts_back_the_idle_entry_it_evicted() {
    // Two ports of a band no other test uses, free now.
    let env = private_range(free_ports(21_400, 2), 2);
    env.run(&["get", "a"]).port();
    env.run(&["get", "b"]).port();
    let bad = bad_interpreter(&env);
    let before = exact_state(&env);
    assert_eq!(before.0.len(), 2);
    std::thread::sleep(Duration::from_millis(5));
    let out = env.run(&["run", "c", "--", &bad]);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (126, "", "error: cannot run `[ROOT]/bad.sh`: bad interpreter or loader: not found\n")
    );
    assert_eq!(exact_state(&env), before, "the evicted entry is back, as it was");
    // The eviction itself works: a command that starts gets the port.
    let out = env.run(&["run", "c", "--", "true"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:#?}");
    assert!(out.stderr.starts_with("evicted `a` "), "{out:#?}");
}

#[test]
fn a_signal_sent_to_the_commands_group_reaches_it_and_ends_the_run() {
    let env = private_range(26600, 100);
    for sig in ["TERM", "HUP", "QUIT"] {
        let (mut child, file) = trapping_child(&env, "supsig", sig);
        let e = active(&env, &mut child, "supsig");
        // `child_pid` is also the group's id; the supervisor is a member.
        signal_group(e.child_pid.unwrap(), sig);
        let (code, stderr) = finish_within(&env, child, Duration::from_secs(5));
        assert_eq!(code, 42, "{sig}: {stderr}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("{sig}\n"));
        let e = env.ls().into_iter().find(|e| e.project == "supsig").unwrap();
        assert_eq!((e.state.as_str(), e.pid), ("idle", None));
    }
}

fn signal_group(pgid: u32, sig: &str) {
    let st = std::process::Command::new("kill")
        .args([&format!("-{sig}"), "--", &format!("-{pgid}")])
        .status();
    assert!(st.unwrap().success(), "kill -{sig} -- -{pgid}");
}

#[test]
fn a_second_ctrl_c_during_the_kill_grace_kills_at_once() {
    let env = private_range(26700, 100);
    let p = env.root().join("left.pid");
    // The command exits at once, leaving a process that ignores SIGTERM
    // and SIGINT in its group.
    let script = format!(
        "(trap '' TERM INT; echo $BASHPID > {p}.tmp; exec sleep 300) & \
         until [ -s {p}.tmp ]; do sleep 0.01; done; mv {p}.tmp {p}",
        p = p.display()
    );
    let mut child =
        spawn(&env, &["run", "grace", "--kill-grace", "30s", "--", "bash", "-c", &script]);
    let _reaper = Reaper(vec![child.id()]);
    let left = read_pid(&p);
    // The command is gone (reaped): the supervisor is in its grace period.
    let mut command = None;
    wait_for("the command to be recorded", Duration::from_secs(10), || {
        command = env.ls().into_iter().find(|e| e.project == "grace").and_then(|e| e.child_pid);
        command.is_some() || child.try_wait().unwrap().is_some()
    });
    let command = command.expect("recorded");
    wait_for("the command to end", Duration::from_secs(10), || {
        portd_core::sys::proc_stat(command).is_err()
    });
    assert!(alive(left), "the leftover ignores SIGTERM");
    let t = Instant::now();
    signal(child.id(), "INT");
    std::thread::sleep(Duration::from_millis(100));
    signal(child.id(), "INT");
    let (code, stderr) = finish_within(&env, child, Duration::from_secs(5));
    assert!(t.elapsed() < Duration::from_millis(1500), "{:?}", t.elapsed());
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "portd: stopped 1 process left by `grace`: pid {left} (sleep) (SIGKILL on a second Ctrl-C)\n"
        )
    );
    assert!(!alive(left));
}

/// The lines of `path` (none if it does not exist yet).
fn lines_of(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_owned).collect()
}

#[test]
fn signals_sent_by_name_or_to_the_group_reach_the_server_and_kill_nothing() {
    let env = private_range(26800, 100);
    let marker = format!("logsrv-{}", std::process::id());
    let got = env.root().join("got");
    let ready = env.root().join("ready");
    // A server that reopens its logs on USR1, upgrades on USR2, reloads on HUP.
    let script = format!(
        "for s in USR1 USR2 HUP; do trap \"echo $s >> {g}\" $s; done; touch {r}; \
         while :; do sleep 0.05; done",
        g = got.display(),
        r = ready.display()
    );
    let mut run = spawn(&env, &["run", "sig", "--", "bash", "-c", &script, &marker]);
    let _reaper = Reaper(vec![run.id()]);
    let e = active(&env, &mut run, "sig");
    wait_for("the traps", Duration::from_secs(10), || ready.exists());
    let command = e.child_pid.unwrap();
    let shown: EntryJson = env.run(&["show", "sig", "--json"]).json();
    let supervisor = shown.supervisor_pid.unwrap();
    let cmdline = portd_core::sys::cmdline(supervisor).unwrap().join(" ");
    assert!(!cmdline.contains(&marker), "the supervisor's command line: {cmdline}");
    let count = |sig: &str| lines_of(&got).iter().filter(|l| *l == sig).count();
    for sig in ["USR1", "USR2"] {
        // Sent to `portd run` alone: forwarded to the group, where the
        // supervisor drops it, so the server gets it exactly once.
        signal(run.id(), sig);
        wait_for(&format!("the {sig} trap"), Duration::from_secs(5), || count(sig) >= 1);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(count(sig), 1, "{sig} to `portd run`: {:?}", lines_of(&got));
        // `pkill -f` matches `portd run` (its command line holds the
        // command's) and the server itself: the server gets it from
        // `pkill` and once more from `portd run` (the two merge if both
        // arrive before its trap runs), so once or twice, never more.
        let st = std::process::Command::new("pkill")
            .args([&format!("-{sig}"), "-f", &marker])
            .status()
            .unwrap();
        assert!(st.success(), "pkill -{sig}");
        wait_for(&format!("the {sig} trap"), Duration::from_secs(5), || count(sig) >= 2);
        std::thread::sleep(Duration::from_millis(300));
        let n = count(sig) - 1;
        assert!((1..=2).contains(&n), "{sig} by `pkill -f` ran the trap {n} times");
        assert!(run.try_wait().unwrap().is_none(), "{sig}: portd run ended");
        assert!(alive(supervisor) && alive(command), "{sig} killed the supervisor or the server");
    }
    // Sent to the whole group from outside (the supervisor is a member):
    // the trap runs once, not again forwarded by the supervisor.
    portd_core::sys::kill(-(command as i32), portd_core::sys::SIGHUP).unwrap();
    wait_for("the HUP trap", Duration::from_secs(5), || lines_of(&got).contains(&"HUP".to_owned()));
    std::thread::sleep(Duration::from_millis(500));
    let hups = lines_of(&got).iter().filter(|l| *l == "HUP").count();
    assert_eq!(hups, 1, "{:?}", lines_of(&got));
    // Timer and I/O signals sent to the supervisor do not end it.
    for sig in ["ALRM", "VTALRM", "PROF", "IO", "USR1", "USR2", "TERM"] {
        signal(supervisor, sig);
    }
    // Nor does its parent-death signal, sent while its owner lives.
    let death = portd_core::sys::owner_death_signal();
    portd_core::sys::kill(supervisor as i32, death).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(supervisor) && alive(command) && run.try_wait().unwrap().is_none());
    signal(run.id(), "TERM");
    let (code, stderr) = finish_within(&env, run, Duration::from_secs(10));
    assert_eq!(code, 143, "{stderr}");
}

#[test]
fn a_supervisor_whose_owner_is_not_its_parent_starts_nothing_and_signals_no_one() {
    use portd_store::supervisor::SuperviseArgs;
    use std::os::fd::AsRawFd;
    let env = Env::new();
    // Stands for a dead owner's pid, reused by an unrelated process.
    let mut stranger = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let _reaper = Reaper(vec![stranger.id()]);
    let marker = env.root().join("started");
    let args = SuperviseArgs {
        name: "orphan".to_owned(),
        fds: 0,
        kill_grace: Duration::from_millis(100),
        terminal: false,
        owner: stranger.id(),
        argv: vec!["touch".to_owned(), marker.to_str().unwrap().to_owned()],
    };
    let (mut report_in, report_out) = std::io::pipe().unwrap();
    let (args_in, mut args_out) = std::io::pipe().unwrap();
    let mut cmd = env.command(args.to_args());
    portd_core::sys::pass_fds(&mut cmd, vec![report_out.as_raw_fd(), args_in.as_raw_fd()]);
    let sup = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    drop((report_out, args_in));
    args_out.write_all(&args.encode()).unwrap();
    drop(args_out);
    let mut report = String::new();
    report_in.read_to_string(&mut report).unwrap();
    let (code, stderr) = finish_within(&env, sup, Duration::from_secs(5));
    assert_eq!((code, report.as_str(), stderr.as_str()), (1, "", ""));
    assert!(!marker.exists(), "the command was started");
    assert_eq!(portd_core::sys::proc_stat(stranger.id()).unwrap().state, 'S');
    assert!(stranger.try_wait().unwrap().is_none());
}

#[test]
fn a_lease_that_cannot_be_undone_is_warned_about_before_the_error() {
    let env = private_range(27000, 100);
    env.run(&["get", "other"]).port();
    let bad = bad_interpreter(&env);
    // Takes `registry.lock` as soon as the lease is written (the registry
    // file changes), before the failed start can undo it, and holds it.
    const SCRIPT: &str = "import fcntl, os, sys, time\n\
        db, lock = sys.argv[1], sys.argv[2]\n\
        before = os.stat(db).st_mtime_ns\n\
        print('watching', flush=True)\n\
        while os.stat(db).st_mtime_ns == before: pass\n\
        fd = os.open(lock, os.O_RDWR)\n\
        fcntl.flock(fd, fcntl.LOCK_EX)\n\
        os.pwrite(fd, b'%-10d\\n' % os.getpid(), 0)\n\
        time.sleep(60)\n";
    let Ok(mut holder) = std::process::Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(env.home().join("registry.redb"))
        .arg(env.home().join("registry.lock"))
        .stdout(Stdio::piped())
        .spawn()
    else {
        return skip("no python3 to hold the lock from another process");
    };
    let _reaper = Reaper(vec![holder.id()]);
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "watching\n");
    let out = env.run_env(&["run", "x", "--", &bad], &[("PORTD_LOCK_TIMEOUT", "300ms")]);
    let _ = holder.kill();
    let _ = holder.wait();
    let e = env.ls().into_iter().find(|e| e.project == "x").expect("the lease was left");
    let (warning, error) = out.stderr.split_once('\n').unwrap();
    assert!(
        warning.starts_with(&format!(
            "warning: could not undo the lease of `x` (port {}): registry busy: ",
            e.port
        )),
        "{}",
        out.stderr
    );
    assert_eq!(
        (out.code, out.stdout.as_str(), error),
        (126, "", "error: cannot run `[ROOT]/bad.sh`: bad interpreter or loader: not found\n")
    );
}
