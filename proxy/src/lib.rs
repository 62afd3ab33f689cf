//! portd's proxy: `http://NAME.localhost:P/` for every project, and a live
//! dashboard of them all at `http://portd.localhost:P/`.
//!
//! This is the only async code of portd (hyper on a current-thread tokio
//! runtime); the `portd` binary links none of it.
#![forbid(unsafe_code)]

pub mod dashboard;
