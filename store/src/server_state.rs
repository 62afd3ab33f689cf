//! A managed server's state, as its supervisor records it: the phase, the
//! processes, times, counters and the last failure.
//!
//! Stored in the `server_state` table under the project's key (a version
//! byte and postcard). The supervisor writes it at every transition, never
//! on a timer. A reader combines it with the supervisor's liveness
//! ([`ServerState::effective`]): a state whose supervisor died reads as
//! `stopped`, "supervisor died", until the next start overwrites it.

use portd_core::{Liveness, Owner};
use serde::{Deserialize, Serialize};
use std::fmt;

const STATE_V1: u8 = 1;
const MAX_REASON: usize = 1024;

/// Where a managed server is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Started, not yet healthy.
    Starting,
    /// Healthy (or not yet checked again).
    Running,
    /// Failed its health checks and is not restarted (policy `no`).
    Unhealthy,
    /// On demand: the supervisor holds the port, no server runs.
    Sleeping,
    /// Not running.
    Stopped,
    /// Failed quickly too many times in a row; retries stopped.
    CrashLooping,
}

impl Phase {
    /// The name `ls` and `--json` show.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Unhealthy => "unhealthy",
            Phase::Sleeping => "sleeping",
            Phase::Stopped => "stopped",
            Phase::CrashLooping => "crash-looping",
        }
    }

    /// Whether a supervisor lives in this phase.
    pub fn supervised(self) -> bool {
        matches!(self, Phase::Starting | Phase::Running | Phase::Unhealthy | Phase::Sleeping)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A managed server's recorded state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerState {
    /// The phase.
    pub phase: Phase,
    /// The supervisor (`portd __serve`) while one lives.
    #[serde(with = "crate::record::owner_opt")]
    pub supervisor: Option<Owner>,
    /// The server command's pid (its process group) while it runs.
    pub command_pid: Option<u32>,
    /// When the supervisor started, milliseconds since the Unix epoch.
    pub since_ms: u64,
    /// When the server command last started.
    pub started_ms: Option<u64>,
    /// When it last became healthy.
    pub ready_ms: Option<u64>,
    /// Restarts since the supervisor started.
    pub restarts: u32,
    /// How the server last ended (`exit 1`, `signal 9`).
    pub last_exit: Option<String>,
    /// Why it is stopped, unhealthy or crash-looping.
    pub reason: Option<String>,
    /// The server's resident memory when last measured (its whole
    /// process group), in bytes.
    pub last_rss: Option<u64>,
    /// The private port the server listens on behind the relay.
    pub relay_port: Option<u16>,
    /// When this state was written.
    pub updated_ms: u64,
}

impl ServerState {
    /// A state in `phase`, written now by the calling process.
    pub fn new(phase: Phase) -> ServerState {
        ServerState {
            phase,
            supervisor: None,
            command_pid: None,
            since_ms: 0,
            started_ms: None,
            ready_ms: None,
            restarts: 0,
            last_exit: None,
            reason: None,
            last_rss: None,
            relay_port: None,
            updated_ms: 0,
        }
    }

    /// The state as it really is: one whose supervisor is gone reads as
    /// stopped, with that as the reason.
    pub fn effective(&self) -> ServerState {
        match self.supervisor {
            Some(s) if self.phase.supervised() && s.liveness() == Liveness::Dead => ServerState {
                phase: Phase::Stopped,
                supervisor: None,
                command_pid: None,
                reason: Some(format!("its supervisor (pid {}) died", s.pid)),
                ..self.clone()
            },
            _ => self.clone(),
        }
    }

    /// The supervisor, if it is alive (or cannot be told dead).
    pub fn live_supervisor(&self) -> Option<Owner> {
        self.supervisor.filter(|s| self.phase.supervised() && s.liveness() != Liveness::Dead)
    }
}

/// Encodes a state for the `server_state` table (the reason cut to 1 KiB).
pub fn encode(s: &ServerState) -> Vec<u8> {
    let mut s = s.clone();
    for text in [&mut s.reason, &mut s.last_exit].into_iter().flatten() {
        if text.len() > MAX_REASON {
            let mut at = MAX_REASON;
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            text.truncate(at);
        }
    }
    crate::record::encode_versioned(STATE_V1, &s)
}

/// Decodes a stored state.
pub fn decode(key: &str, bytes: &[u8]) -> Result<ServerState, crate::record::DecodeError> {
    let err = |m: &str| crate::record::DecodeError(format!("server state of `{key}`: {m}"));
    let s: ServerState = crate::record::decode_versioned(STATE_V1, bytes).map_err(|m| err(&m))?;
    // What `encode` never writes is damage, as in an entry's record.
    if [&s.reason, &s.last_exit].into_iter().flatten().any(|t| t.len() > MAX_REASON) {
        return Err(err("reason too long"));
    }
    let bad_pid = |p: u32| p == 0 || p > i32::MAX as u32;
    if s.supervisor.is_some_and(|o| bad_pid(o.pid)) || s.command_pid.is_some_and(bad_pid) {
        return Err(err("invalid pid"));
    }
    if s.relay_port == Some(0) {
        return Err(err("port 0"));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_round_trips_and_a_dead_supervisor_reads_as_stopped() {
        let mut s = ServerState::new(Phase::Running);
        s.supervisor = Some(Owner::this_process());
        s.command_pid = Some(42);
        let back = decode("api", &encode(&s)).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.effective().phase, Phase::Running);
        let mut dead = s.clone();
        dead.supervisor.as_mut().unwrap().start_time += 1;
        let e = dead.effective();
        assert_eq!(e.phase, Phase::Stopped);
        assert!(e.reason.unwrap().contains("supervisor"));
        assert!(decode("api", &[9]).is_err());
    }

    /// What `encode` never writes is refused: a reason longer than it
    /// keeps, a pid that cannot be signalled alone, port 0.
    #[test]
    fn a_state_that_encoding_never_writes_is_refused() {
        let body = |s: &ServerState| {
            let mut out = vec![STATE_V1];
            out.extend(postcard::to_allocvec(s).unwrap());
            out
        };
        let mut long = ServerState::new(Phase::Stopped);
        long.reason = Some("r".repeat(MAX_REASON + 1));
        assert!(decode("api", &body(&long)).unwrap_err().0.ends_with("reason too long"));
        long.reason = Some("r".repeat(MAX_REASON));
        assert_eq!(decode("api", &body(&long)).unwrap(), long);
        for pid in [0, u32::MAX, i32::MAX as u32 + 1] {
            let mut s = ServerState::new(Phase::Running);
            s.command_pid = Some(pid);
            assert!(decode("api", &body(&s)).unwrap_err().0.ends_with("invalid pid"), "{pid}");
            s.command_pid = None;
            s.supervisor = Some(Owner { pid, ..Owner::this_process() });
            assert!(decode("api", &body(&s)).unwrap_err().0.ends_with("invalid pid"), "{pid}");
        }
        let mut s = ServerState::new(Phase::Sleeping);
        s.relay_port = Some(0);
        assert!(decode("api", &body(&s)).unwrap_err().0.ends_with("port 0"));
    }

    #[test]
    fn a_long_reason_is_cut_on_a_character_boundary() {
        let mut s = ServerState::new(Phase::Stopped);
        s.reason = Some("é".repeat(2000));
        let back = decode("api", &encode(&s)).unwrap();
        assert!(back.reason.unwrap().len() <= MAX_REASON);
    }
}
