//! Bad input of every kind: each case fails with its exit code and one
//! clear `error:` line (plus an optional `hint:`), prints no data, never
//! panics, and leaves the registry as it was.

use crate::util::*;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

/// One bad invocation.
#[derive(Debug)]
struct Case {
    /// What is wrong, for failure messages.
    what: &'static str,
    args: Vec<OsString>,
    /// Extra environment; `{root}` is replaced by the test's directory.
    env: Vec<(&'static str, String)>,
    /// Config file contents written for this case only.
    config: Option<Vec<u8>>,
    code: i32,
    /// A clap usage error: may have more lines than `error:` and `hint:`.
    clap: bool,
    /// Fragments the stderr must contain.
    says: Vec<String>,
}

fn case(what: &'static str, args: &[&str], code: i32, says: &[&str]) -> Case {
    Case {
        what,
        args: args.iter().map(OsString::from).collect(),
        env: Vec::new(),
        config: None,
        code,
        clap: false,
        says: says.iter().map(|s| s.to_string()).collect(),
    }
}

/// A clap usage error (exit 2).
fn clap(what: &'static str, args: &[&str], says: &[&str]) -> Case {
    Case { clap: true, ..case(what, args, 2, says) }
}

/// A broken config file (exit 8); `says` must name the file's line and key.
fn config(what: &'static str, text: impl Into<Vec<u8>>, says: &[&str]) -> Case {
    let mut says: Vec<&str> = says.to_vec();
    says.push("invalid configuration in `[ROOT]/portd/config.toml`");
    Case { config: Some(text.into()), ..case(what, &["get", "new-project"], 8, &says) }
}

/// A bad environment variable.
fn env_var(what: &'static str, var: &'static str, value: &str, code: i32, says: &[&str]) -> Case {
    let mut c = case(what, &["get", "new-project"], code, says);
    c.env.push((var, value.to_owned()));
    c
}

fn cases(seed_port: u16) -> Vec<Case> {
    let long = "a".repeat(129);
    // 71 characters, 141 bytes: within the limit, but not ASCII.
    let long_accented = format!("a{}", "é".repeat(70));
    let held = seed_port.to_string();
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let mut non_utf8 = case("a non-UTF-8 name", &["get"], 2, &["invalid UTF-8"]);
    non_utf8.args.push(OsString::from_vec(vec![b'a', 0xff, b'b']));
    non_utf8.clap = true;
    vec![
        // Project names.
        case("an empty name", &["get", ""], 2, &["the project name is empty", "hint: "]),
        case("a name starting with -", &["get", "--", "-x"], 2, &["starts with '-'"]),
        clap("a name that clap takes for a flag", &["get", "-x"], &["unexpected argument '-x'"]),
        case("a space", &["get", "a b"], 2, &["contains ' '"]),
        case("an @", &["get", "a@b"], 2, &["contains '@'"]),
        case("129 characters", &["get", &long], 2, &["129 characters", "128"]),
        case("a non-ASCII name", &["get", "é"], 2, &["'é'"]),
        case(
            "a long name with a non-ASCII character is refused for the character",
            &["get", &long_accented],
            2,
            &["contains 'é'"],
        ),
        case("a fullwidth letter", &["get", "ａpp"], 2, &["'ａ'"]),
        case("a leading dot", &["get", ".hidden"], 2, &["starts with '.'"]),
        case("a newline in a name stays on one line", &["get", "a\nb"], 2, &["'\\n'"]),
        case("an escape sequence", &["get", "\x1b[31mred"], 2, &["'\\u{1b}'"]),
        non_utf8,
        case("a bad name to show", &["show", "a@b"], 2, &["contains '@'"]),
        case("a bad name to env", &["env", "a b"], 2, &["contains ' '"]),
        case("release with one bad name", &["release", "seed-1", "a@b"], 2, &["contains '@'"]),
        case(
            "--dir that does not exist",
            &["get", "--dir", "/nonexistent/portd"],
            2,
            &["`/nonexistent/portd`"],
        ),
        case("--dir that is a file", &["get", "--dir", manifest], 2, &["is not a directory"]),
        clap("a name and --dir", &["get", "x", "--dir", "/tmp"], &["cannot be used with"]),
        // Ports.
        clap("--port 0", &["get", "new-project", "--port", "0"], &["port 0 is outside 1-65535"]),
        clap(
            "--port 70000",
            &["get", "new-project", "--port", "70000"],
            &["port 70000 is outside 1-65535"],
        ),
        clap(
            "--port abc",
            &["get", "new-project", "--port", "abc"],
            &["`abc` is not a port number"],
        ),
        clap("--port -1", &["get", "new-project", "--port", "-1"], &["-1"]),
        case(
            "an excluded (browser) port",
            &["get", "new-project", "--port", "4045"],
            2,
            &["port 4045 is excluded", "browsers"],
        ),
        case(
            "an excluded (well-known) port",
            &["get", "new-project", "--port", "4000"],
            2,
            &["port 4000 is excluded", "Phoenix"],
        ),
        case(
            "a port outside every range",
            &["get", "new-project", "--port", "80"],
            2,
            &["port 80 is outside every configured range", "hint: "],
        ),
        case(
            "a port outside the asked range",
            &["get", "new-project", "--port", "4100", "--range", "experimental"],
            2,
            &["not in range `experimental`"],
        ),
        case(
            "a port held by another project",
            &["get", "new-project", "--port", &held],
            5,
            &["is held by project `seed-1`", "portd release seed-1"],
        ),
        clap("check abc", &["check", "abc"], &["`abc` is not a port number"]),
        clap("check 0", &["check", "0"], &["port 0 is outside"]),
        clap("check 65536", &["check", "65536"], &["port 65536 is outside"]),
        clap("check nothing", &["check"], &["required"]),
        // Ranges, commands, pids.
        case(
            "an unknown range",
            &["get", "new-project", "--range", "nope"],
            2,
            &["unknown range `nope`", "primary, overflow, experimental"],
        ),
        case(
            "an empty range name",
            &["get", "new-project", "--range", ""],
            2,
            &["unknown range ``"],
        ),
        clap("an unknown command", &["frobnicate"], &["unrecognized subcommand 'frobnicate'"]),
        clap("flags but no command", &["--json"], &["requires a subcommand"]),
        clap("an unknown flag", &["get", "new-project", "--frob"], &["--frob"]),
        case(
            "--pid of no process",
            &["get", "new-project", "--pid", "999999999"],
            2,
            &["no running process with pid 999999999"],
        ),
        clap("--pid 0", &["get", "new-project", "--pid", "0"], &["`0` is not a process id"]),
        clap(
            "--pid beyond u32",
            &["get", "new-project", "--pid", "4294967296"],
            &["not a process id"],
        ),
        clap("--pid abc", &["get", "new-project", "--pid", "abc"], &["not a process id"]),
        clap("release without names", &["release"], &["required"]),
        clap(
            "release names and --idle",
            &["release", "seed-1", "--idle"],
            &["cannot be used with"],
        ),
        case("reset without --yes", &["reset"], 2, &["without `--yes`"]),
        clap("an unknown shell", &["completions", "nosh"], &["invalid value 'nosh'"]),
        case("show an unknown project", &["show", "nobody"], 4, &["unknown project `nobody`"]),
        case(
            "release an unknown project",
            &["release", "seed-2", "nobody"],
            4,
            &["unknown project `nobody`"],
        ),
        // Config files.
        config("malformed TOML", "idle_ttl = \"30d\n", &["line 1"]),
        config("an unknown key", "idle_ttl = \"7d\"\nbogus = 1\n", &["line 2", "`bogus`"]),
        config(
            "an unknown key in a range",
            "[[range]]\nname = \"a\"\nstart = 21000\nend = 21010\ncolour = 1\n",
            &["line 5", "`colour`"],
        ),
        config("a bad duration", "idle_ttl = \"5x\"\n", &["line 1", "`idle_ttl`", "unknown unit"]),
        config(
            "a duration without unit",
            "\nlock_timeout = \"10\"\n",
            &["line 2", "`lock_timeout`", "no unit"],
        ),
        config("a duration of the wrong type", "idle_ttl = 5\n", &["line 1", "string"]),
        config(
            "overlapping ranges",
            "[[range]]\nname = \"a\"\nstart = 21000\nend = 21100\n\
             [[range]]\nname = \"b\"\nstart = 21050\nend = 21200\n",
            &["line 5", "`range`", "`a` and `b` overlap"],
        ),
        config(
            "port 0 in a range",
            "[[range]]\nname = \"a\"\nstart = 0\nend = 10\n",
            &["line 3", "`start`", "port 0 is outside 1-65535"],
        ),
        config(
            "a port above 65535 in a range",
            "[[range]]\nname = \"a\"\nstart = 21000\nend = 70000\n",
            &["line 4", "`end`", "port 70000 is outside 1-65535"],
        ),
        config(
            "an empty range",
            "[[range]]\nname = \"a\"\nstart = 21010\nend = 21000\n",
            &["line 1", "`range`", "empty"],
        ),
        config(
            "a range defined twice",
            "[[range]]\nname = \"a\"\nstart = 21000\nend = 21010\n\
             [[range]]\nname = \"a\"\nstart = 22000\nend = 22010\n",
            &["line 5", "defined twice"],
        ),
        config(
            "a range without a name",
            "[[range]]\nstart = 21000\nend = 21010\n",
            &["line 1", "`name`"],
        ),
        config(
            "a bad exclude entry",
            "exclude = [4100, \"abc\"]\n",
            &["line 1", "`exclude`", "`abc`"],
        ),
        config("an exclude port above 65535", "exclude = [70000]\n", &["`exclude`", "70000"]),
        config("an exclude of the wrong type", "exclude = [true]\n", &["line 1"]),
        config("a non-UTF-8 file", b"idle_ttl = \"\xff\xfe\"\n".to_vec(), &["not UTF-8"]),
        // Environment.
        env_var(
            "PORTD_LOCK_TIMEOUT=abc",
            "PORTD_LOCK_TIMEOUT",
            "abc",
            8,
            &["`PORTD_LOCK_TIMEOUT`", "`abc` is not a duration"],
        ),
        env_var("PORTD_LOCK_TIMEOUT empty", "PORTD_LOCK_TIMEOUT", "", 8, &["`PORTD_LOCK_TIMEOUT`"]),
        env_var(
            "PORTD_IDLE_TTL=5x",
            "PORTD_IDLE_TTL",
            "5x",
            8,
            &["`PORTD_IDLE_TTL`", "unknown unit"],
        ),
        env_var(
            "PORTD_PORT=0",
            "PORTD_PORT",
            "0",
            8,
            &["`PORTD_PORT`", "port 0 is outside 1-65535"],
        ),
        env_var(
            "PORTD_PORT=abc",
            "PORTD_PORT",
            "abc",
            8,
            &["`PORTD_PORT`", "`abc` is not a port number"],
        ),
        env_var("PORTD_PORT excluded", "PORTD_PORT", "4045", 2, &["port 4045 is excluded"]),
        env_var(
            "PORTD_RANGE=nope",
            "PORTD_RANGE",
            "nope",
            8,
            &["`PORTD_RANGE`", "unknown range `nope`"],
        ),
        env_var(
            "PORTD_CONFIG missing",
            "PORTD_CONFIG",
            "/nonexistent/portd.toml",
            8,
            &[
                "cannot read configuration `/nonexistent/portd.toml`",
                "hint: fix or unset `PORTD_CONFIG`",
            ],
        ),
        env_var(
            "PORTD_CONFIG a directory",
            "PORTD_CONFIG",
            "{root}",
            8,
            &["cannot read configuration `[ROOT]`"],
        ),
    ]
}

/// Plain `portd`: the help, on stderr, as a usage error.
#[test]
fn no_arguments_prints_help_as_a_usage_error() {
    let env = Env::new();
    let out = env.run(&[]);
    assert_eq!((out.code, out.stdout.as_str()), (2, ""), "{out:#?}");
    assert!(out.stderr.contains("\nUsage: portd [OPTIONS] <COMMAND>\n"), "{out:#?}");
    assert!(out.stderr.contains("9  permission refused"), "{out:#?}");
    assert!(!env.home().exists(), "no registry is made for a usage error");
}

#[test]
fn bad_input_fails_cleanly_and_changes_nothing() {
    let env = Env::new();
    let seed_port = env.run(&["get", "seed-1"]).port();
    env.run(&["get", "seed-2"]).port();
    env.run(&["get", "seed-3:api"]).port();
    let before = env.ls_raw();
    assert_eq!(env.ls().len(), 3);

    let cases = cases(seed_port);
    assert!(cases.len() >= 60, "{} cases", cases.len());
    for c in &cases {
        if let Some(text) = &c.config {
            env.write_config(text);
        }
        let mut cmd = env.command(&c.args);
        for (k, v) in &c.env {
            cmd.env(k, v.replace("{root}", env.root().to_str().unwrap()));
        }
        let out = env.output(cmd);
        env.remove_config();

        // A failed `portd env` prints `false` for `eval` (and nothing else).
        let for_eval = c.args.iter().any(|a| a == "env") && !c.args.iter().any(|a| a == "--json");
        let out = if for_eval {
            assert_eq!(out.stdout, "false\n", "{}: {out:#?}", c.what);
            Output { stdout: String::new(), ..out }
        } else {
            out
        };
        let stderr = if c.clap {
            assert_eq!(c.code, 2);
            out.usage()
        } else {
            out.error(c.code)
        };
        assert_eq!(out.code, c.code, "{}: {out:#?}", c.what);
        for s in &c.says {
            assert!(stderr.contains(s.as_str()), "{}: stderr lacks `{s}`: {out:#?}", c.what);
        }
        assert_eq!(env.ls_raw(), before, "{}: the registry changed", c.what);
    }
    let line = format!(
        "bad input: {} cases, each its error and exit code, registry unchanged\n",
        cases.len()
    );
    std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes()).unwrap();
}

/// A malformed value in the config file names the file, line and key.
#[test]
fn config_type_errors_name_the_key() {
    let env = Env::new();
    for (text, key) in [
        ("idle_ttl = 5\n", "`idle_ttl`"),
        ("exclude = [true]\n", "`exclude`"),
        ("range = 5\n", "`range`"),
        ("[[range]]\nname = \"a\"\nstart = \"x\"\nend = 21010\n", "line 3: `start`"),
        ("lock_timeout = true\n", "line 1: `lock_timeout`: expected a duration"),
        ("exclude = [\n  4100,\n  [1],\n]\n", "`exclude`: expected a list"),
        ("[[range]]\nname = \"a\"\nstart = 21000\nend = 21010\nfallback = \"yes\"\n", "`fallback`"),
    ] {
        env.write_config(text);
        let out = env.run(&["get", "new-project"]);
        let err = out.error(8);
        assert!(err.contains(key), "{text:?}: {err}");
        assert!(!err.contains("untagged enum"), "{text:?}: {err}");
    }
}
