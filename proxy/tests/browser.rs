//! The dashboard in a real browser: Debian's `chromium`, headless, driven
//! through `chromedriver` (WebDriver) with fantoccini. The page lists the
//! projects; clicking Stop turns a running project's row to stopped
//! without a reload, and Start brings it back.
//!
//! Ports: registry range 41200–41219, dashboard 41910, chromedriver 41911.
#![allow(clippy::print_stderr)]

mod common;

use common::World;
use fantoccini::{Client, ClientBuilder, Locator};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The first of `names` found on `PATH` (or as an absolute path).
fn which(names: &[&str]) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    names.iter().find_map(|n| std::env::split_paths(&path).map(|d| d.join(n)).find(|p| p.is_file()))
}

/// chromedriver, killed (and waited for) on drop.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `chromedriver` on `port` and waits until it listens.
fn driver(bin: &std::path::Path, port: u16) -> Driver {
    let child = Command::new(bin)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start chromedriver");
    let d = Driver(child);
    let up = common::eventually(Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up, "chromedriver did not listen on {port}");
    d
}

/// A headless Chromium session; `dark`: the system asks for dark mode.
async fn browser(chromium: &std::path::Path, driver_port: u16, dark: bool) -> Client {
    let mut args = vec![
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1360,720",
        "--hide-scrollbars",
    ];
    if dark {
        args.push("--force-dark-mode");
    }
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({ "binary": chromium, "args": args }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .expect("cannot open a Chromium session")
}

/// The `data-state` of `key`'s row, if the row is there.
async fn row_state(c: &Client, key: &str) -> Option<String> {
    let sel = format!(r#"tr.project[data-key="{key}"]"#);
    let row = c.find(Locator::Css(&sel)).await.ok()?;
    row.attr("data-state").await.ok().flatten()
}

/// Waits until `key`'s row shows `state`.
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

async fn click(c: &Client, key: &str, action: &str) {
    let sel = format!(r#"tr.project[data-key="{key}"] button[data-action="{action}"]"#);
    c.find(Locator::Css(&sel)).await.unwrap().click().await.unwrap();
}

/// The marker the test set on the page: gone after a reload.
async fn marker(c: &Client) -> serde_json::Value {
    c.execute("return window.__portdTestMarker || null;", vec![]).await.unwrap()
}

/// Where screenshots go (`target/tmp/`): look at them to judge the page.
fn screenshot_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name)
}

#[test]
fn stop_and_start_from_the_page_change_the_row_without_reload() {
    let (Some(chromium), Some(chromedriver)) =
        (which(&["chromium", "chromium-browser"]), which(&["chromedriver"]))
    else {
        return common::skip(
            "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)",
        );
    };
    if !common::have_python() {
        return common::skip("python3 is not installed");
    }
    let world = World::new(41200);
    world.add_python("web");
    world.add_python("docs");
    world.run(&["get", "plain"]);
    world.run(&["start", "web"]);
    let web_port: u16 = world.run(&["get", "web"]).trim().parse().unwrap();
    let dash = world.dashboard();
    let served = common::Served::start(dash, 41910);
    let _driver = driver(&chromedriver, 41911);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let c = browser(&chromium, 41911, false).await;
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

        c.execute("window.__portdTestMarker = 'same page';", vec![]).await.unwrap();
        click(&c, "web", "stop").await;
        let took = until_state(&c, "web", "stopped", Duration::from_secs(15)).await;
        eprintln!("Stop → row stopped: {took:?}");
        assert_eq!(marker(&c).await, "same page", "the page reloaded");
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", web_port)).is_err(),
            "web still listens"
        );

        click(&c, "web", "start").await;
        let took = until_state(&c, "web", "running", Duration::from_secs(15)).await;
        eprintln!("Start → row running: {took:?}");
        assert_eq!(marker(&c).await, "same page", "the page reloaded");
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", web_port)).is_ok(),
            "web does not listen"
        );

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
        tokio::time::sleep(Duration::from_millis(300)).await;
        let png = c.screenshot().await.unwrap();
        std::fs::write(screenshot_path("dashboard-light.png"), png).unwrap();
        c.close().await.unwrap();

        let d = browser(&chromium, 41911, true).await;
        d.goto(&url).await.unwrap();
        until_state(&d, "web", "running", Duration::from_secs(10)).await;
        let bg = d
            .execute("return getComputedStyle(document.body).backgroundColor;", vec![])
            .await
            .unwrap();
        eprintln!("dark background: {bg}");
        let png = d.screenshot().await.unwrap();
        std::fs::write(screenshot_path("dashboard-dark.png"), png).unwrap();
        d.close().await.unwrap();
    });
}
