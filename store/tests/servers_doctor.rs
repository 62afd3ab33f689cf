//! `doctor` on the managed-server tables (every definition, state and event
//! is checked; a definition without an entry is a warning; a dead
//! supervisor's state is no problem), `--repair` carrying definitions over,
//! and `reset` with definitions and live supervisors.

use portd_store::definition::{self, ServerDef};
use portd_store::doctor::{self, Finding, Report, Severity};
use portd_store::events::{self, Event, EventKind, StopWhy};
use portd_store::server_state::{Phase, ServerState};
use portd_store::{Config, ErrorKind, GetOptions, Owner, Project, Ranges, Registry, ServerLease};
use std::path::{Path, PathBuf};

/// A registry of its own in `dir`, on the 20 ports from `start`.
fn open(dir: &Path, start: u16) -> (PathBuf, Config, Registry) {
    let ranges =
        Ranges::from_raw(&[("test".into(), start.into(), u32::from(start) + 19, true)]).unwrap();
    let config = Config { ranges, ..Config::default() };
    let home = dir.join("portd");
    let reg = Registry::open(&home, config.clone()).unwrap();
    (home, config, reg)
}

fn project(name: &str) -> Project {
    Project::name(name).unwrap()
}

fn def(argv: &[&str]) -> ServerDef {
    let mut d = ServerDef::new(argv.iter().map(|s| s.to_string()).collect(), "/tmp".into());
    d.env.push(("API_URL".into(), "{url:api}".into()));
    d
}

fn event(project: &str, kind: EventKind) -> Event {
    Event { at_ms: now_ms(), project: project.into(), kind, detail: Some("why".into()) }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// This process, as a supervisor that died (its pid since reused).
fn dead_supervisor() -> Owner {
    let mut o = Owner::this_process();
    o.start_time += 1;
    o
}

fn finding<'r>(r: &'r Report, check: &str) -> &'r Finding {
    r.findings.iter().find(|f| f.check == check).unwrap_or_else(|| panic!("no `{check}`: {r:#?}"))
}

/// Findings other than `ok`, but for those about the machine rather than
/// the registry (the test range lies in the kernel's ephemeral range).
fn problems(r: &Report) -> Vec<&Finding> {
    r.findings.iter().filter(|f| f.severity != Severity::Ok && f.check != "ephemeral").collect()
}

/// Writes a raw value into one of the registry's tables, as a damaged disk
/// or a foreign tool might.
fn write_raw(home: &Path, f: impl FnOnce(&redb::WriteTransaction)) {
    let db = redb::Database::open(home.join(portd_store::REGISTRY_FILE)).unwrap();
    let tx = db.begin_write().unwrap();
    f(&tx);
    tx.commit().unwrap();
    db.close().unwrap();
}

const SERVERS: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("servers");
const STATES: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("server_state");
const EVENTS: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("events");

/// A registry with one defined server, a recorded state and two events.
fn with_a_server(dir: &Path, start: u16) -> (PathBuf, Config, Registry) {
    let (home, config, reg) = open(dir, start);
    reg.define(&project("api"), &def(&["python3", "-m", "http.server"])).unwrap();
    let mut s = ServerState::new(Phase::Stopped);
    s.reason = Some("stopped by the user".into());
    let evs =
        [event("api", EventKind::Started), event("api", EventKind::Stopped { why: StopWhy::User })];
    assert!(reg.record_server(&project("api"), &s, &evs).unwrap());
    (home, config, reg)
}

#[test]
fn doctor_decodes_every_definition_state_and_event() {
    let dir = tempfile::tempdir().unwrap();
    let (home, config, _reg) = with_a_server(dir.path(), 34100);
    let r = doctor::examine(&home, &config, None);
    assert!(problems(&r).is_empty(), "{r:#?}");
    assert_eq!(finding(&r, "schema").message, "registry schema 3");
    assert_eq!(
        finding(&r, "servers").message,
        "1 server definition, 1 state and 2 events decoded",
        "{r:#?}"
    );
}

/// A change a damaged disk or a foreign tool might make.
type Damage<'a> = dyn Fn(&redb::WriteTransaction) + 'a;

