//! Managed dev servers: the background side of `portd start`.
//!
//! A managed server is a project with a stored definition (command,
//! directory, environment, policies). `portd start` runs it detached under
//! its own supervisor, which holds the lease, writes the log, checks
//! health, restarts under the policy, and (on demand) holds the listening
//! socket while no server runs.
#![forbid(unsafe_code)]

pub mod backoff;
pub mod client;
pub mod elsewhere;
pub mod health;
pub mod hosts;
pub mod inject;
pub mod json;
pub mod logs;
pub mod package_json;
pub mod proxy_instance;
pub mod refs;
pub mod relay;
pub mod serve;
