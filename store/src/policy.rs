//! The allocation policy: which port a project gets, in the order the
//! specification gives (history, preferred port, scan from the rotating
//! cursor, eviction of the least recently used idle entry), who may take
//! or change an entry, and why an entry moves.

use crate::allocation::{Allocation, GetOptions, MoveReason, Previous};
use crate::db::db_err;
use crate::error::{Error, ErrorKind, Result};
use crate::listing::State;
use crate::mirror::Claim;
use crate::ownership::{self, Binding, busy_error};
use crate::record::{Entry, display_name};
use crate::registry::Registry;
use crate::tx::{Tx, cursor_key};
use portd_core::{Liveness, PortRange, ProbeOptions, Verdict, preferred_offset, probe};
use redb::ReadableTable;

impl Registry {
    /// The exact port asked for, and whether it comes from the
    /// `PORTD_PORT` pin: `--port`, else the pin, unless an explicit
    /// `--range` or `--move` asks for something else (a flag beats the
    /// environment).
    pub(crate) fn wanted_port(&self, key: &str, opts: &GetOptions) -> Option<(u16, bool)> {
        if let Some(p) = opts.port {
            return Some((p, false));
        }
        if opts.range.is_some() || opts.move_port {
            return None;
        }
        self.config.pinned_port_for(key).map(|p| (p, true))
    }

    /// Why an existing entry cannot be kept as it is for `opts`, if it
    /// cannot. `PORTD_RANGE` is not a reason: it chooses the range of new
    /// allocations only.
    pub(crate) fn moves(&self, e: &Entry, opts: &GetOptions) -> Option<MoveReason> {
        let in_range = self.config.ranges.by_name(&e.range).is_some_and(|r| r.contains(e.port));
        if !in_range {
            return Some(MoveReason::OutsideRange);
        }
        if let Some(why) = self.exclusions.reason(e.port) {
            return Some(MoveReason::Excluded(why.to_string()));
        }
        match self.wanted_port(&e.project, opts) {
            Some((p, false)) if p != e.port => return Some(MoveReason::Asked),
            Some((p, true)) if p != e.port => return Some(MoveReason::Pinned),
            _ => {}
        }
        match &opts.range {
            Some(r) if *r != e.range => Some(MoveReason::Range(r.clone())),
            _ => None,
        }
    }

    /// The ranges a new port for `opts` comes from: the one asked for
    /// (`range`, else the configured default), else every fallback range.
    pub(crate) fn eligible<'a>(
        &'a self,
        opts: &'a GetOptions,
    ) -> impl Iterator<Item = &'a PortRange> {
        let want = opts.range.as_deref().or(self.config.default_range.as_deref());
        self.config.ranges.eligible(want)
    }

    /// Refuses another user's entry in a shared registry: its port is for
    /// that user's server, so handing it to a second user would put two
    /// servers on one port. (Reading it, with `show` or `ls`, is fine.)
    pub(crate) fn usable_by_me(&self, e: &Entry) -> Result<()> {
        let me = portd_core::sys::euid();
        if !self.config.shared || e.uid == me {
            return Ok(());
        }
        Err(Error::permission(format!(
            "project `{}` belongs to {} in this shared registry; its port is for that user's server",
            e.display_name(),
            user_label(e.uid)
        ))
        .with_hint(format!(
            "use a project name of your own; `portd show {}` prints this one's port",
            e.display_name()
        )))
    }
}

