//! Managed servers tried further, as a demanding user would: a real Vite
//! started through `npm run dev` (with and without the port flags portd
//! adds), projects that refer to each other, `open` with and without a
//! desktop opener, `start --all` and `stop --all`, `logs -f` interrupted,
//! fifty on-demand projects woken one request each, twenty first requests
//! at once to a sleeping one, `stop` of a stopped (SIGSTOP) server, and the
//! exact shape of `status --detailed`.
//!
//! Every test runs in a [`Servers`] world (ports of its own in the band
//! 37000–37499 and 37600–37999) that stops and kills whatever it started when it ends.

use crate::util::*;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `pid`'s command line, joined by spaces (empty once it is gone).
fn cmd_of(pid: u32) -> String {
    portd_core::sys::cmdline(pid).unwrap_or_default().join(" ")
}

#[test]
fn npm_run_dev_of_vite_gets_the_port_flags_serves_the_page_and_stop_ends_every_process() {
    let Some(dir) = vite_fixture() else { return };
    let env = servers_env(37000);
    let port = env.add("web", &["--dir", dir.to_str().unwrap(), "--", "npm", "run", "dev"]);

    let out = env.shell("PORT=$(portd start web) && echo \"port=$PORT\"");
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (
            0,
            format!("port={port}\n").as_str(),
            format!(
                "portd: added `--port {port} --strictPort --host 127.0.0.1` (vite ignores \
                 PORT); pass `--no-inject` to stop this\n"
            )
            .as_str()
        ),
        "{out:#?}"
    );
    let (status, body) = http_get(port, "/").expect("Vite answers once `start` returned");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(VITE_MARKER), "the fixture's page: {body}");

    // npm echoes the script it runs, with the flags.
    let logs = env.run(&["logs", "web", "-n", "50"]);
    assert!(
        logs.ok().contains(&format!("> vite --port {port} --strictPort --host 127.0.0.1")),
        "{logs:#?}"
    );

    // The tree: npm (the group's leader), the shell npm runs the script
    // with, and node running vite, all in the server's process group.
    let leader = env.entry("web").child_pid.expect("the server's pid");
    let group = group_members(leader);
    let cmds: Vec<(u32, String)> = group.iter().map(|&p| (p, cmd_of(p))).collect();
    let flags = format!("--port {port} --strictPort --host 127.0.0.1");
    assert!(cmd_of(leader).starts_with("npm run dev"), "the leader is npm: {cmds:?}");
    assert!(
        cmds.iter().any(|(_, c)| c.starts_with("sh -c") && c.contains(&format!("vite {flags}"))),
        "npm's shell: {cmds:?}"
    );
    assert!(
        cmds.iter()
            .any(|(_, c)| c.starts_with("node ") && c.contains(".bin/vite") && c.ends_with(&flags)),
        "node running vite: {cmds:?}"
    );
    let mut everything = env.processes();
    everything.extend(group.iter().filter(|p| !everything.contains(p)).collect::<Vec<_>>());
    for sup in ["__serve web", "__supervise"] {
        assert!(everything.iter().any(|&p| cmd_of(p).contains(sup)), "{sup}: {everything:?}");
    }

    let stop = env.run(&["stop", "web"]);
    assert_eq!(
        (stop.code, stop.stdout.as_str(), stop.stderr.as_str()),
        (0, "", "stopped `web`\n"),
        "{stop:#?}"
    );
    let left: Vec<(u32, String)> =
        everything.iter().filter(|&&p| alive(p)).map(|&p| (p, cmd_of(p))).collect();
    assert!(left.is_empty(), "`stop` returned with these still running: {left:?}");
    assert_eq!(group_members(leader), Vec::<u32>::new());
    env.assert_nothing_runs("nothing of the tree is left");
    assert!(http_get(port, "/").is_err(), "nothing answers on {port}");
    assert_eq!(env.server("web").state, "stopped");
}

