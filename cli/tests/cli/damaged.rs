//! A damaged registry file is reported (exit 7) and left exactly as it is;
//! an unsafe registry location is refused (exit 9) and left as it is.

use crate::util::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Every command that opens the registry.
const COMMANDS: &[&[&str]] = &[
    &["get", "dmg-new"],
    &["get", "dmg-seed"],
    &["get", "dmg-seed", "--free"],
    &["env", "dmg-seed"],
    &["ls"],
    &["ls", "--all", "--json"],
    &["show", "dmg-seed"],
    &["release", "dmg-seed"],
    &["release", "--idle"],
    &["cleanup"],
    &["status", "--json"],
    &["check", "4100"],
];

/// A deterministic stream of bytes that is not a redb file.
fn garbage(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A registry with a few entries, closed; returns its bytes.
fn seeded(env: &Env) -> Vec<u8> {
    env.run(&["get", "dmg-seed"]).port();
    env.run(&["get", "dmg-other"]).port();
    fs::read(env.registry()).unwrap()
}

/// The names in a directory, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        fs::read_dir(dir).unwrap().map(|d| d.unwrap().file_name().into_string().unwrap()).collect();
    v.sort();
    v
}

#[test]
fn a_damaged_registry_is_reported_and_left_alone() {
    let real = seeded(&Env::new());
    let damage: Vec<(&str, Vec<u8>)> = vec![
        ("garbage bytes", garbage(5000)),
        ("truncated to a page", real[..4096].to_vec()),
        ("truncated to half", real[..real.len() / 2].to_vec()),
        ("truncated by one page", real[..real.len() - 4096].to_vec()),
        ("empty", Vec::new()),
        ("4096 zero bytes", vec![0; 4096]),
    ];
    for (what, bytes) in damage {
        let env = Env::new();
        seeded(&env);
        fs::write(env.registry(), &bytes).unwrap();
        let files = listing(&env.home());
        for args in COMMANDS {
            let out = env.run(args);
            let err = if args[0] == "env" { out.env_error(7) } else { out.error(7) };
            assert!(err.starts_with("error: registry damaged: "), "{what}, {args:?}: {err}");
            assert!(
                err.ends_with(
                    "\nhint: run `portd doctor` to inspect `[ROOT]/home/registry.redb`; \
                     the file is left as it is\n"
                ),
                "{what}, {args:?}: {err}"
            );
            assert!(fs::read(env.registry()).unwrap() == bytes, "{what}, {args:?}: file changed");
            assert_eq!(listing(&env.home()), files, "{what}, {args:?}: files appeared");
        }
        // Commands that do not open the registry still work.
        env.run(&["config", "--json"]).json::<ConfigJson>();
        env.run(&["completions", "zsh"]).ok();
    }
}

/// Damage found after the file was opened (here: a record's key bytes)
/// must leave the file as it was, as the hint says, for reads and writes.
#[test]
fn damage_found_after_opening_leaves_the_file_unchanged() {
    let env = Env::new();
    let real = seeded(&env);
    let mut found = 0;
    for at in real.windows(9).enumerate().filter(|(_, w)| w == b"dmg-other").map(|(i, _)| i) {
        let mut bytes = real.clone();
        bytes[at] = 0xff;
        // Reads open the file read-only; writes must not leave a trace either.
        for args in [
            &["ls", "--json"][..],
            &["show", "dmg-other"],
            &["get", "dmg-new"],
            &["release", "dmg-other"],
        ] {
            fs::write(env.registry(), &bytes).unwrap();
            let out = env.run(args);
            if out.code == 7 {
                found += 1;
                out.error(7);
                assert!(
                    fs::read(env.registry()).unwrap() == bytes,
                    "{args:?}: file changed ({out:?})"
                );
            }
        }
    }
    assert!(found > 0, "no corruption of a key was detected");
}

/// Mode, owner, type and (for files) contents of a path, without following
/// symlinks.
fn snapshot(p: &Path) -> (u32, u32, bool, Option<Vec<u8>>) {
    let md = fs::symlink_metadata(p).unwrap();
    let bytes = md.is_file().then(|| fs::read(p).unwrap());
    (md.mode(), md.uid(), md.file_type().is_symlink(), bytes)
}

