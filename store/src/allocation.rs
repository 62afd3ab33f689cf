//! What a `get` asks for ([`GetOptions`]) and what it gives
//! ([`Allocation`]), with what it changed so that it can be undone.

use crate::ownership::{self, Binding};
use crate::record::Entry;
use portd_core::Owner;

/// What to ask of `get`/`acquire`.
#[derive(Debug, Clone, Default)]
pub struct GetOptions {
    /// Only this range (else the configured default, else the fallback ranges).
    pub range: Option<String>,
    /// Exactly this port (else `PORTD_PORT`, else the usual candidates).
    pub port: Option<u16>,
    /// Require the UDP port to be free too.
    pub udp: bool,
    /// Record this process as the owner (an active lease).
    pub owner: Option<Owner>,
    /// The owner's command line.
    pub command: Option<Vec<String>>,
    /// The child process started for the lease.
    pub child_pid: Option<u32>,
    /// The project's port must be bindable now (probed as its server binds,
    /// with `SO_REUSEADDR`); a port bound by a process that is not the
    /// project's own (see [`crate::binding`]) fails with
    /// [`ErrorKind::PortBusy`](crate::ErrorKind::PortBusy), or moves with `move_port`. Without `owner`,
    /// a server started with the project's port in its environment is
    /// recorded as the owner instead.
    pub require_free: bool,
    /// With `require_free`: take a fresh port instead of failing (`--move`).
    pub move_port: bool,
}

/// Why an existing entry was given another port.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MoveReason {
    /// Its port was bound by another process, and a move was asked for.
    Bound,
    /// Its port is excluded now (the reason).
    Excluded(String),
    /// Its port lies outside every configured range now.
    OutsideRange,
    /// Another port was asked for (`--port`).
    Asked,
    /// `PORTD_PORT` pins it to another port.
    Pinned,
    /// Another range was asked for (`--range`).
    Range(String),
}

impl std::fmt::Display for MoveReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MoveReason::Bound => f.write_str("its port was bound by another process"),
            MoveReason::Excluded(why) => write!(f, "its port is excluded: {why}"),
            MoveReason::OutsideRange => f.write_str("its port is outside every configured range"),
            MoveReason::Asked => f.write_str("`--port` asked for another port"),
            MoveReason::Pinned => f.write_str("`PORTD_PORT` pins another port"),
            MoveReason::Range(r) => write!(f, "range `{r}` was asked for"),
        }
    }
}

/// The outcome of `get`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// The entry as committed.
    pub entry: Entry,
    /// Whether the project got its entry now (false: it had one, kept or moved).
    pub fresh: bool,
    /// The port the project had before, when it was moved.
    pub moved_from: Option<u16>,
    /// Why it was moved, when it was.
    pub moved_because: Option<MoveReason>,
    /// Idle entries evicted (least recently used first) to make room.
    pub evicted: Vec<Entry>,
    /// Idle entries dropped for exceeding `idle_ttl` by this allocation.
    pub expired: Vec<Entry>,
    /// What the project's rows were before, read in the same transaction
    /// as the write: what [`Registry::undo_get`] puts back.
    pub(crate) previous: Previous,
}

/// The rows a `get` changed for its project, as they were before it, read
/// inside the `get`'s own transaction (so that no other write can come
/// between what is recorded and what is changed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Previous {
    /// The project's entry.
    pub(crate) entry: Option<Entry>,
    /// Its history row.
    pub(crate) history: Option<u16>,
    /// Each scan cursor the `get` advanced: `(meta key, before, after)`.
    pub(crate) cursors: Vec<(String, Option<u64>, u64)>,
}

impl Allocation {
    pub(crate) fn kept(entry: Entry, previous: Previous) -> Allocation {
        Allocation {
            entry,
            fresh: false,
            moved_from: None,
            moved_because: None,
            evicted: Vec::new(),
            expired: Vec::new(),
            previous,
        }
    }
}

impl Allocation {
    /// The port, bound and listening on `127.0.0.1` (`SO_REUSEADDR`): a
    /// pre-bound listener to hand to a server, with no window in which
    /// another process can take the port. Loopback only, so nothing outside
    /// the machine can connect; [`Allocation::bind_tcp_loopback`] adds
    /// `::1`, [`Allocation::bind_tcp_on`] binds another address.
    pub fn bind_tcp(&self) -> std::io::Result<std::net::TcpListener> {
        self.bind_tcp_on(std::net::Ipv4Addr::LOCALHOST.into())
    }

    /// The port, listening on `host` (`::` is dual-stack and, like
    /// `0.0.0.0`, reachable from the network: only when asked for).
    pub fn bind_tcp_on(&self, host: std::net::IpAddr) -> std::io::Result<std::net::TcpListener> {
        portd_core::bind_listener_on(host, self.entry.port)
    }

    /// The port, listening on `127.0.0.1` and, where IPv6 is up, on `::1`
    /// (IPv4 first): what `portd run --fd` passes by default.
    pub fn bind_tcp_loopback(&self) -> std::io::Result<Vec<std::net::TcpListener>> {
        portd_core::bind_loopback(self.entry.port)
    }

    /// The processes that are not the project's own and hold its TCP port
    /// now, if any: `Some` (an empty list when the binder cannot be seen,
    /// another user's process without privileges) when the port is bound by
    /// someone else, `None` when it is free, bound only by the project's own
    /// processes (its live owner, its child, their descendants and groups),
    /// bound by a server started with the project's port in its environment
    /// (which portd would adopt), or not bindable by this user at all.
    /// This is the rule `portd get` warns by ([`crate::binding`]).
    ///
    /// Computed when called, not by `get`: it probes the port (microseconds)
    /// and reads `/proc` only when the port is bound. The answer is for this
    /// moment; a process may bind the port right after.
    pub fn foreign_listener(&self) -> Option<Vec<portd_core::sys::Holder>> {
        match ownership::binding(&self.entry, false) {
            Binding::Foreign(holders) => Some(holders),
            _ => None,
        }
    }
}
