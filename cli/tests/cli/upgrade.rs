//! A registry from before managed servers (schema 2), written by the last
//! portd without them (`cli/tests/fixtures/registry-schema2.redb`, see the
//! README there), used by this one: reads change nothing, storing a server
//! upgrades it in place, nothing else does; a newer portd's registry is
//! refused and left as it is.
//!
//! The fixture's entries are in range `test` (34000–34499), the range of
//! these tests; new names get ports there too.

use crate::util::{EntryJson, Env};
use serde::Deserialize;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// The fixture's entries: (key, port), and the one whose owner is dead.
const OLD_ENTRIES: [(&str, u16); 5] = [
    ("web", 34021),
    ("api", 34379),
    ("docs:site", 34395),
    ("/tmp/portd-schema2/app", 34115),
    ("worker", 34159),
];
/// The released project, in history only.
const RELEASED: (&str, u16) = ("old-tool", 34147);

/// A world whose registry is a copy of the fixture, under the fixture's
/// range; its entries, made long ago, never expire here.
fn schema2_env() -> Env {
    let env = Env::new();
    env.write_config(
        "idle_ttl = \"36500d\"\n[[range]]\nname = \"test\"\nstart = 34000\nend = 34499\n",
    );
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/registry-schema2.redb");
    fs::create_dir(env.home()).unwrap();
    fs::set_permissions(env.home(), fs::Permissions::from_mode(0o700)).unwrap();
    fs::copy(fixture, env.registry()).unwrap();
    fs::set_permissions(env.registry(), fs::Permissions::from_mode(0o600)).unwrap();
    env
}

/// `doctor --json`.
#[derive(Debug, Deserialize)]
struct DoctorJson {
    findings: Vec<FindingJson>,
    damaged: bool,
}

#[derive(Debug, Deserialize)]
struct FindingJson {
    check: String,
    status: String,
    message: String,
}

/// Runs `doctor --json`, asserts it exits 0 (no errors), and returns the
/// findings.
#[track_caller]
fn doctor(env: &Env) -> DoctorJson {
    let d: DoctorJson = env.run(&["doctor", "--json"]).json();
    assert!(!d.damaged, "{d:#?}");
    d
}

impl DoctorJson {
    #[track_caller]
    fn message(&self, check: &str) -> &str {
        let f = self.findings.iter().find(|f| f.check == check);
        &f.unwrap_or_else(|| panic!("no `{check}` finding: {self:#?}")).message
    }

    /// The checks that did not pass, but for those about this machine
    /// (the test range lies in the kernel's ephemeral range).
    fn problems(&self) -> Vec<(&str, &str, &str)> {
        self.findings
            .iter()
            .filter(|f| f.status != "ok" && f.check != "ephemeral")
            .map(|f| (f.check.as_str(), f.status.as_str(), f.message.as_str()))
            .collect()
    }

    /// Asserts what doctor says of the fixture as it was made: its one
    /// dead lease, nothing else.
    #[track_caller]
    fn assert_clean(&self) {
        assert_eq!(
            self.problems(),
            [("stale", "warn", "1 lease of dead processes (worker)")],
            "{self:#?}"
        );
    }
}

const SCHEMA_2: &str = "registry schema 2 (written before managed servers): read as it is; \
                        the first `portd add` upgrades it to 3, which older portd versions refuse";

/// The fixture's entries as `ls --json` shows them, by key.
#[track_caller]
fn old_entries(ls: &[EntryJson]) -> Vec<EntryJson> {
    let mut out: Vec<EntryJson> =
        ls.iter().filter(|e| OLD_ENTRIES.iter().any(|(k, _)| *k == e.key)).cloned().collect();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

#[test]
fn reading_a_schema_2_registry_changes_nothing() {
    let env = schema2_env();
    let bytes = fs::read(env.registry()).unwrap();
    let before = env.ls_raw();
    let ls: Vec<EntryJson> = serde_json::from_str(&before).unwrap();
    let mut got: Vec<(&str, u16, &str, &str)> =
        ls.iter().map(|e| (e.key.as_str(), e.port, e.range.as_str(), e.state.as_str())).collect();
    got.sort();
    let mut want: Vec<(&str, u16, &str, &str)> =
        OLD_ENTRIES.iter().map(|&(k, p)| (k, p, "test", "idle")).collect();
    want.sort();
    assert_eq!(got, want, "{before}");
    assert!(ls.iter().all(|e| e.pid.is_none() && e.supervisor_pid.is_none()), "{before}");

    for args in [
        &["ls"][..],
        &["ls", "--all"],
        &["show", "web"],
        &["show", "--json", "worker"],
        &["status"],
        &["status", "--detailed", "--json"],
        &["check", "34021"],
        &["doctor"],
    ] {
        let out = env.run(args);
        assert_eq!(out.code, 0, "{args:?}: {out:#?}");
        out.no_panic();
        assert!(fs::read(env.registry()).unwrap() == bytes, "{args:?} changed the file");
    }
    let d = doctor(&env);
    assert_eq!(d.message("schema"), SCHEMA_2);
    assert_eq!(d.message("servers"), "no managed servers");
    assert_eq!(d.message("records"), "5 entries decoded; index and entries agree");
    d.assert_clean();
    assert_eq!(env.ls_raw(), before, "ls --json differs after the reads");
    assert!(fs::read(env.registry()).unwrap() == bytes, "the reads changed the file");
}

#[test]
fn add_upgrades_a_schema_2_registry_in_place() {
    let env = schema2_env();
    let inode = fs::metadata(env.registry()).unwrap().ino();
    let before = old_entries(&env.ls());
    assert_eq!(before.len(), OLD_ENTRIES.len());

    let out = env.run(&["add", "up-svc", "--", "python3", "-m", "http.server"]);
    let port = out.stdout.trim().parse::<u16>().unwrap_or_else(|_| panic!("{out:#?}"));
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (0, format!("defined `up-svc` on port {port}: python3 -m http.server\n").as_str()),
        "{out:#?}"
    );
    assert!((34000..=34499).contains(&port), "{port}");
    assert!(!OLD_ENTRIES.iter().any(|&(_, p)| p == port) && port != RELEASED.1, "{port}");

    assert_eq!(fs::metadata(env.registry()).unwrap().ino(), inode, "the file was replaced");
    let d = doctor(&env);
    assert_eq!(d.message("schema"), "registry schema 3", "{d:#?}");
    assert_eq!(d.message("servers"), "1 server definition, 0 states and 0 events decoded");
    assert_eq!(d.message("records"), "6 entries decoded; index and entries agree");
    d.assert_clean();

    // The old entries are as they were, the new one is there, and history
    // gives the released project its old port back.
    let ls = env.ls();
    assert_eq!(old_entries(&ls), before);
    let svc = ls.iter().find(|e| e.key == "up-svc").unwrap_or_else(|| panic!("{ls:#?}"));
    assert_eq!((svc.port, svc.state.as_str()), (port, "idle"));
    assert_eq!(env.run(&["get", RELEASED.0]).port(), RELEASED.1);
    for (key, p) in OLD_ENTRIES.iter().filter(|(k, _)| !k.starts_with('/')) {
        assert_eq!(env.run(&["get", key]).port(), *p, "{key}");
    }
    // Upgraded once: a second definition leaves the schema where it is.
    assert_eq!(env.run(&["add", "up-svc2", "--", "python3", "-m", "http.server"]).code, 0);
    let d = doctor(&env);
    assert_eq!(d.message("schema"), "registry schema 3");
    assert_eq!(fs::metadata(env.registry()).unwrap().ino(), inode, "the file was replaced");
}

