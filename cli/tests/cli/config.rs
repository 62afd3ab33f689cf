//! The configuration: which files are read, which values are accepted, and
//! how each refusal is said (exit 8, the file or variable named, the
//! registry untouched).

use crate::util::*;
use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Runs `portd ARGS`, failing the test (instead of hanging it) if portd
/// has not exited within 10 s.
fn run_bounded(env: &Env, args: &[&str], extra: &[(&str, &str)]) -> Output {
    let mut cmd = env.command(args);
    cmd.envs(extra.iter().copied()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("portd {args:?} hung for 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: env.scrub(&String::from_utf8_lossy(&out.stdout)),
        stderr: env.scrub(&String::from_utf8_lossy(&out.stderr)),
    }
}

/// Asserts exit 8 with exactly `stderr`, and that no registry was made.
#[track_caller]
fn refused(env: &Env, out: &Output, stderr: &str) {
    out.error(8);
    assert_eq!(out.stderr, stderr, "{out:#?}");
    assert!(!env.registry().exists(), "a registry was made: {out:#?}");
}

#[test]
fn only_a_regular_config_file_is_read() {
    let env = Env::new();
    let path = env.config_path();
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let hint = "hint: fix or remove `[ROOT]/portd/config.toml`\n";

    // A FIFO: opening it must not wait for a writer.
    let made = std::process::Command::new("mkfifo").arg(&path).status().unwrap();
    assert!(made.success());
    let out = run_bounded(&env, &["get", "cfg-fifo"], &[]);
    refused(
        &env,
        &out,
        &format!(
            "error: cannot read configuration `[ROOT]/portd/config.toml`: it is a FIFO, not a regular file\n{hint}"
        ),
    );
    fs::remove_file(&path).unwrap();

    // A symlink to an endless device: refused before anything is read.
    std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
    let out = run_bounded(&env, &["get", "cfg-zero"], &[]);
    refused(
        &env,
        &out,
        &format!(
            "error: cannot read configuration `[ROOT]/portd/config.toml`: it is a character device, not a regular file\n{hint}"
        ),
    );
    fs::remove_file(&path).unwrap();

    // A directory.
    fs::create_dir(&path).unwrap();
    let out = run_bounded(&env, &["get", "cfg-dir"], &[]);
    refused(
        &env,
        &out,
        &format!(
            "error: cannot read configuration `[ROOT]/portd/config.toml`: it is a directory, not a regular file\n{hint}"
        ),
    );
    fs::remove_dir(&path).unwrap();

    // A symlink to a regular file is followed (dotfile managers make them).
    let real = env.root().join("real.toml");
    fs::write(&real, "idle_ttl = \"7d\"\n").unwrap();
    std::os::unix::fs::symlink(&real, &path).unwrap();
    let cfg: ConfigJson = env.run(&["config", "--json"]).json();
    assert_eq!(cfg.idle_ttl.value, "1w");
}

#[test]
fn a_config_file_over_one_mib_is_refused() {
    let env = Env::new();
    // Exactly 1 MiB of comments is fine; one byte more is not.
    let mut text = "# x\n".repeat((1 << 20) / 4).into_bytes();
    assert_eq!(text.len(), 1 << 20);
    env.write_config(&text);
    env.run(&["get", "cfg-big"]).port();
    fs::remove_dir_all(env.home()).unwrap();
    text.push(b'\n');
    env.write_config(&text);
    let out = env.run(&["get", "cfg-big"]);
    refused(
        &env,
        &out,
        "error: cannot read configuration `[ROOT]/portd/config.toml`: it is larger than 1024 KiB\n\
         hint: fix or remove `[ROOT]/portd/config.toml`\n",
    );
}

#[test]
fn portd_config_pointing_at_a_fifo_is_refused_naming_the_variable() {
    let env = Env::new();
    let fifo = env.root().join("cfg.fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let out = run_bounded(&env, &["get", "cfg-fifo"], &[("PORTD_CONFIG", fifo.to_str().unwrap())]);
    refused(
        &env,
        &out,
        "error: cannot read configuration `[ROOT]/cfg.fifo`: it is a FIFO, not a regular file\n\
         hint: fix or unset `PORTD_CONFIG`\n",
    );
}

#[test]
fn durations_that_break_the_tool_are_refused_with_the_allowed_range() {
    let env = Env::new();
    let file = "[ROOT]/portd/config.toml";
    for (text, says) in [
        ("idle_ttl = \"0s\"\n", "`idle_ttl`: `0s` is out of range (allowed: 1m to 36500d)"),
        ("idle_ttl = \"59s\"\n", "`idle_ttl`: `59s` is out of range (allowed: 1m to 36500d)"),
        (
            "lock_timeout = \"0ms\"\n",
            "`lock_timeout`: `0ms` is out of range (allowed: 100ms to 10m)",
        ),
        (
            "lock_timeout = \"99ms\"\n",
            "`lock_timeout`: `99ms` is out of range (allowed: 100ms to 10m)",
        ),
        (
            "lock_timeout = \"11m\"\n",
            "`lock_timeout`: `11m` is out of range (allowed: 100ms to 10m)",
        ),
    ] {
        env.write_config(text);
        let out = env.run(&["get", "cfg-ttl"]);
        refused(&env, &out, &format!("error: invalid configuration in `{file}` line 1: {says}\n"));
    }
    env.remove_config();
    for (var, value, allowed) in [
        ("PORTD_IDLE_TTL", "0s", "1m to 36500d"),
        ("PORTD_LOCK_TIMEOUT", "0ms", "100ms to 10m"),
        ("PORTD_LOCK_TIMEOUT", "20m", "100ms to 10m"),
    ] {
        let out = env.run_env(&["get", "cfg-ttl"], &[(var, value)]);
        refused(
            &env,
            &out,
            &format!(
                "error: invalid environment variable `{var}`: `{value}` is out of range (allowed: {allowed})\n"
            ),
        );
    }
    // The bounds themselves are accepted.
    env.write_config("idle_ttl = \"1m\"\nlock_timeout = \"100ms\"\n");
    let cfg: ConfigJson = env.run(&["config", "--json"]).json();
    assert_eq!((cfg.idle_ttl.value.as_str(), cfg.lock_timeout.value.as_str()), ("1m", "100ms"));
    let cfg: ConfigJson = env
        .run_env(
            &["config", "--json"],
            &[("PORTD_LOCK_TIMEOUT", "10m"), ("PORTD_IDLE_TTL", "36500d")],
        )
        .json();
    assert_eq!((cfg.idle_ttl.value.as_str(), cfg.lock_timeout.value.as_str()), ("36500d", "10m"));
}

#[test]
fn a_range_below_1024_is_refused_unless_allowed() {
    let env = Env::new();
    let range = "[[range]]\nname = \"low\"\nstart = 60\nend = 2000\n";
    env.write_config(range);
    let out = env.run(&["get", "cfg-low"]);
    refused(
        &env,
        &out,
        "error: invalid configuration in `[ROOT]/portd/config.toml` line 1: `range`: range `low` (60-2000) \
         reaches below port 1024, where only root can bind and the machine's own services live\n\
         hint: start the range at 1024 or above, or set `allow_privileged = true` if portd runs as root\n",
    );
    // doctor reports it as the configuration error it is.
    let out = env.run(&["doctor"]);
    assert_eq!(out.code, 8, "{out:#?}");
    assert!(out.stdout.contains("error   config "), "{out:#?}");

    // Allowed explicitly: the machine's privileged services stay excluded,
    // and doctor warns with the fix.
    env.write_config(format!("allow_privileged = true\n{range}"));
    let out = env.run(&["get", "cfg-low", "--port", "68"]);
    out.error(2);
    assert!(out.stderr.starts_with("error: port 68 is excluded"), "{out:#?}");
    assert!(out.stderr.contains("DHCP"), "{out:#?}");
    let out = env.run(&["doctor", "--json"]);
    assert_eq!(out.code, 0, "{out:#?}");
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let found = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "privileged")
        .unwrap_or_else(|| panic!("no privileged finding: {report:#}"));
    assert_eq!(found["status"], "warn");
    assert_eq!(
        found["message"],
        "range `low` (60-2000) reaches below port 1024 (`allow_privileged = true`): only root can \
         bind there, and the machine's own services live there"
    );
    let cfg: ConfigJson = env.run(&["config", "--json"]).json();
    assert_eq!(
        cfg.allow_privileged,
        Sourced { value: true, source: "file [ROOT]/portd/config.toml".into() }
    );
}

#[test]
fn toml_syntax_errors_are_reported_as_syntax_errors() {
    let env = Env::new();
    let file = "[ROOT]/portd/config.toml";
    for (text, says) in [
        ("idle_ttl = \"30d\n", "line 1: TOML syntax error: invalid basic string, expected `\"`"),
        ("idle_ttl = \"30d\"\nidle_ttl = \"7d\"\n", "line 2: TOML syntax error: duplicate key"),
        (
            "[[range]]\nname = \"a\"\nname = \"b\"\nstart = 21000\nend = 21010\n",
            "line 3: TOML syntax error: duplicate key",
        ),
    ] {
        env.write_config(text);
        let out = env.run(&["get", "cfg-syntax"]);
        refused(&env, &out, &format!("error: invalid configuration in `{file}` {says}\n"));
    }
}

#[test]
fn a_negative_port_in_a_range_is_named_as_it_is() {
    let env = Env::new();
    env.write_config("[[range]]\nname = \"a\"\nstart = -4\nend = 21010\n");
    let out = env.run(&["get", "cfg-neg"]);
    refused(
        &env,
        &out,
        "error: invalid configuration in `[ROOT]/portd/config.toml` line 3: `start`: port -4 is outside 1-65535\n",
    );
    env.write_config("[[range]]\nname = \"a\"\nstart = 21000\nend = 99999999999\n");
    let out = env.run(&["get", "cfg-neg"]);
    refused(
        &env,
        &out,
        "error: invalid configuration in `[ROOT]/portd/config.toml` line 4: `end`: port 99999999999 is outside 1-65535\n",
    );
}

#[test]
fn booleans_in_the_environment_follow_one_rule() {
    let env = Env::new();
    for (value, shared) in
        [("1", true), ("0", false), ("true", true), ("FALSE", false), ("True", true)]
    {
        let cfg: ConfigJson = env.run_env(&["config", "--json"], &[("PORTD_SHARED", value)]).json();
        assert_eq!(
            cfg.shared,
            Sourced { value: shared, source: "env PORTD_SHARED".into() },
            "{value}"
        );
    }
    for value in ["yes", "no", "2", "", "on"] {
        let out = env.run_env(&["get", "cfg-bool"], &[("PORTD_SHARED", value)]);
        refused(
            &env,
            &out,
            &format!(
                "error: invalid environment variable `PORTD_SHARED`: `{value}` is not a boolean (use 1, 0, true or false)\n"
            ),
        );
    }
}

#[test]
fn relative_paths_in_the_environment_are_refused() {
    let env = Env::new();
    let out = env.run_env(&["get", "cfg-rel"], &[("PORTD_HOME", "reg")]);
    out.error(8);
    assert_eq!(
        out.stderr,
        "error: invalid environment variable `PORTD_HOME`: `reg` is not an absolute path\n\
         hint: give the full path (e.g. `PORTD_HOME=$PWD/reg`), so that it does not depend on the current directory\n"
    );
    assert!(!env.root().join("reg").exists(), "a registry was made relative to the cwd");
    let out = env.run_env(&["get", "cfg-rel"], &[("PORTD_CONFIG", "./my.toml")]);
    refused(
        &env,
        &out,
        "error: invalid environment variable `PORTD_CONFIG`: `./my.toml` is not an absolute path\n\
         hint: give the full path (e.g. `PORTD_CONFIG=$PWD/my.toml`), so that it does not depend on the current directory\n",
    );
    // `--home` is a command-line path: relative to the current directory, as usual.
    let port = env.run(&["get", "cfg-rel", "--home", "flagged"]).port();
    assert!(env.root().join("flagged/registry.redb").exists());
    assert_eq!(env.run(&["get", "cfg-rel", "--home", "flagged"]).port(), port);
}

#[test]
fn config_json_gives_the_config_file_as_value_and_source() {
    let env = Env::new();
    env.write_config("idle_ttl = \"7d\"\n");
    let cfg: ConfigJson = env.run(&["config", "--json"]).json();
    assert_eq!(
        cfg.config_file,
        ConfigFileJson {
            value: Some("[ROOT]/portd/config.toml".into()),
            source: "default".into(),
            exists: true
        }
    );
    let other = env.root().join("other.toml");
    fs::write(&other, "lock_timeout = \"2s\"\n").unwrap();
    let cfg: ConfigJson =
        env.run_env(&["config", "--json"], &[("PORTD_CONFIG", other.to_str().unwrap())]).json();
    assert_eq!(
        cfg.config_file,
        ConfigFileJson {
            value: Some("[ROOT]/other.toml".into()),
            source: "env PORTD_CONFIG".into(),
            exists: true
        }
    );
    assert_eq!(cfg.lock_timeout.source, "file [ROOT]/other.toml");
}
