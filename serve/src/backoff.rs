//! Restart delays: exponential backoff with jitter, and when failures count
//! as a crash loop.
//!
//! Pure bookkeeping: the caller passes the clock in ([`Instant`]s) and
//! sleeps itself, so every rule is testable without waiting. It does not
//! decide *whether* to restart (that is the restart policy's job), only how
//! long to wait and when to give up.
//!
//! - The n-th restart in a row waits min(0.5 s · 2ⁿ, 30 s), with equal
//!   jitter: half of it fixed, the other half drawn uniformly, so that many
//!   servers failing together do not restart in step.
//! - A failure within [`QUICK`] of the start is *quick*; [`CRASH_LOOP_AFTER`]
//!   quick failures in a row make a crash loop, and retries stop.
//! - A server healthy for [`HEALTHY_RESET`] starts afresh: its next failure
//!   waits the shortest delay again.

use std::time::{Duration, Instant};

/// The first restart's delay (before jitter).
pub const INITIAL_DELAY: Duration = Duration::from_millis(500);
/// The longest delay (before jitter).
pub const MAX_DELAY: Duration = Duration::from_secs(30);
/// A failure within this time of the start is quick.
pub const QUICK: Duration = Duration::from_secs(60);
/// This many quick failures in a row are a crash loop.
pub const CRASH_LOOP_AFTER: u32 = 5;
/// Healthy for this long, a server's failures are forgotten.
pub const HEALTHY_RESET: Duration = Duration::from_secs(60);

/// What to do after the server exited or was stopped for failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start it again after this delay.
    Restart(Duration),
    /// It keeps failing at once: stop retrying (state `crash-looping`).
    CrashLoop,
}

