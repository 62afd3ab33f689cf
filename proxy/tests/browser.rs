//! The proxy and its dashboard in a real browser: Debian's `chromium`,
//! headless, driven through `chromedriver` (WebDriver) with fantoccini.
//! The dashboard lists the projects, and Stop / Start change a row without
//! a reload; a defined project that is not running opens through
//! `http://NAME.localhost:P/` (Chromium resolves `*.localhost` to loopback
//! itself) and is then stopped from the dashboard; a page's WebSocket
//! passes through the proxy; a real Vite dev server behind the proxy
//! hot-reloads a module through it.
//!
//! Every test saves screenshots in `target/tmp/` (`CARGO_TARGET_TMPDIR`):
//! look at them to judge the page. The browser tests take turns (one
//! Chromium at a time).
//!
//! Ports: the band 45000–45999 (registry ranges from 45000, proxies and
//! chromedrivers from 45900).
#![allow(clippy::print_stderr)]

mod common;

use common::World;
use fantoccini::{Client, ClientBuilder, Locator};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The first of `names` found on `PATH`.
fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    names.iter().find_map(|n| std::env::split_paths(&path).map(|d| d.join(n)).find(|p| p.is_file()))
}

/// What a browser test needs, and the turn it holds: Chromium's memory and
/// the two cores of a CI machine make one browser at a time the reliable
/// choice.
struct Tools {
    chromium: PathBuf,
    chromedriver: PathBuf,
    _turn: MutexGuard<'static, ()>,
}

/// The browser and its driver, or `None` after printing SKIP (a failure
/// under `PORTD_NO_SKIP`).
fn tools() -> Option<Tools> {
    static TURN: Mutex<()> = Mutex::new(());
    let (Some(chromium), Some(chromedriver)) =
        (which(&["chromium", "chromium-browser"]), which(&["chromedriver"]))
    else {
        common::skip(
            "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)",
        );
        return None;
    };
    // A test that failed holding the turn poisons it; the next one may run.
    let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    Some(Tools { chromium, chromedriver, _turn: turn })
}

/// `chromedriver` and every browser it started, in a process group of
/// their own, with a private profile directory: on drop (also when the
/// test panics) the whole group is killed and the profile removed.
struct Driver {
    child: Child,
    port: u16,
    profile: tempfile::TempDir,
}

impl Driver {
    /// Starts `chromedriver` on `port` and waits until it listens.
    fn start(tools: &Tools, port: u16) -> Driver {
        use std::os::unix::process::CommandExt;
        let child = Command::new(&tools.chromedriver)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start chromedriver");
        let profile = tempfile::Builder::new().prefix("portd-chromium-").tempdir().unwrap();
        let d = Driver { child, port, profile };
        let up = common::eventually(Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "chromedriver did not listen on {port}");
        d
    }

    /// Ends the driver and its browsers, and checks that nothing of them
    /// is left.
    fn finish(self) {
        let (pgrp, profile) = (self.child.id(), self.profile.path().to_owned());
        drop(self);
        assert_eq!(leftovers(pgrp, &profile), Vec::<u32>::new(), "chromedriver or Chromium left");
    }
}

/// What is left of a driver and its browsers: its process group `pgrp`,
/// and the processes that name its `profile` directory (Chromium's crash
/// handlers leave the group: they run in sessions of their own).
fn leftovers(pgrp: u32, profile: &Path) -> Vec<u32> {
    let profile = profile.to_string_lossy();
    portd_core::sys::process_table()
        .into_iter()
        .filter(|p| p.state != 'Z')
        .filter(|p| {
            p.pgrp == pgrp
                || portd_core::sys::cmdline(p.pid)
                    .is_some_and(|args| args.iter().any(|a| a.contains(&*profile)))
        })
        .map(|p| p.pid)
        .collect()
}

impl Drop for Driver {
    fn drop(&mut self) {
        let pgrp = self.child.id();
        let _ = portd_core::sys::kill(-(pgrp as i32), portd_core::sys::SIGKILL);
        let _ = self.child.wait();
        common::eventually(Duration::from_secs(10), || {
            let left = leftovers(pgrp, self.profile.path());
            for &pid in &left {
                let _ = portd_core::sys::kill(pid as i32, portd_core::sys::SIGKILL);
            }
            left.is_empty()
        });
    }
}

