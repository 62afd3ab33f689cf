//! `portd doctor [--repair]`: each finding with its fix, the exit code of
//! the first error, the registry file untouched unless `--repair` is asked
//! for a damaged one.

use crate::util::*;
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};

/// `doctor --json`, with its exit code.
fn doctor(env: &Env, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["doctor", "--json"];
    args.extend_from_slice(extra);
    let out = env.run(&args);
    out.no_panic();
    (out.code, serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}")))
}

/// The finding of `check` (the last one of that name), as (status, message, fix).
fn finding(report: &Value, check: &str) -> (String, String, Option<String>) {
    let f = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|f| f["check"] == check)
        .unwrap_or_else(|| panic!("no `{check}` finding in {report:#}"));
    (
        f["status"].as_str().unwrap().to_owned(),
        f["message"].as_str().unwrap().to_owned(),
        f["fix"].as_str().map(str::to_owned),
    )
}

fn statuses(report: &Value) -> Vec<(String, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (f["check"].as_str().unwrap().to_owned(), f["status"].as_str().unwrap().to_owned())
        })
        .collect()
}

fn sleeper() -> Child {
    Command::new("sleep").arg("60").stdout(Stdio::null()).spawn().unwrap()
}

/// The names in the registry directory, sorted.
fn listing(env: &Env) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(env.home())
        .unwrap()
        .map(|d| d.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn a_healthy_registry_passes_every_check_and_is_left_unchanged() {
    let env = Env::new();
    let (code, r) = doctor(&env, &[]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(finding(&r, "location").1, "no registry at `[ROOT]/home` yet (made on first use)");
    env.run(&["get", "doc-a"]).port();
    env.run(&["get", "doc-b"]).port();
    let before = fs::read(env.registry()).unwrap();
    let files = listing(&env);
    let (code, r) = doctor(&env, &[]);
    assert_eq!(code, 0, "{r:#}");
    let want = [
        "config",
        "ephemeral",
        "location",
        "filesystem",
        "touch",
        "schema",
        "integrity",
        "records",
        "servers",
        "ranges",
        "excluded",
        "stale",
        "bound",
    ];
    assert_eq!(
        statuses(&r),
        want.iter().map(|c| (c.to_string(), "ok".to_string())).collect::<Vec<_>>(),
        "{r:#}"
    );
    assert_eq!(finding(&r, "records").1, "2 entries decoded; index and entries agree");
    assert_eq!(finding(&r, "schema").1, "registry schema 3");
    assert_eq!(finding(&r, "servers").1, "no managed servers");
    assert_eq!(r["damaged"], false);
    assert!(fs::read(env.registry()).unwrap() == before, "doctor changed the registry");
    assert_eq!(listing(&env), files, "doctor left files behind");
    let human = env.run(&["doctor"]);
    assert!(human.ok().ends_with("no problems found\n"), "{human:?}");
}

#[test]
fn damage_is_found_reported_with_its_fix_and_left_alone() {
    let env = Env::new();
    env.run(&["get", "doc-seed"]).port();
    env.run(&["get", "doc-other"]).port();
    let real = fs::read(env.registry()).unwrap();
    let mut flipped = real.clone();
    let at = real.windows(9).position(|w| w == b"doc-other").expect("key bytes in the file");
    flipped[at + 4] = 0xff;
    for (what, bytes) in [
        ("garbage", (0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()),
        ("truncated", real[..real.len() / 2].to_vec()),
        ("empty", Vec::new()),
        ("a flipped key byte", flipped),
    ] {
        fs::write(env.registry(), &bytes).unwrap();
        let files = listing(&env);
        let (code, r) = doctor(&env, &[]);
        assert_eq!(code, 7, "{what}: {r:#}");
        let (status, msg, fix) = finding(&r, "integrity");
        assert_eq!(status, "error", "{what}");
        assert!(msg.starts_with("registry damaged: "), "{what}: {msg}");
        assert!(fix.unwrap().starts_with("run `portd doctor --repair`"), "{what}");
        assert_eq!(r["damaged"], true);
        assert!(fs::read(env.registry()).unwrap() == bytes, "{what}: file changed");
        assert_eq!(listing(&env), files, "{what}: files appeared");
    }
}

/// redb checksums its pages, so damage inside a page makes the whole file
/// unreadable: repair keeps it aside byte for byte and starts afresh. (The
/// salvage of readable files, with live leases rebuilt, is tested in
/// `store/tests/faults.rs`, where a record can be damaged on its own.)
#[test]
fn repair_moves_an_unreadable_file_aside_and_starts_afresh() {
    let env = Env::new();
    env.run(&["get", "doc-idle"]).port();
    env.run(&["get", "doc-other"]).port();
    let mut bytes = fs::read(env.registry()).unwrap();
    let at = bytes.windows(9).position(|w| w == b"doc-other").unwrap();
    bytes[at + 4] = 0xff;
    fs::write(env.registry(), &bytes).unwrap();
    assert_eq!(doctor(&env, &[]).0, 7);

    let out = env.run(&["doctor", "--repair"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("\nerror   integrity   registry damaged: "), "{out:?}");
    assert!(
        out.stderr.starts_with("moved the damaged registry to `[ROOT]/home/registry.redb.damaged-"),
        "{out:?}"
    );
    assert!(
        out.stderr.ends_with(
            "fresh registry: 0 running leases rebuilt, 0 idle projects remembered \
             (they get their old port back when it is free), \
             the file could not be read: its entries are lost\n"
        ),
        "{out:?}"
    );
    let aside: Vec<String> =
        listing(&env).into_iter().filter(|f| f.starts_with("registry.redb.damaged-")).collect();
    assert_eq!(aside.len(), 1, "{:?}", listing(&env));
    assert!(fs::read(env.home().join(&aside[0])).unwrap() == bytes, "the damaged file changed");

    // The fresh registry is healthy and empty; a second repair has nothing to do.
    assert_eq!(doctor(&env, &[]).0, 0);
    assert_eq!(env.ls().len(), 0);
    let out = env.run(&["doctor", "--repair"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("nothing to repair"), "{out:?}");
    assert_eq!(listing(&env).len(), 3, "{:?}", listing(&env));
}

#[test]
fn repair_leaves_a_healthy_registry_alone() {
    let env = Env::new();
    env.run(&["get", "doc-ok"]).port();
    let before = fs::read(env.registry()).unwrap();
    let out = env.run(&["doctor", "--repair"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(fs::read(env.registry()).unwrap() == before);
    assert_eq!(listing(&env), ["registry.lock", "registry.redb"]);
}

/// The touch log's type, owner and mode are checked as the registry
/// file's are; `--repair` removes one that portd would refuse.
#[test]
fn an_unsafe_touch_log_is_reported_and_repair_removes_it() {
    let env = Env::new();
    env.run(&["get", "doc-touch"]).port();
    env.run(&["get", "doc-touch"]).port();
    let log = env.home().join("registry.touch");
    let (code, r) = doctor(&env, &[]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(
        finding(&r, "touch"),
        ("ok".into(), "touch log: uses of 1 project not yet folded into the registry".into(), None)
    );
    fs::remove_file(&log).unwrap();
    let made = Command::new("mkfifo").arg(&log).status().unwrap();
    assert!(made.success());
    let before = fs::read(env.registry()).unwrap();
    let (code, r) = doctor(&env, &[]);
    assert_eq!(code, 9, "{r:#}");
    assert_eq!(
        finding(&r, "touch"),
        (
            "error".into(),
            "touch log `[ROOT]/home/registry.touch` is not a regular file (a FIFO)".into(),
            Some(
                "run `portd doctor --repair` to remove it, or remove it \
                 (`rm [ROOT]/home/registry.touch`); portd creates its own"
                    .into()
            )
        )
    );
    assert_eq!(r["damaged"], false);
    let human = env.run(&["doctor"]);
    assert_eq!(human.code, 9, "{human:?}");
    assert!(human.stdout.ends_with("1 problem, 0 warnings\n"), "{human:?}");

    let out = env.run(&["doctor", "--repair"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stderr,
        "removed the touch log `[ROOT]/home/registry.touch`, which is not a regular file (a FIFO)\n"
    );
    assert!(fs::symlink_metadata(&log).is_err());
    assert!(fs::read(env.registry()).unwrap() == before, "repair changed the registry");
    assert_eq!(doctor(&env, &[]).0, 0);
    assert_eq!(env.ls().len(), 1);

    // In a shared registry, the other users must be able to append.
    let shared = |args: &[&str]| {
        let mut cmd = env.command(args);
        cmd.env("PORTD_SHARED", "1");
        env.output(cmd)
    };
    fs::set_permissions(env.home(), fs::Permissions::from_mode(0o2770)).unwrap();
    fs::set_permissions(env.registry(), fs::Permissions::from_mode(0o660)).unwrap();
    shared(&["get", "doc-touch"]).port();
    assert_eq!(fs::metadata(&log).unwrap().permissions().mode() & 0o777, 0o660);
    fs::set_permissions(&log, fs::Permissions::from_mode(0o600)).unwrap();
    let out = shared(&["doctor", "--json"]);
    let r: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(out.code, 0, "{r:#}");
    assert_eq!(
        finding(&r, "touch"),
        (
            "warn".into(),
            "touch log `[ROOT]/home/registry.touch` is not writable by the group (mode 600): other users' uses are not recorded".into(),
            Some("run `chmod 660 [ROOT]/home/registry.touch`".into())
        )
    );
    fs::set_permissions(&log, fs::Permissions::from_mode(0o662)).unwrap();
    let out = shared(&["doctor", "--json"]);
    let r: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(out.code, 9, "{r:#}");
    let (status, msg, _) = finding(&r, "touch");
    assert_eq!(
        (status.as_str(), msg.as_str()),
        ("error", "touch log `[ROOT]/home/registry.touch` is writable by other users (mode 662)")
    );
    let out = shared(&["doctor", "--repair"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(fs::symlink_metadata(&log).is_err());
}

#[test]
fn stale_leases_and_foreign_listeners_are_warnings_with_fixes() {
    let env = Env::new();
    let mut gone = sleeper();
    env.run(&["get", "doc-dead", "--pid", &gone.id().to_string()]).port();
    gone.kill().unwrap();
    gone.wait().unwrap();
    let bound = env.run(&["get", "doc-bound"]).port();
    let _listener = bind_v4_loopback(bound).unwrap();
    let (code, r) = doctor(&env, &[]);
    assert_eq!(code, 0, "warnings alone exit 0: {r:#}");
    let (status, msg, fix) = finding(&r, "stale");
    assert_eq!(status, "warn");
    assert!(msg.starts_with("1 lease of dead processes (doc-dead)"), "{msg}");
    assert!(fix.unwrap().starts_with("run `portd cleanup`"));
    let (status, msg, _) = finding(&r, "bound");
    assert_eq!(status, "warn");
    assert_eq!(
        msg,
        format!("port {bound} (doc-bound) bound by a process that is not the project's")
    );
    let human = env.run(&["doctor"]).ok().to_owned();
    assert!(human.ends_with("0 problems, 2 warnings\n"), "{human}");
}

#[test]
fn configuration_ranges_and_permissions() {
    // A broken config is a finding (exit 8), and the other checks still run.
    let env = Env::new();
    env.run(&["get", "doc-c"]).port();
    env.write_config("idle_ttl = 12\n");
    let (code, r) = doctor(&env, &[]);
    assert_eq!(code, 8, "{r:#}");
    assert_eq!(finding(&r, "config").0, "error");
    assert_eq!(finding(&r, "records").0, "ok");

    // A range inside the kernel's ephemeral range, and entries outside
    // every range after a change of ranges.
    if let Ok(s) = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range") {
        let lo: u16 = s.split_whitespace().next().unwrap().parse().unwrap();
        env.write_config(format!("[[range]]\nname = \"high\"\nstart = {lo}\nend = {}\n", lo + 99));
        let (code, r) = doctor(&env, &[]);
        assert_eq!(code, 0, "{r:#}");
        let (status, msg, fix) = finding(&r, "ephemeral");
        assert_eq!(status, "warn");
        assert!(msg.starts_with("range `high` ("), "{msg}");
        assert!(fix.unwrap().starts_with(&format!("move the range below {lo}")));
        let (status, msg, _) = finding(&r, "ranges");
        assert_eq!(status, "warn");
        assert_eq!(msg, "1 entry outside every configured range: doc-c");
    }
    env.remove_config();

    // An unsafe directory: exit 9 with the fix, nothing else is opened.
    fs::set_permissions(env.home(), fs::Permissions::from_mode(0o777)).unwrap();
    let (code, r) = doctor(&env, &[]);
    assert_eq!(code, 9, "{r:#}");
    let (status, msg, fix) = finding(&r, "location");
    assert_eq!(status, "error");
    assert!(msg.ends_with("is writable by other users (mode 777)"), "{msg}");
    assert_eq!(fix.unwrap(), "run `chmod 700 [ROOT]/home`");
    assert!(!statuses(&r).iter().any(|(c, _)| c == "integrity"));
}

/// A repair that cannot write the new registry (here a file-size limit
/// that allows the copy to examine, not the new file) leaves the damaged
/// file in place, byte for byte, and no other file behind.
#[test]
fn a_failed_repair_leaves_the_damaged_file_in_place() {
    let env = Env::new();
    env.run(&["get", "doc-f"]).port();
    let bytes: Vec<u8> =
        (0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    fs::write(env.registry(), &bytes).unwrap();
    let files = listing(&env);
    let limit = format!("--fsize={}", bytes.len() + 4096);
    let out = env.output(env.wrapped(&["prlimit", &limit], ["doctor", "--repair"]));
    out.no_panic();
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.starts_with("error: cannot write the registry: File too large"), "{out:?}");
    assert!(fs::read(env.registry()).unwrap() == bytes, "the damaged file changed");
    assert_eq!(listing(&env), files, "files left behind: {out:?}");
    // Without the limit the repair goes through.
    assert_eq!(env.run(&["doctor", "--repair"]).code, 0);
    assert_eq!(env.run(&["doctor"]).code, 0);
}

/// When the damaged file cannot be read at all, the number of entries lost
/// is unknown: `lost` is null (not 0) beside `readable: false`.
#[test]
fn repair_json_reports_an_unknown_loss_as_null() {
    let env = Env::new();
    env.run(&["get", "doc-j1"]).port();
    env.run(&["get", "doc-j2"]).port();
    let bytes: Vec<u8> =
        (0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    fs::write(env.registry(), &bytes).unwrap();
    let (code, r) = doctor(&env, &["--repair"]);
    assert_eq!(code, 0, "{r:#}");
    let repaired = &r["repaired"];
    assert_eq!(repaired["readable"], false, "{r:#}");
    assert_eq!(repaired["lost"], Value::Null, "{r:#}");
    assert_eq!(repaired["rebuilt"], serde_json::json!([]), "{r:#}");
}

/// `--repair` keeps the managed servers' definitions (with their ports)
/// and says so; their states and events are dropped.
#[test]
fn repair_keeps_server_definitions_and_says_so() {
    let env = private_range(34440, 20);
    let port = env.run(&["add", "doc-api", "--", "python3", "-m", "http.server"]);
    assert_eq!(port.code, 0, "{port:?}");
    let port: u16 = port.stdout.trim().parse().unwrap();
    {
        // An event that does not decode: the file is damaged.
        let db = redb::Database::open(env.registry()).unwrap();
        let tx = db.begin_write().unwrap();
        let events: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("events");
        tx.open_table(events).unwrap().insert(1, &[1, 0xff][..]).unwrap();
        tx.commit().unwrap();
    }
    let (code, r) = doctor(&env, &[]);
    assert_eq!(code, 7, "{r:#}");
    assert!(finding(&r, "integrity").1.starts_with("registry damaged: event 1: "), "{r:#}");

    let out = env.run(&["doctor", "--repair"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.ends_with(
            "fresh registry: 0 running leases rebuilt, 0 idle projects remembered \
             (they get their old port back when it is free), 0 unreadable entries lost\n\
             kept 1 managed server definition; their recorded states and events are dropped\n"
        ),
        "{out:?}"
    );
    let (code, r) = doctor(&env, &[]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(
        finding(&r, "servers"),
        ("ok".into(), "1 server definition, 0 states and 0 events decoded".into(), None)
    );
    let show = env.run(&["show", "doc-api"]);
    let shown = show.ok();
    assert!(shown.contains(&format!("port       {port}\n")), "{shown}");
    assert!(shown.contains("runs       python3 -m http.server\n"), "{shown}");
}

/// `reset` starts over: definitions go too, and the backup keeps them.
#[test]
fn reset_drops_server_definitions_into_its_backup() {
    let env = private_range(34460, 20);
    assert_eq!(env.run(&["add", "doc-web", "--", "python3", "-m", "http.server"]).code, 0);
    let out = env.run(&["reset", "--yes", "--json"]);
    let backup: ResetJson = out.json();
    let backup = backup.backup.expect("a backup");
    let out = env.run(&["start", "doc-web"]);
    assert_eq!(
        out.error(4),
        "error: `doc-web` is not a defined server\nhint: define it first: `portd add doc-web -- COMMAND ARGS…`\n"
    );
    // Copied back, the backup is the registry as it was.
    fs::copy(backup.replace("[ROOT]", env.root().to_str().unwrap()), env.registry()).unwrap();
    assert!(env.run(&["show", "doc-web"]).ok().contains("runs       python3 -m http.server\n"));
}
