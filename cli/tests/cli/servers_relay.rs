//! On-demand servers without `--fd`: the supervisor relays connections to
//! the server on a private port (the entry `NAME@relay`). Real servers:
//! python's http.server and a real Vite (the fixture installed by `.ci/run`).
//! Ports 39000–39099, 39180–39199 and 39260–39279.

use crate::util::*;
use std::time::{Duration, Instant};

/// The private port of `name`'s relay, from `ls --json`.
fn relay_port(env: &Env, name: &str) -> u16 {
    let all: Vec<EntryJson> = env.run(&["ls", "--json"]).json();
    let key = format!("{name}@relay");
    all.iter().find(|e| e.key == key).unwrap_or_else(|| panic!("no `{key}`: {all:#?}")).port
}

#[test]
fn a_relayed_server_starts_on_the_first_request_and_sleeps_again_when_idle() {
    let env = servers_env(39000);
    let port = env.add("lazy", &[&["--on-demand", "--idle-timeout", "2s"], HTTP_SERVER].concat());
    assert_eq!(env.run(&["start", "lazy"]).port(), port);
    assert_eq!(env.server("lazy").state, "sleeping");
    assert_eq!(env.matching("http.server"), Vec::<u32>::new(), "no server while sleeping");
    let private = relay_port(&env, "lazy");
    assert_ne!(private, port);
    assert!((39000..39020).contains(&private), "the relay port comes from the range: {private}");

    // The first request is answered; the server listens on the private port.
    let (status, body) = http_get(port, "/").expect("the first request is answered");
    assert_eq!(status, 200, "{body}");
    let servers = env.matching("http.server");
    assert_eq!(servers.len(), 1, "one server");
    let cmd = portd_core::sys::cmdline(servers[0]).unwrap().join(" ");
    assert!(cmd.contains(&private.to_string()), "`{{port}}` is the private port: {cmd}");
    wait_state(&env, "lazy", "running", Duration::from_secs(5));
    // The relay counts requests; `status --detailed` asks it.
    for _ in 0..4 {
        assert_eq!(http_get(port, "/").map(|(s, _)| s).ok(), Some(200));
    }
    let s = env.server("lazy");
    assert_eq!(s.requests_per_minute, Some(5), "{s:#?}");

    // Idle: stopped, sleeping again, the same private port next time.
    let t = Instant::now();
    wait_state(&env, "lazy", "sleeping", Duration::from_secs(15));
    assert!(t.elapsed() >= Duration::from_millis(1000), "slept after {:?}", t.elapsed());
    wait_for("the idle server to end", Duration::from_secs(5), || {
        env.matching("http.server").is_empty()
    });
    let d = env.detailed();
    assert_eq!(d.last_24h.idle_shutdowns, 1, "{d:#?}");
    assert!(d.saved_bytes > 0, "{d:#?}");
    let (status, _) = http_get(port, "/").expect("the next request wakes it");
    assert_eq!(status, 200);
    assert_eq!(relay_port(&env, "lazy"), private, "the private port is kept");
}

#[test]
fn twenty_first_requests_at_once_are_all_answered_by_one_server() {
    let env = servers_env(39020);
    let port = env.add("burst", &[&["--on-demand"], HTTP_SERVER].concat());
    assert_eq!(env.run(&["start", "burst"]).port(), port);
    let answers: Vec<_> = (0..20)
        .map(|_| std::thread::spawn(move || http_get(port, "/").map(|(s, _)| s)))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    for a in &answers {
        assert_eq!(a.as_ref().ok(), Some(&200), "every first request is answered: {answers:?}");
    }
    assert_eq!(env.matching("http.server").len(), 1, "exactly one server");
    let d = env.detailed();
    assert_eq!(d.running, 1, "{d:#?}");
}

