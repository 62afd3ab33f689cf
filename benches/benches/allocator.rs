//! In-process costs of the allocator: bitmap claims and OS probes.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portd_core::{AtomicBitmap, ProbeOptions, probe};
use std::hint::black_box;

fn bitmap(c: &mut Criterion) {
    let mut g = c.benchmark_group("bitmap");
    const N: usize = 5000;
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("claim_next 5000 (one thread)", |b| {
        b.iter(|| {
            let bm = AtomicBitmap::new(N);
            while let Some(x) = bm.claim_next() {
                black_box(x);
            }
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
    g.finish();
}

criterion_group!(benches, bitmap, probes);
criterion_main!(benches);
