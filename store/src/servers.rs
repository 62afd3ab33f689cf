//! The registry's managed servers: definitions ([`crate::definition`]),
//! their supervisors' states ([`crate::server_state`]) and events
//! ([`crate::events`]), each change in one write transaction with the
//! entries it goes with.
//!
//! A defined project always has an entry (its port is allocated when it
//! is defined), and that entry is never expired or evicted while the
//! definition stands. Its supervisor takes the entry's lease with
//! [`Registry::lease_server`], which is what makes one server per project:
//! a second supervisor finds the first one's lease.

use crate::db::{EVENTS, META, SERVER_STATE, SERVERS, db_err};
use crate::definition::{self, ServerDef};
use crate::error::{Error, ErrorKind, Result};
use crate::events::{self, Event, MAX_AGE_MS, MAX_EVENTS};
use crate::registry::{Registry, decode_err};
use crate::server_state::{self, ServerState};
use crate::tx::Tx;
use crate::{Allocation, GetOptions, Project};
use portd_core::Owner;
use redb::{ReadableTable, ReadableTableMetadata, TableHandle};

/// The `meta` key of the last event's sequence number.
pub(crate) const EVENTS_SEQ_KEY: &str = "events_seq";

/// A defined server with what the registry knows of it.
#[derive(Debug, Clone)]
pub struct Defined {
    /// The project's key.
    pub key: String,
    /// Its definition.
    pub def: ServerDef,
    /// Its recorded state (none before its first start).
    pub state: Option<ServerState>,
    /// Its port, when it has an entry.
    pub port: Option<u16>,
}

/// What a supervisor finds when it takes its server's lease.
#[derive(Debug)]
pub enum ServerLease {
    /// The lease is this supervisor's.
    Taken(Box<Allocation>),
    /// Another supervisor of this server lives: this pid.
    Exists(u32),
}

/// Opens a table of a read transaction, empty when it does not exist yet
/// (a registry written before managed servers).
pub(crate) fn read_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    rtx: &redb::ReadTransaction,
    t: redb::TableDefinition<K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>> {
    match rtx.open_table(t) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(db_err(e)),
    }
}

/// Every row of a project-keyed table of a read transaction, decoded.
fn read_keyed<V>(
    rtx: &redb::ReadTransaction,
    table: redb::TableDefinition<&'static str, &'static [u8]>,
    decode: impl Fn(&str, &[u8]) -> std::result::Result<V, crate::record::DecodeError>,
) -> Result<Vec<(String, V)>> {
    let Some(t) = read_table(rtx, table)? else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for row in t.iter().map_err(db_err)? {
        let (k, v) = row.map_err(db_err)?;
        out.push((k.value().to_owned(), decode(k.value(), v.value()).map_err(decode_err)?));
    }
    Ok(out)
}

/// The row of `key` in a project-keyed table of a read transaction,
/// decoded (`None`: no such row, or no such table yet).
fn read_one<V>(
    rtx: &redb::ReadTransaction,
    table: redb::TableDefinition<&'static str, &'static [u8]>,
    key: &str,
    decode: impl Fn(&str, &[u8]) -> std::result::Result<V, crate::record::DecodeError>,
) -> Result<Option<V>> {
    let Some(t) = read_table(rtx, table)? else { return Ok(None) };
    let v = t.get(key).map_err(db_err)?;
    v.map(|v| decode(key, v.value()).map_err(decode_err)).transpose()
}

pub(crate) fn read_definitions(rtx: &redb::ReadTransaction) -> Result<Vec<(String, ServerDef)>> {
    read_keyed(rtx, SERVERS, definition::decode)
}

pub(crate) fn read_states(rtx: &redb::ReadTransaction) -> Result<Vec<(String, ServerState)>> {
    read_keyed(rtx, SERVER_STATE, server_state::decode)
}

