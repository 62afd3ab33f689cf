//! A range full of active leases: `no free port`, then reclaiming a dead
//! owner's port.

use crate::util::*;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

/// Whether `port` can be bound on both families right now (what portd's
/// probe asks, minus the dual-stack subtlety).
fn bindable(port: u16) -> bool {
    let v4 = std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok();
    let v6 = || {
        let Ok(s) = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP)) else {
            return true; // no IPv6 here
        };
        let _ = s.set_only_v6(false);
        let addr: SocketAddr = (Ipv6Addr::UNSPECIFIED, port).into();
        s.bind(&addr.into()).is_ok()
    };
    v4 && v6()
}

/// The kernel's `ip_local_reserved_ports` (which portd excludes).
fn reserved(port: u16) -> bool {
    let text =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_reserved_ports").unwrap_or_default();
    text.trim().split(',').filter(|s| !s.is_empty()).any(|span| {
        let (a, b) = span.split_once('-').unwrap_or((span, span));
        let (a, b): (u16, u16) = (a.trim().parse().unwrap(), b.trim().parse().unwrap());
        (a..=b).contains(&port)
    })
}

/// The first of `n` consecutive bindable, not excluded ports at or above
/// `from`, away from the default ranges and the kernel's ephemeral range.
fn free_block(from: u16, n: u16) -> u16 {
    let mut start = from;
    while start < 30000 {
        if (start..start + n).all(|p| !reserved(p) && bindable(p)) {
            return start;
        }
        start += n;
    }
    panic!("no {n} consecutive free ports between {from} and 30000");
}

#[test]
fn a_full_range_says_no_free_port_until_an_owner_dies() {
    let env = Env::new();
    let start = free_block(21500, 3);
    let end = start + 2;
    env.write_config(format!("[[range]]\nname = \"tiny\"\nstart = {start}\nend = {end}\n"));
    let mut owner = Sleeper::spawn();
    let pid = owner.pid().to_string();

    let mut held = Vec::new();
    for name in ["full-a", "full-b", "full-c"] {
        let port = env.run(&["get", name, "--pid", &pid]).port();
        assert!((start..=end).contains(&port), "{port} outside {start}-{end}");
        held.push(port);
    }
    let port_of_a = held[0];
    held.sort_unstable();
    assert_eq!(held, [start, start + 1, end]);
    let listed = env.ls();
    assert!(listed.iter().all(|e| e.state == "active" && e.pid == Some(owner.pid())), "{listed:?}");

    let before = env.ls_raw();
    let out = env.run(&["get", "extra"]);
    assert_eq!(
        out.error(3),
        format!(
            "error: no free port: every port of `tiny {start}-{end}` is held by an active \
             project, bound, or excluded\n\
             hint: free ports with `portd release --idle`, or add a `[[range]]` to the config file\n"
        )
    );
    assert_eq!(env.ls_raw(), before, "a failed `get` changed the registry");
    // Asking again (and through `env`) fails the same way.
    env.run(&["get", "extra"]).error(3);
    env.run(&["env", "extra"]).env_error(3);
    assert_eq!(env.ls_raw(), before);

    // The owner dies: its leases go idle, and the least recently used one
    // is reclaimed.
    owner.kill();
    let out = env.run(&["get", "extra"]);
    assert_eq!(
        out.stdout,
        format!("{port_of_a}\n"),
        "the least recently used idle entry is evicted"
    );
    let note = format!("evicted `full-a` (port {port_of_a}, idle since ");
    assert!(out.code == 0 && out.stderr.starts_with(&note), "{out:#?}");
    let listed = env.ls();
    let mut rows: Vec<(&str, &str)> =
        listed.iter().map(|e| (e.project.as_str(), e.state.as_str())).collect();
    rows.sort_unstable();
    assert_eq!(rows, [("extra", "idle"), ("full-b", "idle"), ("full-c", "idle")]);
}
