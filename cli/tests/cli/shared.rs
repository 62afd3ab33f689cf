//! A registry shared between users (`PORTD_SHARED=1`): group-writable
//! files created that way, and each entry released, moved or leased only
//! by the user who made it, or by root. Needs root to act as other users;
//! elsewhere the test says so and checks only what one user can.

use crate::util::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;

const GROUP: u32 = 65534;
const ALICE: u32 = 65534;
const BOB: u32 = 65533;

/// `portd ARGS` as `uid` (root when `None`), in the shared registry.
fn as_user(env: &Env, uid: Option<u32>, args: &[&str]) -> Output {
    let mut cmd = env.command(args);
    cmd.env("PORTD_SHARED", "1");
    if let Some(uid) = uid {
        cmd.uid(uid).gid(GROUP);
    }
    env.output(cmd)
}

fn projects(env: &Env) -> Vec<String> {
    let out = as_user(env, None, &["ls", "--json"]);
    let mut v: Vec<String> = out.json::<Vec<EntryJson>>().into_iter().map(|e| e.project).collect();
    v.sort();
    v
}

#[test]
fn shared_registry_entries_belong_to_their_users() {
    let env = Env::new();
    if !is_root(&env) {
        return skip("acting as two users needs root");
    }
    // The tree must be traversable by the other users; the registry
    // directory is made the way an administrator would: root's, shared
    // with a group, setgid so that files inherit that group.
    fs::set_permissions(env.root(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir(env.home()).unwrap();
    std::os::unix::fs::chown(env.home(), Some(0), Some(GROUP)).unwrap();
    fs::set_permissions(env.home(), fs::Permissions::from_mode(0o2770)).unwrap();

    // Without the opt-in, another user's directory is refused.
    let mut plain = env.command(["get", "alice-app"]);
    plain.uid(ALICE).gid(GROUP);
    let err = env.output(plain).error(9).to_owned();
    assert!(err.contains("is owned by uid 0, not by you"), "{err}");
    assert!(err.contains("`PORTD_SHARED=1`"), "{err}");

    let alice = as_user(&env, Some(ALICE), &["get", "alice-app"]).port();
    as_user(&env, Some(BOB), &["get", "bob-app"]).port();
    as_user(&env, None, &["get", "root-app"]).port();
    for f in ["registry.redb", "registry.lock"] {
        let md = fs::metadata(env.home().join(f)).unwrap();
        assert_eq!((md.mode() & 0o777, md.gid()), (0o660, GROUP), "{f}");
    }

    // Bob cannot release Alice's project, nor use its port (`get`, `env`,
    // a move, a lease); nothing changes.
    let before = as_user(&env, None, &["ls", "--json"]).ok().to_owned();
    let err = as_user(&env, Some(BOB), &["release", "alice-app"]).error(9).to_owned();
    assert_eq!(
        err,
        format!(
            "error: project `alice-app` belongs to uid {ALICE}; only that user or root can release it\n\
             hint: ask its owner, or use a project name of your own\n"
        )
    );
    let free = alice + 1;
    for args in [
        &["get", "alice-app"][..],
        &["env", "alice-app", "--json"],
        &["get", "alice-app", "--port", &free.to_string()],
        &["get", "alice-app", "--free", "--move"],
        &["run", "alice-app", "--", "true"],
    ] {
        let err = as_user(&env, Some(BOB), args).error(9).to_owned();
        assert_eq!(
            err,
            format!(
                "error: project `alice-app` belongs to uid {ALICE} (`nobody`) in this shared registry; its port is for that user's server\n\
                 hint: use a project name of your own; `portd show alice-app` prints this one's port\n"
            ),
            "{args:?}"
        );
        assert_eq!(as_user(&env, None, &["ls", "--json"]).ok(), before, "{args:?}");
    }
    // Reading it is fine.
    let shown: EntryJson = as_user(&env, Some(BOB), &["show", "alice-app", "--json"]).json();
    assert_eq!(shown.port, alice);
    // A name of Bob's own gets a port of its own.
    let bobs = as_user(&env, Some(BOB), &["get", "bob-alice-app"]).port();
    assert_ne!(bobs, alice);
    assert_eq!(as_user(&env, Some(BOB), &["release", "bob-alice-app"]).code, 0);
    // Emptying the registry would release everyone's entries.
    let err = as_user(&env, Some(BOB), &["reset", "--yes"]).error(9).to_owned();
    assert!(err.contains("only that user or root can reset it"), "{err}");
    assert_eq!(as_user(&env, None, &["ls", "--json"]).ok(), before);

    // `release --idle` releases only the caller's own entries.
    let out = as_user(&env, Some(BOB), &["release", "--idle"]);
    assert_eq!((out.code, out.stderr.lines().count()), (0, 1), "{out:?}");
    assert!(out.stderr.starts_with("released `bob-app` (port "), "{out:?}");
    assert_eq!(projects(&env), ["alice-app", "root-app"]);
    // The owner and root can.
    assert_eq!(as_user(&env, Some(ALICE), &["release", "alice-app"]).code, 0);
    as_user(&env, Some(BOB), &["get", "bob-app"]).port();
    assert_eq!(as_user(&env, None, &["release", "bob-app"]).code, 0);
    assert_eq!(projects(&env), ["root-app"]);

    // A shared directory writable by everyone is still refused.
    fs::set_permissions(env.home(), fs::Permissions::from_mode(0o2777)).unwrap();
    let err = as_user(&env, Some(ALICE), &["get", "alice-app"]).error(9).to_owned();
    assert!(err.ends_with("hint: run `chmod o-w [ROOT]/home`\n"), "{err}");
}

#[test]
fn a_private_registry_is_created_0700_and_0600_whatever_the_umask() {
    let env = Env::new();
    let cmd = env.wrapped(&["sh", "-c", "umask 000; exec \"$0\" \"$@\""], ["get", "modes"]);
    env.output(cmd).port();
    let mode = |p: std::path::PathBuf| fs::symlink_metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(env.home()), 0o700);
    assert_eq!(mode(env.registry()), 0o600);
    assert_eq!(mode(env.home().join("registry.lock")), 0o600);
    // Also after a reset, which writes a new file.
    let cmd = env.wrapped(&["sh", "-c", "umask 000; exec \"$0\" \"$@\""], ["reset", "--yes"]);
    assert_eq!(env.output(cmd).code, 0);
    assert_eq!(mode(env.registry()), 0o600);
}

/// A full range in a shared registry: another user's allocation does not
/// evict (or expire) a user's idle entries; the user's own, or root's, does.
#[test]
fn only_an_entrys_user_or_root_evicts_it() {
    let env = Env::new();
    if !is_root(&env) {
        return skip("acting as two users needs root");
    }
    fs::set_permissions(env.root(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir(env.home()).unwrap();
    std::os::unix::fs::chown(env.home(), Some(0), Some(GROUP)).unwrap();
    fs::set_permissions(env.home(), fs::Permissions::from_mode(0o2770)).unwrap();
    env.write_config("[[range]]\nname = \"tiny\"\nstart = 22950\nend = 22951\n");
    as_user(&env, Some(ALICE), &["get", "alice-1"]).port();
    as_user(&env, Some(ALICE), &["get", "alice-2"]).port();
    let before = as_user(&env, None, &["ls", "--json"]).ok().to_owned();
    let err = as_user(&env, Some(BOB), &["get", "bob-1"]).error(3).to_owned();
    assert!(err.starts_with("error: no free port"), "{err}");
    // The shortest idle_ttl allowed (1m) drops no one's fresh entries.
    let out = as_user(&env, Some(BOB), &["cleanup", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let mut cmd = env.command(["cleanup"]);
    cmd.env("PORTD_SHARED", "1").env("PORTD_IDLE_TTL", "1m").uid(BOB).gid(GROUP);
    assert_eq!(env.output(cmd).code, 0);
    assert_eq!(as_user(&env, None, &["ls", "--json"]).ok(), before);
    // Alice's own allocation evicts her least recently used entry, and
    // says so.
    let out = as_user(&env, Some(ALICE), &["get", "alice-3"]);
    assert!(out.code == 0 && out.stderr.starts_with("evicted `alice-1` (port "), "{out:?}");
    assert_eq!(projects(&env), ["alice-2", "alice-3"]);
    // Root's too.
    let out = as_user(&env, None, &["get", "root-1"]);
    assert!(out.code == 0 && out.stderr.starts_with("evicted `alice-2` (port "), "{out:?}");
    assert_eq!(projects(&env).len(), 2);
    assert!(projects(&env).contains(&"root-1".to_owned()));
}
