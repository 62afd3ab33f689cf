//! What the OS says wins: a port bound by a foreign listener, on any
//! address of either family, is never handed out, and a project whose port
//! was taken hears about it.

use crate::util::*;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Where a foreign server listens.
#[derive(Debug, Clone, Copy)]
enum Listen {
    V4Loopback,
    V4Any,
    V6Loopback,
    V6AnyOnly,
    V6AnyDual,
}

impl Listen {
    const ALL: [Listen; 5] = [
        Listen::V4Loopback,
        Listen::V4Any,
        Listen::V6Loopback,
        Listen::V6AnyOnly,
        Listen::V6AnyDual,
    ];

    fn is_v6(self) -> bool {
        matches!(self, Listen::V6Loopback | Listen::V6AnyOnly | Listen::V6AnyDual)
    }

    fn tag(self) -> &'static str {
        match self {
            Listen::V4Loopback => "v4lo",
            Listen::V4Any => "v4any",
            Listen::V6Loopback => "v6lo",
            Listen::V6AnyOnly => "v6only",
            Listen::V6AnyDual => "v6dual",
        }
    }

    /// Listens on `port` the way a typical server does (`SO_REUSEADDR`).
    /// Retries briefly: another test's portd may be probing the port.
    fn bind(self, port: u16) -> Socket {
        let try_once = || -> std::io::Result<Socket> {
            let (domain, addr): (Domain, SocketAddr) = match self {
                Listen::V4Loopback => (Domain::IPV4, (Ipv4Addr::LOCALHOST, port).into()),
                Listen::V4Any => (Domain::IPV4, (Ipv4Addr::UNSPECIFIED, port).into()),
                Listen::V6Loopback => (Domain::IPV6, (Ipv6Addr::LOCALHOST, port).into()),
                Listen::V6AnyOnly | Listen::V6AnyDual => {
                    (Domain::IPV6, (Ipv6Addr::UNSPECIFIED, port).into())
                }
            };
            let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
            s.set_reuse_address(true)?;
            match self {
                Listen::V6AnyOnly | Listen::V6Loopback => s.set_only_v6(true)?,
                Listen::V6AnyDual => s.set_only_v6(false)?,
                _ => {}
            }
            s.bind(&addr.into())?;
            s.listen(16)?;
            Ok(s)
        };
        let mut last = None;
        for _ in 0..20 {
            match try_once() {
                Ok(s) => return s,
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("cannot listen on port {port} ({self:?}): {:?}", last.unwrap())
    }
}

fn kinds() -> Vec<Listen> {
    let v6 = ipv6_available();
    if !v6 {
        skip("no IPv6 here: IPv6 listeners are not tried");
    }
    Listen::ALL.into_iter().filter(|k| v6 || !k.is_v6()).collect()
}

#[test]
fn a_foreign_listener_on_the_old_port_is_skipped() {
    let env = Env::new();
    let me = std::process::id();
    for kind in kinds() {
        let name = format!("truth-old-{}", kind.tag());
        let old = env.run(&["get", &name]).port();
        let out = env.run(&["release", &name]);
        assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:#?}");
        assert_eq!(out.stderr, format!("released `{name}` (port {old})\n"));

        // Both the history and the preferred port are now `old`: taken.
        let listener = kind.bind(old);
        let new = env.run(&["get", &name]).port();
        assert_ne!(new, old, "{kind:?}: portd handed out a port a server listens on");
        let checked: Vec<CheckJson> = env.run(&["check", &old.to_string(), "--json"]).json();
        let c = &checked[0];
        assert_eq!((c.bindable, c.free, c.project.as_deref()), (false, false, None), "{kind:?}");
        assert!(c.bound_by.iter().any(|h| h.pid == me && !h.is_owner), "{kind:?}: {c:?}");
        drop(listener);
    }
}

#[test]
fn a_foreign_listener_on_a_projects_port_warns_fails_or_moves() {
    let env = Env::new();
    let me = std::process::id();
    for kind in kinds() {
        let name = format!("truth-cur-{}", kind.tag());
        let port = env.run(&["get", &name]).port();
        let listener = kind.bind(port);

        // A plain `get` keeps the port (stable) and warns.
        let out = env.run(&["get", &name]);
        assert_eq!((out.code, out.stdout.clone()), (0, format!("{port}\n")), "{kind:?}");
        assert!(out.stderr.starts_with("warning: ") && out.stderr.lines().count() == 1, "{out:#?}");
        assert!(out.stderr.contains(&format!("port {port} is bound by pid {me} (")), "{out:#?}");
        assert!(out.stderr.contains(&format!("not by `{name}`'s owner")), "{out:#?}");
        out.no_panic();

        // `--free` fails, naming the holder, and changes nothing.
        let before = env.ls_raw();
        let out = env.run(&["get", &name, "--free"]);
        let err = out.error(5);
        assert!(err.starts_with(&format!("error: port {port} is bound by pid {me} (")), "{err}");
        assert!(err.contains("\nhint: ") && err.contains("--move"), "{err}");
        assert_eq!(env.ls_raw(), before);

        // `--free --move` takes a fresh port.
        let out = env.run(&["get", &name, "--free", "--move"]);
        assert_eq!(out.code, 0, "{out:#?}");
        let moved: u16 = out.stdout.trim_end().parse().unwrap();
        assert_ne!(moved, port, "{kind:?}");
        assert_eq!(
            out.stderr,
            format!(
                "moved `{name}` from port {port} to {moved} (its port was bound by another process)\n"
            )
        );
        assert_eq!(env.run(&["get", &name]).port(), moved, "{kind:?}: the move sticks");
        drop(listener);
        // And it does not come back when the intruder leaves.
        assert_eq!(env.run(&["get", &name, "--free"]).port(), moved);
    }
}

#[test]
fn move_json_reports_where_from() {
    let env = Env::new();
    let port = env.run(&["get", "truth-json"]).port();
    let listener = Listen::V4Loopback.bind(port);
    let out = env.run(&["get", "truth-json", "--move", "--json"]);
    let got: GetJson = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!((got.moved_from, got.fresh), (Some(port), false), "a move is not a new entry");
    assert_ne!(got.port, port);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (
            0,
            format!(
                "moved `truth-json` from port {port} to {} (its port was bound by another process)\n",
                got.port
            )
            .as_str()
        )
    );
    drop(listener);
}
