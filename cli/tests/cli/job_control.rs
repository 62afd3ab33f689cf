//! Job control of `portd run`: in a real interactive bash on a
//! pseudo-terminal (Ctrl-Z, `jobs`, `bg`, `fg`, Ctrl-C), and without a
//! terminal (a stopped command still dies when `portd run` is terminated).

use crate::pty::Pty;
use crate::util::*;
use std::process::Stdio;
use std::time::Duration;

fn state_of(pid: u32) -> Option<char> {
    portd_core::sys::proc_stat(pid).ok().map(|s| s.state)
}

/// The foreground process group of `pid`'s terminal (`tpgid`, the 8th
/// field of /proc/PID/stat).
fn terminal_group_of(pid: u32) -> Option<u32> {
    let line = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &line[line.rfind(')')? + 1..];
    rest.split_ascii_whitespace().nth(5)?.parse().ok()
}

/// Waits until the terminal's foreground group is `pgid` (a command's pid
/// is its group's id): `fg` has handed it the terminal.
#[track_caller]
fn wait_for_terminal(pgid: u32) {
    wait_on_job("the command to have the terminal", || terminal_group_of(pgid) == Some(pgid));
}

fn parent_of(pid: u32) -> Option<u32> {
    portd_core::sys::proc_stat(pid).ok().map(|s| s.ppid)
}

/// The process whose parent is `ppid` and whose name is `comm`.
fn child_named(ppid: u32, comm: &str) -> Option<u32> {
    portd_core::sys::process_table()
        .into_iter()
        .find(|p| p.ppid == ppid && p.comm == comm && p.state != 'Z')
        .map(|p| p.pid)
}

/// [`wait_for`] with the limit every wait on a job here gets.
#[track_caller]
fn wait_on_job(what: &str, cond: impl FnMut() -> bool) {
    wait_for(what, Duration::from_secs(10), cond);
}

fn entry(env: &Env, name: &str) -> EntryJson {
    env.ls().into_iter().find(|e| e.project == name).expect("the entry exists")
}

#[test]
fn ctrl_z_stops_the_job_and_gives_the_prompt_back_then_bg_fg_and_ctrl_c_work() {
    let env = Env::new();
    let mut t = Pty::start(&env);
    t.expect(r"PROMPT\$ ");
    t.send(&format!("{BIN} run zz -- sleep 30\n"));
    let mut e = None;
    wait_on_job("`zz` to run", || {
        e = env.ls().into_iter().find(|e| e.project == "zz" && e.child_pid.is_some());
        e.is_some()
    });
    let e = e.unwrap();
    let (run, sleep) = (e.pid.unwrap(), e.child_pid.unwrap());
    assert_eq!(
        portd_core::sys::cmdline(sleep).unwrap(),
        ["sleep", "30"],
        "child_pid is the command"
    );

    // Ctrl-Z: the shell reports the job stopped and prints its prompt.
    t.send("\x1a");
    t.expect(r"Stopped .*run zz -- sleep 30\s+.*PROMPT\$ ");
    assert_eq!(state_of(sleep), Some('T'));
    assert_eq!(state_of(run), Some('T'), "`portd run` stopped itself");
    t.send("jobs\n");
    t.expect(r"\[1\]\+\s+Stopped\s+.*run zz -- sleep 30\s+.*PROMPT\$ ");
    assert_eq!(entry(&env, "zz").state, "active", "a stopped job keeps its lease");

    // `bg`: the job runs on in the background, without the terminal.
    t.send("bg\n");
    t.expect(r"PROMPT\$ ");
    wait_on_job("the command to run again", || state_of(sleep).is_some_and(|s| s != 'T'));
    t.send("jobs\n");
    t.expect(r"\[1\]\+\s+Running\s+.*run zz -- sleep 30 &\s+.*PROMPT\$ ");

    // `fg`, then Ctrl-C reaches the command: the job ends with 130.
    t.send("fg\n");
    t.expect("run zz -- sleep 30");
    // `fg` of a running job gives the terminal to `portd run`'s group
    // (which forwards Ctrl-C) and sends no SIGCONT.
    wait_on_job("the job to have the terminal", || {
        terminal_group_of(sleep).is_some_and(|g| g == run || g == sleep)
    });
    t.send("\x03");
    t.expect(r"PROMPT\$ ");
    t.send("echo rc=$?\n");
    t.expect(r"rc=130");
    wait_on_job("the processes to end", || state_of(sleep).is_none() && state_of(run).is_none());
    let e = entry(&env, "zz");
    assert_eq!((e.state.as_str(), e.pid, e.child_pid), ("idle", None, None));
}