/// A headless Chromium session; `dark`: the system asks for dark mode.
async fn browser(tools: &Tools, driver: &Driver, dark: bool) -> Client {
    let data_dir = driver.profile.path().join(if dark { "dark" } else { "light" });
    let mut args = vec![
        "--headless=new".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--no-proxy-server".to_owned(),
        "--window-size=1360,720".to_owned(),
        "--hide-scrollbars".to_owned(),
        format!("--user-data-dir={}", data_dir.display()),
    ];
    if dark {
        args.push("--force-dark-mode".to_owned());
    }
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({ "binary": tools.chromium, "args": args }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("cannot open a Chromium session")
}

/// A current-thread runtime for the WebDriver client.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// The real proxy of a world (`portd proxy --port P`, which execs the
/// `portd-proxy` binary of this build), killed on drop.
struct Proxy {
    child: Child,
    port: u16,
}

impl Proxy {
    /// Starts it on `port` and waits until it accepts on 127.0.0.1 and
    /// knows its routes (`proxy.json` written).
    fn start(world: &World, port: u16) -> Proxy {
        let child = Command::new(world.portd())
            .args(["proxy", "--port", &port.to_string()])
            .env("PORTD_PROXY_BIN", env!("CARGO_BIN_EXE_portd-proxy"))
            .current_dir(world.root())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let p = Proxy { child, port };
        let up = common::eventually(Duration::from_secs(15), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
                && world.home().join("proxy.json").exists()
        });
        assert!(up, "the proxy did not listen on {port}");
        p
    }

    /// `http://HOST.localhost:P/`.
    fn url(&self, host: &str) -> String {
        format!("http://{host}.localhost:{}/", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One project of `portd ls --json` (the fields these tests read).
#[derive(Debug, serde::Deserialize)]
struct Entry {
    key: String,
    port: u16,
    child_pid: Option<u32>,
}

/// `key`'s entry in this world.
fn entry(world: &World, key: &str) -> Entry {
    let all: Vec<Entry> = serde_json::from_str(&world.run(&["ls", "--json"])).unwrap();
    all.into_iter().find(|e| e.key == key).unwrap_or_else(|| panic!("no entry `{key}`"))
}

/// Whether process `pid` is there (and not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit_once(')').is_some_and(|(_, rest)| !rest.starts_with(" Z")))
}

/// Whether something accepts on `127.0.0.1:port`.
fn listens(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// The `data-state` of `key`'s row, if the row is there.
async fn row_state(c: &Client, key: &str) -> Option<String> {
    let sel = format!(r#"tr.project[data-key="{key}"]"#);
    let row = c.find(Locator::Css(&sel)).await.ok()?;
    row.attr("data-state").await.ok().flatten()
}

/// Waits until `key`'s row shows `state`; returns how long it took.
async fn until_state(c: &Client, key: &str, state: &str, limit: Duration) -> Duration {
    let t = Instant::now();
    loop {
        if row_state(c, key).await.as_deref() == Some(state) {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < limit,
            "`{key}` did not turn {state} within {limit:?} (it is {:?})",
            row_state(c, key).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `f` returns `Some`, polling every 50 ms; panics with
/// `what` after `limit`.
async fn until<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> F,
) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The text of the element `css`, if there is one.
async fn text(c: &Client, css: &str) -> Option<String> {
    c.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

async fn click(c: &Client, key: &str, action: &str) {
    let sel = format!(r#"tr.project[data-key="{key}"] button[data-action="{action}"]"#);
    c.find(Locator::Css(&sel)).await.unwrap().click().await.unwrap();
}

/// Sets a marker on the page: a reload would lose it.
async fn set_marker(c: &Client) {
    c.execute("window.__portdTestMarker = 'same page';", vec![]).await.unwrap();
}

/// The marker [`set_marker`] set, if the page still has it.
async fn marker(c: &Client) -> serde_json::Value {
    c.execute("return window.__portdTestMarker || null;", vec![]).await.unwrap()
}

/// Saves a screenshot of the page as `target/tmp/NAME`.
async fn screenshot(c: &Client, name: &str) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let png = c.screenshot().await.unwrap();
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
}

#[test]
fn stop_and_start_from_the_page_change_the_row_without_reload() {
    let Some(tools) = tools() else { return };
    if !common::have_python() {
        return common::skip("python3 is not installed");
    }
    let world = World::new(45000);
    world.add_python("web");
    world.add_python("docs");
    world.run(&["get", "plain"]);
    world.run(&["start", "web"]);
    let web_port: u16 = world.run(&["get", "web"]).trim().parse().unwrap();
    let dash = world.dashboard();
    let served = common::Served::start(dash, 45900);
    let driver = Driver::start(&tools, 45901);
    runtime().block_on(async {
        let c = browser(&tools, &driver, false).await;
        let url = format!("http://portd.localhost:{}/", served.port);
        c.goto(&url).await.unwrap();
        until_state(&c, "web", "running", Duration::from_secs(10)).await;
        assert_eq!(row_state(&c, "docs").await.as_deref(), Some("stopped"));
        assert_eq!(row_state(&c, "plain").await.as_deref(), Some("idle"));
        let link = c
            .find(Locator::Css(r#"tr.project[data-key="web"] td.name a"#))
            .await
            .unwrap()
            .attr("href")
            .await
            .unwrap();
        assert_eq!(
            link.as_deref(),
            Some(format!("http://web.localhost:{}/", served.port).as_str())
        );
        // No Start for a running server; no buttons for a plain entry.
        let start = r#"tr.project[data-key="web"] button[data-action="start"]"#;
        let disabled = c.find(Locator::Css(start)).await.unwrap().attr("disabled").await.unwrap();
        assert!(disabled.is_some(), "Start is enabled on a running server");
        assert!(c.find(Locator::Css(r#"tr.project[data-key="plain"] button"#)).await.is_err());

        set_marker(&c).await;
        click(&c, "web", "stop").await;
        let took = until_state(&c, "web", "stopped", Duration::from_secs(15)).await;
        eprintln!("Stop → row stopped: {took:?}");
        assert_eq!(marker(&c).await, "same page", "the page reloaded");
        assert!(!listens(web_port), "web still listens");

        click(&c, "web", "start").await;
        let took = until_state(&c, "web", "running", Duration::from_secs(15)).await;
        eprintln!("Start → row running: {took:?}");
        assert_eq!(marker(&c).await, "same page", "the page reloaded");
        assert!(listens(web_port), "web does not listen");

        // The log tail, open, for the picture.
        c.find(Locator::Css(r#"tr.project[data-key="web"] button.logs"#))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        c.wait()
            .at_most(Duration::from_secs(5))
            .for_element(Locator::Css(
                r#"tr.logrow[data-key="web"] pre, tr.logrow[data-key="web"] .nolog"#,
            ))
            .await
            .unwrap();
        screenshot(&c, "dashboard-light.png").await;
        c.close().await.unwrap();

        let d = browser(&tools, &driver, true).await;
        d.goto(&url).await.unwrap();
        until_state(&d, "web", "running", Duration::from_secs(10)).await;
        let bg = d
            .execute("return getComputedStyle(document.body).backgroundColor;", vec![])
            .await
            .unwrap();
        // The dark palette's background (#0f1217), not the light one.
        assert_eq!(bg, "rgb(15, 18, 23)", "dark mode is not applied");
        screenshot(&d, "dashboard-dark.png").await;
        d.close().await.unwrap();
    });
    driver.finish();
}

/// A directory with an `index.html` whose `<h1 id="hello">` says `hello`.
fn site(world: &World, name: &str, hello: &str) -> PathBuf {
    let dir = world.root().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("index.html"),
        format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{name}</title>\
             <style>body{{font:18px system-ui,sans-serif;margin:40px}}</style></head>\
             <body><h1 id=\"hello\">{hello}</h1><p>served by python3 -m http.server</p></body></html>\n"
        ),
    )
    .unwrap();
    dir
}

#[test]
fn a_defined_project_that_is_not_running_opens_by_name_and_stops_from_the_dashboard() {
    let Some(tools) = tools() else { return };
    if !common::have_python() {
        return common::skip("python3 is not installed");
    }
    let world = World::new(45020);
    // `site` is defined and stopped; `lazy` sleeps until its first
    // connection.
    for (name, flags) in [("site", &[][..]), ("lazy", &["--on-demand"][..])] {
        let dir = site(&world, name, &format!("Hello from {name}"));
        let mut args = vec!["add", name];
        args.extend_from_slice(flags);
        let dir = dir.to_str().unwrap();
        args.extend(["--", "python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]);
        args.extend(["--directory", dir]);
        world.run(&args);
    }
    let site_port = entry(&world, "site").port;
    assert!(!listens(site_port), "`site` runs before anyone asked");
    let proxy = Proxy::start(&world, 45910);
    let driver = Driver::start(&tools, 45911);
    runtime().block_on(async {
        let c = browser(&tools, &driver, false).await;

        // The first request starts `site`; the page is its own.
        let t = Instant::now();
        c.goto(&proxy.url("site")).await.unwrap();
        let hello = text(&c, "#hello").await;
        eprintln!("site.localhost: first page in {:?}", t.elapsed());
        assert_eq!(hello.as_deref(), Some("Hello from site"), "not the project's page");
        assert_eq!(c.current_url().await.unwrap().as_str(), proxy.url("site"));
        screenshot(&c, "site-through-the-proxy.png").await;
        let pid = entry(&world, "site").child_pid.expect("`site` has no server pid");
        assert!(alive(pid) && listens(site_port), "`site` is not running");

        let t = Instant::now();
        c.goto(&proxy.url("lazy")).await.unwrap();
        assert_eq!(text(&c, "#hello").await.as_deref(), Some("Hello from lazy"));
        eprintln!("lazy.localhost (on demand): first page in {:?}", t.elapsed());

        // The dashboard, through the same proxy, shows it running …
        c.goto(&proxy.url("portd")).await.unwrap();
        until_state(&c, "site", "running", Duration::from_secs(10)).await;
        until_state(&c, "lazy", "running", Duration::from_secs(10)).await;
        let link = c
            .find(Locator::Css(r#"tr.project[data-key="site"] td.name a"#))
            .await
            .unwrap()
            .attr("href")
            .await
            .unwrap();
        assert_eq!(link, Some(proxy.url("site")));
        // Every name links to its `NAME.localhost` URL or to nothing (the
        // on-demand server's relay entry has no host name).
        let links = c
            .execute(
                "return [...document.querySelectorAll('tr.project td.name a')].map(a => a.href);",
                vec![],
            )
            .await
            .unwrap();
        let links: Vec<String> = serde_json::from_value(links).unwrap();
        let mut want = vec![proxy.url("site"), proxy.url("lazy")];
        want.sort();
        let mut got = links.clone();
        got.sort();
        assert_eq!(got, want, "{links:?}");
        screenshot(&c, "proxy-dashboard-running.png").await;

        // … and its Stop button stops it: the row turns stopped without a
        // reload, the server process is gone, nothing listens.
        set_marker(&c).await;
        click(&c, "site", "stop").await;
        let took = until_state(&c, "site", "stopped", Duration::from_secs(15)).await;
        eprintln!("Stop → row stopped: {took:?}");
        assert_eq!(marker(&c).await, "same page", "the page reloaded");
        assert!(
            common::eventually(Duration::from_secs(5), || !alive(pid)),
            "the server process {pid} is still there"
        );
        assert!(!listens(site_port), "`site` still listens");
        assert_eq!(entry(&world, "site").child_pid, None);
        assert_eq!(row_state(&c, "lazy").await.as_deref(), Some("running"));
        screenshot(&c, "proxy-dashboard-stopped.png").await;
        c.close().await.unwrap();
    });
    driver.finish();
}

#[test]
fn a_websocket_echo_from_the_page_passes_through_the_proxy() {
    let Some(tools) = tools() else { return };
    if !Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success()) {
        return common::skip("node is not installed");
    }
    let world = World::new(45040);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ws-page.js");
    world.run(&["add", "echo", "--", "node", script.to_str().unwrap(), "{port}"]);
    let proxy = Proxy::start(&world, 45920);
    let host = format!("echo.localhost:{}", proxy.port);
    let driver = Driver::start(&tools, 45921);
    runtime().block_on(async {
        let c = browser(&tools, &driver, false).await;
        c.goto(&proxy.url("echo")).await.unwrap();
        let echo = until("the echo on the page", Duration::from_secs(10), || async {
            text(&c, "#echo").await.filter(|t| !t.is_empty())
        })
        .await;
        let sent = text(&c, "#sent").await.unwrap();
        assert!(sent.starts_with("hello through portd ✓ "), "{sent}");
        assert_eq!(echo, sent, "the echo is not what the page sent");
        assert_eq!(text(&c, "#state").await.as_deref(), Some("open"));
        // The upgrade came through the proxy: Host kept, X-Forwarded-Host
        // added.
        assert_eq!(text(&c, "#host").await, Some(host.clone()));
        assert_eq!(text(&c, "#fwd").await, Some(host.clone()));
        screenshot(&c, "websocket-echo.png").await;
        c.close().await.unwrap();
    });
    driver.finish();
}

/// The real Vite of the CLI tests' fixture (`cli/tests/fixtures/vite-app`,
/// installed by `npm ci` as `.ci/run` does), or `None` after printing SKIP.
fn vite_bin() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cli/tests/fixtures/vite-app");
    let vite = dir.join("node_modules/.bin/vite");
    let node = Command::new("node").arg("--version").output();
    if !vite.exists() || !node.is_ok_and(|o| o.status.success()) {
        common::skip(&format!(
            "Vite is not installed for the fixture (`npm ci --prefix {}`)",
            dir.display()
        ));
        return None;
    }
    Some(std::path::absolute(vite).unwrap())
}

/// The Vite app of the hot-reload test: a page whose module writes its
/// version into `#msg` and accepts its own updates. A classic script,
/// which runs before any module, records every WebSocket the page opens.
fn vite_app(world: &World) -> PathBuf {
    let dir = world.root().join("hmr-app");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("index.html"),
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>Vite through portd</title>\n\
         <script>\n  window.__sockets = [];\n  const Native = window.WebSocket;\n  \
         window.WebSocket = class extends Native {\n    \
         constructor(url, protocols) { super(url, protocols); window.__sockets.push(String(url)); }\n  };\n\
         </script>\n\
         <style>body { font: 18px system-ui, sans-serif; margin: 40px; }</style>\n</head>\n\
         <body>\n<h1>Vite through portd</h1>\n<p id=\"msg\">loading</p>\n\
         <script type=\"module\" src=\"/main.js\"></script>\n</body>\n</html>\n",
    )
    .unwrap();
    write_main(&dir, "first");
    dir
}

/// Writes the app's `main.js` showing `version`.
fn write_main(dir: &Path, version: &str) {
    std::fs::write(
        dir.join("main.js"),
        format!(
            "document.getElementById('msg').textContent = 'version: {version}';\n\
             if (import.meta.hot) import.meta.hot.accept();\n"
        ),
    )
    .unwrap();
}

#[test]
fn a_vite_dev_server_behind_the_proxy_hot_reloads_through_it() {
    let Some(tools) = tools() else { return };
    let Some(vite) = vite_bin() else { return };
    let world = World::new(45060);
    let app = vite_app(&world);
    world.run(&["add", "hmr", "--dir", app.to_str().unwrap(), "--", vite.to_str().unwrap()]);
    let vite_port = entry(&world, "hmr").port;
    let proxy = Proxy::start(&world, 45930);
    let driver = Driver::start(&tools, 45931);
    runtime().block_on(async {
        let c = browser(&tools, &driver, false).await;
        // The first request starts Vite (stopped until now).
        let t = Instant::now();
        c.goto(&proxy.url("hmr")).await.unwrap();
        until("the first version", Duration::from_secs(20), || async {
            text(&c, "#msg").await.filter(|t| t == "version: first")
        })
        .await;
        eprintln!("hmr.localhost: Vite started and its page ran in {:?}", t.elapsed());
        // Vite's client opened its HMR socket through the proxy, not to
        // Vite's own port.
        let sockets = until("Vite's HMR socket", Duration::from_secs(10), || async {
            let v = c.execute("return window.__sockets;", vec![]).await.ok()?;
            let urls: Vec<String> = serde_json::from_value(v).ok()?;
            (!urls.is_empty()).then_some(urls)
        })
        .await;
        let through = format!("ws://hmr.localhost:{}/", proxy.port);
        assert!(
            sockets.iter().all(|u| u.starts_with(&through)),
            "{sockets:?} (Vite on {vite_port})"
        );
        set_marker(&c).await;
        screenshot(&c, "vite-before-edit.png").await;

        write_main(&app, "second");
        let t = Instant::now();
        until("the edited version", Duration::from_secs(15), || async {
            text(&c, "#msg").await.filter(|t| t == "version: second")
        })
        .await;
        eprintln!("edit → page updated through the proxy in {:?}", t.elapsed());
        assert_eq!(marker(&c).await, "same page", "the page reloaded instead of a hot update");
        let after: Vec<String> =
            serde_json::from_value(c.execute("return window.__sockets;", vec![]).await.unwrap())
                .unwrap();
        assert_eq!(after, sockets, "the page opened another socket");
        screenshot(&c, "vite-after-edit.png").await;
        c.close().await.unwrap();
    });
    driver.finish();
}
