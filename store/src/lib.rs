//! The portd registry: which project holds which port, shared safely by any
//! number of concurrent processes and surviving crashes.
//!
//! Leases live in one redb file. Every operation takes `registry.lock`,
//! opens the file, runs one write (or read) transaction and closes it
//! (concurrent calls of one handle share one open of the file and one
//! transaction per batch, see [`Registry`]); no daemon exists. The
//! background threads are the one [`Registry::spawn`] starts to fork from
//! (see [`LeasedChild`]) and the short-lived helpers that probe a large
//! batch ([`Registry::get_many`], [`Registry::acquire_many`],
//! [`Registry::lease_many`]) in parallel. Dead owners are reclaimed on
//! demand, when an allocation needs their port or `cleanup` asks.
//!
//! Each range's occupancy is a bitmap kept in the registry with its port
//! index, and mirrored in memory by each handle: concurrent callers claim
//! candidate ports in it without a lock and probe them in their own
//! threads, and one of them commits the batch.
//!
//! [`Registry`] is `Send + Sync`: one handle may serve many threads, and
//! concurrent calls on it share write transactions. An existing project
//! keeps its port without a probe ([`Registry::get_with`] says what is
//! checked); [`Allocation::foreign_listener`] tells whether another process
//! listens on it.
//!
//! ```
//! use portd_store::{Config, Owner, Registry};
//! # let dir = tempfile::tempdir().unwrap();
//! # let dir = dir.path().join("portd");
//! let reg = Registry::open(&dir, Config::default())?;
//! let port = reg.get("myapp")?;
//! assert_eq!(reg.get("myapp")?, port); // stable
//! let ports = reg.get_many(&["api", "web", "worker"])?;
//! assert!(!ports.contains(&port)); // unique
//! let lease = reg.acquire("worker-17", Owner::this_process())?;
//! assert!(lease.entry.owner.is_some());
//! reg.release("myapp")?;
//! # Ok::<(), portd_store::Error>(())
//! ```
//!
//! A launcher: lease ports for several services in one transaction, bind
//! them on loopback (no window in which another process takes a port), run
//! a server on one, and give every port back when the leases are dropped —
//! on success, on an early `?` return, or in a panic.
//!
//! ```
//! use portd_store::{Config, GetOptions, Project, Registry};
//!
//! # let dir = tempfile::tempdir().unwrap();
//! # let dir = dir.path().join("portd");
//! let reg = Registry::open(&dir, Config::default())?;
//! {
//!     // Every name leased to this process, or none (one write transaction).
//!     let leases = reg.lease_many(&["api", "web", "worker"])?;
//!     // A port taken by some other program after all fails here, and the
//!     // `?` drops the leases: nothing stays allocated.
//!     let listeners = leases.bind_tcp()?;
//!     // Serve `api` and `web` in this process from their listeners...
//!     assert_eq!(listeners[0].local_addr()?.port(), leases.ports()[0]);
//!     // ...and run `worker` as a child on its port (`{port}`, `$PORT`): the
//!     // child binds it itself, so this process lets its socket go first.
//!     drop(listeners);
//!     let worker = Project::name("worker")?;
//!     let argv = ["sh", "-c", r#"test "$PORT" = "$1""#, "sh", "{port}"];
//!     let child = reg.spawn(&worker, &argv, &GetOptions::default())?;
//!     assert_eq!(child.port(), leases.ports()[2]);
//!     assert!(child.wait()?.success());
//! } // the leases are dropped: the entries still leased are released
//! // `spawn` leased `worker` to its child, whose exit ended that lease: the
//! // entry stays, idle, on its port, until it is released.
//! let left: Vec<String> = reg.list()?.into_iter().map(|l| l.entry.project).collect();
//! assert_eq!(left, ["worker"]);
//! reg.release("worker")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`Registry::acquire_many`] is the same without the release on drop;
//! [`Registry::get_with`] and [`GetOptions`] ask for a range, an exact port,
//! a lease, a free port; [`Registry::end_lease`] ends a lease and keeps the
//! entry; [`Registry::spawn`] runs a command on a project's port under a
//! lease.

#![forbid(unsafe_code)]

mod allocation;
mod bitmaps;
mod candidate;
mod commit;
mod config;
mod db;
pub mod definition;
pub mod doctor;
mod error;
pub mod events;
mod home;
mod leases;
mod listing;
mod lock;
mod mirror;
mod ownership;
mod policy;
mod project;
mod record;
mod registry;
mod reset;
pub mod server_state;
mod servers;
mod spawn;
pub mod supervisor;
mod touch;
mod tx;

pub use allocation::{Allocation, GetOptions, MoveReason};
pub use config::{Config, Source, format_duration, parse_duration, parse_port, parse_port_span};
pub use db::SCHEMA_VERSION;
pub use error::{Error, ErrorKind, Result};
pub use home::{LOCK_FILE, REGISTRY_FILE, default_home};
pub use leases::Leases;
pub use listing::{CleanupReport, Listed, RangeStatus, State, Status, age};
pub use ownership::{Binder, Binding, PortReport, binding, busy_error, is_own};
pub use portd_core::sys::Holder;
pub use portd_core::{Excluded, Liveness, Owner, PortRange, Ranges};
pub use project::{Matches, Project};
pub use record::{Entry, RELAY_SUFFIX, display_name, shown_names};
pub use registry::{Registry, now_ms};
pub use reset::RESET_BACKUPS_KEPT;
pub use servers::{Defined, ServerLease};
pub use spawn::{CommandLease, LeasedChild, with_port};
pub use touch::TOUCH_FILE;

// What the checks behind the fuzz targets (the `portd-testkit` crate)
// reach below the API: not a stable API.
#[doc(hidden)]
pub use config::{DEFAULT_PROXY_PORT, IDLE_TTL_BOUNDS, LOCK_TIMEOUT_BOUNDS};
#[doc(hidden)]
pub use record::{decode as decode_record, encode as encode_record, valid_key};
