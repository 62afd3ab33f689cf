//! What the registry's commands mean: releasing and resetting around
//! running servers, least-recently-used eviction, excluded ports, moves and
//! what they say, `PORTD_RANGE`, and how `ls` shows entries.

use crate::util::*;

/// The backups `reset` left in the registry directory, sorted.
fn backups(env: &Env) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(env.home())
        .unwrap()
        .map(|d| d.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("registry.redb.bak-"))
        .collect();
    v.sort();
    v
}

#[test]
fn release_refuses_a_running_owner_without_force() {
    let env = Env::new();
    let owner = Sleeper::spawn();
    let pid = owner.pid();
    let live = env.run(&["get", "rel-live", "--pid", &pid.to_string()]).port();
    let idle = env.run(&["get", "rel-idle"]).port();
    let before = env.ls_raw();
    // All or nothing: the idle one named first is not released either.
    let out = env.run(&["release", "rel-idle", "rel-live"]);
    assert_eq!(
        out.error(5),
        format!(
            "error: project `rel-live` is in use by pid {pid} (`sleep 60`)\n\
             hint: stop it first, or pass `--force` to release it anyway (its server keeps the port until it stops)\n"
        )
    );
    assert_eq!(env.ls_raw(), before);
    // `--idle` releases only the idle one.
    let out = env.run(&["release", "--idle"]);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr),
        (0, "", format!("released `rel-idle` (port {idle})\n"))
    );
    // `--force` releases a running one.
    let out = env.run(&["release", "rel-live", "--force"]);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr),
        (0, "", format!("released `rel-live` (port {live})\n"))
    );
    assert!(env.ls().is_empty());
}

#[test]
fn reset_refuses_running_owners_without_force_and_keeps_five_backups() {
    let env = Env::new();
    let owner = Sleeper::spawn();
    let pid = owner.pid();
    env.run(&["get", "reset-live", "--pid", &pid.to_string()]).port();
    env.run(&["get", "reset-idle"]).port();
    let before = std::fs::read(env.registry()).unwrap();
    let out = env.run(&["reset", "--yes"]);
    assert_eq!(
        out.error(5),
        format!(
            "error: refusing to empty the registry: in use by running servers: `reset-live` (pid {pid} (`sleep 60`))\n\
             hint: stop them first, or pass `--force` to empty it anyway (they keep their ports until they stop)\n"
        )
    );
    assert!(std::fs::read(env.registry()).unwrap() == before, "a refused reset changed the file");
    assert_eq!(backups(&env), Vec::<String>::new());

    let first: ResetJson = env.run(&["reset", "--yes", "--force", "--json"]).json();
    assert!(env.ls().is_empty());
    // Seven resets in all: the newest five backups are kept.
    let mut made = vec![first.backup.unwrap()];
    for _ in 0..6 {
        let r: ResetJson = env.run(&["reset", "--yes", "--json"]).json();
        made.push(r.backup.unwrap());
    }
    let kept: Vec<String> =
        made[2..].iter().map(|b| b.strip_prefix("[ROOT]/home/").unwrap().to_owned()).collect();
    let mut want = kept.clone();
    want.sort();
    assert_eq!(backups(&env), want, "made: {made:?}");
}

/// A three-port range: using p1 again makes p2 the least recently used,
/// and the eviction says so.
#[test]
fn eviction_takes_the_least_recently_used_and_says_so() {
    let env = Env::new();
    let start = free_ports(22980, 3);
    let end = start + 2;
    env.write_config(format!("[[range]]\nname = \"lru\"\nstart = {start}\nend = {end}\n"));
    let p1 = env.run(&["get", "lru-1"]).port();
    let p2 = env.run(&["get", "lru-2"]).port();
    let p3 = env.run(&["get", "lru-3"]).port();
    assert_eq!(env.run(&["get", "lru-1"]).port(), p1);
    let out = env.run(&["get", "lru-4"]);
    assert_eq!((out.code, out.stdout.clone()), (0, format!("{p2}\n")), "{out:#?}");
    let note = format!("evicted `lru-2` (port {p2}, idle since ");
    assert!(
        out.stderr.starts_with(&note)
            && out.stderr.ends_with(") to make room: it was the least recently used\n")
            && out.stderr.lines().count() == 1,
        "{out:#?}"
    );
    // `ls` keeps the order it used; the next eviction takes lru-3.
    let out = env.run(&["get", "lru-5", "--json"]);
    assert!(out.stderr.starts_with("evicted `lru-3` "), "{out:#?}");
    let got: GetJson = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(got.port, p3);
    assert_eq!(
        got.evicted,
        [DroppedJson { project: "lru-3".into(), key: "lru-3".into(), port: p3 }]
    );
    let mut names: Vec<String> = env.ls().into_iter().map(|e| e.project).collect();
    names.sort();
    assert_eq!(names, ["lru-1", "lru-4", "lru-5"]);
}