#[test]
fn no_inject_leaves_vite_on_its_own_port_so_start_exits_10_and_leaves_nothing() {
    let Some(dir) = vite_fixture() else { return };
    let env = servers_env(37020);
    let d = dir.to_str().unwrap();
    let port = env.add(
        "raw",
        &["--no-inject", "--start-timeout", "10s", "--dir", d, "--", "npm", "run", "dev"],
    );

    let t = Instant::now();
    let out = env.run(&["start", "raw"]);
    let took = t.elapsed();
    out.no_panic();
    assert_eq!((out.code, out.stdout.as_str()), (10, ""), "{out:#?}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert!(
        lines[0].starts_with("error: `raw` failed to start: it listens on port ")
            && lines[0].ends_with(&format!(", not on its port {port}: it ignores `PORT`")),
        "{out:#?}"
    );
    assert!(
        lines.last().unwrap().starts_with("hint: pass it the port: `--port {port}`"),
        "{out:#?}"
    );
    let log = &lines[1..lines.len() - 1];
    assert!(log.iter().all(|l| l.starts_with("  | ")), "{out:#?}");
    assert!(!out.stderr.contains("portd: added"), "nothing added: {out:#?}");
    assert!(log.iter().any(|l| l.ends_with("> vite")), "the script ran as written: {out:#?}");
    // Where Vite listened instead, as it said in its log.
    let local = log.iter().find(|l| l.contains("Local:")).unwrap_or_else(|| panic!("{out:#?}"));
    let vite_port: u16 = local
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no port in {local:?}"));
    assert_ne!(vite_port, port, "{out:#?}");
    assert!(took >= Duration::from_secs(10) && took < Duration::from_secs(25), "took {took:?}");

    env.assert_nothing_runs("npm, sh and vite are all gone");
    assert!(http_get(port, "/").is_err(), "nothing ever answered on the project's port");
    let s = env.server("raw");
    assert_eq!(s.state, "stopped", "{s:#?}");
    assert_eq!(env.entry("raw").pid, None, "the lease ended");

    // The safety net: the server's group listened on another port; the
    // error (not only the log tail) names it.
    let said = format!("{}\n{}", lines[0], lines.last().unwrap());
    assert!(
        said.contains(&vite_port.to_string()),
        "the error should name the port the server listened on instead ({vite_port}): {out:#?}"
    );
}

#[test]
fn a_reference_to_another_project_puts_its_url_in_the_environment_and_starts_it_first() {
    let env = servers_env(37040);
    let api = env.add("api", HTTP_SERVER);
    let web = env.add(
        "web",
        &[
            "--env",
            "API_URL={url:api}",
            "--env",
            "API_PORT={port:api}",
            "--",
            "python3",
            &fixture("env_server.py"),
            "--api={port:api}",
        ],
    );
    assert_ne!(api, web);
    assert_eq!(env.server("api").state, "stopped");

    let out = env.run(&["start", "web"]);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (0, format!("{web}\n").as_str(), "portd: starting `api` first (web refers to it)\n"),
        "{out:#?}"
    );
    // api runs (started before web), web sees its URL.
    assert_eq!(env.server("api").state, "running");
    assert_eq!(http_get(api, "/").expect("api answers").0, 200);
    let (status, body) = http_get(web, "/").expect("web answers");
    assert_eq!(status, 200, "{body}");
    let vars: Vec<&str> = body.lines().collect();
    for want in [
        format!("API_URL=http://localhost:{api}"),
        format!("API_PORT={api}"),
        format!("PORT={web}"),
        "PORTD_PROJECT=web".to_owned(),
    ] {
        assert!(vars.contains(&want.as_str()), "{want} in web's environment: {body}");
    }
    // And in its command line.
    let child = env.entry("web").child_pid.unwrap();
    assert!(cmd_of(child).ends_with(&format!("--api={api}")), "{}", cmd_of(child));

    // Stopping web leaves api running; starting web again finds api there.
    assert_eq!(env.run(&["stop", "web"]).stderr, "stopped `web`\n");
    assert_eq!(env.server("api").state, "running");
    let api_child = env.entry("api").child_pid.unwrap();
    let again = env.run(&["start", "web"]);
    assert_eq!((again.code, again.stdout.as_str()), (0, format!("{web}\n").as_str()), "{again:#?}");
    assert_eq!(env.entry("api").child_pid, Some(api_child), "the same api server");
    // Nothing was started first this time, so nothing is said.
    assert_eq!(again.stderr, "", "api was running already: {again:#?}");
}

