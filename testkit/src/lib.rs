//! The checks behind portd's fuzz targets (`fuzz/`), in one place so that
//! the targets and the test that replays their saved corpus
//! (`testkit/tests/fuzz_corpus.rs`) run the very same code. Test support,
//! not published and not a stable API; the library itself carries none of
//! it.
//!
//! Each check takes arbitrary bytes, feeds them to the code under test and
//! panics when a property fails:
//! - [`record`]: bytes as a stored record decode or fail cleanly, and what
//!   decodes re-encodes to the same entry ([`alloc_meter::check_record`]
//!   also bounds what decoding allocates);
//! - [`definition`], [`server_state`], [`event`]: bytes as a managed
//!   server's stored record decode or fail cleanly, and what decodes
//!   re-encodes to the same value
//!   ([`alloc_meter::check_server_record`] also bounds what decoding
//!   allocates);
//! - [`config`]: text as a config file is accepted only when valid, and is
//!   otherwise refused with a one-line message;
//! - [`project_name`]: text as a project name is accepted exactly when it
//!   has the documented form;
//! - [`arguments`]: text as a port, a port span, a duration or a command
//!   argument with `{port}` parses only to values in range that round-trip;
//! - [`http_requests`]: bytes as what a client sends through the relay,
//!   and as a pipeline of requests: the request counter finds exactly the
//!   requests, however the bytes are split into reads;
//! - [`registry`]: bytes as a sequence of operations on a real registry,
//!   compared with a plain model, and checked by `portd doctor`'s own
//!   examination, after every step.
//!
//! A failing check is a bug in portd or in the check: never a reason to
//! weaken the check.

pub mod alloc_meter;
mod http;
mod inputs;
mod model;

pub use http::http_requests;
pub use inputs::{
    ServerRecord, arguments, config, decode_record, decode_server_record, definition, event,
    project_name, record, server_state,
};
pub use model::{MAX_OPS, registry};
