//! Health checks: `tcp` (the port accepts a connection), `http:/PATH` (a
//! GET answered 2xx or 3xx) and `cmd:COMMAND` (`sh -c COMMAND` exits 0).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The port accepts a connection (127.0.0.1 or ::1).
    Tcp,
    /// `GET PATH` is answered 2xx or 3xx.
    Http(String),
    /// `sh -c COMMAND` exits 0.
    Cmd(String),
}

const FORMS: &str = "use `tcp`, `http:/PATH` or `cmd:COMMAND`";

impl std::str::FromStr for Check {
    type Err = String;
    fn from_str(s: &str) -> Result<Check, String> {
        if s == "tcp" {
            return Ok(Check::Tcp);
        }
        if let Some(p) = s.strip_prefix("http:") {
            if !p.starts_with('/') || p.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!(
                    "health check `{s}`: the path must start with `/` and have no spaces; {FORMS}"
                ));
            }
            return Ok(Check::Http(p.to_owned()));
        }
        if let Some(c) = s.strip_prefix("cmd:") {
            if c.trim().is_empty() || c.contains('\0') {
                return Err(format!("health check `{s}` has no command; {FORMS}"));
            }
            return Ok(Check::Cmd(c.to_owned()));
        }
        Err(format!("unknown health check `{s}`: {FORMS}"))
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

/// Runs the check against `port` within `timeout`; `Err` says why it
/// failed. `env` and `dir` are the server's (for `cmd:`).
pub fn check(
    c: &Check,
    port: u16,
    env: &[(String, String)],
    dir: &Path,
    timeout: Duration,
) -> Result<(), String> {
    match c {
        Check::Tcp => connect(port, timeout).map(drop),
        Check::Http(path) => http(port, path, timeout),
        Check::Cmd(command) => cmd(command, env, dir, timeout),
    }
}

fn connect(port: u16, timeout: Duration) -> Result<TcpStream, String> {
    let v4: SocketAddr = ([127, 0, 0, 1], port).into();
    let v6: SocketAddr = (std::net::Ipv6Addr::LOCALHOST, port).into();
    TcpStream::connect_timeout(&v4, timeout)
        .or_else(|e| TcpStream::connect_timeout(&v6, timeout).map_err(|_| e))
        .map_err(|e| format!("port {port}: {e}"))
}

fn http(port: u16, path: &str, timeout: Duration) -> Result<(), String> {
    let mut s = connect(port, timeout)?;
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).map_err(|e| format!("GET {path}: {e}"))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.contains(&b'\n') && head.len() < 4096 {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("GET {path}: {e}")),
        }
    }
    let line = String::from_utf8_lossy(&head);
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("GET {path}: not an HTTP answer"))?;
    if (200..400).contains(&status) { Ok(()) } else { Err(format!("GET {path} answered {status}")) }
}

fn cmd(
    command: &str,
    env: &[(String, String)],
    dir: &Path,
    timeout: Duration,
) -> Result<(), String> {
    let mut c = Command::new("/bin/sh");
    c.arg("-c").arg(command).current_dir(dir).process_group(0);
    c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().map_err(|e| format!("`{command}`: {e}"))?;
    let until = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return Ok(()),
            Ok(Some(st)) => return Err(format!("`{command}` exited with {st}")),
            Ok(None) if Instant::now() >= until => {
                let _ = portd_core::sys::kill(-(child.id() as i32), portd_core::sys::SIGKILL);
                let _ = child.wait();
                return Err(format!(
                    "`{command}` timed out after {}",
                    portd_store::format_duration(timeout)
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("`{command}`: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_round_trip_and_bad_ones_name_the_forms() {
        for s in ["tcp", "http:/health", "cmd:curl -f localhost:$PORT"] {
            assert_eq!(s.parse::<Check>().unwrap().to_string(), s);
        }
        for bad in ["tcpx", "http:health", "cmd:", "http:/a b"] {
            assert!(bad.parse::<Check>().unwrap_err().contains("tcp"), "{bad}");
        }
    }

    #[test]
    fn checks_pass_and_fail_against_real_listeners_and_commands() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let dir = Path::new("/");
        let t = Duration::from_secs(2);
        assert!(check(&Check::Tcp, port, &[], dir, t).is_ok());
        let served = std::thread::spawn(move || {
            let mut codes = vec![500, 200];
            while let Some(code) = codes.pop() {
                let (mut s, _) = l.accept().unwrap();
                let mut b = [0u8; 1024];
                if s.read(&mut b).unwrap_or(0) == 0 {
                    codes.push(code); // the tcp check's connection: no request
                    continue;
                }
                let _ = write!(s, "HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n");
            }
        });
        assert!(check(&Check::Http("/".into()), port, &[], dir, t).is_ok());
        let second = check(&Check::Http("/".into()), port, &[], dir, t);
        served.join().unwrap();
        assert!(second.unwrap_err().contains("500"));
        assert!(check(&Check::Cmd("true".into()), port, &[], dir, t).is_ok());
        let env = [("PORT".to_owned(), "7".to_owned())];
        assert!(check(&Check::Cmd("test \"$PORT\" = 7".into()), port, &env, dir, t).is_ok());
        assert!(check(&Check::Cmd("false".into()), port, &[], dir, t).is_err());
        let slow =
            check(&Check::Cmd("sleep 10".into()), port, &[], dir, Duration::from_millis(200));
        assert!(slow.unwrap_err().contains("timed out"));
    }
}
