//! Host names and projects: which `NAME.localhost` label each project
//! answers to, and what a request's `Host` header asks for. The rules live
//! in [`portd_serve::hosts`], shared with `portd url`.

pub use portd_serve::hosts::*;
