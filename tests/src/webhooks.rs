//! A webhook receiver for tests: a real HTTP server on `127.0.0.1:0` that
//! keeps every request (headers and raw body) and answers as scripted —
//! given statuses for the next requests, then a default; or never (a dead
//! endpoint that accepts the connection and hangs).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// With this status.
    Status(u16),
    /// Never.
    Hang,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Lowercase header names and their values.
    pub headers: HashMap<String, String>,
    /// The raw body.
    pub body: Bytes,
    /// The path.
    pub path: String,
    /// What it was answered.
    pub reply: Reply,
}

impl Received {
    /// The body as JSON (`Null` when it is not).
    #[must_use]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A header's value, or `""`.
    #[must_use]
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    /// The events it carries, one object each: a Herald-format body as it
    /// is; each of a Pusher-format body's `events`.
    #[must_use]
    pub fn events(&self) -> Vec<Value> {
        let v = self.json();
        match v.get("events") {
            Some(Value::Array(events)) => events.clone(),
            _ if v.is_object() => vec![v],
            _ => Vec::new(),
        }
    }
}

#[derive(Default)]
struct State {
    requests: Vec<Received>,
    script: VecDeque<Reply>,
    default: Option<Reply>,
}

/// The receiver; stops when dropped.
pub struct Receiver {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Starts one answering 200 until scripted otherwise.
    ///
    /// # Errors
    ///
    /// When it cannot bind.
    pub async fn start() -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let state = state.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            let headers = req
                                .headers()
                                .iter()
                                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                                .collect();
                            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let reply = {
                                let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                                let reply = s.script.pop_front().or(s.default).unwrap_or(Reply::Status(200));
                                s.requests.push(Received { headers, body, path, reply });
                                reply
                            };
                            match reply {
                                Reply::Status(code) => {
                                    let mut response = hyper::Response::new(Full::new(Bytes::from_static(b"ok")));
                                    *response.status_mut() =
                                        hyper::StatusCode::from_u16(code).unwrap_or(hyper::StatusCode::OK);
                                    Ok::<_, Infallible>(response)
                                }
                                Reply::Hang => std::future::pending().await,
                            }
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Ok(Self { addr, state, task })
    }

    /// `http://addr{path}`.
    #[must_use]
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The next requests get these answers, in order.
    pub fn script(&self, replies: &[Reply]) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).script.extend(replies.iter().copied());
    }

    /// Requests after the script get this answer.
    pub fn answer(&self, reply: Reply) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).default = Some(reply);
    }

    /// Every request so far.
    #[must_use]
    pub fn requests(&self) -> Vec<Received> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).requests.clone()
    }

    /// Every event so far (see [`Received::events`]) of requests answered
    /// 2xx, each with the request it came in.
    #[must_use]
    pub fn delivered(&self) -> Vec<(Value, Received)> {
        self.requests()
            .into_iter()
            .filter(|r| matches!(r.reply, Reply::Status(200..=299)))
            .flat_map(|r| r.events().into_iter().map(move |e| (e, r.clone())))
            .collect()
    }

    /// Waits until `check` holds for the requests so far; returns them.
    ///
    /// # Errors
    ///
    /// When it does not hold within `within`; the error lists what came.
    pub async fn wait(&self, within: Duration, check: impl Fn(&[Received]) -> bool) -> Result<Vec<Received>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let requests = self.requests();
            if check(&requests) {
                return Ok(requests);
            }
            if tokio::time::Instant::now() >= deadline {
                let bodies: Vec<String> =
                    requests.iter().map(|r| String::from_utf8_lossy(&r.body).into_owned()).collect();
                bail!("the receiver's condition did not hold within {within:?}; it got {bodies:#?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The name of an event in either format (`type` or `name`).
#[must_use]
pub fn event_name(event: &Value) -> &str {
    event.get("type").or_else(|| event.get("name")).and_then(Value::as_str).unwrap_or("")
}

/// Whether `events` hold an event named `name` on `channel`.
#[must_use]
pub fn has(events: &[(Value, Received)], name: &str, channel: &str) -> bool {
    events.iter().any(|(e, _)| event_name(e) == name && e["channel"] == channel)
}

/// The Herald signature check a receiver makes: some `v1=` of the
/// `Herald-Webhook-Signature` header is HMAC-SHA256(secret,
/// "{timestamp}.{body}"), and the timestamp is within `window` of now.
#[must_use]
pub fn herald_signature_valid(received: &Received, secret: &str, window: Duration) -> bool {
    let ts = received.header("herald-webhook-timestamp");
    let Ok(ts_num) = ts.parse::<u64>() else { return false };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    if now.abs_diff(ts_num) > window.as_secs() {
        return false;
    }
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut signed = ts.as_bytes().to_vec();
    signed.push(b'.');
    signed.extend_from_slice(&received.body);
    received.header("herald-webhook-signature").split(' ').filter_map(|s| s.strip_prefix("v1=")).any(|hex| {
        let Some(tag) = decode_hex(hex) else { return false };
        ring::hmac::verify(&key, &signed, &tag).is_ok()
    })
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}
