//! `portd-proxy`: the proxy in the foreground. `portd proxy` runs it (and
//! `portd proxy start` in the background); it can be run directly too,
//! e.g. from a systemd unit with socket activation.
//!
//! ```text
//! portd-proxy [--port P] [--home DIR]
//! ```
//! The port: `--port`, else `PORTD_PROXY_PORT`, else the config file's
//! `proxy_port`, else 7780. With sockets from systemd (`LISTEN_FDS`) it
//! binds nothing itself. It ends at SIGTERM
//! or SIGINT; the servers it started run on under their supervisors.

#![forbid(unsafe_code)]

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use portd_proxy::instance::{self, ClaimError, Info};
use portd_proxy::{State, listen, router, routes};
use portd_store::{Config, Error, ErrorKind};
use std::convert::Infallible;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

const USAGE: &str = "\
Usage: portd-proxy [--port P] [--home DIR]

Serves http://NAME.localhost:P/ for every project of the registry on
127.0.0.1 and ::1, starting defined servers on their first request.

Options:
  --port P     the port (default: PORTD_PROXY_PORT, else the config's
               proxy_port, else 7780)
  --home DIR   the registry directory (default: PORTD_HOME, else the usual one)

Sockets passed by systemd (LISTEN_FDS, LISTEN_PID) are used instead of --port.
";

struct Args {
    port: Option<u16>,
    home: Option<PathBuf>,
}

/// An error line (and a hint) on stderr, and the exit code.
#[allow(clippy::print_stderr)]
fn fail(e: &Error) -> ExitCode {
    eprintln!("error: {}", e.message());
    if let Some(h) = e.hint() {
        eprintln!("hint: {h}");
    }
    ExitCode::from(e.exit_code())
}

fn parse_args() -> Result<Option<Args>, Error> {
    let mut a = Args { port: None, home: None };
    let mut it = std::env::args_os().skip(1);
    while let Some(arg) = it.next() {
        let arg = arg.to_string_lossy().into_owned();
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = || -> Result<String, Error> {
            inline
                .clone()
                .or_else(|| it.next().map(|v| v.to_string_lossy().into_owned()))
                .ok_or_else(|| Error::usage(format!("`{flag}` needs a value")))
        };
        match flag.as_str() {
            "--port" => a.port = Some(parse_port(&value()?)?),
            "--home" => a.home = Some(PathBuf::from(value()?)),
            "-h" | "--help" => return Ok(None),
            _ => {
                return Err(Error::usage(format!("unexpected argument `{arg}`"))
                    .with_hint("see `portd-proxy --help`"));
            }
        }
    }
    Ok(Some(a))
}

fn parse_port(s: &str) -> Result<u16, Error> {
    match s.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(Error::usage(format!("`{s}` is not a port (1–65535)"))),
    }
}

