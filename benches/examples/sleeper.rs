//! A sleeping supervisor's memory, measured from outside: opens a registry
//! in DIR as `portd` does, takes a port, then sleeps as an on-demand
//! supervisor does — an acceptor thread blocked on the listening socket,
//! a waker thread blocked in poll(2), the main thread blocked for
//! signals — after `trim_resident()` (unless `--no-trim`). Prints its pid
//! and `ready` when it is asleep; read `/proc/PID/status` then. Runs until
//! killed.
//!
//! `cargo run --release -p portd-benches --example sleeper -- DIR [--no-trim]`
//! (`benches/sleeper.sh` measures both ways).

use portd_core::sys;
use portd_store::{Config, Registry};
use std::io::Write;
use std::net::TcpListener;
use std::os::fd::AsFd;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("usage: sleeper DIR [--no-trim]");
    let trim = args.next().as_deref() != Some("--no-trim");
    let signals = sys::SignalSet::block(&[sys::SIGTERM, sys::SIGINT]).unwrap();
    let reg = Registry::open(&dir, Config::default()).unwrap();
    let port = reg.get("sleeper").unwrap();
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let (wake_r, _wake_w) = std::os::unix::net::UnixStream::pair().unwrap();
    let acceptor = std::thread::spawn(move || {
        let _ = listener.accept();
    });
    let waker = std::thread::spawn(move || {
        let _ = sys::wait_readable(wake_r.as_fd(), None);
    });
    let t = std::time::Instant::now();
    let trimmed = trim.then(sys::trim_resident);
    let took = t.elapsed();
    let mut out = std::io::stdout().lock();
    writeln!(out, "pid {} port {port} trimmed {trimmed:?} in {took:?}", std::process::id())
        .unwrap();
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    drop(out);
    let _ = signals.wait_for(None);
    drop((acceptor, waker, reg));
}
