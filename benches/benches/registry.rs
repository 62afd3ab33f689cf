//! Library-level registry costs: each call opens and closes the file inside
//! the lock, as every process does.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use portd_store::{Config, Registry};

fn registry(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let reg = Registry::open(dir.path().join("portd"), Config::default()).expect("open");
    reg.get("existing").expect("get");
    let mut g = c.benchmark_group("registry");
    g.bench_function("get existing", |b| b.iter(|| reg.get("existing").expect("get")));
    let mut n = 0u64;
    g.bench_function("get new + release", |b| {
        b.iter_batched(
            || {
                n += 1;
                format!("new-{n}")
            },
            |name| {
                reg.get(&name).expect("get");
                reg.release(&name).expect("release");
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("get_many 50 new", |b| {
        b.iter_batched(
            || {
                let fresh = tempfile::tempdir().expect("tempdir");
                let r =
                    Registry::open(fresh.path().join("portd"), Config::default()).expect("open");
                r.get("warm").expect("warm");
                let names: Vec<String> = (0..50).map(|i| format!("p{i}")).collect();
                (fresh, r, names)
            },
            |(_fresh, r, names)| r.get_many(&names).expect("get_many"),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, registry);
criterion_main!(benches);