impl Tx<'_> {
    /// The project's allocation as [`Tx::get_unclaimed`] makes it; the key
    /// is then claimed for the rest of the transaction.
    pub(crate) fn get(&mut self, key: &str, opts: &GetOptions) -> Result<Allocation> {
        let a = self.get_offered(key, opts, None)?;
        Ok(a.expect("without a candidate there is nothing to reject"))
    }

    /// [`Tx::get`] offered `candidate`, a port its caller claimed in the
    /// mirror and probed free. `Ok(None)`: the candidate failed validation
    /// (another process took it since the caller's mirror was synced); its
    /// bit is released and the caller tries again.
    pub(crate) fn get_offered(
        &mut self,
        key: &str,
        opts: &GetOptions,
        candidate: Option<Claim>,
    ) -> Result<Option<Allocation>> {
        self.refresh_mirror()?;
        let a = self.get_unclaimed(key, opts, candidate)?;
        if a.is_some() {
            self.claimed.insert(key.to_owned());
        }
        Ok(a)
    }

    pub(crate) fn get_unclaimed(
        &mut self,
        key: &str,
        opts: &GetOptions,
        candidate: Option<Claim>,
    ) -> Result<Option<Allocation>> {
        let cfg = &self.reg.config;
        if let Some(r) = &opts.range {
            cfg.check_range(r)?;
        }
        // A candidate is validated before anything changes, so that its
        // rejection leaves the transaction as it was.
        let candidate = match candidate {
            Some(c) if !self.candidate_valid(&c, opts)? => {
                if self.port_holder(c.port())?.is_some() {
                    // Held, though the mirror had it clear (a row that
                    // disagrees with the index): the mirror learns it.
                    c.hold();
                }
                return Ok(None);
            }
            c => c,
        };
        let existing = self.entry(key)?;
        let history = self.history_port(key)?;
        self.evicted.clear();
        self.cursors.clear();
        let mut moved_because = None;
        if let Some(e) = &existing {
            self.reg.usable_by_me(e)?;
            if opts.owner.is_some() {
                guard(e, "lease")?;
            }
            let live = e.owner.filter(|o| o.liveness() != Liveness::Dead);
            if let (Some(cur), Some(new)) = (live, opts.owner)
                && cur != new
            {
                return Err(Error::new(
                    ErrorKind::PortBusy,
                    format!(
                        "project `{}` is already leased by pid {} on port {}",
                        e.display_name(),
                        cur.pid,
                        e.port
                    ),
                )
                .with_hint("stop that process first, or use another project name"));
            }
            let mut why = self.reg.moves(e, opts);
            // A running server keeps a port the configuration no longer
            // allows (it moves once it stops); only a request moves it now.
            if matches!(why, Some(MoveReason::Excluded(_) | MoveReason::OutsideRange))
                && live.is_some_and(|o| Some(o) != opts.owner)
            {
                why = None;
            }
            // A server started with the project's port in its environment
            // is the project's: a plain `--free` records it as the owner.
            let mut adopted = None;
            // The binders found, when foreign: the error names them without
            // a second scan of `/proc`.
            let mut foreign_binders = None;
            if opts.require_free && why.is_none() {
                match ownership::binding(e, opts.udp) {
                    Binding::Adoptable(o) if opts.owner.is_none() => adopted = Some(o),
                    Binding::Adoptable(_) => foreign_binders = Some(None),
                    Binding::Foreign(holders) => foreign_binders = Some(Some(holders)),
                    Binding::Free | Binding::Denied | Binding::Own => {}
                }
            }
            let foreign = foreign_binders.is_some();
            if let Some(binders) = foreign_binders
                && !opts.move_port
            {
                return Err(match binders {
                    Some(holders) => ownership::busy_error_for(e.port, &holders),
                    None => busy_error(e.port, opts.udp),
                });
            }
            if why.is_none() && !foreign {
                let mut next = e.clone();
                // Always later, as a touch is (see `get_with`).
                next.last_used_ms = self.now.max(e.last_used_ms + 1);
                if opts.owner.is_some() {
                    next.owner = opts.owner;
                    next.command = opts.command.clone();
                    next.child_pid = opts.child_pid;
                }
                if let Some(o) = adopted {
                    next.owner = Some(o);
                    next.command = portd_core::sys::cmdline(o.pid);
                    next.child_pid = None;
                }
                if next != *e {
                    self.put(&next, Some(e))?;
                }
                let previous = Previous { entry: Some(e.clone()), history, cursors: Vec::new() };
                return Ok(Some(Allocation::kept(next, previous)));
            }
            if let Some(o) = live
                && Some(o) != opts.owner
            {
                return Err(Error::new(
                    ErrorKind::PortBusy,
                    format!(
                        "project `{}` is active (pid {}); it cannot move now",
                        e.display_name(),
                        o.pid
                    ),
                )
                .with_hint("stop it first, then ask again"));
            }
            guard(e, "move")?;
            self.remove(e)?;
            moved_because = Some(why.unwrap_or(MoveReason::Bound));
        }
        // Once per transaction: what expires does not change within it.
        let expired = if self.expired_once { Vec::new() } else { self.expire()? };
        self.expired_once = true;
        // A move never lands back on the port it leaves.
        let avoid = existing.as_ref().filter(|_| opts.move_port).map(|e| e.port);
        let (port, range) = match self.reg.wanted_port(key, opts) {
            Some((p, false)) => self.exact(key, p, opts)?,
            Some((p, true)) => self.exact(key, p, opts).map_err(pinned_error)?,
            None => self.pick(key, history, opts, avoid, candidate)?,
        };
        let e = Entry {
            project: key.to_owned(),
            port,
            range,
            owner: opts.owner,
            uid: portd_core::sys::euid(),
            created_ms: existing.as_ref().map_or(self.now, |e| e.created_ms),
            last_used_ms: self.now,
            command: opts.command.clone(),
            child_pid: opts.child_pid,
        };
        self.put(&e, None)?;
        let moved_from = existing.as_ref().map(|x| x.port).filter(|&p| p != port);
        Ok(Some(Allocation {
            entry: e,
            fresh: existing.is_none(),
            moved_from,
            moved_because: moved_from.and(moved_because),
            evicted: std::mem::take(&mut self.evicted),
            expired,
            previous: Previous {
                entry: existing,
                history,
                cursors: std::mem::take(&mut self.cursors),
            },
        }))
    }

    pub(crate) fn probe_opts(opts: &GetOptions, reuse: bool) -> ProbeOptions {
        ProbeOptions { udp: opts.udp, reuse }
    }

    /// Grants exactly `port`, or says who has it.
    pub(crate) fn exact(
        &mut self,
        key: &str,
        port: u16,
        opts: &GetOptions,
    ) -> Result<(u16, String)> {
        let cfg = &self.reg.config;
        // An exact port is granted in whatever range holds it, unless
        // `--range` asks for one (`PORTD_RANGE` only chooses where new
        // ports are looked for).
        let want = opts.range.as_deref();
        let range = cfg.ranges.containing(port).ok_or_else(|| {
            Error::usage(format!(
                "port {port} is outside every configured range ({})",
                cfg.ranges.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ")
            ))
            .with_hint("pick a port inside a range, or add a `[[range]]` to the config file")
        })?;
        if let Some(w) = want
            && w != range.name
        {
            return Err(Error::usage(format!("port {port} is not in range `{w}`")));
        }
        if let Some(why) = self.reg.exclusions.reason(port) {
            return Err(Error::usage(format!("port {port} is excluded: {why}"))
                .with_hint("pick another port"));
        }
        if let Some(holder) = self.port_holder(port)? {
            return Err(Error::new(
                ErrorKind::PortBusy,
                format!("port {port} is held by project `{}`", display_name(&holder)),
            )
            .with_hint(format!(
                "release it with `portd release {}`, or pick another port",
                display_name(&holder)
            )));
        }
        let reuse = self.history_port(key)? == Some(port);
        match ownership::allocation_probe(port, opts.udp, reuse) {
            Verdict::Free => Ok((port, range.name.clone())),
            Verdict::Denied => {
                Err(Error::usage(format!("port {port} cannot be bound by this user"))
                    .with_hint("pick a port above 1023"))
            }
            Verdict::Busy => {
                // A running server is granted the port it listens on when
                // its pid (or an ancestor's) is the owner asked for.
                let holders = portd_core::sys::holders(port, opts.udp);
                match opts.owner {
                    Some(o) if ownership::serves(o.pid, &holders) => Ok((port, range.name.clone())),
                    _ => Err(ownership::busy_error_for(port, &holders)),
                }
            }
        }
    }

    pub(crate) fn history_port(&self, key: &str) -> Result<Option<u16>> {
        Ok(self.history.get(key).map_err(db_err)?.map(|v| v.value()))
    }

    /// Whether `port` may be taken as far as the registry knows: not the
    /// port a move leaves, not excluded, held by no entry. (The probe comes
    /// after the port is claimed.)
    pub(crate) fn usable(&self, port: u16, avoid: Option<u16>) -> Result<bool> {
        Ok(Some(port) != avoid
            && self.reg.exclusions.reason(port).is_none()
            && self.port_holder(port)?.is_none())
    }

    /// Whether a caller's candidate may be taken for `opts`: in an
    /// eligible range, not excluded, held by no entry.
    fn candidate_valid(&self, c: &Claim, opts: &GetOptions) -> Result<bool> {
        let name = &self.reg.mirror().range(c.index()).name;
        Ok(self.reg.eligible(opts).any(|r| r.name == *name) && self.usable(c.port(), None)?)
    }

    /// Claims `port` of range `i` in the mirror, or finds it freed earlier
    /// in this transaction (its bit is still set: the mirror learns of the
    /// freeing after the commit). `None`: someone holds or claims it.
    fn take(&self, i: usize, port: u16) -> Option<Taken> {
        match self.reg.mirror().claim(i, port) {
            Some(c) => Some(Taken::Claimed(c)),
            None => self.freed.contains(&port).then_some(Taken::Freed),
        }
    }

    /// Keeps what [`Tx::take`] got for the port chosen.
    fn keep(&mut self, taken: Taken) {
        if let Taken::Claimed(c) = taken {
            self.claims.push(c);
        }
    }

    /// The candidate order of the spec: history, preferred port, scan from
    /// the rotating cursor range by range, then LRU eviction of idle
    /// entries. A caller's `candidate` (its own preferred port or scan
    /// result, claimed, probed and already validated) stands for the
    /// preferred port and the scan.
    pub(crate) fn pick(
        &mut self,
        key: &str,
        history: Option<u16>,
        opts: &GetOptions,
        avoid: Option<u16>,
        candidate: Option<Claim>,
    ) -> Result<(u16, String)> {
        let eligible: Vec<PortRange> = self.reg.eligible(opts).cloned().collect();
        let plain = Self::probe_opts(opts, false);
        if let Some(h) = history
            && let Some(r) = eligible.iter().find(|r| r.contains(h))
            && self.usable(h, avoid)?
            && let Some(t) = self.take(self.reg.range_index(r), h)
            && probe(h, Self::probe_opts(opts, true)) == Verdict::Free
        {
            self.keep(t);
            return Ok((h, r.name.clone()));
        }
        if let Some(c) = candidate.filter(|c| Some(c.port()) != avoid) {
            let name = self.reg.mirror().range(c.index()).name.clone();
            if c.scanned() {
                self.save_cursor(&c)?;
            }
            let port = c.port();
            self.claims.push(c);
            return Ok((port, name));
        }
        if let Some(first) = eligible.first() {
            let p = first.port_at(preferred_offset(key, first.len()));
            if self.usable(p, avoid)?
                && let Some(t) = self.take(self.reg.range_index(first), p)
                && probe(p, plain) == Verdict::Free
            {
                self.keep(t);
                return Ok((p, first.name.clone()));
            }
        }
        for r in &eligible {
            if let Some(p) = self.scan(r, avoid, &plain)? {
                return Ok((p, r.name.clone()));
            }
        }
        if let Some(found) = self.evict(&eligible, avoid, &plain)? {
            return Ok(found);
        }
        if let Some(e) = unbindable(&eligible, opts.udp) {
            return Err(e);
        }
        Err(Error::new(
            ErrorKind::NoFreePort,
            format!(
                "no free port: every port of {} is held by an active project, bound, or excluded",
                eligible.iter().map(|r| format!("`{r}`")).collect::<Vec<_>>().join(", ")
            ),
        )
        .with_hint(
            "free ports with `portd release --idle`, or add a `[[range]]` to the config file",
        ))
    }

    /// Claims ports of `r` in the mirror from its rotating cursor, a whole
    /// word of held ports skipped at a time, until one is usable and probes
    /// free; then the ports of `r` freed earlier in this transaction (their
    /// bits are still set). The ports tried stay claimed until the scan
    /// ends, so each is looked at once.
    pub(crate) fn scan(
        &mut self,
        r: &PortRange,
        avoid: Option<u16>,
        opts: &ProbeOptions,
    ) -> Result<Option<u16>> {
        let mirror = self.reg.mirror();
        let i = self.reg.range_index(r);
        let mut tried = Vec::new();
        while let Some(c) = mirror.claim_next(i) {
            let p = c.port();
            if self.usable(p, avoid)? && probe(p, *opts) == Verdict::Free {
                self.save_cursor(&c)?;
                self.claims.push(c);
                return Ok(Some(p));
            }
            tried.push(c);
        }
        let freed: Vec<u16> = self.freed.iter().copied().filter(|&p| r.contains(p)).collect();
        for p in freed {
            if self.usable(p, avoid)? && probe(p, *opts) == Verdict::Free {
                return Ok(Some(p));
            }
        }
        Ok(None)
    }

    /// Persists the cursor of the range `scanned` came from, just past it,
    /// recording the change for [`Registry::undo_get`].
    fn save_cursor(&mut self, scanned: &Claim) -> Result<()> {
        let r = self.reg.mirror().range(scanned.index()).clone();
        let key = cursor_key(&r.name);
        // Past the port the scan found (whichever thread found it).
        let now = ((scanned.bit() + 1) % r.len()) as u64;
        // Written once, by `finish`: a batch moves the cursor many times.
        let was = match self.cursor_writes.get(&key) {
            Some(&v) => Some(v),
            None => self.meta.get(key.as_str()).map_err(db_err)?.map(|v| v.value()),
        };
        self.cursor_writes.insert(key.clone(), now);
        if was != Some(now) {
            self.cursors.push((key, was, now));
        }
        Ok(())
    }

    /// Evicts the least recently used idle entry whose port is bindable.
    pub(crate) fn evict(
        &mut self,
        eligible: &[PortRange],
        avoid: Option<u16>,
        opts: &ProbeOptions,
    ) -> Result<Option<(u16, String)>> {
        let mut order = Vec::new();
        for row in self.lru.iter().map_err(db_err)? {
            let (k, _) = row.map_err(db_err)?;
            order.push(k.value().1.to_owned());
        }
        for key in order {
            let Some(e) = self.entry(&key)? else { continue };
            let Some(r) = eligible.iter().find(|r| r.contains(e.port)) else {
                continue;
            };
            if State::of(&e) != State::Idle
                || self.claimed.contains(&key)
                || self.is_defined(&key)?
                || guard(&e, "evict").is_err()
                || Some(e.port) == avoid
                || self.reg.exclusions.reason(e.port).is_some()
                // Probed as a server re-binding it would: TIME_WAIT left by
                // the evicted project's server must not block the reclaim.
                || probe(e.port, ProbeOptions { reuse: true, ..*opts }) != Verdict::Free
            {
                continue;
            }
            self.remove(&e)?;
            let found = (e.port, r.name.clone());
            self.evicted.push(e);
            return Ok(Some(found));
        }
        Ok(None)
    }
}

