//! Pusher's HTTP API, signed as Pusher's server libraries sign requests:
//! events and batches reaching the bus (names, data, exclusion, events to
//! users), channel queries answered from edges' reports, terminating users,
//! and the statuses and plain-text bodies of every refusal.

mod common;

use std::time::Duration;

use anyhow::{Context as _, Result};
use common::{
    ADMIN, Http, PusherApp, Server, Signing, entry, join, leave, pg_local_server, pusher_app, pusher_key, pusher_send,
};
use herald_bus::Bus;
use herald_proto::bus::{self, control_event::Kind};
use herald_proto::{AppId, ChannelName};
use serde_json::{Value, json};

async fn occupancy(edge: &Bus, app: &str, edge_id: &str, counts: &[(&str, u32)]) -> Result<()> {
    let report = bus::OccupancyReport {
        edge_id: edge_id.into(),
        app_id: app.into(),
        channels: counts.iter().map(|(c, n)| bus::ChannelCount { channel: (*c).into(), subscribers: *n }).collect(),
        ..Default::default()
    };
    edge.publish_occupancy(&AppId::new(app)?, &report).await?;
    Ok(())
}

/// Polls a signed GET until `check` holds (reports travel asynchronously).
async fn eventually(
    http: &Http,
    server: &Server,
    pusher: &PusherApp,
    path: &str,
    params: &[(&str, &str)],
    check: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let r = pusher_send(http, server, pusher, "GET", path, params, None).await?;
        let j = r.json();
        if r.status == 200 && check(&j) {
            return Ok(j);
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "never held; last answer {} {}", r.status, r.text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn events_reach_the_bus_with_their_name_data_and_exclusion() -> Result<()> {
    let (server, edge, collect) = pg_local_server(|_| {}).await?;
    let http = Http::default();
    let p = pusher_app(&http, &server, json!({"enabled": true}), None).await?;
    let app = AppId::new(&p.app)?;
    let _a = edge.subscribe(&app, &ChannelName::new("private-App.Models.User.1")?, 1).await?;
    let _b = edge.subscribe(&app, &ChannelName::new("news")?, 2).await?;
    let events = p.path("/events");

    // One channel, with the sender's socket excluded.
    let body = json!({"name": "my-event", "channel": "private-App.Models.User.1", "data": "{\"hi\":1}",
                      "socket_id": "123.456"});
    let r = pusher_send(&http, &server, &p, "POST", &events, &[], Some(body)).await?;
    assert_eq!((r.status, r.json()), (200, json!({})), "{}", r.text());
    let m = collect.message(|m| m.event.as_deref() == Some("my-event")).await?;
    assert_eq!((m.channel.as_str(), &m.data[..]), ("private-App.Models.User.1", &br#"{"hi":1}"#[..]));
    assert_eq!(m.exclude_connection, "123.456");
    assert!(!m.id.is_empty());

    // Several channels, as pusher-http-node sends them, without exclusion.
    let body = json!({"name": "both", "channels": ["news", "private-App.Models.User.1"], "data": "x"});
    let r = pusher_send(&http, &server, &p, "POST", &events, &[], Some(body)).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let m = collect.message(|m| m.event.as_deref() == Some("both") && m.channel == "news").await?;
    assert_eq!((&m.data[..], m.exclude_connection.as_str()), (&b"x"[..], ""));
    collect.message(|m| m.event.as_deref() == Some("both") && m.channel != "news").await?;

    // `info`: the channels' state after the publish.
    occupancy(&edge, &p.app, "e1", &[("news", 2), ("presence-room", 3)]).await?;
    edge.publish_presence(
        &app,
        &ChannelName::new("presence-room")?,
        &join("e1", &p.app, entry("presence-room", "1.1", "u1", "{}")),
    )
    .await?;
    let body = json!({"name": "i", "channels": ["news", "presence-room"], "data": "x",
                      "info": "user_count,subscription_count"});
    let expected = json!({"channels": {"news": {"subscription_count": 2},
                                       "presence-room": {"user_count": 1, "subscription_count": 3}}});
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let r = pusher_send(&http, &server, &p, "POST", &events, &[], Some(body.clone())).await?;
        assert_eq!(r.status, 200, "{}", r.text());
        if r.json() == expected {
            break;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "info never showed the reports: {}", r.text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn batches_are_checked_whole_then_published() -> Result<()> {
    let (server, edge, collect) = pg_local_server(|_| {}).await?;
    let http = Http::default();
    let p = pusher_app(&http, &server, json!({"enabled": true, "batch_max": 3}), None).await?;
    let app = AppId::new(&p.app)?;
    let _a = edge.subscribe(&app, &ChannelName::new("a")?, 1).await?;
    let _b = edge.subscribe(&app, &ChannelName::new("b")?, 2).await?;
    let path = p.path("/batch_events");
    let ev = |channel: &str, name: &str| json!({"channel": channel, "name": name, "data": name});

    let body = json!({"batch": [ev("a", "one"), {"channel": "b", "name": "two", "data": "2", "socket_id": "9.9"}]});
    let r = pusher_send(&http, &server, &p, "POST", &path, &[], Some(body)).await?;
    assert_eq!((r.status, r.json()), (200, json!({})), "{}", r.text());
    collect.message(|m| m.channel == "a" && m.event.as_deref() == Some("one")).await?;
    let two = collect.message(|m| m.channel == "b" && m.event.as_deref() == Some("two")).await?;
    assert_eq!(two.exclude_connection, "9.9");

    occupancy(&edge, &p.app, "e1", &[("a", 4)]).await?;
    let mut with_info = ev("a", "three");
    with_info["info"] = json!("subscription_count");
    let body = json!({"batch": [with_info, ev("b", "four")]});
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let r = pusher_send(&http, &server, &p, "POST", &path, &[], Some(body.clone())).await?;
        assert_eq!(r.status, 200, "{}", r.text());
        if r.json() == json!({"batch": [{"subscription_count": 4}, {}]}) {
            break;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "batch info: {}", r.text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Refused whole: nothing of it is published.
    let before = collect.messages.lock().map(|m| m.len()).unwrap_or(0);
    for (body, status, says) in [
        (json!({"batch": [ev("a", "x"), ev("bad channel", "y")]}), 400, "batch[1]"),
        (json!({"batch": [ev("a", "x"), ev("b", "y"), ev("a", "z"), ev("b", "w")]}), 400, "batch_max"),
        (json!({"batch": []}), 400, "empty"),
        (json!({"batch": [{"channel": "a", "name": "n", "data": "x".repeat(10_241)}]}), 413, "max_event_bytes"),
        (json!({"events": []}), 400, "batch"),
    ] {
        let r = pusher_send(&http, &server, &p, "POST", &path, &[], Some(body.clone())).await?;
        assert_eq!(r.status, status, "{body}: {}", r.text());
        assert!(r.text().contains(says), "{body}: {}", r.text());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(collect.messages.lock().map(|m| m.len()).unwrap_or(0), before, "a refused batch published nothing");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn signatures_are_checked_as_pusher_checks_them() -> Result<()> {
    let (server, _edge, _collect) = pg_local_server(|_| {}).await?;
    let http = Http::default();
    let p = pusher_app(&http, &server, json!({"enabled": true}), None).await?;
    let path = p.path("/events");
    let body = json!({"name": "e", "channel": "c", "data": "x"});
    let ok = Signing::new("POST", &path, &p).json(&body);
    assert_eq!(ok.send(&http, &server).await?.status, 200);

    let wrong = PusherApp { secret: "0123456789abcdef0123456789abcdef".into(), ..p.clone() };
    let cases: Vec<(&str, Signing<'_>, &str)> = vec![
        ("wrong secret", Signing::new("POST", &path, &wrong).json(&body), "invalid auth_signature"),
        (
            "stale",
            Signing { timestamp: common::unix_now() - 601, ..Signing::new("POST", &path, &p).json(&body) },
            "auth_timestamp",
        ),
        (
            "future",
            Signing { timestamp: common::unix_now() + 601, ..Signing::new("POST", &path, &p).json(&body) },
            "auth_timestamp",
        ),
        (
            "body_md5",
            Signing { body_md5: Some("0".repeat(32)), ..Signing::new("POST", &path, &p).json(&body) },
            "body_md5",
        ),
        (
            "no signature",
            Signing { drop: vec!["auth_signature"], ..Signing::new("POST", &path, &p).json(&body) },
            "auth_signature",
        ),
        ("no body_md5", Signing { drop: vec!["body_md5"], ..Signing::new("POST", &path, &p).json(&body) }, "body_md5"),
        (
            "no timestamp",
            Signing { drop: vec!["auth_timestamp"], ..Signing::new("POST", &path, &p).json(&body) },
            "auth_timestamp",
        ),
        (
            "no version",
            Signing { drop: vec!["auth_version"], ..Signing::new("POST", &path, &p).json(&body) },
            "auth_version",
        ),
        ("other key", Signing { key: "someone-else", ..Signing::new("POST", &path, &p).json(&body) }, "auth_key"),
        ("unsigned param", Signing::new("POST", &path, &p).json(&body), "invalid auth_signature"),
    ];
    for (what, signing, says) in cases {
        let mut uri = signing.uri();
        if what == "unsigned param" {
            uri.push_str("&extra=1");
        }
        let r = http.send("POST", &server.url(&uri), None, signing.body.clone().map(Into::into)).await?;
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        assert!(r.text().contains(says), "{what}: {}", r.text());
        assert_eq!(r.headers["content-type"], "text/plain; charset=utf-8", "{what}");
    }
    // The body changed after signing.
    let r = http
        .send("POST", &server.url(&ok.uri()), None, Some(serde_json::to_vec(&json!({"name": "f"}))?.into()))
        .await?;
    assert_eq!(r.status, 401, "{}", r.text());

    // A revoked key's secret stops working at once; another key's works.
    let (_, _, second) = pusher_key(&http, &server, &p.app, None).await?;
    let revoke = server.url(&format!("/v1/apps/{}/keys/{}", p.app, p.key_id));
    assert_eq!(http.send("DELETE", &revoke, Some(ADMIN), None).await?.status, 200);
    let r = Signing::new("POST", &path, &p).json(&body).send(&http, &server).await?;
    assert_eq!(r.status, 401, "{}", r.text());
    let other = PusherApp { secret: second, ..p.clone() };
    assert_eq!(Signing::new("POST", &path, &other).json(&body).send(&http, &server).await?.status, 200);

    // An app without Pusher keys, and an app that does not exist.
    let r = http
        .json("POST", &server.url("/v1/apps"), Some(ADMIN), json!({"name": "plain", "pusher": {"enabled": true}}))
        .await?;
    let plain = PusherApp {
        app: r.json()["id"].as_str().context("id")?.to_owned(),
        pusher_id: r.json()["pusher"]["app_id"].as_str().context("Pusher app id")?.to_owned(),
        ..p.clone()
    };
    let plain_path = plain.path("/events");
    let r = Signing::new("POST", &plain_path, &plain).json(&body).send(&http, &server).await?;
    assert_eq!(r.status, 401);
    assert!(r.text().contains("\"pusher\": true"), "{}", r.text());
    // The app's Pusher key is no Pusher app id.
    let r = Signing::new("POST", &format!("/apps/{}/events", p.app), &p).json(&body).send(&http, &server).await?;
    assert_eq!(r.status, 404, "{}", r.text());
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn refusals_answer_pushers_statuses() -> Result<()> {
    let (server, _edge, _collect) = pg_local_server(|_| {}).await?;
    let http = Http::default();
    let p = pusher_app(&http, &server, json!({"enabled": true, "max_event_bytes": 100}), None).await?;
    let path = p.path("/events");
    let send = |body: Value| {
        let (http, server, p, path) = (&http, &server, &p, &path);
        async move { pusher_send(http, server, p, "POST", path, &[], Some(body)).await }
    };
    let many: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
    for (body, status, says) in [
        (json!({"name": "e", "channel": "a b", "data": "x"}), 400, "invalid Pusher channel name"),
        (json!({"name": "e", "channel": "chat:room", "data": "x"}), 400, "invalid Pusher channel name"),
        (json!({"name": "e", "channels": many, "data": "x"}), 400, "at most 100"),
        (json!({"name": "e", "channels": [], "data": "x"}), 400, "channel"),
        (json!({"name": "e", "channel": "c", "channels": ["d"], "data": "x"}), 400, "not both"),
        (json!({"name": "e", "channel": "c", "data": "x", "socket_id": "abc"}), 400, "socket_id"),
        (json!({"name": "", "channel": "c", "data": "x"}), 400, "name"),
        (json!({"name": "e".repeat(201), "channel": "c", "data": "x"}), 400, "name"),
        (json!({"channel": "c", "data": "x"}), 400, "name"),
        (json!({"name": "e", "channel": "c"}), 400, "data"),
        (json!({"name": "e", "channel": "c", "data": "x", "info": "cache"}), 400, "info"),
        (json!({"name": "e", "channel": "c", "data": "x".repeat(101)}), 413, "max_event_bytes"),
    ] {
        let r = send(body.clone()).await?;
        assert_eq!(r.status, status, "{body}: {}", r.text());
        assert!(r.text().contains(says), "{body}: {}", r.text());
        assert_eq!(r.headers["content-type"], "text/plain; charset=utf-8");
    }
    assert_eq!(send(json!({"name": "e".repeat(200), "channel": "c", "data": "x".repeat(100)})).await?.status, 200);
    let r = common::Signing { body: Some(b"{not json".to_vec()), ..Signing::new("POST", &path, &p) }
        .send(&http, &server)
        .await?;
    assert_eq!(r.status, 400, "{}", r.text());
    // Bodies are strict JSON as on the REST API: nothing after the value, no
    // duplicate key at any depth.
    for (body, says) in [
        (r#"{"name":"e","channel":"c","data":"x"} trailing"#, "after the JSON value"),
        (r#"{"name":"e","channel":"c","data":"x","name":"f"}"#, "duplicate key `name` in the object at `.`"),
        (r#"{"batch":[{"name":"e","channel":"c","channel":"d","data":"x"}]}"#, "duplicate key `channel`"),
    ] {
        let r = common::Signing { body: Some(body.as_bytes().to_vec()), ..Signing::new("POST", &path, &p) }
            .send(&http, &server)
            .await?;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(r.text().contains(says), "{body}: {}", r.text());
    }

    // A key whose capabilities do not allow the channel.
    let (_, _, narrow) = pusher_key(&http, &server, &p.app, Some(json!({"public-*": ["publish"]}))).await?;
    let narrow = PusherApp { secret: narrow, ..p.clone() };
    let ok = pusher_send(
        &http,
        &server,
        &narrow,
        "POST",
        &path,
        &[],
        Some(json!({"name": "e", "channel": "public-1", "data": "x"})),
    )
    .await?;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let r = pusher_send(
        &http,
        &server,
        &narrow,
        "POST",
        &path,
        &[],
        Some(json!({"name": "e", "channel": "private-1", "data": "x"})),
    )
    .await?;
    assert_eq!(r.status, 403, "{}", r.text());
    let r = pusher_send(
        &http,
        &server,
        &narrow,
        "POST",
        &path,
        &[],
        Some(json!({"name": "e", "channel": "#server-to-user-u", "data": "x"})),
    )
    .await?;
    assert_eq!(r.status, 403, "a user event needs publish on every channel: {}", r.text());

    // Over the app's publish rate: Pusher's "over quota", 403.
    let patch = json!({"limits": {"publish_rate_per_sec": 1}});
    assert_eq!(http.json("PATCH", &server.url(&format!("/v1/apps/{}", p.app)), Some(ADMIN), patch).await?.status, 200);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(send(json!({"name": "e", "channel": "c", "data": "x"})).await?.status);
    }
    assert!(statuses.contains(&403), "{statuses:?}");

    // Pusher mode off: 403, signature or not.
    let off = json!({"pusher": {"enabled": false}});
    assert_eq!(http.json("PATCH", &server.url(&format!("/v1/apps/{}", p.app)), Some(ADMIN), off).await?.status, 200);
    let r = send(json!({"name": "e", "channel": "c", "data": "x"})).await?;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("Pusher mode is off"), "{}", r.text());
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn channel_queries_follow_edges_reports_at_once() -> Result<()> {
    let (server, edge, _collect) = pg_local_server(|_| {}).await?;
    let http = Http::default();
    let p = pusher_app(&http, &server, json!({"enabled": true}), None).await?;
    let app = AppId::new(&p.app)?;
    let room = ChannelName::new("presence-room")?;
    let apps = p.path("");
    occupancy(&edge, &p.app, "e1", &[("presence-room", 2), ("news", 5), ("chat:herald-only", 1)]).await?;
    edge.publish_presence(&app, &room, &join("e1", &p.app, entry("presence-room", "1.1", "u1", "{}"))).await?;
    edge.publish_presence(&app, &room, &join("e1", &p.app, entry("presence-room", "1.2", "u2", "{}"))).await?;

    let list = format!("{apps}/channels");
    let j =
        eventually(&http, &server, &p, &list, &[], |j| j["channels"].as_object().is_some_and(|c| c.len() == 2)).await?;
    assert_eq!(j, json!({"channels": {"news": {}, "presence-room": {}}}), "Herald-only names are not listed");
    let j = eventually(&http, &server, &p, &list, &[("filter_by_prefix", "presence-"), ("info", "user_count")], |j| {
        j["channels"]["presence-room"]["user_count"] == json!(2)
    })
    .await?;
    assert_eq!(j, json!({"channels": {"presence-room": {"user_count": 2}}}));
    let j = pusher_send(&http, &server, &p, "GET", &list, &[("info", "subscription_count")], None).await?.json();
    assert_eq!(j, json!({"channels": {"news": {"subscription_count": 5}, "presence-room": {"subscription_count": 2}}}));
    for params in [&[("info", "user_count")][..], &[("info", "user_count"), ("filter_by_prefix", "private-")][..]] {
        let r = pusher_send(&http, &server, &p, "GET", &list, params, None).await?;
        assert_eq!(r.status, 400, "{params:?}: {}", r.text());
        assert!(r.text().contains("filter_by_prefix=presence-"), "{}", r.text());
    }

    let one = format!("{apps}/channels/presence-room");
    let j =
        pusher_send(&http, &server, &p, "GET", &one, &[("info", "user_count,subscription_count")], None).await?.json();
    assert_eq!(j, json!({"occupied": true, "user_count": 2, "subscription_count": 2}));
    let j = pusher_send(&http, &server, &p, "GET", &format!("{apps}/channels/news"), &[], None).await?.json();
    assert_eq!(j, json!({"occupied": true}));
    let j = pusher_send(
        &http,
        &server,
        &p,
        "GET",
        &format!("{apps}/channels/empty"),
        &[("info", "subscription_count")],
        None,
    )
    .await?
    .json();
    assert_eq!(j, json!({"occupied": false, "subscription_count": 0}));
    let r = pusher_send(&http, &server, &p, "GET", &format!("{apps}/channels/news"), &[("info", "user_count")], None)
        .await?;
    assert_eq!(r.status, 400, "{}", r.text());
    let r = pusher_send(&http, &server, &p, "GET", &format!("{apps}/channels/chat:x"), &[], None).await?;
    assert_eq!(r.status, 400, "{}", r.text());

    let users = format!("{apps}/channels/presence-room/users");
    let j = pusher_send(&http, &server, &p, "GET", &users, &[], None).await?.json();
    assert_eq!(j, json!({"users": [{"id": "u1"}, {"id": "u2"}]}));
    let r = pusher_send(&http, &server, &p, "GET", &format!("{apps}/channels/news/users"), &[], None).await?;
    assert_eq!(r.status, 400, "{}", r.text());

    // A leave and an unsubscribe show as soon as the edge reports them.
    edge.publish_presence(&app, &room, &leave("e1", &p.app, entry("presence-room", "1.2", "u2", "{}"))).await?;
    occupancy(&edge, &p.app, "e1", &[("presence-room", 1), ("news", 5)]).await?;
    let started = tokio::time::Instant::now();
    eventually(&http, &server, &p, &users, &[], |j| j == &json!({"users": [{"id": "u1"}]})).await?;
    eventually(&http, &server, &p, &one, &[("info", "user_count,subscription_count")], |j| {
        j == &json!({"occupied": true, "user_count": 1, "subscription_count": 1})
    })
    .await?;
    occupancy(&edge, &p.app, "e1", &[("news", 5)]).await?;
    edge.publish_presence(&app, &room, &leave("e1", &p.app, entry("presence-room", "1.1", "u1", "{}"))).await?;
    eventually(&http, &server, &p, &one, &[], |j| j == &json!({"occupied": false})).await?;
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn events_to_users_and_terminating_users() -> Result<()> {
    let (server, _edge, collect) = pg_local_server(|_| {}).await?;
    let http = Http::default();
    let p = pusher_app(&http, &server, json!({"enabled": true}), None).await?;

    // pusher-http-node's sendToUser: one `#server-to-user-` channel.
    let body = json!({"name": "note", "channels": ["#server-to-user-u1"], "data": "{\"n\":1}"});
    let r = pusher_send(&http, &server, &p, "POST", &p.path("/events"), &[], Some(body)).await?;
    assert_eq!((r.status, r.json()), (200, json!({})), "{}", r.text());
    let e = collect.control_event(|k| if let Kind::UserEvent(e) = k { Some(e.clone()) } else { None }).await?;
    assert_eq!((e.app_id.as_str(), e.user_id.as_str(), e.event.as_str()), (p.app.as_str(), "u1", "note"));
    assert_eq!(&e.data[..], br#"{"n":1}"#);
    assert!(!e.id.is_empty() && e.timestamp_ms > 0);
    let body = json!({"batch": [{"channel": "#server-to-user-u2", "name": "b", "data": "2"}]});
    let r = pusher_send(&http, &server, &p, "POST", &p.path("/batch_events"), &[], Some(body)).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    collect.control_event(|k| matches!(k, Kind::UserEvent(e) if e.user_id == "u2").then_some(())).await?;

    // terminate_connections, as pusher-http-node sends it (body `{}`)…
    let path = p.path("/users/u1/terminate_connections");
    let r = pusher_send(&http, &server, &p, "POST", &path, &[], Some(json!({}))).await?;
    assert_eq!((r.status, r.json()), (200, json!({})), "{}", r.text());
    let t = collect.control_event(|k| if let Kind::UserTerminated(t) = k { Some(t.clone()) } else { None }).await?;
    assert_eq!((t.app_id.as_str(), t.user_id.as_str()), (p.app.as_str(), "u1"));
    // …as pusher-http-python sends it (no /apps prefix)…
    let r = pusher_send(&http, &server, &p, "POST", "/users/u3/terminate_connections", &[], Some(json!({}))).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    collect.control_event(|k| matches!(k, Kind::UserTerminated(t) if t.user_id == "u3").then_some(())).await?;
    // …and with a user id the HTTP client escapes after the library signed
    // the raw path.
    let signed = p.path("/users/ada lovelace/terminate_connections");
    let sent = p.path("/users/ada%20lovelace/terminate_connections");
    let signing = Signing { url_path: Some(&sent), ..Signing::new("POST", &signed, &p).json(&json!({})) };
    let r = signing.send(&http, &server).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    collect
        .control_event(|k| matches!(k, Kind::UserTerminated(t) if t.user_id == "ada lovelace").then_some(()))
        .await?;
    server.stop().await;
    Ok(())
}
