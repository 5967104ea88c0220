//! What Pusher's server libraries send, beyond the happy path of each
//! endpoint: pusher-http-python's `terminate_connections` without the
//! `/apps/{app_id}` prefix and its `body_md5` on every GET,
//! pusher-http-node's `sendToUser` channel, event names with backslashes
//! (Laravel's event classes), and the exact shapes of the answers the
//! libraries parse.

mod common;

use anyhow::Result;
use common::{ADMIN, Http, PusherApp, Signing, pg_local_server, pusher_app, pusher_key, pusher_send};
use herald_proto::bus::control_event::Kind;
use herald_proto::pusher::body_md5;
use herald_proto::{AppId, ChannelName};
use serde_json::json;

/// A request as the libraries send `terminate_connections`: body `{}`.
fn terminate(s: Signing<'_>) -> Signing<'_> {
    s.json(&json!({}))
}

#[tokio::test]
async fn terminate_connections_without_the_apps_prefix() -> Result<()> {
    let (server, _edge, collect) = pg_local_server(|_| {}).await?;
    let http = Http::default();
    let p = pusher_app(&http, &server, json!({"enabled": true}), None).await?;
    let short = "/users/u1/terminate_connections";

    // As pusher-http-python sends it: signed over the short path, the app
    // named by auth_key.
    let r = terminate(Signing::new("POST", short, &p)).send(&http, &server).await?;
    assert_eq!((r.status, r.json()), (200, json!({})), "{}", r.text());
    let t = collect.control_event(|k| if let Kind::UserTerminated(t) = k { Some(t.clone()) } else { None }).await?;
    assert_eq!((t.app_id.as_str(), t.user_id.as_str()), (p.app.as_str(), "u1"));
    // A user id the HTTP client escaped after the library signed it.
    let sent = "/users/ada%20lovelace/terminate_connections";
    let signing =
        Signing { url_path: Some(sent), ..Signing::new("POST", "/users/ada lovelace/terminate_connections", &p) };
    let r = terminate(signing).send(&http, &server).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    collect
        .control_event(|k| matches!(k, Kind::UserTerminated(t) if t.user_id == "ada lovelace").then_some(()))
        .await?;

    // The same checks as with the prefix.
    let long = p.path(short);
    let wrong = PusherApp { secret: "0123456789abcdef0123456789abcdef".into(), ..p.clone() };
    let cases: Vec<(&str, Signing<'_>, u16, &str)> = vec![
        (
            "signed over the prefixed path",
            Signing { url_path: Some(short), ..Signing::new("POST", &long, &p) },
            401,
            "auth_signature",
        ),
        ("wrong secret", Signing::new("POST", short, &wrong), 401, "auth_signature"),
        ("no auth_key", Signing { drop: vec!["auth_key"], ..Signing::new("POST", short, &p) }, 401, "auth_key"),
        ("unknown key", Signing { key: "ghost", ..Signing::new("POST", short, &p) }, 404, "ghost"),
        ("not a key", Signing { key: "a b", ..Signing::new("POST", short, &p) }, 404, "auth_key"),
        (
            "stale",
            Signing { timestamp: common::unix_now() - 601, ..Signing::new("POST", short, &p) },
            401,
            "auth_timestamp",
        ),
    ];
    for (what, signing, status, says) in cases {
        let r = terminate(signing).send(&http, &server).await?;
        assert_eq!(r.status, status, "{what}: {}", r.text());
        assert!(r.text().contains(says), "{what}: {}", r.text());
        assert_eq!(r.headers["content-type"], "text/plain; charset=utf-8", "{what}");
    }

    // A key that may not publish everywhere may not terminate users.
    let (_, _, narrow) = pusher_key(&http, &server, &p.app, Some(json!({"public-*": ["publish"]}))).await?;
    let narrow = PusherApp { secret: narrow, ..p.clone() };
    let r = terminate(Signing::new("POST", short, &narrow)).send(&http, &server).await?;
    assert_eq!(r.status, 403, "{}", r.text());
    // Pusher mode off.
    let off = json!({"pusher": {"enabled": false}});
    let url = server.url(&format!("/v1/apps/{}", p.app));
    assert_eq!(http.json("PATCH", &url, Some(ADMIN), off).await?.status, 200);
    let r = terminate(Signing::new("POST", short, &p)).send(&http, &server).await?;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("Pusher mode is off"), "{}", r.text());
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn gets_may_carry_the_md5_of_the_empty_body() -> Result<()> {
    let (server, _edge, _collect) = pg_local_server(|_| {}).await?;
    let http = Http::default();
    let p = pusher_app(&http, &server, json!({"enabled": true}), None).await?;
    let empty = body_md5(b"");
    for path in [p.path("/channels"), p.path("/channels/news"), p.path("/channels/presence-room/users")] {
        let r = Signing::new("GET", &path, &p).param("body_md5", &empty).send(&http, &server).await?;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        // Checked when present: the MD5 of some other body is refused.
        let r = Signing::new("GET", &path, &p).param("body_md5", &body_md5(b"{}")).send(&http, &server).await?;
        assert_eq!(r.status, 401, "{path}: {}", r.text());
        assert!(r.text().contains("body_md5"), "{path}: {}", r.text());
    }
    // With Python's query as it sends it (sorted, nothing escaped).
    let r = Signing::new("GET", &p.path("/channels"), &p)
        .param("body_md5", &empty)
        .param("filter_by_prefix", "presence-")
        .param("info", "user_count,subscription_count")
        .send(&http, &server)
        .await?;
    assert_eq!((r.status, r.json()), (200, json!({"channels": {}})), "{}", r.text());
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn server_to_user_channels_and_backslashes_in_event_names() -> Result<()> {
    let (server, edge, collect) = pg_local_server(|_| {}).await?;
    let http = Http::default();
    let p = pusher_app(&http, &server, json!({"enabled": true}), None).await?;
    let _sub = edge.subscribe(&AppId::new(&p.app)?, &ChannelName::new("private-orders.1")?, 1).await?;
    let events = p.path("/events");
    let laravel = "App\\Events\\OrderShipped";

    // Laravel's broadcast: the event class as the name.
    let body = json!({"name": laravel, "channels": ["private-orders.1"], "data": "{\"id\":1}"});
    let r = pusher_send(&http, &server, &p, "POST", &events, &[], Some(body)).await?;
    assert_eq!((r.status, r.json()), (200, json!({})), "{}", r.text());
    let m = collect.message(|m| m.event.as_deref() == Some(laravel)).await?;
    assert_eq!((m.channel.as_str(), &m.data[..]), ("private-orders.1", &br#"{"id":1}"#[..]));
    let batch = json!({"batch": [{"channel": "private-orders.1", "name": "App\\Events\\Batched", "data": "x"}]});
    let r = pusher_send(&http, &server, &p, "POST", &p.path("/batch_events"), &[], Some(batch)).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    collect.message(|m| m.event.as_deref() == Some("App\\Events\\Batched")).await?;

    // sendToUser / send_to_user: `#server-to-user-{id}`, in `channels` (as
    // the libraries send it) or `channel`.
    for (i, target) in
        [json!({"channels": ["#server-to-user-u1"]}), json!({"channel": "#server-to-user-u1"})].into_iter().enumerate()
    {
        let mut body = json!({"name": laravel, "data": format!("{{\"n\":{i}}}")});
        if let (Some(body), Some(target)) = (body.as_object_mut(), target.as_object()) {
            body.extend(target.clone());
        }
        let r = pusher_send(&http, &server, &p, "POST", &events, &[], Some(body)).await?;
        assert_eq!((r.status, r.json()), (200, json!({})), "{}", r.text());
        let expected = format!("{{\"n\":{i}}}");
        let e = collect
            .control_event(|k| match k {
                Kind::UserEvent(e) if e.data[..] == *expected.as_bytes() => Some(e.clone()),
                _ => None,
            })
            .await?;
        assert_eq!((e.app_id.as_str(), e.user_id.as_str(), e.event.as_str()), (p.app.as_str(), "u1", laravel));
    }
    for (body, says) in [
        (json!({"name": "e", "channel": "#server-to-user-", "data": "x"}), "user id"),
        (json!({"name": "e", "channels": ["#server-to-user-u1", "news"], "data": "x"}), "one channel"),
        (json!({"name": "e", "channel": "#other", "data": "x"}), "channel"),
        (json!({"name": "a\u{7}b", "channel": "news", "data": "x"}), "name"),
    ] {
        let r = pusher_send(&http, &server, &p, "POST", &events, &[], Some(body.clone())).await?;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(r.text().contains(says), "{body}: {}", r.text());
    }
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn answers_have_the_shapes_the_libraries_parse() -> Result<()> {
    let (server, _edge, _collect) = pg_local_server(|_| {}).await?;
    let http = Http::default();
    let p = pusher_app(&http, &server, json!({"enabled": true}), None).await?;
    let send = |method: &'static str, path: String, params: Vec<(&'static str, &'static str)>, body| {
        let (http, server, p) = (&http, &server, &p);
        async move { pusher_send(http, server, p, method, &path, &params, body).await }
    };
    let event = |info: Option<&str>| {
        let mut e = json!({"name": "e", "channel": "presence-room", "data": "x"});
        if let Some(info) = info {
            e["info"] = json!(info);
        }
        e
    };
    for (method, path, params, body, expected) in [
        ("POST", p.path("/events"), vec![], Some(event(None)), json!({})),
        (
            "POST",
            p.path("/events"),
            vec![],
            Some(event(Some("user_count,subscription_count"))),
            json!({"channels": {"presence-room": {"user_count": 0, "subscription_count": 0}}}),
        ),
        ("POST", p.path("/batch_events"), vec![], Some(json!({"batch": [event(None)]})), json!({})),
        (
            "POST",
            p.path("/batch_events"),
            vec![],
            Some(json!({"batch": [event(Some("subscription_count")), event(None)]})),
            json!({"batch": [{"subscription_count": 0}, {}]}),
        ),
        ("GET", p.path("/channels"), vec![], None, json!({"channels": {}})),
        ("GET", p.path("/channels"), vec![("info", "subscription_count")], None, json!({"channels": {}})),
        ("GET", p.path("/channels/presence-room"), vec![], None, json!({"occupied": false})),
        (
            "GET",
            p.path("/channels/presence-room"),
            vec![("info", "user_count,subscription_count")],
            None,
            json!({"occupied": false, "user_count": 0, "subscription_count": 0}),
        ),
        ("GET", p.path("/channels/presence-room/users"), vec![], None, json!({"users": []})),
        ("POST", p.path("/users/u1/terminate_connections"), vec![], Some(json!({})), json!({})),
    ] {
        let r = send(method, path.clone(), params.clone(), body).await?;
        assert_eq!((r.status, r.json()), (200, expected), "{method} {path} {params:?}: {}", r.text());
        assert!(
            r.headers["content-type"].to_str().is_ok_and(|t| t.starts_with("application/json")),
            "{method} {path}: {:?}",
            r.headers["content-type"]
        );
    }
    server.stop().await;
    Ok(())
}
