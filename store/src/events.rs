//! What managed servers did: started, ready (with the startup time),
//! stopped and why, restarted, crashed, … recorded by their supervisors.
//!
//! Stored in the `events` table under an increasing sequence number (meta
//! `events_seq`), so that sequence order is time order. Bounded: every
//! append drops events older than [`MAX_AGE_MS`] (7 days) and the oldest
//! beyond [`MAX_EVENTS`] (5,000), in the same write transaction.

use serde::{Deserialize, Serialize};
use std::fmt;

const EVENT_V1: u8 = 1;
/// At most this many events are kept.
pub const MAX_EVENTS: u64 = 5_000;
/// No event older than this is kept (7 days).
pub const MAX_AGE_MS: u64 = 7 * 86_400_000;
const MAX_DETAIL: usize = 512;

/// Why a server stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopWhy {
    /// `portd stop`, `restart` or `rm`.
    User,
    /// No connection for the idle timeout.
    Idle,
    /// It exited or was killed on its own.
    Crash,
    /// It failed its health checks.
    Health,
    /// It did not become healthy in time.
    StartTimeout,
}

impl StopWhy {
    /// The word shown.
    pub fn as_str(self) -> &'static str {
        match self {
            StopWhy::User => "user",
            StopWhy::Idle => "idle",
            StopWhy::Crash => "crash",
            StopWhy::Health => "health",
            StopWhy::StartTimeout => "start timeout",
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// The server command started.
    Started,
    /// It became healthy, this long after it started.
    Ready {
        /// Milliseconds from the start to the first healthy check.
        startup_ms: u64,
    },
    /// It stopped.
    Stopped {
        /// Why.
        why: StopWhy,
    },
    /// It ended on its own (`exit 1`, `signal 9`).
    Crashed {
        /// How it ended.
        exit: String,
    },
    /// It is started again after this delay.
    Restarted {
        /// The backoff delay in milliseconds.
        delay_ms: u64,
    },
    /// Too many quick failures in a row: retries stopped.
    CrashLooping,
    /// Its health checks failed (policy `no`: left running).
    Unhealthy,
    /// On demand: waiting for a connection, no server running.
    Slept,
    /// On demand: a connection arrived and starts it.
    Woke,
    /// It could not be started or did not become healthy.
    StartFailed,
}

impl EventKind {
    /// The kind's name in `--json` (`started`, `ready`, …).
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Started => "started",
            EventKind::Ready { .. } => "ready",
            EventKind::Stopped { .. } => "stopped",
            EventKind::Crashed { .. } => "crashed",
            EventKind::Restarted { .. } => "restarted",
            EventKind::CrashLooping => "crash-looping",
            EventKind::Unhealthy => "unhealthy",
            EventKind::Slept => "slept",
            EventKind::Woke => "woke",
            EventKind::StartFailed => "start-failed",
        }
    }
}

/// One recorded event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The project's key.
    pub project: String,
    /// What happened.
    pub kind: EventKind,
    /// More, in words (a reason, the last log line); at most 512 bytes.
    pub detail: Option<String>,
}

impl fmt::Display for Event {
    /// One line: the kind with its figures, and the detail.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            EventKind::Ready { startup_ms } => write!(f, "ready in {startup_ms} ms")?,
            EventKind::Stopped { why } => write!(f, "stopped ({})", why.as_str())?,
            EventKind::Crashed { exit } => write!(f, "crashed ({exit})")?,
            EventKind::Restarted { delay_ms } => write!(f, "restarted after {delay_ms} ms")?,
            k => f.write_str(k.name())?,
        }
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

/// Encodes an event (its detail cut to 512 bytes).
pub fn encode(e: &Event) -> Vec<u8> {
    let mut e = e.clone();
    if let Some(d) = &mut e.detail
        && d.len() > MAX_DETAIL
    {
        let mut at = MAX_DETAIL;
        while !d.is_char_boundary(at) {
            at -= 1;
        }
        d.truncate(at);
    }
    crate::record::encode_versioned(EVENT_V1, &e)
}

/// Decodes a stored event.
pub fn decode(seq: u64, bytes: &[u8]) -> Result<Event, crate::record::DecodeError> {
    let err = |m: &str| crate::record::DecodeError(format!("event {seq}: {m}"));
    let e: Event = crate::record::decode_versioned(EVENT_V1, bytes).map_err(|m| err(&m))?;
    // What `encode` never writes is damage, as in an entry's record.
    if e.detail.as_ref().is_some_and(|d| d.len() > MAX_DETAIL) {
        return Err(err("detail too long"));
    }
    if !crate::record::valid_key(&e.project) {
        return Err(err("invalid project key"));
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_round_trips_and_reads_as_one_line() {
        let e = Event {
            at_ms: 5,
            project: "api".into(),
            kind: EventKind::Ready { startup_ms: 812 },
            detail: None,
        };
        assert_eq!(decode(1, &encode(&e)).unwrap(), e);
        assert_eq!(e.to_string(), "ready in 812 ms");
        let s = Event {
            kind: EventKind::Stopped { why: StopWhy::Idle },
            detail: Some("x".repeat(2000)),
            ..e
        };
        let back = decode(2, &encode(&s)).unwrap();
        assert_eq!(back.detail.as_ref().unwrap().len(), MAX_DETAIL);
        assert!(back.to_string().starts_with("stopped (idle): xxx"));
        assert!(decode(3, &[1, 200]).is_err());
    }

    /// What `encode` never writes is refused: a detail longer than it
    /// keeps, an event of a malformed project key.
    #[test]
    fn an_event_that_encoding_never_writes_is_refused() {
        let body = |e: &Event| {
            let mut out = vec![EVENT_V1];
            out.extend(postcard::to_allocvec(e).unwrap());
            out
        };
        let mut e = Event {
            at_ms: 5,
            project: "api".into(),
            kind: EventKind::Started,
            detail: Some("d".repeat(MAX_DETAIL + 1)),
        };
        assert!(decode(1, &body(&e)).unwrap_err().0.ends_with("detail too long"));
        e.detail = Some("d".repeat(MAX_DETAIL));
        assert_eq!(decode(1, &body(&e)).unwrap(), e);
        e.project = "no such key".into();
        assert!(decode(1, &body(&e)).unwrap_err().0.ends_with("invalid project key"));
    }
}
