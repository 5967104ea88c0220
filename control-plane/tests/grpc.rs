//! gRPC integration tests against a real PostgreSQL and NATS, on the REST
//! port.

mod common;

use std::time::Duration;

use anyhow::{Context as _, Result};
use common::{ADMIN, Server, TestDb, authed};
use futures_util::StreamExt as _;
use herald_proto::api::admin_service_client::AdminServiceClient;
use herald_proto::api::publish_service_client::PublishServiceClient;
use herald_proto::api::token_service_client::TokenServiceClient;
use herald_proto::api::{self as pb, publish_result};
use herald_proto::{AppId, ChannelName, bus};
use prost::Message as _;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

fn error_code(status: &Status) -> &str {
    status.metadata().get("herald-error-code").and_then(|v| v.to_str().ok()).unwrap_or("")
}

async fn channel(server: &Server) -> Result<Channel> {
    Ok(Channel::from_shared(format!("http://{}", server.addr))?.connect().await?)
}

struct Fixture {
    server: Server,
    admin: AdminServiceClient<Channel>,
    tokens: TokenServiceClient<Channel>,
    publish: PublishServiceClient<Channel>,
    app: String,
    key_id: String,
    key: String,
}

async fn fixture() -> Result<Fixture> {
    let server = Server::start(TestDb::postgres().await?, |c| c.max_batch_messages = 50).await?;
    let ch = channel(&server).await?;
    let mut admin = AdminServiceClient::new(ch.clone());
    let app = admin
        .create_app(authed(pb::CreateAppRequest { name: "grpc app".into(), ..Default::default() }, ADMIN))
        .await?
        .into_inner();
    let created = admin
        .create_key(authed(
            pb::CreateKeyRequest {
                app_id: app.id.clone(),
                name: "backend".into(),
                capabilities: vec![pb::Capability {
                    pattern: "chat:*".into(),
                    operations: vec!["publish".into(), "subscribe".into()],
                }],
                ..Default::default()
            },
            ADMIN,
        ))
        .await?
        .into_inner();
    let key_id = created.key.context("key")?.id;
    Ok(Fixture {
        server,
        admin,
        tokens: TokenServiceClient::new(ch.clone()),
        publish: PublishServiceClient::new(ch),
        app: app.id,
        key_id,
        key: created.secret,
    })
}

fn msg(app: &str, channel: &str, data: &[u8]) -> pb::PublishRequest {
    pb::PublishRequest { app_id: app.into(), channel: channel.into(), data: data.to_vec().into(), ..Default::default() }
}

