//! Many `portd` processes on one registry at once.

use crate::util::*;
use std::collections::BTreeSet;
use std::fs::File;
use std::time::{Duration, Instant};

const PROCESSES: usize = 200;

/// Spawns one `portd get NAME` per name, all before waiting for any, and
/// returns every run's output. Output goes to files, so that no pipe fills
/// up and the parent holds no descriptors while they run.
fn get_all(env: &Env, names: &[String]) -> Vec<Output> {
    let dir = env.root().join("out");
    std::fs::create_dir_all(&dir).unwrap();
    let children: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut cmd = env.command(["get", name.as_str()]);
            cmd.stdout(File::create(dir.join(format!("{i}.out"))).unwrap())
                .stderr(File::create(dir.join(format!("{i}.err"))).unwrap());
            cmd.spawn().unwrap()
        })
        .collect();
    children
        .into_iter()
        .enumerate()
        .map(|(i, mut child)| {
            let status = child.wait().unwrap();
            let read = |ext: &str| std::fs::read_to_string(dir.join(format!("{i}.{ext}"))).unwrap();
            Output { code: status.code().unwrap_or(-1), stdout: read("out"), stderr: read("err") }
        })
        .collect()
}

#[test]
fn concurrent_processes_get_distinct_ports() {
    for round in 0..3 {
        let env = Env::new();
        let names: Vec<String> = (0..PROCESSES).map(|i| format!("conc-{round}-{i}")).collect();
        let t = Instant::now();
        let outs = get_all(&env, &names);
        let took = t.elapsed();
        let ports: Vec<u16> = outs.iter().map(Output::port).collect();
        let distinct: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), PROCESSES, "round {round}: duplicate ports");
        // The registry agrees with what each process printed.
        let listed = env.ls();
        assert_eq!(listed.len(), PROCESSES);
        for (name, port) in names.iter().zip(&ports) {
            let e = listed.iter().find(|e| &e.project == name).expect("listed");
            assert_eq!(e.port, *port, "{name}");
        }
        assert!(took < Duration::from_secs(30), "round {round} took {took:?}");
    }
}

#[test]
fn concurrent_processes_agree_on_one_name() {
    let env = Env::new();
    let names = vec!["same-name".to_owned(); PROCESSES];
    let outs = get_all(&env, &names);
    let ports: BTreeSet<u16> = outs.iter().map(Output::port).collect();
    assert_eq!(ports.len(), 1, "{ports:?}");
    let listed = env.ls();
    assert_eq!(listed.len(), 1);
    assert_eq!(Some(&listed[0].port), ports.first());
}

/// A library process keeps committing from eight threads on one handle,
/// whose leaders hand the open registry on from batch to batch; `portd get`
/// processes started meanwhile still get their turn at the lock within a
/// slice or so (the handle closes its session once another process waits),
/// not after the lock timeout.
#[test]
fn a_busy_library_handle_lets_cli_processes_in_promptly() {
    use portd_store::{Config, Ranges, Registry};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let (start, end) = (28200u16, 28699u16);
    let env = private_range(start, end - start + 1);
    let ranges = Ranges::from_raw(&[("test".into(), start.into(), end.into(), true)]).unwrap();
    let reg = Registry::open(env.home(), Config { ranges, ..Config::default() }).unwrap();
    let stop = AtomicBool::new(false);
    let done = AtomicUsize::new(0);
    let mut waits = Vec::new();
    std::thread::scope(|s| {
        for t in 0..8 {
            let (reg, stop, done) = (&reg, &stop, &done);
            s.spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    // Once the range is full, each new name evicts the
                    // least recently used idle one: requests never stop.
                    reg.get(&format!("lib-{t}-{n}")).expect("library get");
                    done.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
            });
        }
        // The library threads stop however this ends (a failed check too).
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = Stop(&stop);
        std::thread::sleep(Duration::from_millis(200));
        for i in 0..5 {
            let t = Instant::now();
            let out = env.run(&["get", &format!("cli-{i}")]);
            waits.push((t.elapsed(), out.code, out.stderr.clone()));
        }
    });
    for (took, code, stderr) in &waits {
        assert_eq!(*code, 0, "a CLI get failed after {took:?}: {stderr}");
    }
    let waits: Vec<Duration> = waits.into_iter().map(|(t, _, _)| t).collect();
    let worst = waits.iter().max().copied().unwrap();
    assert!(done.load(Ordering::Relaxed) > 100, "the library threads made progress");
    // A `portd get` alone takes a few milliseconds; the default lock
    // timeout is 10 s. A second is far above a fair wait, far below a
    // session that never lets go.
    assert!(worst < Duration::from_secs(1), "a CLI get waited {worst:?} ({waits:?})");
}