#[test]
fn an_unsafe_registry_location_is_refused() {
    let root_user = is_root(&Env::new());
    struct Setup {
        what: &'static str,
        /// Makes the location unsafe; returns the paths to compare after.
        make: fn(&Env) -> Vec<std::path::PathBuf>,
        says: &'static str,
        root_only: bool,
    }
    let setups = [
        Setup {
            what: "a world-writable directory",
            make: |env| {
                fs::set_permissions(env.home(), fs::Permissions::from_mode(0o777)).unwrap();
                vec![env.home(), env.registry()]
            },
            says: "is writable by other users (mode 777)\nhint: run `chmod 700 [ROOT]/home`",
            root_only: false,
        },
        Setup {
            what: "a group-writable directory",
            make: |env| {
                fs::set_permissions(env.home(), fs::Permissions::from_mode(0o770)).unwrap();
                vec![env.home(), env.registry()]
            },
            says: "is writable by other users (mode 770)",
            root_only: false,
        },
        Setup {
            what: "a directory owned by another user",
            make: |env| {
                std::os::unix::fs::chown(env.home(), Some(65534), None).unwrap();
                vec![env.home(), env.registry()]
            },
            says: "registry directory `[ROOT]/home` is owned by uid 65534, not by you",
            root_only: true,
        },
        Setup {
            what: "a regular file instead of the directory",
            make: |env| {
                fs::remove_dir_all(env.home()).unwrap();
                fs::write(env.home(), b"not a directory").unwrap();
                vec![env.home()]
            },
            says: "registry directory `[ROOT]/home` is not a directory",
            root_only: false,
        },
        Setup {
            what: "a symlinked registry file",
            make: |env| {
                let elsewhere = env.root().join("elsewhere.redb");
                fs::rename(env.registry(), &elsewhere).unwrap();
                std::os::unix::fs::symlink(&elsewhere, env.registry()).unwrap();
                vec![env.registry(), elsewhere]
            },
            says: "registry file `[ROOT]/home/registry.redb` is a symbolic link",
            root_only: false,
        },
        Setup {
            what: "a dangling symlinked registry file",
            make: |env| {
                fs::remove_file(env.registry()).unwrap();
                let target = env.root().join("missing.redb");
                std::os::unix::fs::symlink(target, env.registry()).unwrap();
                vec![env.registry()]
            },
            says: "registry file `[ROOT]/home/registry.redb` is a symbolic link",
            root_only: false,
        },
        Setup {
            what: "a symlinked lock file",
            make: |env| {
                let target = env.root().join("victim");
                fs::write(&target, b"precious").unwrap();
                let lock = env.home().join("registry.lock");
                let _ = fs::remove_file(&lock);
                std::os::unix::fs::symlink(&target, &lock).unwrap();
                vec![lock, target, env.registry()]
            },
            says: "lock file `[ROOT]/home/registry.lock` is a symbolic link\nhint: remove it",
            root_only: false,
        },
        Setup {
            what: "a world-writable registry file",
            make: |env| {
                fs::set_permissions(env.registry(), fs::Permissions::from_mode(0o666)).unwrap();
                vec![env.registry()]
            },
            says: "registry file `[ROOT]/home/registry.redb` is writable by other users (mode 666)",
            root_only: false,
        },
        Setup {
            what: "a registry file owned by another user",
            make: |env| {
                std::os::unix::fs::chown(env.registry(), Some(65534), None).unwrap();
                vec![env.registry()]
            },
            says: "registry file `[ROOT]/home/registry.redb` is owned by uid 65534, not by you",
            root_only: true,
        },
        Setup {
            what: "a directory where the registry file should be",
            make: |env| {
                fs::remove_file(env.registry()).unwrap();
                fs::create_dir(env.registry()).unwrap();
                vec![env.registry()]
            },
            says: "registry file `[ROOT]/home/registry.redb` is not a regular file",
            root_only: false,
        },
    ];
    if !root_user {
        skip("setups owned by another user need root");
    }
    for s in setups.iter().filter(|s| root_user || !s.root_only) {
        let env = Env::new();
        seeded(&env);
        let watched = (s.make)(&env);
        let snap: Vec<_> = watched.iter().map(|p| snapshot(p)).collect();
        for args in COMMANDS {
            let out = env.run(args);
            let err = if args[0] == "env" { out.env_error(9) } else { out.error(9) };
            assert!(err.contains(s.says), "{}, {args:?}: {err}", s.what);
            let now: Vec<_> = watched.iter().map(|p| snapshot(p)).collect();
            assert!(now == snap, "{}, {args:?}: the location was changed", s.what);
        }
        // Put things back so that the temporary directory can be removed.
        let _ = fs::set_permissions(env.home(), fs::Permissions::from_mode(0o700));
    }
}

