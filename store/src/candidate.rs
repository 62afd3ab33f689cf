//! Candidates: ports claimed in the handle's mirror and probed free before
//! the transaction that commits them, by the callers themselves.
//!
//! A concurrent `get` claims its project's preferred port, else the next
//! clear bit from the cursor, in its own thread, lock-free, and probes it
//! there; the leader only validates it against the index. A batch
//! (`get_many`, `acquire_many`) claims one candidate per new name and
//! probes them all in parallel ([`portd_core::probe_all`]), inside its
//! transaction, where it knows which names are new.

use crate::allocation::{Allocation, GetOptions};
use crate::error::Result;
use crate::mirror::Claim;
use crate::registry::Registry;
use crate::tx::Tx;
use portd_core::{PortRange, ProbeOptions, Verdict, preferred_offset};

/// How many rounds a batch re-claims for names whose candidates probed
/// busy before it leaves the rest to the one-by-one order.
const ROUNDS: usize = 4;

impl Registry {
    /// The ranges a new port for `opts` comes from, with their mirror
    /// indexes.
    fn eligible_indexed(&self, opts: &GetOptions) -> Vec<(usize, PortRange)> {
        self.eligible(opts).map(|r| (self.range_index(r), r.clone())).collect()
    }

    /// Whether a request may take a candidate at all: not for an exact
    /// port (`port`, `PORTD_PORT`) or a move, and only once the mirror has
    /// been synced with the registry.
    fn takes_candidate(&self, key: &str, opts: &GetOptions) -> bool {
        opts.port.is_none()
            && !opts.move_port
            && self.wanted_port(key, opts).is_none()
            && opts.range.as_deref().is_none_or(|r| self.config.ranges.by_name(r).is_some())
            && self.mirror.get().is_some_and(|m| m.generation() != 0)
    }

    /// Claims `count` ports for new projects `keys` (`None` where a key has
    /// no preferred port to try first), each its preferred port if that is
    /// clear, else the next clear one; `None` for those the ranges cannot
    /// hold.
    fn claim(&self, keys: &[Option<&str>], eligible: &[(usize, PortRange)]) -> Vec<Option<Claim>> {
        let mirror = self.mirror();
        keys.iter()
            .map(|key| {
                let (first, r) = eligible.first()?;
                if let Some(k) = key
                    && let Some(c) = mirror.claim(*first, r.port_at(preferred_offset(k, r.len())))
                {
                    return Some(c);
                }
                eligible.iter().find_map(|(i, _)| mirror.claim_next(*i))
            })
            .collect()
    }

    /// A candidate for the single request `key`/`opts`, claimed and probed
    /// in the caller's thread; `None` when it may take none or none probes
    /// free at the first try.
    pub(crate) fn candidate(&self, key: &str, opts: &GetOptions) -> Option<Claim> {
        if !self.takes_candidate(key, opts) {
            return None;
        }
        let eligible = self.eligible_indexed(opts);
        let c = self.claim(&[Some(key)], &eligible).pop()??;
        let verdict = portd_core::probe(c.port(), ProbeOptions { udp: opts.udp, reuse: false });
        (verdict == Verdict::Free).then_some(c)
    }

    /// Candidates for many new projects, probed in parallel batches: a
    /// port that probes busy is kept claimed (so it is not tried again) and
    /// its name gets another, for a few rounds.
    pub(crate) fn candidates(&self, keys: &[&str], opts: &GetOptions) -> Vec<Option<Claim>> {
        let mut out: Vec<Option<Claim>> = keys.iter().map(|_| None).collect();
        let eligible = self.eligible_indexed(opts);
        let probe = ProbeOptions { udp: opts.udp, reuse: false };
        let mut tried = Vec::new();
        let mut todo: Vec<usize> = (0..keys.len()).collect();
        for round in 0..ROUNDS {
            if todo.is_empty() {
                break;
            }
            let wanted: Vec<Option<&str>> =
                todo.iter().map(|&i| (round == 0).then_some(keys[i])).collect();
            let claims = self.claim(&wanted, &eligible);
            let ports: Vec<u16> = claims.iter().flatten().map(|c| c.port()).collect();
            let mut verdicts = portd_core::probe_all(&ports, probe).into_iter();
            let mut next = Vec::new();
            let mut full = false;
            for (slot, claim) in todo.iter().zip(claims) {
                match claim {
                    None => full = true,
                    Some(c) => match verdicts.next() {
                        Some(Verdict::Free) => out[*slot] = Some(c),
                        _ => {
                            tried.push(c);
                            next.push(*slot);
                        }
                    },
                }
            }
            todo = next;
            if full {
                break;
            }
        }
        drop(tried);
        out
    }
}

impl Tx<'_> {
    /// The allocations of `keys` (distinct) under `opts`, in one
    /// transaction: the new ones' candidates are claimed and probed
    /// together first.
    pub(crate) fn get_batch(
        &mut self,
        keys: &[&str],
        opts: &GetOptions,
    ) -> Result<Vec<Allocation>> {
        self.refresh_mirror()?;
        let reg = self.reg;
        let mirror = reg.mirror();
        let mut fresh = Vec::new();
        let mut candidates: Vec<Option<Claim>> = keys.iter().map(|_| None).collect();
        for (i, k) in keys.iter().enumerate() {
            if !reg.takes_candidate(k, opts) || self.entry(k)?.is_some() {
                continue;
            }
            match self.history_port(k)? {
                None => fresh.push(i),
                // A returning project's history port is claimed for it
                // before the new names' candidates, so that none of them
                // takes it (probed as the history port is: its own
                // TIME_WAIT does not count).
                Some(h) => {
                    let reuse = ProbeOptions { udp: opts.udp, reuse: true };
                    candidates[i] = reg
                        .eligible_indexed(opts)
                        .iter()
                        .find(|(_, r)| r.contains(h))
                        .and_then(|(ri, _)| mirror.claim(*ri, h))
                        .filter(|_| portd_core::probe(h, reuse) == Verdict::Free);
                }
            }
        }
        let wanted: Vec<&str> = fresh.iter().map(|&i| keys[i]).collect();
        for (i, c) in fresh.into_iter().zip(reg.candidates(&wanted, opts)) {
            candidates[i] = c;
        }
        let mut out = Vec::with_capacity(keys.len());
        for (k, c) in keys.iter().zip(candidates) {
            let a = match self.get_offered(k, opts, c)? {
                Some(a) => a,
                // Taken meanwhile (it cannot be, under the lock and with the
                // mirror synced, but the index decides): pick one by one.
                None => self.get(k, opts)?,
            };
            out.push(a);
        }
        Ok(out)
    }
}