#[test]
fn an_excluded_port_moves_on_the_next_get_and_doctor_reports_it() {
    let env = Env::new();
    let port = env.run(&["get", "excl"]).port();
    env.write_config(format!("exclude = [{port}]\n"));
    let out = env.run(&["doctor", "--json"]);
    assert_eq!(out.code, 0, "{out:#?}");
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let finding = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "excluded")
        .unwrap_or_else(|| panic!("no `excluded` finding: {report:#}"));
    assert_eq!(finding["status"], "warn", "{finding:#}");
    assert_eq!(
        finding["message"],
        format!("entry on excluded port: {port} (excl: listed in the configuration's `exclude`)")
            .as_str(),
        "{finding:#}"
    );
    assert!(finding["fix"].as_str().unwrap().contains("portd get NAME"), "{finding:#}");

    let out = env.run(&["get", "excl"]);
    let moved: u16 = out.stdout.trim().parse().unwrap_or_else(|_| panic!("{out:#?}"));
    assert_ne!(moved, port);
    assert_eq!(
        (out.code, out.stderr),
        (
            0,
            format!(
                "moved `excl` from port {port} to {moved} (its port is excluded: listed in the configuration's `exclude`)\n"
            )
        )
    );
    assert_eq!(env.run(&["get", "excl"]).port(), moved);
}

/// `--port P --move` on a free P says why it moved (not "bound"); a move is
/// not a fresh allocation in `--json`.
#[test]
fn a_move_says_why_and_is_not_fresh() {
    let env = Env::new();
    let port = env.run(&["get", "mv-a"]).port();
    // Two ports that are free (released, so held by no entry).
    let x = env.run(&["get", "mv-spare-1"]).port();
    let y = env.run(&["get", "mv-spare-2"]).port();
    assert_eq!(env.run(&["release", "mv-spare-1", "mv-spare-2"]).code, 0);
    let out = env.run(&["get", "mv-a", "--port", &x.to_string(), "--move"]);
    assert_eq!(
        (out.code, out.stdout, out.stderr),
        (
            0,
            format!("{x}\n"),
            format!("moved `mv-a` from port {port} to {x} (`--port` asked for another port)\n")
        )
    );
    let out = env.run(&["get", "mv-a", "--port", &y.to_string(), "--json"]);
    let got: GetJson = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!((got.port, got.fresh, got.moved_from), (y, false, Some(x)), "{out:#?}");
    let new: GetJson = env.run(&["get", "mv-b", "--json"]).json();
    assert_eq!((new.fresh, new.moved_from), (true, None));
}

#[test]
fn portd_range_chooses_the_range_of_new_allocations_only() {
    let env = Env::new();
    let port = env.run(&["get", "rng-old"]).port();
    assert!((4000..=4999).contains(&port));
    let exp = [("PORTD_RANGE", "experimental")];
    assert_eq!(env.run_env(&["get", "rng-old"], &exp).port(), port);
    let new = env.run_env(&["get", "rng-new"], &exp).port();
    assert!((15000..=19999).contains(&new), "{new}");
    // An exact port is granted in the range that holds it.
    let spare = env.run(&["get", "rng-spare"]).port();
    assert_eq!(env.run(&["release", "rng-spare"]).code, 0);
    let out = env.run_env(&["get", "rng-exact", "--port", &spare.to_string()], &exp);
    assert_eq!(out.port(), spare);
    let listed = env.ls();
    let range = |n: &str| listed.iter().find(|e| e.project == n).unwrap().range.clone();
    assert_eq!(
        (range("rng-old"), range("rng-new"), range("rng-exact")),
        ("primary".into(), "experimental".into(), "primary".into())
    );
}

