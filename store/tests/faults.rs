//! A registry written by a newer portd is refused, never overwritten.

use portd_store::{Config, ErrorKind, Registry};

#[test]
fn a_newer_schema_is_refused_and_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("portd");
    let reg = Registry::open(&home, Config::default()).unwrap();
    reg.get("older").unwrap();
    drop(reg);
    let file = home.join(portd_store::REGISTRY_FILE);
    mark_newer(&file);
    let bytes = std::fs::read(&file).unwrap();
    let reg = Registry::open(&home, Config::default()).unwrap();
    let ops: [(&str, &dyn Fn() -> portd_store::Result<()>); 5] = [
        ("list", &|| reg.list().map(|_| ())),
        ("get", &|| reg.get("older").map(|_| ())),
        ("get new", &|| reg.get("newer").map(|_| ())),
        ("release", &|| reg.release("older")),
        ("cleanup", &|| reg.cleanup().map(|_| ())),
    ];
    for (what, op) in ops {
        let e = op().expect_err(what);
        assert_eq!(e.kind(), ErrorKind::Damaged, "{what}: {e}");
        assert!(e.message().contains("written by a newer portd"), "{what}: {e}");
        assert_eq!(e.hint(), Some("upgrade portd; the registry is left untouched"), "{what}");
        assert!(std::fs::read(&file).unwrap() == bytes, "{what}: the file was changed");
    }
}

/// Stamps the registry with the next schema version, as a newer portd would.
fn mark_newer(file: &std::path::Path) {
    let db = redb::Database::open(file).unwrap();
    let tx = db.begin_write().unwrap();
    {
        let meta: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
        tx.open_table(meta).unwrap().insert("schema", portd_store::SCHEMA_VERSION + 1).unwrap();
    }
    tx.commit().unwrap();
    db.close().unwrap();
}

/// Writes `value` as the raw record of `key`, as a damaged disk or a
/// foreign tool might.
fn overwrite_record(file: &std::path::Path, key: &str, value: &[u8]) {
    let db = redb::Database::open(file).unwrap();
    let tx = db.begin_write().unwrap();
    {
        let entries: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("entries");
        tx.open_table(entries).unwrap().insert(key, value).unwrap();
    }
    tx.commit().unwrap();
    db.close().unwrap();
}

#[test]
fn repair_rebuilds_live_leases_remembers_idle_ports_and_counts_the_lost() {
    use portd_store::doctor::{self, Severity};
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("portd");
    let config = Config::default();
    let reg = Registry::open(&home, config.clone()).unwrap();
    let live = reg.acquire("live", portd_store::Owner::this_process()).unwrap().entry.port;
    let idle = reg.get("idle").unwrap();
    reg.get("bad").unwrap();
    let file = home.join(portd_store::REGISTRY_FILE);
    overwrite_record(&file, "bad", &[1, 0xff, 0xff, 0xff]);
    let bytes = std::fs::read(&file).unwrap();

    let report = doctor::examine(&home, &config, None);
    assert!(report.damaged, "{report:#?}");
    let err = report.first_error().unwrap();
    assert_eq!(
        (err.check, err.severity, err.kind),
        ("integrity", Severity::Error, Some(ErrorKind::Damaged))
    );
    assert!(err.message.starts_with("registry damaged: entry `bad`: "), "{}", err.message);
    assert!(std::fs::read(&file).unwrap() == bytes, "examine changed the file");

    let done = doctor::repair(&home, &config).unwrap();
    assert_eq!(done.rebuilt, ["live"]);
    assert_eq!(done.remembered, ["idle"]);
    assert_eq!((done.lost, done.readable()), (Some(1), true));
    assert!(std::fs::read(&done.moved_to).unwrap() == bytes, "the damaged file was altered");
    assert!(!doctor::examine(&home, &config, None).damaged);
    let listed = reg.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].entry.project.as_str(), listed[0].entry.port), ("live", live));
    assert_eq!(listed[0].state, portd_store::State::Active);
    assert_eq!(reg.get("idle").unwrap(), idle, "the idle project lost its port");
    reg.get("bad").unwrap();
}

#[test]
fn doctor_names_a_newer_registry_and_repair_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("portd");
    let reg = Registry::open(&home, Config::default()).unwrap();
    reg.get("older").unwrap();
    let file = home.join(portd_store::REGISTRY_FILE);
    mark_newer(&file);
    let bytes = std::fs::read(&file).unwrap();
    let report = portd_store::doctor::examine(&home, &Config::default(), None);
    assert!(!report.damaged, "a newer registry is not damage");
    let err = report.first_error().unwrap();
    assert!(err.message.contains("written by a newer portd"), "{}", err.message);
    let e = portd_store::doctor::repair(&home, &Config::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Damaged);
    assert!(e.message().contains("written by a newer portd"), "{e}");
    assert!(std::fs::read(&file).unwrap() == bytes);
    assert_eq!(std::fs::read_dir(&home).unwrap().count(), 2, "files appeared");
}
