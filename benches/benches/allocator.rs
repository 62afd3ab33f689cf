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
    g.finish();
    // One thread against two racing on one bitmap, over enough bits that
    // starting the second thread (tens of µs) weighs little.
    let mut g = c.benchmark_group("bitmap 2^20");
    const BIG: usize = 1 << 20;
    g.throughput(Throughput::Elements(BIG as u64));
    g.sample_size(20);
    g.bench_function("claim all, one thread", |b| {
        b.iter(|| {
            let bm = AtomicBitmap::new(BIG);
            assert_eq!(drain(&bm), BIG);
        })
    });
    g.bench_function("claim all, two threads", |b| {
        b.iter(|| {
            let bm = AtomicBitmap::new(BIG);
            let n = std::thread::scope(|s| {
                let other = s.spawn(|| drain(&bm));
                drain(&bm) + other.join().unwrap()
            });
            assert_eq!(n, BIG);
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
