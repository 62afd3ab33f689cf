//! Everything that talks to the operating system below std: `/proc`, uids,
//! kernel tunables. The rest of the crate sees only this safe API.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::*;

#[cfg(not(target_os = "linux"))]
mod other;
#[cfg(not(target_os = "linux"))]
pub use other::*;

/// What `/proc/PID/stat` (or the platform's equivalent) says of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    /// The kernel's state letter (`R`, `S`, `Z`, …).
    pub state: char,
    /// Start time in clock ticks since boot: with the pid, names one process.
    pub start_time: u64,
    /// Short command name.
    pub comm: String,
    /// Process group id.
    pub pgrp: u32,
}

/// A process holding a socket on a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Its pid.
    pub pid: u32,
    /// Its short name.
    pub name: String,
    /// Its command line, when readable.
    pub cmdline: Option<Vec<String>>,
}

/// Parses the interesting fields of a `/proc/PID/stat` line. The command
/// name may hold spaces and parentheses, so fields are counted from the
/// *last* `)`.
pub fn parse_stat(line: &str) -> Option<ProcStat> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let comm = line.get(open + 1..close)?.to_owned();
    let mut rest = line.get(close + 1..)?.split_ascii_whitespace();
    let state = rest.next()?.chars().next()?;
    // Fields after the state: 4 ppid, 5 pgrp, …, 22 start time.
    let _ppid = rest.next()?;
    let pgrp = rest.next()?.parse().ok()?;
    let start_time = rest.nth(16)?.parse().ok()?;
    Some(ProcStat { state, start_time, comm, pgrp })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_names() {
        let line = "1234 (we) ird) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100 18446744073709551615";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.comm, "we) ird");
        assert_eq!(s.state, 'S');
        assert_eq!(s.start_time, 987654);
        assert_eq!(s.pgrp, 1234);
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
    }
}
