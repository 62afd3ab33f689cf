//! The checks of single inputs: a stored record, a config file, a project
//! name, a command-line value.

use portd_core::{MAX_NAME_LEN, PortRange, validate_name};
use portd_store::server_state::{self, Phase};
use portd_store::{
    Config, ErrorKind, IDLE_TTL_BOUNDS, LOCK_TIMEOUT_BOUNDS, Project, decode_record as decode,
    display_name, encode_record as encode, format_duration, parse_duration, parse_port,
    parse_port_span, valid_key,
};
use portd_store::{definition, events};
use std::path::Path;

/// Decodes `bytes` as the record of `key`; must never panic, whatever the
/// bytes. The record target meters this call's allocations.
pub fn decode_record(key: &str, bytes: &[u8]) -> bool {
    decode(key, bytes).is_ok()
}

/// Arbitrary bytes as a stored record: decoding fails cleanly or gives an
/// entry that encodes back to itself, in no more bytes than were read
/// (postcard's encoding is the shortest one); a malformed key always fails.
pub fn record(bytes: &[u8]) {
    if let Ok(e) = decode("myapp", bytes) {
        let again = encode(&e);
        assert_eq!(decode("myapp", &again).as_ref(), Ok(&e), "re-encoding changed it");
        assert!(again.len() <= bytes.len(), "{} bytes re-encode to {}", bytes.len(), again.len());
        assert_eq!(e.project, "myapp");
        assert_ne!(e.port, 0);
    }
    assert!(decode("not a key", bytes).is_err(), "an invalid key was accepted");
}

/// Decodes `bytes` as a managed server's definition, state or event
/// (`which`); must never panic, whatever the bytes. The server record
/// targets meter this call's allocations.
pub fn decode_server_record(which: ServerRecord, bytes: &[u8]) -> bool {
    match which {
        ServerRecord::Definition => definition::decode("myapp", bytes).is_ok(),
        ServerRecord::State => server_state::decode("myapp", bytes).is_ok(),
        ServerRecord::Event => events::decode(1, bytes).is_ok(),
    }
}

/// The records of managed servers, each with its own decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerRecord {
    /// A definition (`servers` table).
    Definition,
    /// A supervisor's recorded state (`server_state` table).
    State,
    /// An event (`events` table).
    Event,
}

/// Arbitrary bytes as a stored server definition: decoding fails cleanly
/// or gives a definition with a command and an absolute directory that
/// encodes back to itself, in no more bytes than were read.
pub fn definition(bytes: &[u8]) {
    if let Ok(d) = definition::decode("myapp", bytes) {
        let again = definition::encode(&d);
        assert_eq!(definition::decode("myapp", &again).as_ref(), Ok(&d), "re-encoding changed it");
        assert!(again.len() <= bytes.len(), "{} bytes re-encode to {}", bytes.len(), again.len());
        assert!(!d.argv.is_empty() && d.dir.starts_with('/'), "{d:?}");
        assert!(bytes.len() <= definition::MAX_DEFINITION + 1, "{} bytes accepted", bytes.len());
    }
}

/// Arbitrary bytes as a stored server state: decoding fails cleanly or
/// gives a state that encodes back to itself (so nothing in it is cut by
/// encoding), in no more bytes than were read, whose pids can be signalled
/// safely (never 0, never negative as a `pid_t`).
pub fn server_state(bytes: &[u8]) {
    if let Ok(s) = server_state::decode("myapp", bytes) {
        let again = server_state::encode(&s);
        assert_eq!(
            server_state::decode("myapp", &again).as_ref(),
            Ok(&s),
            "re-encoding changed it"
        );
        assert!(again.len() <= bytes.len(), "{} bytes re-encode to {}", bytes.len(), again.len());
        let pids = s.supervisor.map(|o| o.pid).into_iter().chain(s.command_pid);
        for pid in pids {
            assert!(pid != 0 && i32::try_from(pid).is_ok(), "pid {pid} accepted");
        }
        // Reading it as it really is never fails either.
        let shown = s.effective();
        assert!(shown.phase == s.phase || shown.phase == Phase::Stopped, "{s:?} -> {shown:?}");
    }
}

/// Arbitrary bytes as a stored event: decoding fails cleanly or gives an
/// event of a well-formed project key that encodes back to itself, in no
/// more bytes than were read, and reads as one line.
pub fn event(bytes: &[u8]) {
    if let Ok(e) = events::decode(7, bytes) {
        let again = events::encode(&e);
        assert_eq!(events::decode(7, &again).as_ref(), Ok(&e), "re-encoding changed it");
        assert!(again.len() <= bytes.len(), "{} bytes re-encode to {}", bytes.len(), again.len());
        assert!(valid_key(&e.project), "{e:?}");
        let _ = e.to_string();
        assert!(!e.kind.name().is_empty());
    }
}