/// Each kind of managed-server record that does not decode (or an event
/// numbered past the sequence) is damage, named, and offered the repair;
/// examining it changes nothing.
#[test]
fn an_undecodable_server_record_is_damage() {
    let valid_event = events::encode(&event("api", EventKind::Started));
    let cases: [(&str, Box<Damage<'_>>); 5] = [
        (
            "registry damaged: definition of `api`: ",
            Box::new(|tx| {
                tx.open_table(SERVERS).unwrap().insert("api", &[1, 0xff, 0xff][..]).unwrap();
            }),
        ),
        (
            "registry damaged: a server definition under a malformed project key `no such key`",
            Box::new(|tx| {
                let bytes = definition::encode(&def(&["x"]));
                tx.open_table(SERVERS).unwrap().insert("no such key", bytes.as_slice()).unwrap();
            }),
        ),
        (
            "registry damaged: server state of `api`: ",
            Box::new(|tx| {
                tx.open_table(STATES).unwrap().insert("api", &[1, 9][..]).unwrap();
            }),
        ),
        (
            "registry damaged: event 2: ",
            Box::new(|tx| {
                tx.open_table(EVENTS).unwrap().insert(2, &[1, 0][..]).unwrap();
            }),
        ),
        (
            "registry damaged: event 99 is numbered past the recorded sequence (2)",
            Box::new(|tx| {
                tx.open_table(EVENTS).unwrap().insert(99, valid_event.as_slice()).unwrap();
            }),
        ),
    ];
    for (i, (want, damage)) in cases.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let (home, config, reg) = with_a_server(dir.path(), 34120 + i as u16 * 20);
        write_raw(&home, damage);
        let file = home.join(portd_store::REGISTRY_FILE);
        let bytes = std::fs::read(&file).unwrap();
        let r = doctor::examine(&home, &config, None);
        assert!(r.damaged, "{want}: {r:#?}");
        let e = r.first_error().unwrap();
        assert_eq!((e.check, e.kind), ("integrity", Some(ErrorKind::Damaged)), "{r:#?}");
        assert!(e.message.starts_with(want), "{want}: {}", e.message);
        assert!(e.fix.as_deref().unwrap().contains("portd doctor --repair"), "{e:?}");
        assert!(std::fs::read(&file).unwrap() == bytes, "{want}: examine changed the file");
        // Commands that read those records refuse the file as damaged too.
        if !want.contains("malformed") && !want.contains("past the recorded") {
            let err = match i {
                0 => reg.defined(None).map(drop),
                2 => reg.server_states().map(drop),
                _ => reg.events_since(0).map(drop),
            }
            .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Damaged, "{want}: {err}");
        }
    }
}

/// A released project keeps its definition but not its port: it still
/// starts (allocating again), so doctor warns and names both fixes.
#[test]
fn a_definition_without_an_entry_is_a_warning_with_its_fix() {
    let dir = tempfile::tempdir().unwrap();
    let (home, config, reg) = with_a_server(dir.path(), 34220);
    reg.define(&project("web"), &def(&["node", "server.js"])).unwrap();
    reg.release("api").unwrap();
    let r = doctor::examine(&home, &config, None);
    assert!(r.first_error().is_none() && !r.damaged, "{r:#?}");
    let f = finding(&r, "servers");
    assert_eq!(f.severity, Severity::Warn, "{r:#?}");
    assert_eq!(
        f.message,
        "1 managed server without an entry (no port reserved until its next start): api"
    );
    assert_eq!(
        f.fix.as_deref(),
        Some(
            "run `portd add api -- CMD…` again to reserve its port, or `portd rm api` to drop the definition"
        )
    );
    assert_eq!(problems(&r).len(), 1, "{r:#?}");
    // `add` again is the fix: the warning goes.
    reg.define(&project("api"), &def(&["python3", "-m", "http.server"])).unwrap();
    let r = doctor::examine(&home, &config, None);
    assert!(problems(&r).is_empty(), "{r:#?}");
}

/// A state that says a supervisor runs, written by one that died, reads as
/// stopped: doctor reports no problem (and says how many there are).
#[test]
fn a_dead_supervisors_state_is_no_problem() {
    let dir = tempfile::tempdir().unwrap();
    let (home, config, reg) = with_a_server(dir.path(), 34240);
    let mut s = ServerState::new(Phase::Running);
    s.supervisor = Some(dead_supervisor());
    s.command_pid = Some(std::process::id());
    assert!(reg.record_server(&project("api"), &s, &[]).unwrap());
    let shown = reg.defined(Some("api")).unwrap().pop().unwrap().state.unwrap();
    assert_eq!((shown.phase, shown.effective().phase), (Phase::Running, Phase::Stopped));
    let r = doctor::examine(&home, &config, None);
    assert!(problems(&r).is_empty(), "{r:#?}");
    assert_eq!(
        finding(&r, "servers").message,
        "1 server definition, 1 state (1 of a supervisor that died: read as stopped) and 2 events decoded"
    );
}

