//! `portd env` and the `PORTD_PORT` pin it exports: the pin holds for
//! exactly the project it was exported for, explicit flags beat it, errors
//! it causes say so, and a failing `portd env` makes `eval` fail.

use crate::util::*;

/// Two directories called `app`: the pin exported in one does not touch
/// the other, nor a named project `app`, before or after a release.
#[test]
fn a_pin_applies_only_to_the_project_it_was_exported_for() {
    let env = Env::new();
    for d in ["a/app", "b/app"] {
        std::fs::create_dir_all(env.root().join(d)).unwrap();
    }
    let out = env.shell(
        r#"set -e
        cd a/app && eval "$(portd env)"
        echo "a=$PORT key=$PORTD_PROJECT_KEY"
        cd ../../b/app
        echo "b=$(portd get)"
        echo "named=$(portd get app)"
        cd ../..
        portd release ./a/app
        cd b/app
        echo "b_after=$(portd get)"
        echo "named_after=$(portd get app)"
        "#,
    );
    let vars: std::collections::BTreeMap<&str, &str> =
        out.stdout.split_whitespace().filter_map(|w| w.split_once('=')).collect();
    let port = |k: &str| -> u16 { vars[k].parse().unwrap_or_else(|_| panic!("{k}: {out:#?}")) };
    let (a, b, named) = (port("a"), port("b"), port("named"));
    assert_eq!(vars["key"], "[ROOT]/a/app", "{out:#?}");
    assert!(a != b && a != named && b != named, "{out:#?}");
    assert_eq!((port("b_after"), port("named_after")), (b, named), "{out:#?}");
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (0, format!("released `[ROOT]/a/app` (port {a})\n").as_str()),
        "{out:#?}"
    );
}

/// After `eval "$(portd env web)"`, `--move`, `--range` and `--port` do
/// what they say; an error the pin causes names `PORTD_PORT`.
#[test]
fn an_explicit_flag_beats_the_pin() {
    let env = Env::new();
    let api = env.run(&["get", "flag-api"]).port();
    let exported = env.run(&["env", "flag-web"]);
    let lines: Vec<&str> = exported.ok().lines().collect();
    let web: u16 = lines[0].strip_prefix("export PORT=").unwrap().parse().unwrap();
    let pin: Vec<(&str, String)> = lines
        .iter()
        .map(|l| l.strip_prefix("export ").unwrap().split_once('=').unwrap())
        .map(|(k, v)| (k, v.to_owned()))
        .collect();
    let pin: Vec<(&str, &str)> = pin.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(pin.iter().map(|p| p.0).collect::<Vec<_>>(), EXPORTED);

    // Its port taken by someone else: `--move` moves it.
    let listener = bind_v4_loopback(web).unwrap();
    let out = env.run_env(&["get", "flag-web", "--move"], &pin);
    assert_eq!(out.code, 0, "{out:#?}");
    let moved: u16 = out.stdout.trim().parse().unwrap();
    assert_ne!(moved, web);
    assert_eq!(
        out.stderr,
        format!(
            "moved `flag-web` from port {web} to {moved} (its port was bound by another process)\n"
        )
    );
    drop(listener);

    // `--range` moves it into that range.
    let out = env.run_env(&["get", "flag-web", "--range", "experimental"], &pin);
    assert_eq!(out.code, 0, "{out:#?}");
    let exp: u16 = out.stdout.trim().parse().unwrap();
    assert!((15000..=19999).contains(&exp), "{out:#?}");
    assert_eq!(
        out.stderr,
        format!(
            "moved `flag-web` from port {moved} to {exp} (range `experimental` was asked for)\n"
        )
    );

    // `--port` takes the port asked for.
    let free = env.run(&["get", "flag-spare"]).port();
    env.run(&["release", "flag-spare"]).code.eq(&0).then_some(()).unwrap();
    let out = env.run_env(&["get", "flag-web", "--port", &free.to_string()], &pin);
    assert_eq!(
        (out.code, out.stdout, out.stderr),
        (
            0,
            format!("{free}\n"),
            format!(
                "moved `flag-web` from port {exp} to {free} (`--port` asked for another port)\n"
            )
        )
    );

    // A pin to a port another project holds: the error names the pin, and
    // its hint the ways out that work.
    let before = env.ls_raw();
    let mut held = pin.clone();
    let api_port = api.to_string();
    held[0].1 = &api_port;
    held[1].1 = &api_port;
    let out = env.run_env(&["get", "flag-web"], &held);
    assert_eq!(
        out.error(5),
        format!(
            "error: `PORTD_PORT` pins a port this project cannot have: port {api} is held by project `flag-api`\n\
             hint: unset `PORTD_PORT` (exported by `portd env`), or pass `--port`, `--range` or `--move`, which take precedence\n"
        )
    );
    assert_eq!(env.ls_raw(), before);
    // And the way out the hint gives works.
    let out = env.run_env(&["get", "flag-web", "--move"], &held);
    assert_eq!((out.code, out.stdout.clone()), (0, format!("{free}\n")), "{out:#?}");
}

