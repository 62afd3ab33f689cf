//! The registry's managed servers: definitions keep their ports, one
//! supervisor per server, and events stay within their bounds.
//! Ports 34500–34599.

use portd_store::definition::ServerDef;
use portd_store::events::{Event, EventKind, MAX_AGE_MS, MAX_EVENTS};
use portd_store::server_state::{Phase, ServerState};
use portd_store::{Config, GetOptions, Owner, Project, Ranges, Registry, ServerLease};

fn registry(dir: &std::path::Path, start: u32, end: u32) -> Registry {
    let ranges = Ranges::from_raw(&[("t".into(), start, end, true)]).expect("range");
    Registry::open(dir.join("portd"), Config { ranges, ..Config::default() }).expect("open")
}

fn def() -> ServerDef {
    ServerDef::new(vec!["true".into()], "/".into())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

fn event(at_ms: u64) -> Event {
    Event { at_ms, project: "api".into(), kind: EventKind::Started, detail: None }
}

#[test]
fn events_are_kept_to_five_thousand_and_seven_days() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry(tmp.path(), 34500, 34509);
    let now = now_ms();
    // Past 7 days an event goes (pruned by the append itself); younger
    // ones stay.
    reg.record_events(&[event(now - MAX_AGE_MS - 60_000)]).unwrap();
    assert_eq!(reg.event_counts().unwrap().0, 0, "the 8-day-old event is gone");
    reg.record_events(&[event(now - MAX_AGE_MS + 60_000), event(now)]).unwrap();
    assert_eq!(reg.event_counts().unwrap().0, 2);
    let batch: Vec<Event> = (0..MAX_EVENTS + 10).map(|i| event(now + i)).collect();
    reg.record_events(&batch).unwrap();
    let (kept, seq) = reg.event_counts().unwrap();
    assert_eq!(kept, MAX_EVENTS);
    assert_eq!(seq, MAX_EVENTS + 13, "sequence numbers keep counting");
    // The oldest went first: what is left is the newest.
    let left = reg.events_since(0).unwrap();
    assert_eq!(left.first().unwrap().at_ms, now + 10);
    assert_eq!(left.last().unwrap().at_ms, now + MAX_EVENTS + 9);
}

#[test]
fn a_defined_project_keeps_its_port_through_release_idle_and_is_released_by_undefine() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry(tmp.path(), 34510, 34519);
    let p = Project::name("api").unwrap();
    let (old, port) = reg.define(&p, &def()).unwrap();
    assert!(old.is_none());
    assert!(reg.release_idle().unwrap().is_empty(), "a defined server's entry stays");
    let (old, again) = reg.define(&p, &def()).unwrap();
    assert_eq!((old.is_some(), again), (true, port), "re-defining keeps the port");
    assert!(reg.undefine(&p).unwrap().is_some());
    assert!(reg.definition(&p).unwrap().is_none());
    assert!(reg.list().unwrap().is_empty(), "its entry is released");
    assert_eq!(reg.history().unwrap(), vec![("api".to_owned(), port)], "the port is remembered");
}

#[test]
fn one_supervisor_holds_a_server_and_a_second_finds_it() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry(tmp.path(), 34520, 34529);
    let p = Project::name("api").unwrap();
    reg.define(&p, &def()).unwrap();
    let me = Owner::this_process();
    let state = ServerState::new(Phase::Starting);
    let opts = GetOptions::default();
    let ServerLease::Taken(lease) = reg.lease_server(&p, me, &opts, &state, &[]).unwrap() else {
        panic!("the first supervisor takes the lease");
    };
    // A live parent process stands for a second supervisor.
    let other = Owner::of_pid(portd_core::sys::ppid()).unwrap();
    match reg.lease_server(&p, other, &opts, &state, &[]).unwrap() {
        ServerLease::Exists(pid) => assert_eq!(pid, me.pid),
        ServerLease::Taken(_) => panic!("a second supervisor must not take a live one's lease"),
    }
    // Refused to undefine while its supervisor lives.
    assert!(reg.undefine(&p).is_err());
    let mut end = state.clone();
    end.phase = Phase::Stopped;
    end.supervisor = None;
    reg.end_server(&p, me, &end, &[]).unwrap();
    let l = reg.show(&p).unwrap();
    assert_eq!(l.entry.port, lease.entry.port);
    assert!(l.entry.owner.is_none() || l.state == portd_store::State::Idle, "the lease ended");
    assert!(reg.undefine(&p).unwrap().is_some());
}
