//! The dashboard (`[web] listen`): a read-only page the daemon serves, so a user sees the
//! site without a broker client or a database.
//!
//! What it shows is the state document the status task publishes on MQTT
//! ([`StateDoc`], built once per step by `status::state_json`): one source, so the page
//! and `gridminer/{site}/state` cannot disagree. Once a second the newest document goes
//! to every open page as a server-sent event (`GET /api/events`), with a sample of the
//! power flow taken from it ([`history`]); the last hour of samples is kept for a page
//! that opens later (`GET /api/history`).
//!
//! The page's files (HTML, script, style, and the vendored uPlot from `crate::assets`)
//! are embedded in the binary: no CDN, no build step, a site with no internet sees it.
//! The Content-Security-Policy lets the page reach its own origin only.
//!
//! Must not: accept anything but reads (no route changes state), serve anything the
//! state document does not already publish (no config, no secret), block the status
//! task (it only replaces a `watch` value), or keep the daemon from stopping (every
//! event stream ends at shutdown).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::{Stream, StreamExt};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::error::TelemetryError;
use crate::assets::{UPLOT_CSS, UPLOT_JS, UPLOT_LICENSE};
use crate::clock::Timestamp;

pub mod history;

use history::{History, Sample};

const INDEX_HTML: &str = include_str!("index.html");
const DASHBOARD_JS: &str = include_str!("dashboard.js");
const DASHBOARD_CSS: &str = include_str!("dashboard.css");

/// The page may load and connect to its own origin only; nothing inline runs.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// How often open pages get the newest state.
pub const UPDATE_EVERY: Duration = Duration::from_secs(1);

/// One state document as the status task published it: the value (the page's samples
/// are taken from it) and its text (sent to pages as it went to MQTT).
#[derive(Debug)]
pub struct StateDoc {
    pub at: Timestamp,
    pub value: Value,
    pub text: String,
}

impl StateDoc {
    pub fn new(at: Timestamp, value: Value) -> Self {
        let text = value.to_string();
        StateDoc { at, value, text }
    }
}

/// What every open page gets once a second: `{"sample": ..., "state": ...}`, serialised
/// once for all of them.
#[derive(Debug, Default)]
struct Frame {
    seq: u64,
    text: Arc<str>,
}

struct Shared {
    docs: watch::Receiver<Arc<StateDoc>>,
    frames: watch::Sender<Arc<Frame>>,
    history: Mutex<History>,
    shutdown: CancellationToken,
}

/// The dashboard's HTTP server, bound and ready to run.
pub struct Dashboard {
    listener: TcpListener,
    docs: watch::Receiver<Arc<StateDoc>>,
}

