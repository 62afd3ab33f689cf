//! Durable allocation throughput of one open `Registry` shared by several
//! threads: N new projects, each allocated by its own `get` (one durable
//! transaction per call, batched as the registry's group commit allows),
//! spread over T threads. Prints one line
//! `throughput threads=T count=N per_s=X distinct=D` and exits non-zero
//! when the D distinct ports returned are fewer than N.
//! Usage: `throughput --threads T --count N`.

use portd_benches::{err, number, out, registry};
use std::collections::HashSet;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (threads, count) = match (number(&args, "--threads", 1), number(&args, "--count", 2000)) {
        (Ok(t), Ok(n)) => (t.max(1), n),
        (Err(e), _) | (_, Err(e)) => {
            err(&e);
            return ExitCode::from(2);
        }
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let reg = registry(dir.path());
    let start = Instant::now();
    let ports: Vec<u16> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let reg = &reg;
                s.spawn(move || {
                    (t..count)
                        .step_by(threads)
                        .map(|i| reg.get(&format!("p{i}")).expect("get"))
                        .collect::<Vec<u16>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("worker")).collect()
    });
    let secs = start.elapsed().as_secs_f64();
    let distinct = ports.iter().collect::<HashSet<_>>().len();
    out(&format!(
        "throughput threads={threads} count={count} per_s={:.0} distinct={distinct}",
        count as f64 / secs
    ));
    if distinct == count { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
