//! Durable allocation throughput of one open `Registry` shared by several
//! threads: N new projects, each allocated by its own `get` (one durable
//! transaction per call, batched as the registry's group commit allows),
//! spread over T threads. Prints one line
//! `throughput threads=T count=N per_s=X distinct=D` and exits non-zero
//! when the D distinct ports returned are fewer than N.
//! Usage: `throughput --threads T --count N`.

use portd_store::{Config, Ranges, Registry};
use std::collections::HashSet;
use std::process::ExitCode;
use std::time::Instant;

/// The number after `name`, `default` when `name` is absent.
fn arg(args: &[String], name: &str, default: usize) -> Result<usize, String> {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("error: `{name}` needs a positive number")),
        None => Ok(default),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (threads, count) = match (arg(&args, "--threads", 1), arg(&args, "--count", 2000)) {
        (Ok(t), Ok(n)) => (t.max(1), n),
        (Err(e), _) | (_, Err(e)) => {
            err(&e);
            return ExitCode::from(2);
        }
    };
    let dir = tempfile::tempdir().expect("tempdir");
    // A private range far larger than any count asked for, so that the
    // figure is allocation, not exhaustion.
    let ranges = Ranges::from_raw(&[("bench".into(), 20000, 59999, true)]).expect("range");
    let reg = Registry::open(dir.path().join("portd"), Config { ranges, ..Config::default() })
        .expect("open");
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

/// Writes one line to stdout (the workspace's lints keep `println!` out).
fn out(line: &str) {
    std::io::Write::write_all(&mut std::io::stdout(), format!("{line}\n").as_bytes())
        .expect("stdout");
}

/// Writes one line to stderr.
fn err(line: &str) {
    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{line}\n").as_bytes());
}
