//! One write transaction with its tables open, and the upkeep of the
//! indexes (`ports`, `lru`, `history`) that every change of an entry needs.

use crate::bitmaps::{Row, Rows};
use crate::db::{
    BITMAPS, ENTRIES, GENERATION_KEY, HISTORY, LRU, META, PORTS, SCHEMA_KEY, SCHEMA_VERSION,
    db_err, next_generation,
};
use crate::error::{Error, Result};
use crate::listing::State;
use crate::mirror::Claim;
use crate::policy::guard;
use crate::record::{self, Entry};
use crate::registry::{Registry, decode_err, now_ms};
use redb::ReadableTable;

pub(crate) fn read_entries(rtx: &redb::ReadTransaction) -> Result<Vec<Entry>> {
    let entries = rtx.open_table(ENTRIES).map_err(db_err)?;
    collect_entries(&entries)
}

pub(crate) fn collect_entries(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    for row in t.iter().map_err(db_err)? {
        let (k, v) = row.map_err(db_err)?;
        out.push(record::decode(k.value(), v.value()).map_err(decode_err)?);
    }
    Ok(out)
}

/// One write transaction with its tables open.
pub(crate) struct Tx<'t> {
    pub(crate) entries: redb::Table<'t, &'static str, &'static [u8]>,
    pub(crate) ports: redb::Table<'t, u16, &'static str>,
    pub(crate) history: redb::Table<'t, &'static str, u16>,
    pub(crate) lru: redb::Table<'t, (u64, &'static str), ()>,
    pub(crate) meta: redb::Table<'t, &'static str, u64>,
    pub(crate) reg: &'t Registry,
    pub(crate) now: u64,
    /// Entries evicted by the allocation under way.
    pub(crate) evicted: Vec<Entry>,
    /// Scan cursors moved by the allocation under way: `(meta key, before,
    /// after)`.
    pub(crate) cursors: Vec<(String, Option<u64>, u64)>,
    /// Keys answered by this transaction so far (a `get_many` batch, or a
    /// group-commit batch of several callers): never evicted by a later
    /// request of the same transaction, so that a batch is all or nothing.
    pub(crate) claimed: std::collections::HashSet<String>,
    pub(crate) bitmaps: redb::Table<'t, &'static str, &'static [u8]>,
    /// The per-range rows, kept with `ports`.
    pub(crate) rows: Rows,
    /// The stored generation when the transaction began.
    pub(crate) generation: Option<u64>,
    /// Ports claimed in the mirror for entries this transaction writes:
    /// kept if it commits, released if not.
    pub(crate) claims: Vec<Claim>,
    /// Whether idle entries past `idle_ttl` were dropped already.
    pub(crate) expired_once: bool,
    /// Ports this transaction took from entries (removed, moved, expired,
    /// evicted): free in the index, still set in the mirror until the
    /// commit.
    pub(crate) freed: Vec<u16>,
    /// Scan cursors to store (`meta` key → position), written by `finish`.
    pub(crate) cursor_writes: std::collections::BTreeMap<String, u64>,
    /// The transaction, for the tables opened only when needed (managed
    /// servers).
    pub(crate) wtx: &'t redb::WriteTransaction,
    /// Whether a managed-server table was written (the schema moves to
    /// the current version).
    pub(crate) servers_written: bool,
    /// The keys with a server definition, read on first need.
    pub(crate) defined: Option<std::collections::HashSet<String>>,
}

/// What a transaction leaves for after its commit: the handle's mirror is
/// brought to the new generation from it, and its claims are kept.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) before: Option<u64>,
    pub(crate) after: u64,
    pub(crate) rows: Vec<(String, Row)>,
    pub(crate) claims: Vec<Claim>,
}

