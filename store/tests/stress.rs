//! Many processes × many threads on one registry: no port is ever held
//! twice, and no acknowledged allocation is lost.
//!
//! The test runs this test binary again as each child process (the
//! `PORTD_STRESS_CHILD` variable selects the role). A child's threads share
//! one `Registry` handle and mix `get` of new and known names, `acquire`
//! leases, `get_many` batches of new names and `release` of their own
//! names on a small range, so that ports are contended and the range fills
//! ("no free port" is an accepted answer; a port twice never is). Each
//! child checks its `list()` snapshots as it goes and reports what it was
//! acknowledged on stdout; while the children still run (their leases
//! alive), the parent checks the final registry against those reports.

use portd_store::{Config, ErrorKind, Owner, Project, Ranges, Registry, State};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::Mutex;

const TEST: &str = "many_processes_and_threads_never_hold_one_port_twice";
const CHILD: &str = "PORTD_STRESS_CHILD";
const DIR: &str = "PORTD_STRESS_DIR";
const PROCS: usize = 4;
const THREADS: usize = 4;
/// Operations per thread: with the mix below (more than half of them take
/// leases), about 1,400 allocations in all for 400 ports, which fill with
/// leases: later allocations evict idle entries or find no free port.
const OPS: usize = 60;
const BATCH: usize = 20;
const RANGE: (u16, u16) = (27_400, 27_799);

fn open(dir: &str) -> Registry {
    let ranges = Ranges::from_raw(&[("stress".into(), RANGE.0.into(), RANGE.1.into(), true)])
        .expect("range");
    Registry::open(dir, Config { ranges, ..Config::default() }).expect("open")
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    out.write_all(format!("stress: {line}\n").as_bytes()).expect("stdout");
    out.flush().expect("stdout");
}

/// A small xorshift generator: the workload is the same on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An idle entry (`get`, `get_many`): may be evicted when the range is
    /// full, and then keeps its port in history.
    Idle,
    /// An active lease of the child: never evicted while the child runs.
    Lease,
}

/// What one thread was told, in order, and what it found wrong.
#[derive(Default)]
struct Log {
    events: Vec<String>,
    bad: Vec<String>,
    allocations: usize,
    no_free: usize,
}

