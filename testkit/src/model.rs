//! The registry model: arbitrary bytes as a sequence of operations on a
//! real registry and on a plain model, compared after every step.

use portd_core::{Owner, PortRange, Ranges, preferred_offset};
use portd_store::doctor::{self, Severity};
use portd_store::{Config, ErrorKind, Registry, State};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
use std::path::Path;

thread_local! {
    /// The steps of the running model check, for its failure messages.
    static STEPS: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Fails the model check, naming the steps that led here: the fuzzer
/// aborts in its panic hook, so the message must carry them.
#[track_caller]
fn fail_with(msg: std::fmt::Arguments<'_>) -> ! {
    let steps = STEPS.with_borrow(|s| s.clone());
    panic!("registry model: {msg}\n  steps: {steps}")
}

macro_rules! fail {
    ($($msg:tt)+) => { fail_with(format_args!($($msg)+)) };
}

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            fail!($($msg)+)
        }
    };
}

macro_rules! ensure_eq {
    ($a:expr, $b:expr, $($msg:tt)+) => {{
        let (a, b) = (&$a, &$b);
        if a != b {
            fail!("{}: {a:?} != {b:?}", format_args!($($msg)+))
        }
    }};
}

/// The model registry's ranges: tiny, so that a few steps reach eviction
/// and exhaustion, and high (above the kernel's default ephemeral range,
/// away from the ports other tests use). The third is never used by a
/// plain `get`.
const RANGES: [(&str, u16, u16, bool); 3] =
    [("fz-a", 62101, 62102, true), ("fz-b", 62201, 62203, true), ("fz-c", 62301, 62302, false)];
/// Ports of the fallback ranges, which `occupy`/`vacate` pick from.
const SLOTS: [u16; 5] = [62101, 62102, 62201, 62202, 62203];
/// More projects than ports.
const NAMES: [&str; 6] = ["web", "api", "db", "worker", "docs", "ui:dev"];
/// Longest sequence run from one input.
pub const MAX_OPS: usize = 32;

/// Whose lease an `acquire` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// This process: alive.
    Me,
    /// The parent process: alive, and not us.
    Parent,
    /// Our pid with another start time: a reused pid, hence dead.
    Dead,
}

/// One step. Each input byte is one step: the top three bits pick the
/// operation, the low five its argument.
#[derive(Debug, Clone, Copy)]
enum Op {
    Get(usize),
    Acquire(usize, Who),
    Release(usize),
    ReleaseIdle,
    Cleanup,
    GetMany(usize, usize),
    /// Another server binds this slot's port (on 127.0.0.1).
    Occupy(usize),
    /// That server stops.
    Vacate(usize),
}

fn decode_ops(bytes: &[u8]) -> Vec<Op> {
    let who = [Who::Me, Who::Parent, Who::Dead];
    let n = NAMES.len();
    let ops = bytes.iter().take(MAX_OPS).map(|&b| {
        let arg = usize::from(b & 31);
        match b >> 5 {
            0 | 7 => Op::Get(arg % n),
            1 => Op::Acquire(arg % n, who[arg / n % 3]),
            2 => Op::Release(arg % n),
            3 if arg % 2 == 0 => Op::ReleaseIdle,
            3 => Op::Cleanup,
            4 => Op::GetMany(arg % n, arg / n % n),
            5 => Op::Occupy(arg % SLOTS.len()),
            _ => Op::Vacate(arg % SLOTS.len()),
        }
    });
    ops.collect()
}

/// One entry of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    port: u16,
    owner: Option<Owner>,
    /// `last_used_ms` as last listed; `None` once this step touched it
    /// (its new value is unknown, but not below any listed one).
    used: Option<u64>,
}

/// What a project without an entry may be given, by the spec's candidate
/// order: its last port, its preferred port, a free port of the first range
/// that has one, the least recently used idle entry's port, or nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fresh {
    Port(u16),
    AnyOf(Vec<u16>),
    /// The port of one of these idle entries, which is evicted. More than
    /// one only when this step's timestamps cannot be told apart.
    Evict(Vec<&'static str>),
    Exhausted,
}