impl<'t> Tx<'t> {
    pub(crate) fn new(wtx: &'t redb::WriteTransaction, reg: &'t Registry) -> Result<Self> {
        Ok(Tx {
            entries: wtx.open_table(ENTRIES).map_err(db_err)?,
            ports: wtx.open_table(PORTS).map_err(db_err)?,
            history: wtx.open_table(HISTORY).map_err(db_err)?,
            lru: wtx.open_table(LRU).map_err(db_err)?,
            meta: wtx.open_table(META).map_err(db_err)?,
            reg,
            now: now_ms(),
            evicted: Vec::new(),
            cursors: Vec::new(),
            claimed: std::collections::HashSet::new(),
            bitmaps: wtx.open_table(BITMAPS).map_err(db_err)?,
            rows: Rows::default(),
            generation: None,
            claims: Vec::new(),
            expired_once: false,
            freed: Vec::new(),
            cursor_writes: std::collections::BTreeMap::new(),
            wtx,
            servers_written: false,
            defined: None,
        })
        .and_then(|mut tx: Tx<'t>| {
            tx.generation = tx.meta.get(GENERATION_KEY).map_err(db_err)?.map(|v| v.value());
            Ok(tx)
        })
    }

    /// Records that `port` is held (or free) in the per-range rows.
    fn mark(&mut self, port: u16, held: bool) -> Result<()> {
        self.rows.mark(&self.bitmaps, &self.ports, &self.reg.config.ranges, port, held)
    }

    /// Brings the handle's mirror in line with the stored rows if another
    /// process (or another handle) committed since it was last synced.
    pub(crate) fn refresh_mirror(&mut self) -> Result<()> {
        let mirror = self.reg.mirror();
        let stored = self.generation.unwrap_or(0);
        if mirror.generation() != 0 && mirror.generation() == stored {
            return Ok(());
        }
        let first = mirror.generation() == 0;
        let rows = self.rows.all(&self.bitmaps, &self.ports, &self.reg.config.ranges)?;
        mirror.sync(rows, stored);
        if first {
            for (i, r) in self.reg.config.ranges.iter().enumerate() {
                let key = cursor_key(&r.name);
                if let Some(c) = self.meta.get(key.as_str()).map_err(db_err)? {
                    mirror.set_cursor(i, c.value() as usize);
                }
            }
        }
        Ok(())
    }

    /// Writes the rows back and moves to the next generation (and the
    /// current schema); the last step before the commit.
    pub(crate) fn finish(mut self) -> Result<Finished> {
        let after = next_generation(self.generation);
        for (key, at) in std::mem::take(&mut self.cursor_writes) {
            self.meta.insert(key.as_str(), at).map_err(db_err)?;
        }
        self.rows.flush(&mut self.bitmaps)?;
        self.meta.insert(GENERATION_KEY, after).map_err(db_err)?;
        // Only a schema-1 registry has no generation (every later one is
        // made with one): its first write upgrades it, building every
        // configured range's row.
        if self.generation.is_none() {
            self.rows.all(&self.bitmaps, &self.ports, &self.reg.config.ranges)?;
            self.rows.flush(&mut self.bitmaps)?;
            // Schema 2 unless a managed server is stored too (as for a
            // schema-2 registry below), so that portd versions that read
            // schema 2 still open it.
            let to = if self.servers_written { SCHEMA_VERSION } else { 2 };
            self.meta.insert(SCHEMA_KEY, to).map_err(db_err)?;
        } else if self.servers_written {
            // A schema-2 registry gets the managed-server tables with its
            // first server: older portd versions then refuse it.
            self.meta.insert(SCHEMA_KEY, SCHEMA_VERSION).map_err(db_err)?;
        }
        let rows = self.rows.take();
        Ok(Finished {
            before: self.generation,
            after,
            rows,
            claims: std::mem::take(&mut self.claims),
        })
    }

    pub(crate) fn entry(&self, key: &str) -> Result<Option<Entry>> {
        match self.entries.get(key).map_err(db_err)? {
            Some(v) => record::decode(key, v.value()).map(Some).map_err(decode_err),
            None => Ok(None),
        }
    }

    pub(crate) fn all_entries(&self) -> Result<Vec<Entry>> {
        collect_entries(&self.entries)
    }

    pub(crate) fn port_holder(&self, port: u16) -> Result<Option<String>> {
        Ok(self.ports.get(port).map_err(db_err)?.map(|k| k.value().to_owned()))
    }

    /// Writes `e`, replacing `old` (the same project's previous state).
    pub(crate) fn put(&mut self, e: &Entry, old: Option<&Entry>) -> Result<()> {
        if let Some(holder) = self.port_holder(e.port)?
            && holder != e.project
        {
            // The allocator never picks a held port; refuse rather than break
            // the one-port-one-entry invariant.
            return Err(Error::damaged(format!(
                "registry damaged: port {} indexed for `{holder}` while writing `{}`",
                e.port, e.project
            )));
        }
        if let Some(o) = old {
            if o.port != e.port {
                self.ports.remove(o.port).map_err(db_err)?;
                self.mark(o.port, false)?;
                self.freed.push(o.port);
            }
            if o.last_used_ms != e.last_used_ms {
                self.lru.remove((o.last_used_ms, o.project.as_str())).map_err(db_err)?;
            }
        }
        self.entries.insert(e.project.as_str(), record::encode(e).as_slice()).map_err(db_err)?;
        self.ports.insert(e.port, e.project.as_str()).map_err(db_err)?;
        self.mark(e.port, true)?;
        self.lru.insert((e.last_used_ms, e.project.as_str()), ()).map_err(db_err)?;
        self.history.insert(e.project.as_str(), e.port).map_err(db_err)?;
        Ok(())
    }

    /// Ends the lease on `e`: no owner, no child, used now (always later
    /// than its last use, as a touch is). It keeps its port.
    pub(crate) fn end_lease_of(&mut self, e: &Entry) -> Result<()> {
        let idle = Entry {
            owner: None,
            child_pid: None,
            last_used_ms: self.now.max(e.last_used_ms + 1),
            ..e.clone()
        };
        self.put(&idle, Some(e))
    }

    /// Sets (or, with `None`, deletes) `key`'s history row.
    pub(crate) fn set_history(&mut self, key: &str, port: Option<u16>) -> Result<()> {
        match port {
            Some(p) => self.history.insert(key, p).map_err(db_err).map(drop),
            None => self.history.remove(key).map_err(db_err).map(drop),
        }
    }

    pub(crate) fn remove(&mut self, e: &Entry) -> Result<()> {
        self.entries.remove(e.project.as_str()).map_err(db_err)?;
        self.ports.remove(e.port).map_err(db_err)?;
        self.mark(e.port, false)?;
        self.freed.push(e.port);
        self.lru.remove((e.last_used_ms, e.project.as_str())).map_err(db_err)?;
        Ok(())
    }

    /// Applies the touch log: each touched entry's `last_used` becomes
    /// the later of the two (and its `lru` row moves with it).
    pub(crate) fn fold(&mut self, touches: &std::collections::HashMap<String, u64>) -> Result<()> {
        for (key, &ms) in touches {
            if let Some(e) = self.entry(key)?
                && ms > e.last_used_ms
            {
                let next = Entry { last_used_ms: ms, ..e.clone() };
                self.put(&next, Some(&e))?;
            }
        }
        Ok(())
    }

    /// Drops idle entries unused for longer than `idle_ttl`.
    pub(crate) fn expire(&mut self) -> Result<Vec<Entry>> {
        let cutoff = self.now.saturating_sub(self.reg.config.idle_ttl.as_millis() as u64);
        let mut old = Vec::new();
        for row in self.lru.range::<(u64, &str)>(..(cutoff, "")).map_err(db_err)? {
            let (k, _) = row.map_err(db_err)?;
            old.push(k.value().1.to_owned());
        }
        let mut dropped = Vec::new();
        for key in old {
            if let Some(e) = self.entry(&key)?
                && State::of(&e) == State::Idle
                // A managed server's port stays while it is defined.
                && !self.is_defined(&key)?
                // In a shared registry, only its user (or root) drops it.
                && guard(&e, "expire").is_ok()
            {
                self.remove(&e)?;
                dropped.push(e);
            }
        }
        Ok(dropped)
    }
}

/// The `meta` key of range `name`'s scan cursor.
pub(crate) fn cursor_key(name: &str) -> String {
    format!("cursor:{name}")
}
