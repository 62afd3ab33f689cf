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
