//! One durable `get_many(N)` of new projects on an already open
//! `Registry` (the open is not timed). Prints one line
//! `batch count=N ms=X distinct=D` and exits non-zero when the D distinct
//! ports returned are fewer than N.
//! Usage: `batch --count N`.

use portd_store::{Config, Ranges, Registry};
use std::collections::HashSet;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let count: usize = match args.iter().position(|a| a == "--count") {
        Some(i) => match args.get(i + 1).and_then(|v| v.parse().ok()) {
            Some(n) => n,
            None => {
                err("error: `--count` needs a positive number");
                return ExitCode::from(2);
            }
        },
        None => 50,
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let ranges = Ranges::from_raw(&[("bench".into(), 20000, 59999, true)]).expect("range");
    let reg = Registry::open(dir.path().join("portd"), Config { ranges, ..Config::default() })
        .expect("open");
    // The registry file exists and the handle is warm before timing.
    reg.get("warm").expect("warm");
    let names: Vec<String> = (0..count).map(|i| format!("b{i}")).collect();
    let start = Instant::now();
    let ports = reg.get_many(&names).expect("get_many");
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let distinct = ports.iter().collect::<HashSet<_>>().len();
    out(&format!("batch count={count} ms={ms:.2} distinct={distinct}"));
    if distinct == count { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Writes one line to stdout (the workspace's lints keep `println!` out).
fn out(line: &str) {
    std::io::Write::write_all(&mut std::io::stdout(), format!("{line}\n").as_bytes())
        .expect("stdout");
}

/// Writes one line to stderr.
fn err(line: &str) {
    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{line}\n").as_bytes());
}
