//! Integration tests of the `portd` binary, all in one test binary.
//!
//! Each test gets its own temporary directory, used as `PORTD_HOME` (its
//! `home/` subdirectory) and as `XDG_CONFIG_HOME`, and runs `portd` with an
//! otherwise empty environment, so that nothing of the user's setup leaks
//! in. Every run is checked for its exit code, stdout and stderr together;
//! `--json` output is parsed into the typed structs of `util` first.
//!
//! Ports are machine-wide while registries are per test, so tests that bind
//! listeners use project names of their own, and ranges of their own where
//! they need every port of a range.

#[path = "cli/util.rs"]
mod util;

#[path = "cli/bad_input.rs"]
mod bad_input;
#[path = "cli/basics.rs"]
mod basics;
#[path = "cli/busy.rs"]
mod busy;
#[path = "cli/completions.rs"]
mod completions;
#[path = "cli/concurrency.rs"]
mod concurrency;
#[path = "cli/config.rs"]
mod config;
#[path = "cli/damaged.rs"]
mod damaged;
#[path = "cli/doctor.rs"]
mod doctor;
#[path = "cli/exhaustion.rs"]
mod exhaustion;
#[path = "cli/faults.rs"]
mod faults;
#[path = "cli/inject.rs"]
mod inject;
#[path = "cli/job_control.rs"]
mod job_control;
#[path = "cli/os_truth.rs"]
mod os_truth;
#[path = "cli/ownership.rs"]
mod ownership;
#[path = "cli/pins.rs"]
mod pins;
#[path = "cli/proxy.rs"]
mod proxy;
#[path = "cli/proxy_faults.rs"]
mod proxy_faults;
#[path = "cli/pty.rs"]
mod pty;
#[path = "cli/run.rs"]
mod run;
#[path = "cli/semantics.rs"]
mod semantics;
#[path = "cli/servers.rs"]
mod servers;
#[path = "cli/servers_faults.rs"]
mod servers_faults;
#[path = "cli/servers_more.rs"]
mod servers_more;
#[path = "cli/servers_pty.rs"]
mod servers_pty;
#[path = "cli/servers_readme.rs"]
mod servers_readme;
#[path = "cli/servers_relay.rs"]
mod servers_relay;
#[path = "cli/shared.rs"]
mod shared;
#[path = "cli/upgrade.rs"]
mod upgrade;
