//! The allocator of portd: everything needed to pick a really-free port,
//! and nothing that stores one.
//!
//! - [`AtomicBitmap`]: a lock-free bit set that each thread searches from a
//!   stripe of its own; one per port range mirrors, inside a process, which
//!   ports are taken.
//! - [`Ranges`] / [`PortRange`]: validated, named port intervals.
//! - [`Exclusions`]: ports never handed out, and why.
//! - [`probe`] / [`probe_all`]: the OS check that a server can bind a port
//!   now, for one port or, in parallel, for a batch.
//! - [`Owner`]: a lease holder and whether it is still alive.
//! - [`Handoff`]: group commit, many threads' requests and one committer
//!   at a time.
//! - [`validate_name`] / [`preferred_offset`]: project names and their stable
//!   preferred port.
//!
//! ```
//! use portd_core::{AtomicBitmap, Ranges, preferred_offset};
//! let ranges = Ranges::defaults();
//! let primary = ranges.by_name("primary").unwrap();
//! let bits = AtomicBitmap::new(primary.len());
//! let off = preferred_offset("myapp", primary.len());
//! assert!(bits.claim(off));
//! assert!(!bits.claim(off)); // a second claim of the same port fails
//! assert!(primary.contains(primary.port_at(off)));
//! ```

mod bitmap;
mod exclude;
mod handoff;
mod owner;
mod probe;
mod project;
mod range;
mod rate;
mod sync;
pub mod sys;

pub use bitmap::AtomicBitmap;
pub use exclude::{BROWSER_BAD_PORTS, Excluded, Exclusions, WELL_KNOWN, parse_port_list};
pub use handoff::{Handoff, Leader, Panicked};
pub use owner::{Liveness, Owner};
pub use probe::{ProbeOptions, Verdict, bind_listener_on, bind_loopback, probe, probe_all};
pub use project::{MAX_NAME_LEN, NameError, preferred_offset, stable_hash, validate_name};
pub use range::{PortRange, RangeError, Ranges, valid_range_name};
pub use rate::RateWindow;