#[test]
fn many_processes_and_threads_never_hold_one_port_twice() {
    if let (Ok(child), Ok(dir)) = (std::env::var(CHILD), std::env::var(DIR)) {
        run_child(child.parse().expect("child index"), &dir);
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("portd");
    let dir = dir.to_str().unwrap();
    open(dir);
    let exe = std::env::current_exe().unwrap();
    let started = std::time::Instant::now();
    let mut children: Vec<_> = (0..PROCS)
        .map(|i| {
            Command::new(&exe)
                .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
                .env(CHILD, i.to_string())
                .env(DIR, dir)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // name → (port, kind, child pid) of its last acknowledged allocation,
    // or `None` after its release.
    let mut last: BTreeMap<String, Option<(u16, Kind, u32)>> = BTreeMap::new();
    let (mut allocations, mut no_free) = (0, 0);
    for c in &mut children {
        let pid = c.id();
        let mut done = false;
        for line in BufReader::new(c.stdout.as_mut().unwrap()).lines() {
            let line = line.unwrap();
            // libtest may have written `test NAME ... ` before it.
            let Some((_, msg)) = line.split_once("stress: ") else { continue };
            let f: Vec<&str> = msg.split(' ').collect();
            match f.as_slice() {
                ["alloc", name, port, kind] => {
                    let kind = if *kind == "lease" { Kind::Lease } else { Kind::Idle };
                    last.insert(name.to_string(), Some((port.parse().unwrap(), kind, pid)));
                }
                ["release", name] => {
                    last.insert(name.to_string(), None);
                }
                ["bad", ..] => panic!("child {pid}: {msg}"),
                ["done", a, n] => {
                    allocations += a.parse::<usize>().unwrap();
                    no_free += n.parse::<usize>().unwrap();
                    done = true;
                    break;
                }
                _ => panic!("child {pid}: unexpected line {line:?}"),
            }
        }
        if !done {
            let status = c.wait().unwrap();
            let mut err = String::new();
            c.stderr.as_mut().unwrap().read_to_string(&mut err).unwrap();
            panic!("child {pid} ended without its report ({status}):\n{err}");
        }
    }
    // Every child waits on its stdin now, its leases alive.
    let reg = open(dir);
    let listed = reg.list().unwrap();
    let mut held = HashMap::new();
    for l in &listed {
        if let Some(other) = held.insert(l.entry.port, &l.entry.project) {
            panic!("port {} held by `{other}` and `{}`", l.entry.port, l.entry.project);
        }
    }
    let entries: HashMap<&str, &portd_store::Listed> =
        listed.iter().map(|l| (l.entry.project.as_str(), l)).collect();
    let history: HashMap<String, u16> = reg.history().unwrap().into_iter().collect();
    let mut kept = 0;
    for (name, last) in &last {
        let now = entries.get(name.as_str());
        match (last, now) {
            (None, None) => {}
            (None, Some(l)) => panic!("`{name}` was released but is listed: {l:?}"),
            (Some((port, _, _)), Some(l)) if l.entry.port == *port => kept += 1,
            (Some((port, Kind::Lease, pid)), l) => {
                panic!("lease `{name}` on {port} of child {pid} lost: now {l:?}")
            }
            // Evicted as least recently used idle entry: its port stays in
            // history.
            (Some((port, Kind::Idle, _)), None) if history.get(name) == Some(port) => {}
            (Some((port, Kind::Idle, _)), l) => {
                panic!("`{name}` on {port} lost: now {l:?}, history {:?}", history.get(name))
            }
        }
        if let (Some((_, Kind::Lease, pid)), Some(l)) = (last, now) {
            assert_eq!(l.state, State::Active, "{l:?}");
            assert_eq!(l.entry.owner.map(|o| o.pid), Some(*pid), "{l:?}");
        }
    }
    let orphans: Vec<_> = listed.iter().filter(|l| !last.contains_key(&l.entry.project)).collect();
    assert!(orphans.is_empty(), "entries nobody was given: {orphans:?}");
    assert_eq!(kept, listed.len());
    for mut c in children {
        drop(c.stdin.take());
        let status = c.wait().unwrap();
        let mut err = String::new();
        c.stderr.as_mut().unwrap().read_to_string(&mut err).unwrap();
        assert!(status.success(), "child {}: {status}\n{err}", c.id());
    }
    // The range was contended: more allocations than ports.
    assert!(allocations > usize::from(RANGE.1 - RANGE.0) + 1, "{allocations} allocations");
    let line = format!(
        "stress: {allocations} allocations ({no_free} refused as no free port), {} entries left ({} leases), {:?}\n",
        listed.len(),
        listed.iter().filter(|l| l.state == State::Active).count(),
        started.elapsed()
    );
    std::io::stderr().write_all(line.as_bytes()).unwrap();
}

fn run_child(child: usize, dir: &str) {
    let reg = open(dir);
    let logs: Vec<Log> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let reg = &reg;
                s.spawn(move || work(reg, child, t))
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("worker")).collect()
    });
    let (mut allocations, mut no_free) = (0, 0);
    for log in logs {
        log.events.iter().for_each(|e| say(e));
        log.bad.iter().for_each(|b| say(&format!("bad {b}")));
        allocations += log.allocations;
        no_free += log.no_free;
    }
    say(&format!("done {allocations} {no_free}"));
    // Keep the leases alive until the parent has checked the registry.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// One thread's operations; each name is this thread's alone.
fn work(reg: &Registry, child: usize, thread: usize) -> Log {
    static LEASED: Mutex<BTreeMap<u16, String>> = Mutex::new(BTreeMap::new());
    let me = Owner::this_process();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((child * 16 + thread + 1) as u64 * 0x1000_0001));
    let mut log = Log::default();
    let mut live: Vec<(String, u16, Kind)> = Vec::new();
    let mut next = 0;
    let mut fresh = || {
        next += 1;
        format!("s{child}-t{thread}-{next}")
    };
    for op in 0..OPS {
        let roll = rng.below(100);
        let mut acked: Vec<(String, u16, Kind)> = Vec::new();
        let outcome = match roll {
            0..25 => {
                let name = fresh();
                reg.get(&name).map(|p| acked.push((name, p, Kind::Idle)))
            }
            25..33 if live.iter().any(|l| l.2 == Kind::Idle) => {
                let idle: Vec<_> = live.iter().filter(|l| l.2 == Kind::Idle).collect();
                let name = idle[rng.below(idle.len())].0.clone();
                reg.get(&name).map(|p| acked.push((name, p, Kind::Idle)))
            }
            25..80 => {
                let name = fresh();
                reg.acquire(&name, me).map(|a| acked.push((name, a.entry.port, Kind::Lease)))
            }
            80..84 => {
                let names: Vec<String> = (0..BATCH).map(|_| fresh()).collect();
                reg.get_many(&names).map(|ports| {
                    acked.extend(names.into_iter().zip(ports).map(|(n, p)| (n, p, Kind::Idle)))
                })
            }
            _ if !live.is_empty() => {
                let (name, port, kind) = live.swap_remove(rng.below(live.len()));
                let done = match kind {
                    Kind::Idle => reg.release(&name),
                    Kind::Lease => {
                        LEASED.lock().unwrap().remove(&port);
                        reg.release_many(&[Project::name(&name).unwrap()], true).map(drop)
                    }
                };
                log.events.push(format!("release {name}"));
                match done {
                    // An idle entry evicted meanwhile.
                    Err(e) if e.kind() == ErrorKind::UnknownProject && kind == Kind::Idle => Ok(()),
                    d => d,
                }
            }
            _ => Ok(()),
        };
        match outcome {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NoFreePort => log.no_free += 1,
            Err(e) => log.bad.push(format!("op {op}: {e}")),
        }
        for (name, port, kind) in acked {
            log.allocations += 1;
            log.events.push(format!(
                "alloc {name} {port} {}",
                if kind == Kind::Lease { "lease" } else { "idle" }
            ));
            if kind == Kind::Lease
                && let Some(other) = LEASED.lock().unwrap().insert(port, name.clone())
            {
                log.bad.push(format!("port {port} leased to `{other}` and `{name}`"));
            }
            live.retain(|l| l.0 != name);
            live.push((name, port, kind));
        }
        if op % 8 == 7 {
            snapshot(reg, &live, &mut log);
        }
    }
    snapshot(reg, &live, &mut log);
    log
}

/// Checks one `list()`: unique ports, and this thread's leases in it on the
/// ports it was given (its idle entries may have been evicted).
fn snapshot(reg: &Registry, live: &[(String, u16, Kind)], log: &mut Log) {
    let listed = match reg.list() {
        Ok(l) => l,
        Err(e) => return log.bad.push(format!("list: {e}")),
    };
    let mut seen = HashMap::new();
    for l in &listed {
        if let Some(other) = seen.insert(l.entry.port, l.entry.project.clone()) {
            log.bad.push(format!(
                "list: port {} held by `{other}` and `{}`",
                l.entry.port, l.entry.project
            ));
        }
    }
    for (name, port, kind) in live {
        let found = listed.iter().find(|l| &l.entry.project == name).map(|l| l.entry.port);
        if *kind == Kind::Lease && found != Some(*port) {
            log.bad.push(format!("list: lease `{name}` on {port} shows as {found:?}"));
        }
        if *kind == Kind::Idle && found.is_some_and(|p| p != *port) {
            log.bad.push(format!("list: `{name}` on {port} shows as {found:?}"));
        }
    }
}