/// The `portd` binary that starts managed servers: `PORTD_BIN`, else the
/// one beside this binary.
fn portd_exe() -> PathBuf {
    if let Some(p) = std::env::var_os("PORTD_BIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("portd")))
        .unwrap_or_else(|| PathBuf::from("portd"))
}

#[allow(clippy::print_stdout)]
fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(&e),
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

#[allow(clippy::print_stderr)]
fn run(args: Args) -> Result<(), Error> {
    let env = |k: &str| std::env::var(k).ok();
    let mut config = Config::load(&env)?;
    let home = match args.home {
        Some(h) => std::path::absolute(&h).unwrap_or(h),
        None => portd_store::default_home(&env)?,
    };
    // The port: `--port`, else `PORTD_PROXY_PORT`, else `proxy_port`,
    // else the default; unused when systemd passes sockets.
    let systemd = listen::from_systemd();
    if systemd.is_none() {
        match args.port {
            Some(p) => config.set_proxy_port(p, "--port")?,
            None => config.check_proxy_port()?,
        }
    }
    let port = config.proxy_port;
    // Opening the registry creates its directory (0700) or refuses an
    // unsafe one, before anything is written there.
    portd_store::Registry::open(&home, config.clone())?;
    let claim = match instance::claim(&home) {
        Ok(c) => c,
        Err(ClaimError::Running { pid, info }) => {
            let at = match (info, pid) {
                (Some(i), _) => format!(" (pid {}, http://localhost:{}/)", i.pid, i.port),
                (None, Some(pid)) => format!(" (pid {pid}, starting)"),
                (None, None) => String::new(),
            };
            return Err(Error::new(
                ErrorKind::PortBusy,
                format!("a proxy already runs for the registry `{}`{at}", home.display()),
            )
            .with_hint("`portd proxy stop` stops it"));
        }
        Err(ClaimError::Io(e)) => {
            return Err(Error::new(
                ErrorKind::Other,
                format!("cannot open `{}`: {e}", home.join(instance::LOCK_FILE).display()),
            ));
        }
    };
    let listeners = match systemd {
        Some(l) => {
            l.map_err(|e| Error::new(ErrorKind::Other, format!("systemd's sockets: {e}")))?
        }
        None => listen::bind(port).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                Error::new(ErrorKind::PortBusy, format!("port {port} is in use")).with_hint(
                    "choose another with `--port P` (`portd check PORT` says who holds it)",
                )
            } else if e.kind() == std::io::ErrorKind::PermissionDenied {
                Error::new(ErrorKind::Permission, format!("cannot listen on port {port}: {e}"))
                    .with_hint(
                        "ports below 1024 need root, or systemd socket activation (see the README)",
                    )
            } else {
                Error::new(ErrorKind::Other, format!("cannot listen on port {port}: {e}"))
            }
        })?,
    };
    let port = listeners.first().and_then(|l| l.local_addr().ok()).map_or(port, |a| a.port());
    let state = Arc::new(State::new(home.clone(), config, port, portd_exe()));
    routes::spawn_watcher(state.clone())
        .map_err(|e| Error::new(ErrorKind::Other, format!("cannot watch the registry: {e}")))?;
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let info = Info {
        pid: std::process::id(),
        port,
        token: state.token.clone(),
        started: instance::rfc3339(started),
    };
    claim.publish(&info).map_err(|e| {
        Error::new(
            ErrorKind::Other,
            format!("cannot write `{}`: {e}", home.join(instance::INFO_FILE).display()),
        )
    })?;
    let addrs: Vec<String> =
        listeners.iter().filter_map(|l| l.local_addr().ok()).map(|a| a.to_string()).collect();
    eprintln!(
        "portd proxy on http://localhost:{port}/ (listening on {}; registry `{}`)",
        addrs.join(", "),
        home.display()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| Error::new(ErrorKind::Other, format!("cannot start the runtime: {e}")))?;
    let served = rt.block_on(serve(state, listeners));
    // The listeners and tasks go first (a start under way is not waited
    // for long); only then is the instance released, so that a new proxy
    // never finds the port still taken.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    drop(claim);
    served
}

/// Accepts on every listener until SIGTERM or SIGINT.
async fn serve(state: Arc<State>, listeners: Vec<std::net::TcpListener>) -> Result<(), Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let sig = |k| signal(k).map_err(|e| Error::new(ErrorKind::Other, format!("signals: {e}")));
    let (mut term, mut int, mut child) =
        (sig(SignalKind::terminate())?, sig(SignalKind::interrupt())?, sig(SignalKind::child())?);
    for l in listeners {
        let l = tokio::net::TcpListener::from_std(l)
            .map_err(|e| Error::new(ErrorKind::Other, format!("listener: {e}")))?;
        tokio::spawn(accept_loop(l, state.clone()));
    }
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = child.recv() => router::reap(),
        }
    }
}

/// How long a client may take to send a request's head. A client that
/// never finishes its headers is disconnected then, instead of holding a
/// connection (and its task) for ever. hyper's timer runs whenever a
/// connection waits for a request head, so an idle keep-alive connection
/// is closed after this long too (the browser opens a new one): one timer
/// per open connection, and none once the connections are closed.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

async fn accept_loop(l: tokio::net::TcpListener, state: Arc<State>) {
    loop {
        let (s, peer) = match l.accept().await {
            Ok(c) => c,
            Err(_) => {
                // Out of descriptors, most likely: let some close.
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = s.set_nodelay(true);
        let st = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let st = st.clone();
                async move { Ok::<_, Infallible>(router::handle(req, st, peer.ip()).await) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(s), svc)
                .with_upgrades()
                .await;
        });
    }
}
