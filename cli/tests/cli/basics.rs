//! Everyday use: stable ports, every command's output, `--dir`, `reset`.

use crate::util::*;
use std::collections::BTreeSet;

#[test]
fn get_is_stable_in_primary_and_bindable() {
    let env = Env::new();
    let first = env.run(&["get", "myapp"]).port();
    let second = env.run(&["get", "myapp"]).port();
    assert_eq!(first, second);
    assert!((4000..=4999).contains(&first), "{first} is not in the primary range");
    let listener = bind_v4_loopback(first)
        .unwrap_or_else(|e| panic!("port {first} given by portd cannot be bound: {e}"));
    drop(listener);
    // A third time, after a server used it: still the same.
    assert_eq!(env.run(&["get", "myapp"]).port(), first);
}

#[test]
fn fifty_projects_get_fifty_ports() {
    let env = Env::new();
    let ports: Vec<u16> =
        (0..50).map(|i| env.run(&["get", &format!("fifty-{i}")]).port()).collect();
    let distinct: BTreeSet<u16> = ports.iter().copied().collect();
    assert_eq!(distinct.len(), 50, "{ports:?}");
    assert!(ports.iter().all(|p| (4000..=4999).contains(p)), "{ports:?}");
    let listed = env.ls();
    assert_eq!(listed.len(), 50);
    for (i, port) in ports.iter().enumerate() {
        let name = format!("fifty-{i}");
        let e = listed.iter().find(|e| e.project == name).expect("listed");
        assert_eq!((e.port, e.key.as_str(), e.state.as_str()), (*port, name.as_str(), "idle"));
    }
}