/// Two directory projects called `app` are told apart in `ls`, and the
/// names `ls` shows address them.
#[test]
fn ls_tells_same_named_directories_apart_and_show_takes_its_names() {
    let env = Env::new();
    let (a, b) = (env.root().join("w/a/app"), env.root().join("w/b/app"));
    let mut ports = Vec::new();
    for d in [&a, &b] {
        std::fs::create_dir_all(d).unwrap();
        ports.push(env.run(&["get", "--dir", d.to_str().unwrap()]).port());
    }
    let named = env.run(&["get", "app"]).port();
    let mut rows: Vec<(String, u16)> = env.ls().into_iter().map(|e| (e.project, e.port)).collect();
    rows.sort();
    assert_eq!(
        rows,
        [("a/app".into(), ports[0]), ("app".into(), named), ("b/app".into(), ports[1])]
    );
    let table = env.run(&["ls"]);
    let first: Vec<&str> =
        table.ok().lines().skip(1).map(|l| l.split(' ').next().unwrap()).collect();
    let mut first = first;
    first.sort();
    assert_eq!(first, ["a/app", "app", "b/app"]);

    let shown: EntryJson = env.run(&["show", "a/app", "--json"]).json();
    assert_eq!((shown.key.as_str(), shown.port), ("[ROOT]/w/a/app", ports[0]));
    let shown: EntryJson = env.run(&["show", "app", "--json"]).json();
    assert_eq!((shown.key.as_str(), shown.port), ("app", named));
    assert_eq!(env.run(&["get", "b/app"]).port(), ports[1]);
    // The named project goes; then `app` names two directories.
    assert_eq!(env.run(&["release", "app"]).code, 0);
    let out = env.run(&["show", "app"]);
    assert_eq!(
        out.error(2),
        "error: `app` names 2 directory projects: `[ROOT]/w/a/app`, `[ROOT]/w/b/app`\n\
         hint: name one by more of its path (as `portd ls` shows it), or with `--dir`\n"
    );
    let out = env.run(&["release", "b/app"]);
    assert_eq!(
        (out.code, out.stderr),
        (0, format!("released `[ROOT]/w/b/app` (port {})\n", ports[1]))
    );
    // One left: its base name is enough again.
    assert_eq!(env.ls().iter().map(|e| e.project.as_str()).collect::<Vec<_>>(), ["app"]);
    let shown: EntryJson = env.run(&["show", "app", "--json"]).json();
    assert_eq!(shown.key, "[ROOT]/w/a/app");
}

/// `release` is destructive: a plain name means the named project only,
/// never a directory project that is shown by that name; `show` (which
/// changes nothing) still takes the name and says which directory it is.
#[test]
fn release_takes_a_directory_project_only_by_its_path() {
    let env = Env::new();
    let dir = env.root().join("x/web");
    std::fs::create_dir_all(&dir).unwrap();
    let dir_port = env.run(&["get", "--dir", dir.to_str().unwrap()]).port();
    let named = env.run(&["get", "web"]).port();
    let out = env.run(&["release", "web"]);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr),
        (0, "", format!("released `web` (port {named})\n"))
    );
    let before = env.ls_raw();
    let out = env.run(&["release", "web"]);
    assert_eq!(
        out.error(4),
        "error: unknown project `web`\n\
         hint: `web` is not a named project; to release the directory project shown as `web`, \
         name its directory: `portd release [ROOT]/x/web`\n"
    );
    assert_eq!(env.ls_raw(), before, "a failed release changed the registry");
    let out = env.run(&["release", "--json", "web"]);
    assert_eq!(out.code, 4, "{out:?}");
    // `show` takes the name it is shown by, and says which directory it is.
    let shown: EntryJson = env.run(&["show", "web", "--json"]).json();
    assert_eq!((shown.key.as_str(), shown.port), ("[ROOT]/x/web", dir_port));
    let human = env.run(&["show", "web"]);
    assert!(human.ok().starts_with("project    web\ndirectory  [ROOT]/x/web\n"), "{human:?}");
    // By enough of its path, or by its directory, it is released, with its key.
    let out = env.run(&["release", "x/web"]);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr),
        (0, "", format!("released `[ROOT]/x/web` (port {dir_port})\n"))
    );
    env.run(&["get", "--dir", dir.to_str().unwrap()]).port();
    let out = env.run(&["release", "--json", dir.to_str().unwrap()]);
    let json: ReleaseJson = out.json();
    assert_eq!(
        json.released,
        [ReleasedJson { project: "web".into(), key: "[ROOT]/x/web".into(), port: dir_port }]
    );
    assert!(env.ls().is_empty());
}

