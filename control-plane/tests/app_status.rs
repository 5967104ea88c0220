//! Disabling and enabling an app over REST and gRPC, on PostgreSQL and
//! SQLite: the app shows why and since when, its keys are refused with
//! `app_disabled` and the reason (the admin token still works), the JWKS
//! lists its tokens as refused because it is disabled, edges hear of it on
//! the bus; bad input is refused naming the field, and changes nothing.

mod common;

use std::time::Duration;

use anyhow::{Context as _, Result};
use common::{ADMIN, Http, Server, TestDb, app_with_key, authed, publish_url};
use futures_util::StreamExt as _;
use herald_proto::api::admin_service_client::AdminServiceClient;
use herald_proto::api::{self as pb};
use herald_proto::bus;
use prost::Message as _;
use serde_json::json;
use tonic::transport::Channel;

#[tokio::test]
async fn an_app_is_disabled_and_enabled_over_rest_on_both_databases() -> Result<()> {
    for db in [TestDb::postgres().await?, TestDb::sqlite()] {
        let server = Server::start(db, |_| {}).await?;
        let http = Http::default();
        let (app, _key_id, key) = app_with_key(&http, &server, None).await?;
        let app_url = server.url(&format!("/v1/apps/{app}"));
        let control = common::subscribe_ready(server.subjects.control()).await?;
        let mut control = control.boxed();

        // Bad input: 400 naming the field, and the app stays enabled.
        for (body, field) in [
            (json!({"disabled": true, "disabled_reason": "x".repeat(201)}), "disabled_reason"),
            (json!({"disabled": true, "disabled_reason": "two\nlines"}), "disabled_reason"),
            (json!({"disabled_reason": "no flag"}), "disabled_reason"),
            (json!({"disabled": "yes"}), "disabled"),
        ] {
            let r = http.json("PATCH", &app_url, Some(ADMIN), body.clone()).await?;
            assert_eq!((r.status, r.code().as_str()), (400, "bad_request"), "{body}");
            assert!(String::from_utf8_lossy(&r.body).contains(field), "{body}: {}", String::from_utf8_lossy(&r.body));
        }
        let r = http.json("PATCH", &app_url, Some(&key), json!({"disabled": true})).await?;
        assert_eq!(r.status, 403, "an app's own key cannot disable it");
        let r = http.json("PATCH", &server.url("/v1/apps/nope"), Some(ADMIN), json!({"disabled": true})).await?;
        assert_eq!(r.status, 404);
        assert!(http.get(&app_url, Some(ADMIN)).await?.json()["disabled"].is_null());
        let ok = http.json("POST", &publish_url(&server, &app, "room"), Some(&key), json!({"data": "x"})).await?;
        assert_eq!(ok.status, 202);

        let r =
            http.json("PATCH", &app_url, Some(ADMIN), json!({"disabled": true, "disabled_reason": " unpaid "})).await?;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let since = r.json()["disabled"]["since"].as_i64().context("since")?;
        assert_eq!(r.json()["disabled"]["reason"], "unpaid");
        // Edges hear it on the bus, with the window of tokens to refuse.
        let event = loop {
            let msg = tokio::time::timeout(Duration::from_secs(5), control.next()).await?.context("control ended")?;
            if let Some(bus::control_event::Kind::AppStatusChanged(e)) = bus::ControlEvent::decode(msg.payload)?.kind {
                break e;
            }
        };
        assert_eq!((event.app_id.as_str(), event.disabled, event.reason.as_str()), (app.as_str(), true, "unpaid"));
        assert!(event.at >= since && event.until > event.at, "{event:?}");
        // The JWKS lists it for edges that missed the event.
        let jwks = http.get(&server.url("/.well-known/jwks.json"), None).await?.json();
        let entry = jwks["herald_revoked"]
            .as_array()
            .and_then(|all| all.iter().find(|r| r["app"] == app.as_str()))
            .cloned()
            .context("listed")?;
        assert_eq!((entry["disabled"].clone(), entry["key"].clone()), (json!(true), json!(null)), "{entry}");

        // Its key is refused with the reason, for every call; the admin
        // token still reads and changes the app.
        let refused = http.json("POST", &publish_url(&server, &app, "room"), Some(&key), json!({"data": "x"})).await?;
        assert_eq!((refused.status, refused.code().as_str()), (403, "app_disabled"));
        assert!(String::from_utf8_lossy(&refused.body).contains("unpaid"));
        let token =
            http.json("POST", &server.url(&format!("/v1/apps/{app}/tokens")), Some(&key), json!({"sub": "u"})).await?;
        assert_eq!((token.status, token.code().as_str()), (403, "app_disabled"));
        let listed = http.get(&server.url("/v1/apps"), Some(ADMIN)).await?.json();
        assert_eq!(listed["apps"][0]["disabled"]["reason"], "unpaid");
        // A new reason keeps since when.
        let r = http.json("PATCH", &app_url, Some(ADMIN), json!({"disabled_reason": "fraud check"})).await?;
        assert_eq!(
            (r.json()["disabled"]["since"].as_i64(), r.json()["disabled"]["reason"].clone()),
            (Some(since), json!("fraud check"))
        );

        let r = http.json("PATCH", &app_url, Some(ADMIN), json!({"disabled": false})).await?;
        assert_eq!(r.status, 200);
        assert!(r.json()["disabled"].is_null(), "{}", r.json());
        let ok = http.json("POST", &publish_url(&server, &app, "room"), Some(&key), json!({"data": "x"})).await?;
        assert_eq!(ok.status, 202, "enabled: the key works at once");
        server.stop().await;
    }
    Ok(())
}

#[tokio::test]
async fn an_app_is_disabled_over_grpc() -> Result<()> {
    let server = Server::start(TestDb::sqlite(), |_| {}).await?;
    let ch = Channel::from_shared(format!("http://{}", server.addr))?.connect().await?;
    let mut admin = AdminServiceClient::new(ch);
    let app = admin.create_app(authed(pb::CreateAppRequest { name: "g".into(), ..Default::default() }, ADMIN)).await?;
    let id = app.into_inner().id;
    assert!(
        admin.get_app(authed(pb::GetAppRequest { app_id: id.clone() }, ADMIN)).await?.into_inner().disabled.is_none()
    );
    let request = pb::UpdateAppRequest {
        app_id: id.clone(),
        disabled: Some(true),
        disabled_reason: Some("maintenance".into()),
        ..Default::default()
    };
    let app = admin.update_app(authed(request, ADMIN)).await?.into_inner();
    let disabled = app.disabled.context("disabled")?;
    assert_eq!(disabled.reason, "maintenance");
    assert!(disabled.at_ms > 0);
    let bad = pb::UpdateAppRequest { app_id: id.clone(), disabled_reason: Some("\u{7}".into()), ..Default::default() };
    let status = admin.update_app(authed(bad, ADMIN)).await.expect_err("a control character");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let request = pb::UpdateAppRequest { app_id: id.clone(), disabled: Some(false), ..Default::default() };
    assert!(admin.update_app(authed(request, ADMIN)).await?.into_inner().disabled.is_none());
    server.stop().await;
    Ok(())
}
