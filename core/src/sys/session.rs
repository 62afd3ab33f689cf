//! Starting a child in a session of its own (setsid(2)): detached from the
//! caller's terminal and job control.

use std::process::Command;

/// Makes the child of `cmd` the leader of a new session (and of a new
/// process group with its pid as id) before it runs: it has no controlling
/// terminal, so neither a terminal's hang-up nor its Ctrl-C reaches it.
/// Do not combine with `CommandExt::process_group`: a process group leader
/// cannot start a session, and the child would fail to start.
pub fn new_session(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only
    // calls setsid(2), which is async-signal-safe, allocates nothing and
    // takes no lock; its error is a raw OS error, which allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_child_leads_a_new_session_without_a_terminal() {
        // `ps`-free: the child prints its own stat line; fields after the
        // name are state, ppid, pgrp, session, tty.
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "cat /proc/$$/stat; echo; echo $$"]);
        new_session(&mut cmd);
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let mut lines = text.lines();
        let stat = lines.next().unwrap();
        let pid: u32 = lines.find(|l| !l.is_empty()).unwrap().trim().parse().unwrap();
        let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        assert_eq!(f[2].parse::<u32>().unwrap(), pid, "group: {stat}");
        assert_eq!(f[3].parse::<u32>().unwrap(), pid, "session: {stat}");
        assert_eq!(f[4], "0", "controlling terminal: {stat}");
        assert_ne!(super::super::session(), pid);
    }
}
