//! The safety net for servers that ignore `PORT`: where a process group
//! listens when it is not on its own port.

use portd_core::sys;

/// A TCP port that process group `pgid` listens on while none of `ours`
/// is among its ports (a dev server that ignores `PORT` and took its own
/// default); `None` when it listens on one of `ours`, or nowhere.
pub fn listens_elsewhere(pgid: u32, ours: &[u16]) -> Option<u16> {
    let pids: Vec<u32> =
        sys::process_table().into_iter().filter(|p| p.pgrp == pgid).map(|p| p.pid).collect();
    let ports = sys::listening_ports_of(&pids).ok()?;
    if ports.iter().any(|p| ours.contains(p)) {
        return None;
    }
    ports.first().copied()
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
    }
}
