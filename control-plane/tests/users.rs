//! Herald's own APIs for what Pusher's HTTP API can do too: a publish that
//! skips one connection, an event to every connection of a user, and
//! closing a user's connections — over REST and gRPC.

mod common;

use anyhow::{Context as _, Result};
use common::{ADMIN, Http, app_with_key, authed, pg_local_server, publish_url};
use herald_proto::api::publish_service_client::PublishServiceClient;
use herald_proto::api::user_service_client::UserServiceClient;
use herald_proto::api::{self as pb};
use herald_proto::bus::control_event::Kind;
use herald_proto::{AppId, ChannelName};
use serde_json::json;
use tonic::Code;
use tonic::transport::Channel;

#[tokio::test]
async fn a_publish_can_skip_one_connection() -> Result<()> {
    let (server, edge, collect) = pg_local_server(|_| {}).await?;
    let http = Http::default();
    let (app, _, key) = app_with_key(&http, &server, None).await?;
    let _sub = edge.subscribe(&AppId::new(&app)?, &ChannelName::new("room")?, 1).await?;

    let body = json!({"data": "one", "name": "rest", "exclude_connection": "17.42"});
    let r = http.json("POST", &publish_url(&server, &app, "room"), Some(&key), body).await?;
    assert_eq!(r.status, 202, "{}", r.text());
    let m = collect.message(|m| m.event.as_deref() == Some("rest")).await?;
    assert_eq!((&m.data[..], m.exclude_connection.as_str()), (&b"one"[..], "17.42"));

    let batch = json!({"messages": [{"channel": "room", "data": "two", "name": "batch", "exclude_connection": "1.2"}]});
    let r = http.json("POST", &server.url(&format!("/v1/apps/{app}/messages")), Some(&key), batch).await?;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(collect.message(|m| m.event.as_deref() == Some("batch")).await?.exclude_connection, "1.2");

    for bad in ["17", "a.b", "1.2.3", ""] {
        let body = json!({"data": "x", "exclude_connection": bad});
        let r = http.json("POST", &publish_url(&server, &app, "room"), Some(&key), body).await?;
        assert_eq!((r.status, r.code().as_str()), (400, "bad_request"), "{bad:?}: {}", r.text());
    }

    let mut grpc = PublishServiceClient::new(Channel::from_shared(format!("http://{}", server.addr))?.connect().await?);
    let request = pb::PublishRequest {
        app_id: app.clone(),
        channel: "room".into(),
        data: b"three".to_vec().into(),
        event: Some("grpc".into()),
        exclude_connection: Some("5.6".into()),
        ..Default::default()
    };
    grpc.publish(authed(request.clone(), &key)).await?;
    assert_eq!(collect.message(|m| m.event.as_deref() == Some("grpc")).await?.exclude_connection, "5.6");
    let bad = pb::PublishRequest { exclude_connection: Some("x".into()), ..request };
    assert_eq!(grpc.publish(authed(bad, &key)).await.expect_err("bad id").code(), Code::InvalidArgument);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn events_to_users_and_terminating_users_over_rest() -> Result<()> {
    let (server, _edge, collect) = pg_local_server(|_| {}).await?;
    let http = Http::default();
    let (app, _, key) = app_with_key(&http, &server, None).await?;
    let url = |user: &str, what: &str| server.url(&format!("/v1/apps/{app}/users/{user}/{what}"));

    let r = http.json("POST", &url("ada", "messages"), Some(&key), json!({"data": {"n": 1}, "name": "note"})).await?;
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["id"].as_str().context("id")?.to_owned();
    let e = collect.control_event(|k| if let Kind::UserEvent(e) = k { Some(e.clone()) } else { None }).await?;
    assert_eq!(
        (e.app_id.as_str(), e.user_id.as_str(), e.event.as_str(), e.id.as_str()),
        (app.as_str(), "ada", "note", id.as_str())
    );
    assert_eq!(&e.data[..], br#"{"n":1}"#);

    let r = http.send("POST", &url("ada%20l", "terminate"), Some(&key), None).await?;
    assert_eq!((r.status, r.json()), (202, json!({"user_id": "ada l"})), "{}", r.text());
    let t = collect.control_event(|k| if let Kind::UserTerminated(t) = k { Some(t.clone()) } else { None }).await?;
    assert_eq!((t.app_id.as_str(), t.user_id.as_str()), (app.as_str(), "ada l"));

    // A key limited to some channels may reach no user.
    let r = http
        .json(
            "POST",
            &server.url(&format!("/v1/apps/{app}/keys")),
            Some(ADMIN),
            json!({"name": "narrow", "capabilities": {"chat:*": ["publish"]}}),
        )
        .await?;
    let narrow = r.json()["key"].as_str().context("key")?.to_owned();
    let r = http.json("POST", &url("ada", "messages"), Some(&narrow), json!({"data": "x"})).await?;
    assert_eq!((r.status, r.code().as_str()), (403, "forbidden"), "{}", r.text());
    let r = http.send("POST", &url("ada", "terminate"), Some(&narrow), None).await?;
    assert_eq!(r.status, 403, "{}", r.text());

    let big = "x".repeat(70_000);
    let r = http.json("POST", &url("ada", "messages"), Some(&key), json!({"data": big})).await?;
    assert_eq!((r.status, r.code().as_str()), (413, "too_large"), "{}", r.text());
    let r = http.json("POST", &url("ada%0A", "messages"), Some(&key), json!({"data": "x"})).await?;
    assert_eq!(r.status, 400, "a control character in the user id: {}", r.text());
    let r =
        http.json("POST", &url("ada", "messages"), Some(&key), json!({"data": "x", "name": "n".repeat(129)})).await?;
    assert_eq!(r.status, 400, "{}", r.text());
    let r = http.json("POST", &url("ada", "messages"), Some("hk_bad_key"), json!({"data": "x"})).await?;
    assert_eq!(r.status, 401);
    let r =
        http.json("POST", &server.url("/v1/apps/ghost/users/ada/messages"), Some(ADMIN), json!({"data": "x"})).await?;
    assert_eq!(r.status, 404, "{}", r.text());
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn events_to_users_and_terminating_users_over_grpc() -> Result<()> {
    let (server, _edge, collect) = pg_local_server(|_| {}).await?;
    let http = Http::default();
    let (app, _, key) = app_with_key(&http, &server, None).await?;
    let mut users = UserServiceClient::new(Channel::from_shared(format!("http://{}", server.addr))?.connect().await?);
    let request = pb::PublishToUserRequest {
        app_id: app.clone(),
        user_id: "bob".into(),
        data: b"hi".to_vec().into(),
        event: Some("greet".into()),
    };
    let id = users.publish_to_user(authed(request.clone(), &key)).await?.into_inner().id;
    let e = collect.control_event(|k| if let Kind::UserEvent(e) = k { Some(e.clone()) } else { None }).await?;
    assert_eq!((e.user_id.as_str(), e.event.as_str(), &e.data[..], e.id), ("bob", "greet", &b"hi"[..], id));
    users.terminate_user(authed(pb::TerminateUserRequest { app_id: app.clone(), user_id: "bob".into() }, &key)).await?;
    collect.control_event(|k| matches!(k, Kind::UserTerminated(t) if t.user_id == "bob").then_some(())).await?;

    let empty = pb::PublishToUserRequest { user_id: String::new(), ..request.clone() };
    assert_eq!(users.publish_to_user(authed(empty, &key)).await.expect_err("no user").code(), Code::InvalidArgument);
    let other = pb::PublishToUserRequest { app_id: "other-app".into(), ..request };
    assert_eq!(
        users.publish_to_user(authed(other, &key)).await.expect_err("another app").code(),
        Code::PermissionDenied
    );
    server.stop().await;
    Ok(())
}
