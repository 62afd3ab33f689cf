//! Leases that give their ports back when dropped: what a launcher holds
//! while its servers run.

use crate::allocation::Allocation;
use crate::error::Result;
use crate::registry::Registry;
use portd_core::Owner;

/// Active leases of this process on several projects, taken together by
/// [`Registry::lease_many`]. Dropped (or [`Leases::release`]d), in one
/// transaction: an entry the call created is released, so its port goes
/// back to the pool (its last port stays in history, so the next lease of
/// the same name gets it again when it is free); an entry that existed
/// before keeps its port and its lease ends. Either only while the entry is
/// exactly as the call left it: an entry another call (another `Leases` of
/// this process too) has leased or touched since is left alone. [`Leases::keep`] keeps
/// them instead (until this process exits; then they are reclaimed as any
/// dead owner's).
#[derive(Debug)]
#[must_use = "dropping the leases releases them at once"]
pub struct Leases<'r> {
    reg: &'r Registry,
    allocations: Vec<Allocation>,
    done: bool,
}

impl Registry {
    /// Leases `names` to this process, all or none, in one transaction (see
    /// [`Registry::acquire_many`]); the leases are released when the
    /// returned [`Leases`] is dropped.
    pub fn lease_many<S: AsRef<str>>(&self, names: &[S]) -> Result<Leases<'_>> {
        let owner = Owner::this_process();
        let allocations = self.acquire_many(names, owner)?;
        Ok(Leases { reg: self, allocations, done: false })
    }
}

impl Leases<'_> {
    /// The allocations, in the order of the names.
    pub fn allocations(&self) -> &[Allocation] {
        &self.allocations
    }

    /// The ports, in the order of the names.
    pub fn ports(&self) -> Vec<u16> {
        self.allocations.iter().map(|a| a.entry.port).collect()
    }

    /// Each port bound on `127.0.0.1` (see [`Allocation::bind_tcp`]), in the
    /// order of the names; the first port that cannot be bound fails the
    /// call (and the listeners already bound are closed).
    pub fn bind_tcp(&self) -> std::io::Result<Vec<std::net::TcpListener>> {
        self.allocations.iter().map(Allocation::bind_tcp).collect()
    }

    /// Releases the leases now, and says whether that worked (dropping does
    /// the same and ignores a failure).
    pub fn release(mut self) -> Result<()> {
        self.done = true;
        self.release_now()
    }

    /// Keeps the leases past this value: they end when this process exits.
    pub fn keep(mut self) {
        self.done = true;
    }

    fn release_now(&self) -> Result<()> {
        let leased: Vec<(&crate::Entry, bool)> =
            self.allocations.iter().map(|a| (&a.entry, a.fresh)).collect();
        self.reg.give_back(&leased)
    }
}

impl Drop for Leases<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.release_now();
        }
    }
}