/// A touch log (`registry.touch`) that is not a regular file of the user's
/// is refused as an unsafe registry file is (exit 9, with the fix), and at
/// once: a FIFO there never makes a command wait, a symlink is never read
/// through. `reset` removes it, and nothing it pointed to.
#[test]
fn an_unsafe_touch_log_is_refused_at_once_and_reset_removes_it() {
    let root_user = is_root(&Env::new());
    type Make = fn(&Env, &Path) -> Vec<std::path::PathBuf>;
    let rm = "hint: remove it (`rm [ROOT]/home/registry.touch`); portd creates its own\n";
    let setups: [(&str, Make, String, bool); 5] = [
        (
            "a FIFO",
            |_, log| {
                let made = std::process::Command::new("mkfifo").arg(log).status().unwrap();
                assert!(made.success());
                vec![log.to_owned()]
            },
            format!("is not a regular file (a FIFO)\n{rm}"),
            false,
        ),
        (
            "a symlink",
            |env, log| {
                // A record far in the future: read through the link, it
                // would pin the entry's last use.
                let target = env.root().join("elsewhere");
                fs::write(&target, b"\0dmg-seed\t9999999999999\09999999999999\tdmg-seed\0").unwrap();
                std::os::unix::fs::symlink(&target, log).unwrap();
                vec![log.to_owned(), target]
            },
            format!("is a symbolic link\n{rm}"),
            false,
        ),
        (
            "a directory",
            |_, log| {
                fs::create_dir(log).unwrap();
                vec![log.to_owned()]
            },
            format!("is not a regular file (a directory)\n{rm}"),
            false,
        ),
        (
            "a world-writable file",
            |_, log| {
                fs::write(log, b"").unwrap();
                fs::set_permissions(log, fs::Permissions::from_mode(0o666)).unwrap();
                vec![log.to_owned()]
            },
            "is writable by other users (mode 666)\nhint: run `chmod 600 [ROOT]/home/registry.touch`\n"
                .to_owned(),
            false,
        ),
        (
            "another user's file",
            |_, log| {
                fs::write(log, b"").unwrap();
                std::os::unix::fs::chown(log, Some(65534), None).unwrap();
                vec![log.to_owned()]
            },
            format!("is owned by uid 65534, not by you (uid 0)\n{rm}"),
            true,
        ),
    ];
    if !root_user {
        skip("a touch log owned by another user needs root");
    }
    for (what, make, says, root_only) in &setups {
        if *root_only && !root_user {
            continue;
        }
        let env = Env::new();
        let registry = seeded(&env);
        let log = env.home().join("registry.touch");
        let _ = fs::remove_file(&log);
        let watched = make(&env, &log);
        let snap: Vec<_> = watched.iter().map(|p| snapshot(p)).collect();
        // `check` reads no entry's times: it does not open the touch log.
        for args in COMMANDS.iter().filter(|a| a[0] != "check") {
            let out = env.output(env.wrapped(&["timeout", "10"], *args));
            let err = if args[0] == "env" { out.env_error(9) } else { out.error(9) };
            let want = format!("error: touch log `[ROOT]/home/registry.touch` {says}");
            assert_eq!(err, want, "{what}, {args:?}");
            let now: Vec<_> = watched.iter().map(|p| snapshot(p)).collect();
            assert!(now == snap, "{what}, {args:?}: the touch log was changed: {snap:?} {now:?}");
            assert!(fs::read(env.registry()).unwrap() == registry, "{what}, {args:?}");
        }
        let out = env.output(env.wrapped(&["timeout", "10"], ["reset", "--yes"]));
        assert_eq!(out.code, 0, "{what}: {out:#?}");
        assert!(fs::symlink_metadata(&log).is_err(), "{what}: reset left the touch log");
        for (p, before) in watched.iter().zip(&snap).skip(1) {
            assert!(snapshot(p) == *before, "{what}: reset changed {p:?}");
        }
        assert_eq!(env.run(&["get", "dmg-seed"]).port(), env.run(&["get", "dmg-seed"]).port());
        assert_eq!(env.ls().len(), 1, "{what}");
    }
}

/// What a panic inside the storage engine says about itself: none of it
/// may reach the user, who is told which file is damaged instead.
const PANIC_TEXT: &[&str] = &[
    "unreachable",
    "index",
    "unwrap",
    "out of range",
    "overflow",
    "panicked",
    "assertion",
    "slice",
];

#[test]
fn a_damaged_registry_is_named_without_the_storage_engines_panic_text() {
    let env = Env::new();
    seeded(&env);
    for n in ["c", "d", "e", "f"] {
        env.run(&["get", &format!("dmg-{n}")]).port();
    }
    let real = fs::read(env.registry()).unwrap();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut damaged, mut inconsistent) = (0, 0);
    for _ in 0..150 {
        let mut bytes = real.clone();
        for _ in 0..[1, 2, 8][(next() % 3) as usize] {
            let at = (next() % bytes.len() as u64) as usize;
            bytes[at] = next() as u8;
        }
        for args in [&["ls"][..], &["get", "dmg-new"]] {
            fs::write(env.registry(), &bytes).unwrap();
            let out = env.run(args);
            if out.code != 7 {
                continue;
            }
            damaged += 1;
            let err = out.error(7);
            let first = err.lines().next().unwrap();
            assert!(
                first.starts_with("error: registry damaged: ")
                    || first.starts_with("error: registry was written by a newer portd"),
                "{args:?}: {err}"
            );
            for p in PANIC_TEXT {
                assert!(!first.contains(p), "{args:?}: panic text `{p}` shown: {err}");
            }
            if first.contains("`[ROOT]/home/registry.redb` is inconsistent") {
                inconsistent += 1;
            }
        }
    }
    assert!(damaged > 10, "only {damaged} damaged files detected");
    let line = format!("damaged: {damaged} detected, {inconsistent} by a contained panic\n");
    std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes()).unwrap();
}
