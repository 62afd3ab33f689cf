//! The persisted per-range bitmaps: kept with the `ports` index by every
//! write, checked by `doctor`, rebuilt by `--repair`, made by the first
//! write of a registry from before they existed, and the handle's mirror
//! of them never hands out a port another handle took meanwhile.

use portd_store::doctor::{self, Severity};
use portd_store::{Config, Owner, Project, Ranges, Registry};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use std::collections::HashSet;
use std::path::Path;

const BITMAPS: TableDefinition<&str, &[u8]> = TableDefinition::new("bitmaps");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

fn config(start: u16, end: u16) -> Config {
    let ranges =
        Ranges::from_raw(&[("t".into(), u32::from(start), u32::from(end), true)]).expect("range");
    Config { ranges, ..Config::default() }
}

fn errors(dir: &Path, config: &Config) -> Vec<String> {
    doctor::examine(dir, config, None)
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| format!("{f:?}"))
        .collect()
}

/// The stored row of range `t`, as (start, end, held ports).
fn row(dir: &Path) -> (u16, u16, Vec<u16>) {
    let db = redb::Database::open(dir.join("registry.redb")).expect("open");
    let rtx = db.begin_read().expect("read");
    let t = rtx.open_table(BITMAPS).expect("bitmaps table");
    let bytes = t.get("t").expect("get").expect("row of range t").value().to_vec();
    let start = u16::from_le_bytes([bytes[0], bytes[1]]);
    let end = u16::from_le_bytes([bytes[2], bytes[3]]);
    let mut held = Vec::new();
    for (w, chunk) in bytes[4..].chunks_exact(8).enumerate() {
        let word = u64::from_le_bytes(chunk.try_into().unwrap());
        for b in 0..64 {
            if word & (1 << b) != 0 {
                held.push(start + (w * 64 + b) as u16);
            }
        }
    }
    (start, end, held)
}

#[test]
fn every_write_keeps_the_row_equal_to_the_ports_held() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("portd");
    let cfg = config(26600, 26699);
    let reg = Registry::open(&dir, cfg.clone()).unwrap();
    reg.get_many(&["a", "b", "c", "d"]).unwrap();
    reg.get("e").unwrap();
    reg.release("b").unwrap();
    reg.acquire("f", Owner::this_process()).unwrap();
    let mut held: Vec<u16> = reg.list().unwrap().iter().map(|l| l.entry.port).collect();
    held.sort_unstable();
    drop(reg);
    assert_eq!(row(&dir), (26600, 26699, held), "the row is the set of ports held");
    assert!(errors(&dir, &cfg).is_empty());
}

#[test]
fn doctor_finds_a_row_that_disagrees_and_repair_rebuilds_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("portd");
    let cfg = config(26700, 26799);
    let reg = Registry::open(&dir, cfg.clone()).unwrap();
    let port = reg.get("a").unwrap();
    drop(reg);
    // Clear the held port's bit behind portd's back.
    {
        let db = redb::Database::open(dir.join("registry.redb")).unwrap();
        let wtx = db.begin_write().unwrap();
        {
            let mut t = wtx.open_table(BITMAPS).unwrap();
            let mut bytes = t.get("t").unwrap().unwrap().value().to_vec();
            let i = usize::from(port - 26700);
            bytes[4 + i / 8] &= !(1 << (i % 8));
            t.insert("t", bytes.as_slice()).unwrap();
        }
        wtx.commit().unwrap();
    }
    let found = errors(&dir, &cfg);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0]
            .contains(&format!("bitmap of range `t` marks port {port} free; an entry holds it")),
        "{found:?}"
    );
    doctor::repair(&dir, &cfg).expect("repair");
    assert!(errors(&dir, &cfg).is_empty(), "{:?}", errors(&dir, &cfg));
    // The idle entry was kept as history; its next `get` brings it back,
    // and the row with it.
    let reg = Registry::open(&dir, cfg.clone()).unwrap();
    assert_eq!(reg.get("a").unwrap(), port);
    drop(reg);
    assert_eq!(row(&dir).2, vec![port]);
    assert!(errors(&dir, &cfg).is_empty());
}

#[test]
fn a_registry_from_before_the_bitmaps_gets_them_at_its_first_write() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("portd");
    let cfg = config(26800, 26899);
    let reg = Registry::open(&dir, cfg.clone()).unwrap();
    let a = reg.get("a").unwrap();
    drop(reg);
    // What a schema-1 registry looks like: no bitmaps, no generation.
    {
        let db = redb::Database::open(dir.join("registry.redb")).unwrap();
        let wtx = db.begin_write().unwrap();
        wtx.delete_table(BITMAPS).unwrap();
        {
            let mut meta = wtx.open_table(META).unwrap();
            meta.insert("schema", 1).unwrap();
            meta.remove("generation").unwrap();
        }
        wtx.commit().unwrap();
    }
    let reg = Registry::open(&dir, cfg.clone()).unwrap();
    assert_eq!(reg.get("a").unwrap(), a, "read as it was");
    let b = reg.get("b").unwrap();
    assert_ne!(a, b);
    drop(reg);
    let db = redb::Database::open(dir.join("registry.redb")).unwrap();
    let schema =
        db.begin_read().unwrap().open_table(META).unwrap().get("schema").unwrap().unwrap().value();
    drop(db);
    // Schema 2: the bitmaps; schema 3 only once a managed server is stored.
    assert_eq!(schema, 2);
    let mut want = vec![a, b];
    want.sort_unstable();
    assert_eq!(row(&dir).2, want);
    assert!(errors(&dir, &cfg).is_empty());
}

#[test]
fn a_handle_never_hands_out_a_port_another_handle_took_since_its_last_write() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("portd");
    // A range of 3: every port is contended.
    let cfg = config(26900, 26902);
    let one = Registry::open(&dir, cfg.clone()).unwrap();
    let two = Registry::open(&dir, cfg.clone()).unwrap();
    // Leases, so that nothing is idle and evictable.
    let me = Owner::this_process();
    let a = one.acquire("a", me).unwrap().entry.port; // `one`'s mirror is synced here
    let b = two.acquire("b", me).unwrap().entry.port; // `one` does not know of `b`
    let c = one.acquire("c", me).unwrap().entry.port; // must not be `b`
    let all: HashSet<u16> = [a, b, c].into();
    assert_eq!(all.len(), 3, "{a} {b} {c}");
    two.release_many(&[Project::name("a").unwrap()], true).unwrap();
    // `one` learns that `a`'s port is free again, and that the range is
    // otherwise full.
    let d = one.acquire("d", me).unwrap().entry.port;
    assert_eq!(d, a);
    let e = one.acquire("e", me).unwrap_err();
    assert_eq!(e.kind(), portd_store::ErrorKind::NoFreePort, "{e}");
}
