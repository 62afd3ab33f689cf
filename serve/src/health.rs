//! Health checks: `tcp`, `http:/PATH` and `cmd:COMMAND`. (Minimal version.)
use std::path::Path;
use std::time::Duration;

/// A health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The port accepts a connection.
    Tcp,
    /// GET PATH answers 2xx or 3xx.
    Http(String),
    /// COMMAND exits 0.
    Cmd(String),
}

impl std::str::FromStr for Check {
    type Err = String;
    fn from_str(s: &str) -> Result<Check, String> {
        if s == "tcp" {
            Ok(Check::Tcp)
        } else if let Some(p) = s.strip_prefix("http:") {
            Ok(Check::Http(p.to_owned()))
        } else if let Some(c) = s.strip_prefix("cmd:") {
            Ok(Check::Cmd(c.to_owned()))
        } else {
            Err(format!("unknown health check `{s}`"))
        }
    }
}

/// Runs the check.
pub fn check(
    c: &Check,
    port: u16,
    _env: &[(String, String)],
    _dir: &Path,
    timeout: Duration,
) -> Result<(), String> {
    match c {
        _ => std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout)
            .map(drop)
            .map_err(|e| e.to_string()),
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Check::Tcp => f.write_str("tcp"),
            Check::Http(p) => write!(f, "http:{p}"),
            Check::Cmd(c) => write!(f, "cmd:{c}"),
        }
    }
}
