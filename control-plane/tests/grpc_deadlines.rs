//! gRPC request bodies are bounded in time by the REST body limits, over
//! real HTTP/2 connections: a unary call whose request message stalls (or
//! trickles in) is answered `DEADLINE_EXCEEDED` naming the limit, with
//! `herald-error-code: request_timeout`, its stream is freed and the other
//! streams of its connection go on; a request stream (`PublishStream`)
//! may pause up to `http_idle_timeout` between messages, not longer, and a
//! message stalled inside it is bounded like a body.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use bytes::Bytes;
use common::{Http, Server, TestDb, app_with_key, authed};
use futures_util::StreamExt as _;
use herald_proto::api::publish_service_client::PublishServiceClient;
use herald_proto::api::{self as pb, publish_result};
use herald_proto::units::HumanDuration;
use serde_json::json;
use tokio::net::TcpStream;
use tonic::Code;
use tonic::transport::Channel;

/// Longest wait for anything the server should do at once.
const DEADLINE: Duration = Duration::from_secs(10);

async fn fixture(tweak: impl FnOnce(&mut herald_control_plane::Config)) -> Result<(Server, String, String)> {
    let server = Server::start(TestDb::sqlite(), tweak).await?;
    let (app, _, key) = app_with_key(&Http::default(), &server, Some(json!({"chat:*": ["publish"]}))).await?;
    Ok((server, app, key))
}

fn publish_request(app: &str, data: &[u8]) -> pb::PublishRequest {
    pb::PublishRequest {
        app_id: app.into(),
        channel: "chat:x".into(),
        data: data.to_vec().into(),
        ..Default::default()
    }
}