#[test]
fn a_reference_cycle_exits_2_and_an_unknown_name_exits_4() {
    let env = servers_env(37060);
    let server = fixture("env_server.py");
    env.add("a", &["--env", "B={port:b}", "--", "python3", &server]);
    env.add("b", &["--env", "A={url:a}", "--", "python3", &server]);
    let before = env.ls_raw();
    let hint = "hint: a server cannot refer (`{port:NAME}`, `{url:NAME}`) to one that refers \
                back to it\n";
    let out = env.run(&["start", "a"]);
    assert_eq!(out.error(2), format!("error: reference cycle: a → b → a\n{hint}"));
    let out = env.run(&["start", "b"]);
    assert_eq!(out.error(2), format!("error: reference cycle: b → a → b\n{hint}"));
    assert_eq!(env.ls_raw(), before, "a refused start changes nothing");
    env.assert_nothing_runs("nothing started");

    // A self-reference is a cycle too.
    env.add("me", &["--env", "X={url:me}", "--", "python3", &server]);
    let out = env.run(&["start", "me"]);
    assert!(out.error(2).starts_with("error: reference cycle: me → me\n"), "{out:#?}");

    env.add("c", &["--env", "X={url:nope}", "--", "python3", &server]);
    let out = env.run(&["start", "c"]);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!((out.code, out.stdout.as_str()), (4, ""), "{out:#?}");
    assert_eq!(
        (lines.first().copied(), lines.last().copied()),
        (
            Some("error: `{url:nope}` refers to `nope`, which is not a project"),
            Some("hint: define it with `portd add`, or give it a port with `portd get`")
        ),
        "{out:#?}"
    );
    env.assert_nothing_runs("nothing started");
    assert_eq!(env.server("c").state, "stopped");
    // `nope` got no port on the way.
    assert!(env.ls().iter().all(|e| e.project != "nope"));
    // One error line and its hint, nothing between: the log holds only
    // the supervisor's copy of the same error.
    out.error(4);
}

#[test]
fn a_reference_to_a_project_that_only_has_a_port_is_resolved_and_nothing_is_started_for_it() {
    let env = servers_env(37080);
    let db = env.run(&["get", "db"]).port();
    let web =
        env.add("web", &["--env", "DB_URL={url:db}", "--", "python3", &fixture("env_server.py")]);
    let out = env.run(&["start", "web"]);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (0, format!("{web}\n").as_str(), ""),
        "nothing to start first: {out:#?}"
    );
    let (_, body) = http_get(web, "/").expect("web answers");
    assert!(body.lines().any(|l| l == format!("DB_URL=http://localhost:{db}")), "{body}");
    let e = env.entry("db");
    assert_eq!((e.port, e.state.as_str(), e.pid), (db, "idle", None), "db untouched: {e:#?}");
}

/// A directory holding an `xdg-open` that appends its arguments to
/// `ROOT/opened`, then `up` or `down`: whether the URL's port accepted a
/// connection at that moment.
fn fake_opener(env: &Env) -> PathBuf {
    let bin = env.root().join("fakebin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = env.root().join("opened");
    let script = format!(
        "#!/bin/sh\n\
         echo \"$@\" >> '{log}'\n\
         port=${{1##*:}}; port=${{port%/}}\n\
         if python3 -c 'import socket, sys; socket.create_connection((\"127.0.0.1\", int(sys.argv[1])), 2)' \"$port\" 2>/dev/null\n\
         then echo up >> '{log}'; else echo down >> '{log}'; fi\n",
        log = log.display()
    );
    let path = bin.join("xdg-open");
    write_executable(&path, &script);
    bin
}

#[test]
fn open_starts_a_stopped_server_and_hands_its_url_to_the_desktop_opener() {
    let env = servers_env(37100);
    let port = env.add("api", HTTP_SERVER);
    let bin = fake_opener(&env);
    let mut path = vec![bin];
    path.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
    let path = std::env::join_paths(path).unwrap();
    let open = |name: &str| {
        let mut cmd = env.command(["open", name]);
        cmd.env("PATH", &path);
        env.output(cmd)
    };
    let url = format!("http://localhost:{port}/");

    let out = open("api");
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (0, "", format!("opened {url}\n").as_str()),
        "{out:#?}"
    );
    let opened = std::fs::read_to_string(env.root().join("opened")).unwrap();
    assert_eq!(opened, format!("{url}\nup\n"), "opened once, the server already answering");
    assert_eq!(env.server("api").state, "running");
    let child = env.entry("api").child_pid.unwrap();

    // Again: the same server, opened again.
    assert_eq!(open("api").stderr, format!("opened {url}\n"));
    assert_eq!(env.entry("api").child_pid, Some(child), "no second server");
    let opened = std::fs::read_to_string(env.root().join("opened")).unwrap();
    assert_eq!(opened, format!("{url}\nup\n{url}\nup\n"));

    // A project with only a port is opened as it is: nothing to start.
    let plain = env.run(&["get", "plain"]).port();
    let out = open("plain");
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:#?}");
    let opened = std::fs::read_to_string(env.root().join("opened")).unwrap();
    assert!(opened.ends_with(&format!("http://localhost:{plain}/\ndown\n")), "{opened}");
    // An unknown one is an error.
    let out = open("nope");
    assert!(out.error(4).contains("`nope`"), "{out:#?}");
}

