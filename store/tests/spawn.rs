//! The library's way to run a command under a lease.

use portd_store::{Config, GetOptions, Project, Registry, State};
use std::time::{Duration, Instant};

fn registry() -> (tempfile::TempDir, Registry) {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path().join("portd"), Config::default()).unwrap();
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
