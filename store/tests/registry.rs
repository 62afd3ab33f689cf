//! The registry against a plain model, and reclaim of dead owners.

use portd_store::{Config, ErrorKind, Owner, Ranges, Registry, State};
use std::collections::{BTreeMap, BTreeSet};

/// A registry in a fresh directory whose only range is `start..=end`.
fn registry(start: u16, end: u16) -> (tempfile::TempDir, Registry) {
    let dir = tempfile::tempdir().unwrap();
    let ranges = Ranges::from_raw(&[("test".into(), start.into(), end.into(), true)]).unwrap();
    let config = Config { ranges, ..Config::default() };
    let reg = Registry::open(dir.path().join("portd"), config).unwrap();
    (dir, reg)
}

/// xorshift64*: a seeded, reproducible sequence.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

/// Random get / get_many / release / cleanup sequences against a
/// `BTreeMap` of project → port. After every step the registry lists
/// exactly the model's entries, no port twice; a project keeps its port
/// while it exists and gets its last port back after a release when no one
/// else took it.
#[test]
fn random_operations_match_a_plain_model() {
    let names: Vec<String> = (0..24).map(|i| format!("model-{i}")).collect();
    for seed in 1..=4u64 {
        // 48 ports for 24 projects: never full, so nothing is evicted.
        let (_dir, reg) = registry(26_000, 26_047);
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut model: BTreeMap<String, u16> = BTreeMap::new();
        let mut last: BTreeMap<String, u16> = BTreeMap::new();
        for step in 0..300 {
            let ctx = format!("seed {seed}, step {step}");
            match rng.below(10) {
                0..=4 => {
                    let n = &names[rng.below(names.len())];
                    let port = reg.get(n).unwrap();
                    check_get(&model, &last, n, port, &ctx);
                    model.insert(n.clone(), port);
                }
                5 => {
                    let batch: Vec<&String> =
                        (0..4).map(|_| &names[rng.below(names.len())]).collect();
                    let ports = reg.get_many(&batch).unwrap();
                    for (n, port) in batch.into_iter().zip(ports) {
                        if let Some(&had) = model.get(n) {
                            assert_eq!(port, had, "{ctx}: {n} in a batch");
                        }
                        check_get(&model, &last, n, port, &ctx);
                        model.insert(n.clone(), port);
                    }
                }
                6..=8 => {
                    let n = &names[rng.below(names.len())];
                    match (reg.release(n), model.remove(n)) {
                        (Ok(()), Some(port)) => {
                            last.insert(n.clone(), port);
                        }
                        (Err(e), None) => assert_eq!(e.kind(), ErrorKind::UnknownProject, "{ctx}"),
                        (r, m) => panic!("{ctx}: release {n}: registry {r:?}, model {m:?}"),
                    }
                }
                _ => {
                    // No owners, nothing past idle_ttl: cleanup changes nothing.
                    let report = reg.cleanup().unwrap();
                    assert!(report.reclaimed.is_empty() && report.expired.is_empty(), "{ctx}");
                }
            }
            let listed: BTreeMap<String, u16> =
                reg.list().unwrap().into_iter().map(|l| (l.entry.project, l.entry.port)).collect();
            assert_eq!(listed, model, "{ctx}");
            let ports: BTreeSet<u16> = model.values().copied().collect();
            assert_eq!(ports.len(), model.len(), "{ctx}: a port held twice");
            assert!(ports.iter().all(|p| (26_000..=26_047).contains(p)), "{ctx}");
        }
    }
}

fn check_get(
    model: &BTreeMap<String, u16>,
    last: &BTreeMap<String, u16>,
    name: &str,
    port: u16,
    ctx: &str,
) {
    if let Some(&had) = model.get(name) {
        assert_eq!(port, had, "{ctx}: {name} keeps its port");
    } else if let Some(&prev) = last.get(name)
        && !model.values().any(|&p| p == prev)
    {
        assert_eq!(port, prev, "{ctx}: {name} gets its last port back");
    } else {
        assert!(!model.values().any(|&p| p == port), "{ctx}: {name} got a held port");
    }
}

/// A full range: a lease whose owner's pid now belongs to another process
/// (same pid, other start time) is dead and its port is reclaimed; a live
/// owner's lease is never taken.
#[test]
fn a_reused_pid_counts_as_dead_and_its_port_is_reclaimed() {
    let (_dir, reg) = registry(26_100, 26_101);
    let me = Owner::this_process();
    let before_me = Owner { start_time: me.start_time - 1, ..me };
    let stale = reg.acquire("stale", before_me).unwrap().entry.port;
    let live = reg.acquire("live", me).unwrap().entry.port;
    assert_ne!(stale, live);
    assert_eq!(
        reg.show(&portd_store::Project::name("live").unwrap()).unwrap().state,
        State::Active
    );

    let next = reg.acquire("next", me).unwrap().entry.port;
    assert_eq!(next, stale, "the reused pid's lease was reclaimed");
    let projects: BTreeSet<String> =
        reg.list().unwrap().into_iter().map(|l| l.entry.project).collect();
    assert_eq!(projects, BTreeSet::from(["live".to_owned(), "next".to_owned()]));

    let err = reg.get("one-more").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoFreePort, "live owners keep their ports: {err}");
    assert_eq!(reg.list().unwrap().len(), 2, "a failed allocation changes nothing");
}