#[test]
fn open_without_a_desktop_opener_prints_the_url_after_starting_the_server() {
    let env = servers_env(37120);
    let port = env.add("api", HTTP_SERVER);
    // No `xdg-open` anywhere: PATH is an empty directory (the server keeps
    // the PATH it was added with).
    let empty = env.root().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let mut cmd = env.command(["open", "api"]);
    cmd.env("PATH", &empty);
    let out = env.output(cmd);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (
            0,
            format!("http://localhost:{port}/\n").as_str(),
            "no desktop opener (`xdg-open`) here; the URL:\n"
        ),
        "{out:#?}"
    );
    assert_eq!(env.server("api").state, "running");
    assert_eq!(http_get(port, "/").expect("it was started").0, 200);

    // `-q` leaves only the URL.
    let mut cmd = env.command(["open", "-q", "api"]);
    cmd.env("PATH", &empty);
    let out = env.output(cmd);
    assert_eq!(out.ok(), format!("http://localhost:{port}/\n"));
}

#[test]
fn start_all_prints_one_port_per_line_in_name_order_and_stop_all_stops_them_all() {
    let env = servers_env(37140);
    // Defined in this order; listed (as everywhere) by name.
    let zeta = env.add("zeta", HTTP_SERVER);
    let alpha = env.add("alpha", HTTP_SERVER);
    let lazy = env.add("lazy", &["--on-demand", "--fd", "--", "python3", &fixture("fd_server.py")]);
    let mid = env.add("mid", HTTP_SERVER);

    let out = env.run(&["start", "--all"]);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (0, format!("{alpha}\n{lazy}\n{mid}\n{zeta}\n").as_str(), ""),
        "{out:#?}"
    );
    let order: Vec<String> = env.detailed().servers.into_iter().map(|s| s.project).collect();
    assert_eq!(order, ["alpha", "lazy", "mid", "zeta"], "the same order as status");
    for p in [alpha, mid, zeta] {
        assert_eq!(http_get(p, "/").expect("running").0, 200);
    }
    assert_eq!(env.server("lazy").state, "sleeping");
    // Again: all found running, the same ports, at once.
    let t = Instant::now();
    assert_eq!(env.run(&["start", "--all"]).ok(), out.stdout);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());

    let stop = env.run(&["stop", "--all"]);
    assert_eq!(
        (stop.code, stop.stdout.as_str(), stop.stderr.as_str()),
        (0, "", "stopped `alpha`\nstopped `lazy`\nstopped `mid`\nstopped `zeta`\n"),
        "{stop:#?}"
    );
    env.assert_nothing_runs("stop --all left nothing");
    let d = env.detailed();
    assert_eq!((d.running, d.sleeping, d.stopped), (0, 0, 4), "{d:#?}");
    // Nothing running: exit 0, nothing to say.
    let again = env.run(&["stop", "--all"]);
    assert_eq!((again.code, again.stdout.as_str(), again.stderr.as_str()), (0, "", ""));
}

