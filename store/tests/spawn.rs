//! The library's way to run a command under a lease.

use portd_store::{Config, GetOptions, Project, Registry, State};
use std::io::Write as _;
use std::time::{Duration, Instant};

/// A registry with a range of its own: the tests of this file run in
/// parallel, and two registries sharing a range could both hand out a port
/// that one test's server then holds while the other binds it.
fn registry() -> (tempfile::TempDir, Registry) {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let start = 23_500 + 20 * NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let ranges =
        portd_store::Ranges::from_raw(&[("test".into(), start.into(), (start + 19).into(), true)])
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let reg =
        Registry::open(dir.path().join("portd"), Config { ranges, ..Config::default() }).unwrap();
    (dir, reg)
}

#[test]
fn child_sees_its_port_and_the_lease_ends_with_it() {
    let (dir, reg) = registry();
    let out = dir.path().join("out");
    let p = Project::name("svc").unwrap();
    let script =
        format!("echo $PORT $PORTD_PORT $PORTD_PROJECT {{port}} > {}; exit 3", out.display());
    let child = reg.spawn(&p, &["sh", "-c", &script], &GetOptions::default()).unwrap();
    let port = child.port();
    assert_eq!(reg.show(&p).unwrap().state, State::Active);
    assert_eq!(reg.show(&p).unwrap().entry.child_pid, Some(child.id()));
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(3));
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.trim(), format!("{port} {port} svc {port}"));
    let after = reg.show(&p).unwrap();
    assert_eq!(after.state, State::Idle);
    assert_eq!(after.entry.port, port, "the entry keeps its port");
    assert_eq!(after.entry.owner, None);
}

