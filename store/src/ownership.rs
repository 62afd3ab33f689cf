//! Whose is the process on a project's port: the one rule that `get` (its
//! warning and `--free`), `check` and `doctor` share.
//!
//! A process is the project's own when it is the entry's live owner or the
//! child recorded for the lease, a descendant of either, or a member of the
//! process group one of them leads (`portd run` starts its command in a
//! group of its own, so every process the command starts belongs to it).
//! A listener that is none of these but was started with the project's
//! port in its environment (`PORT=$(portd get api) node server.js`) is the
//! project's server too: it is *adoptable*, and `get` records it as the
//! owner. The lookups cost milliseconds (`/proc`), so only the paths that
//! found the port bound pay for them, never allocation.
//!
//! Also here: how allocation probes a port it would hand out, which
//! `check` uses too, so that the two never disagree.

use crate::error::{Error, ErrorKind, Result};
use crate::record::{Entry, display_name};
use crate::{Listed, Project, Registry};
use portd_core::sys::{self, Holder};
use portd_core::{Liveness, Owner, ProbeOptions, Verdict, probe};

/// How far up the parent chain a process is followed: deeper trees than
/// this are not a dev server's.
const MAX_DEPTH: usize = 64;

/// What holds an entry's port now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// Nothing: its server can bind it (probed with `SO_REUSEADDR`, as a
    /// server re-binding its own port does).
    Free,
    /// This user may not bind it at all (`EACCES`, e.g. a port below 1024).
    Denied,
    /// Only the project's own processes.
    Own,
    /// A server started with the project's port in its environment, not
    /// yet recorded: this owner would make every binder the project's own.
    Adoptable(Owner),
    /// Someone else; an empty list means the binder cannot be seen
    /// (another user's process, without privileges).
    Foreign(Vec<Holder>),
}