/// The plain model: project → port and owner, and project → last port.
#[derive(Debug, Clone)]
struct Model {
    held: BTreeMap<&'static str, Held>,
    history: BTreeMap<&'static str, u16>,
    ranges: Vec<PortRange>,
    alive: [Owner; 2],
}

impl Model {
    fn idle(&self, h: &Held) -> bool {
        h.owner.is_none_or(|o| !self.alive.contains(&o))
    }

    fn holds(&self, port: u16) -> bool {
        self.held.values().any(|h| h.port == port)
    }

    /// `free`: the ports that are not excluded and that no server binds.
    fn predict(&self, name: &str, free: &BTreeSet<u16>) -> Fresh {
        self.predict_claimed(name, free, &[])
    }

    /// As [`Self::predict`], inside a batch whose earlier names (`claimed`)
    /// are never evicted by its later ones.
    fn predict_claimed(&self, name: &str, free: &BTreeSet<u16>, claimed: &[&str]) -> Fresh {
        let eligible: Vec<&PortRange> = self.ranges.iter().filter(|r| r.fallback).collect();
        let open = |p: &u16| {
            eligible.iter().any(|r| r.contains(*p)) && free.contains(p) && !self.holds(*p)
        };
        if let Some(h) = self.history.get(name).filter(|h| open(h)) {
            return Fresh::Port(*h);
        }
        let first = eligible[0];
        let preferred = first.port_at(preferred_offset(name, first.len()));
        if open(&preferred) {
            return Fresh::Port(preferred);
        }
        for r in &eligible {
            let ports: Vec<u16> = (r.start..=r.end).filter(open).collect();
            if !ports.is_empty() {
                return Fresh::AnyOf(ports);
            }
        }
        let idle: Vec<(&'static str, &Held)> = (self.held.iter())
            .filter(|(n, h)| self.idle(h) && free.contains(&h.port) && !claimed.contains(n))
            .map(|(n, h)| (*n, h))
            .collect();
        if idle.is_empty() {
            return Fresh::Exhausted;
        }
        // Least recently used first, ties by name (the LRU index's order).
        // An entry touched in this step has a time not below any listed one.
        let newest = self.held.values().filter_map(|h| h.used).max();
        let old = idle.iter().filter_map(|(n, h)| h.used.map(|t| (t, *n))).min();
        let new = idle.iter().filter(|(_, h)| h.used.is_none()).map(|(n, _)| *n).min();
        let mut victims: Vec<&'static str> = old.map(|(_, n)| n).into_iter().collect();
        match (old, new) {
            (None, Some(n)) => victims.push(n),
            (Some((t, o)), Some(n)) if Some(t) == newest && n < o => victims.push(n),
            _ => {}
        }
        Fresh::Evict(victims)
    }

    /// Applies what the registry answered to a fresh allocation, after
    /// checking it against the prediction; `None` for an error.
    fn settle(&mut self, name: &'static str, owner: Option<Owner>, want: &Fresh, got: Option<u16>) {
        let Some(port) = got else {
            ensure_eq!(want, &Fresh::Exhausted, "`{name}` got no port");
            return;
        };
        match want {
            Fresh::Port(p) => ensure_eq!(port, *p, "`{name}`: wanted {want:?}"),
            Fresh::AnyOf(ports) => ensure!(ports.contains(&port), "`{name}` got {port}: {want:?}"),
            Fresh::Evict(victims) => {
                let v = victims.iter().find(|v| self.held[*v].port == port);
                let v = v.unwrap_or_else(|| fail!("`{name}` got {port}: {want:?} {self:?}"));
                self.held.remove(v);
            }
            Fresh::Exhausted => fail!("`{name}` got {port} though no port was left"),
        }
        self.held.insert(name, Held { port, owner, used: None });
        self.history.insert(name, port);
    }

    /// One answer consistent with `want`, for simulating a failed batch.
    fn any(&self, want: &Fresh) -> Option<u16> {
        match want {
            Fresh::Port(p) => Some(*p),
            Fresh::AnyOf(ports) => ports.first().copied(),
            Fresh::Evict(v) => v.first().map(|v| self.held[v].port),
            Fresh::Exhausted => None,
        }
    }
}

/// The real registry, the model, and the servers occupying ports.
struct Run<'r> {
    reg: &'r Registry,
    /// Where the registry lives, and its configuration, for `doctor`.
    home: &'r Path,
    config: &'r Config,
    model: Model,
    owners: [Owner; 3],
    servers: BTreeMap<u16, TcpListener>,
}

