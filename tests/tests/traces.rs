//! End to end: with `otlp_endpoint` set, the control plane and the edge
//! export spans over OTLP/gRPC (to a collector this test runs), and one
//! trace spans a REST publish and its delivery on the edge: the edge's
//! `deliver` span is a child of the control plane's request span, which
//! is itself the child of the caller's `traceparent`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::StreamExt as _;
use herald_sdk::{Client, Publisher, TokenRequest};
use herald_tests::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A span as received: service, name, trace id, span id, parent span id.
#[derive(Debug, Clone)]
struct Got {
    service: String,
    name: String,
    trace: Vec<u8>,
    span: Vec<u8>,
    parent: Vec<u8>,
}

/// An OTLP/gRPC collector that keeps every span it is sent.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Got>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut got = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for resource in request.into_inner().resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| match a.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                got.push(Got {
                    service: service.clone(),
                    name: span.name,
                    trace: span.trace_id,
                    span: span.span_id,
                    parent: span.parent_span_id,
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

impl Collector {
    async fn start(self) -> Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let incoming = tokio_stream_of(listener);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(self))
                .serve_with_incoming(incoming),
        );
        Ok(addr)
    }

    fn spans(&self) -> Vec<Got> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The listener's connections as the stream tonic serves.
fn tokio_stream_of(
    listener: tokio::net::TcpListener,
) -> impl futures_util::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures_util::stream::unfold(listener, |listener| async move {
        let next = listener.accept().await.map(|(stream, _)| stream);
        Some((next, listener))
    })
}

/// POSTs a message with a `traceparent` header; the HTTP status.
async fn publish_traced(addr: SocketAddr, app: &str, key: &str, traceparent: &str) -> Result<u16> {
    let body = r#"{"data":"traced"}"#;
    let request = format!(
        "POST /v1/apps/{app}/channels/room/messages HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
         traceparent: {traceparent}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await??;
    let text = String::from_utf8_lossy(&response);
    text.split(' ').nth(1).and_then(|s| s.parse().ok()).context("no HTTP status")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_and_its_delivery_are_one_trace() -> Result<()> {
    let collector = Collector::default();
    let endpoint = format!("http://{}", collector.clone().start().await?);
    let (nats, prefix) = (nats_url(), unique_prefix());
    let db = TestDb::create().await?;
    // Export in small batches at once, not every five seconds.
    let fast = ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned());
    let cp = ControlPlaneProc::start_with(
        &db,
        &nats,
        &prefix,
        &[("HERALD_CP_OTLP_ENDPOINT", endpoint.clone()), fast.clone()],
    )
    .await?;
    let edge = EdgeProc::start_with(
        "edge-traced",
        free_addr(),
        &cp,
        &nats,
        &prefix,
        &[("HERALD_EDGE_OTLP_ENDPOINT", endpoint.clone()), fast],
    )
    .await?;
    let (app, key) = cp.create_app_and_key()?;
    let publisher = Publisher::new(cp.url(), &app, &key)?;
    let tokens = publisher.token_provider(TokenRequest::new("alice").allow("*", ["subscribe"]));
    let client = Client::builder(edge.url()).token_provider(tokens).connect().await?;
    let mut sub = client.subscribe("room").await?;

    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller = "00f067aa0ba902b7";
    assert_eq!(publish_traced(cp.addr, &app, &key, &format!("00-{trace}-{caller}-01")).await?, 202);
    let message = tokio::time::timeout(Duration::from_secs(10), sub.next()).await?.context("subscription ended")?;
    assert_eq!(&message.data[..], b"traced", "a JSON string is delivered as its text");

    // Both spans reach the collector, in one trace.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (request, deliver) = loop {
        let spans: Vec<Got> = collector.spans().into_iter().filter(|s| hex(&s.trace) == trace).collect();
        let request = spans.iter().find(|s| s.service == "herald-control-plane").cloned();
        let deliver = spans.iter().find(|s| s.service == "herald-edge" && s.name == "deliver").cloned();
        if let (Some(request), Some(deliver)) = (request, deliver) {
            break (request, deliver);
        }
        if Instant::now() > deadline {
            bail!("spans of the trace not all exported; the collector has {:?}", collector.spans());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(request.name, "POST /v1/apps/{app_id}/channels/{channel}/messages");
    assert_eq!(hex(&request.parent), caller, "the request span continues the caller's trace");
    assert_eq!(deliver.parent, request.span, "the delivery is a child of the request");
    client.close().await;

    // A publish without a traceparent starts a trace of its own, delivery
    // included.
    publisher.publish("room", "untraced").await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !collector.spans().iter().any(|s| s.service == "herald-control-plane" && hex(&s.trace) != trace) {
        if Instant::now() > deadline {
            bail!("no span of a new trace exported");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