#[tokio::test]
async fn admin_tokens_and_publish_over_grpc() -> Result<()> {
    let mut f = fixture().await?;
    let apps = f.admin.list_apps(authed(pb::ListAppsRequest {}, ADMIN)).await?.into_inner();
    assert_eq!(apps.apps.len(), 1);
    assert_eq!(apps.apps[0].limits.as_ref().map(|l| l.max_message_bytes), Some(64 * 1024));
    // An id of the caller's choosing, as REST's `id`.
    let named = f
        .admin
        .create_app(authed(
            pb::CreateAppRequest { name: "named".into(), id: Some(format!("{}-named", f.app)), ..Default::default() },
            ADMIN,
        ))
        .await?
        .into_inner();
    assert_eq!(named.id, format!("{}-named", f.app));
    let keys = f.admin.list_keys(authed(pb::ListKeysRequest { app_id: f.app.clone() }, ADMIN)).await?.into_inner();
    assert_eq!(keys.keys.len(), 1);
    assert_eq!(keys.keys[0].capabilities[0].pattern, "chat:*");

    let minted = f
        .tokens
        .mint_token(authed(
            pb::MintTokenRequest {
                app_id: f.app.clone(),
                client_id: "u1".into(),
                ttl_seconds: 60,
                ..Default::default()
            },
            &f.key,
        ))
        .await?
        .into_inner();
    assert!(!minted.token.is_empty());
    let now_ms = herald_bus::now_ms();
    assert!((minted.expires_at_ms - now_ms - 60_000).abs() < 5_000);

    let subject = f.server.subjects.channel(&AppId::new(&f.app)?, &ChannelName::new("chat:a")?);
    let mut sub = common::subscribe_ready(subject).await?;

    let one = f.publish.publish(authed(msg(&f.app, "chat:a", b"one"), &f.key)).await?.into_inner();
    assert!(!one.id.is_empty());
    let batch = f
        .publish
        .publish_batch(authed(
            pb::PublishBatchRequest {
                messages: vec![
                    msg(&f.app, "chat:a", b"two"),
                    msg(&f.app, "bad channel", b"x"),
                    msg(&f.app, "chat:a", b"three"),
                ],
            },
            &f.key,
        ))
        .await?
        .into_inner();
    assert_eq!(batch.results.len(), 3);
    assert!(matches!(batch.results[0].result, Some(publish_result::Result::Ok(_))));
    match &batch.results[1].result {
        Some(publish_result::Result::Error(e)) => assert_eq!(e.code, "invalid_channel"),
        other => panic!("expected an error, got {other:?}"),
    }
    // A batch that mixes apps: each message is checked against its own
    // app (this key may publish to one of them only).
    let mixed = f
        .publish
        .publish_batch(authed(
            pb::PublishBatchRequest {
                messages: vec![msg("some-other-app", "chat:a", b"x"), msg(&f.app, "chat:b", b"y")],
            },
            &f.key,
        ))
        .await?
        .into_inner();
    assert!(matches!(mixed.results[0].result, Some(publish_result::Result::Error(_))), "{mixed:?}");
    assert!(matches!(mixed.results[1].result, Some(publish_result::Result::Ok(_))), "{mixed:?}");

    // Client-streaming publish: 500 messages, one summary.
    let (app, key) = (f.app.clone(), f.key.clone());
    let stream = futures_util::stream::iter((0..500u32).map(move |i| msg(&app, "chat:a", &i.to_be_bytes())));
    let summary = f.publish.publish_stream(authed(stream, &key)).await?.into_inner();
    assert_eq!(summary.results.len(), 500);
    assert!(summary.results.iter().all(|r| matches!(r.result, Some(publish_result::Result::Ok(_)))));

    let mut got = Vec::new();
    while got.len() < 503 {
        let m = tokio::time::timeout(Duration::from_secs(5), sub.next()).await?.context("sub")?;
        got.push(bus::ChannelMessage::decode(m.payload)?.data);
    }
    assert_eq!((&got[0][..], &got[1][..], &got[2][..]), (&b"one"[..], &b"two"[..], &b"three"[..]));
    let streamed: Vec<u32> = got[3..].iter().map(|d| u32::from_be_bytes([d[0], d[1], d[2], d[3]])).collect();
    assert_eq!(streamed, (0..500).collect::<Vec<_>>(), "stream order is kept");

    let before_revoke = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let revoked = f
        .admin
        .revoke_key(authed(pb::RevokeKeyRequest { app_id: f.app.clone(), key_id: f.key_id.clone() }, ADMIN))
        .await?
        .into_inner();
    assert!(revoked.revoked_at_ms >= before_revoke, "{revoked:?}");
    assert!(revoked.edges_notified, "the bus took the revocation: {revoked:?}");
    let err = f.publish.publish(authed(msg(&f.app, "chat:a", b"late"), &f.key)).await.expect_err("revoked");
    assert_eq!((err.code(), error_code(&err)), (Code::Unauthenticated, "unauthorized"));
    f.admin.delete_app(authed(pb::DeleteAppRequest { app_id: f.app.clone() }, ADMIN)).await?;
    let err = f.admin.get_app(authed(pb::GetAppRequest { app_id: f.app.clone() }, ADMIN)).await.expect_err("deleted");
    assert_eq!((err.code(), error_code(&err)), (Code::NotFound, "not_found"));
    f.server.stop().await;
    Ok(())
}

