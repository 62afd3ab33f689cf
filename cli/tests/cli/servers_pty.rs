//! Managed servers started from a real interactive bash on a
//! pseudo-terminal: they belong to no terminal, so Ctrl-C at the prompt or
//! in `portd logs -f`, the shell exiting and the terminal closing (SIGHUP)
//! leave them serving; Ctrl-C while `portd start` waits ends the wait only.
//!
//! Every test runs in a [`Servers`] world (ports of its own in the band
//! 37500–37599) that stops and kills whatever it started when it ends.

use crate::pty::Pty;
use crate::util::*;
use std::time::Duration;

/// The controlling terminal of `pid` (`tty_nr`, the 7th field of
/// /proc/PID/stat; 0 for none) and its session (the 6th).
fn tty_and_session(pid: u32) -> (u32, u32) {
    let line = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest: Vec<&str> = line[line.rfind(')').unwrap() + 1..].split_ascii_whitespace().collect();
    (rest[4].parse().unwrap(), rest[3].parse().unwrap())
}

/// The bash the driver started (the driver's child).
fn bash_of(pty: &Pty) -> u32 {
    let driver = pty.child.id();
    let mut found = None;
    wait_for("bash to start", Duration::from_secs(5), || {
        found = portd_core::sys::process_table()
            .into_iter()
            .find(|p| p.ppid == driver && p.comm == "bash")
            .map(|p| p.pid);
        found.is_some()
    });
    found.unwrap()
}

#[test]
fn a_server_started_in_an_interactive_shell_survives_ctrl_c_and_the_shell_exiting() {
    let env = servers_env(37500);
    let port = env.add("api", &["--", "node", &fixture("server.js")]);
    let mut t = Pty::start(&env);
    t.expect(r"PROMPT\$ ");
    let bash = bash_of(&t);
    let (tty, session) = tty_and_session(bash);
    assert_ne!(tty, 0, "bash has the pty as its terminal");

    t.send(&format!("{BIN} start api\n"));
    t.expect(&format!(r"\r\n{port}\r\n"));
    t.expect(r"PROMPT\$ ");
    let e = env.entry("api");
    let (sup, child) = (e.pid.unwrap(), e.child_pid.unwrap());
    for (what, pid) in [("supervisor", sup), ("server", child)] {
        let (their_tty, their_session) = tty_and_session(pid);
        assert_eq!(their_tty, 0, "the {what} has no terminal");
        assert_ne!(their_session, session, "the {what} is not in the shell's session");
    }

    // Ctrl-C at the prompt.
    t.send("\x03");
    t.expect(r"PROMPT\$ ");
    // Ctrl-C in `logs -f` ends it, and only it.
    t.send(&format!("{BIN} logs -f -n 1 api\n"));
    t.expect("node: listening on");
    t.send("\x03");
    t.expect(r"PROMPT\$ ");
    t.send("echo rc=$?\n");
    t.expect(r"rc=130");
    assert!(alive(child), "the server survived Ctrl-C");
    assert_eq!(http_get(port, "/").unwrap().0, 200);

    // The shell exits, sending SIGHUP to its jobs (`huponexit`): the
    // server is not one of them.
    t.send("shopt -s huponexit; exit\n");
    let status = t.end("exited");
    assert_eq!(status, 0, "bash exited normally");
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(sup) && alive(child), "the server survived its shell");
    assert_eq!(env.entry("api").child_pid, Some(child));
    assert_eq!(env.server("api").state, "running");
    let (status, body) = http_get(port, "/").expect("still serving");
    assert_eq!((status, body), (200, format!("hello from node {child} on {port}\n")));
}

#[test]
fn closing_the_terminal_ends_logs_follow_but_not_the_server() {
    let env = servers_env(37520);
    let port = env.add("api", &["--", "node", &fixture("server.js")]);
    let mut t = Pty::start(&env);
    t.expect(r"PROMPT\$ ");
    t.send(&format!("{BIN} start api\n"));
    t.expect(r"PROMPT\$ ");
    let child = env.entry("api").child_pid.unwrap();
    t.send(&format!("{BIN} logs -f -n 1 api\n"));
    t.expect("node: listening on");
    let follow = env.matching("logs -f");
    assert_eq!(follow.len(), 1, "{follow:?}");

    // The terminal window closes: SIGHUP to bash, which passes it on.
    let status = t.end("hangup");
    assert_ne!(status, 0, "bash ended by the hangup");
    wait_for("`logs -f` to end with its terminal", Duration::from_secs(5), || !alive(follow[0]));
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(child), "the server survived the closed terminal");
    assert_eq!(env.server("api").state, "running");
    let (status, body) = http_get(port, "/").expect("still serving");
    assert_eq!((status, body), (200, format!("hello from node {child} on {port}\n")));
}

#[test]
fn ctrl_c_while_start_waits_ends_the_wait_and_the_server_comes_up_anyway() {
    let env = servers_env(37540);
    let port =
        env.add("slow", &["--env", "READY_AFTER=3", "--", "python3", &fixture("slow_ready.py")]);
    let mut t = Pty::start(&env);
    t.expect(r"PROMPT\$ ");
    t.send(&format!("{BIN} start slow\n"));
    wait_for("the server to be starting", Duration::from_secs(5), || {
        env.server("slow").state == "starting"
    });
    t.send("\x03");
    t.expect(r"PROMPT\$ ");
    t.send("echo rc=$?\n");
    t.expect(r"rc=130");
    // The supervisor is not in the terminal's group: the start goes on.
    let s = {
        let end = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let s = env.server("slow");
            if s.state != "starting" || std::time::Instant::now() >= end {
                break s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert_eq!(s.state, "running", "{s:#?}");
    assert_eq!(http_get(port, "/").expect("it came up").0, 200);
    // And `start` now finds it at once.
    assert_eq!(env.start("slow"), port);
}