/// The variables `portd env` exports, in order.
const EXPORTED: [&str; 4] = ["PORT", "PORTD_PORT", "PORTD_PROJECT", "PORTD_PROJECT_KEY"];

/// The README's line, `eval "$(portd env x)" && npm start`, with a marker
/// command for npm: it runs when portd succeeds, and never when it fails.
#[test]
fn a_failing_env_makes_the_readmes_eval_line_fail() {
    let env = Env::new();
    let start = free_ports(22970, 1);
    let line = |name: &str| {
        format!(r#"eval "$(portd env {name})" && echo "started on PORT=$PORT" > started"#)
    };
    let started = env.root().join("started");

    let out = env.shell(&line("evalapp"));
    let port = env.run(&["get", "evalapp"]).port();
    assert_eq!((out.code, out.stdout.as_str(), out.stderr.as_str()), (0, "", ""), "{out:#?}");
    assert_eq!(std::fs::read_to_string(&started).unwrap(), format!("started on PORT={port}\n"));
    std::fs::remove_file(&started).unwrap();

    // A bad name, a bad flag, an invalid configuration, an exhausted range.
    let owner = Sleeper::spawn();
    let cases: [(&str, &[&str], &str, i32); 4] = [
        ("'a b'", &["a b"], "contains ' '", 2),
        ("evalapp --bogus", &["evalapp", "--bogus"], "unexpected argument '--bogus'", 2),
        ("evalapp", &["evalapp"], "`[ROOT]/portd/config.toml`", 8),
        ("evalapp-2", &["evalapp-2"], "no free port", 3),
    ];
    for (i, (args, direct, needle, code)) in cases.into_iter().enumerate() {
        match i {
            2 => env.write_config("idle_ttl = 5\n"),
            3 => {
                env.write_config(format!(
                    "[[range]]\nname = \"one\"\nstart = {start}\nend = {start}\n"
                ));
                env.run(&["get", "evalapp-1", "--pid", &owner.pid().to_string()]).port();
            }
            _ => {}
        }
        let out = env.shell(&line(args));
        assert!(out.code != 0 && out.stdout.is_empty(), "{args}: {out:#?}");
        assert!(out.stderr.starts_with("error: ") && out.stderr.contains(needle), "{out:#?}");
        assert!(!started.exists(), "{args}: the command ran after portd failed");
        // What `eval` was given: `false`, after the error on stderr.
        let mut argv = vec!["env"];
        argv.extend(direct);
        let direct = env.run(&argv);
        assert_eq!((direct.code, direct.stdout.as_str()), (code, "false\n"), "{direct:#?}");
        assert!(direct.stderr.starts_with("error: ") && direct.stderr.contains(needle));
    }
    // `--json` output is data for programs, never for `eval`: nothing on
    // stdout when it fails.
    let out = env.run(&["env", "evalapp-2", "--json"]);
    out.error(3);
}

/// The README's recommended form starts the command only when `portd env`
/// succeeded: after portd's own errors, and when portd is missing or killed
/// (no output at all), where a bare `eval "$(…)"` would run it.
#[test]
fn the_readmes_env_line_runs_the_command_only_after_success() {
    let env = Env::new();
    let line = |portd: &str, name: &str| {
        format!(r#"vars=$({portd} env {name}) && eval "$vars" && echo "PORT=$PORT" > started"#)
    };
    let started = env.root().join("started");
    let out = env.shell(&line("portd", "vars-app"));
    let port = env.run(&["get", "vars-app"]).port();
    assert_eq!((out.code, out.stdout.as_str(), out.stderr.as_str()), (0, "", ""), "{out:#?}");
    assert_eq!(std::fs::read_to_string(&started).unwrap(), format!("PORT={port}\n"));
    std::fs::remove_file(&started).unwrap();
    for (portd, name) in [
        ("portd", "'bad name'"),
        ("portd-not-installed", "vars-app"),
        ("sh -c 'kill -9 $$' portd", "vars-app"),
    ] {
        let out = env.shell(&line(portd, name));
        assert!(out.code != 0 && out.stdout.is_empty(), "{portd}: {out:#?}");
        assert!(!started.exists(), "{portd}: the command ran although portd failed");
    }
}