#[tokio::test]
async fn grpc_errors_carry_codes() -> Result<()> {
    let mut f = fixture().await?;
    let check = |r: Result<(), Status>, code: Code, name: &str, what: &str| {
        let err = r.expect_err(what);
        assert_eq!((err.code(), error_code(&err)), (code, name), "{what}: {}", err.message());
    };
    check(
        f.publish.publish(Request::new(msg(&f.app, "chat:a", b"x"))).await.map(drop),
        Code::Unauthenticated,
        "unauthorized",
        "no credentials",
    );
    check(
        f.publish.publish(authed(msg(&f.app, "chat:a", b"x"), "hk_kzzz_nope")).await.map(drop),
        Code::Unauthenticated,
        "unauthorized",
        "wrong key",
    );
    check(
        f.admin.list_apps(authed(pb::ListAppsRequest {}, &f.key)).await.map(drop),
        Code::PermissionDenied,
        "forbidden",
        "admin with a key",
    );
    check(
        f.publish.publish(authed(msg(&f.app, "a b", b"x"), &f.key)).await.map(drop),
        Code::InvalidArgument,
        "invalid_channel",
        "invalid channel",
    );
    check(
        f.publish.publish(authed(msg(&f.app, "news", b"x"), &f.key)).await.map(drop),
        Code::PermissionDenied,
        "forbidden",
        "no capability",
    );
    check(
        f.publish.publish(authed(msg(&f.app, "chat:a", &vec![0u8; 70_000]), &f.key)).await.map(drop),
        Code::InvalidArgument,
        "too_large",
        "too large",
    );
    check(
        f.publish.publish(authed(msg("other-app", "chat:a", b"x"), &f.key)).await.map(drop),
        Code::PermissionDenied,
        "forbidden",
        "another app",
    );
    let both = pb::PublishRequest { channels: vec!["chat:b".into()], ..msg(&f.app, "chat:a", b"x") };
    check(
        f.publish.publish(authed(both, &f.key)).await.map(drop),
        Code::InvalidArgument,
        "bad_request",
        "channel and channels",
    );
    let many = pb::PublishBatchRequest { messages: (0..51).map(|_| msg(&f.app, "chat:a", b"x")).collect() };
    check(
        f.publish.publish_batch(authed(many, &f.key)).await.map(drop),
        Code::ResourceExhausted,
        "limit_exceeded",
        "batch too big",
    );
    let escalate = pb::MintTokenRequest {
        app_id: f.app.clone(),
        client_id: "u".into(),
        capabilities: vec![pb::Capability { pattern: "*".into(), operations: vec!["subscribe".into()] }],
        ..Default::default()
    };
    check(
        f.tokens.mint_token(authed(escalate, &f.key)).await.map(drop),
        Code::PermissionDenied,
        "forbidden",
        "escalation",
    );
    let long = pb::MintTokenRequest {
        app_id: f.app.clone(),
        client_id: "u".into(),
        ttl_seconds: 86_401,
        ..Default::default()
    };
    check(
        f.tokens.mint_token(authed(long, &f.key)).await.map(drop),
        Code::InvalidArgument,
        "bad_request",
        "ttl too long",
    );
    let bad_info = pb::MintTokenRequest {
        app_id: f.app.clone(),
        client_id: "u".into(),
        info: b"[1]".to_vec().into(),
        ..Default::default()
    };
    check(
        f.tokens.mint_token(authed(bad_info, &f.key)).await.map(drop),
        Code::InvalidArgument,
        "bad_request",
        "info not an object",
    );

    // Presence without the capability, and on a channel whose namespace has
    // none.
    let mut presence_client =
        herald_proto::api::presence_service_client::PresenceServiceClient::new(channel(&f.server).await?);
    check(
        presence_client
            .get_presence(authed(
                pb::GetPresenceRequest { app_id: f.app.clone(), channel: "chat:a".into(), ..Default::default() },
                &f.key,
            ))
            .await
            .map(drop),
        Code::PermissionDenied,
        "forbidden",
        "no presence capability",
    );
    let mut presence =
        herald_proto::api::presence_service_client::PresenceServiceClient::new(channel(&f.server).await?);
    check(
        presence
            .get_presence(authed(
                pb::GetPresenceRequest { app_id: f.app.clone(), channel: "chat:a".into(), ..Default::default() },
                ADMIN,
            ))
            .await
            .map(drop),
        Code::FailedPrecondition,
        "not_enabled",
        "presence off",
    );

    // An unknown service on the shared port answers Unimplemented.
    let mut grpc = tonic::client::Grpc::new(channel(&f.server).await?);
    grpc.ready().await.map_err(|e| anyhow::anyhow!("not ready: {e}"))?;
    let codec = tonic_prost::ProstCodec::<pb::GetPresenceRequest, pb::GetPresenceResponse>::default();
    let path = http::uri::PathAndQuery::from_static("/herald.api.v1.NoSuchService/Call");
    let err = grpc.unary(authed(pb::GetPresenceRequest::default(), &f.key), path, codec).await.expect_err("not served");
    assert_eq!(err.code(), Code::Unimplemented);
    f.server.stop().await;
    Ok(())
}

