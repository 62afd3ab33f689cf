//! `GET /api/events`: server-sent events that keep the page live.
//!
//! Each stream is one task: it sends a `projects` event with the snapshot
//! ([`super::api::snapshot`]) at once, then again whenever the registry
//! changed ([`Dashboard::notify_changed`]) — and, while the page is open,
//! every [`REFRESH`], because memory and connections change without the
//! registry changing. A snapshot equal to the last one sent is not sent
//! again, and a change signal after which the registry file is as it was
//! (a reader's lock, not a commit) reads nothing. A registry that cannot
//! be read sends a `problem` event (`{"error": …, "hint": …}`) and the
//! stream goes on. Nothing runs once the page is closed: the task ends
//! with its connection.

use super::Dashboard;
use super::api;
use super::reply::{self, Body};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::header::HeaderValue;
use hyper::{Response, StatusCode};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;

/// How often an open page gets fresh figures (memory, connections) when
/// nothing else changed.
pub const REFRESH: Duration = Duration::from_secs(2);

/// A comment sent when nothing was sent for this long, so that a stream
/// whose page has gone is noticed and ended.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Changes closer together than this make one snapshot.
const SETTLE: Duration = Duration::from_millis(30);

/// A streamed body fed by a channel: each message is one frame.
struct Stream {
    rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for Stream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|m| m.map(|b| Ok(Frame::data(b))))
    }
}

/// What tells one state of the registry file from another: its inode,
/// size and modification time (every commit changes them; a read does not).
fn stamp(dash: &Dashboard) -> Option<(u64, u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(dash.registry_dir.join(portd_store::REGISTRY_FILE)).ok()?;
    Some((m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
}

/// One event in the wire format: `event: NAME`, the data on one line.
pub fn event(name: &str, data: &str) -> Bytes {
    debug_assert!(!data.contains('\n'));
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// The snapshot as the data of a `projects` event, or a `problem` event.
async fn next(dash: &Arc<Dashboard>) -> Bytes {
    let d = Arc::clone(dash);
    match api::blocking(move || api::snapshot(&d)).await {
        Ok(list) => event("projects", &serde_json::to_string(&list).unwrap_or_default()),
        Err(e) => {
            let v = serde_json::json!({ "error": e.message(), "hint": e.hint() });
            event("problem", &v.to_string())
        }
    }
}

/// Answers `GET /api/events` with a stream that lives as long as the
/// connection.
pub fn events(dash: Arc<Dashboard>) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let mut changed = dash.changed.subscribe();
    tokio::spawn(async move {
        // Reconnect soon after the proxy restarts.
        if tx.send(Bytes::from_static(b"retry: 1000\n\n")).await.is_err() {
            return;
        }
        let mut last = Bytes::new();
        let mut quiet = Duration::ZERO;
        loop {
            changed.mark_unchanged();
            let seen = stamp(&dash);
            let msg = next(&dash).await;
            if msg != last {
                if tx.send(msg.clone()).await.is_err() {
                    return;
                }
                last = msg;
                quiet = Duration::ZERO;
            }
            let refresh = tokio::time::Instant::now() + REFRESH;
            loop {
                tokio::select! {
                    r = changed.changed() => {
                        if r.is_err() {
                            return;
                        }
                        tokio::time::sleep(SETTLE).await;
                        // Every reader writes `registry.lock`; a watch that
                        // reports that too must not make readers read again
                        // and again.
                        if stamp(&dash) != seen {
                            break;
                        }
                        changed.mark_unchanged();
                    }
                    () = tokio::time::sleep_until(refresh) => {
                        quiet += REFRESH;
                        if quiet >= KEEP_ALIVE {
                            quiet = Duration::ZERO;
                            if tx.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() {
                                return;
                            }
                        }
                        break;
                    }
                    () = tx.closed() => return,
                }
            }
        }
    });
    let mut r = reply::response(StatusCode::OK, "text/event-stream", Stream { rx }.boxed());
    r.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}
