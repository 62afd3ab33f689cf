//! A relay in front of a running server, for load generators: accepts on
//! `127.0.0.1:PUBLIC` and relays every connection to `127.0.0.1:UPSTREAM`
//! with `portd_serve::relay::Relay`, as an on-demand supervisor does once
//! its server runs. Prints `ready` when it accepts, and its counters when
//! it gets SIGTERM or SIGINT.
//!
//! `cargo run --release -p portd-benches --example relay -- PUBLIC UPSTREAM`
//! (`benches/relay.sh` runs it beside the direct path under `wrk`).

use portd_core::sys;
use portd_serve::relay::Relay;
use std::io::Write;
use std::net::TcpListener;
use std::time::Duration;

fn main() {
    let args: Vec<u16> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let [public, upstream] = args[..] else {
        panic!("usage: relay PUBLIC_PORT UPSTREAM_PORT");
    };
    // Blocked before the relay's threads start, so that they inherit it.
    let signals = sys::SignalSet::block(&[sys::SIGTERM, sys::SIGINT]).unwrap();
    let listener = TcpListener::bind(("127.0.0.1", public)).unwrap();
    let relay = Relay::start(vec![listener], move || Some(upstream), || {}, Duration::from_secs(5))
        .unwrap();
    let mut out = std::io::stdout();
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    let _ = signals.wait_for(None);
    let s = relay.stats();
    writeln!(
        out,
        "connections {} requests {} open {}",
        s.total_connections(),
        s.requests(),
        s.open_connections()
    )
    .unwrap();
}
