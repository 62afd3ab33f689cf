//! A registry locked by someone else: bounded wait, then "registry busy"
//! naming the holder.

use crate::util::*;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest a 300 ms lock timeout may take end to end, process start
/// included, on a loaded CI machine.
const PATIENCE: Duration = Duration::from_secs(2);

/// Runs `portd get busy-x` with a 300 ms lock timeout and checks that it
/// gives up in time, names `holder`, and changes nothing.
fn assert_busy(env: &Env, holder: u32) {
    let t = Instant::now();
    let out = env.run_env(&["get", "busy-x"], &[("PORTD_LOCK_TIMEOUT", "300ms")]);
    let took = t.elapsed();
    let err = out.error(6);
    assert!(
        err.starts_with(&format!(
            "error: registry busy: `[ROOT]/home/registry.lock` is held by pid {holder} ("
        )),
        "{err}"
    );
    assert!(err.contains(") for more than 300ms\nhint: "), "{err}");
    assert!(err.contains("`PORTD_LOCK_TIMEOUT`"), "{err}");
    assert!(took >= Duration::from_millis(300), "gave up after {took:?}");
    assert!(took < PATIENCE, "took {took:?}");
}

/// A python process holding `registry.lock` with `flock`, having written
/// its pid the way portd does. Killed on drop.
struct PyHolder(Child);

impl PyHolder {
    fn start(lock: &std::path::Path) -> Option<PyHolder> {
        const SCRIPT: &str = "import fcntl, os, sys, time\n\
            fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n\
            fcntl.flock(fd, fcntl.LOCK_EX)\n\
            os.pwrite(fd, b'%-10d\\n' % os.getpid(), 0)\n\
            print('locked', flush=True)\n\
            time.sleep(60)\n";
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(SCRIPT)
            .arg(lock)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .ok()?;
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line, "locked\n");
        Some(PyHolder(child))
    }
}

impl Drop for PyHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn registry_busy_names_another_process_holding_the_lock() {
    let env = Env::new();
    let seed = env.run(&["get", "busy-seed"]).port();
    let before = env.ls_raw();
    let lock = env.home().join("registry.lock");
    let Some(holder) = PyHolder::start(&lock) else {
        return skip("no python3 to hold the lock from another process");
    };
    assert_busy(&env, holder.0.id());
    drop(holder);
    assert_eq!(env.ls_raw(), before);
    assert_eq!(env.run(&["get", "busy-seed"]).port(), seed);
    env.run(&["get", "busy-x"]).port();
}

#[test]
fn registry_busy_names_this_process_holding_the_lock() {
    let env = Env::new();
    env.run(&["get", "busy-seed"]).port();
    let before = env.ls_raw();
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .open(env.home().join("registry.lock"))
        .unwrap();
    file.lock().unwrap();
    file.write_all(format!("{:<10}\n", std::process::id()).as_bytes()).unwrap();
    assert_busy(&env, std::process::id());
    file.unlock().unwrap();
    drop(file);
    assert_eq!(env.ls_raw(), before);
    env.run(&["get", "busy-x"]).port();
}

/// The lock file keeps the pid of the last portd that held it. A holder
/// that does not write its pid (`flock(1)`, or a portd between taking the
/// lock and writing its pid) must not make portd blame that gone process.
#[test]
fn registry_busy_does_not_blame_a_dead_pid() {
    let env = Env::new();
    env.run(&["get", "busy-seed"]).port();
    let lock = env.home().join("registry.lock");
    let stale: u32 = std::fs::read_to_string(&lock).unwrap().trim().parse().unwrap();
    let file = OpenOptions::new().read(true).write(true).open(&lock).unwrap();
    file.lock().unwrap();
    let out = env.run_env(&["get", "busy-x"], &[("PORTD_LOCK_TIMEOUT", "100ms")]);
    let err = out.error(6);
    assert!(!err.contains(&format!("pid {stale}")), "blames exited pid {stale}: {err}");
    assert!(
        err.starts_with(
            "error: registry busy: `[ROOT]/home/registry.lock` is held by another process for \
             more than 100ms\n"
        ),
        "{err}"
    );
}
