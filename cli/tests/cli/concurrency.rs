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
