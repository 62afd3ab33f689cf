//! Fills a registry with N entries (for `benches/cli.sh`'s `ls --json` of
//! 20,000 entries) in one range of 30,000 ports, lists them, and prints the
//! process's peak RSS: target 9's library registry with 20,000 entries.
//! Usage: `fill DIR N`.

use portd_store::{Config, Ranges, Registry};

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("usage: fill DIR N");
    let n: usize = args.next().and_then(|a| a.parse().ok()).expect("usage: fill DIR N");
    let ranges = Ranges::from_raw(&[("big".into(), 2000, 31999, true)]).expect("range");
    let reg = Registry::open(&dir, Config { ranges, ..Config::default() }).expect("open");
    let names: Vec<String> = (0..n).map(|i| format!("e{i}")).collect();
    for chunk in names.chunks(1000) {
        reg.get_many(chunk).expect("fill");
    }
    let listed = reg.list().expect("list").len();
    let hwm = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_owned))
        .unwrap_or_default();
    let line = format!(
        "fill: {listed} entries; library peak RSS {}\n",
        hwm.trim_start_matches("VmHWM:").trim()
    );
    std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes()).expect("stderr");
}