#[test]
fn start_all_with_one_broken_server_starts_the_others_and_exits_with_its_failure() {
    let env = servers_env(37160);
    let a = env.add("a", HTTP_SERVER);
    env.add("b", &["--", "sh", &fixture("crash_at_start.sh")]);
    let c = env.add("c", HTTP_SERVER);
    let out = env.run(&["start", "--all"]);
    out.no_panic();
    assert_eq!((out.code, out.stdout.as_str()), (10, format!("{a}\n{c}\n").as_str()), "{out:#?}");
    assert!(out.stderr.starts_with("error: `b` "), "{out:#?}");
    assert_eq!(out.stderr.lines().filter(|l| l.starts_with("error:")).count(), 1, "{out:#?}");
    let d = env.detailed();
    assert_eq!((d.running, d.stopped), (2, 1), "{d:#?}");
}

/// A `portd logs -f` whose output is collected as it comes.
struct Follow {
    child: std::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Follow {
    fn start(env: &Env, name: &str) -> Follow {
        let mut child = env
            .command(["logs", name, "-f", "-n", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let to = Arc::clone(&lines);
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                to.lock().unwrap().push(l);
            }
        });
        Follow { child, lines }
    }

    fn has(&self, needle: &str) -> bool {
        self.lines.lock().unwrap().iter().any(|l| l.contains(needle))
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn logs_follow_prints_new_lines_and_ctrl_c_ends_it_but_not_the_server() {
    let env = servers_env(37180);
    let port = env.add("api", &["--", "node", &fixture("server.js")]);
    assert_eq!(env.start("api"), port);
    let child = env.entry("api").child_pid.unwrap();

    let mut f = Follow::start(&env, "api");
    // `-n 1`: the last line first, so `logs -f` is known to be reading.
    wait_for("the last line", Duration::from_secs(5), || f.has("node: listening on"));
    assert!(!f.has("after-follow"), "not written yet");
    assert_eq!(http_get(port, "/after-follow").unwrap().0, 200);
    wait_for("the new line", Duration::from_secs(5), || f.has("node: GET /after-follow"));

    let pid = f.child.id();
    portd_core::sys::kill(pid as i32, portd_core::sys::SIGINT).unwrap();
    let t = Instant::now();
    let status = loop {
        if let Some(s) = f.child.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "`logs -f` ignored SIGINT");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(
        status.code() == Some(130) || status.signal() == Some(portd_core::sys::SIGINT),
        "ended by Ctrl-C: {status:?}"
    );
    // The server runs on, the same process.
    assert!(alive(child));
    assert_eq!(env.entry("api").child_pid, Some(child));
    assert_eq!(env.server("api").state, "running");
    assert_eq!(http_get(port, "/").unwrap().0, 200);
}

#[test]
fn fifty_sleeping_on_demand_projects_each_answer_their_first_request() {
    const N: usize = 50;
    let env = servers_env_n(37600, 400);
    let server = fixture("fd_server.py");
    let names: Vec<String> = (0..N).map(|i| format!("lazy{i:02}")).collect();
    for n in &names {
        env.add(n, &["--on-demand", "--fd", "--", "python3", &server]);
    }
    let out = env.run(&["start", "--all"]);
    let ports: Vec<u16> = out.ok().lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(ports.len(), N, "{out:#?}");
    let d = env.detailed();
    assert_eq!((d.defined, d.sleeping, d.running), (N, N, 0), "{d:#?}");
    assert_eq!(env.matching(&server), Vec::<u32>::new(), "no server runs while they sleep");
    assert_eq!(env.matching("__serve").len(), N, "one sleeping supervisor each");

    let mut took = Vec::new();
    for (name, &port) in names.iter().zip(&ports) {
        let t = Instant::now();
        let (status, body) =
            http_get(port, "/").unwrap_or_else(|e| panic!("`{name}` on {port} refused: {e}"));
        took.push(t.elapsed());
        assert_eq!(status, 200, "{name}: {body}");
        assert!(body.starts_with("hello from fd server "), "{name}: {body}");
    }
    let _ = std::io::Write::write_fmt(
        &mut std::io::stderr(),
        format_args!("first requests of {N} sleeping projects: {took:?}\n"),
    );

    // Each answered its request; each is recorded ready a moment later.
    wait_for("all of them recorded running", Duration::from_secs(10), || {
        env.detailed().running == N
    });
    let d = env.detailed();
    assert_eq!((d.running, d.sleeping), (N, 0), "{d:#?}");
    assert_eq!(d.last_24h.starts, N, "{d:#?}");
    assert_eq!(env.matching(&server).len(), N, "one server each now");
    // Each woke once: the events in the registry.
    let reg = portd_store::Registry::open(env.home(), portd_store::Config::default()).unwrap();
    let events = reg.events_since(0).unwrap();
    let mut woke: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == portd_store::events::EventKind::Woke)
        .map(|e| e.project.as_str())
        .collect();
    woke.sort();
    assert_eq!(woke, names, "one `woke` event per project");
    drop(reg);

    let stop = env.run(&["stop", "--all"]);
    assert_eq!((stop.code, stop.stderr.lines().count()), (0, N), "{stop:#?}");
    env.assert_nothing_runs("stop --all ended all fifty");
}

#[test]
fn twenty_simultaneous_first_requests_to_a_sleeping_project_are_all_answered() {
    let env = servers_env(37300);
    let server = fixture("fd_server.py");
    let port = env.add("lazy", &["--on-demand", "--fd", "--", "python3", &server]);
    assert_eq!(env.start("lazy"), port);
    assert_eq!(env.server("lazy").state, "sleeping");

    let barrier = Arc::new(std::sync::Barrier::new(20));
    let threads: Vec<_> = (0..20)
        .map(|_| {
            let b = Arc::clone(&barrier);
            std::thread::spawn(move || {
                b.wait();
                http_get(port, "/")
            })
        })
        .collect();
    let answers: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let bad: Vec<_> = answers.iter().filter(|a| !matches!(a, Ok((200, _)))).collect();
    assert!(bad.is_empty(), "not answered: {bad:?}");
    // One server answered them all.
    let bodies: std::collections::BTreeSet<&str> =
        answers.iter().map(|a| a.as_ref().unwrap().1.as_str()).collect();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(env.matching(&server).len(), 1);
    // Recorded ready a moment after it answered.
    wait_for("`lazy` recorded running", Duration::from_secs(5), || {
        env.server("lazy").state == "running"
    });
}

#[test]
fn stop_ends_a_server_whose_process_group_was_stopped_within_the_kill_grace() {
    let env = servers_env(37320);
    let port = env.add("api", &["--kill-grace", "1s", "--", "node", &fixture("server.js")]);
    assert_eq!(env.start("api"), port);
    let leader = env.entry("api").child_pid.unwrap();
    portd_core::sys::kill(-(leader as i32), portd_core::sys::SIGSTOP).unwrap();
    wait_for("the group to be stopped", Duration::from_secs(5), || {
        portd_core::sys::proc_stat(leader).is_ok_and(|s| s.state == 'T')
    });

    let t = Instant::now();
    let out = env.run(&["stop", "api"]);
    let took = t.elapsed();
    assert_eq!((out.code, out.stdout.as_str(), out.stderr.as_str()), (0, "", "stopped `api`\n"));
    assert!(took < Duration::from_millis(2500), "stop took {took:?} with a 1 s grace");
    assert_eq!(group_members(leader), Vec::<u32>::new());
    env.assert_nothing_runs("nothing left");
    assert_eq!(env.server("api").state, "stopped");
}

#[test]
fn stop_ends_a_server_whose_supervisor_was_stopped() {
    let env = servers_env(37340);
    let port = env.add("api", &["--kill-grace", "1s", "--", "node", &fixture("server.js")]);
    assert_eq!(env.start("api"), port);
    let e = env.entry("api");
    let (sup, leader) = (e.pid.unwrap(), e.child_pid.unwrap());
    portd_core::sys::kill(sup as i32, portd_core::sys::SIGSTOP).unwrap();
    wait_for("the supervisor to be stopped", Duration::from_secs(5), || {
        portd_core::sys::proc_stat(sup).is_ok_and(|s| s.state == 'T')
    });

    let t = Instant::now();
    let out = env.run(&["stop", "api"]);
    let took = t.elapsed();
    assert_eq!((out.code, out.stdout.as_str(), out.stderr.as_str()), (0, "", "stopped `api`\n"));
    let _ = std::io::Write::write_fmt(
        &mut std::io::stderr(),
        format_args!("stop of a SIGSTOPped supervisor took {took:?}\n"),
    );
    assert!(took < Duration::from_secs(10), "stop took {took:?}");
    wait_for("the server to end", Duration::from_secs(3), || group_members(leader).is_empty());
    env.assert_nothing_runs("nothing left");
    assert!(http_get(port, "/").is_err());
}

/// Splits a table row at the columns of `header` (each column starts where
/// its title starts); asserts the row has a value starting at each one.
#[track_caller]
fn columns(header: &str, row: &str) -> Vec<String> {
    let starts: Vec<usize> = header
        .char_indices()
        .filter(|&(i, c)| c != ' ' && (i == 0 || header.as_bytes()[i - 1] == b' '))
        .map(|(i, _)| i)
        .filter(|&i| i == 0 || header[..i].ends_with("  "))
        .collect();
    let chars: Vec<char> = row.chars().collect();
    let mut out = Vec::new();
    for (k, &s) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(chars.len()).min(chars.len());
        assert!(s < chars.len() && chars[s] != ' ', "no value at column {k} of {row:?}");
        assert!(s == 0 || chars[s - 1] == ' ', "column {k} misaligned in {row:?}");
        out.push(chars[s..end].iter().collect::<String>().trim_end().to_owned());
    }
    out
}

