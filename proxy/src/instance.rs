//! One proxy per registry: `proxy.lock` and `proxy.json`. The protocol
//! lives in [`portd_serve::proxy_instance`], shared with `portd proxy
//! status` and `portd url`, which read it without linking the proxy.

pub use portd_serve::proxy_instance::*;