#[test]
fn ctrl_z_then_fg_gives_the_terminal_back_to_the_command() {
    let env = Env::new();
    let mut t = Pty::start(&env);
    t.expect(r"PROMPT\$ ");
    // The command reads the terminal: it can only do so in the foreground.
    t.send(&format!("{BIN} run rd -- sh -c 'read line; echo \"got:$line\"'\n"));
    let mut command = None;
    wait_on_job("`rd` to run", || {
        command = env.ls().iter().find_map(|e| e.child_pid);
        command.is_some()
    });
    let command = command.unwrap();
    wait_for_terminal(command);
    t.send("\x1a");
    t.expect(r"Stopped .*\n.*PROMPT\$ ");
    t.send("fg\n");
    t.expect("run rd");
    wait_for_terminal(command);
    t.send("hello\n");
    t.expect("got:hello");
    t.expect(r"PROMPT\$ ");
    t.send("echo rc=$?\n");
    t.expect(r"rc=0");
    assert_eq!(entry(&env, "rd").state, "idle");
}

#[test]
fn a_run_started_in_the_background_gets_the_terminal_on_fg() {
    let env = Env::new();
    let mut t = Pty::start(&env);
    t.expect(r"PROMPT\$ ");
    // Reading the terminal from the background stops the job, as for any
    // background job; `fg` gives the command the terminal.
    t.send(&format!("{BIN} run bgrd -- sh -c 'read line; echo \"got:$line\"' &\n"));
    t.expect(r"PROMPT\$ ");
    let mut e = None;
    wait_on_job("`bgrd` to run", || {
        e = env.ls().into_iter().find(|e| e.child_pid.is_some());
        e.is_some()
    });
    let (run, command) = e.map(|e| (e.pid.unwrap(), e.child_pid.unwrap())).unwrap();
    // The job is stopped once `portd run` is; the shell then says so.
    wait_on_job("the job to stop", || state_of(run) == Some('T'));
    // The shell learns of the stop from its SIGCHLD, a moment later on a
    // busy machine: ask until it says so.
    let mut said = String::new();
    for _ in 0..50 {
        t.send("jobs\n");
        said = t.expect(r"\[1\]\+\s+(Stopped|Running).*run bgrd.*\n.*PROMPT\$ ");
        if said.contains("Stopped") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(said.contains("Stopped"), "the shell never reported the job stopped: {said}");
    t.send("fg\n");
    t.expect("run bgrd");
    wait_for_terminal(command);
    t.send("typed\n");
    t.expect("got:typed");
    t.expect(r"PROMPT\$ ");
    t.send("echo rc=$?\n");
    t.expect(r"rc=0");
    assert_eq!(entry(&env, "bgrd").state, "idle");
}

#[test]
fn a_stopped_command_dies_when_portd_run_is_terminated() {
    let env = Env::new();
    let pidfile = env.root().join("pid");
    let script = format!("echo $$ > {}; exec sleep 30", pidfile.display());
    let run = env
        .command(["run", "stp", "--", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _reaper = Reaper(vec![run.id()]);
    wait_on_job("the command", || {
        std::fs::read_to_string(&pidfile).is_ok_and(|s| s.ends_with('\n'))
            && env.ls().iter().any(|e| e.child_pid.is_some())
    });
    let server: u32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    let supervisor = portd_core::sys::process_table()
        .into_iter()
        .find(|p| p.pid == server)
        .map(|p| p.ppid)
        .unwrap();
    assert_eq!(child_named(run.id(), "portd"), Some(supervisor));
    portd_core::sys::kill(server as i32, portd_core::sys::SIGSTOP).unwrap();
    wait_on_job("the command to stop", || state_of(server) == Some('T'));
    portd_core::sys::kill(run.id() as i32, portd_core::sys::SIGTERM).unwrap();
    let out = run.wait_with_output().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(15), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    for pid in [server, supervisor] {
        wait_on_job("every process to end", || state_of(pid).is_none_or(|s| s == 'Z'));
    }
    let e = entry(&env, "stp");
    assert_eq!((e.state.as_str(), e.pid, e.child_pid), ("idle", None, None));
}

#[test]
fn ctrl_z_stops_a_job_whose_shell_waits_for_portd_run() {
    let env = Env::new();
    let mut t = Pty::start(&env);
    t.expect(r"PROMPT\$ ");
    // `portd run` is not alone in its job: the `sh` waiting for it must
    // stop too, or the interactive shell never sees the job stop.
    t.send(&format!("sh -c '{BIN} run zw -- sleep 30; echo after'\n"));
    let mut e = None;
    wait_on_job("`zw` to run", || {
        e = env.ls().into_iter().find(|e| e.project == "zw" && e.child_pid.is_some());
        e.is_some()
    });
    let (run, sleep) = e.map(|e| (e.pid.unwrap(), e.child_pid.unwrap())).unwrap();
    let sh = parent_of(run).unwrap();
    wait_for_terminal(sleep);
    t.send("\x1a");
    t.expect(r"Stopped\s+sh -c .*\n.*PROMPT\$ ");
    assert_eq!((state_of(sh), state_of(run), state_of(sleep)), (Some('T'), Some('T'), Some('T')));
    t.send("fg\n");
    t.expect("sh -c");
    wait_for_terminal(sleep);
    t.send("\x03");
    t.expect(r"after\s+PROMPT\$ ");
    wait_on_job("the processes to end", || state_of(sleep).is_none() && state_of(run).is_none());
    let e = entry(&env, "zw");
    assert_eq!((e.state.as_str(), e.pid, e.child_pid), ("idle", None, None));
}

#[test]
fn a_command_stopped_and_continued_from_outside_keeps_the_run_going() {
    let env = Env::new();
    let mut t = Pty::start(&env);
    t.expect(r"PROMPT\$ ");
    // Long enough for any machine load; ended below once checked.
    t.send(&format!("{BIN} run sc -- sleep 30\n"));
    let mut e = None;
    wait_on_job("`sc` to run", || {
        e = env.ls().into_iter().find(|e| e.project == "sc" && e.child_pid.is_some());
        e.is_some()
    });
    let (run, sleep) = e.map(|e| (e.pid.unwrap(), e.child_pid.unwrap())).unwrap();
    let supervisor = parent_of(sleep).unwrap();
    wait_for_terminal(sleep);
    // As a debugger would: stop the server, and continue it a while later.
    portd_core::sys::kill(sleep as i32, portd_core::sys::SIGSTOP).unwrap();
    t.expect(r"Stopped .*run sc -- sleep 30\s+.*PROMPT\$ ");
    wait_on_job("`portd run` to stop with its job", || state_of(run) == Some('T'));
    t.step("sleep 0.3");
    t.send("echo mark\n");
    t.expect(r"mark\s+PROMPT\$ ");
    portd_core::sys::kill(sleep as i32, portd_core::sys::SIGCONT).unwrap();
    wait_on_job("the chain to run again", || {
        [run, supervisor, sleep].iter().all(|&p| state_of(p).is_some_and(|s| s != 'T'))
    });
    assert_eq!(entry(&env, "sc").state, "active", "still running");
    // The server's exit ends the run.
    portd_core::sys::kill(sleep as i32, portd_core::sys::SIGTERM).unwrap();
    wait_on_job("the run to end", || state_of(run).is_none_or(|s| s == 'Z'));
    let e = entry(&env, "sc");
    assert_eq!((e.state.as_str(), e.pid, e.child_pid), ("idle", None, None));
}

#[test]
fn ctrl_z_stops_the_job_while_sigusr1_is_being_forwarded() {
    let env = Env::new();
    let mut t = Pty::start(&env);
    t.expect(r"PROMPT\$ ");
    // The command ignores USR1, which `portd run` forwards to it.
    t.send(&format!("{BIN} run u1 -- sh -c \"trap '' USR1; exec sleep 30\"\n"));
    let mut e = None;
    wait_on_job("`u1` to run", || {
        e = env.ls().into_iter().find(|e| e.project == "u1" && e.child_pid.is_some());
        e.is_some()
    });
    let (run, sleep) = e.map(|e| (e.pid.unwrap(), e.child_pid.unwrap())).unwrap();
    wait_for_terminal(sleep);
    // A stream of USR1s to `portd run` (a log rotation in a loop): one of
    // them is pending whenever the command's stop is reported, which the
    // report must survive.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sent = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = portd_core::sys::kill(run as i32, portd_core::sys::SIGUSR1);
                sent += 1;
            }
            sent
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    t.send("\x1a");
    t.expect(r"Stopped .*run u1 -- .*\s+.*PROMPT\$ ");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(flood.join().unwrap() > 0);
    assert_eq!(state_of(run), Some('T'), "`portd run` stopped itself");
    t.send("fg\n");
    t.expect("run u1");
    wait_for_terminal(sleep);
    t.send("\x03");
    t.expect(r"PROMPT\$ ");
    t.send("echo rc=$?\n");
    t.expect(r"rc=130");
    assert_eq!(entry(&env, "u1").state, "idle");
}
