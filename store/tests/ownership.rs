//! The ownership rule's trust in a recorded child pid.

use portd_store::{Config, GetOptions, Owner, Project, Ranges, Registry, is_own};
use std::process::{Command, Stdio};

/// A recorded `child_pid` that does not descend from the lease's owner (the
/// child exited and its pid now names an unrelated process) is not the
/// project's: only a child still under its owner counts.
#[test]
fn a_recorded_child_counts_only_while_it_descends_from_the_owner() {
    let dir = tempfile::tempdir().unwrap();
    let ranges = Ranges::from_raw(&[("test".into(), 26_300, 26_309, true)]).unwrap();
    let reg =
        Registry::open(dir.path().join("portd"), Config { ranges, ..Config::default() }).unwrap();
    let sleep = || Command::new("sleep").arg("30").stdin(Stdio::null()).spawn().unwrap();
    // The owner is this process; `mine` is its child, `stranger` a process
    // it did not start (a child of a shell that exits at once).
    let mut mine = sleep();
    let out =
        Command::new("sh").args(["-c", "sleep 30 >/dev/null 2>&1 & echo $!"]).output().unwrap();
    let stranger: u32 = String::from_utf8(out.stdout).unwrap().trim().parse().unwrap();
    let project = Project::name("child-trust").unwrap();
    for (child, own) in [(mine.id(), true), (stranger, false)] {
        let opts = GetOptions {
            owner: Some(Owner::this_process()),
            child_pid: Some(child),
            ..GetOptions::default()
        };
        let entry = reg.get_with(&project, &opts).unwrap().entry;
        assert_eq!(entry.child_pid, Some(child));
        assert_eq!(is_own(&entry, child), own, "child {child}");
    }
    let _ = mine.kill();
    let _ = mine.wait();
    let _ = Command::new("kill").arg(stranger.to_string()).status();
}

/// `get` and `acquire` of an existing project do not probe its port; the
/// allocation says, when asked, that a foreign process listens on it.
#[test]
fn an_allocation_tells_of_a_foreign_listener_on_its_port() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let ranges = Ranges::from_raw(&[("test".into(), 26_320, 26_329, true)]).unwrap();
    let reg =
        Registry::open(dir.path().join("portd"), Config { ranges, ..Config::default() }).unwrap();
    let project = Project::name("squatted").unwrap();
    let first = reg.acquire("squatted", Owner::this_process()).unwrap();
    assert_eq!(first.foreign_listener(), None, "nothing listens yet");
    reg.end_lease(&project, Owner::this_process()).unwrap();
    let port = first.entry.port;
    if Command::new("python3").arg("-V").output().is_err() {
        let _ =
            std::io::Write::write_all(&mut std::io::stderr(), b"SKIP: python3 is not available\n");
        assert!(std::env::var_os("PORTD_NO_SKIP").is_none(), "python3 is required");
        return;
    }
    // A listener that is not this process's descendant (the shell that
    // started it exits), so not the lease owner's own.
    let script = format!(
        "import socket,time\ns=socket.socket()\ns.bind(('127.0.0.1',{port}))\ns.listen()\n\
         print('ready',flush=True)\ntime.sleep(30)"
    );
    let mut sh = Command::new("sh")
        .args(["-c", "python3 -c \"$0\" & echo $!", &script])
        .stdout(Stdio::piped())
        .env_remove("PORT")
        .env_remove("PORTD_PORT")
        .spawn()
        .unwrap();
    let mut out = BufReader::new(sh.stdout.take().unwrap());
    let (mut a, mut b) = (String::new(), String::new());
    out.read_line(&mut a).unwrap();
    out.read_line(&mut b).unwrap();
    sh.wait().unwrap();
    let (pid, ready) = if a.trim() == "ready" { (b, a) } else { (a, b) };
    assert_eq!(ready.trim(), "ready");
    let pid: u32 = pid.trim().parse().unwrap();
    let has_listener = |h: &Option<Vec<portd_store::Holder>>| {
        h.as_ref().is_some_and(|h| h.iter().any(|h| h.pid == pid))
    };
    // `get` keeps the port (it is not re-probed) and reports the listener.
    let kept = reg.get_with(&project, &GetOptions::default()).unwrap();
    assert_eq!(kept.entry.port, port);
    assert!(has_listener(&kept.foreign_listener()), "{:?}", kept.foreign_listener());
    let lease = reg.acquire("squatted", Owner::this_process()).unwrap();
    assert_eq!(lease.entry.port, port);
    assert!(has_listener(&lease.foreign_listener()), "{:?}", lease.foreign_listener());
    portd_core::sys::kill(pid as i32, portd_core::sys::SIGKILL).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while lease.foreign_listener().is_some() {
        assert!(std::time::Instant::now() < deadline, "the listener never went away");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