/// The pids a lease's processes descend from: its live owner and the child
/// recorded for it. Empty when the owner is dead (or there is none). The
/// child counts only while it still descends from the owner: a child pid is
/// stored without a start time, and once the child has exited its pid may
/// be reused by an unrelated process.
fn family(e: &Entry) -> Vec<u32> {
    match e.owner {
        Some(o) if o.liveness() != Liveness::Dead => std::iter::once(o.pid)
            .chain(e.child_pid.filter(|&c| c != o.pid && related(&[o.pid], c)))
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether `pid` is one of `family`, leads or belongs to a group one of them
/// leads, or descends from one of them.
fn related(family: &[u32], pid: u32) -> bool {
    if family.is_empty() {
        return false;
    }
    let mut cur = pid;
    for depth in 0..MAX_DEPTH {
        if family.contains(&cur) {
            return true;
        }
        let Ok(st) = sys::proc_stat(cur) else { return false };
        if depth == 0 && family.contains(&st.pgrp) {
            return true;
        }
        if st.ppid <= 1 {
            return false;
        }
        cur = st.ppid;
    }
    false
}

/// Whether process `pid` is one of the project's own: the entry's live
/// owner or its child, a descendant of either, or in a process group one
/// of them leads.
pub fn is_own(e: &Entry, pid: u32) -> bool {
    related(&family(e), pid)
}

/// Whether `holders` (the binders of a port) are all `pid`, its
/// descendants or its process group: `pid` is what serves the port.
pub(crate) fn serves(pid: u32, holders: &[Holder]) -> bool {
    !holders.is_empty() && holders.iter().all(|h| related(&[pid], h.pid))
}

/// Whether `pid`'s environment carries `e`'s port (`PORT` or `PORTD_PORT`)
/// and names no other project: `PORTD_PROJECT_KEY`, when set, is `e`'s
/// key; otherwise `PORTD_PROJECT`, when set, names `e`'s.
fn started_for(e: &Entry, pid: u32) -> bool {
    let Some(vars) = sys::environ(pid) else { return false };
    let port = e.port.to_string();
    let var = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let carries = var("PORT") == Some(&port) || var("PORTD_PORT") == Some(&port);
    let names_it = match var("PORTD_PROJECT_KEY") {
        Some(k) => k == e.project,
        None => {
            var("PORTD_PROJECT").is_none_or(|p| p == e.project || p == display_name(&e.project))
        }
    };
    carries && names_it
}

/// The process to record as `e`'s owner among `holders`, none of which is
/// the project's own: one started with the project's port in its
/// environment, run by the entry's user, of which every holder is a part
/// (itself, a descendant, its group). Only an entry without a live owner
/// adopts, and only for its own user (or root): in a shared registry,
/// another user's process is never recorded on one's entry.
fn adoptable(e: &Entry, holders: &[Holder]) -> Option<Owner> {
    let me = sys::euid();
    if holders.is_empty()
        || (me != e.uid && me != 0)
        || e.owner.is_some_and(|o| o.liveness() != Liveness::Dead)
    {
        return None;
    }
    let candidates: Vec<u32> = holders
        .iter()
        .map(|h| h.pid)
        .filter(|&pid| sys::proc_uid(pid) == Some(e.uid) && started_for(e, pid))
        .collect();
    // The topmost: a server's workers inherit its environment.
    let root = candidates
        .iter()
        .copied()
        .find(|&pid| !candidates.iter().any(|&other| other != pid && related(&[other], pid)))?;
    if !serves(root, holders) {
        return None;
    }
    let owner = Owner::of_pid(root).ok()?;
    Some(Owner { uid: e.uid, ..owner })
}

/// What holds `e`'s port now, by the one rule of this module. Probes
/// first (microseconds); reads `/proc` only when the port is bound.
pub fn binding(e: &Entry, udp: bool) -> Binding {
    match probe(e.port, ProbeOptions { udp, reuse: true }) {
        Verdict::Free => return Binding::Free,
        Verdict::Denied => return Binding::Denied,
        Verdict::Busy => {}
    }
    let fam = family(e);
    // Each binder's parent chain is walked once.
    let (own, foreign): (Vec<Holder>, Vec<Holder>) =
        sys::holders(e.port, udp).into_iter().partition(|h| related(&fam, h.pid));
    if !own.is_empty() && foreign.is_empty() {
        return Binding::Own;
    }
    match adoptable(e, &foreign) {
        Some(owner) => Binding::Adoptable(owner),
        None => Binding::Foreign(foreign),
    }
}

/// Whether `e`'s port is bound by a process that is not the project's
/// own (see [`binding`]; an adoptable server counts as the project's).
pub fn bound_by_other(e: &Entry, udp: bool) -> bool {
    matches!(binding(e, udp), Binding::Foreign(_))
}

/// "port P is bound by …", naming the processes when visible.
pub fn busy_error(port: u16, udp: bool) -> Error {
    busy_error_for(port, &sys::holders(port, udp))
}

/// [`busy_error`] for binders already looked up.
pub(crate) fn busy_error_for(port: u16, holders: &[Holder]) -> Error {
    if holders.is_empty() && sys::time_wait(port) {
        return Error::new(
            ErrorKind::PortBusy,
            format!("port {port} has connections in TIME_WAIT: a new server cannot bind it yet"),
        )
        .with_hint("it is free again within a minute; or pick another port");
    }
    let who = if holders.is_empty() {
        "another process".to_owned()
    } else {
        holders.iter().map(|h| format!("pid {} ({})", h.pid, h.name)).collect::<Vec<_>>().join(", ")
    };
    Error::new(ErrorKind::PortBusy, format!("port {port} is bound by {who}"))
        .with_hint("stop that process, or take another port with `--move`")
}

/// How allocation probes a port it would hand to a project: as a new
/// server binds it (without `SO_REUSEADDR`, so TIME_WAIT counts), unless
/// the port is the project's own previous one (`own`), which is probed as
/// its server re-binds it. `check` calls it too.
pub(crate) fn allocation_probe(port: u16, udp: bool, own: bool) -> Verdict {
    probe(port, ProbeOptions { udp, reuse: own })
}

/// How many ports of `start..=end`, counted from `start`, this user may not
/// bind (`EACCES`): privileged ports form a prefix of any range.
pub(crate) fn denied_prefix(start: u16, end: u16, udp: bool) -> usize {
    (start..=end)
        .take_while(|&p| probe(p, ProbeOptions { udp, reuse: true }) == Verdict::Denied)
        .count()
}

/// A process bound to a port, and whether it is the holding project's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binder {
    /// The process.
    pub holder: Holder,
    /// Whether it is the project's own (or the server it would adopt).
    pub own: bool,
}

/// Everything portd knows about one port: [`Registry::explain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortReport {
    /// The port.
    pub port: u16,
    /// The configured range holding it.
    pub range: Option<String>,
    /// Why it is excluded, if it is.
    pub excluded: Option<String>,
    /// The project holding it, if any.
    pub held: Option<Listed>,
    /// Whether a server could bind it now as servers do (`SO_REUSEADDR`).
    pub bindable: bool,
    /// Whether portd would hand it to a new project now: in a range, not
    /// excluded, not held, and free by the probe allocation makes.
    pub free: bool,
    /// This user may not bind it (`EACCES`).
    pub denied: bool,
    /// Connections in TIME_WAIT keep it from a server binding without
    /// `SO_REUSEADDR`.
    pub time_wait: bool,
    /// The processes bound to it, when it is not free.
    pub binders: Vec<Binder>,
}