/// "no free port" when this user may bind no port of `eligible` at all
/// (`EACCES`: privileged ports); `None` when some port is bindable.
fn unbindable(eligible: &[PortRange], udp: bool) -> Option<Error> {
    let all_denied = !eligible.is_empty()
        && eligible.iter().all(|r| ownership::denied_prefix(r.start, r.end, udp) == r.len());
    all_denied.then(|| {
        Error::new(
            ErrorKind::NoFreePort,
            format!(
                "no free port: this user cannot bind any port of {}",
                eligible.iter().map(|r| format!("`{r}`")).collect::<Vec<_>>().join(", ")
            ),
        )
        .with_hint(
            "ports below 1024 need root or CAP_NET_BIND_SERVICE: configure a range above 1023",
        )
    })
}

/// `pid N (`command`)` of an entry whose owner is running (or cannot be
/// checked), else `None`.
pub(crate) fn in_use(e: &Entry) -> Option<String> {
    if State::of(e) == State::Idle {
        return None;
    }
    let o = e.owner?;
    let cmd = e.command.clone().or_else(|| portd_core::sys::cmdline(o.pid)).map(|c| c.join(" "));
    Some(match cmd {
        Some(c) if !c.is_empty() => format!("pid {} (`{c}`)", o.pid),
        _ => format!("pid {}", o.pid),
    })
}