#[test]
fn json_outputs_parse() {
    let env = Env::new();

    let got: GetJson = env.run(&["get", "jsonapp", "--json"]).json();
    assert_eq!((got.project.as_str(), got.key.as_str()), ("jsonapp", "jsonapp"));
    assert_eq!((got.range.as_str(), got.fresh, got.moved_from), ("primary", true, None));
    assert_eq!((got.pid, got.child_pid, &got.command), (None, None, &None));
    assert!(got.created.as_deref().is_some_and(|c| c.ends_with('Z') && c.len() == 20));
    let again: GetJson = env.run(&["get", "jsonapp", "--json"]).json();
    assert_eq!((again.port, again.fresh), (got.port, false));
    assert_eq!(env.run(&["get", "jsonapp"]).port(), got.port);

    let ls: Vec<EntryJson> = env.run(&["ls", "--json"]).json();
    assert_eq!(ls.len(), 1);
    assert_eq!(
        (ls[0].port, ls[0].state.as_str(), ls[0].created.as_ref()),
        (got.port, "idle", got.created.as_ref())
    );

    let shown: EntryJson = env.run(&["show", "jsonapp", "--json"]).json();
    assert_eq!(shown, ls[0]);

    let e: EnvJson = env.run(&["env", "jsonapp", "--json"]).json();
    let p = got.port.to_string();
    assert_eq!(
        e,
        EnvJson {
            PORT: p.clone(),
            PORTD_PORT: p,
            PORTD_PROJECT: "jsonapp".into(),
            PORTD_PROJECT_KEY: "jsonapp".into()
        }
    );

    let st: StatusJson = env.run(&["status", "--json"]).json();
    assert_eq!(st.registry, "[ROOT]/home/registry.redb");
    assert!(st.file_bytes > 0);
    assert_eq!(st.outside_ranges, 0);
    let names: Vec<_> =
        st.ranges.iter().map(|r| (r.name.as_str(), r.start, r.end, r.fallback)).collect();
    assert_eq!(
        names,
        [
            ("primary", 4000, 4999, true),
            ("overflow", 10000, 14999, true),
            ("experimental", 15000, 19999, false)
        ]
    );
    let primary = &st.ranges[0];
    assert_eq!((primary.used, primary.active, primary.idle), (1, 0, 1));
    assert!(primary.usable < 1000 && primary.usable > 900, "{primary:?}");

    let cfg: ConfigJson = env.run(&["config", "--json"]).json();
    assert_eq!(cfg.home, Sourced { value: "[ROOT]/home".into(), source: "env PORTD_HOME".into() });
    assert_eq!(
        cfg.config_file,
        ConfigFileJson {
            value: Some("[ROOT]/portd/config.toml".into()),
            source: "default".into(),
            exists: false
        }
    );
    assert_eq!(cfg.ranges.source, "default");
    assert_eq!(cfg.ranges.value.len(), 3);
    assert_eq!(cfg.idle_ttl, Sourced { value: "30d".into(), source: "default".into() });
    assert_eq!(cfg.lock_timeout, Sourced { value: "10s".into(), source: "default".into() });
    assert_eq!((cfg.range.value, cfg.port.value), (None, None));
    assert!(cfg.exclude.value.is_empty());

    let checked: Vec<CheckJson> =
        env.run(&["check", &got.port.to_string(), "4045", "--json"]).json();
    assert_eq!(checked.len(), 2);
    let (held, bad) = (&checked[0], &checked[1]);
    assert_eq!(
        (held.port, held.project.as_deref(), held.state.as_deref()),
        (got.port, Some("jsonapp"), Some("idle"))
    );
    assert_eq!((held.free, held.range.as_deref(), held.owner_pid), (false, Some("primary"), None));
    assert!(!held.in_ephemeral_range);
    assert_eq!((bad.port, bad.free, bad.project.as_deref()), (4045, false, None));
    assert!(bad.excluded.as_deref().is_some_and(|x| x.contains("browser")), "{bad:?}");

    let cleaned: CleanupJson = env.run(&["cleanup", "--json"]).json();
    assert_eq!(cleaned, CleanupJson { reclaimed: vec![], expired: vec![] });

    let released: ReleaseJson = env.run(&["release", "jsonapp", "--json"]).json();
    assert_eq!(
        released.released,
        [ReleasedJson { project: "jsonapp".into(), key: "jsonapp".into(), port: got.port }]
    );
    assert_eq!(env.ls(), []);

    let reset: ResetJson = env.run(&["reset", "--yes", "--json"]).json();
    assert!(
        reset.backup.as_deref().is_some_and(|b| b.starts_with("[ROOT]/home/registry.redb.bak-")),
        "{reset:?}"
    );
}

#[test]
fn env_prints_export_lines_for_eval() {
    let env = Env::new();
    let port = env.run(&["get", "envapp:web"]).port();
    let out = env.run(&["env", "envapp:web"]);
    assert_eq!(
        out.ok(),
        format!(
            "export PORT={port}\nexport PORTD_PORT={port}\nexport PORTD_PROJECT=envapp:web\n\
             export PORTD_PROJECT_KEY=envapp:web\n"
        )
    );
}

/// `PORTD_PORT` pins the port for the project `PORTD_PROJECT` names; the
/// pair exported by `portd env web` must not pin other projects to web's
/// port in that shell.
#[test]
fn portd_port_pins_only_the_project_it_was_exported_for() {
    let env = Env::new();
    let web = env.run(&["get", "pin-web"]).port();
    let exported = [("PORTD_PORT", &*web.to_string()), ("PORTD_PROJECT", "pin-web")]
        .map(|(k, v)| (k, v.to_owned()));
    let vars: Vec<(&str, &str)> = exported.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let api = env.run_env(&["get", "pin-api"], &vars).port();
    assert_ne!(api, web, "another project is not pinned to web's port");
    assert_eq!(env.run_env(&["get", "pin-web"], &vars).port(), web);
    // Set on its own, it pins whatever project the call is for. (A port
    // just released is free of entries; the registry probed it bindable.)
    let free = env.run(&["get", "pin-spare"]).port();
    assert_eq!(env.run(&["release", "pin-spare"]).code, 0);
    let out = env.run_env(&["get", "pin-api"], &[("PORTD_PORT", &free.to_string())]);
    let moved =
        format!("moved `pin-api` from port {api} to {free} (`PORTD_PORT` pins another port)\n");
    assert_eq!((out.code, out.stdout, out.stderr), (0, format!("{free}\n"), moved));
    assert_eq!(env.run(&["get", "pin-api"]).port(), free, "the pinned port is kept");
    // And a pin for another port of web's own is refused as any --port would be.
    let out = env.run_env(
        &["get", "pin-web"],
        &[("PORTD_PORT", &free.to_string()), ("PORTD_PROJECT", "pin-web")],
    );
    assert!(
        out.error(5).contains(&format!("port {free} is held by project `pin-api`")),
        "{out:#?}"
    );
}