/// A record torn by a crash (or any junk at the end of the touch log) does
/// not run into the next one: no entry gets a last use in the future.
#[test]
fn a_torn_touch_record_never_dates_a_use_in_the_future() {
    use std::io::Write as _;
    let env = Env::new();
    env.run(&["get", "torn-a"]).port();
    env.run(&["get", "torn-b"]).port();
    env.run(&["get", "torn-b"]).port();
    let log = env.home().join("registry.touch");
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(b"1").unwrap();
    env.run(&["get", "torn-b"]).port();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let last_used = |env: &Env| {
        let shown: EntryJson = env.run(&["show", "torn-b", "--json"]).json();
        epoch_secs(&shown.last_used.unwrap())
    };
    let t = last_used(&env);
    assert!(t.abs_diff(now) <= 5, "last used {t}, now {now}");
    // Folded into the registry by the next write: still now.
    env.run(&["get", "torn-c"]).port();
    let t = last_used(&env);
    assert!(t.abs_diff(now) <= 5, "last used {t}, now {now}");
}

/// Seconds since the epoch of an RFC 3339 UTC time (`2025-11-25T00:00:00Z`).
fn epoch_secs(s: &str) -> u64 {
    let n = |r: std::ops::Range<usize>| s[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * 86400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)) as u64
}

#[test]
fn ls_all_shows_a_released_projects_range_as_json_does() {
    let env = Env::new();
    let port = env.run(&["get", "gone"]).port();
    assert_eq!(env.run(&["release", "gone"]).code, 0);
    let all: Vec<EntryJson> = env.run(&["ls", "--all", "--json"]).json();
    assert_eq!(
        all.iter()
            .map(|e| (e.project.as_str(), e.range.as_str(), e.state.as_str()))
            .collect::<Vec<_>>(),
        [("gone", "primary", "released")]
    );
    let table = env.run(&["ls", "--all"]);
    let row: Vec<&str> = table.ok().lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..4], ["gone", &port.to_string(), "primary", "released"]);
}

#[test]
fn ls_shows_no_pid_for_a_dead_owner() {
    let env = Env::new();
    let mut owner = Sleeper::spawn();
    let pid = owner.pid();
    env.run(&["get", "dead-owner", "--pid", &pid.to_string()]).port();
    let live = env.ls();
    assert_eq!((live[0].state.as_str(), live[0].pid), ("active", Some(pid)));
    owner.kill();
    let dead = env.ls();
    assert_eq!((dead[0].state.as_str(), dead[0].pid), ("idle", None));
    let table = env.run(&["ls"]);
    let row: Vec<&str> = table.ok().lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[3..5], ["idle", "-"]);
    let shown = env.run(&["show", "dead-owner"]);
    assert!(shown.ok().contains("\npid        -\n"), "{shown:#?}");
}

#[test]
fn cleanup_prints_its_summary_on_stderr() {
    let env = Env::new();
    env.run(&["get", "tidy"]).port();
    let out = env.run(&["cleanup"]);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (0, "", "reclaimed 0 leases of dead processes, dropped 0 expired idle entries\n")
    );
}