impl Registry {
    /// What `portd check` reports of `port`: the probes are the ones
    /// allocation makes, and ownership is decided by the rule of
    /// [`binding`].
    pub fn explain(&self, port: u16, udp: bool) -> Result<PortReport> {
        let held = self.holder(port)?;
        let range = self.config().ranges.containing(port).map(|r| r.name.clone());
        let excluded = self.exclusions().reason(port).map(|r| r.to_string());
        let rebind = probe(port, ProbeOptions { udp, reuse: true });
        let fresh = allocation_probe(port, udp, false);
        let holders = if rebind == Verdict::Free && fresh == Verdict::Free {
            Vec::new()
        } else {
            sys::holders(port, udp)
        };
        let time_wait = fresh == Verdict::Busy && holders.is_empty() && sys::time_wait(port);
        // Each binder's parent chain is walked once for the entry's family.
        let fam = held.as_ref().map(|l| family(&l.entry)).unwrap_or_default();
        let is_own: Vec<bool> = holders.iter().map(|h| related(&fam, h.pid)).collect();
        let adopt = held.as_ref().and_then(|l| {
            let foreign: Vec<Holder> = holders
                .iter()
                .zip(&is_own)
                .filter(|(_, own)| !**own)
                .map(|(h, _)| h.clone())
                .collect();
            adoptable(&l.entry, &foreign).map(|o| o.pid)
        });
        let binders = holders
            .into_iter()
            .zip(is_own)
            .map(|(h, own)| Binder {
                own: own || adopt.is_some_and(|a| related(&[a], h.pid)),
                holder: h,
            })
            .collect();
        Ok(PortReport {
            port,
            free: fresh == Verdict::Free && held.is_none() && excluded.is_none() && range.is_some(),
            range,
            excluded,
            held,
            bindable: rebind == Verdict::Free,
            denied: rebind == Verdict::Denied || fresh == Verdict::Denied,
            time_wait,
            binders,
        })
    }

    /// For `get`'s warning: the error to warn with when `e`'s port is bound
    /// by a process that is not the project's own, else `None`. A server
    /// started with the project's port in its environment is recorded as
    /// the owner on the way (the entry becomes active), silently.
    pub fn foreign_binding(&self, project: &Project, e: &Entry, udp: bool) -> Option<Error> {
        match binding(e, udp) {
            Binding::Foreign(holders) => Some(busy_error_for(e.port, &holders)),
            Binding::Adoptable(owner) => {
                // Not recorded (registry busy, say): still the project's server.
                let _ = self.adopt(project, e.port, owner);
                None
            }
            Binding::Free | Binding::Denied | Binding::Own => None,
        }
    }
}
