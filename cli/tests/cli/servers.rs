//! Managed servers, as a user runs them: `add`, `start`, `stop`, `restart`,
//! `logs`, `url`, `rm`, `status --detailed`, on demand and idle shutdown,
//! with real servers (python's http.server, a node server, a slow one, one
//! that serves inherited sockets).
//!
//! Every test runs in a [`Servers`] world (its own 20 ports, in the band
//! 32000–32199 and 32380–32399) that stops and kills whatever it started when it ends.

use crate::util::*;
use std::time::{Duration, Instant};

/// `ARGS -- node server.js`.
fn node(args: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    v.extend(["--".into(), "node".into(), fixture("server.js")]);
    v
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn add_prints_the_port_and_show_and_ls_see_the_definition() {
    let env = servers_env(32000);
    let before = env.ls_raw();
    let port = env.add("api", HTTP_SERVER);
    assert!((32000..32020).contains(&port), "{port}");
    assert_ne!(env.ls_raw(), before);

    let e = env.entry("api");
    assert_eq!((e.key.as_str(), e.port, e.range.as_str()), ("api", port, "test"), "{e:#?}");
    assert_eq!(e.pid, None, "nothing runs after `add`: {e:#?}");
    assert_eq!(e.child_pid, None, "{e:#?}");
    let ls = env.run(&["ls"]);
    let row = ls.ok().lines().find(|l| l.starts_with("api ")).unwrap_or_else(|| panic!("{ls:#?}"));
    assert!(row.contains(&port.to_string()), "{ls:#?}");

    let shown: EntryJson = env.run(&["show", "api", "--json"]).json();
    assert_eq!((shown.project.as_str(), shown.port), ("api", port));
    // `add` itself started nothing.
    env.assert_nothing_runs("nothing runs");
    let s = env.server("api");
    assert_eq!((s.state.as_str(), s.port, s.rss_bytes), ("stopped", Some(port), None), "{s:#?}");

    // `show` prints the definition: its command and its policies.
    let show = env.run(&["show", "api"]);
    let text = show.ok();
    assert!(text.contains("http.server") && text.contains(&port.to_string()), "{show:#?}");
    assert!(
        text.contains("tcp") && text.contains("on-failure"),
        "`show` should print the definition (health, restart policy): {show:#?}"
    );
}

#[test]
fn re_adding_prints_what_changed() {
    let env = servers_env(32020);
    let port = env.add("api", HTTP_SERVER);

    let same = env.run(&[&["add", "api"], HTTP_SERVER].concat());
    assert_eq!(
        (same.code, same.stdout.as_str(), same.stderr.as_str()),
        (0, format!("{port}\n").as_str(), "`api` is defined so already; nothing changed\n")
    );

    let mut args = vec!["add", "api", "--restart", "no", "--health-interval", "2s"];
    args.extend_from_slice(HTTP_SERVER);
    let changed = env.run(&args);
    assert_eq!(
        (changed.code, changed.stdout.as_str(), changed.stderr.as_str()),
        (
            0,
            format!("{port}\n").as_str(),
            "changed `api`:\n  health interval: 10000ms → 2000ms\n  restart: on-failure → no\n"
        )
    );

    let json: AddedJson = env
        .run(&["add", "api", "--json", "--restart", "always", "--", "python3", "-m", "http.server"])
        .json();
    assert_eq!(
        json,
        AddedJson {
            project: "api".into(),
            port,
            created: false,
            changes: vec![
                "command: python3 -m http.server {port} --bind 127.0.0.1 → python3 -m http.server"
                    .into(),
                "health interval: 2000ms → 10000ms".into(),
                "restart: no → always".into(),
            ],
        }
    );
    // Still one definition, on the same port.
    let ls = env.ls();
    assert_eq!(ls.len(), 1, "{ls:#?}");
    assert_eq!(ls[0].port, port);
}

#[test]
fn add_refuses_bad_options_with_exit_2_and_one_error_line() {
    let env = servers_env(32040);
    let before = env.ls_raw();
    let cases: &[(&[&str], &str)] = &[
        (&["--health", "x"], "`x`"),
        (&["--health", "http:health"], "http:health"),
        (&["--health", "cmd:"], "cmd:"),
        (&["--restart", "x"], "'x'"),
        (&["--health-interval", "10q"], "10q"),
        (&["--start-timeout=-1s"], "-1s"),
        (&["--idle-timeout", "0"], "'0'"),
        (&["--kill-grace", "99999d"], "99999d"),
        (&["--health-failures", "0"], "'0'"),
        (&["--env", "FOO"], "FOO"),
        (&["--host", "not an address"], "not an address"),
    ];
    // Every case is tried; the test fails at the end listing each one
    // that was not refused as it should be.
    let mut wrong = Vec::new();
    for (opts, named) in cases {
        let mut args = vec!["add", "api"];
        args.extend_from_slice(opts);
        args.extend(["--", "python3", "-m", "http.server"]);
        let out = env.run(&args);
        out.no_panic();
        let first = out.stderr.lines().next().unwrap_or("");
        let errors = out.stderr.lines().filter(|l| l.starts_with("error:")).count();
        if out.code != 2 || !out.stdout.is_empty() || errors != 1 || !first.contains(named) {
            wrong.push(format!("add api {}: {out:?}", opts.join(" ")));
            env.run(&["rm", "api"]);
        }
    }
    for name in ["bad name", "-x", "", "api/x", &"a".repeat(129)] {
        let out = env.run(&["add", name, "--", "true"]);
        out.no_panic();
        let errors = out.stderr.lines().filter(|l| l.starts_with("error:")).count();
        if out.code != 2 || !out.stdout.is_empty() || errors != 1 {
            wrong.push(format!("add {name:?}: {out:?}"));
        }
    }
    assert!(wrong.is_empty(), "not refused with exit 2 and one error line:\n{}", wrong.join("\n"));
    // No command at all.
    env.run(&["add", "api"]).usage();
    env.run(&["add", "api", "--"]).usage();
    assert_eq!(env.ls_raw(), before, "a refused `add` changes nothing");
}

#[test]
fn start_prints_the_added_port_serves_and_stop_ends_the_process_group() {
    let env = servers_env(32060);
    let port = env.add("api", HTTP_SERVER);

    let out = env.shell("PORT=$(portd start api) && echo \"port=$PORT\"");
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (0, format!("port={port}\n").as_str(), ""),
        "{out:#?}"
    );
    let (status, body) = http_get(port, "/").expect("the server answers once `start` returned");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Directory listing"), "{body}");

    let d = env.detailed();
    assert_eq!((d.defined, d.running, d.stopped), (1, 1, 0), "{d:#?}");
    let s = &d.servers[0];
    assert_eq!((s.project.as_str(), s.state.as_str(), s.port), ("api", "running", Some(port)));
    assert!(s.rss_bytes.is_some_and(|r| r > 0), "{s:#?}");
    assert!(d.memory_bytes >= s.rss_bytes.unwrap(), "{d:#?}");
    assert_eq!(s.last_event.as_ref().map(|e| e.kind.as_str()), Some("ready"), "{s:#?}");
    assert_eq!(d.last_24h.starts, 1, "{d:#?}");

    // The request is in the server's log.
    let mut logs = None;
    wait_for("the request in `portd logs`", Duration::from_secs(5), || {
        let out = env.run(&["logs", "api", "-n", "5"]);
        let hit = out.stdout.contains("\"GET / HTTP/1.0\" 200");
        logs = Some(out);
        hit
    });
    let logs = logs.unwrap();
    assert!(logs.ok().lines().count() <= 5, "{logs:#?}");

    let url = env.run(&["url", "api"]);
    assert_eq!(url.ok(), format!("http://localhost:{port}/\n"));

    let e = env.entry("api");
    let child = e.child_pid.expect("the server's pid");
    assert_eq!(e.state, "active", "{e:#?}");
    assert!(!group_members(child).is_empty(), "the server runs in group {child}");

    let stop = env.run(&["stop", "api"]);
    assert_eq!((stop.code, stop.stdout.as_str(), stop.stderr.as_str()), (0, "", "stopped `api`\n"));
    assert_eq!(group_members(child), Vec::<u32>::new(), "the server's group is gone");
    env.assert_nothing_runs("the supervisor is gone too");
    assert!(http_get(port, "/").is_err(), "nothing answers on {port} any more");
    assert_eq!(env.server("api").state, "stopped");

    let again = env.run(&["stop", "api"]);
    assert_eq!(
        (again.code, again.stdout.as_str(), again.stderr.as_str()),
        (0, "", "`api` is not running\n")
    );

    assert_eq!(env.start("api"), port, "the same port after a stop");
    assert_eq!(http_get(port, "/").unwrap().0, 200);
    // `start` of a running server answers at once.
    let t = Instant::now();
    assert_eq!(env.start("api"), port);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[test]
fn restart_keeps_the_port_and_replaces_the_server_process() {
    let env = servers_env(32080);
    let port = env.add("api", &strs(&node(&[])));
    assert_eq!(env.start("api"), port);
    let before = env.entry("api").child_pid.expect("the server's pid");
    let (_, body) = http_get(port, "/").unwrap();
    assert_eq!(body, format!("hello from node {before} on {port}\n"));

    // Several times: a user restarting after each edit.
    let mut before = before;
    for round in 1..=5 {
        let out = env.run(&["restart", "api"]);
        // Right away: `restart` returns once the new server is ready.
        let got = http_get(port, "/");
        assert_eq!(out.port(), port);
        let (status, body) = got.unwrap_or_else(|e| {
            panic!("restart {round}: no answer as soon as `restart` returned: {e}")
        });
        assert_eq!(status, 200, "{body}");
        let after = env.entry("api").child_pid.expect("the new server's pid");
        assert_ne!(after, before, "restart {round}: a new server process");
        assert!(!alive(before), "restart {round}: the old server is gone");
        assert_eq!(body, format!("hello from node {after} on {port}\n"), "restart {round}");
        assert_eq!(env.server("api").state, "running");
        before = after;
    }
    assert_eq!(env.matching("server.js").len(), 1, "one server after the restart");
}

#[test]
fn start_of_a_slow_server_returns_once_it_is_ready() {
    let env = servers_env(32100);
    let port = env.add("slow", &["--", "python3", &fixture("slow_ready.py")]);
    let t = Instant::now();
    let out = env.run(&["start", "slow"]);
    let took = t.elapsed();
    // A GET right away: `start` returned because the server is ready.
    let got = http_get(port, "/");
    assert_eq!(out.port(), port);
    let (status, body) = got.expect("the server answers as soon as `start` returned");
    assert_eq!(status, 200, "{body}");
    assert!(took >= Duration::from_millis(1900), "returned after {took:?}, before it was ready");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let d = env.detailed();
    assert!(d.last_24h.avg_startup_ms.is_some_and(|ms| ms >= 1900), "{d:#?}");
}

#[test]
fn restart_of_a_slow_server_returns_once_the_new_one_is_ready() {
    let env = servers_env(32380);
    let port = env.add("slow", &["--", "python3", &fixture("slow_ready.py")]);
    assert_eq!(env.start("slow"), port);
    let before = env.entry("slow").child_pid.unwrap();
    let t = Instant::now();
    let out = env.run(&["restart", "slow"]);
    let took = t.elapsed();
    let got = http_get(port, "/");
    assert_eq!(out.port(), port);
    let (status, body) = got.expect("the server answers as soon as `restart` returned");
    assert_eq!(status, 200, "{body}");
    assert!(
        took >= Duration::from_millis(1900),
        "restart returned after {took:?}, before it was ready"
    );
    assert!(!alive(before), "the old server is gone");
}

#[test]
fn rm_stops_the_server_removes_the_definition_and_keeps_the_port_as_history() {
    let env = servers_env(32120);
    let port = env.add("api", HTTP_SERVER);
    assert_eq!(env.start("api"), port);
    let child = env.entry("api").child_pid.unwrap();

    let rm = env.run(&["rm", "api"]);
    assert_eq!(
        (rm.code, rm.stdout.as_str(), rm.stderr.as_str()),
        (0, "", "stopped `api`\nremoved `api` (its port is remembered for next time)\n")
    );
    assert!(!alive(child));
    env.assert_nothing_runs("nothing runs");
    assert!(http_get(port, "/").is_err());

    env.run(&["start", "api"]).error(4);
    assert_eq!(env.detailed().defined, 0);
    let all: Vec<EntryJson> = env.run(&["ls", "--all", "--json"]).json();
    let api = all.iter().find(|e| e.project == "api").unwrap_or_else(|| panic!("{all:#?}"));
    assert_eq!((api.state.as_str(), api.port), ("released", port), "{all:#?}");
    env.run(&["rm", "api"]).error(4);
    // Defined again, it gets its old port back.
    assert_eq!(env.add("api", HTTP_SERVER), port);
}

#[test]
fn on_demand_server_sleeps_until_the_first_request_and_again_when_idle() {
    let env = servers_env(32140);
    let port = env.add(
        "lazy",
        &["--on-demand", "--fd", "--idle-timeout", "2s", "--", "python3", &fixture("fd_server.py")],
    );
    let out = env.run(&["start", "lazy"]);
    assert_eq!(out.port(), port);
    assert_eq!(env.server("lazy").state, "sleeping");
    assert_eq!(env.matching("fd_server.py"), Vec::<u32>::new(), "no server while sleeping");
    let sup = env.entry("lazy").pid.expect("the sleeping supervisor owns the port");
    assert!(alive(sup));
    // A second `start` finds it sleeping.
    assert_eq!(env.run(&["start", "lazy"]).port(), port);

    // The first connection is served, never refused.
    let (status, body) = http_get(port, "/").expect("the first request is answered");
    assert_eq!(status, 200, "{body}");
    let first: u32 = body.trim().rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(env.matching("fd_server.py"), vec![first]);
    wait_state(&env, "lazy", "running", Duration::from_secs(5));

    // Idle for 2 s: stopped, sleeping again.
    let idle_from = Instant::now();
    wait_state(&env, "lazy", "sleeping", Duration::from_secs(15));
    let idle = idle_from.elapsed();
    assert!(idle >= Duration::from_millis(1500), "stopped after {idle:?} only");
    assert!(idle < Duration::from_secs(8), "stopped after {idle:?}");
    wait_for("the idle server to end", Duration::from_secs(5), || !alive(first));
    assert_eq!(env.matching("fd_server.py"), Vec::<u32>::new());
    assert!(alive(sup), "the supervisor sleeps on");
    let d = env.detailed();
    assert_eq!((d.sleeping, d.last_24h.idle_shutdowns), (1, 1), "{d:#?}");
    assert!(d.saved_bytes > 0, "its memory is saved while it sleeps: {d:#?}");

    // The next request wakes it again.
    let (status, body) = http_get(port, "/").expect("the next request is answered");
    assert_eq!(status, 200);
    assert!(body.starts_with("hello from fd server "), "{body}");
    assert!(!body.contains(&first.to_string()), "a new server process: {body}");
    wait_state(&env, "lazy", "running", Duration::from_secs(5));
}

#[test]
fn a_sleeping_supervisor_uses_no_cpu() {
    let env = servers_env(32160);
    let port = env.add("lazy", &["--on-demand", "--fd", "--", "python3", &fixture("fd_server.py")]);
    assert_eq!(env.start("lazy"), port);
    let sup = env.entry("lazy").pid.unwrap();
    let cmd = portd_core::sys::cmdline(sup).unwrap_or_default();
    assert!(cmd.iter().any(|a| a == "__serve"), "{cmd:?}");
    std::thread::sleep(Duration::from_millis(300));
    let before = portd_core::sys::cpu_ticks(sup).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let after = portd_core::sys::cpu_ticks(sup).unwrap();
    assert_eq!(after, before, "the sleeping supervisor used CPU (utime+stime ticks)");
    assert_eq!(env.server("lazy").state, "sleeping");

    // Stopped while sleeping: the supervisor ends and lets go of the port.
    let stop = env.run(&["stop", "lazy"]);
    assert_eq!(
        (stop.code, stop.stdout.as_str(), stop.stderr.as_str()),
        (0, "", "stopped `lazy`\n")
    );
    env.assert_nothing_runs("after stopping a sleeping server");
    assert!(http_get(port, "/").is_err(), "nothing listens on {port} any more");
    assert_eq!(env.server("lazy").state, "stopped");
}

#[test]
fn ls_shows_the_server_state() {
    let env = servers_env(32180);
    let port = env.add("api", HTTP_SERVER);
    let state = |env: &Env| -> serde_json::Value {
        let rows: serde_json::Value = env.run(&["ls", "--json"]).json();
        let row = rows.as_array().unwrap().iter().find(|r| r["project"] == "api").cloned();
        let row = row.unwrap_or_else(|| panic!("{rows:#}"));
        assert!(row["server"].is_object(), "`ls --json` has a `server` object: {row:#}");
        row["server"].clone()
    };
    assert_eq!(state(&env)["state"], "stopped");
    assert_eq!(env.start("api"), port);
    let s = state(&env);
    assert_eq!(s["state"], "running", "{s:#}");
    assert_eq!(s["pid"].as_u64(), env.entry("api").child_pid.map(u64::from), "{s:#}");
    let ls = env.run(&["ls"]);
    let row = ls.ok().lines().find(|l| l.starts_with("api ")).unwrap().to_owned();
    assert!(row.contains("running"), "{ls:#?}");
}

#[test]
fn start_of_several_prints_one_port_per_line_in_order_and_stop_all_stops_them() {
    let env = servers_env(32400);
    let a = env.add("a", HTTP_SERVER);
    let b = env.add("b", &["--", "node", &fixture("server.js")]);
    let out = env.run(&["start", "b", "a"]);
    assert_eq!(out.ok(), format!("{b}\n{a}\n"));
    assert_eq!(http_get(a, "/").unwrap().0, 200);
    assert_eq!(http_get(b, "/health").unwrap(), (200, "ok\n".to_owned()));
    assert_eq!(env.run(&["start", "--all"]).ok(), format!("{a}\n{b}\n"));
    let d = env.detailed();
    assert_eq!((d.defined, d.running), (2, 2), "{d:#?}");

    let stop = env.run(&["stop", "--all"]);
    assert_eq!(
        (stop.code, stop.stdout.as_str(), stop.stderr.as_str()),
        (0, "", "stopped `a`\nstopped `b`\n")
    );
    env.assert_nothing_runs("after `stop --all`");
    assert_eq!(env.detailed().stopped, 2);
    // Nothing to stop: quiet, and still a success.
    assert_eq!(env.run(&["stop", "--all"]).ok(), "");
}

#[test]
fn the_servers_world_kills_what_its_test_left_running() {
    let env = servers_env(32420);
    let home = env.home();
    env.add("api", HTTP_SERVER);
    env.start("api");
    // A process of this test that portd does not know: only the SIGKILL
    // sweep of the environment finds it.
    let mut stray = std::process::Command::new("setsid")
        .args(["sleep", "600"])
        .env("PORTD_HOME", &home)
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("cannot start `setsid sleep`");
    wait_for("the stray process", Duration::from_secs(5), || env.matching("sleep 600").len() == 1);
    assert!(env.processes().len() >= 3, "supervisor, server, stray: {:?}", env.processes());
    drop(env);
    let _ = stray.wait();
    assert_eq!(processes_with_home(&home), Vec::<u32>::new());
}

#[test]
fn logs_json_gives_the_last_lines_and_refuses_follow() {
    let env = servers_env(32440);
    env.add(
        "api",
        &[
            "--",
            "sh",
            "-c",
            "echo one; echo two; exec python3 -m http.server $PORT --bind 127.0.0.1",
        ],
    );
    let out = env.run(&["logs", "api", "--json"]);
    let v: serde_json::Value = out.json();
    assert_eq!(v["lines"], serde_json::json!([]), "no log before the first start: {out:#?}");
    env.start("api");
    wait_for("the log lines", Duration::from_secs(5), || {
        env.run(&["logs", "api", "-n", "5"]).stdout.contains("two")
    });
    let v: serde_json::Value = env.run(&["logs", "api", "-n", "5", "--json"]).json();
    let lines: Vec<&str> =
        v["lines"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    assert!(lines.windows(2).any(|w| w == ["one", "two"]), "{lines:?}");
    assert_eq!(v["project"], "api");
    let out = env.run(&["logs", "api", "-f", "--json"]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(out.stderr.starts_with("error: `logs -f` prints the log as it comes"), "{out:#?}");
}

#[test]
fn restart_applies_a_changed_definition() {
    let env = servers_env(32460);
    for (dir, text) in [("www", "one"), ("www2", "two")] {
        std::fs::create_dir_all(env.root().join(dir)).unwrap();
        std::fs::write(env.root().join(dir).join("index.html"), text).unwrap();
    }
    let www = env.root().join("www");
    let www2 = env.root().join("www2");
    let port = env.add("site", &[&["--dir", www.to_str().unwrap()][..], HTTP_SERVER].concat());
    assert_eq!(env.start("site"), port);
    assert_eq!(http_get(port, "/").unwrap().1, "one");
    let out =
        env.run(&[&["add", "site", "--dir", www2.to_str().unwrap()][..], HTTP_SERVER].concat());
    assert!(out.stderr.contains("`portd restart site` applies the change"), "{out:#?}");
    assert_eq!(http_get(port, "/").unwrap().1, "one", "running as before until restarted");
    assert_eq!(env.run(&["restart", "site"]).port(), port);
    assert_eq!(http_get(port, "/").unwrap().1, "two");
}

#[test]
fn json_of_start_stop_url_and_rm() {
    let env = servers_env(32480);
    let port = env.add("api", HTTP_SERVER);
    let v: serde_json::Value = env.run(&["start", "api", "--json"]).json();
    assert_eq!(v, serde_json::json!([{"project": "api", "port": port}]));
    let v: serde_json::Value = env.run(&["url", "api", "--json"]).json();
    assert_eq!(
        v,
        serde_json::json!({
            "project": "api", "port": port, "url": format!("http://localhost:{port}/"),
            "direct_url": format!("http://localhost:{port}/"), "proxy_url": null,
        })
    );
    let v: serde_json::Value = env.run(&["stop", "api", "--json"]).json();
    assert_eq!(v, serde_json::json!({"stopped": ["api"], "not_running": []}));
    let v: serde_json::Value = env.run(&["stop", "api", "--json"]).json();
    assert_eq!(v, serde_json::json!({"stopped": [], "not_running": ["api"]}));
    let v: serde_json::Value = env.run(&["rm", "api", "--json"]).json();
    assert_eq!(v, serde_json::json!({"removed": [{"project": "api", "stopped": false}]}));
}

#[test]
fn restart_always_restarts_a_clean_exit_and_on_failure_does_not() {
    let env = servers_env(32500);
    // Healthy, then exits 0 after 3 s (time enough to become ready on a
    // loaded machine).
    let script = "python3 -m http.server $PORT --bind 127.0.0.1 & p=$!; sleep 3; kill $p; exit 0";
    env.add("always", &["--restart", "always", "--", "sh", "-c", script]);
    env.add("onfail", &["--", "sh", "-c", script]);
    env.start("always");
    env.start("onfail");
    let restarts = |name: &str| -> u64 {
        let v: serde_json::Value = env.run(&["show", name, "--json"]).json();
        v["server"]["restarts"].as_u64().unwrap_or(0)
    };
    wait_for("`always` restarted", Duration::from_secs(20), || restarts("always") > 0);
    wait_for("`onfail` stopped", Duration::from_secs(20), || {
        env.server("onfail").state == "stopped"
    });
    let s = env.server("onfail");
    assert!(s.reason.as_deref().is_some_and(|r| r.contains("exit 0")), "{s:#?}");
    assert_eq!(restarts("onfail"), 0);
}
