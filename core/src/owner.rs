//! Who holds a lease, and whether that process still lives.
//!
//! An owner is (pid, start time, boot id, uid). It is alive only when a
//! process with that pid exists in this boot with the same start time and
//! is not a zombie: a reused pid is a different process, hence dead. When
//! the answer cannot be read, it is [`Liveness::Unknown`], and an unknown
//! owner is never reclaimed.

use crate::sys;
use std::io;
use std::sync::OnceLock;

/// The process behind an active lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Owner {
    /// Process id.
    pub pid: u32,
    /// Start time in clock ticks since boot.
    pub start_time: u64,
    /// The boot it started in (0 when the platform has none).
    pub boot_id: u128,
    /// Its effective uid.
    pub uid: u32,
}

/// What is known of an owner's process now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The very same process is running.
    Alive,
    /// It is gone (or its pid now names another process, or it is a zombie).
    Dead,
    /// Could not tell; treated as alive.
    Unknown,
}

fn this_boot() -> Option<u128> {
    static BOOT: OnceLock<Option<u128>> = OnceLock::new();
    *BOOT.get_or_init(sys::boot_id)
}

impl Owner {
    /// The calling process.
    pub fn this_process() -> Owner {
        Owner::of_pid(std::process::id()).unwrap_or(Owner {
            pid: std::process::id(),
            start_time: 0,
            boot_id: 0,
            uid: sys::euid(),
        })
    }

    /// The running process `pid`; `NotFound` if there is none.
    pub fn of_pid(pid: u32) -> io::Result<Owner> {
        if pid == 0 || pid > i32::MAX as u32 {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such process"));
        }
        let st = sys::proc_stat(pid)?;
        if st.state == 'Z' || st.state == 'X' {
            return Err(io::Error::new(io::ErrorKind::NotFound, "process has exited"));
        }
        // Not the process's own uid, but the uid portd acts for: a lease is
        // released or moved only by the user who took it.
        Ok(Owner {
            pid,
            start_time: st.start_time,
            boot_id: this_boot().unwrap_or(0),
            uid: sys::euid(),
        })
    }

    /// Whether the owner's process is still running.
    pub fn liveness(&self) -> Liveness {
        let Some(boot) = this_boot() else {
            return Liveness::Unknown;
        };
        if self.boot_id != boot {
            // Every process of an earlier boot is gone.
            return Liveness::Dead;
        }
        match sys::proc_stat(self.pid) {
            Ok(st) if st.start_time != self.start_time => Liveness::Dead,
            Ok(st) if st.state == 'Z' || st.state == 'X' => Liveness::Dead,
            Ok(_) => Liveness::Alive,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Liveness::Dead,
            Err(_) => Liveness::Unknown,
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn self_is_alive() {
        let me = Owner::this_process();
        assert_eq!(me.pid, std::process::id());
        assert_ne!(me.start_time, 0);
        assert_eq!(me.liveness(), Liveness::Alive);
    }

    #[test]
    fn reused_pid_is_dead() {
        let mut me = Owner::this_process();
        me.start_time += 1;
        assert_eq!(me.liveness(), Liveness::Dead);
    }

    #[test]
    fn other_boot_is_dead() {
        let mut me = Owner::this_process();
        me.boot_id ^= 1;
        assert_eq!(me.liveness(), Liveness::Dead);
    }

    #[test]
    fn exited_child_is_dead() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let owner = Owner::of_pid(child.id()).unwrap();
        assert_eq!(owner.liveness(), Liveness::Alive);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(owner.liveness(), Liveness::Dead);
        assert!(Owner::of_pid(child.id()).is_err());
        assert!(Owner::of_pid(0).is_err());
    }
}
