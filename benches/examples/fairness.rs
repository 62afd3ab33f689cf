//! How evenly the cross-process lock shares one registry: P processes, each
//! with T threads allocating through one open `Registry`, take `count`
//! active leases (`acquire` of new names) in all. Every call's time is
//! measured; the processes start together. Prints one line
//! `fairness procs=P threads=T count=N total_ms=… max_wait_ms=… p99_ms=…
//! slowest_proc_ms=… fastest_proc_ms=…`, where a call's wait is the time
//! from its start to its answer and a process's time runs from the common
//! start to its last answer. Exits non-zero when two leases got one port.
//! Usage: `fairness --procs P --threads T --count N`.
//!
//! Each process is this program run again with `--child I --dir DIR`: it
//! opens the registry, says `ready`, waits for `go` on stdin, and reports
//! `proc ms=… waits_us=…,… ports=…,…` on stdout.

use portd_benches::{err, number, out, registry, value};
use portd_store::Owner;
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let flags = (
        number(&args, "--procs", 3),
        number(&args, "--threads", 4),
        number(&args, "--count", 1200),
    );
    let (procs, threads, count) = match flags {
        (Ok(p), Ok(t), Ok(n)) => (p.max(1), t.max(1), n),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            err(&e);
            return ExitCode::from(2);
        }
    };
    if let (Some(i), Some(dir)) = (value(&args, "--child"), value(&args, "--dir")) {
        let i: usize = i.parse().expect("child index");
        child(Path::new(dir), i, procs, threads, count);
        return ExitCode::SUCCESS;
    }
    parent(procs, threads, count)
}

/// One process's share: names `i`, `i + procs`, … below `count`, spread
/// over `threads` threads.
fn child(dir: &Path, i: usize, procs: usize, threads: usize, count: usize) {
    let reg = registry(dir);
    out("ready");
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).expect("stdin");
    let start = Instant::now();
    let mine: Vec<usize> = (i..count).step_by(procs).collect();
    let results: Vec<(u128, u16)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (reg, mine) = (&reg, &mine);
                s.spawn(move || {
                    mine.iter()
                        .skip(t)
                        .step_by(threads)
                        .map(|n| {
                            let t0 = Instant::now();
                            let lease = reg
                                .acquire(&format!("f{n}"), Owner::this_process())
                                .expect("acquire");
                            (t0.elapsed().as_micros(), lease.entry.port)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("worker")).collect()
    });
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    let join = |v: Vec<String>| v.join(",");
    out(&format!(
        "proc ms={ms:.1} waits_us={} ports={}",
        join(results.iter().map(|r| r.0.to_string()).collect()),
        join(results.iter().map(|r| r.1.to_string()).collect()),
    ));
}

fn parent(procs: usize, threads: usize, count: usize) -> ExitCode {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current_exe");
    let mut children: Vec<_> = (0..procs)
        .map(|i| {
            let mut c = Command::new(&exe)
                .args(["--child", &i.to_string(), "--dir"])
                .arg(dir.path())
                .args(["--procs", &procs.to_string(), "--threads", &threads.to_string()])
                .args(["--count", &count.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn");
            let mut lines = BufReader::new(c.stdout.take().expect("stdout")).lines();
            assert_eq!(lines.next().expect("ready").expect("ready"), "ready");
            (c, lines)
        })
        .collect();
    let start = Instant::now();
    for (c, _) in &mut children {
        c.stdin.take().expect("stdin").write_all(b"go\n").expect("go");
    }
    let (mut waits, mut ports, mut procs_ms) = (Vec::new(), Vec::new(), Vec::new());
    for (mut c, mut lines) in children {
        let line = lines.next().expect("report").expect("report");
        assert!(c.wait().expect("wait").success(), "a process failed");
        let field =
            |k: &str| line.split(' ').find_map(|f| f.strip_prefix(k)).expect("field").to_owned();
        procs_ms.push(field("ms=").parse::<f64>().expect("ms"));
        let numbers = |s: String| -> Vec<u64> {
            s.split(',').filter(|x| !x.is_empty()).map(|x| x.parse().expect("number")).collect()
        };
        waits.extend(numbers(field("waits_us=")));
        ports.extend(numbers(field("ports=")));
    }
    let total_ms = start.elapsed().as_secs_f64() * 1000.0;
    waits.sort_unstable();
    let p99 = waits.get((waits.len() * 99).div_ceil(100).saturating_sub(1)).copied().unwrap_or(0);
    let max = waits.last().copied().unwrap_or(0);
    let distinct = ports.iter().collect::<HashSet<_>>().len();
    let ms = |us: u64| us as f64 / 1000.0;
    let (slowest, fastest) =
        procs_ms.iter().fold((0f64, f64::MAX), |(hi, lo), &m| (hi.max(m), lo.min(m)));
    out(&format!(
        "fairness procs={procs} threads={threads} count={count} total_ms={total_ms:.0} \
         max_wait_ms={:.1} p99_ms={:.1} slowest_proc_ms={slowest:.0} fastest_proc_ms={fastest:.0}",
        ms(max),
        ms(p99),
    ));
    if distinct == ports.len() && ports.len() == count {
        ExitCode::SUCCESS
    } else {
        err(&format!("error: {} leases, {distinct} distinct ports", ports.len()));
        ExitCode::FAILURE
    }
}
