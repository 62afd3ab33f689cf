//! Faults: a full disk (as a file-size limit), a read-only registry, a
//! registry directory whose parent vanished, and the child's signal
//! dispositions. Each gives a clear error and a distinct exit code, and
//! data that was there stays.

use crate::util::*;

/// Writes past `RLIMIT_FSIZE` fail like a full disk would (portd ignores
/// SIGXFSZ so that it gets the error instead of being killed).
#[test]
fn a_full_disk_is_an_error_and_loses_nothing() {
    let env = Env::new();
    for n in ["full-a", "full-b", "full-c"] {
        env.run(&["get", n]).port();
    }
    let before = env.ls_raw();
    let original = std::fs::read(env.registry()).unwrap();
    let size = original.len() as u64;
    let mut refused = 0;
    for limit in [0, 4096, size / 2, size] {
        for args in
            [&["get", "full-new"][..], &["release", "full-a"], &["cleanup"], &["reset", "--yes"]]
        {
            let out = env.output(env.wrapped(&["prlimit", &format!("--fsize={limit}")], args));
            out.no_panic();
            if out.code != 0 {
                refused += 1;
                let err = out.error(1);
                assert!(
                    err.starts_with("error: cannot write the registry: ")
                        || err.starts_with("error: registry I/O error: a write failed")
                        || err.starts_with("error: cannot create"),
                    "limit {limit}, {args:?}: {err}"
                );
                assert_eq!(env.ls_raw(), before, "limit {limit}, {args:?}: the registry changed");
            }
            // Start the next case from the same registry (a success changed
            // it, as it should; redb reuses free pages within the limit).
            std::fs::write(env.registry(), &original).unwrap();
        }
    }
    assert!(refused >= 4, "the file-size limit never bit");
}

#[test]
fn a_vanished_registry_parent_is_recreated_or_refused_cleanly() {
    let env = Env::new();
    let home = env.root().join("a/b/home");
    let home = home.to_str().unwrap();
    let first = env.run(&["--home", home, "get", "vanish"]).port();
    std::fs::remove_dir_all(env.root().join("a")).unwrap();
    let out = env.run(&["--home", home, "get", "vanish"]);
    // A new, empty registry: the project gets its stable preferred port.
    assert_eq!(out.port(), first);
}

/// portd ignores SIGXFSZ for itself only: a server started by `portd run`
/// gets the default action back, with and without `--fd`.
#[test]
fn run_children_get_default_signal_dispositions() {
    let env = Env::new();
    for fd in [&[][..], &["--fd"]] {
        let mut args = vec!["run", "sigs"];
        args.extend_from_slice(fd);
        args.extend_from_slice(&["--", "sh", "-c", "grep SigIgn /proc/$$/status"]);
        let out = env.run(&args);
        let mask =
            u64::from_str_radix(out.ok().trim().trim_start_matches("SigIgn:").trim(), 16).unwrap();
        assert_eq!(mask & (1 << (25 - 1)), 0, "SIGXFSZ ignored in the child ({fd:?}): {mask:x}");
    }
}

/// The registry directory on a read-only mount (a private mount namespace
/// with a read-only bind of it: read-only even for root). Reads answer;
/// every write is refused with exit 9 and the fix; nothing changes.
#[test]
fn a_read_only_registry_answers_reads_and_refuses_writes() {
    let env = Env::new();
    let a = env.run(&["get", "ro-a"]).port();
    env.run(&["get", "ro-b"]).port();
    let before = env.ls_raw();
    let bytes = std::fs::read(env.registry()).unwrap();
    let read_only = |args: &[&str]| {
        let mut cmd = env.wrapped(
            &[
                "unshare",
                "-m",
                "sh",
                "-c",
                "mount --bind \"$H\" \"$H\" && mount -o remount,bind,ro \"$H\" && exec \"$0\" \"$@\"",
            ],
            args,
        );
        cmd.env("H", env.home());
        env.output(cmd)
    };
    let probe = read_only(&["ls", "--json"]);
    if probe.code != 0 && probe.stderr.contains("unshare") {
        return skip("no mount namespaces here (not root, or a sandbox without them)");
    }
    assert_eq!(probe.ok(), before);
    assert_eq!(read_only(&["get", "ro-a"]).port(), a);
    const FIX: &str = "hint: make the registry directory and file writable, \
                       or point `PORTD_HOME` at a writable directory\n";
    for args in [&["get", "ro-new"][..], &["release", "ro-a"], &["cleanup"], &["release", "--idle"]]
    {
        let err = read_only(args).error(9).to_owned();
        assert_eq!(
            err,
            format!("error: cannot write the registry: Read-only file system (os error 30)\n{FIX}"),
            "{args:?}"
        );
    }
    let err = read_only(&["reset", "--yes"]).error(9).to_owned();
    assert!(err.starts_with("error: cannot create `[ROOT]/home/registry.redb.new-"), "{err}");
    assert!(err.ends_with(FIX), "{err}");
    let out = read_only(&["doctor"]);
    assert_eq!(out.code, 9, "{out:?}");
    assert!(out.stdout.contains("cannot be written: ports can be read, not allocated"), "{out:?}");
    assert_eq!(env.ls_raw(), before);
    assert!(std::fs::read(env.registry()).unwrap() == bytes, "the registry changed");
}
