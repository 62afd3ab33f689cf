//! portd's proxy: `http://NAME.localhost:P/` routed to each project's
//! port, with defined servers started on their first request, and the
//! dashboard at `http://portd.localhost:P/`.
//!
//! The only async code of portd: one current-thread tokio runtime serving
//! HTTP/1.1 with hyper. The pieces:
//! - [`hosts`]: how project names map to host names (pure strings);
//! - [`routes`]: the route table, rebuilt by a std thread on registry
//!   changes and read by requests without any lock wait;
//! - [`router`]: one request: which project, then forward, start or an
//!   error page;
//! - [`forward`]: the pooled upstream client, headers, WebSocket upgrades;
//! - [`pages`]: the error pages (HTML, or JSON on request);
//! - [`listen`]: the loopback listeners, or systemd's sockets;
//! - [`instance`]: one proxy per registry (`proxy.lock`, `proxy.json`);
//! - `dashboard`: the dashboard and its API.
#![forbid(unsafe_code)]

pub mod dashboard;
pub mod forward;
pub mod hosts;
pub mod instance;
pub mod listen;
pub mod pages;
pub mod router;
pub mod routes;

use bytes::Bytes;
use http_body_util::BodyExt;
pub use routes::{Route, Routes};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// The body type of every response the proxy makes.
pub type Body = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

/// A body holding `b`.
pub fn full(b: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// An empty body.
pub fn empty() -> Body {
    http_body_util::Empty::new().map_err(|never| match never {}).boxed()
}

/// The port the proxy listens on by default (the config key `proxy_port`
/// changes it): above 1023, outside portd's default ranges (4000–4999,
/// 10000–19999) and the kernel's ephemeral range, not on the browsers' list
/// of refused ports, and the default of no common dev server.
pub const DEFAULT_PORT: u16 = portd_store::DEFAULT_PROXY_PORT;

/// What every request shares: the route table, the registry's place, the
/// upstream client, the starts under way.
#[derive(Debug)]
pub struct State {
    /// The registry directory.
    pub home: PathBuf,
    /// The configuration the registry is opened with.
    pub config: portd_store::Config,
    /// The port the proxy was asked to listen on (for URLs); with
    /// systemd's sockets, the first one's.
    pub port: u16,
    /// A token made for this run (also in `proxy.json`): the dashboard's
    /// state-changing requests must carry it.
    pub token: String,
    /// The `portd` binary that starts and stops managed servers.
    pub portd_exe: PathBuf,
    /// This run's mark in the hop header (see [`forward::HOP_HEADER`]).
    pub hop_id: String,
    routes: RwLock<Arc<Routes>>,
    changes: tokio::sync::watch::Sender<u64>,
    pub(crate) client: forward::Client,
    pub(crate) starts: router::Starts,
    /// The dashboard (its token is [`State::token`]).
    pub dashboard: Arc<dashboard::Dashboard>,
}

impl State {
    /// A state with an empty route table (filled by
    /// [`routes::spawn_watcher`]).
    pub fn new(home: PathBuf, config: portd_store::Config, port: u16, portd_exe: PathBuf) -> State {
        let dashboard =
            Arc::new(dashboard::Dashboard::new(home.clone(), config.clone(), portd_exe.clone()));
        let token = dashboard.token().to_owned();
        let hop_id = instance::random_hex(6);
        let client = forward::client(&hop_id);
        State {
            home,
            config,
            port,
            token,
            portd_exe,
            hop_id,
            routes: RwLock::new(Arc::new(Routes::default())),
            changes: tokio::sync::watch::channel(0).0,
            client,
            starts: router::Starts::default(),
            dashboard,
        }
    }

    /// The current route table (a pointer copy under a lock held only for
    /// that: never the registry's lock).
    pub fn routes(&self) -> Arc<Routes> {
        self.routes.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Opens the registry (it is opened per operation, like every portd
    /// process does): call it from blocking code
    /// (`tokio::task::spawn_blocking`).
    pub fn registry(&self) -> Result<portd_store::Registry, portd_store::Error> {
        portd_store::Registry::open(&self.home, self.config.clone())
    }

    /// A receiver of the table's generation number, bumped after each
    /// rebuild.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Swaps in a new table and tells the receivers of [`State::changes`].
    pub fn set_routes(&self, routes: Routes) {
        *self.routes.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(routes);
        self.changes.send_modify(|g| *g += 1);
        self.dashboard.notify_changed();
    }
}
