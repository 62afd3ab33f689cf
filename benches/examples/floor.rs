//! The floor `benches/cli.sh` compares `portd get NEW` with: a minimal
//! redb allocator. One allocation opens the redb file, picks the lowest
//! port of its range not in the `ports` table, probes it with a bind
//! (`[::]`, then `0.0.0.0`, no `SO_REUSEADDR`; a busy port moves on to the
//! next), commits one durable write transaction (`ports`: port → name,
//! `names`: name → port) and closes the file. An existing name is answered
//! from `names` in the same transaction.
//!
//! `floor --one NAME --db PATH` does one allocation, prints its port and
//! exits (one process per allocation, as the CLI runs);
//! `floor --count N` does N allocations in one process, one open and close
//! each, on a fresh file, and prints `floor count=N ms=X per_alloc_ms=Y`.

use portd_benches::{err, out, value};
use redb::{Database, ReadableTable, TableDefinition};
use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

const PORTS: TableDefinition<u16, &str> = TableDefinition::new("ports");
const NAMES: TableDefinition<&str, u16> = TableDefinition::new("names");
const FIRST: u16 = 20000;
const LAST: u16 = 59999;

fn free(port: u16) -> bool {
    let v6 = TcpListener::bind((Ipv6Addr::UNSPECIFIED, port));
    match v6 {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => false,
        // No IPv6 here: the IPv4 wildcard decides.
        Err(_) => TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok(),
    }
}

fn allocate(db: &Path, name: &str) -> Result<u16, Box<dyn std::error::Error>> {
    let db = Database::create(db)?;
    let tx = db.begin_write()?;
    let port = {
        let mut names = tx.open_table(NAMES)?;
        let mut ports = tx.open_table(PORTS)?;
        let existing = names.get(name)?.map(|p| p.value());
        match existing {
            Some(p) => p,
            None => {
                let mut candidate = FIRST;
                loop {
                    if ports.get(candidate)?.is_none() && free(candidate) {
                        break;
                    }
                    candidate =
                        candidate.checked_add(1).filter(|&c| c <= LAST).ok_or("no free port")?;
                }
                ports.insert(candidate, name)?;
                names.insert(name, candidate)?;
                candidate
            }
        }
    };
    tx.commit()?;
    db.close()?;
    Ok(port)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let usage = || {
        err("usage: floor --one NAME --db PATH | floor --count N");
        ExitCode::from(2)
    };
    if let Some(name) = value(&args, "--one") {
        let Some(db) = value(&args, "--db") else { return usage() };
        return match allocate(Path::new(db), name) {
            Ok(port) => {
                out(&format!("{port}"));
                ExitCode::SUCCESS
            }
            Err(e) => {
                err(&format!("error: {e}"));
                ExitCode::FAILURE
            }
        };
    }
    let Some(count) = value(&args, "--count").and_then(|v| v.parse::<usize>().ok()) else {
        return usage();
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("floor.redb");
    let start = Instant::now();
    let mut ports = std::collections::HashSet::new();
    for i in 0..count {
        ports.insert(allocate(&db, &format!("f{i}")).expect("allocate"));
    }
    let ms = start.elapsed().as_secs_f64() * 1e3;
    assert_eq!(ports.len(), count, "a port was handed out twice");
    out(&format!("floor count={count} ms={ms:.1} per_alloc_ms={:.3}", ms / count.max(1) as f64));
    ExitCode::SUCCESS
}