#[tokio::test]
async fn update_app_and_rotate_signing_keys_over_grpc() -> Result<()> {
    let mut f = fixture().await?;
    let updated = f
        .admin
        .update_app(authed(
            pb::UpdateAppRequest {
                app_id: f.app.clone(),
                name: Some("renamed".into()),
                limits: Some(pb::AppLimitsUpdate { publish_rate_per_sec: Some(7), ..Default::default() }),
                allowed_origins: Some(pb::AllowedOrigins { origins: vec!["https://chat.example".into()] }),
                ..Default::default()
            },
            ADMIN,
        ))
        .await?
        .into_inner();
    assert_eq!(updated.name, "renamed");
    assert_eq!(updated.allowed_origins, vec!["https://chat.example".to_owned()]);
    let limits = updated.limits.context("limits")?;
    assert_eq!((limits.publish_rate_per_sec, limits.max_message_bytes), (7, 64 * 1024), "unchanged limits stay");

    // Only what is given changes: an empty update keeps everything.
    let same = f
        .admin
        .update_app(authed(pb::UpdateAppRequest { app_id: f.app.clone(), ..Default::default() }, ADMIN))
        .await?
        .into_inner();
    assert_eq!((same.name.as_str(), same.allowed_origins.len()), ("renamed", 1));

    let bad = f
        .admin
        .update_app(authed(
            pb::UpdateAppRequest {
                app_id: f.app.clone(),
                allowed_origins: Some(pb::AllowedOrigins { origins: vec!["*".into()] }),
                ..Default::default()
            },
            ADMIN,
        ))
        .await
        .expect_err("not an origin");
    assert_eq!((bad.code(), error_code(&bad)), (Code::InvalidArgument, "bad_request"));
    let missing = f
        .admin
        .update_app(authed(pb::UpdateAppRequest { app_id: "nope".into(), ..Default::default() }, ADMIN))
        .await
        .expect_err("no such app");
    assert_eq!((missing.code(), error_code(&missing)), (Code::NotFound, "not_found"));
    let key = f
        .admin
        .update_app(authed(pb::UpdateAppRequest { app_id: f.app.clone(), ..Default::default() }, &f.key))
        .await
        .expect_err("an API key");
    assert_eq!(key.code(), Code::PermissionDenied);

    let first = f
        .admin
        .rotate_signing_keys(authed(pb::RotateSigningKeysRequest { overlap_seconds: Some(60) }, ADMIN))
        .await?
        .into_inner();
    let second = f
        .admin
        .rotate_signing_keys(authed(pb::RotateSigningKeysRequest { overlap_seconds: Some(0) }, ADMIN))
        .await?
        .into_inner();
    assert_ne!(first.kid, second.kid);
    assert_eq!(second.previous_kid.as_deref(), Some(first.kid.as_str()));
    let expires = second.previous_expires_at_ms.context("previous key's expiry")?;
    assert!((expires - herald_bus::now_ms()).abs() < 5_000, "overlap 0: the previous key leaves at once");
    let refused = f
        .admin
        .rotate_signing_keys(authed(pb::RotateSigningKeysRequest { overlap_seconds: Some(u64::MAX) }, ADMIN))
        .await
        .expect_err("overlap too long");
    assert_eq!(error_code(&refused), "bad_request");
    let refused = f
        .admin
        .rotate_signing_keys(authed(pb::RotateSigningKeysRequest::default(), &f.key))
        .await
        .expect_err("an API key");
    assert_eq!(refused.code(), Code::PermissionDenied);
    f.server.stop().await;
    Ok(())
}

/// A server with SQLite and the in-process bus: reflection and health need
/// neither NATS nor PostgreSQL.
async fn local_server() -> Result<Server> {
    let bus = herald_bus::Bus::local(&herald_bus::LocalBus::new());
    Server::start_with(TestDb::sqlite(), bus, common::subjects(), |_| {}).await
}

