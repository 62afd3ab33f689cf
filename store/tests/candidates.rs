//! What the candidate path must never do: commit part of a request whose
//! candidate it rejects, or miss ports freed earlier in the same
//! transaction.

use portd_store::{Config, GetOptions, Owner, Project, Ranges, Registry};
use std::sync::Arc;
use std::time::Duration;

fn config(ranges: &[(&str, u32, u32, bool)]) -> Config {
    let raw: Vec<(String, u32, u32, bool)> =
        ranges.iter().map(|&(n, a, b, f)| (n.to_owned(), a, b, f)).collect();
    Config { ranges: Ranges::from_raw(&raw).expect("ranges"), ..Config::default() }
}

/// A full range of idle entries past `idle_ttl`: the next allocation
/// expires them and takes one of their ports in the same transaction, on
/// the handle that knew them and on a fresh one, one by one or in a batch.
#[test]
fn ports_of_entries_expired_by_an_allocation_are_free_for_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("portd");
    let mut cfg = config(&[("t", 26450, 26453, true)]);
    cfg.idle_ttl = Duration::from_millis(1);
    let reg = Registry::open(&dir, cfg.clone()).unwrap();
    reg.get_many(&["a", "b", "c", "d"]).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let e = reg.get("e").expect("the same handle finds an expired entry's port");
    assert!((26450..=26453).contains(&e));
    std::thread::sleep(Duration::from_millis(20));
    let fresh = Registry::open(&dir, cfg.clone()).unwrap();
    fresh.get("f").expect("a fresh handle too");
    std::thread::sleep(Duration::from_millis(20));
    let batch = reg.get_many(&["g", "h"]).expect("and a batch");
    assert_ne!(batch[0], batch[1]);
}

/// A request whose candidate is rejected (another process took its port
/// after the caller claimed it) changes nothing: the project keeps its
/// entry. The threads are ordered by holding `registry.lock` from outside;
/// when the scheduler orders them otherwise the test still checks that the
/// project is never lost.
#[test]
fn a_rejected_candidate_leaves_the_projects_entry_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("portd");
    let cfg = config(&[("a", 26460, 26469, true), ("b", 26470, 26470, false)]);
    let h1 = Arc::new(Registry::open(&dir, cfg.clone()).unwrap());
    let h2 = Arc::new(Registry::open(&dir, cfg.clone()).unwrap());
    let m = h1.get("m").unwrap();
    let lock =
        std::fs::OpenOptions::new().read(true).write(true).open(dir.join("registry.lock")).unwrap();
    lock.lock().unwrap();
    // Another handle (as another process would) waits to take b's one port.
    let other = {
        let h2 = h2.clone();
        std::thread::spawn(move || {
            let o = GetOptions {
                port: Some(26470),
                owner: Some(Owner::this_process()),
                ..GetOptions::default()
            };
            h2.get_with(&Project::name("other").unwrap(), &o)
        })
    };
    std::thread::sleep(Duration::from_millis(60));
    // h1 leads (waiting for the lock), so the next caller claims a
    // candidate itself: b's one port, free in its mirror.
    let x = {
        let h1 = h1.clone();
        std::thread::spawn(move || h1.get("x"))
    };
    std::thread::sleep(Duration::from_millis(60));
    let moved = {
        let h1 = h1.clone();
        std::thread::spawn(move || {
            let o = GetOptions { range: Some("b".into()), ..GetOptions::default() };
            h1.get_with(&Project::name("m").unwrap(), &o)
        })
    };
    std::thread::sleep(Duration::from_millis(60));
    lock.unlock().unwrap();
    other.join().unwrap().expect("other");
    x.join().unwrap().expect("x");
    let moved = moved.join().unwrap();
    let list: Vec<(String, u16)> =
        h1.list().unwrap().into_iter().map(|l| (l.entry.project, l.entry.port)).collect();
    match moved {
        // b's one port is taken: the move fails and `m` stays where it was.
        Err(e) => {
            assert_eq!(e.kind(), portd_store::ErrorKind::NoFreePort, "{e}");
            assert!(list.contains(&("m".to_owned(), m)), "m lost its entry: {list:?}");
        }
        Ok(a) => panic!("m moved to {} although `other` holds b: {list:?}", a.entry.port),
    }
}

/// A returning project gets its history port back in a batch, even when a
/// new name of the same batch prefers that port.
#[test]
fn a_batch_gives_a_returning_project_its_history_port_before_new_names() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(&[("t", 26480, 26487, true)]);
    let reg = Registry::open(tmp.path().join("main"), cfg.clone()).unwrap();
    let h = reg.get("old").unwrap();
    reg.release("old").unwrap();
    // A name whose preferred port is `h` (found in scratch registries).
    let rival = (0..500)
        .map(|i| format!("n{i}"))
        .find(|n| {
            let scratch = Registry::open(tmp.path().join(n), cfg.clone()).unwrap();
            scratch.get(n).unwrap() == h
        })
        .expect("a name preferring the history port");
    let ports = reg.get_many(&["old", rival.as_str()]).unwrap();
    assert_eq!(ports[0], h, "`old` lost its history port to `{rival}`");
    assert_ne!(ports[1], h);
}