/// Threads of one process share transactions (group commit): every answer
/// is committed, ports are distinct, and a request that fails in a shared
/// batch does not undo the others.
#[test]
fn concurrent_callers_in_one_process_share_transactions_safely() {
    let (_dir, reg) = registry(26_200, 26_999);
    let held = reg.get("held").unwrap();
    let results: Vec<(String, portd_store::Result<u16>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|t| {
                let reg = &reg;
                s.spawn(move || {
                    let mut out = Vec::new();
                    for i in 0..40usize {
                        let name = format!("t{t}-{i}");
                        // Every fourth asks for a port another project holds.
                        let opts = portd_store::GetOptions {
                            port: i.is_multiple_of(4).then_some(held),
                            ..Default::default()
                        };
                        let p = portd_store::Project::name(&name).unwrap();
                        out.push((name, reg.get_with(&p, &opts).map(|a| a.entry.port)));
                    }
                    out
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    let mut want: BTreeMap<String, u16> = BTreeMap::from([("held".to_owned(), held)]);
    for (name, r) in results {
        let i: usize = name.rsplit('-').next().unwrap().parse().unwrap();
        match r {
            Ok(port) => {
                assert!(!i.is_multiple_of(4), "{name} was given {port}, held by `held`");
                want.insert(name, port);
            }
            Err(e) => {
                assert_eq!((i % 4, e.kind()), (0, ErrorKind::PortBusy), "{name}: {e}");
            }
        }
    }
    assert_eq!(want.len(), 1 + 8 * 30);
    let listed: BTreeMap<String, u16> =
        reg.list().unwrap().into_iter().map(|l| (l.entry.project, l.entry.port)).collect();
    assert_eq!(listed, want, "exactly the answered allocations are committed");
    let ports: BTreeSet<u16> = listed.values().copied().collect();
    assert_eq!(ports.len(), listed.len(), "no port twice");
}

/// A batch is all or nothing and never evicts what it allocated itself: on
/// tiny ranges, random `get_many` batches (with names already held, names
/// repeated, and more names than ports) either return distinct ports, every
/// name then listed with the port returned, or fail with "no free port"
/// changing nothing. A `BTreeMap` model checks the registry after each one.
#[test]
fn get_many_is_all_or_nothing_and_never_evicts_its_own_allocations() {
    let names: Vec<String> = (0..12).map(|i| format!("batch-{i}")).collect();
    for seed in 1..=6u64 {
        let size = 3 + (seed as u16 % 4); // 3 to 6 ports
        let start = 26_100 + 10 * seed as u16;
        let (_dir, reg) = registry(start, start + size - 1);
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut model: BTreeMap<String, u16> = BTreeMap::new();
        for step in 0..40 {
            let n = 1 + rng.below(2 * size as usize);
            let batch: Vec<&str> = (0..n).map(|_| names[rng.below(names.len())].as_str()).collect();
            let distinct: BTreeSet<&str> = batch.iter().copied().collect();
            let before: Vec<_> = reg.list().unwrap().into_iter().map(|l| l.entry).collect();
            match reg.get_many(&batch) {
                Ok(ports) => {
                    assert!(distinct.len() <= size as usize, "seed {seed} step {step}: {batch:?}");
                    let mut by_name = BTreeMap::new();
                    for (name, port) in batch.iter().zip(&ports) {
                        assert_eq!(*by_name.entry(*name).or_insert(*port), *port, "{name}");
                    }
                    let unique: BTreeSet<u16> = by_name.values().copied().collect();
                    assert_eq!(
                        unique.len(),
                        by_name.len(),
                        "seed {seed} step {step}: one port twice"
                    );
                    // What the batch returned is what the registry holds.
                    let listed: BTreeMap<String, u16> = reg
                        .list()
                        .unwrap()
                        .into_iter()
                        .map(|l| (l.entry.project, l.entry.port))
                        .collect();
                    for (name, port) in &by_name {
                        assert_eq!(
                            listed.get(*name),
                            Some(port),
                            "seed {seed} step {step}: {name}"
                        );
                    }
                    // Entries not in the batch may have been evicted; those in
                    // the model that survive keep their port.
                    model.retain(|k, p| listed.get(k) == Some(p));
                    for (name, port) in by_name {
                        model.insert(name.to_owned(), port);
                    }
                    assert_eq!(listed, model, "seed {seed} step {step}");
                }
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::NoFreePort, "seed {seed} step {step}: {e}");
                    assert!(
                        distinct.len() > size as usize,
                        "seed {seed} step {step}: {batch:?}: {e}"
                    );
                    let after: Vec<_> = reg.list().unwrap().into_iter().map(|l| l.entry).collect();
                    assert_eq!(before, after, "a failed batch changed the registry");
                }
            }
        }
    }
}
