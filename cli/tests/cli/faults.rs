//! Faults: a full disk (as a file-size limit), a registry directory whose
//! parent vanished, and the child's signal dispositions. Each gives a
//! clear error and a distinct exit code, and data that was there stays.

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
