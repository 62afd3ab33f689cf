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
    {
        let db = redb::Database::open(&file).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let meta: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
            tx.open_table(meta).unwrap().insert("schema", portd_store::SCHEMA_VERSION + 1).unwrap();
        }
        tx.commit().unwrap();
        db.close().unwrap();
    }
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