pub(crate) fn read_events(rtx: &redb::ReadTransaction, since_ms: u64) -> Result<Vec<Event>> {
    let Some(t) = read_table(rtx, EVENTS)? else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for row in t.iter().map_err(db_err)? {
        let (k, v) = row.map_err(db_err)?;
        let e = events::decode(k.value(), v.value()).map_err(decode_err)?;
        if e.at_ms >= since_ms {
            out.push(e);
        }
    }
    Ok(out)
}

impl Tx<'_> {
    /// Whether `key` has a server definition.
    pub(crate) fn is_defined(&mut self, key: &str) -> Result<bool> {
        if self.defined.is_none() {
            let mut keys = std::collections::HashSet::new();
            let exists =
                self.wtx.list_tables().map_err(db_err)?.any(|t| t.name() == SERVERS.name());
            if exists {
                let t = self.wtx.open_table(SERVERS).map_err(db_err)?;
                for row in t.iter().map_err(db_err)? {
                    keys.insert(row.map_err(db_err)?.0.value().to_owned());
                }
            }
            self.defined = Some(keys);
        }
        Ok(self.defined.as_ref().is_some_and(|d| d.contains(key)))
    }

    fn definition(&self, key: &str) -> Result<Option<ServerDef>> {
        let t = self.wtx.open_table(SERVERS).map_err(db_err)?;
        let v = t.get(key).map_err(db_err)?;
        v.map(|v| definition::decode(key, v.value()).map_err(decode_err)).transpose()
    }

    pub(crate) fn server_state(&self, key: &str) -> Result<Option<ServerState>> {
        let t = self.wtx.open_table(SERVER_STATE).map_err(db_err)?;
        let v = t.get(key).map_err(db_err)?;
        v.map(|v| server_state::decode(key, v.value()).map_err(decode_err)).transpose()
    }

    fn put_state(&mut self, key: &str, state: &ServerState) -> Result<()> {
        let mut s = state.clone();
        s.updated_ms = self.now;
        let mut t = self.wtx.open_table(SERVER_STATE).map_err(db_err)?;
        t.insert(key, server_state::encode(&s).as_slice()).map_err(db_err)?;
        self.servers_written = true;
        Ok(())
    }

    /// Appends events, then drops those past the bounds.
    fn append_events(&mut self, evs: &[Event]) -> Result<()> {
        if evs.is_empty() {
            return Ok(());
        }
        let mut seq = self.meta.get(EVENTS_SEQ_KEY).map_err(db_err)?.map_or(0, |v| v.value());
        let mut t = self.wtx.open_table(EVENTS).map_err(db_err)?;
        for e in evs {
            seq += 1;
            t.insert(seq, events::encode(e).as_slice()).map_err(db_err)?;
        }
        self.meta.insert(EVENTS_SEQ_KEY, seq).map_err(db_err)?;
        let cutoff = self.now.saturating_sub(MAX_AGE_MS);
        let mut len = t.len().map_err(db_err)?;
        loop {
            let Some((k, old)) = t.first().map_err(db_err)?.map(|(k, v)| {
                (k.value(), events::decode(k.value(), v.value()).map_or(0, |e| e.at_ms))
            }) else {
                break;
            };
            if len <= MAX_EVENTS && old >= cutoff {
                break;
            }
            t.remove(k).map_err(db_err)?;
            len -= 1;
        }
        self.servers_written = true;
        Ok(())
    }
}

