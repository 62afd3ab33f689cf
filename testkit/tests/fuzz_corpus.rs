//! The fuzz targets' saved corpus (`fuzz/corpus/<target>/`), replayed as
//! plain tests through the same checks the targets run (`portd_testkit`),
//! so that every seed and every fixed crash stays covered without
//! cargo-fuzz.

use portd_testkit::alloc_meter::{self, Meter};

#[global_allocator]
static METER: Meter = Meter;

use std::path::PathBuf;

/// Every file of a target's corpus, by name.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|f| {
            let path = f.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus in {}", dir.display());
    files
}

/// Runs `check` on each file of `target`'s corpus, naming the file that fails.
fn replay(target: &str, check: impl Fn(&[u8])) {
    for (name, bytes) in corpus(target) {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&bytes)));
        if let Err(p) = r {
            let msg = p.downcast_ref::<String>().cloned().unwrap_or_default();
            panic!("fuzz/corpus/{target}/{name}: {msg}");
        }
    }
}

#[test]
fn record_decode() {
    replay("record_decode", alloc_meter::check_record);
}

#[test]
fn definition_decode() {
    replay("definition_decode", |b| {
        alloc_meter::check_server_record(portd_testkit::ServerRecord::Definition, b)
    });
}

#[test]
fn server_state_decode() {
    replay("server_state_decode", |b| {
        alloc_meter::check_server_record(portd_testkit::ServerRecord::State, b)
    });
}

#[test]
fn event_decode() {
    replay("event_decode", |b| {
        alloc_meter::check_server_record(portd_testkit::ServerRecord::Event, b)
    });
}

#[test]
fn config_parse() {
    replay("config_parse", portd_testkit::config);
}

#[test]
fn project_name() {
    replay("project_name", portd_testkit::project_name);
}

#[test]
fn arguments() {
    replay("arguments", portd_testkit::arguments);
}

#[test]
fn http_requests() {
    replay("http_requests", portd_testkit::http_requests);
}

#[test]
fn registry_model() {
    replay("registry_model", |bytes| {
        let dir = tempfile::tempdir().unwrap();
        portd_testkit::registry(dir.path(), bytes);
    });
}

/// The meter works: a record test that measured nothing would pass vacuously.
#[test]
fn the_allocation_meter_counts() {
    let peak = alloc_meter::peak_bytes(|| {
        std::hint::black_box(vec![0u8; 100_000]);
    });
    assert!(peak >= 100_000, "{peak}");
}

/// The model runs `portd doctor`'s examination after every step: a port
/// index row that no entry backs (which every operation of the model
/// leaves alone, as the port is outside its ranges) fails the model.
#[test]
fn the_registry_model_fails_on_what_doctor_finds() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("portd");
    let reg = portd_store::Registry::open(&home, portd_store::Config::default()).unwrap();
    assert!(reg.list().unwrap().is_empty());
    drop(reg);
    let ports: redb::TableDefinition<u16, &str> = redb::TableDefinition::new("ports");
    let db = redb::Database::open(home.join(portd_store::REGISTRY_FILE)).unwrap();
    let tx = db.begin_write().unwrap();
    tx.open_table(ports).unwrap().insert(4000, "ghost").unwrap();
    tx.commit().unwrap();
    drop(db);
    let r = std::panic::catch_unwind(|| portd_testkit::registry(dir.path(), &[0]));
    let msg = r.expect_err("the model accepted a damaged index");
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("`portd doctor` finds errors"), "{msg}");
    assert!(msg.contains("port index names `ghost` for port 4000"), "{msg}");
}
