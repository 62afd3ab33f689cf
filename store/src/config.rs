//! Configuration: built-in defaults, the TOML file, the environment, and
//! where each effective value came from.
//!
//! Precedence: command-line flags (applied by the caller through the
//! setters) > environment > file > defaults. Every problem names its source
//! (file and line, or variable) and the key.

use crate::error::{Error, Result};
use portd_core::{PortRange, Ranges};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Built in.
    Default,
    /// The config file at this path.
    File(PathBuf),
    /// This environment variable.
    Env(&'static str),
    /// A command-line flag.
    Flag(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env(v) => write!(f, "env {v}"),
            Source::Flag(fl) => write!(f, "flag {fl}"),
        }
    }
}

/// The effective configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Port ranges, in allocation order.
    pub ranges: Ranges,
    /// The user's excluded ports, as inclusive intervals.
    pub exclude: Vec<(u16, u16)>,
    /// Idle entries older than this are dropped when an allocation runs.
    pub idle_ttl: Duration,
    /// How long to wait for a busy registry.
    pub lock_timeout: Duration,
    /// Range of new allocations when none is asked for (`PORTD_RANGE`);
    /// `None` = the fallback ranges. An existing entry keeps its port
    /// whatever this says: only `--range` moves a project to another range.
    pub default_range: Option<String>,
    /// A port pinned for this call (`PORTD_PORT`).
    pub pinned_port: Option<u16>,
    /// The key of the project `PORTD_PORT` was exported for
    /// (`PORTD_PROJECT_KEY`, set beside it by `portd env` and `portd run`;
    /// else `PORTD_PROJECT`, which names a named project by its key): the
    /// pin applies to exactly that project, so that a shell or a server
    /// running under one project's lease can still ask portd for other
    /// projects' ports, including another project shown by the same name.
    pub pinned_for: Option<String>,
    /// A registry shared between users (`shared = true`, `PORTD_SHARED=1`):
    /// the directory and files may belong to another user and be writable
    /// by their group; each entry can be released or moved only by the
    /// user who made it (or root).
    pub shared: bool,
    /// Whether ranges may reach below port 1024 (`allow_privileged = true`):
    /// only root can bind there, and the machine's own services live there.
    pub allow_privileged: bool,
    /// The port `portd proxy` listens on (`proxy_port`,
    /// `PORTD_PROXY_PORT`; `--port` on its command line beats both):
    /// checked by [`Config::check_proxy_port`] once everything is applied.
    pub proxy_port: u16,
    /// Where each key came from.
    pub sources: BTreeMap<&'static str, Source>,
}

impl Default for Config {
    fn default() -> Self {
        let sources = [
            "ranges",
            "exclude",
            "idle_ttl",
            "lock_timeout",
            "range",
            "port",
            "shared",
            "allow_privileged",
            "proxy_port",
        ]
        .into_iter()
        .map(|k| (k, Source::Default))
        .collect();
        Config {
            ranges: Ranges::defaults(),
            exclude: Vec::new(),
            idle_ttl: Duration::from_secs(30 * 86400),
            lock_timeout: Duration::from_secs(10),
            default_range: None,
            pinned_port: None,
            pinned_for: None,
            shared: false,
            allow_privileged: false,
            proxy_port: DEFAULT_PROXY_PORT,
            sources,
        }
    }
}

