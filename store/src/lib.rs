//! The portd registry: which project holds which port, shared safely by any
//! number of concurrent processes and surviving crashes.
//!
//! Leases live in one redb file. Every operation takes `registry.lock`,
//! opens the file, runs one write (or read) transaction and closes it; no
//! daemon exists, and the only background thread is the one
//! [`Registry::spawn`] starts to fork from (see [`LeasedChild`]). Dead
//! owners are reclaimed on demand, when an allocation needs their port or
//! `cleanup` asks.
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

#![forbid(unsafe_code)]

mod config;
mod db;
pub mod doctor;
mod error;
mod group;
mod home;
mod lock;
mod ownership;
mod record;
mod registry;
mod spawn;
pub mod supervisor;
mod touch;

pub use config::{Config, Source, format_duration, parse_duration, parse_port, parse_port_span};
pub use db::SCHEMA_VERSION;
pub use error::{Error, ErrorKind, Result};
pub use home::{LOCK_FILE, REGISTRY_FILE, default_home};
pub use ownership::{Binder, Binding, PortReport, binding, bound_by_other, busy_error, is_own};
pub use portd_core::sys::Holder;
pub use portd_core::{Excluded, Liveness, Owner, PortRange, Ranges};
pub use record::{Entry, display_name, shown_names};
pub use registry::{
    Allocation, CleanupReport, GetOptions, Listed, Matches, MoveReason, Project,
    RESET_BACKUPS_KEPT, RangeStatus, Registry, State, Status, age,
};
pub use spawn::{LeasedChild, lease_env, with_port};
pub use touch::TOUCH_FILE;

/// The checks behind the fuzz targets in `fuzz/`; not a stable API.
#[doc(hidden)]
pub mod fuzzing;
