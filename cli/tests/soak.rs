//! Load: worker threads run `portd get`, `run`, `release`, `cleanup` and
//! `ls` processes against one registry, on a shared pool of project names,
//! for a bounded time. Every process must end with its expected exit code
//! (an unknown project or a running lease for a release, a lease already
//! held for a run, are expected answers; anything else is an error), every
//! `ls` snapshot must hold each port once and in range, and at the end no
//! lease is left active and `doctor` finds nothing wrong.
//!
//! `PORTD_SOAK_SECS` sets the duration (default 5, the CI figure); the long
//! run is `PORTD_SOAK_SECS=600 cargo test -p portd --test soak --release --
//! --nocapture`.

#[allow(dead_code)]
#[path = "cli/util.rs"]
mod util;

use portd_store::{Config, Ranges, Registry, State};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use util::{EntryJson, Env};

const START: u16 = 28_000;
const END: u16 = 28_099;
const NAMES: u64 = 40;
const WORKERS: u64 = 6;

#[derive(Default)]
struct Tally {
    ops: BTreeMap<&'static str, usize>,
    errors: Vec<String>,
}

fn rng_next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

#[test]
fn soak_many_processes_then_check_every_invariant() {
    let secs: u64 = std::env::var("PORTD_SOAK_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let env = Env::new();
    env.write_config(format!("[[range]]\nname = \"soak\"\nstart = {START}\nend = {END}\n"));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let tally = Mutex::new(Tally::default());
    std::thread::scope(|s| {
        for w in 0..WORKERS {
            let (env, tally) = (&env, &tally);
            s.spawn(move || {
                let mut x = 0x9E37_79B9_7F4A_7C15 ^ (w + 1);
                while Instant::now() < deadline {
                    let name = format!("soak-{}", rng_next(&mut x) % NAMES);
                    let (what, args, ok): (&str, Vec<&str>, &[i32]) = match rng_next(&mut x) % 100 {
                        0..=39 => ("get", vec!["get", &name], &[0]),
                        // 5: another worker's run holds the lease right now.
                        40..=59 => (
                            "run",
                            vec!["run", &name, "--", "sh", "-c", "test \"$PORT\" -gt 0"],
                            &[0, 5],
                        ),
                        // 4: not (or no longer) an entry; 5: a run holds it now.
                        60..=74 => ("release", vec!["release", &name], &[0, 4, 5]),
                        75..=84 => ("cleanup", vec!["cleanup"], &[0]),
                        _ => ("ls", vec!["ls", "--json"], &[0]),
                    };
                    let out = env.run(&args);
                    let mut bad = None;
                    if !ok.contains(&out.code) || out.stderr.contains("panick") {
                        bad = Some(format!("{args:?}: {out:?}"));
                    } else if what == "ls" {
                        let entries: Vec<EntryJson> = serde_json::from_str(&out.stdout).unwrap();
                        let ports: BTreeSet<u16> = entries.iter().map(|e| e.port).collect();
                        if ports.len() != entries.len() {
                            bad = Some(format!("a port held twice: {entries:?}"));
                        } else if !ports.iter().all(|p| (START..=END).contains(p)) {
                            bad = Some(format!("a port outside the range: {ports:?}"));
                        }
                    }
                    let mut t = tally.lock().unwrap();
                    *t.ops.entry(what).or_default() += 1;
                    t.errors.extend(bad);
                }
            });
        }
    });
    let t = tally.into_inner().unwrap();
    let total: usize = t.ops.values().sum();
    let line = format!(
        "soak: {total} operations in {secs} s by {WORKERS} workers ({:?}), {} errors\n",
        t.ops,
        t.errors.len()
    );
    std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes()).unwrap();
    assert!(t.errors.is_empty(), "{} errors, first: {}", t.errors.len(), t.errors[0]);
    assert!(
        t.ops.len() == 5 && t.ops.values().all(|&n| n > 0),
        "an operation never ran: {:?}",
        t.ops
    );

    // Every run has exited: no lease is left active, and the registry is sound.
    let ranges = Ranges::from_raw(&[("soak".into(), START.into(), END.into(), true)]).unwrap();
    let config = Config { ranges, ..Config::default() };
    let reg = Registry::open(env.home(), config.clone()).unwrap();
    let listed = reg.list().unwrap();
    assert!(listed.iter().all(|l| l.state == State::Idle), "a lease outlived its run: {listed:?}");
    assert!(listed.iter().all(|l| l.entry.owner.is_none()), "a lease was not ended: {listed:?}");
    let ports: BTreeSet<u16> = listed.iter().map(|l| l.entry.port).collect();
    assert_eq!(ports.len(), listed.len());
    let report = portd_store::doctor::examine(&env.home(), &config, None);
    assert!(report.first_error().is_none() && !report.damaged, "{report:#?}");
}
