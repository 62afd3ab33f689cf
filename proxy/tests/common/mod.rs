//! What the dashboard tests share: a private registry with real managed
//! servers, the dashboard served by hyper on a loopback port, and a plain
//! HTTP/1.1 client that can send any header (or none).
#![allow(dead_code, clippy::print_stderr)]

use portd_proxy::dashboard::{self, Dashboard};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Prints `SKIP: why` and returns, or fails when `PORTD_NO_SKIP` is set
/// (CI, where everything a test needs is installed).
pub fn skip(why: &str) {
    assert!(std::env::var_os("PORTD_NO_SKIP").is_none(), "cannot skip under PORTD_NO_SKIP: {why}");
    eprintln!("SKIP: {why}");
}

/// Whether `python3` runs here.
pub fn have_python() -> bool {
    Command::new("python3").arg("-c").arg("pass").status().is_ok_and(|s| s.success())
}

/// The `portd` binary of this build (`target/<profile>/portd`), built
/// (once per test run, at once when it is current) so that it is never
/// older than its sources: `cargo test -p portd-proxy` does not build
/// another package's binary.
pub fn portd_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_owned();
        let bin = profile_dir.join("portd");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-q", "-p", "portd", "--bin", "portd"]);
        if profile_dir.file_name().is_some_and(|d| d == "release") {
            cmd.arg("--release");
        }
        let status = cmd.current_dir(env!("CARGO_MANIFEST_DIR")).status().unwrap();
        assert!(status.success(), "cannot build `portd`");
        assert!(bin.exists(), "no `portd` at {}", bin.display());
        bin
    })
    .clone()
}

/// A test's private world: a registry whose only range is 20 ports of the
/// test's own, a `portd` wrapper that runs the real binary in this world
/// (the dashboard starts servers through it), and on drop — also when the
/// test panics — every process of this world stopped and killed.
pub struct World {
    tmp: tempfile::TempDir,
    /// The first port of the world's range.
    pub first_port: u16,
}

impl World {
    /// A world on the ports `first_port..first_port + 20`.
    pub fn new(first_port: u16) -> World {
        let tmp = tempfile::Builder::new().prefix("portd-dash-").tempdir().unwrap();
        let w = World { tmp, first_port };
        std::fs::create_dir_all(w.root().join("portd")).unwrap();
        std::fs::write(
            w.root().join("portd/config.toml"),
            format!(
                "[[range]]\nname = \"test\"\nstart = {first_port}\nend = {}\n",
                first_port + 19
            ),
        )
        .unwrap();
        let script = format!(
            "#!/bin/sh\nexport HOME='{root}' XDG_CONFIG_HOME='{root}' PORTD_HOME='{home}' PATH='{path}'\nexec '{bin}' \"$@\"\n",
            root = w.root().display(),
            home = w.home().display(),
            path = std::env::var("PATH").unwrap_or_default(),
            bin = portd_bin().display(),
        );
        write_executable(&w.portd(), &script);
        w
    }

    /// The temporary directory (`HOME` and `XDG_CONFIG_HOME` of the world).
    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// The registry directory (`PORTD_HOME`).
    pub fn home(&self) -> PathBuf {
        self.root().join("home")
    }

    /// The `portd` of this world (a wrapper script around the real one).
    pub fn portd(&self) -> PathBuf {
        self.root().join("portd-here")
    }

    /// The configuration `portd` loads in this world.
    pub fn config(&self) -> portd_store::Config {
        let root = self.root().to_str().unwrap().to_owned();
        portd_store::Config::load(&|k| match k {
            "HOME" | "XDG_CONFIG_HOME" => Some(root.clone()),
            _ => None,
        })
        .unwrap()
    }

    /// Runs `portd ARGS` here; panics unless it succeeds. Returns stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new(self.portd())
            .args(args)
            .current_dir(self.root())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "portd {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Defines `name` as `python3 -m http.server` on its port (loopback).
    pub fn add_python(&self, name: &str) {
        self.run(&[
            "add",
            name,
            "--",
            "python3",
            "-m",
            "http.server",
            "{port}",
            "--bind",
            "127.0.0.1",
        ]);
    }

    /// The dashboard of this world.
    pub fn dashboard(&self) -> Arc<Dashboard> {
        Arc::new(Dashboard::new(self.home(), self.config(), self.portd()))
    }