#[test]
fn ls_prints_a_table_with_a_header() {
    let env = Env::new();
    let empty = env.run(&["ls"]);
    assert_eq!(
        (empty.code, empty.stdout.as_str(), empty.stderr.as_str()),
        (0, "", "no projects yet: `portd get NAME` allocates one\n")
    );
    let port = env.run(&["get", "tableapp"]).port();
    let out = env.run(&["ls"]);
    let text = out.ok();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["PROJECT", "PORT", "RANGE", "STATE", "PID", "COMMAND", "LAST", "USED", "SERVER"]
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[..6], ["tableapp", &port.to_string(), "primary", "idle", "-", "-"]);
    // Last used, then the server column (`-`: not a defined server).
    assert!(lines[1].ends_with(" ago     -"), "{text}");
    // Columns line up.
    assert_eq!(lines[0].find("PORT"), lines[1].find(&port.to_string()));
}

#[test]
fn show_unknown_project_is_exit_4() {
    let env = Env::new();
    env.run(&["get", "known"]).port();
    let out = env.run(&["show", "unknown"]);
    assert_eq!(
        out.error(4),
        "error: unknown project `unknown`\nhint: `portd ls` lists the projects that have a port\n"
    );
}

#[test]
fn release_is_all_or_nothing() {
    let env = Env::new();
    let a = env.run(&["get", "rel-a"]).port();
    let before = env.ls_raw();
    let out = env.run(&["release", "rel-a", "rel-b"]);
    assert_eq!(
        out.error(4),
        "error: unknown project `rel-b`\nhint: `portd ls` lists the projects that have a port\n"
    );
    assert_eq!(env.ls_raw(), before);
    assert_eq!(
        env.ls().iter().map(|e| (e.project.as_str(), e.port)).collect::<Vec<_>>(),
        [("rel-a", a)]
    );

    let out = env.run(&["release", "rel-a"]);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (0, "", format!("released `rel-a` (port {a})\n").as_str())
    );
    assert_eq!(env.ls(), []);
    // Released projects are remembered, and come back to their port.
    let all: Vec<EntryJson> = env.run(&["ls", "--all", "--json"]).json();
    assert_eq!(
        all.iter().map(|e| (e.project.as_str(), e.port, e.state.as_str())).collect::<Vec<_>>(),
        [("rel-a", a, "released")]
    );
    assert_eq!(env.run(&["get", "rel-a"]).port(), a);
}

