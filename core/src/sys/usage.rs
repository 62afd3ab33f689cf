//! What processes cost: resident memory (`/proc/PID/statm`) and CPU time
//! used (`/proc/PID/stat`), for one process or a whole process group.

use std::fs;

/// The size of a memory page in bytes (sysconf(3) `_SC_PAGESIZE`).
pub fn page_size() -> u64 {
    // SAFETY: sysconf takes an integer and touches no memory.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as u64 } else { 4096 }
}

/// Clock ticks per second, the unit of [`cpu_ticks`] (sysconf(3)
/// `_SC_CLK_TCK`).
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf takes an integer and touches no memory.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if n > 0 { n as u64 } else { 100 }
}

/// The resident memory of `pid` in bytes (`/proc/PID/statm`: resident
/// pages × page size, shared file pages included, as `ps` shows it);
/// `None` when the process is gone or unreadable.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    parse_statm_resident(&s).map(|pages| pages * page_size())
}

/// The resident pages field (the second) of a `/proc/PID/statm` line.
fn parse_statm_resident(line: &str) -> Option<u64> {
    line.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// The sum of [`rss_bytes`] over every process whose process group is
/// `pgid` (0 when there is none). Pages shared between them are counted
/// once per process, as `ps` would add them up.
pub fn group_rss(pgid: u32) -> u64 {
    super::process_table()
        .iter()
        .filter(|p| p.pgrp == pgid && p.state != 'Z')
        .filter_map(|p| rss_bytes(p.pid))
        .sum()
}

/// CPU time used by `pid` so far, user plus system, in clock ticks (see
/// [`ticks_per_second`]); `None` when the process is gone or unreadable.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    parse_cpu_ticks(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `utime + stime` (fields 14 and 15) of a `/proc/PID/stat` line, counted
/// from the last `)` as the command name may hold spaces and parentheses.
fn parse_cpu_ticks(line: &str) -> Option<u64> {
    let rest = line.get(line.rfind(')')? + 1..)?;
    // Field 3 (the state) is the first after the name.
    let mut f = rest.split_ascii_whitespace().skip(14 - 3);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_resident_pages_and_cpu_ticks() {
        assert_eq!(parse_statm_resident("2451 612 480 199 0 342 0\n"), Some(612));
        assert_eq!(parse_statm_resident("2451"), None);
        let line = "1234 (we) ird) S 1 1234 1234 0 -1 4194560 100 0 0 0 17 25 0 0 20 0 1 0 987654";
        assert_eq!(parse_cpu_ticks(line), Some(42));
        assert_eq!(parse_cpu_ticks("1 (x) S 1 2"), None);
    }

    #[test]
    fn this_process_has_memory_and_burns_cpu() {
        let me = std::process::id();
        let before = cpu_ticks(me).unwrap();
        let rss = rss_bytes(me).unwrap();
        assert!(rss > 100_000, "{rss}");
        // Touch 32 MiB: the resident size grows by about as much.
        let big = vec![1u8; 32 << 20];
        let grown = rss_bytes(me).unwrap();
        assert!(grown >= rss + (24 << 20), "{rss} -> {grown}");
        drop(std::hint::black_box(big));
        // Spin until the kernel has accounted two ticks of CPU time.
        let t = std::time::Instant::now();
        while cpu_ticks(me).unwrap() < before + 2 {
            assert!(t.elapsed().as_secs() < 20, "no CPU time accounted");
        }
        assert_eq!(rss_bytes(u32::MAX), None);
        assert_eq!(cpu_ticks(u32::MAX), None);
    }

    #[test]
    fn a_group_sums_its_members() {
        use std::os::unix::process::CommandExt;
        let mut a = std::process::Command::new("sleep");
        a.arg("30").process_group(0);
        let mut a = a.spawn().unwrap();
        let pgid = a.id();
        let mut b = std::process::Command::new("sleep");
        b.arg("30").process_group(pgid as i32);
        let mut b = b.spawn().unwrap();
        // Once both run `sleep` (exec done), their sizes stay put.
        let t = std::time::Instant::now();
        while [a.id(), b.id()].iter().any(|&p| super::super::proc_stat(p).unwrap().comm != "sleep")
        {
            assert!(t.elapsed().as_secs() < 10, "sleep did not start");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (ra, rb) = (rss_bytes(a.id()).unwrap(), rss_bytes(b.id()).unwrap());
        let sum = group_rss(pgid);
        let _ = (a.kill(), b.kill(), a.wait(), b.wait());
        assert_eq!(sum, ra + rb);
        assert_eq!(group_rss(pgid), 0);
    }
}