/// The restart bookkeeping of one server.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// Restarts since the last reset: the exponent of the next delay.
    attempt: u32,
    /// Quick failures in a row.
    quick: u32,
    /// When the current run started.
    started: Option<Instant>,
    /// When the current run was first seen healthy.
    healthy_since: Option<Instant>,
    /// xorshift64* state for the jitter; never 0.
    rng: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    /// Fresh bookkeeping with a random jitter seed.
    pub fn new() -> Backoff {
        use std::hash::{BuildHasher, Hasher};
        // std's RandomState is keyed from the OS's randomness (and differs
        // per instance): enough to spread restarts, without a crate.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        Backoff::with_seed(h.finish())
    }

    /// Fresh bookkeeping whose jitter is drawn from `seed` (for tests).
    pub fn with_seed(seed: u64) -> Backoff {
        Backoff { attempt: 0, quick: 0, started: None, healthy_since: None, rng: seed | 1 }
    }

    /// The server was started (or restarted) at `now`.
    pub fn on_start(&mut self, now: Instant) {
        self.started = Some(now);
        self.healthy_since = None;
    }

    /// The server passed a health check at `now`. Once it has been healthy
    /// for [`HEALTHY_RESET`] since its first passed check of this run, its
    /// past failures are forgotten.
    pub fn on_healthy(&mut self, now: Instant) {
        let since = *self.healthy_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= HEALTHY_RESET {
            self.attempt = 0;
            self.quick = 0;
        }
    }

    /// The server exited (or was stopped as unhealthy) at `now`: restart it
    /// after the returned delay, or give up. An exit without a recorded
    /// start counts as quick.
    pub fn on_exit(&mut self, now: Instant) -> Decision {
        let quick = self.started.is_none_or(|s| now.saturating_duration_since(s) < QUICK);
        self.started = None;
        self.healthy_since = None;
        if quick {
            self.quick += 1;
            if self.quick >= CRASH_LOOP_AFTER {
                return Decision::CrashLoop;
            }
        } else {
            self.quick = 0;
        }
        let d = delay(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        Decision::Restart(self.jitter(d))
    }

    /// Forgets every failure (after `portd start` of a crash-looping server).
    pub fn reset(&mut self) {
        self.attempt = 0;
        self.quick = 0;
        self.started = None;
        self.healthy_since = None;
    }

    /// Quick failures in a row so far.
    pub fn quick_failures(&self) -> u32 {
        self.quick
    }

    /// `d/2 + U[0, d/2]`.
    fn jitter(&mut self, d: Duration) -> Duration {
        let half = d.as_nanos() as u64 / 2;
        let extra = self.next() % (half + 1);
        Duration::from_nanos(half + extra)
    }

    /// xorshift64* (Vigna, 2016).
    fn next(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The delay before jitter of restart number `attempt` (0-based).
pub fn delay(attempt: u32) -> Duration {
    // 0.5 s · 2⁶ = 32 s is already past the cap.
    INITIAL_DELAY.saturating_mul(1 << attempt.min(6)).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn delays_double_from_half_a_second_to_the_cap() {
        let want = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0];
        for (n, w) in want.iter().enumerate() {
            assert_eq!(delay(n as u32), secs(*w), "attempt {n}");
        }
        assert_eq!(delay(u32::MAX), MAX_DELAY);
    }

    /// Runs that fail after 61 s (never quick), so the delays keep growing.
    #[test]
    fn restart_delays_are_jittered_within_half_to_the_full_delay() {
        for seed in 0..200 {
            let mut b = Backoff::with_seed(seed);
            let mut now = Instant::now();
            for n in 0..10 {
                b.on_start(now);
                now += secs(61.0);
                let Decision::Restart(got) = b.on_exit(now) else {
                    panic!("a slow failure is never a crash loop")
                };
                let d = delay(n);
                assert!(got >= d / 2 && got <= d, "seed {seed}, attempt {n}: {got:?} for {d:?}");
                now += got;
            }
        }
    }

    #[test]
    fn jitter_spreads_over_the_whole_interval() {
        let mut b = Backoff::with_seed(7);
        let d = secs(8.0);
        let draws: Vec<Duration> = (0..2000).map(|_| b.jitter(d)).collect();
        assert!(draws.iter().all(|x| *x >= d / 2 && *x <= d));
        let low = draws.iter().filter(|x| **x < secs(5.0)).count();
        let high = draws.iter().filter(|x| **x > secs(7.0)).count();
        // Each quarter of [4 s, 8 s] holds about 500 draws.
        assert!((350..650).contains(&low) && (350..650).contains(&high), "{low} {high}");
        let seeds: Vec<Duration> = (0..8).map(|s| Backoff::with_seed(s).jitter(d)).collect();
        assert!(seeds.windows(2).any(|w| w[0] != w[1]), "seeds draw differently: {seeds:?}");
        assert_ne!(Backoff::new().rng, 0);
    }

    #[test]
    fn five_quick_failures_in_a_row_are_a_crash_loop() {
        let mut b = Backoff::with_seed(1);
        let mut now = Instant::now();
        for n in 0..4 {
            b.on_start(now);
            now += secs(1.0);
            assert!(matches!(b.on_exit(now), Decision::Restart(_)), "failure {n}");
            assert_eq!(b.quick_failures(), n + 1);
            now += secs(20.0);
        }
        b.on_start(now);
        now += secs(59.9);
        assert_eq!(b.on_exit(now), Decision::CrashLoop);
        // `portd start` tries again.
        b.reset();
        b.on_start(now);
        let Decision::Restart(d) = b.on_exit(now + secs(1.0)) else { panic!("after a reset") };
        assert!(d <= INITIAL_DELAY);
    }

    #[test]
    fn a_failure_after_sixty_seconds_is_not_quick_and_breaks_the_row() {
        let mut b = Backoff::with_seed(2);
        let mut now = Instant::now();
        for _ in 0..4 {
            b.on_start(now);
            now += secs(2.0);
            b.on_exit(now);
        }
        assert_eq!(b.quick_failures(), 4);
        b.on_start(now);
        now += QUICK;
        assert!(matches!(b.on_exit(now), Decision::Restart(_)), "60 s is not quick");
        assert_eq!(b.quick_failures(), 0);
        for _ in 0..4 {
            b.on_start(now);
            now += secs(2.0);
            assert!(matches!(b.on_exit(now), Decision::Restart(_)));
        }
        // Five quick ones in a row again.
        b.on_start(now);
        now += secs(2.0);
        assert_eq!(b.on_exit(now), Decision::CrashLoop);
        let mut b = Backoff::with_seed(2);
        assert!(matches!(b.on_exit(now), Decision::Restart(_)));
        assert_eq!(b.quick_failures(), 1, "an exit without a start counts as quick");
    }

    #[test]
    fn sixty_seconds_healthy_resets_the_delay() {
        let mut b = Backoff::with_seed(3);
        let mut now = Instant::now();
        for _ in 0..4 {
            b.on_start(now);
            now += secs(1.0);
            b.on_exit(now);
        }
        // The next delay would be 8 s (jittered: at least 4 s).
        b.on_start(now);
        b.on_healthy(now + secs(1.0));
        b.on_healthy(now + secs(60.0));
        assert_eq!(b.quick_failures(), 4, "healthy for only 59 s");
        b.on_healthy(now + secs(61.0));
        assert_eq!(b.quick_failures(), 0);
        let Decision::Restart(d) = b.on_exit(now + secs(62.0)) else { panic!() };
        assert!(d <= INITIAL_DELAY, "{d:?}");

        // Healthy time counts from the first passed check of the same run.
        let mut b = Backoff::with_seed(3);
        for _ in 0..3 {
            b.on_start(now);
            now += secs(1.0);
            b.on_exit(now);
        }
        b.on_start(now);
        b.on_healthy(now + secs(30.0));
        b.on_exit(now + secs(40.0));
        b.on_start(now + secs(50.0));
        b.on_healthy(now + secs(95.0));
        assert_eq!(b.quick_failures(), 4, "a new run's healthy time starts again");
        let Decision::Restart(d) = b.on_exit(now + secs(111.0)) else { panic!() };
        assert!(d >= secs(4.0), "the fifth restart waits 8 s jittered, not 0.5 s: {d:?}");
    }
}
