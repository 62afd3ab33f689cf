//! Active leases for many projects at once.

use portd_store::{Config, ErrorKind, Owner, Project, Ranges, Registry, State};
use std::collections::BTreeSet;
use std::process::{Command, Stdio};

fn registry(start: u16, end: u16) -> (tempfile::TempDir, Registry) {
    let dir = tempfile::tempdir().unwrap();
    let ranges = Ranges::from_raw(&[("test".into(), start.into(), end.into(), true)]).unwrap();
    let reg =
        Registry::open(dir.path().join("portd"), Config { ranges, ..Config::default() }).unwrap();
    (dir, reg)
}

#[test]
fn acquire_many_leases_every_name_to_the_owner() {
    let (_dir, reg) = registry(26_340, 26_349);
    let me = Owner::this_process();
    let leases = reg.acquire_many(&["api", "web", "worker"], me).unwrap();
    assert_eq!(leases.len(), 3);
    let ports: BTreeSet<u16> = leases.iter().map(|a| a.entry.port).collect();
    assert_eq!(ports.len(), 3, "distinct ports: {leases:?}");
    for (name, lease) in ["api", "web", "worker"].iter().zip(&leases) {
        assert_eq!(lease.entry.owner, Some(me));
        let shown = reg.show(&Project::name(name).unwrap()).unwrap();
        assert_eq!(shown.state, State::Active);
        assert_eq!(shown.entry.port, lease.entry.port);
    }
}

#[test]
fn acquire_many_commits_nothing_when_one_name_fails() {
    let (_dir, reg) = registry(26_350, 26_359);
    let mut other = Command::new("sleep").arg("30").stdin(Stdio::null()).spawn().unwrap();
    let theirs = Owner::of_pid(other.id()).unwrap();
    let held = reg.acquire("held", theirs).unwrap();
    let before = reg.list().unwrap();
    // `held` is leased by another live process: the whole call fails.
    let err = reg.acquire_many(&["fresh-1", "held", "fresh-2"], Owner::this_process()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PortBusy, "{err}");
    assert_eq!(reg.list().unwrap(), before, "nothing committed");
    // An invalid name fails before anything is written.
    let err = reg.acquire_many(&["fresh-1", ""], Owner::this_process()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage, "{err}");
    assert_eq!(reg.list().unwrap(), before, "nothing committed");
    // More names than ports: no free port, nothing committed.
    let names: Vec<String> = (0..10).map(|i| format!("many-{i}")).collect();
    let err = reg.acquire_many(&names, Owner::this_process()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoFreePort, "{err}");
    assert_eq!(reg.list().unwrap(), before, "nothing committed");
    assert_eq!(reg.show(&Project::name("held").unwrap()).unwrap().entry.port, held.entry.port);
    other.kill().unwrap();
    other.wait().unwrap();
}

/// A name given twice would be two leases on one port: refused, nothing
/// committed.
#[test]
fn a_name_given_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ranges = portd_store::Ranges::from_raw(&[("test".into(), 26_400, 26_409, true)]).unwrap();
    let reg = portd_store::Registry::open(
        dir.path().join("portd"),
        portd_store::Config { ranges, ..portd_store::Config::default() },
    )
    .unwrap();
    let err = reg.acquire_many(&["svc-a", "svc-b", "svc-a"], portd_store::Owner::this_process());
    let err = err.unwrap_err();
    assert_eq!(err.kind(), portd_store::ErrorKind::Usage, "{err}");
    assert!(err.message().contains("`svc-a` is named twice"), "{err}");
    assert!(reg.list().unwrap().is_empty());
}
