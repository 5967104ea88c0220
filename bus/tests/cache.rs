//! Cache channels keep their last message, in-process and over a real NATS
//! server (a fresh subject prefix per test).

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use herald_bus::{Bus, LocalBus, NatsOptions};
use herald_proto::{AppId, ChannelName, SubjectSpace, bus};
use prost::Message as _;

fn nats_url() -> String {
    std::env::var("HERALD_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

fn unique_prefix() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("cachetest{}x{nanos}", std::process::id())
}

fn message(data: &'static str) -> bus::ChannelMessage {
    bus::ChannelMessage { data: Bytes::from_static(data.as_bytes()), event: Some("e".into()), ..Default::default() }
}

async fn keeps_the_last_message(bus: &Bus) {
    let app = AppId::new("app1").expect("app");
    let other_app = AppId::new("app2").expect("app");
    let cache = ChannelName::new("private-cache-App.Models.1").expect("channel");
    let plain = ChannelName::new("plain").expect("channel");
    assert_eq!(bus.cached_message(&app, &cache).await.expect("read"), None, "nothing published yet");
    bus.publish(&app, &cache, &message("one")).await.expect("publish");
    bus.publish(&app, &cache, &message("two")).await.expect("publish");
    bus.publish(&app, &plain, &message("x")).await.expect("publish");
    let last = bus.cached_message(&app, &cache).await.expect("read").expect("kept");
    assert_eq!(bus::ChannelMessage::decode(last).expect("decodes").data, Bytes::from_static(b"two"));
    assert_eq!(bus.cached_message(&app, &plain).await.expect("read"), None, "not a cache channel");
    assert_eq!(bus.cached_message(&other_app, &cache).await.expect("read"), None, "apps stay apart");
}

#[tokio::test]
async fn in_process() {
    keeps_the_last_message(&Bus::local(&LocalBus::new())).await;
}

#[tokio::test]
async fn over_nats() {
    let subjects = SubjectSpace::new(&unique_prefix()).expect("prefix");
    let bus = Bus::connect_nats(&nats_url(), subjects.clone(), NatsOptions::default()).await.expect("connect");
    keeps_the_last_message(&bus).await;
    // Leave nothing behind on the shared server.
    let client = async_nats::connect(nats_url()).await.expect("connect");
    let _ = async_nats::jetstream::new(client).delete_stream(subjects.cache_stream()).await;
}
