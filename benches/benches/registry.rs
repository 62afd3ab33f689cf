//! Library-level registry costs, each call durable and coordinated through
//! `registry.lock` as every process is. Targets of BENCHMARKS.md:
//! 2 (get of an existing project), 4 (50 new projects in one process,
//! beside the `portpicker` crate), 5 (group commit), 6 (growth).

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use portd_store::{Config, Owner, Ranges, Registry};
use std::path::Path;

fn open(dir: &Path, config: Config) -> Registry {
    Registry::open(dir.join("portd"), config).expect("open")
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

fn get_existing(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let reg = open(dir.path(), Config::default());
    reg.get("existing").expect("get");
    let mut g = c.benchmark_group("get existing");
    g.bench_function("registry get", |b| b.iter(|| reg.get("existing").expect("get")));
    g.finish();
}

/// Target 4: 50 new projects, durable, registry opened and closed inside
/// the timed region; beside the `portpicker` crate's 50 (which persists
/// nothing and promises no uniqueness).
fn fifty_in_process(c: &mut Criterion) {
    let mut g = c.benchmark_group("50 ports in one process");
    g.bench_function("portd get_many (open, commit, close)", |b| {
        b.iter_batched(
            || {
                // An existing registry file, as on any machine after the
                // first use; creating the file is not part of the figure.
                let dir = tempfile::tempdir().expect("tempdir");
                open(dir.path(), Config::default()).get("warm").expect("warm");
                (dir, names("p", 50))
            },
            |(dir, names)| {
                let reg = open(dir.path(), Config::default());
                let ports = reg.get_many(&names).expect("get_many");
                drop(reg);
                (dir, ports)
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("portpicker crate", |b| {
        b.iter(|| (0..50).map(|_| portpicker::pick_unused_port()).collect::<Vec<_>>())
    });
    g.finish();
}

/// Target 5: 2 threads × N `acquire` calls. Shared: one registry, whose
/// callers share transactions. One transaction each: one registry per
/// thread, so every call is its own locked transaction, as separate
/// processes would be. Same work per element; throughput is compared.
fn group_commit(c: &mut Criterion) {
    let mut g = c.benchmark_group("acquire, 2 threads");
    g.sample_size(10);
    let owner = Owner::this_process();
    let run = |regs: [&Registry; 2], per_thread: usize| {
        std::thread::scope(|s| {
            for (t, reg) in regs.into_iter().enumerate() {
                s.spawn(move || {
                    for i in 0..per_thread {
                        reg.acquire(&format!("t{t}-{i}"), owner).expect("acquire");
                    }
                });
            }
        });
    };
    for (label, per_thread) in [("group commit", 1000), ("one transaction each", 100)] {
        g.throughput(Throughput::Elements(2 * per_thread as u64));
        g.bench_function(format!("{label} (2 x {per_thread})"), |b| {
            b.iter_batched(
                || {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let a = open(dir.path(), big_range());
                    let b = open(dir.path(), big_range());
                    (dir, a, b)
                },
                |(dir, a, b)| {
                    if label == "group commit" {
                        run([&a, &a], per_thread);
                    } else {
                        run([&a, &b], per_thread);
                    }
                    dir
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

/// One range of 30,000 ports, room for the growth cases.
fn big_range() -> Config {
    let ranges = Ranges::from_raw(&[("big".into(), 2000, 31999, true)]).expect("range");
    Config { ranges, ..Config::default() }
}

/// Target 6: a new project's allocation with 0 / 1,000 / 10,000 / 20,000
/// entries already there, and the list of 20,000.
fn growth(c: &mut Criterion) {
    let mut g = c.benchmark_group("growth");
    g.sample_size(20);
    for existing in [0usize, 1_000, 10_000, 20_000] {
        let dir = tempfile::tempdir().expect("tempdir");
        let reg = open(dir.path(), big_range());
        for chunk in names("e", existing).chunks(1000) {
            reg.get_many(chunk).expect("fill");
        }
        let mut n = 0u64;
        g.bench_function(format!("get new, {existing} entries"), |b| {
            b.iter_batched(
                || {
                    n += 1;
                    format!("new-{n}")
                },
                |name| reg.get(&name).expect("get"),
                BatchSize::SmallInput,
            )
        });
        if existing == 20_000 {
            g.bench_function("list, 20000 entries", |b| b.iter(|| reg.list().expect("list")));
        }
    }
    g.finish();
}

/// `get_many(1000)` on an open handle, durable, with the default ranges
/// (the primary range of 1,000 ports cannot hold them all, so the batch
/// spills over into `overflow`), beside one probe of one port: per port,
/// the batch must cost no more than a single probe.
fn thousand(c: &mut Criterion) {
    let mut g = c.benchmark_group("get_many 1000 vs one probe");
    g.bench_function("one probe", |b| {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let free = l.local_addr().expect("addr").port();
        drop(l);
        let opts = portd_core::ProbeOptions::default();
        b.iter(|| portd_core::probe(free, opts))
    });
    g.throughput(Throughput::Elements(1000));
    g.bench_function("get_many 1000 (open handle)", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().expect("tempdir");
                let reg = open(dir.path(), Config::default());
                reg.get("warm").expect("warm");
                (dir, reg, names("k", 1000))
            },
            |(dir, reg, names)| {
                let ports = reg.get_many(&names).expect("get_many");
                (dir, reg, ports)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, get_existing, fifty_in_process, group_commit, growth, thousand);
criterion_main!(benches);
