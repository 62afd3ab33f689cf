//! 50 new projects in one process, the way `benches/peers.sh` compares
//! portd with in-process peers: an existing registry is opened, 50 new
//! names are allocated in one durable transaction, the registry is closed.
//! Prints `inproc50 median_ms=… p10_ms=… p90_ms=…` over R repetitions
//! (first argument, default 50).

use portd_store::{Config, Registry};
use std::time::Instant;

fn main() {
    let reps: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(50);
    let names: Vec<String> = (0..50).map(|i| format!("p{i}")).collect();
    let mut ms = Vec::with_capacity(reps);
    for _ in 0..reps {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().join("portd");
        Registry::open(&home, Config::default()).and_then(|r| r.get("warm")).expect("warm");
        let t = Instant::now();
        let reg = Registry::open(&home, Config::default()).expect("open");
        let ports = reg.get_many(&names).expect("get_many");
        drop(reg);
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(ports.len(), 50);
    }
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    let line =
        format!("inproc50 median_ms={:.3} p10_ms={:.3} p90_ms={:.3}", at(0.5), at(0.1), at(0.9));
    portd_benches::out(&line);
}
