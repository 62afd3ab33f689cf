//! In-process costs of the allocator: bitmap claims (target 8: ≥ 5e7
//! claims/s on one thread; two threads on one bitmap no slower in
//! aggregate) and OS probes, one and a batch of 50.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portd_core::{AtomicBitmap, ProbeOptions, Verdict, probe};
use std::hint::black_box;

const N: usize = 5000;

fn drain(bm: &AtomicBitmap) -> usize {
    let mut n = 0;
    while let Some(x) = bm.claim_next() {
        black_box(x);
        n += 1;
    }
    n
}

fn bitmap(c: &mut Criterion) {
    let mut g = c.benchmark_group("bitmap");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("claim 5000, one thread", |b| {
        b.iter(|| {
            let bm = AtomicBitmap::new(N);
            drain(&bm)
        })
    });
    // The same 5000 claims shared by two threads racing on one bitmap
    // (includes the cost of starting the second thread).
    g.bench_function("claim 5000, two threads", |b| {
        b.iter(|| {
            let bm = AtomicBitmap::new(N);
            let n = std::thread::scope(|s| {
                let other = s.spawn(|| drain(&bm));
                drain(&bm) + other.join().unwrap()
            });
            assert_eq!(n, N);
        })
    });
    g.finish();
}

fn probes(c: &mut Criterion) {
    let mut g = c.benchmark_group("probe");
    g.bench_function("tcp dual-stack", |b| {
        b.iter(|| probe(black_box(24123), ProbeOptions::default()))
    });
    g.bench_function("tcp reuse", |b| {
        b.iter(|| probe(black_box(24123), ProbeOptions { reuse: true, udp: false }))
    });
    // 50 probes in a row, as one scan batch of the allocator does.
    g.throughput(Throughput::Elements(50));
    g.bench_function("batch of 50", |b| {
        b.iter(|| {
            (24200..24250u16)
                .filter(|&p| probe(black_box(p), ProbeOptions::default()) == Verdict::Free)
                .count()
        })
    });
    g.finish();
}

criterion_group!(benches, bitmap, probes);
criterion_main!(benches);