impl Dashboard {
    pub async fn bind(
        addr: SocketAddr,
        docs: watch::Receiver<Arc<StateDoc>>,
    ) -> Result<Self, TelemetryError> {
        let listener = TcpListener::bind(addr).await.map_err(TelemetryError::Web)?;
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "Dashboard reachable from the network: it is read-only and has no login");
        }
        Ok(Self::from_listener(listener, docs))
    }

    /// Serves on a listener already bound (tests bind `127.0.0.1:0`).
    pub fn from_listener(listener: TcpListener, docs: watch::Receiver<Arc<StateDoc>>) -> Self {
        Dashboard { listener, docs }
    }

    pub fn local_addr(&self) -> Result<SocketAddr, TelemetryError> {
        self.listener.local_addr().map_err(TelemetryError::Web)
    }

    /// Serves until `shutdown`; open event streams end then, so the server's graceful
    /// stop does not wait on a page that never closes.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), TelemetryError> {
        let (frames, _) = watch::channel(Arc::new(Frame::default()));
        let shared = Arc::new(Shared {
            docs: self.docs,
            frames,
            history: Mutex::new(History::default()),
            shutdown: shutdown.clone(),
        });
        let app = router(shared.clone());
        let server = axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        let (served, ()) = tokio::join!(server, frames_loop(shared, shutdown));
        served.map_err(TelemetryError::Web)
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { page(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/assets/dashboard.js",
            get(|| async { asset(DASHBOARD_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/assets/dashboard.css",
            get(|| async { asset(DASHBOARD_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/assets/uPlot.iife.min.js",
            get(|| async { asset(UPLOT_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/assets/uPlot.min.css",
            get(|| async { asset(UPLOT_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/assets/LICENSE-uPlot",
            get(|| async { asset(UPLOT_LICENSE, "text/plain; charset=utf-8") }),
        )
        .route("/api/state", get(state))
        .route("/api/history", get(history_json))
        .route("/api/events", get(events))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(shared)
}

/// A response with the headers every answer carries: the page's policy, no sniffing.
fn with_headers(body: impl IntoResponse, kind: &'static str, cache: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

fn page(body: &'static str, kind: &'static str) -> Response {
    with_headers(body, kind, "no-cache")
}

/// The embedded files change only with the binary: an hour of caching is safe.
fn asset(body: &'static str, kind: &'static str) -> Response {
    with_headers(body, kind, "max-age=3600")
}

fn json(body: impl IntoResponse) -> Response {
    with_headers(body, "application/json", "no-store")
}

/// The newest state document, exactly as MQTT has it.
async fn state(State(s): State<Arc<Shared>>) -> Response {
    let doc = s.docs.borrow().clone();
    json(doc.text.clone())
}

/// The last hour of samples, as columns.
async fn history_json(State(s): State<Arc<Shared>>) -> Response {
    let body = s
        .history
        .lock()
        .expect("no panic while the history is locked")
        .to_json()
        .to_string();
    json(body)
}

/// Server-sent events: the newest frame at once, then each new one. A slow page skips
/// frames rather than queueing them (`watch`: the latest wins).
async fn events(
    State(s): State<Arc<Shared>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut rx = s.frames.subscribe();
    if rx.borrow().seq > 0 {
        rx.mark_changed();
    }
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok()?;
        let f = rx.borrow_and_update().clone();
        let ev = Event::default()
            .event("frame")
            .id(f.seq.to_string())
            .data(&*f.text);
        Some((Ok(ev), rx))
    })
    .take_until(s.shutdown.clone().cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// Once a second: a new state document, if one came, becomes a sample in the history and
/// the frame every page gets.
async fn frames_loop(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut docs = shared.docs.clone();
    docs.mark_changed();
    let mut tick = tokio::time::interval(UPDATE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut seq = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        if !docs.has_changed().unwrap_or(false) {
            continue;
        }
        let doc = docs.borrow_and_update().clone();
        let sample = Sample::of(&doc.value, doc.at);
        seq += 1;
        let text = format!("{{\"sample\":{},\"state\":{}}}", sample.to_json(), doc.text);
        shared
            .history
            .lock()
            .expect("no panic while the history is locked")
            .push(sample);
        shared.frames.send_replace(Arc::new(Frame {
            seq,
            text: text.into(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_only_the_pages_own_origin() {
        for part in [
            "default-src 'none'",
            "script-src 'self'",
            "connect-src 'self'",
        ] {
            assert!(CSP.contains(part), "{part}");
        }
        assert!(!CSP.contains("unsafe-inline") && !CSP.contains("http"));
    }

    #[test]
    fn the_page_loads_only_what_is_served() {
        // Every file the page names is a route, and nothing comes from elsewhere.
        for src in [
            "/assets/dashboard.js",
            "/assets/dashboard.css",
            "/assets/uPlot.iife.min.js",
            "/assets/uPlot.min.css",
        ] {
            assert!(INDEX_HTML.contains(src), "{src}");
        }
        assert!(!INDEX_HTML.contains("http://") && !INDEX_HTML.contains("https://"));
        assert!(!INDEX_HTML.contains("<script>"), "no inline script");
    }
}
