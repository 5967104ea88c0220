//! The HTTP/2 and gRPC bounds of the control plane's listener, each pushed
//! past its limit by a raw HTTP/2 client (frames written by hand, or the
//! `h2` crate where it can send what is needed): streams past
//! `max_http2_streams`, header blocks past `http2_max_header_list_size`,
//! unanswered keep-alive pings, rapid reset, PING and SETTINGS floods, gRPC
//! messages past their sizes. After each abuse, a REST publish and a gRPC
//! publish from other connections still succeed.

mod common;

use std::time::Duration;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use common::h2::{self as raw, RawH2};
use common::{ADMIN, Http, Server, TestDb, app_with_key, authed, publish_url};
use herald_proto::api::admin_service_client::AdminServiceClient;
use herald_proto::api::publish_service_client::PublishServiceClient;
use herald_proto::api::{self as pb};
use herald_proto::units::{ByteSize, HumanDuration};
use serde_json::json;
use tokio::net::TcpStream;
use tonic::Code;
use tonic::transport::Channel;

const DEADLINE: Duration = Duration::from_secs(10);

async fn channel(server: &Server) -> Result<Channel> {
    Ok(Channel::from_shared(format!("http://{}", server.addr))?.connect().await?)
}

/// A REST publish and a gRPC publish, each on a new connection, succeed
/// within the deadline.
async fn still_serves(server: &Server, app: &str, key: &str) -> Result<()> {
    let rest = async {
        let r = Http::default()
            .json("POST", &publish_url(server, app, "chat:after"), Some(key), json!({"data": 1}))
            .await?;
        anyhow::ensure!(r.status == 202, "REST publish: {} {}", r.status, String::from_utf8_lossy(&r.body));
        Ok::<_, anyhow::Error>(())
    };
    tokio::time::timeout(DEADLINE, rest).await.context("REST publish in time")??;
    let grpc = async {
        let mut client = PublishServiceClient::new(channel(server).await?);
        let msg = pb::PublishRequest {
            app_id: app.into(),
            channel: "chat:after".into(),
            data: b"1".to_vec().into(),
            ..Default::default()
        };
        client.publish(authed(msg, key)).await?;
        Ok::<_, anyhow::Error>(())
    };
    tokio::time::timeout(DEADLINE, grpc).await.context("gRPC publish in time")?
}

async fn fixture(tweak: impl FnOnce(&mut herald_control_plane::Config)) -> Result<(Server, String, String)> {
    let server = Server::start(TestDb::sqlite(), tweak).await?;
    let (app, _, key) = app_with_key(&Http::default(), &server, Some(json!({"chat:*": ["publish"]}))).await?;
    Ok((server, app, key))
}

/// A publish request's header fields with a body of `len` bytes to come.
fn publish_fields(server: &Server, app: &str, key: &str, len: usize) -> Vec<(String, String)> {
    vec![
        (":method".into(), "POST".into()),
        (":scheme".into(), "http".into()),
        (":authority".into(), server.addr.to_string()),
        (":path".into(), format!("/v1/apps/{app}/channels/chat:x/messages")),
        ("authorization".into(), format!("Bearer {key}")),
        ("content-type".into(), "application/json".into()),
        ("content-length".into(), len.to_string()),
    ]
}

