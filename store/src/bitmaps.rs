//! The persisted per-range bitmaps: one row per named range in the
//! `bitmaps` table, bit `i` set when port `start + i` is held by an entry.
//!
//! A row is kept in the same write transaction as the `ports` index
//! ([`Rows::mark`] on every insert and removal, [`Rows::flush`] before the
//! commit), so after any commit the two agree; `doctor` checks that they do
//! ([`disagreements`]) and `--repair` rebuilds the file, rows included. A
//! row whose bounds differ from the configured range of that name (the
//! configuration changed), or that is missing (a registry written before
//! the rows existed), is rebuilt from the index when a write transaction
//! first needs it; rows of names no longer configured are dropped then, so
//! no row is ever left unmaintained.
//!
//! Row layout: `start: u16 LE`, `end: u16 LE`, then the bits as
//! little-endian `u64` words.

use crate::db::db_err;
use crate::error::Result;
use portd_core::Ranges;
use redb::{ReadableTable, Table};

/// One range's occupancy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) start: u16,
    pub(crate) end: u16,
    pub(crate) words: Vec<u64>,
}

impl Row {
    fn empty(start: u16, end: u16) -> Row {
        let len = usize::from(end - start) + 1;
        Row { start, end, words: vec![0; len.div_ceil(64)] }
    }

    pub(crate) fn contains(&self, port: u16) -> bool {
        (self.start..=self.end).contains(&port)
    }

    fn set(&mut self, port: u16, held: bool) {
        let i = usize::from(port - self.start);
        let mask = 1u64 << (i % 64);
        if held {
            self.words[i / 64] |= mask;
        } else {
            self.words[i / 64] &= !mask;
        }
    }

    /// Whether `port` is marked held.
    pub(crate) fn holds(&self, port: u16) -> bool {
        let i = usize::from(port - self.start);
        self.words[i / 64] & (1u64 << (i % 64)) != 0
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.words.len() * 8);
        out.extend_from_slice(&self.start.to_le_bytes());
        out.extend_from_slice(&self.end.to_le_bytes());
        for w in &self.words {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Decodes a row; `None` when its length does not match its bounds.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Row> {
        let start = u16::from_le_bytes(bytes.get(0..2)?.try_into().ok()?);
        let end = u16::from_le_bytes(bytes.get(2..4)?.try_into().ok()?);
        if end < start {
            return None;
        }
        let mut row = Row::empty(start, end);
        let body = &bytes[4..];
        if body.len() != row.words.len() * 8 {
            return None;
        }
        for (w, b) in row.words.iter_mut().zip(body.chunks_exact(8)) {
            *w = u64::from_le_bytes(b.try_into().ok()?);
        }
        // Bits past `end` are never set.
        let len = usize::from(end - start) + 1;
        if len % 64 != 0 && row.words.last().is_some_and(|w| w >> (len % 64) != 0) {
            return None;
        }
        Some(row)
    }

    /// The row `ports` implies for `start..=end`.
    pub(crate) fn from_index(
        ports: &impl ReadableTable<u16, &'static str>,
        start: u16,
        end: u16,
    ) -> Result<Row> {
        let mut row = Row::empty(start, end);
        for item in ports.range(start..=end).map_err(db_err)? {
            let (port, _) = item.map_err(db_err)?;
            row.set(port.value(), true);
        }
        Ok(row)
    }
}

/// The rows of one write transaction: read when first needed, changed in
/// memory, written back by [`Rows::flush`].
#[derive(Debug, Default)]
pub(crate) struct Rows {
    /// `None` until loaded; then every row of the table, by range name.
    loaded: Option<Vec<(String, Row)>>,
    dirty: bool,
}

impl Rows {
    /// Loads the rows, rebuilding those `ranges` need (missing, or of other
    /// bounds) and dropping those of names not in `ranges`.
    fn load(
        &mut self,
        table: &Table<'_, &'static str, &'static [u8]>,
        ports: &Table<'_, u16, &'static str>,
        ranges: &Ranges,
    ) -> Result<&mut Vec<(String, Row)>> {
        if self.loaded.is_none() {
            let mut rows = Vec::new();
            for r in ranges.iter() {
                let stored = table
                    .get(r.name.as_str())
                    .map_err(db_err)?
                    .and_then(|v| Row::decode(v.value()))
                    .filter(|row| row.start == r.start && row.end == r.end);
                let row = match stored {
                    Some(row) => row,
                    None => {
                        self.dirty = true;
                        Row::from_index(ports, r.start, r.end)?
                    }
                };
                rows.push((r.name.clone(), row));
            }
            let mut names = Vec::new();
            for item in table.iter().map_err(db_err)? {
                names.push(item.map_err(db_err)?.0.value().to_owned());
            }
            if names.iter().any(|n| !ranges.iter().any(|r| r.name == *n)) {
                self.dirty = true;
            }
            self.loaded = Some(rows);
        }
        Ok(self.loaded.as_mut().expect("loaded above"))
    }