#[test]
fn real_vite_on_demand_gets_its_private_port_injected_and_serves_through_the_relay() {
    let Some(dir) = vite_fixture() else { return };
    let env = servers_env(39040);
    let port = env.add(
        "web",
        &[
            "--on-demand",
            "--dir",
            dir.to_str().unwrap(),
            "--start-timeout",
            "60s",
            "--",
            "npm",
            "run",
            "dev",
        ],
    );
    let out = env.run(&["start", "web"]);
    assert_eq!((out.code, out.stdout.trim()), (0, port.to_string().as_str()), "{out:#?}");
    let private = relay_port(&env, "web");
    assert!(
        out.stderr.contains(&format!("added `--port {private} --strictPort --host 127.0.0.1`")),
        "start says what it adds: {out:#?}"
    );
    let (status, body) = http_get(port, "/").expect("the first request is answered");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(VITE_MARKER), "{body}");
    wait_state(&env, "web", "running", Duration::from_secs(10));
    let out = env.run(&["stop", "web"]);
    assert_eq!(out.code, 0, "{out:#?}");
    env.assert_nothing_runs("stop ends npm, sh and vite");
}

#[test]
fn rm_of_a_relayed_server_releases_its_relay_port_too() {
    let env = servers_env(39060);
    env.add("lazy", &[&["--on-demand"], HTTP_SERVER].concat());
    env.run(&["start", "lazy"]);
    let private = relay_port(&env, "lazy");
    let out = env.run(&["rm", "lazy"]);
    assert_eq!(out.code, 0, "{out:#?}");
    let all: Vec<EntryJson> = env.run(&["ls", "--json"]).json();
    assert!(all.is_empty(), "neither `lazy` nor `lazy@relay` is left: {all:#?}");
    let history: Vec<EntryJson> = env.run(&["ls", "--all", "--json"]).json();
    assert!(history.iter().any(|e| e.key == "lazy@relay" && e.port == private), "{history:#?}");
}

#[test]
fn behind_the_relay_host_is_the_relays_and_the_server_stays_on_loopback() {
    use std::io::{Read, Write};
    let env = servers_env(39080);
    // The server binds where HOST says (loopback when unset).
    let port = env.add(
        "hosty",
        &[
            "--on-demand",
            "--host",
            "127.0.0.2",
            "--start-timeout",
            "5s",
            "--",
            "sh",
            "-c",
            "exec python3 -m http.server \"$PORT\" --bind \"${HOST:-127.0.0.1}\"",
        ],
    );
    assert_eq!(env.run(&["start", "hosty"]).port(), port);
    let mut s = std::net::TcpStream::connect(("127.0.0.2", port)).expect("the relay on --host");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    let private = relay_port(&env, "hosty");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", private)).is_ok(),
        "the server listens on loopback"
    );
}

#[test]
fn a_connection_held_across_a_failed_start_does_not_start_the_server_again_and_again() {
    let env = servers_env(39180);
    // Fails at once, every time.
    env.add(
        "broken",
        &["--on-demand", "--restart", "no", "--start-timeout", "3s", "--", "sh", "-c", "exit 1"],
    );
    let port = env.run(&["start", "broken"]).stdout.trim().parse::<u16>().unwrap();
    // One connection; it is held (the relay waits for a server) and then
    // closed, unanswered.
    let t = std::thread::spawn(move || http_get(port, "/"));
    std::thread::sleep(Duration::from_secs(4));
    let _ = t.join();
    let reg = portd_store::Registry::open(env.home(), portd_store::Config::default()).unwrap();
    let starts = reg
        .events_since(0)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == portd_store::events::EventKind::Started)
        .count();
    assert_eq!(starts, 1, "one start for one connection");
    assert_eq!(env.server("broken").state, "sleeping");
}

#[test]
fn restart_of_a_sleeping_relayed_server_whose_run_fails_exits_10() {
    let env = servers_env(39260);
    let script = env.root().join("srv.sh");
    std::fs::write(&script, "#!/bin/sh\nexec python3 -m http.server \"$PORT\" --bind 127.0.0.1\n")
        .unwrap();
    std::process::Command::new("chmod").arg("+x").arg(&script).status().unwrap();
    let port = env.add("api", &["--on-demand", "--restart", "no", "--", script.to_str().unwrap()]);
    env.run(&["start", "api"]);
    assert_eq!(http_get(port, "/").map(|(s, _)| s).ok(), Some(200));
    std::process::Command::new("chmod").arg("-x").arg(&script).status().unwrap();
    let t = Instant::now();
    let out = env.run(&["restart", "api"]);
    assert_eq!((out.code, out.stdout.as_str()), (10, ""), "{out:#?}");
    assert!(out.stderr.starts_with("error: `api` failed to restart:"), "{out:#?}");
    assert!(t.elapsed() < Duration::from_secs(10), "took {:?}", t.elapsed());
}