/// An error about the port `PORTD_PORT` pins, naming the pin as the cause.
fn pinned_error(e: Error) -> Error {
    Error::new(e.kind(), format!("`PORTD_PORT` pins a port this project cannot have: {}", e.message()))
        .with_hint(
            "unset `PORTD_PORT` (exported by `portd env`), or pass `--port`, `--range` or `--move`, which take precedence",
        )
}

/// `uid N (`name`)`, or `uid N` when the name is unknown.
fn user_label(uid: u32) -> String {
    match user_name(uid) {
        Some(n) => format!("uid {uid} (`{n}`)"),
        None => format!("uid {uid}"),
    }
}

/// The login name of `uid`, from `/etc/passwd`.
fn user_name(uid: u32) -> Option<String> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_owned())
    })
}

/// Refuses to `action` (release, move, lease) an entry another user made:
/// only that user, or root, may (this matters in a shared registry).
pub(crate) fn guard(e: &Entry, action: &str) -> Result<()> {
    let me = portd_core::sys::euid();
    if e.uid == me || me == 0 {
        return Ok(());
    }
    Err(Error::permission(format!(
        "project `{}` belongs to uid {}; only that user or root can {action} it",
        e.display_name(),
        e.uid
    ))
    .with_hint("ask its owner, or use a project name of your own"))
}

/// What [`Tx::take`] got: a claim in the mirror, or a port freed earlier in
/// the same transaction.
enum Taken {
    Claimed(Claim),
    Freed,
}
