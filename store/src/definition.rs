//! A managed server's definition: what `portd add` stores and `portd start`
//! runs (the command, its directory and environment, and its policies).
//!
//! Stored in the `servers` table under the project's key, as a version
//! byte and the postcard encoding of [`ServerDef`]. Health checks are kept
//! as the text the user gave (`tcp`, `http:/PATH`, `cmd:COMMAND`), which
//! the supervisor parses; everything else is typed.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

const DEF_V1: u8 = 1;
/// The largest definition stored (command, environment and directory).
pub const MAX_DEFINITION: usize = 64 * 1024;

/// When a server that ended is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum RestartPolicy {
    /// Never.
    No,
    /// After a non-zero exit, a signal, or failed health checks.
    #[default]
    OnFailure,
    /// After any exit, and after failed health checks.
    Always,
}

impl RestartPolicy {
    /// The policy's name, as `--restart` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Always => "always",
        }
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RestartPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "no" => Ok(RestartPolicy::No),
            "on-failure" => Ok(RestartPolicy::OnFailure),
            "always" => Ok(RestartPolicy::Always),
            _ => Err(format!("unknown restart policy `{s}`: use `no`, `on-failure` or `always`")),
        }
    }
}

/// A managed server's definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerDef {
    /// The program and its arguments (`{port}`, `{port:NAME}` and
    /// `{url:NAME}` still in them: they are resolved at each start).
    pub argv: Vec<String>,
    /// The working directory (absolute).
    pub dir: String,
    /// Environment added to the server's (`--env K=V`), in order.
    pub env: Vec<(String, String)>,
    /// `PATH` when the server was defined: a server started later from
    /// another environment finds the same programs.
    pub path: Option<String>,
    /// The health check, as given (`tcp`, `http:/PATH`, `cmd:COMMAND`).
    pub health: String,
    /// Between two health checks while running, in milliseconds.
    pub health_interval_ms: u64,
    /// Failed checks in a row that make the server unhealthy.
    pub health_failures: u32,
    /// When an ended server is started again.
    pub restart: RestartPolicy,
    /// Started by the first connection rather than by `portd start`.
    pub on_demand: bool,
    /// Stopped after this long without connections (milliseconds); `None`:
    /// one hour for on-demand servers, never for the others.
    pub idle_timeout_ms: Option<u64>,
    /// How long a start may take to become healthy, in milliseconds.
    pub start_timeout_ms: u64,
    /// Between SIGTERM and SIGKILL when stopping, in milliseconds.
    pub kill_grace_ms: u64,
    /// The server receives its listening socket(s) (`LISTEN_FDS`).
    pub fd: bool,
    /// The address to listen on instead of loopback.
    pub host: Option<String>,
    /// Add `--port N` to dev servers that ignore `PORT`.
    pub inject: bool,
    /// The user who defined it.
    pub uid: u32,
    /// When it was first defined, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// When it was last changed, milliseconds since the Unix epoch.
    pub updated_ms: u64,
}

/// An hour: the idle timeout of on-demand servers unless one is given.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 3_600_000;

impl ServerDef {
    /// A definition of `argv` run in `dir`, with the default policies.
    pub fn new(argv: Vec<String>, dir: String) -> ServerDef {
        ServerDef {
            argv,
            dir,
            env: Vec::new(),
            path: None,
            health: "tcp".to_owned(),
            health_interval_ms: 10_000,
            health_failures: 3,
            restart: RestartPolicy::OnFailure,
            on_demand: false,
            idle_timeout_ms: None,
            start_timeout_ms: 30_000,
            kill_grace_ms: 5_000,
            fd: false,
            host: None,
            inject: true,
            uid: portd_core::sys::euid(),
            created_ms: 0,
            updated_ms: 0,
        }
    }

    /// The idle timeout in force: the given one, else an hour for
    /// on-demand servers; `None`: never stopped for being idle.
    pub fn idle_timeout(&self) -> Option<std::time::Duration> {
        self.idle_timeout_ms
            .or(self.on_demand.then_some(DEFAULT_IDLE_TIMEOUT_MS))
            .map(std::time::Duration::from_millis)
    }