/// Parses a duration such as `500ms`, `10s`, `15m`, `2h`, `30d`, `1w`.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (write e.g. `10s`, `15m`, `30d`)"))?;
    let mult_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 604_800_000,
        "" => return Err(format!("`{s}` has no unit (write e.g. `{s}s`)")),
        _ => {
            return Err(format!("`{s}` has an unknown unit (use ms, s, m, h, d or w)"));
        }
    };
    n.checked_mul(mult_ms)
        .filter(|&ms| ms <= 100 * 365 * 86_400_000)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{s}` is too long"))
}

/// The allowed values of `idle_ttl`: shorter would drop every other idle
/// project at each allocation.
pub const IDLE_TTL_BOUNDS: (Duration, Duration) =
    (Duration::from_secs(60), Duration::from_secs(100 * 365 * 86400));
/// The allowed values of `lock_timeout`: shorter makes concurrent callers
/// fail while the registry is merely busy; longer leaves a hung holder
/// unnamed for too long.
pub const LOCK_TIMEOUT_BOUNDS: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(600));
/// The proxy's port when none is configured: above 1023, outside the
/// default ranges (4000–4999, 10000–19999) and the kernel's ephemeral
/// range, not a port browsers refuse, and the default of no common dev
/// server.
pub const DEFAULT_PROXY_PORT: u16 = 7780;
/// The hint of every invalid proxy port.
const PROXY_PORT_HINT: &str =
    "give a port above 1023 and outside every range, such as the default 7780";
/// The largest config file portd reads.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Ports below this can only be bound by root (or with a capability).
pub const FIRST_UNPRIVILEGED_PORT: u16 = 1024;

/// Parses a duration that must lie within `bounds` (inclusive).
fn parse_bounded(s: &str, bounds: (Duration, Duration)) -> std::result::Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < bounds.0 || d > bounds.1 {
        return Err(format!(
            "`{}` is out of range (allowed: {} to {})",
            s.trim(),
            format_duration(bounds.0),
            format_duration(bounds.1)
        ));
    }
    Ok(d)
}

/// Parses a boolean environment variable: `1`, `true`, `0` or `false`, in
/// any case. Everything else is refused, so that a typo never means "off".
pub fn parse_bool(s: &str) -> std::result::Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(format!("`{s}` is not a boolean (use 1, 0, true or false)")),
    }
}

/// Formats a duration the way the config file writes it.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    for (unit, size) in
        [("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)]
    {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Parses one port (`"4100"`) or an inclusive span (`"4200-4210"`).
pub fn parse_port_span(s: &str) -> std::result::Result<(u16, u16), String> {
    let port = |p: &str| -> std::result::Result<u16, String> {
        match p.trim().parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
            Ok(n) => Err(format!("port {n} is outside 1-65535")),
            Err(_) => Err(format!("`{p}` is not a port number")),
        }
    };
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => {
            let p = port(s)?;
            (p, p)
        }
    };
    if a > b {
        return Err(format!("`{s}` is an empty span (start above end)"));
    }
    Ok((a, b))
}

/// Parses a port given by a user (`--port`, `PORTD_PORT`).
pub fn parse_port(s: &str) -> std::result::Result<u16, String> {
    match s.trim().parse::<u64>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
        Ok(n) => Err(format!("port {n} is outside 1-65535")),
        Err(_) => Err(format!("`{s}` is not a port number")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    idle_ttl: Option<toml::Spanned<String>>,
    lock_timeout: Option<toml::Spanned<String>>,
    exclude: Option<Vec<toml::Spanned<RawExclude>>>,
    range: Option<Vec<toml::Spanned<RawRange>>>,
    shared: Option<bool>,
    allow_privileged: Option<bool>,
    proxy_port: Option<toml::Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawExclude {
    Port(i64),
    Span(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRange {
    name: String,
    start: toml::Spanned<i64>,
    end: toml::Spanned<i64>,
    #[serde(default = "yes")]
    fallback: bool,
}

fn yes() -> bool {
    true
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).unwrap_or(text).matches('\n').count() + 1
}

/// The key whose value holds `offset`: the nearest `key = …` at or above
/// its line (a value may span lines). `None` where the error is not in a
/// value (a syntax error, an unknown key, a table header).
fn key_at(text: &str, offset: usize) -> Option<&str> {
    let upto = text.get(..offset).unwrap_or(text);
    let line_end = text[upto.len()..].find('\n').map_or(text.len(), |i| upto.len() + i);
    let line = &text[upto.rfind('\n').map_or(0, |i| i + 1)..line_end];
    if line.trim_start().starts_with('[') {
        return None;
    }
    for line in text[..line_end].lines().rev() {
        let t = line.trim_start();
        if t.starts_with('[') {
            return None;
        }
        if let Some((k, _)) = t.split_once('=') {
            let k = k.trim();
            if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Some(k);
            }
        }
    }
    None
}

/// A type error's message, said in the terms of the key it is about.
fn explain(key: &str, msg: &str) -> String {
    let want = match key {
        "idle_ttl" | "lock_timeout" => "a duration string such as \"7d\", \"12h\" or \"500ms\"",
        "exclude" => "a list of ports and spans, such as [4100, \"4200-4210\"]",
        "range" => "[[range]] tables with name, start and end",
        "name" => "a string",
        "start" | "end" | "proxy_port" => "a port number",
        "fallback" | "shared" | "allow_privileged" => "true or false",
        _ => return msg.to_owned(),
    };
    if msg.starts_with("unknown field") || msg.starts_with("missing field") {
        return msg.to_owned();
    }
    format!("expected {want}")
}

impl Config {
    /// Applies a TOML config file's text on top of `self`.
    pub fn apply_file(&mut self, path: &Path, text: &str) -> Result<()> {
        let at = |span: std::ops::Range<usize>, key: &str, msg: &str| {
            Error::config(format!(
                "invalid configuration in `{}` line {}: `{key}`: {msg}",
                path.display(),
                line_of(text, span.start)
            ))
        };
        // One parse on the way in; only when it fails is the text parsed as
        // a plain table, to tell a syntax error (an unterminated string, a
        // duplicate key) from a bad value of the key nearest to it.
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let syntax = toml::from_str::<toml::Table>(text).err();
            let e = syntax.as_ref().unwrap_or(&e);
            let start = e.span().map_or(0, |s| s.start);
            let msg = e.message().trim().replace('\n', " ");
            match key_at(text, start).filter(|_| syntax.is_none()) {
                Some(key @ "proxy_port") => {
                    at(start..start, key, &explain(key, &msg)).with_hint(PROXY_PORT_HINT)
                }
                Some(key) => at(start..start, key, &explain(key, &msg)),
                None => {
                    let what = if syntax.is_some() { "TOML syntax error: " } else { "" };
                    Error::config(format!(
                        "invalid configuration in `{}` line {}: {what}{msg}",
                        path.display(),
                        line_of(text, start)
                    ))
                }
            }
        })?;
        let src = Source::File(path.to_owned());
        if let Some(v) = raw.idle_ttl {
            self.idle_ttl = parse_bounded(v.get_ref(), IDLE_TTL_BOUNDS)
                .map_err(|m| at(v.span(), "idle_ttl", &m))?;
            self.sources.insert("idle_ttl", src.clone());
        }
        if let Some(v) = raw.lock_timeout {
            self.lock_timeout = parse_bounded(v.get_ref(), LOCK_TIMEOUT_BOUNDS)
                .map_err(|m| at(v.span(), "lock_timeout", &m))?;
            self.sources.insert("lock_timeout", src.clone());
        }
        if let Some(v) = raw.shared {
            self.shared = v;
            self.sources.insert("shared", src.clone());
        }
        if let Some(v) = raw.allow_privileged {
            self.allow_privileged = v;
            self.sources.insert("allow_privileged", src.clone());
        }
        if let Some(v) = &raw.proxy_port {
            self.proxy_port = parse_port(&v.get_ref().to_string())
                .map_err(|m| at(v.span(), "proxy_port", &m).with_hint(PROXY_PORT_HINT))?;
            self.sources.insert("proxy_port", src.clone());
        }
        if let Some(list) = raw.exclude {
            let mut out = Vec::new();
            for item in list {
                let span = item.span();
                let parsed = match item.into_inner() {
                    RawExclude::Port(n) => parse_port_span(&n.to_string()),
                    RawExclude::Span(s) => parse_port_span(&s),
                };
                out.push(parsed.map_err(|m| at(span, "exclude", &m))?);
            }
            self.exclude = out;
            self.sources.insert("exclude", src.clone());
        }
        if let Some(list) = raw.range {
            let mut bounds = Vec::new();
            let mut spans = Vec::new();
            for r in list {
                spans.push(r.span());
                let r = r.into_inner();
                let port = |v: &toml::Spanned<i64>, key: &str| match *v.get_ref() {
                    n @ 1..=65535 => Ok(n as u32),
                    n => Err(at(v.span(), key, &format!("port {n} is outside 1-65535"))),
                };
                let (start, end) = (port(&r.start, "start")?, port(&r.end, "end")?);
                bounds.push((r.name, start, end, r.fallback));
            }
            self.ranges = Ranges::from_raw(&bounds).map_err(|e| {
                // Point at the first range the error names.
                let idx = bounds
                    .iter()
                    .rposition(|b| e.to_string().contains(&format!("`{}`", b.0)))
                    .unwrap_or(0);
                let span = spans.get(idx).cloned().unwrap_or(0..0);
                at(span, "range", &e.to_string())
            })?;
            self.sources.insert("ranges", src);
            if !self.allow_privileged
                && let Some((i, r)) =
                    self.ranges.iter().enumerate().find(|(_, r)| r.start < FIRST_UNPRIVILEGED_PORT)
            {
                let span = spans.get(i).cloned().unwrap_or(0..0);
                return Err(at(
                    span,
                    "range",
                    &format!(
                        "range `{}` ({}-{}) reaches below port {FIRST_UNPRIVILEGED_PORT}, where only root can bind and the machine's own services live",
                        r.name, r.start, r.end
                    ),
                )
                .with_hint(format!(
                    "start the range at {FIRST_UNPRIVILEGED_PORT} or above, or set `allow_privileged = true` if portd runs as root"
                )));
            }
        }
        Ok(())
    }

    /// Applies the environment (`get` looks a variable up) on top of `self`.
    pub fn apply_env(&mut self, get: &dyn Fn(&str) -> Option<String>) -> Result<()> {
        let bad = |var: &str, m: String| {
            Error::config(format!("invalid environment variable `{var}`: {m}"))
        };
        if let Some(v) = get("PORTD_IDLE_TTL") {
            self.idle_ttl =
                parse_bounded(&v, IDLE_TTL_BOUNDS).map_err(|m| bad("PORTD_IDLE_TTL", m))?;
            self.sources.insert("idle_ttl", Source::Env("PORTD_IDLE_TTL"));
        }
        if let Some(v) = get("PORTD_LOCK_TIMEOUT") {
            self.lock_timeout =
                parse_bounded(&v, LOCK_TIMEOUT_BOUNDS).map_err(|m| bad("PORTD_LOCK_TIMEOUT", m))?;
            self.sources.insert("lock_timeout", Source::Env("PORTD_LOCK_TIMEOUT"));
        }
        if let Some(v) = get("PORTD_RANGE") {
            self.set_default_range(&v).map_err(|e| bad("PORTD_RANGE", e.message().to_owned()))?;
            self.sources.insert("range", Source::Env("PORTD_RANGE"));
        }
        if let Some(v) = get("PORTD_SHARED") {
            self.shared = parse_bool(&v).map_err(|m| bad("PORTD_SHARED", m))?;
            self.sources.insert("shared", Source::Env("PORTD_SHARED"));
        }
        if let Some(v) = get("PORTD_PROXY_PORT").filter(|v| !v.is_empty()) {
            self.proxy_port = parse_port(&v)
                .map_err(|m| bad("PORTD_PROXY_PORT", m).with_hint(PROXY_PORT_HINT))?;
            self.sources.insert("proxy_port", Source::Env("PORTD_PROXY_PORT"));
        }
        if let Some(v) = get("PORTD_PORT") {
            self.pinned_port = Some(parse_port(&v).map_err(|m| bad("PORTD_PORT", m))?);
            self.pinned_for = get("PORTD_PROJECT_KEY")
                .filter(|p| !p.is_empty())
                .or_else(|| get("PORTD_PROJECT").filter(|p| !p.is_empty()));
            self.sources.insert("port", Source::Env("PORTD_PORT"));
        }
        Ok(())
    }

    /// The port pinned by `PORTD_PORT` for the project stored as `key`, if
    /// the pin is meant for it: `PORTD_PORT` alone pins every project;
    /// beside a project key it pins that project only (see
    /// [`Config::pinned_for`]). Keys are compared exactly: two directories
    /// shown by the same base name are two projects.
    pub fn pinned_port_for(&self, key: &str) -> Option<u16> {
        self.pinned_port.filter(|_| self.pinned_for.as_deref().is_none_or(|p| p == key))
    }

    /// Sets the range used when none is asked for; it must exist.
    pub fn set_default_range(&mut self, name: &str) -> Result<()> {
        self.check_range(name)?;
        self.default_range = Some(name.to_owned());
        Ok(())
    }

    /// Checks that a range called `name` is configured.
    pub fn check_range(&self, name: &str) -> Result<&PortRange> {
        self.ranges.by_name(name).ok_or_else(|| {
            Error::usage(format!(
                "unknown range `{name}`; configured ranges: {}",
                self.ranges.names().join(", ")
            ))
            .with_hint("add it as a `[[range]]` in the config file, or pick a configured one")
        })
    }

    /// The config file to read: `$PORTD_CONFIG` (which must exist), else
    /// `$XDG_CONFIG_HOME/portd/config.toml`, else `~/.config/portd/config.toml`
    /// (both optional). Returns the path and whether it must exist.
    pub fn file_path(get: &dyn Fn(&str) -> Option<String>) -> Option<(PathBuf, bool)> {
        if let Some(p) = get("PORTD_CONFIG").filter(|p| !p.is_empty()) {
            return Some((PathBuf::from(p), true));
        }
        let base = get("XDG_CONFIG_HOME")
            .filter(|p| Path::new(p).is_absolute())
            .map(PathBuf::from)
            .or_else(|| {
                get("HOME").filter(|h| !h.is_empty()).map(|h| Path::new(&h).join(".config"))
            })?;
        Some((base.join("portd").join("config.toml"), false))
    }

    /// Defaults, then the config file, then the environment.
    pub fn load(get: &dyn Fn(&str) -> Option<String>) -> Result<Config> {
        let mut cfg = Config::default();
        if let Some(p) = get("PORTD_CONFIG").filter(|p| !p.is_empty()) {
            crate::home::absolute("PORTD_CONFIG", &p)?;
        }
        // Only the file `PORTD_CONFIG` names is required to exist.
        if let Some((path, from_env)) = Self::file_path(get)
            && let Some(text) = read_file(&path, from_env)?
        {
            cfg.apply_file(&path, &text)?;
        }
        cfg.apply_env(get)?;
        // A configured proxy port is checked by every command, like any
        // key; the default is checked only by the proxy, so that a range
        // over 7780 breaks nothing for those who never run it.
        if cfg.sources.get("proxy_port").is_some_and(|s| *s != Source::Default) {
            cfg.check_proxy_port()?;
        }
        Ok(cfg)
    }

    /// Sets the proxy's port from a command-line flag (checked again).
    pub fn set_proxy_port(&mut self, port: u16, flag: &'static str) -> Result<()> {
        self.proxy_port = port;
        self.sources.insert("proxy_port", Source::Flag(flag));
        self.check_proxy_port()
    }

    /// Checks [`Config::proxy_port`] against the rest: not below 1024
    /// unless `allow_privileged` (systemd's sockets serve ports 80 and 443
    /// without it), not inside an allocation range (a project could be
    /// given it), not a port browsers refuse to connect to.
    pub fn check_proxy_port(&self) -> Result<()> {
        let p = self.proxy_port;
        let src = self.sources.get("proxy_port").cloned().unwrap_or(Source::Default);
        let where_ = match &src {
            Source::File(path) => format!("in `{}`: `proxy_port`", path.display()),
            Source::Env(v) => format!("environment variable `{v}`"),
            Source::Flag(f) => format!("`{f}`"),
            Source::Default => "`proxy_port`".to_owned(),
        };
        let fail = |why: String| {
            Err(Error::config(format!("invalid proxy port {p} ({where_}): {why}"))
                .with_hint(PROXY_PORT_HINT))
        };
        if p < FIRST_UNPRIVILEGED_PORT && !self.allow_privileged {
            return fail(format!(
                "ports below {FIRST_UNPRIVILEGED_PORT} need root (port 80 without root: \
                     socket activation, see the README)"
            ));
        }
        if let Some(r) = self.ranges.iter().find(|r| (r.start..=r.end).contains(&p)) {
            return fail(format!(
                "it is inside range `{}` ({}-{}), whose ports go to projects",
                r.name, r.start, r.end
            ));
        }
        if portd_core::BROWSER_BAD_PORTS.binary_search(&p).is_ok() {
            return fail("browsers refuse to connect to it".to_owned());
        }
        Ok(())
    }
}

/// Reads the config file: only a regular file (symlinks followed) of at
/// most [`MAX_CONFIG_BYTES`], in UTF-8. `None` when an optional file does
/// not exist.
/// `from_env`: named by `PORTD_CONFIG`, and so required to exist.
fn read_file(path: &Path, from_env: bool) -> Result<Option<String>> {
    use portd_core::sys::{ReadFileError, read_regular_file};
    let hint = if from_env {
        "fix or unset `PORTD_CONFIG`".to_owned()
    } else {
        format!("fix or remove `{}`", path.display())
    };
    let bytes = match read_regular_file(path, MAX_CONFIG_BYTES) {
        Ok(b) => b,
        Err(ReadFileError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound && !from_env => {
            return Ok(None);
        }
        Err(ReadFileError::Io(e)) => {
            return Err(Error::config(format!(
                "cannot read configuration `{}`: {e}",
                path.display()
            ))
            .with_hint(hint));
        }
        Err(ReadFileError::NotRegular(what)) => {
            return Err(Error::config(format!(
                "cannot read configuration `{}`: it is {what}, not a regular file",
                path.display()
            ))
            .with_hint(hint));
        }
        Err(ReadFileError::TooLarge) => {
            return Err(Error::config(format!(
                "cannot read configuration `{}`: it is larger than {} KiB",
                path.display(),
                MAX_CONFIG_BYTES / 1024
            ))
            .with_hint(hint));
        }
        Err(e) => {
            return Err(Error::config(format!(
                "cannot read configuration `{}`: {e:?}",
                path.display()
            ))
            .with_hint(hint));
        }
    };
    String::from_utf8(bytes).map(Some).map_err(|_| {
        Error::config(format!("invalid configuration in `{}`: not UTF-8 text", path.display()))
            .with_hint(hint)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Result<Config> {
        let mut c = Config::default();
        c.apply_file(Path::new("/c.toml"), text).map(|()| c)
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86400)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("99999999999999999999s").is_err());
        assert_eq!(format_duration(Duration::from_secs(30 * 86400)), "30d");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn full_file() {
        let c = file(
            "idle_ttl = \"7d\"\nlock_timeout = \"2s\"\nexclude = [4100, \"4200-4210\"]\n\
             [[range]]\nname = \"primary\"\nstart = 5000\nend = 5099\n\
             [[range]]\nname = \"ci\"\nstart = 6000\nend = 6099\nfallback = false\n",
        )
        .unwrap();
        assert_eq!(c.idle_ttl, Duration::from_secs(7 * 86400));
        assert_eq!(c.exclude, vec![(4100, 4100), (4200, 4210)]);
        assert_eq!(c.ranges.names(), ["primary", "ci"]);
        assert_eq!(c.sources["ranges"], Source::File("/c.toml".into()));
        assert_eq!(c.sources["lock_timeout"], Source::File("/c.toml".into()));
    }

    #[test]
    fn errors_name_line_and_key() {
        let e = file("idle_ttl = \"7d\"\nbogus = 1\n").unwrap_err();
        assert!(e.message().contains("line 2") && e.message().contains("bogus"), "{e}");
        let e = file("lock_timeout = \"2\"\n").unwrap_err();
        assert!(e.message().contains("line 1") && e.message().contains("lock_timeout"), "{e}");
        let e =
            file("[[range]]\nname=\"a\"\nstart=1\nend=9\n[[range]]\nname=\"b\"\nstart=5\nend=20\n")
                .unwrap_err();
        assert!(e.message().contains("overlap") && e.message().contains("line 5"), "{e}");
        let e = file("[[range]]\nname=\"a\"\nstart=0\nend=9\n").unwrap_err();
        assert!(e.message().contains("outside 1-65535"), "{e}");
        let e = file("exclude = [70000]\n").unwrap_err();
        assert!(e.message().contains("exclude"), "{e}");
        let e = file("[[range]]\nname=\"a\"\nstart=10\nend=20\ncolour=1\n").unwrap_err();
        assert!(e.message().contains("colour"), "{e}");
        assert!(file("not toml at all [").is_err());
        // A newline inside a value stays escaped: an error is one line.
        let e = file("idle_ttl = \"1\\nx\"\n").unwrap_err();
        assert!(
            e.message().ends_with("`1\\nx` has an unknown unit (use ms, s, m, h, d or w)"),
            "{e}"
        );
        let e = file("[[range]]\nname = \"a\\nb\"\nstart = 1\nend = 2\n").unwrap_err();
        assert!(e.message().contains("range name `a\\nb` is invalid"), "{e}");
    }

    #[test]
    fn env_overrides() {
        let env = |k: &str| match k {
            "PORTD_LOCK_TIMEOUT" => Some("250ms".to_owned()),
            "PORTD_RANGE" => Some("experimental".to_owned()),
            "PORTD_PORT" => Some("4321".to_owned()),
            _ => None,
        };
        let c = Config::load(&env).unwrap();
        assert_eq!(c.lock_timeout, Duration::from_millis(250));
        assert_eq!(c.default_range.as_deref(), Some("experimental"));
        assert_eq!(c.pinned_port, Some(4321));
        assert_eq!(c.sources["lock_timeout"], Source::Env("PORTD_LOCK_TIMEOUT"));
        let bad = |k: &str| (k == "PORTD_PORT").then(|| "0".to_owned());
        assert!(Config::load(&bad).unwrap_err().message().contains("PORTD_PORT"));
        let bad = |k: &str| (k == "PORTD_RANGE").then(|| "nope".to_owned());
        assert!(Config::load(&bad).unwrap_err().message().contains("PORTD_RANGE"));
        let missing = |k: &str| (k == "PORTD_CONFIG").then(|| "/nonexistent/portd.toml".to_owned());
        assert_eq!(Config::load(&missing).unwrap_err().kind(), crate::ErrorKind::Config);
    }

    #[test]
    fn the_proxy_port_comes_from_flag_then_env_then_file_and_is_checked() {
        let mut c = file("proxy_port = 8080\n").unwrap();
        assert_eq!(
            (c.proxy_port, &c.sources["proxy_port"]),
            (8080, &Source::File("/c.toml".into()))
        );
        c.apply_env(&|k: &str| (k == "PORTD_PROXY_PORT").then(|| "8081".to_owned())).unwrap();
        assert_eq!(
            (c.proxy_port, &c.sources["proxy_port"]),
            (8081, &Source::Env("PORTD_PROXY_PORT"))
        );
        c.set_proxy_port(8082, "--port").unwrap();
        assert_eq!((c.proxy_port, &c.sources["proxy_port"]), (8082, &Source::Flag("--port")));
        // Inside a default range, below 1024, a port browsers refuse.
        for p in [4500, 80, 6000] {
            let e = c.set_proxy_port(p, "--port").unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Config, "{e}");
            assert!(e.hint().is_some_and(|h| h.contains("7780")), "{e}");
        }
        assert_eq!(Config::default().proxy_port, DEFAULT_PROXY_PORT);
        assert!(Config::default().check_proxy_port().is_ok());
    }
}