/// Only storing a server upgrades: allocating, releasing, reclaiming and
/// refused server commands leave a schema-2 registry at schema 2 (an
/// older portd can still use it).
#[test]
fn commands_that_store_no_server_keep_schema_2() {
    let env = schema2_env();
    let port = env.run(&["get", "up-new"]).port();
    assert!((34000..=34499).contains(&port), "{port}");
    assert_eq!(env.run(&["get", "up-new"]).port(), port);
    let out = env.run(&["cleanup"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:#?}");
    assert_eq!(out.stderr, "reclaimed 1 lease of dead processes, dropped 0 expired idle entries\n");
    let out = env.run(&["release", "api"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:#?}");
    assert_eq!(out.stderr, "released `api` (port 34379)\n");
    let d = doctor(&env);
    assert_eq!(d.message("schema"), SCHEMA_2, "{d:#?}");
    assert_eq!(d.message("servers"), "no managed servers");
    assert!(d.problems().is_empty(), "{d:#?}");

    let bytes = fs::read(env.registry()).unwrap();
    for args in [&["start", "web"][..], &["stop", "web"], &["restart", "web"], &["rm", "web"]] {
        let out = env.run(args);
        assert_eq!(
            out.error(4),
            "error: `web` is not a defined server\nhint: define it first: `portd add web -- COMMAND ARGS…`\n",
            "{args:?}"
        );
        assert!(fs::read(env.registry()).unwrap() == bytes, "{args:?} changed the file");
    }
    assert_eq!(doctor(&env).message("schema"), SCHEMA_2);
}

/// Stamps the registry with the next schema version, as a newer portd would.
fn mark_newer(file: &Path) {
    let db = redb::Database::open(file).unwrap();
    let tx = db.begin_write().unwrap();
    {
        let meta: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
        tx.open_table(meta).unwrap().insert("schema", portd_store::SCHEMA_VERSION + 1).unwrap();
    }
    tx.commit().unwrap();
    db.close().unwrap();
}

/// A registry of the next schema, whether it began as the old fixture or
/// as one with a managed server, is refused by every command with exit 7
/// and left byte for byte as it was.
#[test]
fn a_newer_schema_is_refused_and_left_untouched() {
    let old = schema2_env();
    let new = schema2_env();
    let out = new.run(&["add", "up-newer", "--", "python3", "-m", "http.server"]);
    assert_eq!(out.code, 0, "{out:#?}");
    let want = format!(
        "error: registry was written by a newer portd (schema {}; this portd reads {})\n\
         hint: upgrade portd; the registry is left untouched\n",
        portd_store::SCHEMA_VERSION + 1,
        portd_store::SCHEMA_VERSION
    );
    for env in [&old, &new] {
        mark_newer(&env.registry());
        let bytes = fs::read(env.registry()).unwrap();
        let files = || {
            let mut f: Vec<_> = fs::read_dir(env.home())
                .unwrap()
                .map(|d| d.unwrap().file_name().into_string().unwrap())
                // The lock is made by the first command, whatever it finds.
                .filter(|n| n != portd_store::LOCK_FILE)
                .collect();
            f.sort();
            f
        };
        let listed = files();
        for args in [
            &["add", "up-newer", "--", "python3", "-m", "http.server"][..],
            &["add", "up-other", "--", "python3", "-m", "http.server"],
            &["start", "up-newer"],
            &["start", "web"],
            &["ls"],
            &["ls", "--json"],
            &["stop", "up-newer"],
            &["rm", "up-newer"],
            &["get", "web"],
            &["get", "up-brand-new"],
        ] {
            let out = env.run(args);
            assert_eq!(out.error(7), want, "{args:?}");
            assert!(fs::read(env.registry()).unwrap() == bytes, "{args:?} changed the file");
            assert_eq!(files(), listed, "{args:?} left files behind");
        }
    }
}