fn fields(f: &[(String, String)]) -> Vec<(&str, &str)> {
    f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// A JSON publish body of exactly `len` bytes.
fn body_of(len: usize) -> Vec<u8> {
    format!(r#"{{"data":"{}"}}"#, "x".repeat(len - 11)).into_bytes()
}

#[tokio::test]
async fn streams_past_max_http2_streams_are_refused_while_the_others_work() -> Result<()> {
    let (server, app, key) = fixture(|c| {
        c.max_http2_streams = 100;
        c.max_body_reads_per_key = 1_000;
    })
    .await?;
    let publish = publish_fields(&server, &app, &key, 100);
    let mut h2 = RawH2::connect(server.addr).await?;
    // 100 streams waiting for their bodies, then the 101st.
    for i in 0..100u32 {
        h2.request(2 * i + 1, &fields(&publish), false).await?;
    }
    h2.request(201, &fields(&publish), false).await?;
    loop {
        let f = h2.next(DEADLINE).await?.context("connection ended")?;
        if f.kind == raw::RST_STREAM {
            assert_eq!(f.stream, 201, "only the 101st stream is refused: {f:?}");
            assert_eq!(f.error_code(), Some(raw::REFUSED_STREAM), "{f:?}");
            break;
        }
        assert_ne!(f.kind, raw::GOAWAY, "the connection is not closed: {f:?}");
    }
    // The first stream still works: its body, then its answer.
    h2.send(raw::DATA, raw::END_STREAM, 1, &body_of(100)).await?;
    loop {
        let f = h2.next(DEADLINE).await?.context("connection ended")?;
        assert!(f.kind != raw::RST_STREAM && f.kind != raw::GOAWAY, "{f:?}");
        if f.kind == raw::HEADERS && f.stream == 1 {
            break;
        }
    }
    still_serves(&server, &app, &key).await?;
    server.stop().await;
    Ok(())
}

/// The `:status` of a response to an `h2` crate request, or the reset's
/// reason.
async fn h2_status(
    client: &mut h2::client::SendRequest<Bytes>,
    req: http::Request<()>,
) -> Result<Result<u16, h2::Reason>> {
    let (response, _) = client.send_request(req, true)?;
    match tokio::time::timeout(DEADLINE, response).await.context("answer in time")? {
        Ok(r) => Ok(Ok(r.status().as_u16())),
        Err(e) => Ok(Err(e.reason().context(format!("not a stream reset: {e}"))?)),
    }
}

#[tokio::test]
async fn header_blocks_past_the_limit_get_431_and_huge_ones_close_the_connection() -> Result<()> {
    let (server, app, key) = fixture(|c| c.http2_max_header_list_size = ByteSize::kib(8)).await?;
    let tcp = TcpStream::connect(server.addr).await?;
    let (mut client, conn) = h2::client::handshake(tcp).await?;
    let conn = tokio::spawn(conn);
    let healthz = |big: Option<usize>| {
        let mut req = http::Request::get(format!("http://{}/healthz", server.addr));
        if let Some(n) = big {
            req = req.header("x-big", "a".repeat(n));
        }
        req.body(()).context("request")
    };
    assert_eq!(h2_status(&mut client, healthz(None)?).await?, Ok(200));
    // Over the limit: 431 (or the stream refused), the connection goes on.
    let over = h2_status(&mut client, healthz(Some(12 * 1024))?).await?;
    assert!(matches!(over, Ok(431) | Err(h2::Reason::REFUSED_STREAM)), "{over:?}");
    assert_eq!(h2_status(&mut client, healthz(None)?).await?, Ok(200), "the connection still serves");
    // Far over it (a megabyte of CONTINUATION frames): the connection is
    // closed instead of buffering it.
    let huge = client.send_request(healthz(Some(1 << 20))?, true).map(|(r, _)| r);
    if let Ok(response) = huge {
        let answer = tokio::time::timeout(DEADLINE, response).await.context("answer in time")?;
        assert!(answer.is_err(), "a megabyte header block is refused: {:?}", answer.map(|r| r.status()));
    }
    let ended = tokio::time::timeout(DEADLINE, conn).await.context("the connection ends")??;
    assert!(ended.is_err(), "ended by the server with an error: {ended:?}");
    still_serves(&server, &app, &key).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_peer_that_stops_answering_pings_is_disconnected() -> Result<()> {
    let (server, app, key) = fixture(|c| {
        c.http2_keepalive_interval = HumanDuration::secs(1);
        c.http2_keepalive_timeout = HumanDuration::secs(1);
        c.http_idle_timeout = HumanDuration::secs(120);
    })
    .await?;
    let mut silent = RawH2::connect(server.addr).await?;
    let mut polite = RawH2::connect(server.addr).await?;
    // The polite one answers every ping for six seconds and stays.
    let answering = tokio::spawn(async move {
        let until = tokio::time::Instant::now() + Duration::from_secs(6);
        let mut pings = 0;
        while tokio::time::Instant::now() < until {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            match polite.next(left).await {
                Ok(Some(f)) if f.kind == raw::PING && f.flags & raw::ACK == 0 => {
                    polite.send(raw::PING, raw::ACK, 0, &f.payload).await?;
                    pings += 1;
                }
                Ok(Some(f)) => anyhow::ensure!(f.kind != raw::GOAWAY, "polite peer sent GOAWAY: {f:?}"),
                Ok(None) => anyhow::bail!("the polite peer was disconnected"),
                Err(_) => break, // nothing more in time: still connected
            }
        }
        Ok::<_, anyhow::Error>(pings)
    });
    assert!(silent.closed(Duration::from_secs(15)).await, "the silent peer is disconnected");
    let pings = answering.await??;
    assert!(pings >= 2, "the polite peer was pinged ({pings}) and stayed");
    still_serves(&server, &app, &key).await?;
    server.stop().await;
    Ok(())
}

/// Opens and resets streams in a loop, 50 pairs per write, until the
/// server stops reading; true when it then closed the connection.
async fn reset_in_a_loop(server: &Server, app: &str, key: &str) -> Result<bool> {
    let publish = publish_fields(server, app, key, 100);
    let mut h2 = RawH2::connect(server.addr).await?;
    let block = raw::header_block(&fields(&publish));
    let mut id = 1u32;
    for _ in 0..200 {
        let mut bytes = Vec::new();
        for _ in 0..50 {
            bytes.extend(raw::frame(raw::HEADERS, raw::END_HEADERS, id, &block));
            bytes.extend(raw::frame(raw::RST_STREAM, 0, id, &raw::CANCEL.to_be_bytes()));
            id += 2;
        }
        if h2.send_raw(&bytes).await.is_err() {
            break;
        }
    }
    Ok(h2.closed(DEADLINE).await)
}

#[tokio::test]
async fn rapid_reset_is_disconnected() -> Result<()> {
    // With the defaults (h2's bound on streams reset before they are
    // accepted, or http2_max_resets_per_sec, whichever comes first).
    let (server, app, key) = fixture(|c| c.max_body_reads_per_key = 100_000).await?;
    assert!(reset_in_a_loop(&server, &app, &key).await?, "the resetting client is disconnected");
    still_serves(&server, &app, &key).await?;
    server.stop().await;

    // With http2_max_resets_per_sec under h2's own bound: the frame guard
    // disconnects it, and counts it.
    let (server, app, key) = fixture(|c| {
        c.max_body_reads_per_key = 100_000;
        c.http2_max_resets_per_sec = 10;
    })
    .await?;
    assert!(reset_in_a_loop(&server, &app, &key).await?, "the resetting client is disconnected");
    let metrics = Http::default().get(&server.url("/metrics"), None).await?;
    let page = String::from_utf8_lossy(&metrics.body);
    assert!(page.contains(r#"herald_cp_connections_closed_total{limit="http2_max_resets_per_sec"} 1"#), "{page}");
    still_serves(&server, &app, &key).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn ping_and_settings_floods_are_disconnected() -> Result<()> {
    let (server, app, key) = fixture(|_| {}).await?;
    for (what, kind, payload) in [("PING", raw::PING, vec![0u8; 8]), ("SETTINGS", raw::SETTINGS, Vec::new())] {
        let mut h2 = RawH2::connect(server.addr).await?;
        let flood: Vec<u8> = (0..5_000).flat_map(|_| raw::frame(kind, 0, 0, &payload)).collect();
        let _ = h2.send_raw(&flood).await; // may fail once the server closed
        assert!(h2.closed(DEADLINE).await, "a {what} flood is disconnected");
    }
    let metrics = Http::default().get(&server.url("/metrics"), None).await?;
    let page = String::from_utf8_lossy(&metrics.body);
    assert!(
        page.contains(r#"herald_cp_connections_closed_total{limit="http2_max_control_frames_per_sec"} 2"#),
        "{page}"
    );
    still_serves(&server, &app, &key).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn grpc_messages_are_bounded_both_ways() -> Result<()> {
    let (server, app, key) = fixture(|c| {
        c.max_body_size = ByteSize::kib(64);
        c.max_message_size_ceiling = ByteSize::kib(32);
        c.default_max_message_size = ByteSize::kib(1);
        c.grpc_max_response_size = ByteSize::kib(1);
    })
    .await?;
    // A request over max_body_size: OUT_OF_RANGE.
    let mut publish = PublishServiceClient::new(channel(&server).await?);
    let msg = pb::PublishRequest {
        app_id: app.clone(),
        channel: "chat:x".into(),
        data: vec![7u8; 100 * 1024].into(),
        ..Default::default()
    };
    let status = publish.publish(authed(msg, &key)).await.expect_err("too large");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");

    // A message that only says it is a gigabyte: refused from its length
    // prefix, without waiting for (or buffering) the rest.
    let tcp = TcpStream::connect(server.addr).await?;
    let (mut client, conn) = h2::client::handshake(tcp).await?;
    tokio::spawn(conn);
    let req = http::Request::post(format!("http://{}/herald.api.v1.PublishService/Publish", server.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {key}"))
        .body(())?;
    let (response, mut body) = client.send_request(req, false)?;
    let mut prefix = vec![0u8, 0x40, 0, 0, 0];
    prefix.extend_from_slice(&[1u8; 1000]);
    body.send_data(Bytes::from(prefix), false)?;
    let response = tokio::time::timeout(DEADLINE, response).await.context("answered before the body")??;
    let mut grpc_status = response.headers().get("grpc-status").cloned();
    if grpc_status.is_none() {
        let mut rbody = response.into_body();
        while rbody.data().await.is_some() {}
        let trailers = tokio::time::timeout(DEADLINE, rbody.trailers()).await??;
        grpc_status = trailers.and_then(|t| t.get("grpc-status").cloned());
    }
    assert_eq!(grpc_status.as_ref().and_then(|v| v.to_str().ok()), Some("11"), "OUT_OF_RANGE");

    // A response over grpc_max_response_size: OUT_OF_RANGE.
    let http = Http::default();
    for i in 0..20 {
        let r = http.json("POST", &server.url("/v1/apps"), Some(ADMIN), json!({"name": format!("app {i}")})).await?;
        assert_eq!(r.status, 201);
    }
    let mut admin = AdminServiceClient::new(channel(&server).await?);
    let status = admin.list_apps(authed(pb::ListAppsRequest {}, ADMIN)).await.expect_err("too large");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    // Health answers (small responses still go out).
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel(&server).await?);
    health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await?;
    still_serves(&server, &app, &key).await?;
    server.stop().await;
    Ok(())
}
