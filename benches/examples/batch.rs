//! One durable `get_many(N)` of new projects on an already open
//! `Registry` (the open is not timed). Prints one line
//! `batch count=N ms=X distinct=D` and exits non-zero when the D distinct
//! ports returned are fewer than N.
//! Usage: `batch --count N`.

use portd_benches::{err, number, out, registry};
use std::collections::HashSet;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let count = match number(&args, "--count", 50) {
        Ok(n) => n,
        Err(e) => {
            err(&e);
            return ExitCode::from(2);
        }
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let reg = registry(dir.path());
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