    /// The current rows (loading them first).
    pub(crate) fn all(
        &mut self,
        table: &Table<'_, &'static str, &'static [u8]>,
        ports: &Table<'_, u16, &'static str>,
        ranges: &Ranges,
    ) -> Result<&[(String, Row)]> {
        Ok(self.load(table, ports, ranges)?.as_slice())
    }

    /// Records that `port` is now held (or free) in the index.
    pub(crate) fn mark(
        &mut self,
        table: &Table<'_, &'static str, &'static [u8]>,
        ports: &Table<'_, u16, &'static str>,
        ranges: &Ranges,
        port: u16,
        held: bool,
    ) -> Result<()> {
        let rows = self.load(table, ports, ranges)?;
        if let Some((_, row)) = rows.iter_mut().find(|(_, row)| row.contains(port))
            && row.holds(port) != held
        {
            row.set(port, held);
            self.dirty = true;
        }
        Ok(())
    }

    /// The rows as last changed (empty when never loaded).
    pub(crate) fn take(&mut self) -> Vec<(String, Row)> {
        self.loaded.take().unwrap_or_default()
    }

    /// Writes the rows back (only when changed), replacing the table's
    /// contents.
    pub(crate) fn flush(
        &mut self,
        table: &mut Table<'_, &'static str, &'static [u8]>,
    ) -> Result<()> {
        let Some(rows) = self.loaded.as_ref().filter(|_| self.dirty) else {
            return Ok(());
        };
        let mut stale = Vec::new();
        for item in table.iter().map_err(db_err)? {
            let name = item.map_err(db_err)?.0.value().to_owned();
            if !rows.iter().any(|(n, _)| *n == name) {
                stale.push(name);
            }
        }
        for name in stale {
            table.remove(name.as_str()).map_err(db_err)?;
        }
        for (name, row) in rows {
            table.insert(name.as_str(), row.encode().as_slice()).map_err(db_err)?;
        }
        self.dirty = false;
        Ok(())
    }
}

/// Where the stored rows disagree with the `ports` index, one line each
/// (empty: they agree). A row is compared within its own bounds; a row that
/// cannot be decoded is a disagreement.
pub(crate) fn disagreements(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    ports: &impl ReadableTable<u16, &'static str>,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for item in table.iter().map_err(db_err)? {
        let (name, bytes) = item.map_err(db_err)?;
        let name = name.value();
        let Some(row) = Row::decode(bytes.value()) else {
            out.push(format!("bitmap of range `{name}` cannot be read"));
            continue;
        };
        let want = Row::from_index(ports, row.start, row.end)?;
        for port in row.start..=row.end {
            match (row.holds(port), want.holds(port)) {
                (true, false) => out.push(format!(
                    "bitmap of range `{name}` marks port {port} held; no entry has it"
                )),
                (false, true) => out.push(format!(
                    "bitmap of range `{name}` marks port {port} free; an entry holds it"
                )),
                _ => {}
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_round_trips_and_rejects_bad_lengths() {
        let mut row = Row::empty(4000, 4099);
        row.set(4000, true);
        row.set(4099, true);
        row.set(4064, true);
        let bytes = row.encode();
        assert_eq!(Row::decode(&bytes), Some(row.clone()));
        assert_eq!(Row::decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(Row::decode(&[0, 0]), None);
        // A bit past the end is refused.
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] |= 0x80;
        assert_eq!(Row::decode(&bad), None);
        row.set(4064, false);
        assert!(!row.holds(4064) && row.holds(4099));
    }
}
