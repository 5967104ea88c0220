//! The console as a browser without JavaScript sees it: a control plane
//! on `127.0.0.1:0` over a local bus, a visitor with a cookie jar that
//! checks the security headers of every answer, and a reader of the
//! console's Server-Sent Events streams.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use herald_bus::{Bus, LocalBus};
use herald_control_plane::{Config, ControlPlane, Core};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::{ADMIN, Http, TestDb};

/// A control plane on `127.0.0.1:0` with its core at hand.
pub struct Cp {
    pub addr: SocketAddr,
    pub core: Arc<Core>,
    /// The bus the control plane is on.
    pub bus: Bus,
    /// Dropped or sent: the control plane shuts down.
    pub stop: Option<oneshot::Sender<()>>,
}

pub async fn start(db: &TestDb, tweak: impl FnOnce(&mut Config)) -> Result<Cp> {
    let mut cfg = super::config(db);
    tweak(&mut cfg);
    let local = LocalBus::new();
    let bus = Bus::local(&local);
    let cp = ControlPlane::new(cfg, bus.clone()).await?;
    let core = cp.core().clone();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = cp
            .serve(listener, async move {
                let _ = rx.await;
            })
            .await;
    });
    Ok(Cp { addr, core, bus, stop: Some(stop) })
}

pub struct Page {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

/// A browser without JavaScript: one cookie jar, no redirects followed.
pub struct Visitor {
    pub base: String,
    pub client: Client<HttpConnector, Full<Bytes>>,
    pub cookie: Option<String>,
}

impl Visitor {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            base: format!("http://{addr}"),
            client: Client::builder(TokioExecutor::new()).build_http(),
            cookie: None,
        }
    }

    pub async fn send(&mut self, method: &str, path: &str, kind: Option<&str>, body: Bytes) -> Result<Page> {
        let mut req = http::Request::builder().method(method).uri(format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        if let Some(k) = kind {
            req = req.header("content-type", k);
        }
        let res = self.client.request(req.body(Full::new(body))?).await?;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        if let Some(set) = headers.get("set-cookie").and_then(|v| v.to_str().ok()) {
            let pair = set.split(';').next().unwrap_or("").to_owned();
            self.cookie = if pair.ends_with('=') { None } else { Some(pair) };
        }
        let body = String::from_utf8_lossy(&res.into_body().collect().await?.to_bytes()).into_owned();
        assert_headers(path, status, &headers);
        assert_ne!(status, 401, "{method} {path} answered 401");
        assert!(status < 500, "{method} {path} answered {status}: {body}");
        Ok(Page { status, headers, body })
    }

    pub async fn get(&mut self, path: &str) -> Result<Page> {
        self.send("GET", path, None, Bytes::new()).await
    }

    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Result<Page> {
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
        self.send("POST", path, Some("application/x-www-form-urlencoded"), Bytes::from(body)).await
    }

    pub async fn sign_in(&mut self) -> Result<()> {
        let r = self.post("/console/signin", &[("token", ADMIN)]).await?;
        if r.status != 303 || self.cookie.is_none() {
            bail!("sign-in: {} {}", r.status, r.body);
        }
        Ok(())
    }

    /// The CSRF token of the signed-in pages.
    pub async fn csrf(&mut self) -> Result<String> {
        let page = self.get("/console/apps").await?;
        csrf_of(&page.body).context("no CSRF field on /console/apps")
    }
}

pub fn csrf_of(html: &str) -> Option<String> {
    let at = html.find(r#"name="csrf" value=""#)? + r#"name="csrf" value=""#.len();
    Some(html[at..].split('"').next()?.to_owned())
}

/// Every console response carries these.
pub fn assert_headers(path: &str, status: u16, h: &http::HeaderMap) {
    let get = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
    assert_eq!(get("content-security-policy"), herald_control_plane::console::CSP, "{path} ({status})");
    assert_eq!(get("x-frame-options"), "DENY", "{path} ({status})");
    assert_eq!(get("x-content-type-options"), "nosniff", "{path} ({status})");
    assert_eq!(get("referrer-policy"), "no-referrer", "{path} ({status})");
    if !path.starts_with("/console/assets/") {
        assert_eq!(get("cache-control"), "no-store", "{path} ({status})");
    }
}

pub async fn app_names(http: &Http, addr: SocketAddr) -> Result<Vec<String>> {
    let r = http.get(&format!("http://{addr}/v1/apps"), Some(ADMIN)).await?;
    Ok(r.json()["apps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["name"].as_str().map(str::to_owned))
        .collect())
}

/// A console Server-Sent Events stream as a browser's `EventSource` reads
/// it: the `data:` of each `event: debug`, parsed.
pub struct Stream {
    pub status: u16,
    pub headers: http::HeaderMap,
    events: tokio::sync::mpsc::Receiver<serde_json::Value>,
}

/// Longest wait for something a stream should show.
pub const STREAM_LIMIT: Duration = Duration::from_secs(20);

impl Stream {
    /// Reads events until one passes `check`; returns it and those before.
    pub async fn until(
        &mut self,
        what: &str,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<(serde_json::Value, Vec<serde_json::Value>)> {
        let mut before = Vec::new();
        let found = tokio::time::timeout(STREAM_LIMIT, async {
            while let Some(event) = self.events.recv().await {
                if check(&event) {
                    return Some(event);
                }
                before.push(event);
            }
            None
        })
        .await
        .with_context(|| format!("timed out waiting for {what}; saw {before:?}"))?
        .with_context(|| format!("the stream ended before {what}; saw {before:?}"))?;
        Ok((found, before))
    }

    /// The next event within `wait`, if any (`Err` when the stream ended).
    pub async fn next_within(&mut self, wait: Duration) -> Result<Option<serde_json::Value>> {
        match tokio::time::timeout(wait, self.events.recv()).await {
            Ok(Some(v)) => Ok(Some(v)),
            Ok(None) => bail!("the stream ended"),
            Err(_) => Ok(None),
        }
    }

    /// Waits until the stream ends, at most `limit`.
    pub async fn ended_within(&mut self, limit: Duration) -> Result<()> {
        tokio::time::timeout(limit, async { while self.events.recv().await.is_some() {} })
            .await
            .with_context(|| format!("the stream was still open after {limit:?}"))
    }
}

impl Visitor {
    /// Opens `path` as an event stream with this visitor's cookie.
    pub async fn stream(&self, path: &str) -> Result<Stream> {
        let mut req = http::Request::builder()
            .method("GET")
            .uri(format!("{}{path}", self.base))
            .header("accept", "text/event-stream");
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        let res = self.client.request(req.body(Full::new(Bytes::new()))?).await?;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        assert_headers(path, status, &headers);
        let (tx, events) = tokio::sync::mpsc::channel(1000);
        let mut body = res.into_body();
        tokio::spawn(async move {
            let (mut buf, mut event) = (String::new(), String::new());
            while let Some(Ok(frame)) = body.frame().await {
                let Ok(data) = frame.into_data() else { continue };
                buf.push_str(&String::from_utf8_lossy(&data));
                while let Some(at) = buf.find('\n') {
                    let line: String = buf.drain(..=at).collect();
                    let line = line.trim_end_matches(['\n', '\r']);
                    if let Some(name) = line.strip_prefix("event:") {
                        event = name.trim().to_owned();
                    } else if let Some(data) = line.strip_prefix("data:")
                        && event == "debug"
                        && let Ok(value) = serde_json::from_str(data.trim())
                        && tx.send(value).await.is_err()
                    {
                        return;
                    }
                }
            }
        });
        Ok(Stream { status, headers, events })
    }
}