/// `--repair` carries the definitions (user data) over with their
/// projects' entries, and drops states and events.
#[test]
fn repair_carries_definitions_over_and_drops_states_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let (home, config, reg) = with_a_server(dir.path(), 34260);
    let mut web = def(&["node", "server.js"]);
    web.on_demand = true;
    web.fd = true;
    web.idle_timeout_ms = Some(60_000);
    reg.define(&project("web"), &web).unwrap();
    let plain = reg.get("plain").unwrap();
    let before = reg.defined(None).unwrap();
    assert_eq!(before.len(), 2);
    write_raw(&home, |tx| {
        tx.open_table(EVENTS).unwrap().insert(1, &[1, 0xff][..]).unwrap();
    });
    assert!(doctor::examine(&home, &config, None).damaged);

    let done = doctor::repair(&home, &config).unwrap();
    assert_eq!(done.servers, ["api", "web"], "{done:?}");
    assert_eq!(done.lost_servers, 0);
    assert_eq!(done.remembered, ["plain"], "{done:?}");
    assert!(done.rebuilt.is_empty(), "{done:?}");

    let after = reg.defined(None).unwrap();
    assert_eq!(after.len(), 2);
    for (a, b) in before.iter().zip(&after) {
        assert_eq!((&a.key, &a.def, a.port), (&b.key, &b.def, b.port), "definition or port lost");
        assert_eq!(b.state, None, "a state was carried over");
    }
    assert!(reg.server_states().unwrap().is_empty());
    assert!(reg.events_since(0).unwrap().is_empty());
    assert_eq!(reg.event_counts().unwrap(), (0, 0));
    let r = doctor::examine(&home, &config, None);
    assert!(problems(&r).is_empty(), "{r:#?}");
    assert_eq!(
        finding(&r, "servers").message,
        "2 server definitions, 0 states and 0 events decoded"
    );
    assert_eq!(reg.get("plain").unwrap(), plain, "the idle project lost its port");
}

/// A definition that does not decode is counted as lost by the repair;
/// the others are kept.
#[test]
fn repair_counts_the_definitions_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let (home, config, reg) = with_a_server(dir.path(), 34280);
    write_raw(&home, |tx| {
        tx.open_table(SERVERS).unwrap().insert("broken", &[1, 0xff][..]).unwrap();
    });
    let done = doctor::repair(&home, &config).unwrap();
    assert_eq!((done.servers.as_slice(), done.lost_servers), (&["api".to_owned()][..], 1));
    assert_eq!(reg.defined(None).unwrap().len(), 1);
}

/// `reset` empties the registry, definitions included (the backup keeps
/// them), and is refused while a supervisor holds its server's lease.
#[test]
fn reset_drops_definitions_keeps_them_in_its_backup_and_waits_for_supervisors() {
    let dir = tempfile::tempdir().unwrap();
    let (home, config, reg) = with_a_server(dir.path(), 34300);
    let me = Owner::this_process();
    let opts = GetOptions::default();
    let running = ServerState::new(Phase::Running);
    let lease = reg.lease_server(&project("api"), me, &opts, &running, &[]).unwrap();
    assert!(matches!(lease, ServerLease::Taken(_)), "{lease:?}");
    let e = reg.reset(false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PortBusy, "{e}");
    assert!(e.message().contains("`api`"), "{e}");
    assert_eq!(reg.defined(None).unwrap().len(), 1, "a refused reset changed the registry");

    reg.end_server(&project("api"), me, &ServerState::new(Phase::Stopped), &[]).unwrap();
    let backup = reg.reset(false).unwrap().expect("a backup");
    assert!(reg.defined(None).unwrap().is_empty());
    assert!(reg.server_states().unwrap().is_empty());
    assert!(reg.list().unwrap().is_empty());
    assert!(problems(&doctor::examine(&home, &config, None)).is_empty());

    // The backup is a registry that still holds the definition.
    let restored = dir.path().join("restored");
    std::fs::create_dir(&restored).unwrap();
    std::fs::copy(&backup, restored.join(portd_store::REGISTRY_FILE)).unwrap();
    let old = Registry::open(&restored, config).unwrap();
    assert_eq!(
        old.definition(&project("api")).unwrap().map(|d| d.argv),
        Some(vec!["python3".into(), "-m".into(), "http.server".into()])
    );
}