/// Whether a server could bind `port` now, asked with plain std binds (not
/// portd's probe, which is what is under test).
fn bindable(port: u16) -> bool {
    let in_use = |r: std::io::Result<TcpListener>| {
        r.is_err_and(|e| e.kind() == std::io::ErrorKind::AddrInUse)
    };
    !in_use(TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)))
        && !in_use(TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)))
}

impl Run<'_> {
    fn free_ports(&self) -> BTreeSet<u16> {
        let ports = self.model.ranges.iter().flat_map(|r| r.start..=r.end);
        ports
            .filter(|p| self.reg.exclusions().reason(*p).is_none())
            .filter(|p| !self.servers.contains_key(p) && bindable(*p))
            .collect()
    }

    fn step(&mut self, op: Op) {
        let free = self.free_ports();
        match op {
            Op::Get(n) => {
                let name = NAMES[n];
                let got = self.reg.get(name);
                if let Some(h) = self.model.held.get_mut(name) {
                    ensure_eq!(got.ok(), Some(h.port), "`{name}` keeps its port");
                    // Using a port makes it the most recently used.
                    h.used = None;
                } else {
                    let want = self.model.predict(name, &free);
                    self.check_error(&got, ErrorKind::NoFreePort);
                    self.model.settle(name, None, &want, got.ok());
                }
            }
            Op::Acquire(n, who) => {
                let name = NAMES[n];
                let owner = self.owners[who as usize];
                let got = self.reg.acquire(name, owner);
                if let Some(h) = self.model.held.get(name).cloned() {
                    if let Some(cur) = h.owner.filter(|o| *o != owner && !self.model.idle(&h)) {
                        let e = got.err().map(|e| e.kind());
                        ensure_eq!(e, Some(ErrorKind::PortBusy), "`{name}` is leased by {cur:?}");
                        return;
                    }
                    let a = got.unwrap_or_else(|e| fail!("acquire `{name}`: {e}"));
                    ensure_eq!((a.entry.port, a.fresh), (h.port, false), "`{name}` keeps its port");
                    let next = Held { owner: Some(owner), used: None, ..h };
                    self.model.held.insert(name, next);
                } else {
                    let want = self.model.predict(name, &free);
                    self.check_error(&got, ErrorKind::NoFreePort);
                    if let Ok(a) = &got {
                        ensure!(a.fresh && a.entry.owner == Some(owner), "{a:?}");
                    }
                    self.model.settle(name, Some(owner), &want, got.ok().map(|a| a.entry.port));
                }
            }
            Op::Release(n) => {
                let name = NAMES[n];
                let live = self.model.held.get(name).is_some_and(|h| !self.model.idle(h));
                if live {
                    // An entry whose owner runs is not released.
                    let e = self.reg.release(name).err().map(|e| e.kind());
                    ensure_eq!(e, Some(ErrorKind::PortBusy), "`{name}`'s owner runs");
                    return;
                }
                match (self.reg.release(name), self.model.held.remove(name)) {
                    (Ok(()), Some(_)) => {}
                    (Err(e), None) => ensure_eq!(e.kind(), ErrorKind::UnknownProject, "{e}"),
                    (r, m) => fail!("release `{name}`: registry {r:?}, model {m:?}"),
                }
            }
            Op::ReleaseIdle => {
                let got = self.reg.release_idle().unwrap_or_else(|e| fail!("release --idle: {e}"));
                let got: BTreeSet<String> = got.into_iter().map(|e| e.project).collect();
                let idle: BTreeSet<String> = (self.model.held.iter())
                    .filter(|(_, h)| self.model.idle(h))
                    .map(|(n, _)| n.to_string())
                    .collect();
                ensure_eq!(got, idle, "release --idle frees exactly the idle entries");
                self.model.held.retain(|n, _| !idle.contains(*n));
            }
            Op::Cleanup => {
                let report = self.reg.cleanup().unwrap_or_else(|e| fail!("cleanup: {e}"));
                ensure!(report.expired.is_empty(), "nothing is past idle_ttl: {report:?}");
                let dead: Vec<String> = (self.model.held.iter_mut())
                    .filter(|(_, h)| h.owner.is_some_and(|o| !self.model.alive.contains(&o)))
                    .map(|(n, h)| {
                        h.owner = None;
                        n.to_string()
                    })
                    .collect();
                let mut reclaimed = report.reclaimed;
                reclaimed.sort();
                ensure_eq!(reclaimed, dead, "cleanup reclaims exactly the dead owners");
            }
            Op::GetMany(a, b) => self.get_many([NAMES[a], NAMES[b]], &free),
            Op::Occupy(s) => {
                let port = SLOTS[s];
                if !self.servers.contains_key(&port)
                    && let Ok(l) = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
                {
                    self.servers.insert(port, l);
                }
            }
            Op::Vacate(s) => {
                self.servers.remove(&SLOTS[s]);
            }
        }
    }

    /// A batch is one transaction: all of it, or (on exhaustion) none.
    fn get_many(&mut self, names: [&'static str; 2], free: &BTreeSet<u16>) {
        let got = self.reg.get_many(&names);
        let mut next = self.model.clone();
        let mut exhausted = false;
        let mut claimed: Vec<&str> = Vec::new();
        for (i, name) in names.into_iter().enumerate() {
            let answer = got.as_ref().ok().map(|ports| ports[i]);
            let earlier = claimed.clone();
            claimed.push(name);
            if let Some(h) = next.held.get_mut(name) {
                ensure!(answer.is_none_or(|p| p == h.port), "`{name}` keeps its port in a batch");
                h.used = None;
                continue;
            }
            // The batch claims every new name's preferred port first, then
            // scans for the rest: a later name's preferred port is not an
            // earlier name's to take. So each name is predicted without the
            // ports the others of the batch got.
            let others: BTreeSet<u16> = match &got {
                Ok(ports) => (names.iter().zip(ports))
                    .filter(|(n, _)| **n != name)
                    .map(|(_, p)| *p)
                    .collect(),
                Err(_) => BTreeSet::new(),
            };
            let free: BTreeSet<u16> = free.difference(&others).copied().collect();
            let want = next.predict_claimed(name, &free, &earlier);
            if want == Fresh::Exhausted {
                exhausted = true;
                break;
            }
            let answer = if got.is_ok() { answer } else { next.any(&want) };
            next.settle(name, None, &want, answer);
        }
        match got {
            Ok(_) => {
                ensure!(!exhausted, "a batch succeeded where no port was left");
                self.model = next;
            }
            Err(e) => {
                ensure!(exhausted, "a batch failed: {e}");
                ensure_eq!(e.kind(), ErrorKind::NoFreePort, "{e}");
            }
        }
    }

    fn check_error<T>(&self, got: &portd_store::Result<T>, kind: ErrorKind) {
        if let Err(e) = got {
            ensure_eq!(e.kind(), kind, "{e}");
        }
    }

    /// The registry lists exactly the model's entries, with their owners
    /// and states, no port twice, every port in a fallback range's name
    /// and not excluded; released projects remember their last port.
    fn verify(&mut self) {
        let listed = self.reg.list().unwrap_or_else(|e| fail!("ls: {e}"));
        let got: BTreeMap<&str, (u16, Option<Owner>)> = listed
            .iter()
            .map(|l| (l.entry.project.as_str(), (l.entry.port, l.entry.owner)))
            .collect();
        let want: BTreeMap<&str, (u16, Option<Owner>)> =
            self.model.held.iter().map(|(n, h)| (*n, (h.port, h.owner))).collect();
        ensure_eq!(got, want, "the registry lists the model's entries");
        let ports: BTreeSet<u16> = listed.iter().map(|l| l.entry.port).collect();
        ensure_eq!(ports.len(), listed.len(), "a port is held twice");
        for l in &listed {
            let e = &l.entry;
            let range = self.model.ranges.iter().find(|r| r.contains(e.port));
            ensure!(range.is_some_and(|r| r.fallback && r.name == e.range), "{e:?} out of range");
            ensure!(self.reg.exclusions().reason(e.port).is_none(), "{e:?} is excluded");
            let h = &self.model.held[e.project.as_str()];
            let state = if self.model.idle(h) { State::Idle } else { State::Active };
            ensure_eq!(l.state, state, "state of {e:?}");
            ensure!(e.created_ms <= e.last_used_ms, "{e:?}");
            if let Some(t) = h.used {
                ensure_eq!(e.last_used_ms, t, "`{}` was not used, yet its time moved", e.project);
            }
        }
        for l in &listed {
            if let Some(h) = self.model.held.get_mut(l.entry.project.as_str()) {
                h.used = Some(l.entry.last_used_ms);
            }
        }
        let history: BTreeMap<String, u16> =
            self.reg.history().unwrap_or_else(|e| fail!("history: {e}")).into_iter().collect();
        let gone: BTreeMap<String, u16> = (self.model.history.iter())
            .filter(|(n, _)| !self.model.held.contains_key(*n))
            .map(|(n, p)| (n.to_string(), *p))
            .collect();
        ensure_eq!(history, gone, "released projects keep their last port");
    }

    /// The registry's own consistency check, the one `portd doctor` runs
    /// (integrity, records, indexes), finds no error. Its warnings are left
    /// alone: they describe the machine, or what the model did on purpose
    /// (leases of dead owners, ports bound by its servers).
    fn doctor(&self) {
        let report = doctor::examine(self.home, self.config, None);
        let errors: Vec<&doctor::Finding> =
            report.findings.iter().filter(|f| f.severity == Severity::Error).collect();
        ensure!(errors.is_empty(), "`portd doctor` finds errors: {errors:?}");
        ensure!(!report.damaged, "`portd doctor` finds the registry damaged: {report:?}");
    }
}