    /// What differs from `old`, one `field: old → new` line each (the
    /// times aside).
    pub fn changes_from(&self, old: &ServerDef) -> Vec<String> {
        let mut out = Vec::new();
        let mut cmp = |name: &str, a: String, b: String| {
            if a != b {
                out.push(format!("{name}: {a} → {b}"));
            }
        };
        cmp("command", shell_words(&old.argv), shell_words(&self.argv));
        cmp("dir", old.dir.clone(), self.dir.clone());
        cmp("env", env_words(&old.env), env_words(&self.env));
        cmp("health", old.health.clone(), self.health.clone());
        cmp(
            "health interval",
            format!("{}ms", old.health_interval_ms),
            format!("{}ms", self.health_interval_ms),
        );
        cmp("health failures", old.health_failures.to_string(), self.health_failures.to_string());
        cmp("restart", old.restart.to_string(), self.restart.to_string());
        cmp("on demand", old.on_demand.to_string(), self.on_demand.to_string());
        cmp(
            "idle timeout",
            ms_or_default(old.idle_timeout_ms),
            ms_or_default(self.idle_timeout_ms),
        );
        cmp(
            "start timeout",
            format!("{}ms", old.start_timeout_ms),
            format!("{}ms", self.start_timeout_ms),
        );
        cmp("kill grace", format!("{}ms", old.kill_grace_ms), format!("{}ms", self.kill_grace_ms));
        cmp("fd", old.fd.to_string(), self.fd.to_string());
        cmp("host", old.host.clone().unwrap_or_default(), self.host.clone().unwrap_or_default());
        cmp("inject", old.inject.to_string(), self.inject.to_string());
        out
    }
}

fn ms_or_default(ms: Option<u64>) -> String {
    ms.map_or_else(|| "default".to_owned(), |m| format!("{m}ms"))
}

/// `argv` as one line, each word quoted when it needs to be.
pub fn shell_words(argv: &[String]) -> String {
    argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
}

fn env_words(env: &[(String, String)]) -> String {
    env.iter().map(|(k, v)| format!("{k}={}", quote(v))).collect::<Vec<_>>().join(" ")
}

fn quote(a: &str) -> String {
    let plain =
        !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,{}".contains(c));
    if plain { a.to_owned() } else { format!("'{}'", a.replace('\'', r"'\''")) }
}

/// Encodes a definition for the `servers` table.
pub fn encode(def: &ServerDef) -> Vec<u8> {
    crate::record::encode_versioned(DEF_V1, def)
}

/// Decodes and checks a stored definition.
pub fn decode(key: &str, bytes: &[u8]) -> Result<ServerDef, crate::record::DecodeError> {
    let err = |m: &str| crate::record::DecodeError(format!("definition of `{key}`: {m}"));
    if bytes.len() > MAX_DEFINITION + 1 {
        return Err(err("too large"));
    }
    let def: ServerDef = crate::record::decode_versioned(DEF_V1, bytes).map_err(|m| err(&m))?;
    if def.argv.is_empty() {
        return Err(err("no command"));
    }
    if !def.dir.starts_with('/') {
        return Err(err("directory is not absolute"));
    }
    Ok(def)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_definition_round_trips_and_damage_is_an_error() {
        let mut d = ServerDef::new(vec!["node".into(), "server.js".into()], "/srv/app".into());
        d.env.push(("API_URL".into(), "{url:api}".into()));
        d.on_demand = true;
        let bytes = encode(&d);
        assert_eq!(decode("web", &bytes).unwrap(), d);
        assert!(decode("web", &bytes[..bytes.len() - 1]).is_err());
        assert!(decode("web", &[]).is_err());
        let mut v2 = bytes.clone();
        v2[0] = 2;
        assert!(decode("web", &v2).unwrap_err().0.contains("version 2"));
        let mut trailing = bytes;
        trailing.push(0);
        assert!(decode("web", &trailing).is_err());
    }

    #[test]
    fn changes_name_each_field_that_differs() {
        let a = ServerDef::new(vec!["node".into(), "a.js".into()], "/a".into());
        let mut b = a.clone();
        b.argv[1] = "b c.js".into();
        b.restart = RestartPolicy::Always;
        assert_eq!(
            b.changes_from(&a),
            vec!["command: node a.js → node 'b c.js'", "restart: on-failure → always"]
        );
        assert!(a.changes_from(&a).is_empty());
    }

    #[test]
    fn idle_timeout_defaults_to_an_hour_only_on_demand() {
        let mut d = ServerDef::new(vec!["x".into()], "/".into());
        assert_eq!(d.idle_timeout(), None);
        d.on_demand = true;
        assert_eq!(d.idle_timeout(), Some(std::time::Duration::from_secs(3600)));
        d.idle_timeout_ms = Some(2000);
        assert_eq!(d.idle_timeout(), Some(std::time::Duration::from_secs(2)));
    }
}
