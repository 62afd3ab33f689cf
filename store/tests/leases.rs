//! `Registry::lease_many`: leases that give their ports back when dropped.

use portd_store::{Config, ErrorKind, Ranges, Registry, State};

fn registry(dir: &std::path::Path, start: u32, end: u32) -> Registry {
    let ranges = Ranges::from_raw(&[("t".into(), start, end, true)]).expect("range");
    Registry::open(dir.join("portd"), Config { ranges, ..Config::default() }).expect("open")
}

#[test]
fn dropped_leases_release_their_entries_and_keep_the_ports_in_history() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry(tmp.path(), 26310, 26339);
    let ports = {
        let leases = reg.lease_many(&["a", "b"]).unwrap();
        let listed = reg.list().unwrap();
        assert_eq!(listed.len(), 2);
        assert!(listed.iter().all(|l| l.state == State::Active));
        leases.ports()
    };
    assert!(reg.list().unwrap().is_empty(), "released on drop");
    let mut history = reg.history().unwrap();
    history.sort();
    assert_eq!(history, vec![("a".to_owned(), ports[0]), ("b".to_owned(), ports[1])]);
    // The next lease of the same names gets the same ports back.
    let again = reg.lease_many(&["a", "b"]).unwrap();
    assert_eq!(again.ports(), ports);
    again.release().unwrap();
    assert!(reg.list().unwrap().is_empty());
}

#[test]
fn leases_are_released_when_a_panic_unwinds_past_them() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry(tmp.path(), 26340, 26369);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _leases = reg.lease_many(&["a", "b", "c"]).unwrap();
        panic!("the launcher failed");
    }));
    assert!(caught.is_err());
    assert!(reg.list().unwrap().is_empty());
}

#[test]
fn kept_leases_stay_and_others_leases_are_never_released() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry(tmp.path(), 26370, 26399);
    reg.lease_many(&["kept"]).unwrap().keep();
    let listed = reg.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, State::Active);
    // A name given twice: nothing taken.
    let e = reg.lease_many(&["fresh", "fresh"]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Usage, "{e}");
    assert_eq!(reg.list().unwrap().len(), 1);
    // Leases whose entry changed hands are left alone: `b` released and
    // taken again as a plain entry before the guard drops.
    let leases = reg.lease_many(&["a", "b"]).unwrap();
    reg.release_many(&[portd_store::Project::name("b").unwrap()], true).unwrap();
    let b = reg.get("b").unwrap();
    drop(leases);
    let left: Vec<(String, u16)> =
        reg.list().unwrap().into_iter().map(|l| (l.entry.project, l.entry.port)).collect();
    assert!(left.contains(&("b".to_owned(), b)), "{left:?}");
    assert!(left.iter().any(|(n, _)| n == "kept"), "{left:?}");
    assert!(!left.iter().any(|(n, _)| n == "a"), "{left:?}");
}

#[test]
fn an_entry_that_existed_before_the_leases_keeps_its_port_when_they_drop() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry(tmp.path(), 26420, 26429);
    let old = reg.get("old").unwrap();
    {
        let leases = reg.lease_many(&["old", "new"]).unwrap();
        assert_eq!(leases.ports()[0], old);
    }
    let left: Vec<(String, u16, State)> =
        reg.list().unwrap().into_iter().map(|l| (l.entry.project, l.entry.port, l.state)).collect();
    assert_eq!(left, vec![("old".to_owned(), old, State::Idle)], "its lease ended; `new` released");
}

/// Two `Leases` of one name in one process: dropping the first must not
/// release the entry the second still holds (its port would be handed to
/// another project while the second launcher uses it).
#[test]
fn dropping_one_lease_keeps_the_entry_a_second_lease_of_the_name_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry(tmp.path(), 26430, 26431);
    let first = reg.lease_many(&["a"]).unwrap();
    let second = reg.lease_many(&["a"]).unwrap();
    assert_eq!(first.ports(), second.ports());
    drop(first);
    let listed = reg.list().unwrap();
    assert!(
        listed.iter().any(|l| l.entry.project == "a" && l.state == State::Active),
        "{listed:?}"
    );
    let other = reg.get("b").unwrap();
    assert_ne!(other, second.ports()[0], "the second lease's port was handed out again");
    drop(second);
}
