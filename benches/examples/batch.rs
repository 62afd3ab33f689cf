//! One durable `get_many(N)` of new projects on an already open
//! `Registry` (the open is not timed). Prints one line
//! `batch count=N ms=X distinct=D` and exits non-zero when the D distinct
//! ports returned are fewer than N.
//! Usage: `batch --count N [--rounds R]` (the median of R rounds, 5 by
//! default, each of N new names on the same open handle).

use portd_benches::{err, number, out, registry};
use std::collections::HashSet;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (count, rounds) = match (number(&args, "--count", 50), number(&args, "--rounds", 5)) {
        (Ok(n), Ok(r)) => (n, r.max(1)),
        (Err(e), _) | (_, Err(e)) => {
            err(&e);
            return ExitCode::from(2);
        }
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let reg = registry(dir.path());
    // The registry file exists and the handle is warm before timing.
    reg.get("warm").expect("warm");
    let mut times = Vec::with_capacity(rounds);
    let mut all = HashSet::new();
    let mut distinct_each = usize::MAX;
    for round in 0..rounds {
        let names: Vec<String> = (0..count).map(|i| format!("b{round}-{i}")).collect();
        let start = Instant::now();
        let ports = reg.get_many(&names).expect("get_many");
        times.push(start.elapsed().as_secs_f64() * 1e3);
        distinct_each = distinct_each.min(ports.iter().collect::<HashSet<_>>().len());
        all.extend(ports);
    }
    times.sort_by(f64::total_cmp);
    let ms = times[times.len() / 2];
    // Every round's ports are distinct, and distinct from every other
    // round's: `distinct` is per round, and only when both hold.
    let distinct = if all.len() == count * rounds { distinct_each } else { 0 };
    out(&format!("batch count={count} ms={ms:.2} distinct={distinct}"));
    if distinct == count { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