const API_SERVICES: [&str; 10] = [
    "herald.api.v1.AdminService",
    "herald.api.v1.TokenService",
    "herald.api.v1.PublishService",
    "herald.api.v1.NamespaceService",
    "herald.api.v1.ChannelService",
    "herald.api.v1.PresenceService",
    "herald.api.v1.UserService",
    "herald.api.v1.WebhookService",
    "herald.api.v1.StatsService",
    "herald.api.v1.DebugService",
];

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_the_services_and_return_their_files() -> Result<()> {
    use tonic_reflection::pb::{v1, v1alpha};
    let server = local_server().await?;
    let ch = channel(&server).await?;

    let mut client = v1::server_reflection_client::ServerReflectionClient::new(ch.clone());
    let ask = |m: v1::server_reflection_request::MessageRequest| v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(m),
    };
    let requests = vec![
        ask(v1::server_reflection_request::MessageRequest::ListServices(String::new())),
        ask(v1::server_reflection_request::MessageRequest::FileContainingSymbol(API_SERVICES[0].into())),
    ];
    let mut answers = client.server_reflection_info(futures_util::stream::iter(requests)).await?.into_inner();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answers.next().await.context("list answer")??.message_response
    else {
        anyhow::bail!("not a service list");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for service in API_SERVICES.iter().chain(&["grpc.health.v1.Health"]) {
        assert!(names.contains(service), "{service} not in {names:?}");
    }
    let Some(v1::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) =
        answers.next().await.context("file answer")??.message_response
    else {
        anyhow::bail!("not a file");
    };
    let file = prost_types::FileDescriptorProto::decode(files.file_descriptor_proto[0].as_slice())?;
    assert_eq!(file.package(), "herald.api.v1");
    let services: Vec<&str> = file.service.iter().map(|s| s.name()).collect();
    assert!(services.contains(&"AdminService") && services.contains(&"PublishService"), "{services:?}");
    let admin = file.service.iter().find(|s| s.name() == "AdminService").context("admin service")?;
    assert!(admin.method.iter().any(|m| m.name() == "UpdateApp"));

    let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(ch);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1alpha::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let mut answers = client.server_reflection_info(futures_util::stream::iter([request])).await?.into_inner();
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answers.next().await.context("v1alpha answer")??.message_response
    else {
        anyhow::bail!("not a service list");
    };
    assert!(list.service.iter().any(|s| s.name == API_SERVICES[2]));
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn health_answers_serving_while_ready() -> Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let server = local_server().await?;
    let mut health = HealthClient::new(channel(&server).await?);
    for service in std::iter::once("").chain(API_SERVICES) {
        let answer = health.check(HealthCheckRequest { service: service.into() }).await?.into_inner();
        assert_eq!(answer.status, ServingStatus::Serving as i32, "{service:?}");
    }
    let unknown = health.check(HealthCheckRequest { service: "no.such.Service".into() }).await.expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);
    let mut watch = health.watch(HealthCheckRequest::default()).await?.into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), watch.next()).await?.context("watch ended")??;
    assert_eq!(first.status, ServingStatus::Serving as i32);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn health_answers_not_serving_while_the_bus_is_cut_and_serving_once_it_is_back() -> Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let proxy = common::Proxy::start("127.0.0.1:4222").await?;
    let subjects = common::subjects();
    let bus = common::nats_backplane_at(&proxy.url(), subjects.clone()).await?;
    let server = Server::start_with(TestDb::postgres().await?, bus, subjects, |_| {}).await?;
    let mut health = HealthClient::new(channel(&server).await?);
    let mut status_becomes = async |want: ServingStatus| -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut all = Vec::new();
            for service in std::iter::once("").chain(API_SERVICES) {
                all.push(health.check(HealthCheckRequest { service: service.into() }).await?.into_inner().status);
            }
            if all.iter().all(|s| *s == want as i32) {
                return Ok(());
            }
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "health is {all:?}, not {want:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    status_becomes(ServingStatus::Serving).await?;
    proxy.cut();
    status_becomes(ServingStatus::NotServing).await?;
    proxy.restore();
    status_becomes(ServingStatus::Serving).await?;
    server.stop().await;
    Ok(())
}