impl Registry {
    /// Stores `def` as `project`'s definition and gives the project its
    /// port (allocated if it has none), in one write transaction. Returns
    /// the definition it replaced, if any, and the port. Creation and
    /// owner fields are kept from the definition replaced.
    pub fn define(&self, project: &Project, def: &ServerDef) -> Result<(Option<ServerDef>, u16)> {
        let key = project.key();
        self.write(|tx| {
            let old = tx.definition(key)?;
            let mut def = def.clone();
            def.created_ms = old.as_ref().map_or(tx.now, |o| o.created_ms);
            def.uid = old.as_ref().map_or(def.uid, |o| o.uid);
            def.updated_ms = tx.now;
            if let Some(o) = &old {
                definer_only(project, o, "change")?;
            }
            let bytes = definition::encode(&def);
            if bytes.len() > definition::MAX_DEFINITION + 1 {
                return Err(Error::usage(format!(
                    "the definition of `{}` is too large ({} bytes; at most {})",
                    project.display(),
                    bytes.len(),
                    definition::MAX_DEFINITION
                ))
                .with_hint("shorten the command or the environment"));
            }
            let port = tx.get(key, &GetOptions::default())?.entry.port;
            {
                let mut t = tx.wtx.open_table(SERVERS).map_err(db_err)?;
                t.insert(key, bytes.as_slice()).map_err(db_err)?;
            }
            if let Some(d) = &mut tx.defined {
                d.insert(key.to_owned());
            }
            tx.servers_written = true;
            Ok((old, port))
        })
    }

    /// Removes `project`'s definition and state; its entry is released
    /// (the port is remembered as history). Refused while a supervisor of
    /// it lives (stop it first). Returns the definition removed.
    pub fn undefine(&self, project: &Project) -> Result<Option<ServerDef>> {
        let key = project.key();
        self.write(|tx| {
            if let Some(s) = tx.server_state(key)?
                && let Some(owner) = s.live_supervisor()
            {
                return Err(Error::new(
                    ErrorKind::PortBusy,
                    format!("`{}` is running (supervisor pid {})", project.display(), owner.pid),
                )
                .with_hint(format!("stop it first: `portd stop {}`", project.display())));
            }
            let old = tx.definition(key)?;
            let Some(def) = &old else {
                return Ok(None);
            };
            definer_only(project, def, "remove")?;
            tx.wtx.open_table(SERVERS).map_err(db_err)?.remove(key).map_err(db_err)?;
            tx.wtx.open_table(SERVER_STATE).map_err(db_err)?.remove(key).map_err(db_err)?;
            if let Some(d) = &mut tx.defined {
                d.remove(key);
            }
            // Its entry and its relay's (`NAME@relay`) are released.
            let relay = project.relay();
            for k in [key, relay.key()] {
                if let Some(e) = tx.entry(k)?
                    && crate::listing::State::of(&e) == crate::listing::State::Idle
                    && crate::policy::guard(&e, "release").is_ok()
                {
                    tx.remove(&e)?;
                }
            }
            tx.servers_written = true;
            Ok(old)
        })
    }

    /// `project`'s definition, if it has one.
    pub fn definition(&self, project: &Project) -> Result<Option<ServerDef>> {
        Ok(self.defined(Some(project.key()))?.pop().map(|d| d.def))
    }

    /// Every defined server (or only `key`'s), by key, with its state and
    /// port.
    pub fn defined(&self, key: Option<&str>) -> Result<Vec<Defined>> {
        self.read(|rtx| {
            let entries = rtx.open_table(crate::db::ENTRIES).map_err(db_err)?;
            let port_of = |k: &str| -> Result<Option<u16>> {
                entries
                    .get(k)
                    .map_err(db_err)?
                    .map(|v| crate::record::decode(k, v.value()).map(|e| e.port))
                    .transpose()
                    .map_err(decode_err)
            };
            // One project: its three rows, looked up by key.
            if let Some(k) = key {
                let Some(def) = read_one(rtx, SERVERS, k, definition::decode)? else {
                    return Ok(Vec::new());
                };
                let state = read_one(rtx, SERVER_STATE, k, server_state::decode)?;
                return Ok(vec![Defined { state, key: k.to_owned(), def, port: port_of(k)? }]);
            }
            let states: std::collections::HashMap<_, _> = read_states(rtx)?.into_iter().collect();
            let mut out = Vec::new();
            for (k, def) in read_definitions(rtx)? {
                let port = port_of(&k)?;
                out.push(Defined { state: states.get(&k).cloned(), key: k, def, port });
            }
            Ok(out)
        })
    }

    /// Every recorded server state, by key (defined or not).
    pub fn server_states(&self) -> Result<Vec<(String, ServerState)>> {
        self.read(read_states)
    }

