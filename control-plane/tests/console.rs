//! The web console over real sockets, against a real database: security
//! headers on every response (redirects, errors and 404s too), never a 401
//! to a visitor, CSRF tokens required on every form post (403 and nothing
//! changed without), one-time login links, session expiry and sessions
//! shared by replicas, the sign-in rate limit, and bad input answered with
//! a clear error page, never a 500. The live pages: the debug console and
//! its session stream (filters, hostile prefixes, events from the console
//! and from the bus, its end at shutdown and at sign-out), the overview's
//! figures and the usage page with quota use.

mod common;

use std::time::Duration;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use common::console::{Visitor, app_names, start};
use common::{ADMIN, Http, TestDb};
use herald_control_plane::auth::Principal;
use herald_proto::units::{ByteSize, HumanDuration};
use http_body_util::Full;
use tokio::net::TcpListener;

#[tokio::test]
async fn visitors_get_headers_and_the_sign_in_page_never_a_401() -> Result<()> {
    let db = TestDb::sqlite();
    let cp = start(&db, |_| {}).await?;
    let mut v = Visitor::new(cp.addr);
    for path in ["/console", "/console/", "/console/apps", "/console/apps/x/keys", "/console/apps/x/channels.json"] {
        let r = v.get(path).await?;
        assert_eq!(r.status, 303, "{path}");
        assert!(r.location().starts_with("/console"), "{path}: {}", r.location());
    }
    let r = v.get("/console/signin").await?;
    assert_eq!(r.status, 200);
    assert!(r.body.contains(r#"<label for="f-token">Admin token</label>"#));
    assert_eq!(v.get("/console/no/such/page").await?.status, 404);
    assert_eq!(v.get("/console/assets/console.css").await?.status, 200);
    assert_eq!(v.get("/console/assets/console.js").await?.status, 200);
    assert_eq!(v.send("DELETE", "/console/signin", None, Bytes::new()).await?.status, 405);
    // A form post without a session goes to the sign-in page, nothing done.
    let r = v.post("/console/apps", &[("name", "nope")]).await?;
    assert_eq!((r.status, r.location()), (303, "/console/signin"));
    // A wrong token: the form again, 403, and no session.
    let r = v.post("/console/signin", &[("token", "wrong")]).await?;
    assert_eq!(r.status, 403);
    assert!(v.cookie.is_none());
    // The right one: a session cookie as the brief says, then pages.
    let r = v.post("/console/signin", &[("token", ADMIN)]).await?;
    let cookie = r.headers.get("set-cookie").and_then(|c| c.to_str().ok()).unwrap_or("").to_owned();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    assert_eq!(v.get("/console/apps").await?.status, 200);
    assert_eq!(v.get("/console/apps/nosuchapp").await?.status, 404);
    // Behind a TLS proxy the cookie is Secure.
    let mut tls = Visitor::new(cp.addr);
    let body = Bytes::from(format!("token={ADMIN}"));
    let mut req = http::Request::builder().method("POST").uri(format!("{}/console/signin", tls.base));
    req = req.header("content-type", "application/x-www-form-urlencoded").header("x-forwarded-proto", "https");
    let res = tls.client.request(req.body(Full::new(body))?).await?;
    let cookie = res.headers().get("set-cookie").and_then(|c| c.to_str().ok()).unwrap_or("");
    assert!(cookie.contains("; Secure"), "{cookie}");
    tls.cookie = None;
    Ok(())
}

#[tokio::test]
async fn form_posts_without_the_right_csrf_token_are_refused_and_change_nothing() -> Result<()> {
    let db = TestDb::postgres().await?;
    let cp = start(&db, |_| {}).await?;
    let http = Http::default();
    let mut v = Visitor::new(cp.addr);
    v.sign_in().await?;
    let csrf = v.csrf().await?;
    let r = v.post("/console/apps", &[("name", "no token")]).await?;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("Nothing was changed"));
    let wrong = "0".repeat(csrf.len());
    assert_eq!(v.post("/console/apps", &[("name", "wrong token"), ("csrf", &wrong)]).await?.status, 403);
    // Another session's token does not do either.
    let mut other = Visitor::new(cp.addr);
    other.sign_in().await?;
    let theirs = other.csrf().await?;
    assert_ne!(theirs, csrf);
    assert_eq!(v.post("/console/apps", &[("name", "their token"), ("csrf", &theirs)]).await?.status, 403);
    assert_eq!(v.post("/console/signout", &[]).await?.status, 403);
    assert!(app_names(&http, cp.addr).await?.is_empty(), "no app was created");
    // With it: created, 303 to the app's page.
    let r = v.post("/console/apps", &[("name", "made"), ("id", "made"), ("csrf", &csrf)]).await?;
    assert_eq!((r.status, r.location()), (303, "/console/apps/made?done=created"));
    assert_eq!(app_names(&http, cp.addr).await?, vec!["made".to_owned()]);
    // Delete without the token: refused; with it: gone.
    assert_eq!(v.post("/console/apps/made/delete", &[]).await?.status, 403);
    assert_eq!(app_names(&http, cp.addr).await?.len(), 1);
    assert_eq!(v.post("/console/apps/made/delete", &[("csrf", &csrf)]).await?.status, 303);
    assert!(app_names(&http, cp.addr).await?.is_empty());
    // Sign-out deletes the session: the cookie no longer works.
    let kept = v.cookie.clone();
    assert_eq!(v.post("/console/signout", &[("csrf", &csrf)]).await?.status, 303);
    v.cookie = kept;
    assert_eq!(v.get("/console/apps").await?.status, 303);
    Ok(())
}

#[tokio::test]
async fn a_login_link_signs_in_once_and_sessions_work_on_every_replica() -> Result<()> {
    let db = TestDb::postgres().await?;
    let a = start(&db, |_| {}).await?;
    let b = start(&TestDb::shared(&db.url), |_| {}).await?;
    let token = herald_control_plane::console::create_login_link(&a.core).await?;
    let mut v = Visitor::new(a.addr);
    let r = v.get(&format!("/console/login/{token}")).await?;
    assert_eq!((r.status, r.location()), (303, "/console"), "the link signs in and leaves the URL");
    assert!(v.cookie.is_some());
    assert_eq!(v.get("/console/apps").await?.status, 200);
    // The same session on the other replica.
    let mut on_b = Visitor::new(b.addr);
    on_b.cookie = v.cookie.clone();
    assert_eq!(on_b.get("/console/apps").await?.status, 200);
    // A second use, on either replica, fails with a clear page.
    for addr in [a.addr, b.addr] {
        let mut again = Visitor::new(addr);
        let r = again.get(&format!("/console/login/{token}")).await?;
        assert_eq!(r.status, 403);
        assert!(r.body.contains("already used"), "{}", r.body);
        assert!(again.cookie.is_none());
    }
    let r = Visitor::new(a.addr).get("/console/login/not-a-token").await?;
    assert_eq!(r.status, 403);
    Ok(())
}

#[tokio::test]
async fn sessions_and_links_expire() -> Result<()> {
    let db = TestDb::sqlite();
    let cp = start(&db, |c| {
        c.console_session_ttl = HumanDuration::secs(1);
        c.console_link_ttl = HumanDuration::secs(1);
    })
    .await?;
    let token = herald_control_plane::console::create_login_link(&cp.core).await?;
    let mut v = Visitor::new(cp.addr);
    v.sign_in().await?;
    assert_eq!(v.get("/console/apps").await?.status, 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if v.get("/console/apps").await?.status == 303 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the session outlived its TTL");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The link expired meanwhile too.
    let expired_link = herald_control_plane::console::create_login_link(&cp.core).await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(Visitor::new(cp.addr).get(&format!("/console/login/{token}")).await?.status, 403);
    // What the periodic purge runs deletes the expired rows (the session and
    // the unused link), and nothing is left for the next round.
    let now = herald_bus::now_ms();
    let store = herald_control_plane::store::Store::connect(&db.url, 1, Duration::from_secs(5)).await?;
    assert!(store.purge_console(now).await? >= 2);
    assert_eq!(store.purge_console(now).await?, 0);
    assert_eq!(Visitor::new(cp.addr).get(&format!("/console/login/{expired_link}")).await?.status, 403);
    Ok(())
}

#[tokio::test]
async fn failed_sign_ins_are_rate_limited_per_client() -> Result<()> {
    let db = TestDb::sqlite();
    let cp = start(&db, |c| c.console_signin_attempts = 3).await?;
    let mut v = Visitor::new(cp.addr);
    for _ in 0..3 {
        assert_eq!(v.post("/console/signin", &[("token", "guess")]).await?.status, 403);
    }
    let r = v.post("/console/signin", &[("token", ADMIN)]).await?;
    assert_eq!(r.status, 429, "even the right token waits: {}", r.body);
    assert!(v.cookie.is_none());
    Ok(())
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_page_never_a_500() -> Result<()> {
    let db = TestDb::sqlite();
    let cp = start(&db, |c| {
        c.max_body_size = ByteSize::kib(16);
        c.max_message_size_ceiling = ByteSize::kib(8);
        c.default_max_message_size = ByteSize::kib(1);
    })
    .await?;
    let mut v = Visitor::new(cp.addr);
    v.sign_in().await?;
    let csrf = v.csrf().await?;
    assert_eq!(v.post("/console/apps", &[("name", "Shop"), ("id", "shop"), ("csrf", &csrf)]).await?.status, 303);

    // An oversized form.
    let big = "x".repeat(20 * 1024);
    let r = v.post("/console/apps", &[("name", &big), ("csrf", &csrf)]).await?;
    assert_eq!(r.status, 413, "{}", r.body);
    // Not a form.
    let r = v.send("POST", "/console/apps", Some("application/json"), Bytes::from_static(b"{}")).await?;
    assert_eq!(r.status, 415);
    // A channel name the rules refuse: the form again, the error beside the
    // field, the values kept.
    let r =
        v.post("/console/apps/shop/publish", &[("channel", "bad channel*"), ("data", "kept"), ("csrf", &csrf)]).await?;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains(r#"aria-invalid="true" aria-describedby="f-channel-err""#), "{}", r.body);
    assert!(r.body.contains(">kept</textarea>"));
    let r = v.get("/console/apps/shop/channel?name=bad%20channel*").await?;
    assert_eq!(r.status, 400, "{}", r.body);
    // A payload over the app's limit.
    let r = v
        .post("/console/apps/shop/publish", &[("channel", "chat"), ("data", &"y".repeat(2000)), ("csrf", &csrf)])
        .await?;
    assert_eq!(r.status, 422, "{}", r.body);
    // An unknown app, everywhere.
    for path in [
        "/console/apps/nope",
        "/console/apps/nope/keys",
        "/console/apps/nope/channels",
        "/console/apps/nope/publish",
        "/console/apps/nope/namespaces",
        "/console/apps/nope/webhooks",
        "/console/apps/nope/tokens",
    ] {
        let r = v.get(path).await?;
        assert_eq!(r.status, 404, "{path}: {}", r.body);
        assert!(r.body.contains("no app"), "{path}: {}", r.body);
    }
    assert_eq!(v.post("/console/apps/nope/publish", &[("channel", "c"), ("csrf", &csrf)]).await?.status, 404);
    // Bad settings: inline errors, nothing saved.
    let r = v.post("/console/apps/shop", &[("name", "Shop"), ("max_connections", "lots"), ("csrf", &csrf)]).await?;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("f-max_connections-err") && r.body.contains(r#"value="lots""#), "{}", r.body);
    let r = v
        .post("/console/apps/shop", &[("name", "Shop"), ("allowed_origins", "not an origin"), ("csrf", &csrf)])
        .await?;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("f-allowed_origins-err"), "{}", r.body);
    let r = v.post("/console/apps/shop/namespaces", &[("name", "bad name!"), ("csrf", &csrf)]).await?;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("f-name-err"), "{}", r.body);
    let r =
        v.post("/console/apps/shop/keys", &[("name", "k"), ("capabilities", "chat:* fly"), ("csrf", &csrf)]).await?;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("f-capabilities-err"), "{}", r.body);
    Ok(())
}

#[tokio::test]
async fn pages_show_hostile_text_escaped_and_secrets_once() -> Result<()> {
    let db = TestDb::sqlite();
    let cp = start(&db, |c| c.signing_key_refresh_interval = HumanDuration::secs(1)).await?;
    let mut v = Visitor::new(cp.addr);
    v.sign_in().await?;
    let csrf = v.csrf().await?;
    let xss = "<img src=x onerror=alert(1)>";
    let r = v.post("/console/apps", &[("name", xss), ("id", "x1"), ("csrf", &csrf)]).await?;
    assert_eq!(r.status, 303, "{}", r.body);
    for path in ["/console/apps", "/console/apps/x1"] {
        let page = v.get(path).await?.body;
        assert!(!page.contains(xss), "{path} shows the name raw");
        assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"), "{path}");
    }
    // A key: its secret on the answer to the form, not on the list after.
    let r = v.post("/console/apps/x1/keys", &[("name", "backend"), ("csrf", &csrf)]).await?;
    assert_eq!(r.status, 200);
    let at = r.body.find("hk_").context("the secret is shown")?;
    let secret: String = r.body[at..].chars().take_while(|c| *c != '<').collect();
    assert!(r.body.contains(r#"data-copy="new-key""#));
    let list = v.get("/console/apps/x1/keys").await?.body;
    assert!(!list.contains(&secret), "the secret is shown once");
    assert!(list.contains("<td>never</td>"), "not used yet: {list}");
    // Used once, the key shows when (replicas write it within a tick).
    let used = Http::default().get(&format!("http://{}/v1/apps/x1/channels", cp.addr), Some(&secret)).await?;
    assert_eq!(used.status, 200, "{}", String::from_utf8_lossy(&used.body));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while v.get("/console/apps/x1/keys").await?.body.contains("<td>never</td>") {
        assert!(tokio::time::Instant::now() < deadline, "the key's last use never showed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Publish a hostile payload; the history page (with a namespace that
    // keeps history) shows it as text.
    let r = v
        .post(
            "/console/apps/x1/namespaces",
            &[("name", "h"), ("history_size", "10"), ("history_ttl", "60"), ("csrf", &csrf)],
        )
        .await?;
    assert_eq!(r.status, 303, "{}", r.body);
    let r = v
        .post("/console/apps/x1/publish", &[("channel", "h:room"), ("data", xss), ("event", "e"), ("csrf", &csrf)])
        .await?;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.location().starts_with("/console/apps/x1/publish?channel=h%3Aroom&sent="), "{}", r.location());
    let page = v.get(r.location()).await?.body;
    assert!(page.contains("The message was published."));
    let page = v.get("/console/apps/x1/channel?name=h%3Aroom").await?.body;
    assert!(!page.contains(xss), "the history shows the payload raw");
    assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"), "{page}");
    Ok(())
}

#[tokio::test]
async fn operators_get_login_links_over_rest_and_grpc_and_nobody_else_does() -> Result<()> {
    use herald_proto::api::admin_service_client::AdminServiceClient;
    let db = TestDb::sqlite();
    let cp = start(&db, |_| {}).await?;
    let http = Http::default();
    let url = format!("http://{}/v1/console/links", cp.addr);
    let r = http.send("POST", &url, Some(ADMIN), None).await?;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let path = r.json()["path"].as_str().context("path")?.to_owned();
    assert!(path.starts_with("/console/login/") && r.json()["expires_at"].as_i64().is_some(), "{}", r.json());
    let mut v = Visitor::new(cp.addr);
    assert_eq!(v.get(&path).await?.status, 303);
    assert_eq!(v.get("/console/apps").await?.status, 200);
    // Not without the admin token, not with a body.
    assert_eq!(http.send("POST", &url, None, None).await?.status, 401);
    assert_eq!(http.send("POST", &url, Some("wrong"), None).await?.status, 401);
    assert_eq!(http.raw("POST", &url, Some(ADMIN), r#"{"x": 1}"#).await?.code(), "bad_request");
    let base = format!("http://{}", cp.addr);
    let r =
        http.json("POST", &format!("{base}/v1/apps"), Some(ADMIN), serde_json::json!({"name": "a", "id": "a"})).await?;
    assert_eq!(r.status, 201);
    let r = http.json("POST", &format!("{base}/v1/apps/a/keys"), Some(ADMIN), serde_json::json!({"name": "k"})).await?;
    let key = r.json()["key"].as_str().context("key")?.to_owned();
    assert_eq!(http.send("POST", &url, Some(&key), None).await?.status, 403);
    // gRPC: the same operation.
    let mut grpc = AdminServiceClient::connect(format!("http://{}", cp.addr)).await?;
    let link = grpc
        .create_console_link(common::authed(herald_proto::api::CreateConsoleLinkRequest {}, ADMIN))
        .await?
        .into_inner();
    assert!(link.path.starts_with("/console/login/") && link.path != path);
    assert_eq!(Visitor::new(cp.addr).get(&link.path).await?.status, 303);
    // With the console off there is no link to make, and no console.
    let off_db = TestDb::sqlite();
    let off = start(&off_db, |c| c.console_enabled = false).await?;
    let r = http.send("POST", &format!("http://{}/v1/console/links", off.addr), Some(ADMIN), None).await?;
    assert_eq!((r.status, r.code().as_str()), (400, "not_enabled"));
    let r = http.get(&format!("http://{}/console", off.addr), None).await?;
    assert_eq!(r.status, 404);
    Ok(())
}

#[tokio::test]
async fn the_console_can_have_an_address_of_its_own() -> Result<()> {
    let free = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let db = TestDb::sqlite();
    let cp = start(&db, |c| c.console_addr = Some(free)).await?;
    let http = Http::default();
    // Not on the API address…
    assert_eq!(http.get(&format!("http://{}/console/signin", cp.addr), None).await?.status, 404);
    // …but on its own (once it listens).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(free).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "the console address never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut v = Visitor::new(free);
    assert_eq!(v.get("/console/signin").await?.status, 200);
    v.sign_in().await?;
    assert_eq!(v.get("/console/apps").await?.status, 200);
    Ok(())
}

#[tokio::test]
async fn webhooks_and_namespaces_through_the_console() -> Result<()> {
    // A receiver answering 200 to everything.
    let receiver = TcpListener::bind("127.0.0.1:0").await?;
    let hook_url = format!("http://{}/hooks", receiver.local_addr()?);
    tokio::spawn(async move {
        let app = axum::Router::new().fallback(|| async { "ok" });
        let _ = axum::serve(receiver, app).await;
    });
    let db = TestDb::sqlite();
    let cp = start(&db, |c| c.webhook_allow_private_urls = true).await?;
    let mut v = Visitor::new(cp.addr);
    v.sign_in().await?;
    let csrf = v.csrf().await?;
    assert_eq!(v.post("/console/apps", &[("name", "Hooks"), ("id", "hk"), ("csrf", &csrf)]).await?.status, 303);

    // A URL that is not one: the form again with the error beside it.
    let r = v
        .post("/console/apps/hk/webhooks", &[("url", "ftp://x"), ("events", "channel_occupied"), ("csrf", &csrf)])
        .await?;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("f-url-err") && r.body.contains(r#"value="ftp://x""#), "{}", r.body);
    // A good one: the secret once.
    let fields =
        [("url", hook_url.as_str()), ("events", "channel_occupied"), ("events", "channel_vacated"), ("csrf", &csrf)];
    let r = v.post("/console/apps/hk/webhooks", &fields).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains(r#"id="new-webhook-secret""#));
    let list = v.get("/console/apps/hk/webhooks").await?.body;
    let at = list.find("/console/apps/hk/webhooks/wh_").context("the endpoint is listed")?;
    let page: String = list[at..].chars().take_while(|c| *c != '"').collect();
    assert!(!list.contains(r#"id="new-webhook-secret""#));
    // A test send and its result, then the log.
    let r = v.post(&format!("{page}/test"), &[("csrf", &csrf)]).await?;
    assert!(r.body.contains("HTTP 200"), "{}", r.body);
    assert!(r.body.contains("webhook_test"), "the delivery log shows the test: {}", r.body);
    // Turned off, then deleted after the confirmation page.
    let r = v.post(&page, &[("url", hook_url.as_str()), ("events", "channel_occupied"), ("csrf", &csrf)]).await?;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(v.get(&page).await?.body.contains("<strong>disabled</strong>"));
    assert_eq!(v.get(&format!("{page}/delete")).await?.status, 200);
    assert_eq!(v.post(&format!("{page}/delete"), &[("csrf", &csrf)]).await?.status, 303);
    assert_eq!(v.get(&page).await?.status, 404);

    // A namespace: created, edited through its prefilled form, deleted.
    let ns = [("name", "chat"), ("presence", "on"), ("history_size", "5"), ("history_ttl", "60"), ("csrf", &csrf)];
    assert_eq!(v.post("/console/apps/hk/namespaces", &ns).await?.status, 303);
    let edit = v.get("/console/apps/hk/namespaces?edit=chat").await?.body;
    assert!(edit.contains(r#"name="history_size" type="text" value="5""#), "{edit}");
    let r = v.post("/console/apps/hk/namespaces", &[("name", "chat"), ("history_size", "x"), ("csrf", &csrf)]).await?;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("f-history_size-err"));
    assert_eq!(v.post("/console/apps/hk/namespaces/chat/delete", &[("csrf", &csrf)]).await?.status, 303);
    assert!(v.get("/console/apps/hk/namespaces").await?.body.contains("No namespaces"));
    Ok(())
}

#[tokio::test]
async fn an_app_is_disabled_with_a_reason_and_enabled_from_its_page() -> Result<()> {
    let db = TestDb::sqlite();
    let cp = start(&db, |_| {}).await?;
    let mut v = Visitor::new(cp.addr);
    v.sign_in().await?;
    let csrf = v.csrf().await?;
    assert_eq!(v.post("/console/apps", &[("name", "Off"), ("id", "off"), ("csrf", &csrf)]).await?.status, 303);
    let hostile = "<img src=x onerror=alert(1)>";
    let r = v.post("/console/apps/off/status", &[("action", "disable"), ("reason", hostile), ("csrf", &csrf)]).await?;
    assert_eq!((r.status, r.location()), (303, "/console/apps/off?done=disabled"), "{}", r.body);
    let page = v.get("/console/apps/off").await?.body;
    assert!(page.contains("<strong>disabled</strong>") && page.contains("&lt;img src=x"), "{page}");
    assert!(!page.contains(hostile), "the reason is escaped");
    assert!(v.get("/console/apps").await?.body.contains("<td>disabled</td>"));
    assert!(cp.core.get_app(&Principal::Admin, "off").await?.disabled.is_some());
    for (fields, status) in
        [(vec![("action", "explode")], 400), (vec![("action", "disable"), ("reason", "a\u{1}b")], 400)]
    {
        let mut fields = fields;
        fields.push(("csrf", &csrf));
        assert_eq!(v.post("/console/apps/off/status", &fields).await?.status, status, "{fields:?}");
    }
    let r = v.post("/console/apps/off/status", &[("action", "enable"), ("csrf", &csrf)]).await?;
    assert_eq!(r.status, 303);
    assert!(v.get("/console/apps/off").await?.body.contains("<strong>enabled</strong>"));
    assert!(cp.core.get_app(&Principal::Admin, "off").await?.disabled.is_none());
    Ok(())
}

/// A debug event of `app` as an edge would send it.
fn tapped(app: &str, kind: herald_proto::bus::debug_event::Kind) -> herald_proto::bus::DebugEvent {
    herald_proto::bus::DebugEvent {
        timestamp_ms: herald_bus::now_ms(),
        node_id: "edge-test".into(),
        app_id: app.into(),
        connection_id: "c1".into(),
        dropped: 0,
        kind: Some(kind),
    }
}

#[tokio::test]
async fn the_debug_console_streams_the_apps_events_to_its_session_and_ends_at_shutdown() -> Result<()> {
    use herald_proto::bus::debug_event::Kind;
    let db = TestDb::sqlite();
    let mut cp = start(&db, |_| {}).await?;
    let mut v = Visitor::new(cp.addr);
    // Not signed in: the sign-in page, never a 401, for the pages and the stream.
    for path in [
        "/console/apps/live/debug",
        "/console/apps/live/debug/events",
        "/console/apps/live/overview",
        "/console/apps/live/overview.json",
        "/console/apps/live/usage",
    ] {
        let r = v.get(path).await?;
        assert_eq!((r.status, r.location()), (303, "/console/signin"), "{path}");
    }
    let s = v.stream("/console/apps/live/debug/events").await?;
    assert_eq!(s.status, 303, "the stream without a session");
    v.sign_in().await?;
    let csrf = v.csrf().await?;
    assert_eq!(v.post("/console/apps", &[("name", "Live"), ("id", "live"), ("csrf", &csrf)]).await?.status, 303);

    let page = v.get("/console/apps/live/debug").await?;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(r#"data-debug-stream="/console/apps/live/debug/events?""#), "{}", page.body);
    assert!(page.body.contains(r#"<a href="/console/apps/live/debug" aria-current="page">Debug console</a>"#));
    for (path, label) in [("/overview", "Overview"), ("/usage", "Usage")] {
        assert!(page.body.contains(&format!(r#"<a href="/console/apps/live{path}">{label}</a>"#)), "{label}");
    }
    assert!(page.body.contains(r#"<label for="f-channel">"#) && page.body.contains(r#"<label for="f-type-refusal">"#));
    assert!(!v.get("/console/apps").await?.body.contains("data-debug-stream"), "no stream on the landing page");

    // Filters: validated as the API validates them, errors beside their field.
    let r = v.get("/console/apps/live/debug?types=publish&types=bogus").await?;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("f-types-err") && !r.body.contains("data-debug-stream"), "{}", r.body);
    let r = v.get("/console/apps/live/debug?channel=a%20b").await?;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("f-channel-err"), "{}", r.body);
    assert_eq!(v.stream("/console/apps/live/debug/events?types=bogus").await?.status, 400);
    assert_eq!(v.stream("/console/apps/nope/debug/events").await?.status, 404);
    assert_eq!(v.get("/console/apps/nope/debug").await?.status, 404);
    // A hostile prefix stays text in the field and in the stream's URL.
    let hostile = r#""><svg/onload=alert(1)>"#;
    let r = v
        .get(&format!(
            "/console/apps/live/debug?channel={}",
            form_urlencoded::byte_serialize(hostile.as_bytes()).collect::<String>()
        ))
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.body.contains(hostile) && !r.body.contains("<svg"), "{}", r.body);
    assert!(r.body.contains(r#"value="&quot;&gt;&lt;svg/onload=alert(1)&gt;""#), "{}", r.body);
    assert!(r.body.contains("debug/events?channel=%22%3E%3Csvg%2Fonload%3Dalert%281%29%3E"), "{}", r.body);

    // The session's stream: publishes and subscribes only.
    let mut s = v.stream("/console/apps/live/debug/events?types=publish,subscribe").await?;
    assert_eq!(s.status, 200);
    let kind = s.headers.get("content-type").and_then(|c| c.to_str().ok()).unwrap_or("");
    assert_eq!(kind, "text/event-stream");
    // The event creator's publishes are tapped once the tap is on (its
    // announcement crosses the bus): publish until one shows.
    let xss = "<img src=x onerror=alert(1)>";
    let deadline = tokio::time::Instant::now() + common::console::STREAM_LIMIT;
    let publish = loop {
        let r = v.post("/console/apps/live/publish", &[("channel", "chat:1"), ("data", xss), ("csrf", &csrf)]).await?;
        assert_eq!(r.status, 303, "{}", r.body);
        if let Some(e) = s.next_within(Duration::from_millis(300)).await? {
            break e;
        }
        assert!(tokio::time::Instant::now() < deadline, "no publish event on the console stream");
    };
    assert_eq!((publish["type"].as_str(), publish["channel"].as_str()), (Some("publish"), Some("chat:1")), "{publish}");
    assert_eq!((publish["preview"].as_str(), publish["source"].as_str()), (Some(xss), Some("console")), "{publish}");
    // An edge's events: the connect is filtered out, the subscribe comes.
    let connect = Kind::Connect(herald_proto::bus::DebugConnect {
        protocol: "herald".into(),
        remote_ip: "127.0.0.1".into(),
        user_id: xss.into(),
    });
    let subscribe = Kind::Subscribe(herald_proto::bus::DebugSubscribe { channel: "chat:#/?&=".into() });
    let app = herald_proto::AppId::new("live")?;
    cp.bus.publish_debug_event(&app, &tapped("live", connect)).await?;
    cp.bus.publish_debug_event(&app, &tapped("live", subscribe)).await?;
    let (sub, before) = s.until("the subscribe", |e| e["type"] == "subscribe").await?;
    assert!(before.iter().all(|e| e["type"] == "publish"), "only the types asked: {before:?}");
    assert_eq!((sub["channel"].as_str(), sub["node"].as_str()), (Some("chat:#/?&="), Some("edge-test")));
    // Every type on another stream of the same session: a refusal with its reason.
    let mut all = v.stream("/console/apps/live/debug/events").await?;
    assert_eq!(all.status, 200);
    let refusal = Kind::Refusal(herald_proto::bus::DebugRefusal {
        code: "invalid_token".into(),
        number: 4001,
        reason: format!("invalid token: {xss}"),
        channel: String::new(),
    });
    cp.bus.publish_debug_event(&app, &tapped("live", refusal)).await?;
    let (r, _) = all.until("the refusal", |e| e["type"] == "refusal").await?;
    assert_eq!((r["code"].as_str(), r["number"].as_u64()), (Some("invalid_token"), Some(4001)), "{r}");

    // The replica shuts down: the streams end at once, the drain is not held.
    drop(cp.stop.take());
    s.ended_within(Duration::from_secs(5)).await?;
    all.ended_within(Duration::from_secs(5)).await?;
    Ok(())
}

#[tokio::test]
async fn signing_out_ends_the_sessions_debug_stream() -> Result<()> {
    let db = TestDb::sqlite();
    let cp = start(&db, |_| {}).await?;
    let mut v = Visitor::new(cp.addr);
    v.sign_in().await?;
    let csrf = v.csrf().await?;
    assert_eq!(v.post("/console/apps", &[("name", "Out"), ("id", "out"), ("csrf", &csrf)]).await?.status, 303);
    let mut s = v.stream("/console/apps/out/debug/events").await?;
    assert_eq!(s.status, 200);
    assert!(s.next_within(Duration::from_millis(200)).await?.is_none(), "open and quiet");
    assert_eq!(v.post("/console/signout", &[("csrf", &csrf)]).await?.status, 303);
    let limit = herald_control_plane::console::debug::SESSION_CHECK * 3;
    s.ended_within(limit).await?;
    Ok(())
}

#[tokio::test]
async fn overview_and_usage_show_the_apps_figures_and_its_quota_use() -> Result<()> {
    let db = TestDb::sqlite();
    let cp = start(&db, |c| c.usage_report_interval = HumanDuration::secs(1)).await?;
    let mut v = Visitor::new(cp.addr);
    v.sign_in().await?;
    let csrf = v.csrf().await?;
    assert_eq!(v.post("/console/apps", &[("name", "Busy"), ("id", "busy"), ("csrf", &csrf)]).await?.status, 303);
    let page = v.get("/console/apps/busy/overview").await?;
    assert_eq!(page.status, 200);
    for chart in ["connections", "messages", "webhooks", "refusals"] {
        assert!(page.body.contains(&format!(r#"<svg data-chart="{chart}""#)), "{chart}");
    }
    assert!(page.body.contains(r#"data-overview="/console/apps/busy/overview.json""#));
    assert!(page.body.contains(r#"<dd data-figure="published">0</dd>"#), "{}", page.body);
    assert!(page.body.contains("No refusals."));
    let usage = v.get("/console/apps/busy/usage").await?;
    assert_eq!(usage.status, 200);
    assert!(usage.body.contains("This app has no quotas") && usage.body.contains("No usage in this range"));

    // Three publishes from the console; their count reaches the rows within
    // a report interval.
    for _ in 0..3 {
        let r = v.post("/console/apps/busy/publish", &[("channel", "news"), ("data", "hi"), ("csrf", &csrf)]).await?;
        assert_eq!(r.status, 303, "{}", r.body);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let overview = loop {
        let r = v.get("/console/apps/busy/overview.json").await?;
        assert_eq!(r.status, 200);
        let o: serde_json::Value = serde_json::from_str(&r.body)?;
        if o["figures"]["published"] == "3" {
            break o;
        }
        assert!(tokio::time::Instant::now() < deadline, "the publishes never reached the overview: {o}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let minutes = overview["minutes"].as_array().context("minutes")?;
    assert_eq!(minutes.len(), 31, "30 whole minutes and the current one");
    assert_eq!(minutes.iter().map(|m| m["published"].as_i64().unwrap_or(0)).sum::<i64>(), 3);
    assert!(minutes.last().is_some_and(|m| m["partial"] == true));
    assert_eq!(v.get("/console/apps/nope/overview.json").await?.status, 404);

    // A daily quota: the usage page shows its use against it.
    let r = Http::default()
        .json(
            "PATCH",
            &format!("http://{}/v1/apps/busy", cp.addr),
            Some(ADMIN),
            serde_json::json!({"limits": {"quota_messages_per_day": 1000}}),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    for unit in ["minute", "hour", "day"] {
        let page = v.get(&format!("/console/apps/busy/usage?unit={unit}")).await?;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("<td>3 of 1000 (0%)</td>"), "{unit}: {}", page.body);
        assert!(page.body.contains(r#"<meter min="0" max="1000" value="3""#), "{unit}");
        assert!(page.body.contains(&format!("Usage per {unit} (UTC)")), "{unit}: {}", page.body);
        assert!(page.body.contains("<td>3</td><td>3 / 0 / 0 / 0</td>"), "{unit}: {}", page.body);
    }
    // A range before the publishes: no rows. Bad values: the form, 400.
    let page = v.get("/console/apps/busy/usage?unit=day&from=2020-01-01&to=2020-01-31").await?;
    assert!(page.body.contains("No usage in this range"), "{}", page.body);
    let r = v.get("/console/apps/busy/usage?unit=week").await?;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("Choose minute, hour or day."));
    let r = v.get("/console/apps/busy/usage?from=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E").await?;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("f-from-err") && !r.body.contains("<img"), "{}", r.body);
    let r = v.get("/console/apps/busy/usage?from=2024-02-02&to=2024-02-01").await?;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("The start is after the end."));
    assert_eq!(v.get("/console/apps/nope/usage").await?.status, 404);
    Ok(())
}