#[test]
fn reset_needs_yes_and_keeps_a_backup() {
    let env = Env::new();
    env.run(&["get", "resetapp"]).port();
    let before = env.ls_raw();
    let out = env.run(&["reset"]);
    assert_eq!(
        out.error(2),
        "error: refusing to empty the registry without `--yes`\n\
         hint: run `portd reset --yes`; the old registry is kept as a backup\n"
    );
    assert_eq!(env.ls_raw(), before);

    let out = env.run(&["reset", "--yes"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:#?}");
    let backups: Vec<String> = std::fs::read_dir(env.home())
        .unwrap()
        .map(|d| d.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("registry.redb.bak-"))
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(
        out.stderr,
        format!("registry emptied; the old one is kept at `[ROOT]/home/{}`\n", backups[0])
    );
    assert_eq!(env.ls(), []);
}

#[test]
fn completions_for_bash() {
    let env = Env::new();
    let out = env.run(&["completions", "bash"]);
    let script = out.ok();
    assert!(script.len() > 1000 && script.contains("portd"), "{script}");
    assert!(script.contains("release") && script.contains("--json"));
    assert!(!env.home().exists(), "completions must not touch the registry");
}

#[test]
fn dir_project_is_keyed_by_canonical_path_and_shown_by_base_name() {
    let env = Env::new();
    let web = env.root().join("projects").join("web");
    std::fs::create_dir_all(&web).unwrap();
    let link = env.root().join("link-to-web");
    std::os::unix::fs::symlink(&web, &link).unwrap();
    let canon = std::fs::canonicalize(&web).unwrap();
    let key = env.scrub(canon.to_str().unwrap());

    let got: GetJson = env.run(&["get", "--dir", link.to_str().unwrap(), "--json"]).json();
    assert_eq!((got.project.as_str(), got.key.as_str()), ("web", key.as_str()));
    // The same project however it is named: the real path, a symlink, `./`, or the cwd.
    assert_eq!(env.run(&["get", "--dir", web.to_str().unwrap()]).port(), got.port);
    let mut cmd = env.command(["get", "./web"]);
    cmd.current_dir(web.parent().unwrap());
    assert_eq!(env.output(cmd).port(), got.port);
    let mut cmd = env.command(["get"]);
    cmd.current_dir(&web);
    assert_eq!(env.output(cmd).port(), got.port);

    let ls = env.ls();
    assert_eq!(ls.len(), 1);
    assert_eq!((ls[0].project.as_str(), ls[0].key.as_str()), ("web", key.as_str()));
    let table = env.run(&["ls"]);
    assert!(table.ok().lines().nth(1).unwrap().starts_with("web "), "{table:#?}");
    let shown = env.run(&["show", "--dir", link.to_str().unwrap()]);
    let text = shown.ok();
    assert!(text.starts_with("project    web\ndirectory  "), "{text}");
    assert!(text.contains(&format!("\nport       {}\n", got.port)), "{text}");
}

#[test]
fn home_flag_is_the_same_as_portd_home() {
    let env = Env::new();
    let port = env.run(&["get", "homeapp"]).port();
    let mut cmd = env.command(["--home", env.home().to_str().unwrap(), "get", "homeapp"]);
    cmd.env_remove("PORTD_HOME");
    assert_eq!(env.output(cmd).port(), port);
    let mut cmd = env.command(["config", "--json", "--home", "home"]);
    cmd.env_remove("PORTD_HOME");
    let cfg: ConfigJson = env.output(cmd).json();
    assert_eq!(cfg.home, Sourced { value: "[ROOT]/home".into(), source: "flag --home".into() });
}

#[test]
fn help_lists_the_exit_codes() {
    let env = Env::new();
    let out = env.run(&["--help"]);
    let help = out.ok();
    for line in ["0  ok", "3  no free port", "6  registry busy", "9  permission refused"] {
        assert!(help.contains(line), "missing `{line}` in:\n{help}");
    }
    // Doc comments are not string literals: no stray backslashes.
    assert!(help.contains("`eval \"$(portd env)\"`"), "{help}");
    assert!(!help.contains("\\\""), "{help}");
    let v = env.run(&["--version"]);
    assert_eq!(v.ok(), format!("portd {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn quiet_hides_messages_but_not_data_or_errors() {
    let env = Env::new();
    let port = env.run(&["-q", "get", "quietapp"]).port();
    let out = env.run(&["-q", "release", "quietapp"]);
    assert_eq!((out.code, out.stdout.as_str(), out.stderr.as_str()), (0, "", ""));
    let out = env.run(&["-q", "show", "quietapp"]);
    out.error(4);
    assert_eq!(env.run(&["get", "quietapp", "-q"]).port(), port);
}