    /// The events at or after `since_ms`, oldest first.
    pub fn events_since(&self, since_ms: u64) -> Result<Vec<Event>> {
        self.read(|rtx| read_events(rtx, since_ms))
    }

    /// Takes `project`'s lease for its supervisor `me` (the calling
    /// process) and records `state` (with `me` as the supervisor) and
    /// `evs`, in one write transaction. If another supervisor of the
    /// server lives, changes nothing and returns [`ServerLease::Exists`].
    /// `opts` says how the port is taken (`require_free`, `move_port`).
    pub fn lease_server(
        &self,
        project: &Project,
        me: Owner,
        opts: &GetOptions,
        state: &ServerState,
        evs: &[Event],
    ) -> Result<ServerLease> {
        let key = project.key();
        self.write(|tx| {
            if let Some(s) = tx.server_state(key)?
                && let Some(other) = s.live_supervisor()
                && other != me
            {
                return Ok(ServerLease::Exists(other.pid));
            }
            let opts = GetOptions { owner: Some(me), ..opts.clone() };
            let lease = tx.get(key, &opts)?;
            let mut s = state.clone();
            s.supervisor = Some(me);
            tx.put_state(key, &s)?;
            tx.append_events(evs)?;
            Ok(ServerLease::Taken(Box::new(lease)))
        })
    }

    /// Records `project`'s state and `evs` in one write transaction, unless
    /// another live supervisor has taken over (then nothing is written and
    /// `false` returned).
    pub fn record_server(
        &self,
        project: &Project,
        state: &ServerState,
        evs: &[Event],
    ) -> Result<bool> {
        let key = project.key();
        self.write(|tx| {
            if let Some(s) = tx.server_state(key)?
                && let Some(other) = s.live_supervisor()
                && Some(other) != state.supervisor
            {
                return Ok(false);
            }
            tx.put_state(key, state)?;
            tx.append_events(evs)?;
            Ok(true)
        })
    }

    /// Records `project`'s state, `evs`, and ends `me`'s lease (the entry
    /// goes idle and keeps its port), in one write transaction: what a
    /// supervisor does last.
    pub fn end_server(
        &self,
        project: &Project,
        me: Owner,
        state: &ServerState,
        evs: &[Event],
    ) -> Result<()> {
        let key = project.key();
        self.write(|tx| {
            let ours = match tx.server_state(key)? {
                Some(s) => s.supervisor.is_none_or(|o| o == me || s.live_supervisor().is_none()),
                None => true,
            };
            if ours {
                tx.put_state(key, state)?;
            }
            tx.append_events(evs)?;
            if let Some(e) = tx.entry(key)?
                && e.owner == Some(me)
            {
                tx.end_lease_of(&e)?;
            }
            Ok(())
        })
    }

    /// Records events alone, in one write transaction.
    pub fn record_events(&self, evs: &[Event]) -> Result<()> {
        self.write(|tx| tx.append_events(evs))
    }

    /// The number of events kept, and the newest sequence number.
    pub fn event_counts(&self) -> Result<(u64, u64)> {
        self.read(|rtx| {
            let n = match read_table(rtx, EVENTS)? {
                Some(t) => t.len().map_err(db_err)?,
                None => 0,
            };
            let meta = rtx.open_table(META).map_err(db_err)?;
            let seq = meta.get(EVENTS_SEQ_KEY).map_err(db_err)?.map_or(0, |v| v.value());
            Ok((n, seq))
        })
    }
}

/// Refuses to `verb` (change, remove) the definition `def` of `project`
/// unless this user defined it, or is root.
fn definer_only(project: &Project, def: &ServerDef, verb: &str) -> Result<()> {
    let me = portd_core::sys::euid();
    if def.uid != me && me != 0 {
        return Err(Error::new(
            ErrorKind::Permission,
            format!("`{}` is defined by uid {}", project.display(), def.uid),
        )
        .with_hint(format!("only the user who defined a server (or root) may {verb} it")));
    }
    Ok(())
}
