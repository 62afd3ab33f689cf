//! In-process costs of the allocator: bitmap claims (target 8: ≥ 5e7
//! claims/s on one thread; two threads on one bitmap ≥ 1.6× one thread's
//! aggregate rate, side by side in the group `bitmap claims`) and OS
//! probes: one, and 1000 sequentially beside 1000 through `probe_all`
//! (per port in a parallel batch ≤ one single probe), in the group `probe`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portd_core::{AtomicBitmap, ProbeOptions, probe, probe_all};
use std::hint::black_box;

const N: usize = 5000;

/// Claims until the bitmap is full; returns how many this thread got.
fn drain(bm: &AtomicBitmap) -> usize {
    let mut n = 0;
    while let Some(x) = bm.claim_next() {
        black_box(x);
        n += 1;
    }
    n
}

/// `cycles` rounds of what an allocating thread does with a candidate it
/// then rejects: claim the next bit, release it.
fn claim_release(bm: &AtomicBitmap, cycles: usize) {
    for _ in 0..cycles {
        let bit = bm.claim_next().expect("a clear bit");
        assert!(bm.release(black_box(bit)));
    }
}

/// Runs `work` on `threads` threads at once (the caller's thread is one).
fn on_threads(threads: usize, work: impl Fn() + Sync) {
    std::thread::scope(|s| {
        for _ in 1..threads {
            s.spawn(&work);
        }
        work();
    });
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

    // One thread against two on one bitmap, over enough claims that
    // starting the second thread (tens of µs) weighs little. Throughput is
    // all threads' claims together, so the rates compare directly.
    let mut g = c.benchmark_group("bitmap claims");
    g.sample_size(20);
    const BIG: usize = 1 << 20;
    g.throughput(Throughput::Elements(BIG as u64));
    for threads in [1, 2] {
        g.bench_function(format!("claim all 2^20, {threads} thread(s)"), |b| {
            b.iter(|| {
                let bm = AtomicBitmap::new(BIG);
                let total = std::sync::atomic::AtomicUsize::new(0);
                on_threads(threads, || {
                    total.fetch_add(drain(&bm), std::sync::atomic::Ordering::Relaxed);
                });
                assert_eq!(total.into_inner(), BIG);
            })
        });
    }
    // Claim and release on a long-lived, half-full map of a port range's
    // size (the in-process mirror of a range), 2^19 cycles per thread.
    const RANGE: usize = 16_384;
    const CYCLES: usize = 1 << 19;
    let map = AtomicBitmap::new(RANGE);
    for bit in (0..RANGE).step_by(2) {
        map.claim(bit);
    }
    for threads in [1, 2] {
        g.throughput(Throughput::Elements((CYCLES * threads) as u64));
        g.bench_function(format!("claim+release 2^19 per thread, {threads} thread(s)"), |b| {
            b.iter(|| on_threads(threads, || claim_release(&map, CYCLES)))
        });
    }
    g.finish();
}

fn probes(c: &mut Criterion) {
    let opts = ProbeOptions::default();
    let mut g = c.benchmark_group("probe");
    g.throughput(Throughput::Elements(1));
    g.bench_function("one free port, tcp dual-stack", |b| b.iter(|| probe(black_box(24123), opts)));
    g.bench_function("one free port, tcp reuse", |b| {
        b.iter(|| probe(black_box(24123), ProbeOptions { reuse: true, udp: false }))
    });
    // 1000 ports, as a large `get_many` probes its candidates: one by one,
    // and through `probe_all` (a helper thread per further CPU, 16-port chunks).
    let ports: Vec<u16> = (25_000..26_000).collect();
    g.throughput(Throughput::Elements(ports.len() as u64));
    g.bench_function("1000 ports, sequential", |b| {
        b.iter(|| ports.iter().map(|&p| probe(black_box(p), opts)).collect::<Vec<_>>())
    });
    g.bench_function("1000 ports, probe_all", |b| b.iter(|| probe_all(black_box(&ports), opts)));
    g.finish();
}

criterion_group!(benches, bitmap, probes);
criterion_main!(benches);