#[test]
fn status_detailed_prints_the_summary_lines_and_one_aligned_row_per_server() {
    let env = servers_env(37360);
    let api = env.add("api", HTTP_SERVER);
    let lazy = env.add("lazy", &["--on-demand", "--fd", "--", "python3", &fixture("fd_server.py")]);
    let idle = env.add("idle", HTTP_SERVER);
    assert_eq!(env.start("api"), api);
    assert_eq!(env.start("lazy"), lazy);
    let d = env.detailed();

    let out = env.run(&["status", "--detailed"]);
    let text = out.ok();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 8, "3 summary lines, a blank, a header, 3 rows: {text}");
    assert_eq!(lines[0], "servers: 1 running, 1 sleeping, 1 stopped of 3 defined");
    // Memory is measured at each call; the figure is api's group, > 1 MB.
    let mem = lines[1]
        .strip_prefix("memory: ")
        .and_then(|l| {
            l.strip_suffix(
                " used by running servers, 0.0 MB saved by sleeping and idle-stopped ones",
            )
        })
        .unwrap_or_else(|| panic!("{text}"));
    let used: f64 =
        mem.strip_suffix(" MB").and_then(|m| m.parse().ok()).unwrap_or_else(|| panic!("{text}"));
    assert!(used > 1.0 && used < 500.0, "{text}");
    let avg = d.last_24h.avg_startup_ms.expect("one start");
    assert_eq!(
        lines[2],
        format!("last 24 h: 1 start (average startup {avg} ms), 0 idle shutdowns, 0 restarts")
    );
    assert_eq!(lines[3], "");
    assert_eq!(
        lines[4].split_whitespace().collect::<Vec<_>>(),
        ["PROJECT", "STATE", "PORT", "UPTIME", "MEMORY", "CONNS", "REQ/MIN", "LAST", "EVENT"],
        "{text}"
    );
    let rows: Vec<Vec<String>> = lines[5..].iter().map(|r| columns(lines[4], r)).collect();
    // api: running, its uptime in seconds, its memory, connections, ready.
    let a = &rows[0];
    assert_eq!((a[0].as_str(), a[1].as_str(), a[2].clone()), ("api", "running", api.to_string()));
    assert!(a[3].ends_with('s') && a[3][..a[3].len() - 1].parse::<u64>().is_ok(), "{a:?}");
    assert!(a[4].ends_with(" MB"), "{a:?}");
    assert_eq!(a[5], "0", "no connection open: {a:?}");
    assert_eq!(a[6], "-", "requests per minute are the relay's: {a:?}");
    assert_eq!(a[7], format!("ready in {avg} ms"), "{a:?}");
    // idle: never started.
    assert_eq!(rows[1], ["idle", "stopped", &idle.to_string(), "-", "-", "-", "-", "-"], "{text}");
    // lazy: sleeping, no server, its socket open but no connection.
    assert_eq!(
        rows[2],
        ["lazy", "sleeping", &lazy.to_string(), "-", "-", "0", "-", "slept"],
        "{text}"
    );
}