/// Arbitrary text as a config file. Accepted: valid ranges (non-empty,
/// disjoint, in 1–65535, one with `fallback`), valid exclusions, durations
/// that round-trip. Refused: a configuration error on one line that names
/// the file and a line that exists.
pub fn config(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    let mut c = Config::default();
    match c.apply_file(Path::new("fuzz.toml"), text) {
        Ok(()) => {
            let ranges: Vec<&PortRange> = c.ranges.iter().collect();
            assert!(ranges.iter().any(|r| r.fallback), "no fallback range: {ranges:?}");
            for (i, r) in ranges.iter().enumerate() {
                assert!(r.start >= 1 && r.start <= r.end, "bad range {r:?}");
                assert!(portd_core::valid_range_name(&r.name), "bad range name {r:?}");
                for o in &ranges[..i] {
                    assert!(o.name != r.name && (o.end < r.start || r.end < o.start), "{o} {r}");
                }
            }
            for &(a, b) in &c.exclude {
                assert!(a >= 1 && a <= b, "bad exclusion {a}-{b}");
            }
            for d in [c.idle_ttl, c.lock_timeout] {
                assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{d:?} does not round-trip");
            }
            let within = |d, (lo, hi)| lo <= d && d <= hi;
            assert!(within(c.idle_ttl, IDLE_TTL_BOUNDS), "{:?}", c.idle_ttl);
            assert!(within(c.lock_timeout, LOCK_TIMEOUT_BOUNDS), "{:?}", c.lock_timeout);
            assert!(
                c.allow_privileged || ranges.iter().all(|r| r.start >= 1024),
                "a privileged range without allow_privileged: {ranges:?}"
            );
        }
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Config, "{e}");
            let m = e.message();
            assert!(!m.contains(['\n', '\r']), "a message on more than one line: {m:?}");
            assert!(m.contains("`fuzz.toml`"), "the file is not named: {m:?}");
            if let Some(rest) = m.split(" line ").nth(1) {
                let n: usize = rest.split(':').next().unwrap_or("").parse().unwrap_or(0);
                let lines = text.matches('\n').count() + 1;
                assert!((1..=lines).contains(&n), "line {n} of {lines}: {m:?}");
            }
        }
    }
}

/// Arbitrary text as a project name: accepted exactly when it is 1–128
/// characters of `[A-Za-z0-9._:-]` starting alphanumeric, the same way by
/// every entry point; a refusal is a one-line usage error.
pub fn project_name(bytes: &[u8]) {
    let Ok(name) = std::str::from_utf8(bytes) else { return };
    let documented = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b".:_-".contains(&b));
    assert_eq!(validate_name(name).is_ok(), documented, "validate_name({name:?})");
    match Project::name(name) {
        Ok(p) => {
            assert!(documented, "{name:?} accepted");
            assert_eq!(p.key(), name);
            assert_eq!(p.display(), name);
            assert_eq!(display_name(name), name);
            assert!(valid_key(name));
            assert_eq!(Project::from_key(name).as_ref(), Ok(&p));
        }
        Err(e) => {
            assert!(!documented, "{name:?} refused: {e}");
            assert_eq!(e.kind(), ErrorKind::Usage);
            assert!(!e.message().contains(['\n', '\r']), "{:?}", e.message());
            // A managed server's relay entry (`NAME@relay`) is a key that
            // is no name.
            let relay = name.strip_suffix("@relay").is_some_and(|n| Project::name(n).is_ok());
            if !name.starts_with('/') && !relay {
                assert!(!valid_key(name) && Project::from_key(name).is_err(), "{name:?}");
            }
            if relay {
                assert!(valid_key(name) && Project::from_key(name).is_ok(), "{name:?}");
            }
        }
    }
}

/// Arbitrary text as a command-line value: `--port`, an `exclude` span, a
/// duration, and a `run` argument with `{port}` in it.
pub fn arguments(bytes: &[u8]) {
    let Ok(s) = std::str::from_utf8(bytes) else { return };
    let port = parse_port(s);
    if let Ok(p) = port {
        assert_ne!(p, 0);
        assert_eq!(parse_port(&p.to_string()), Ok(p));
        assert_eq!(s.trim().trim_start_matches('+').trim_start_matches('0'), p.to_string());
    }
    match parse_port_span(s) {
        Ok((a, b)) => {
            assert!(a >= 1 && a <= b, "{s:?} gave {a}-{b}");
            assert_eq!(parse_port_span(&format!("{a}-{b}")), Ok((a, b)));
            if !s.contains('-') {
                assert_eq!(port, Ok(a), "{s:?} as a port and as a span");
                assert_eq!(a, b, "{s:?} is one port");
            }
        }
        Err(_) => {
            if !s.contains('-') {
                assert!(port.is_err(), "{s:?} is a port but not a span");
            }
        }
    }
    if let Ok(d) = parse_duration(s) {
        assert!(d.as_millis() <= 100 * 365 * 86_400_000, "{s:?} gave {d:?}");
        let written = format_duration(d);
        assert_eq!(parse_duration(&written), Ok(d), "{s:?} -> {written:?}");
        assert_eq!(format_duration(parse_duration(&written).unwrap_or_default()), written);
    }
    let p = port.unwrap_or(4321);
    let arg = portd_store::with_port(s, p);
    assert!(!arg.contains("{port}"), "{s:?} -> {arg:?}");
    assert_eq!(arg == s, !s.contains("{port}"), "{s:?} -> {arg:?}");
}