/// Arbitrary bytes as up to [`MAX_OPS`] operations (get, acquire by a live
/// or a dead owner, release, release of idle entries, cleanup, a batch of
/// two gets, and a foreign server binding or freeing a port) on a registry
/// created in `dir` (which must be new or empty) and on a plain model,
/// compared after every step; after every step too, `portd doctor`'s
/// examination of the registry ([`doctor::examine`]) must find no error,
/// so that whatever doctor checks holds after every operation.
///
/// The model predicts which port a fresh allocation gets wherever the spec
/// decides it (last port, preferred port, LRU eviction, exhaustion), and
/// otherwise (a scan from the persisted cursor) accepts any free port of
/// the first range that has one. A port bound by a process outside the
/// model is skipped, as the spec says; the model sees such ports with plain
/// binds before each step, so it never weakens the uniqueness checks.
pub fn registry(dir: &Path, bytes: &[u8]) {
    let raw: Vec<(String, u32, u32, bool)> =
        RANGES.iter().map(|&(n, a, b, f)| (n.to_owned(), a.into(), b.into(), f)).collect();
    let ranges = Ranges::from_raw(&raw).unwrap_or_else(|e| fail!("model ranges: {e}"));
    let config = Config { ranges: ranges.clone(), ..Config::default() };
    let home = dir.join("portd");
    let reg = Registry::open(&home, config.clone()).unwrap_or_else(|e| fail!("open: {e}"));
    let me = Owner::this_process();
    // The parent (cargo, the fuzzer's driver) outlives the run; without one,
    // a second live owner is not available and "parent" means this process.
    let parent = Owner::of_pid(std::os::unix::process::parent_id()).unwrap_or(me);
    let dead = Owner { start_time: me.start_time.wrapping_sub(1), ..me };
    let model = Model {
        held: BTreeMap::new(),
        history: BTreeMap::new(),
        ranges: ranges.iter().cloned().collect(),
        alive: [me, parent],
    };
    let owners = [me, parent, dead];
    let mut run =
        Run { reg: &reg, home: &home, config: &config, model, owners, servers: BTreeMap::new() };
    STEPS.with_borrow_mut(String::clear);
    for (i, op) in decode_ops(bytes).into_iter().enumerate() {
        STEPS.with_borrow_mut(|s| {
            let _ = write!(s, "{i}: {op:?}; ");
        });
        run.step(op);
        run.verify();
        run.doctor();
    }
}
