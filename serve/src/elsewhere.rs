//! The safety net for servers that ignore `PORT`: where a process group
//! listens when it is not on its own port.

use portd_core::sys;

/// A TCP port that process group `pgid` listens on while none of `ours`
/// is among its ports (a dev server that ignores `PORT` and took its own
/// default); `None` when it listens on one of `ours`, or nowhere.
pub fn listens_elsewhere(pgid: u32, ours: &[u16]) -> Option<u16> {
    match listens(pgid, ours) {
        Listens::Elsewhere(port) => Some(port),
        Listens::Ours | Listens::Nowhere => None,
    }
}

/// Where a process group listens, as [`listens`] finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listens {
    /// On one of its own ports.
    Ours,
    /// Not on its own ports, but on this one (the lowest of them).
    Elsewhere(u16),
    /// Nowhere (not yet, or not a server; also when the sockets cannot be
    /// read).
    Nowhere,
}

/// Where process group `pgid` listens, given its own ports `ours`.
pub fn listens(pgid: u32, ours: &[u16]) -> Listens {
    let pids: Vec<u32> =
        sys::process_table().into_iter().filter(|p| p.pgrp == pgid).map(|p| p.pid).collect();
    let Ok(ports) = sys::listening_ports_of(&pids) else { return Listens::Nowhere };
    if ports.iter().any(|p| ours.contains(p)) {
        return Listens::Ours;
    }
    ports.first().map_or(Listens::Nowhere, |&p| Listens::Elsewhere(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_group_listening_on_another_port_is_found() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let other = l.local_addr().unwrap().port();
        let me = sys::pgrp();
        // Port 1: nothing of this test process listens there.
        assert!(listens_elsewhere(me, &[1]).is_some());
        assert_eq!(listens_elsewhere(me, &[other]), None);
        assert_eq!(listens(me, &[other]), Listens::Ours);
        assert!(matches!(listens(me, &[1]), Listens::Elsewhere(_)));
    }

    #[test]
    fn a_group_that_listens_nowhere_is_told_apart() {
        use std::os::unix::process::CommandExt as _;
        // A fresh process group of one `sleep`: no sockets at all.
        let mut child =
            std::process::Command::new("sleep").arg("5").process_group(0).spawn().unwrap();
        let pgid = child.id();
        assert_eq!(listens(pgid, &[1]), Listens::Nowhere);
        let _ = child.kill();
        let _ = child.wait();
    }
}