#[test]
fn dropping_the_child_kills_its_group_and_ends_the_lease() {
    let (dir, reg) = registry();
    let pidfile = dir.path().join("grandchild");
    let p = Project::name("grp").unwrap();
    // The shell starts a grandchild in the same group and waits.
    let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
    let child = reg.spawn(&p, &["sh", "-c", &script], &GetOptions::default()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(&pidfile).map_or(true, |s| s.trim().is_empty()) {
        assert!(Instant::now() < deadline, "grandchild never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let grandchild: u32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    drop(child);
    let deadline = Instant::now() + Duration::from_secs(2);
    // The grandchild is reparented and reaped by init once killed.
    while std::path::Path::new(&format!("/proc/{grandchild}")).exists()
        && portd_core::sys::proc_stat(grandchild).is_ok_and(|s| s.state != 'Z')
    {
        assert!(Instant::now() < deadline, "grandchild survived its group's kill");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(reg.show(&p).unwrap().state, State::Idle);
}

#[test]
fn empty_command_is_a_usage_error() {
    let (_dir, reg) = registry();
    let p = Project::name("none").unwrap();
    let err = reg.spawn::<&str>(&p, &[], &GetOptions::default()).unwrap_err();
    assert_eq!(err.kind(), portd_store::ErrorKind::Usage);
    assert!(reg.list().unwrap().is_empty(), "a failed spawn leaves no entry");
}

fn alive(pid: u32) -> bool {
    portd_core::sys::proc_stat(pid).is_ok_and(|s| s.state != 'Z')
}

#[test]
fn wait_stops_what_the_child_left_in_its_group() {
    let (dir, reg) = registry();
    let pidfile = dir.path().join("left");
    let p = Project::name("left").unwrap();
    let script = format!("sleep 300 & echo $! > {}", pidfile.display());
    let child = reg.spawn(&p, &["sh", "-c", &script], &GetOptions::default()).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let left: u32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert!(!alive(left), "the leftover was stopped before `wait` returned");
    assert_eq!(reg.show(&p).unwrap().state, State::Idle);
}

#[test]
fn spawn_of_a_program_that_cannot_start_changes_nothing() {
    let (dir, reg) = registry();
    reg.get("other").unwrap();
    let before = std::fs::read(reg.path()).unwrap();
    let p = Project::name("missing").unwrap();
    for program in ["/nonexistent/cmd", "nosuchcmd-xyz", dir.path().to_str().unwrap()] {
        let err = reg.spawn(&p, &[program], &GetOptions::default()).unwrap_err();
        assert!(err.message().starts_with(&format!("cannot run `{program}`: ")), "{err:?}");
    }
    assert_eq!(std::fs::read(reg.path()).unwrap(), before, "the registry file is unchanged");
    assert_eq!(reg.list().unwrap().len(), 1);
}

/// An IPv4 address of this machine that is not loopback, if it has one.
fn non_loopback_v4() -> Option<std::net::Ipv4Addr> {
    let out = std::process::Command::new("hostname").arg("-I").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_ascii_whitespace()
        .filter_map(|a| a.parse::<std::net::Ipv4Addr>().ok())
        .find(|a| !a.is_loopback())
}

#[test]
fn bind_tcp_listens_on_loopback_unless_a_host_is_given() {
    use std::net::{IpAddr, Ipv4Addr, TcpStream};
    let (_dir, reg) = registry();
    let lease = reg.get_with(&Project::name("bound").unwrap(), &GetOptions::default()).unwrap();
    let port = lease.entry.port;
    let connects =
        |ip: IpAddr| TcpStream::connect_timeout(&(ip, port).into(), Duration::from_secs(2)).is_ok();
    let l = lease.bind_tcp().unwrap();
    assert_eq!(l.local_addr().unwrap(), (Ipv4Addr::LOCALHOST, port).into());
    assert!(connects(Ipv4Addr::LOCALHOST.into()));
    let lan = non_loopback_v4();
    if let Some(ip) = lan {
        assert!(!connects(ip.into()), "{ip} must not reach a loopback listener");
    }
    drop(l);
    let all = lease.bind_tcp_loopback().unwrap();
    assert!(all.iter().all(|l| l.local_addr().unwrap().ip().is_loopback()));
    drop(all);
    let open = lease.bind_tcp_on(Ipv4Addr::UNSPECIFIED.into()).unwrap();
    if let Some(ip) = lan {
        assert!(connects(ip.into()), "asked for 0.0.0.0: {ip} connects");
    } else {
        let _ = writeln!(std::io::stderr(), "SKIP: no non-loopback IPv4 address");
        assert!(std::env::var_os("PORTD_NO_SKIP").is_none(), "SKIP not allowed here");
    }
    drop(open);
}

#[test]
fn spawn_of_a_script_with_a_bad_interpreter_is_126_and_changes_nothing() {
    use portd_store::ErrorKind;
    use std::os::unix::fs::PermissionsExt;
    let (dir, reg) = registry();
    let bad = dir.path().join("bad.sh");
    std::fs::write(&bad, "#!/nonexistent/interp\necho hi\n").unwrap();
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bad = bad.to_str().unwrap();
    let old = Project::name("old").unwrap();
    reg.get_with(&old, &GetOptions::default()).unwrap();
    let snapshot = || (reg.list().unwrap(), reg.history().unwrap());
    for name in ["new", "old"] {
        let p = Project::name(name).unwrap();
        let before = snapshot();
        let err = reg.spawn(&p, &[bad], &GetOptions::default()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CommandNotExecutable, "{err:?}");
        assert_eq!(snapshot(), before, "`{name}`: the registry changed");
    }
    let err = reg.spawn(&old, &["/nonexistent/cmd"], &GetOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CommandNotFound, "{err:?}");
}

fn lease_opts(port: Option<u16>) -> GetOptions {
    GetOptions {
        owner: Some(portd_store::Owner::this_process()),
        require_free: true,
        port,
        ..GetOptions::default()
    }
}

#[test]
fn undoing_a_start_keeps_the_entry_another_process_created_first() {
    let (_dir, reg) = registry();
    let x = Project::name("x").unwrap();
    // Another process's `portd get x`, acknowledged just before the lease
    // (the lease records what it replaces in its own transaction).
    let port = reg.get("x").unwrap();
    let acknowledged = (reg.list().unwrap(), reg.history().unwrap());
    let lease = reg.get_with(&x, &lease_opts(None)).unwrap();
    assert!(!lease.fresh, "the lease is on the entry just created");
    assert!(reg.undo_get(&x, &lease).unwrap());
    let e = reg.show(&x).expect("the other process's entry is kept");
    assert_eq!((e.entry.port, e.state, e.entry.owner), (port, State::Idle, None));
    assert_eq!((reg.list().unwrap(), reg.history().unwrap()), acknowledged, "exactly as it was");
}

#[test]
fn undoing_a_move_whose_old_port_was_taken_keeps_the_entry_on_the_new_port() {
    let (_dir, reg) = registry();
    let x = Project::name("x").unwrap();
    let old = reg.get("x").unwrap();
    let new = reg.get("tmp").unwrap();
    reg.release("tmp").unwrap();
    let lease = reg.get_with(&x, &lease_opts(Some(new))).unwrap();
    assert_eq!((lease.entry.port, lease.moved_from), (new, Some(old)));
    // Meanwhile another project is given the port `x` left.
    let y = Project::name("y").unwrap();
    let got = reg.get_with(&y, &GetOptions { port: Some(old), ..GetOptions::default() }).unwrap();
    assert_eq!(got.entry.port, old);
    assert!(reg.undo_get(&x, &lease).unwrap());
    let e = reg.show(&x).expect("`x` keeps an entry");
    assert_eq!((e.entry.port, e.state, e.entry.owner), (new, State::Idle, None));
    assert_eq!(reg.show(&y).unwrap().entry.port, old);
}

#[test]
fn undoing_a_start_after_the_entry_changed_still_ends_the_lease() {
    let (_dir, reg) = registry();
    let x = Project::name("x").unwrap();
    let lease = reg.get_with(&x, &lease_opts(None)).unwrap();
    let me = portd_store::Owner::this_process();
    // Changed after the lease was taken: the undo cannot apply as recorded.
    assert!(reg.set_child(&x, me, 1).unwrap());
    assert!(!reg.undo_get(&x, &lease).unwrap());
    let e = reg.show(&x).unwrap();
    assert_eq!((e.state, e.entry.owner, e.entry.child_pid), (State::Idle, None, None));
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

#[test]
fn undoing_a_start_keeps_the_entry_a_get_answered_in_the_same_millisecond() {
    // On tmpfs where there is one: a commit's sync is then no wait.
    let dir = tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).unwrap();
    let reg = Registry::open(dir.path().join("portd"), Config::default()).unwrap();
    // The lease creates the entry; a plain `get` of it, answered (a read
    // and a touch) before the undo, must keep it. The race is within one
    // millisecond (the touch then carries the lease's own time), so each
    // try starts on a fresh millisecond and counts only if the `get` was
    // answered within it.
    let mut same_ms = 0;
    for i in 0..500 {
        if same_ms == 5 {
            break;
        }
        let x = Project::name(&format!("x{i}")).unwrap();
        let start = now_ms();
        while now_ms() == start {
            std::hint::spin_loop();
        }
        let lease = reg.get_with(&x, &lease_opts(None)).unwrap();
        assert!(lease.fresh);
        let port = reg.get(x.key()).unwrap();
        if now_ms() == lease.entry.last_used_ms {
            same_ms += 1;
        }
        assert_eq!(port, lease.entry.port);
        reg.undo_get(&x, &lease).unwrap();
        let e = reg.show(&x).expect("the entry a `get` answered is kept");
        assert_eq!((e.entry.port, e.state, e.entry.owner), (port, State::Idle, None));
    }
    if same_ms == 0 {
        // Commits too slow here (no tmpfs) for the race to happen.
        let why = "no `get` was answered within the lease's millisecond";
        let _ = writeln!(std::io::stderr(), "SKIP: {why}");
        assert!(std::env::var_os("PORTD_NO_SKIP").is_none(), "SKIP not allowed here: {why}");
    }
}

#[test]
fn spawn_that_cannot_undo_its_lease_says_so_in_the_hint() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config { lock_timeout: Duration::from_millis(200), ..Config::default() };
    let reg = Registry::open(dir.path().join("portd"), cfg).unwrap();
    reg.get("other").unwrap();
    let bad = dir.path().join("bad.sh");
    std::fs::write(&bad, "#!/nonexistent/interp\necho hi\n").unwrap();
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A thread takes `registry.lock` once the lease is written, and holds
    // it a while: when it gets there before the failed start's undo, the
    // undo fails. In-process the two race, so this is tried until the
    // holder wins (it usually does at once).
    for attempt in 0..40 {
        let db = dir.path().join("portd/registry.redb");
        let lock = dir.path().join("portd/registry.lock");
        let mtime = |p: &std::path::Path| std::fs::metadata(p).unwrap().modified().unwrap();
        let before = mtime(&db);
        let holder = std::thread::spawn(move || {
            while mtime(&db) == before {
                std::hint::spin_loop();
            }
            let f = std::fs::OpenOptions::new().read(true).write(true).open(&lock).unwrap();
            f.lock().unwrap();
            std::thread::sleep(Duration::from_millis(400));
        });
        let x = Project::name(&format!("x{attempt}")).unwrap();
        let err = reg.spawn(&x, &[bad.to_str().unwrap()], &GetOptions::default()).unwrap_err();
        holder.join().unwrap();
        assert_eq!(err.kind(), portd_store::ErrorKind::CommandNotExecutable, "{err:?}");
        let Some(hint) = err.hint() else {
            // The undo ran first and succeeded: nothing was left.
            assert!(reg.show(&x).is_err(), "an undone lease left its entry");
            continue;
        };
        let e = reg.show(&x).expect("the lease was left");
        let start = format!(
            "the lease of `x{attempt}` (port {}) could not be undone: registry busy: ",
            e.entry.port
        );
        assert!(hint.starts_with(&start), "{err:?}");
        return;
    }
    let why = "the undo always ran before the lock holder";
    let _ = writeln!(std::io::stderr(), "SKIP: {why}");
    assert!(std::env::var_os("PORTD_NO_SKIP").is_none(), "SKIP not allowed here: {why}");
}

#[test]
fn a_child_outlives_the_short_lived_thread_that_spawned_it() {
    let (_dir, reg) = registry();
    let p = Project::name("from-thread").unwrap();
    let child = std::thread::scope(|s| {
        s.spawn(|| reg.spawn(&p, &["sleep", "30"], &GetOptions::default()).unwrap()).join().unwrap()
    });
    // The spawning thread has exited; the child must not have been killed.
    std::thread::sleep(Duration::from_secs(1));
    let pid = child.id();
    let stat = portd_core::sys::proc_stat(pid).expect("the child is gone");
    assert_ne!(stat.state, 'Z', "the child was killed when its spawning thread exited");
    assert_eq!(reg.show(&p).unwrap().state, State::Active);
    assert_eq!(reg.show(&p).unwrap().entry.child_pid, Some(pid));
    // Waiting still works from this thread: stop it, then wait.
    child.signal(portd_core::sys::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert_eq!(reg.show(&p).unwrap().state, State::Idle);
    // And dropping does too.
    let child = std::thread::scope(|s| {
        s.spawn(|| reg.spawn(&p, &["sleep", "30"], &GetOptions::default()).unwrap()).join().unwrap()
    });
    std::thread::sleep(Duration::from_millis(200));
    assert!(portd_core::sys::proc_stat(child.id()).is_ok_and(|s| s.state != 'Z'));
    drop(child);
    assert_eq!(reg.show(&p).unwrap().state, State::Idle);
}

/// A lease taken for a command that never started is undone when dropped
/// (no entry is left); one whose command started ends when dropped (the
/// entry goes idle and keeps its port). The command line is recorded, and
/// `{port}` is replaced in the arguments only.
#[test]
fn a_command_lease_left_unfinished_is_undone_or_ended_when_dropped() {
    let (_dir, reg) = registry();
    let p = Project::name("cmd").unwrap();
    let argv = ["sh", "-c", "exit 0", "{port}"];
    let lease = reg.lease_command(&p, &argv, &GetOptions::default()).unwrap();
    let port = lease.port();
    assert_eq!(lease.argv(), ["sh", "-c", "exit 0", &port.to_string()]);
    let shown = reg.show(&p).unwrap();
    assert_eq!(shown.state, State::Active);
    assert_eq!(shown.entry.command.as_deref(), Some(&argv.map(String::from)[..]));
    drop(lease);
    assert!(reg.show(&p).is_err(), "a lease never started was left behind");

    let mut lease = reg.lease_command(&p, &argv, &GetOptions::default()).unwrap();
    let port = lease.port();
    lease.started(std::process::id()).unwrap();
    assert_eq!(reg.show(&p).unwrap().entry.child_pid, Some(std::process::id()));
    drop(lease);
    let after = reg.show(&p).unwrap();
    assert_eq!((after.state, after.entry.port, after.entry.owner), (State::Idle, port, None));
}