/// A message in gRPC's framing: flag, length, bytes.
fn framed(msg: &impl prost::Message) -> Vec<u8> {
    let body = msg.encode_to_vec();
    let mut out = vec![0];
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// An HTTP/2 connection made by the `h2` crate, driven in the background.
async fn h2_connection(server: &Server) -> Result<h2::client::SendRequest<Bytes>> {
    let tcp = TcpStream::connect(server.addr).await?;
    let (client, conn) = h2::client::handshake(tcp).await?;
    tokio::spawn(conn);
    Ok(client.ready().await?)
}

/// Starts a call of `method` (`Service/Method` in `herald.api.v1`); the
/// body is sent by the caller.
fn start_call(
    client: &mut h2::client::SendRequest<Bytes>,
    server: &Server,
    method: &str,
    key: &str,
) -> Result<(h2::client::ResponseFuture, h2::SendStream<Bytes>)> {
    let req = http::Request::post(format!("http://{}/herald.api.v1.{method}", server.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {key}"))
        .body(())?;
    Ok(client.send_request(req, false)?)
}

/// A call's outcome: `grpc-status`, `grpc-message` and `herald-error-code`
/// from the headers (trailers-only) or the trailers.
#[derive(Debug)]
struct Outcome {
    status: String,
    message: String,
    error_code: String,
}

async fn outcome(response: h2::client::ResponseFuture) -> Result<Outcome> {
    let response = tokio::time::timeout(DEADLINE * 6, response).await.context("an answer")??;
    let mut fields = response.headers().clone();
    if !fields.contains_key("grpc-status") {
        let mut body = response.into_body();
        while let Some(data) = body.data().await {
            let data = data?;
            let _ = body.flow_control().release_capacity(data.len());
        }
        fields = body.trailers().await?.context("trailers")?;
    }
    let get = |name: &str| fields.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    Ok(Outcome { status: get("grpc-status"), message: get("grpc-message"), error_code: get("herald-error-code") })
}

/// A whole unary publish on `client`: its `grpc-status`.
async fn publish_on(
    client: &mut h2::client::SendRequest<Bytes>,
    server: &Server,
    app: &str,
    key: &str,
) -> Result<String> {
    let (response, mut body) = start_call(client, server, "PublishService/Publish", key)?;
    body.send_data(Bytes::from(framed(&publish_request(app, b"1"))), true)?;
    Ok(tokio::time::timeout(DEADLINE, outcome(response)).await.context("publish answered")??.status)
}

/// Waits until the server resets `stream` (or it is otherwise over).
async fn reset(stream: &mut h2::SendStream<Bytes>) -> Result<()> {
    tokio::time::timeout(DEADLINE, std::future::poll_fn(|cx| stream.poll_reset(cx)))
        .await
        .context("the stream is reset")?
        .map(|_| ())
        .or_else(|e| if e.is_reset() || e.is_go_away() { Ok(()) } else { Err(e.into()) })
}

#[tokio::test]
async fn a_unary_call_stalled_in_its_message_ends_deadline_exceeded_and_frees_its_stream() -> Result<()> {
    let (server, app, key) = fixture(|c| {
        c.body_read_timeout = HumanDuration::secs(2);
        c.body_rate_grace = HumanDuration::secs(60);
    })
    .await?;
    let mut client = h2_connection(&server).await?;

    // HEADERS and part of the message, then nothing.
    let started = Instant::now();
    let (stalled, mut stalled_body) = start_call(&mut client, &server, "PublishService/Publish", &key)?;
    let whole = framed(&publish_request(&app, &[7; 100]));
    stalled_body.send_data(Bytes::copy_from_slice(&whole[..40]), false)?;
    let stalled = tokio::spawn(outcome(stalled));

    // Meanwhile, another call on the same connection is answered.
    assert_eq!(publish_on(&mut client, &server, &app, &key).await?, "0", "another stream works meanwhile");

    let answer = stalled.await??;
    let took = started.elapsed();
    assert_eq!(answer.status, "4", "DEADLINE_EXCEEDED: {answer:?}");
    assert!(answer.message.contains("body_read_timeout"), "{answer:?}");
    assert_eq!(answer.error_code, "request_timeout", "{answer:?}");
    assert!(took >= Duration::from_millis(1_900), "not before body_read_timeout: {took:?}");
    assert!(took < Duration::from_secs(5), "answered within body_read_timeout: {took:?}");
    reset(&mut stalled_body).await?;

    // The connection goes on.
    assert_eq!(publish_on(&mut client, &server, &app, &key).await?, "0", "the connection still serves");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_unary_message_trickling_in_is_cut_by_min_body_rate() -> Result<()> {
    let (server, app, key) = fixture(|c| {
        c.body_read_timeout = HumanDuration::secs(60);
        c.body_rate_grace = HumanDuration::secs(1);
    })
    .await?;
    let mut client = h2_connection(&server).await?;
    let started = Instant::now();
    let (response, mut body) = start_call(&mut client, &server, "PublishService/Publish", &key)?;
    let whole = framed(&publish_request(&app, &[7; 1_500]));
    // Ten bytes a second, against the default of 1 KiB a second.
    let trickle = tokio::spawn(async move {
        for b in whole {
            if body.send_data(Bytes::copy_from_slice(&[b]), false).is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let answer = outcome(response).await?;
    assert_eq!(answer.status, "4", "DEADLINE_EXCEEDED: {answer:?}");
    assert!(answer.message.contains("min_body_rate_per_sec"), "{answer:?}");
    assert_eq!(answer.error_code, "request_timeout", "{answer:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "cut after {:?}", started.elapsed());
    trickle.abort();
    assert_eq!(publish_on(&mut client, &server, &app, &key).await?, "0", "the connection still serves");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_request_stream_may_pause_up_to_http_idle_timeout_between_messages() -> Result<()> {
    let (server, app, key) = fixture(|c| {
        c.http_idle_timeout = HumanDuration::secs(2);
        c.body_read_timeout = HumanDuration::secs(4);
        c.body_rate_grace = HumanDuration::secs(60);
    })
    .await?;
    let channel = Channel::from_shared(format!("http://{}", server.addr))?.connect().await?;
    let mut publish = PublishServiceClient::new(channel);

    // Three messages a second apart: 3 s in all, every pause under 2 s.
    let a = app.clone();
    let paced = futures_util::stream::unfold(0u8, move |i| {
        let a = a.clone();
        async move {
            if i == 3 {
                return None;
            }
            if i > 0 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Some((publish_request(&a, &[i]), i + 1))
        }
    });
    let summary = publish.publish_stream(authed(paced, &key)).await?.into_inner();
    assert_eq!(summary.results.len(), 3);
    assert!(summary.results.iter().all(|r| matches!(r.result, Some(publish_result::Result::Ok(_)))), "{summary:?}");

    // One message, then silence: ended after http_idle_timeout.
    let started = Instant::now();
    let silent = futures_util::stream::iter([publish_request(&app, b"1")]).chain(futures_util::stream::pending());
    let status = publish.publish_stream(authed(silent, &key)).await.expect_err("ended by the server");
    let took = started.elapsed();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("http_idle_timeout"), "{status:?}");
    let code = status.metadata().get("herald-error-code").and_then(|v| v.to_str().ok());
    assert_eq!(code, Some("request_timeout"), "{status:?}");
    assert!(took >= Duration::from_millis(1_900) && took < Duration::from_secs(5), "after {took:?}");

    // A message stalled inside the stream: bounded like a body
    // (body_read_timeout from its first byte), not by the idle bound.
    let mut client = h2_connection(&server).await?;
    let started = Instant::now();
    let (response, mut body) = start_call(&mut client, &server, "PublishService/PublishStream", &key)?;
    let whole = framed(&publish_request(&app, &[7; 100]));
    body.send_data(Bytes::copy_from_slice(&whole[..40]), false)?;
    let answer = outcome(response).await?;
    let took = started.elapsed();
    assert_eq!(answer.status, "4", "DEADLINE_EXCEEDED: {answer:?}");
    assert!(answer.message.contains("body_read_timeout"), "{answer:?}");
    assert_eq!(answer.error_code, "request_timeout", "{answer:?}");
    assert!(took >= Duration::from_millis(3_900) && took < Duration::from_secs(7), "after {took:?}");
    reset(&mut body).await?;
    server.stop().await;
    Ok(())
}