    /// Processes whose environment holds this world's `PORTD_HOME`.
    pub fn processes(&self) -> Vec<u32> {
        let me = std::process::id();
        let want = self.home().to_str().unwrap().to_owned();
        portd_core::sys::process_table()
            .into_iter()
            .filter(|p| p.pid != me && p.state != 'Z')
            .filter(|p| {
                portd_core::sys::environ(p.pid)
                    .is_some_and(|e| e.iter().any(|(k, v)| k == "PORTD_HOME" && *v == want))
            })
            .map(|p| p.pid)
            .collect()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = Command::new(self.portd())
            .args(["stop", "--all"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let left = self.processes();
            if left.is_empty() || Instant::now() >= end {
                break;
            }
            for pid in left {
                let _ = portd_core::sys::kill(pid as i32, portd_core::sys::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The dashboard served by hyper (current-thread runtime, as the proxy
/// runs it) on `127.0.0.1:port` in a thread of this test; stopped on drop.
pub struct Served {
    /// The port it listens on.
    pub port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    /// Serves `dash` on `127.0.0.1:port` (and `[::1]:port` when the host
    /// has IPv6).
    pub fn start(dash: Arc<Dashboard>, port: u16) -> Served {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let v4 = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
                let v6 = tokio::net::TcpListener::bind(("::1", port)).await.ok();
                ready_tx.send(()).unwrap();
                loop {
                    let accepted = tokio::select! {
                        a = v4.accept() => a,
                        a = async { match &v6 { Some(l) => l.accept().await, None => std::future::pending().await } } => a,
                        _ = &mut stopped => return,
                    };
                    let Ok((stream, _)) = accepted else { continue };
                    let dash = Arc::clone(&dash);
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req| {
                            let dash = Arc::clone(&dash);
                            async move {
                                Ok::<_, std::convert::Infallible>(dashboard::handle(req, dash).await)
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                            .await;
                    });
                }
            });
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).expect("the dashboard did not start");
        Served { port, stop: Some(stop), thread: Some(thread) }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One HTTP response.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Header names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: String,
}

impl Reply {
    /// The value of header `name`, if there is one.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON into `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not the expected JSON ({e}): {self:#?}"))
    }

    /// The `error` of a JSON error body.
    pub fn error(&self) -> String {
        let v: serde_json::Value = self.json();
        v["error"].as_str().unwrap_or_else(|| panic!("no `error`: {self:#?}")).to_owned()
    }
}

/// Sends one request to `127.0.0.1:port` exactly as given (`Connection:
/// close` is added) and reads the whole response.
pub fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut text = format!("{method} {path} HTTP/1.1\r\n");
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        text.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    text.push_str("Connection: close\r\n\r\n");
    text.push_str(body);
    s.write_all(text.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    parse(&raw)
}

/// A GET with `Host: localhost:PORT`.
pub fn get(port: u16, path: &str) -> Reply {
    let host = format!("localhost:{port}");
    request(port, "GET", path, &[("Host", &host)], "")
}

/// A POST the way the page sends it: same-origin `Origin`, the token, a
/// JSON body.
pub fn post(port: u16, path: &str, token: &str) -> Reply {
    let host = format!("localhost:{port}");
    let origin = format!("http://{host}");
    request(
        port,
        "POST",
        path,
        &[
            ("Host", &host),
            ("Origin", &origin),
            ("X-Portd-Token", token),
            ("Content-Type", "application/json"),
        ],
        "{}",
    )
}

fn parse(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head: {text}"));
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(rest) } else { rest.to_owned() };
    Reply { status, headers, body }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// An open `GET /api/events` stream, read event by event.
pub struct Events {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Events {
    /// Opens the stream and checks its head.
    pub fn open(port: u16) -> Events {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(stream, "GET /api/events HTTP/1.1\r\nHost: portd.localhost:{port}\r\nAccept: text/event-stream\r\n\r\n").unwrap();
        let mut e = Events { stream, buf: Vec::new() };
        let head = e.until(b"\r\n\r\n", Duration::from_secs(10)).expect("no response head");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.to_ascii_lowercase().contains("content-type: text/event-stream"), "{head}");
        e
    }

    /// Reads up to and including `end`, within `limit`.
    fn until(&mut self, end: &[u8], limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(i) = self.buf.windows(end.len()).position(|w| w == end) {
                let got: Vec<u8> = self.buf.drain(..i + end.len()).collect();
                return Some(String::from_utf8_lossy(&got).into_owned());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.stream.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None;
                }
                Err(e) => panic!("reading the events: {e}"),
            }
        }
    }

    /// The next event named `name` (its data), skipping others, within
    /// `limit`.
    pub fn next(&mut self, name: &str, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            // Chunk framing lines sit between events; an event's lines
            // come in one chunk.
            let block = self.until(b"\n\n", left)?;
            let mut event = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = Some(e.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = Some(d.to_owned());
                }
            }
            if event.as_deref() == Some(name) {
                return data;
            }
        }
    }
}

/// Polls `f` every 20 ms until it is true or `limit` has passed.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes an executable script at `path` through a child process
/// (`install -m 755`), so that this multi-threaded test process never holds
/// the file open for writing: a child another test thread forks at that
/// moment would inherit the descriptor, and executing the file would then
/// fail with "Text file busy" (ETXTBSY).
pub fn write_executable(path: &Path, text: &str) {
    let src = path.with_extension("src");
    std::fs::write(&src, text).unwrap();
    let st = Command::new("install").arg("-m").arg("755").arg(&src).arg(path).status().unwrap();
    assert!(st.success(), "install {}", path.display());
    let _ = std::fs::remove_file(&src);
}
