//! Crash safety: `portd` processes SIGKILLed at random moments while they
//! allocate, release, clean up and reset, against one registry. After
//! every kill the registry must open, hold each port at most once, keep
//! every port inside its range, and still have every allocation whose port
//! was printed (acknowledged) before.
//!
//! `PORTD_CRASH_KILLS` sets how many kills to land (default 500, the CI
//! figure); the long run is `PORTD_CRASH_KILLS=20000 cargo test -p portd
//! --test crash --release -- --nocapture`.

#[allow(dead_code)]
#[path = "cli/util.rs"]
mod util;

use portd_store::{Config, Ranges, Registry};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};
use util::Env;

const START: u16 = 27_000;
const END: u16 = 27_399;

/// xorshift64*: reproducible delays and operations for a given seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) % n
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Get,
    Release,
    Cleanup,
    Reset,
}

#[test]
fn random_sigkills_never_break_the_registry() {
    let kills_wanted: usize =
        std::env::var("PORTD_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(500);
    let env = Env::new();
    env.write_config(format!("[[range]]\nname = \"crash\"\nstart = {START}\nend = {END}\n"));
    let ranges = Ranges::from_raw(&[("crash".into(), START.into(), END.into(), true)]).unwrap();
    let config = Config { ranges, ..Config::default() };
    let mut rng = Rng(0x5EED_C4A5_4B1D);
    // Acknowledged allocations: printed by a process before it was killed
    // or exited. A killed release or reset makes its targets uncertain.
    let mut acked: BTreeMap<String, u16> = BTreeMap::new();
    let mut kills = 0usize;
    let mut by_op: BTreeMap<String, usize> = BTreeMap::new();
    let mut runs = 0usize;
    let started = Instant::now();
    let mut next_name = 0usize;
    let mut acked_total = 0usize;
    while kills < kills_wanted {
        runs += 1;
        assert!(runs < kills_wanted * 10, "too few processes were still running when killed");
        let op = match rng.below(100) {
            0..=69 => Op::Get,
            70..=90 => Op::Release,
            91..=98 => Op::Cleanup,
            _ => Op::Reset,
        };
        // Keep the range from filling: release when half full.
        let op = if acked.len() > usize::from(END - START) / 2 { Op::Release } else { op };
        let (args, target): (Vec<String>, Option<String>) = match op {
            Op::Get => {
                next_name += 1;
                let n = format!("c{next_name}");
                (vec!["get".into(), n.clone()], Some(n))
            }
            Op::Release => match acked.keys().nth(rng.below(acked.len().max(1) as u64) as usize) {
                Some(n) => (vec!["release".into(), n.clone()], Some(n.clone())),
                None => continue,
            },
            Op::Cleanup => (vec!["cleanup".into()], None),
            Op::Reset => (vec!["reset".into(), "--yes".into()], None),
        };
        let mut child =
            env.command(&args).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(12_000)));
        let killed = child.try_wait().unwrap().is_none();
        if killed {
            child.kill().unwrap();
            kills += 1;
            *by_op.entry(format!("{op:?}")).or_default() += 1;
        }
        let status = child.wait().unwrap();
        let mut out = String::new();
        child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        let done = !killed && status.success();
        match op {
            Op::Get => {
                // A printed port is acknowledged, killed or not.
                if let Ok(port) = out.trim().parse::<u16>() {
                    acked.insert(target.unwrap(), port);
                    acked_total += 1;
                } else {
                    assert!(killed, "get failed without being killed: {status}");
                }
            }
            Op::Release => {
                assert!(done || killed, "release failed without being killed: {status}");
                acked.remove(&target.unwrap());
            }
            Op::Cleanup => assert!(done || killed, "cleanup failed: {status}"),
            Op::Reset => {
                assert!(done || killed, "reset failed: {status}");
                if done {
                    acked.clear();
                }
            }
        }
        // The invariants, through the library, as the next process sees it.
        let reg = Registry::open(env.home(), config.clone()).unwrap();
        let listed = reg.list().unwrap_or_else(|e| panic!("after killing {op:?}: {e}"));
        let now: BTreeMap<String, u16> =
            listed.iter().map(|l| (l.entry.project.clone(), l.entry.port)).collect();
        let ports: BTreeSet<u16> = now.values().copied().collect();
        assert_eq!(ports.len(), now.len(), "a port held twice after killing {op:?}");
        assert!(ports.iter().all(|p| (START..=END).contains(p)), "a port outside the range");
        if op == Op::Reset && killed && now.is_empty() {
            // The reset had committed before the kill.
            acked.clear();
        }
        for (name, port) in &acked {
            assert_eq!(
                now.get(name),
                Some(port),
                "acknowledged `{name}` lost after killing {op:?}"
            );
        }
        // Every index agrees with the entries, the per-range bitmaps
        // included: what `portd doctor` checks.
        let report = portd_store::doctor::examine(&env.home(), &config, None);
        if let Some(f) = report.first_error() {
            panic!("doctor after killing {op:?}: {f:?}");
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let line = format!(
        "crash: {kills} kills ({by_op:?}) in {runs} runs, {secs:.1} s; \
         {acked_total} allocations acknowledged, {} held at the end\n",
        acked.len()
    );
    std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes()).unwrap();
}
