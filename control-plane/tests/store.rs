//! One store test suite, run against PostgreSQL and SQLite.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::TestDb;
use herald_control_plane::keys;
use herald_control_plane::pusher_app_id::PusherAppId;
use herald_control_plane::store::{
    ApiKey, App, Attempt, ChannelFilter, Disabled, EventDraft, LimitOverrides, Namespace, Outcome, PusherSettings,
    Recorded, SigningKey, Store, StoreError, Transition, Webhook, WebhookChange, WebhookStatus,
};
use herald_proto::webhook::{EventKind, Format};
use herald_proto::{AppId, Capabilities, KeyId, NamespaceName, bus};

fn app(id: &str) -> App {
    App {
        id: AppId::new(id).expect("id"),
        name: format!("app {id}"),
        limits: LimitOverrides {
            max_connections: Some(10),
            max_message_bytes: None,
            publish_rate_per_sec: Some(5),
            ..LimitOverrides::default()
        },
        allowed_origins: vec!["https://example.com".into()],
        created_at_ms: 1_000,
        pusher: PusherSettings::default(),
        disabled: None,
    }
}

fn key(app: &str, id: &str, at: i64) -> ApiKey {
    ApiKey {
        id: KeyId::new(id).expect("id"),
        app_id: AppId::new(app).expect("app"),
        name: "k".into(),
        capabilities: serde_json::from_str(r#"{"chat:*": ["publish", "subscribe"]}"#).expect("caps"),
        secret_hash: keys::hash_secret("s"),
        created_at_ms: at,
        revoked_at_ms: None,
        pusher_secret: None,
    }
}

fn signing(kid: &str, at: i64) -> SigningKey {
    SigningKey {
        kid: kid.into(),
        private_key: vec![1, 2, 3],
        public_key: vec![4; 32],
        created_at_ms: at,
        retired_at_ms: None,
        expires_at_ms: None,
    }
}

async fn suite(store: Store) -> Result<()> {
    let backend = store.backend();
    store.ping().await?;

    // Apps.
    store.insert_app(&app("a1")).await?;
    store.insert_app(&app("a2")).await?;
    let duplicate = store.insert_app(&app("a1")).await;
    assert!(matches!(&duplicate, Err(e @ StoreError::Conflict(_)) if !e.is_pusher_app_id_conflict()), "{backend}");
    let got = store.get_app(&AppId::new("a1")?).await?.expect("a1");
    assert_eq!(got, app("a1"), "{backend}");
    assert!(store.get_app(&AppId::new("nope")?).await?.is_none());
    let ids: Vec<String> = store.list_apps().await?.iter().map(|a| a.id.to_string()).collect();
    assert_eq!(ids, ["a1", "a2"], "{backend}");
    let mut changed = app("a2");
    changed.name = "renamed".into();
    changed.allowed_origins = vec![];
    changed.limits.max_message_bytes = Some(100);
    assert!(store.update_app(&changed).await?);
    assert_eq!(store.get_app(&changed.id).await?.expect("a2"), changed, "{backend}");
    assert!(!store.update_app(&app("ghost")).await?);

    // Keys.
    store.insert_key(&key("a1", "k1", 10)).await?;
    store.insert_key(&key("a1", "k2", 20)).await?;
    store.insert_key(&key("a2", "k3", 30)).await?;
    assert!(
        matches!(store.insert_key(&key("ghost", "k4", 40)).await, Err(StoreError::Missing(_))),
        "{backend}: key of a missing app"
    );
    assert!(
        matches!(store.insert_key(&key("a1", "k1", 50)).await, Err(StoreError::Conflict(_))),
        "{backend}: duplicate key"
    );
    assert_eq!(store.count_keys(&AppId::new("a1")?).await?, 2);
    let k1 = store.get_key(&KeyId::new("k1")?).await?.expect("k1");
    assert_eq!(k1, key("a1", "k1", 10), "{backend}");
    let listed: Vec<String> = store.list_keys(&AppId::new("a1")?).await?.iter().map(|k| k.id.to_string()).collect();
    assert_eq!(listed, ["k1", "k2"], "{backend}");

    // Revocation: only within the app; the first time sticks.
    assert_eq!(store.revoke_key(&AppId::new("a2")?, &KeyId::new("k1")?, 99).await?, None, "{backend}: other app");
    assert_eq!(store.revoke_key(&AppId::new("a1")?, &KeyId::new("k1")?, 100).await?, Some(100));
    assert_eq!(store.revoke_key(&AppId::new("a1")?, &KeyId::new("k1")?, 200).await?, Some(100));
    assert_eq!(store.get_key(&KeyId::new("k1")?).await?.expect("k1").revoked_at_ms, Some(100));

    // Revocations: revoked keys, newest first, from a time on.
    assert_eq!(store.revoke_key(&AppId::new("a2")?, &KeyId::new("k3")?, 150).await?, Some(150));
    let rev = store.revocations(0, 10).await?;
    assert_eq!(
        rev,
        [
            (AppId::new("a2")?, Some(KeyId::new("k3")?), 150, false),
            (AppId::new("a1")?, Some(KeyId::new("k1")?), 100, false)
        ]
    );
    assert_eq!(store.revocations(120, 10).await?.len(), 1, "{backend}: since");
    assert_eq!(store.revocations(0, 1).await?.len(), 1, "{backend}: limit");

    // Disabling an app marks it and leaves a tombstone marked disabled;
    // enabling it clears the mark and keeps the tombstone (older tokens stay
    // refused); deleting it later marks the tombstone deleted.
    let a1 = AppId::new("a1")?;
    let off = Disabled { at_ms: 250, reason: "unpaid".into() };
    assert!(store.set_app_disabled(&a1, Some(&off), 0).await?);
    assert_eq!(store.get_app(&a1).await?.expect("a1").disabled, Some(off.clone()), "{backend}");
    assert_eq!(store.revocations(200, 10).await?, [(a1.clone(), None, 250, true)], "{backend}");
    assert!(store.set_app_disabled(&a1, None, 0).await?);
    assert_eq!(store.get_app(&a1).await?.expect("a1").disabled, None, "{backend}");
    assert_eq!(store.revocations(200, 10).await?, [(a1.clone(), None, 250, true)], "{backend}: kept");
    assert!(!store.set_app_disabled(&AppId::new("nope")?, Some(&off), 0).await?, "{backend}: no such app");

    // Deleting an app deletes its keys and leaves a tombstone, listed as a
    // revocation of the whole app; older tombstones go.
    assert!(store.delete_app(&AppId::new("a1")?, 300, 0).await?);
    assert!(!store.delete_app(&AppId::new("a1")?, 400, 0).await?);
    assert!(store.get_key(&KeyId::new("k2")?).await?.is_none(), "{backend}: keys go with their app");
    assert!(store.get_key(&KeyId::new("k3")?).await?.is_some());
    let rev = store.revocations(0, 10).await?;
    assert_eq!(
        rev,
        [(AppId::new("a1")?, None, 300, false), (AppId::new("a2")?, Some(KeyId::new("k3")?), 150, false)],
        "{backend}"
    );

    // Pusher settings and Pusher secrets (migration 0005): stored as given;
    // only the active keys with a secret are Pusher keys.
    let mut pusher = app("p1");
    pusher.pusher = PusherSettings {
        enabled: true,
        client_events: true,
        presence_max_members: 100,
        max_event_bytes: 2048,
        subscription_count: true,
        client_event_rate: 10,
        batch_max: 5,
        app_id: Some(PusherAppId::parse("0042")?),
    };
    store.insert_app(&pusher).await?;
    assert_eq!(store.get_app(&pusher.id).await?.expect("p1"), pusher, "{backend}");
    // Pusher app ids (migration 0006): unique across apps, found as written.
    let id = |s: &str| PusherAppId::parse(s).expect("id");
    assert_eq!(store.get_app_by_pusher_id(id("0042")).await?.map(|a| a.id), Some(pusher.id.clone()), "{backend}");
    assert!(store.get_app_by_pusher_id(id("42")).await?.is_none(), "{backend}: 42 is not 0042");
    let mut twin = app("p2");
    twin.pusher.app_id = Some(id("0042"));
    let taken = store.insert_app(&twin).await;
    assert!(matches!(&taken, Err(e) if e.is_pusher_app_id_conflict()), "{backend}: {taken:?}");
    twin.pusher.app_id = None;
    store.insert_app(&twin).await?;
    store.insert_app(&app("p3")).await?; // Many apps have none.
    twin.pusher.app_id = Some(id("0042"));
    let taken = store.update_app(&twin).await;
    assert!(matches!(&taken, Err(e) if e.is_pusher_app_id_conflict()), "{backend}: {taken:?}");
    assert!(
        matches!(store.set_missing_pusher_app_id(&twin.id, id("0042")).await, Err(e) if e.is_pusher_app_id_conflict())
    );
    assert!(store.set_missing_pusher_app_id(&twin.id, id("7")).await?, "{backend}");
    assert!(!store.set_missing_pusher_app_id(&twin.id, id("8")).await?, "{backend}: it has one now");
    assert_eq!(store.get_app(&twin.id).await?.and_then(|a| a.pusher.app_id), Some(id("7")));
    assert!(store.delete_app(&twin.id, 50, 0).await?);
    assert!(store.get_app_by_pusher_id(id("7")).await?.is_none(), "{backend}: an id goes with its app");
    pusher.pusher.enabled = false;
    pusher.pusher.batch_max = 10;
    assert!(store.update_app(&pusher).await?);
    assert_eq!(store.get_app(&pusher.id).await?.expect("p1").pusher, pusher.pusher, "{backend}");
    let mut pk = key("p1", "pk1", 10);
    pk.pusher_secret = Some("0123456789abcdef0123456789abcdef".into());
    store.insert_key(&pk).await?;
    store.insert_key(&key("p1", "pk2", 20)).await?;
    let mut revoked = key("p1", "pk3", 30);
    revoked.pusher_secret = Some("ffffffffffffffffffffffffffffffff".into());
    store.insert_key(&revoked).await?;
    assert_eq!(store.get_key(&KeyId::new("pk1")?).await?.expect("pk1"), pk, "{backend}");
    assert_eq!(store.list_pusher_keys(&pusher.id).await?.len(), 2);
    store.revoke_key(&pusher.id, &KeyId::new("pk3")?, 40).await?;
    assert_eq!(store.list_pusher_keys(&pusher.id).await?, vec![pk.clone()], "{backend}");
    assert!(!format!("{pk:?}").contains("0123456789abcdef"), "Debug hides the Pusher secret");
    assert!(store.delete_app(&pusher.id, 50, 0).await?);

    // Signing keys: one current; rotation retires it with an expiry.
    assert!(store.signing_keys(0).await?.is_empty());
    assert!(store.insert_first_signing_key(&signing("s1", 1)).await?);
    assert!(!store.insert_first_signing_key(&signing("s2", 2)).await?, "{backend}: only one current key");
    let prev = store.rotate_signing_key(&signing("s3", 3), 1_000, 5_000).await?;
    assert_eq!(prev.as_deref(), Some("s1"));
    let at = |now| {
        let store = store.clone();
        async move { store.signing_keys(now).await.map(|ks| ks.iter().map(|k| k.kid.clone()).collect::<Vec<_>>()) }
    };
    assert_eq!(at(2_000).await?, ["s3", "s1"], "{backend}: current first, then the previous in its overlap");
    assert_eq!(at(5_000).await?, ["s3"], "{backend}: the previous key expires");
    let keys_now = store.signing_keys(2_000).await?;
    assert_eq!(keys_now[1].retired_at_ms, Some(1_000));
    assert_eq!(keys_now[1].expires_at_ms, Some(5_000));
    assert_eq!(keys_now[0].public_key, vec![4; 32]);
    // A second rotation purges keys expired by then.
    store.rotate_signing_key(&signing("s4", 6), 6_000, 9_000).await?;
    assert_eq!(at(6_500).await?, ["s4", "s3"], "{backend}");

    // Capabilities round-trip exactly.
    let caps: Capabilities = serde_json::from_str(r#"{"a": ["subscribe"], "b:*": ["history", "presence"]}"#)?;
    let mut k = key("a2", "k9", 60);
    k.capabilities = caps.clone();
    store.insert_key(&k).await?;
    assert_eq!(store.get_key(&KeyId::new("k9")?).await?.expect("k9").capabilities, caps);

    // Shared idempotency ids: claim, wait on a pending one, accept, expire,
    // release after a failure.
    use herald_control_plane::store::IdempotencyClaim::{Accepted, Claimed, Pending};
    assert_eq!(store.claim_idempotency("a2", "c", "x", 1_000, 2_000).await?, Claimed, "{backend}");
    assert_eq!(store.claim_idempotency("a2", "c", "x", 1_100, 2_100).await?, Pending, "{backend}");
    assert_eq!(store.claim_idempotency("a2", "d", "x", 1_100, 2_100).await?, Claimed, "{backend}: per channel");
    store.accept_idempotency("a2", "c", "x", 10_000).await?;
    assert_eq!(store.claim_idempotency("a2", "c", "x", 1_200, 2_200).await?, Accepted, "{backend}");
    assert_eq!(store.claim_idempotency("a2", "c", "x", 10_000, 11_000).await?, Claimed, "{backend}: window over");
    store.release_idempotency("a2", "c", "x").await?;
    assert_eq!(store.claim_idempotency("a2", "c", "x", 10_001, 11_000).await?, Claimed, "{backend}: released");
    // A pending claim of a dead replica is taken over once it expires.
    assert_eq!(store.claim_idempotency("a2", "d", "x", 2_100, 3_000).await?, Claimed, "{backend}: takeover");
    assert_eq!(store.purge_idempotency(20_000).await?, 2, "{backend}");

    store.close().await;
    Ok(())
}

#[tokio::test]
async fn store_suite_postgres() -> Result<()> {
    let db = TestDb::postgres().await?;
    suite(Store::connect(&db.url, 4, Duration::from_secs(5)).await?).await
}

#[tokio::test]
async fn store_suite_sqlite() -> Result<()> {
    let db = TestDb::sqlite();
    suite(Store::connect(&db.url, 4, Duration::from_secs(5)).await?).await
}

#[tokio::test]
async fn store_suite_sqlite_in_memory() -> Result<()> {
    suite(Store::connect("sqlite::memory:", 4, Duration::from_secs(5)).await?).await
}

fn namespace(app: &str, name: &str, history: u32, at: i64) -> Namespace {
    Namespace {
        app_id: AppId::new(app).expect("app"),
        name: NamespaceName::new(name).expect("name"),
        options: bus::NamespaceOptions {
            presence: true,
            join_leave: false,
            client_publish: true,
            history_size: history,
            history_ttl_ms: if history > 0 { u64::from(u32::MAX) + 5 } else { 0 },
        },
        created_at_ms: at,
        updated_at_ms: at,
    }
}

#[tokio::test]
async fn namespaces_on_both_databases() -> Result<()> {
    for db in TestDb::both().await? {
        let store = Store::connect(&db.url, 2, Duration::from_secs(5)).await?;
        let backend = store.backend();
        store.insert_app(&app("n1")).await?;
        store.insert_app(&app("n2")).await?;
        let (n1, n2) = (AppId::new("n1")?, AppId::new("n2")?);
        assert_eq!(store.put_namespace(&namespace("n1", "chat", 0, 10)).await?, namespace("n1", "chat", 0, 10));
        // Replacing keeps the creation time.
        let stored = store.put_namespace(&namespace("n1", "chat", 100, 20)).await?;
        assert_eq!((stored.created_at_ms, stored.updated_at_ms), (10, 20), "{backend}");
        assert_eq!(stored.options.history_ttl_ms, u64::from(u32::MAX) + 5, "{backend}: 64-bit ttl");
        assert!(stored.has_history());
        store.put_namespace(&namespace("n1", "feed", 0, 30)).await?;
        store.put_namespace(&namespace("n2", "chat", 5, 30)).await?;
        assert!(
            matches!(store.put_namespace(&namespace("nope", "x", 0, 1)).await, Err(StoreError::Missing(_))),
            "{backend}: unknown app"
        );
        let names: Vec<String> = store.list_namespaces(&n1).await?.iter().map(|n| n.name.to_string()).collect();
        assert_eq!(names, ["chat", "feed"], "{backend}");
        assert_eq!(store.count_namespaces(&n1).await?, 2);
        let history: Vec<(String, String)> =
            store.list_history_namespaces().await?.iter().map(|n| (n.app_id.to_string(), n.name.to_string())).collect();
        assert_eq!(history, [("n1".into(), "chat".into()), ("n2".into(), "chat".into())], "{backend}");
        let chat = NamespaceName::new("chat")?;
        assert!(store.get_namespace(&n1, &NamespaceName::new("none")?).await?.is_none());
        let deleted = store.delete_namespace(&n1, &chat).await?.expect("deleted");
        assert_eq!(deleted.options.history_size, 100);
        assert!(store.delete_namespace(&n1, &chat).await?.is_none());
        // Deleting an app deletes its namespaces.
        assert!(store.delete_app(&n2, 1000, 500).await?);
        assert_eq!(store.count_namespaces(&n2).await?, 0, "{backend}");
        let gone: Vec<_> = store.revocations(0, 10).await?.into_iter().filter(|r| r.1.is_none()).collect();
        assert_eq!(gone, [(n2.clone(), None, 1000, false)], "{backend}: the tombstone older than 500 went");
        store.close().await;
    }
    Ok(())
}

fn webhook(app: &str, id: &str, at: i64) -> Webhook {
    Webhook {
        id: id.into(),
        app_id: AppId::new(app).expect("app"),
        url: "https://example.com/hook".into(),
        events: vec![EventKind::ChannelOccupied, EventKind::MemberAdded],
        format: Format::Herald,
        filter: Some(ChannelFilter::Prefix("presence-".into())),
        secret: "whsec_one".into(),
        previous_secret: None,
        status: WebhookStatus::Active,
        status_reason: None,
        failing_since_ms: None,
        dropped: 0,
        created_at_ms: at,
        updated_at_ms: at,
    }
}

#[tokio::test]
async fn webhooks_on_both_databases() -> Result<()> {
    for db in TestDb::both().await? {
        let store = Store::connect(&db.url, 2, Duration::from_secs(5)).await?;
        let backend = store.backend();
        store.insert_app(&app("w1")).await?;
        let w1 = AppId::new("w1")?;
        // The count is checked in the insert.
        assert!(store.insert_webhook(&webhook("w1", "wh_0000000000000001", 10), 2).await?, "{backend}");
        assert!(store.insert_webhook(&webhook("w1", "wh_0000000000000002", 20), 2).await?);
        assert!(!store.insert_webhook(&webhook("w1", "wh_0000000000000003", 30), 2).await?, "{backend}: full");
        assert!(matches!(
            store.insert_webhook(&webhook("nope", "wh_0000000000000004", 30), 2).await,
            Err(StoreError::Missing(_))
        ));
        let ids: Vec<String> = store.list_webhooks(&w1).await?.into_iter().map(|h| h.id).collect();
        assert_eq!(ids, ["wh_0000000000000001", "wh_0000000000000002"], "{backend}");
        assert_eq!(
            store.get_webhook(&w1, "wh_0000000000000001").await?,
            Some(webhook("w1", "wh_0000000000000001", 10))
        );

        // A change sets what it gives; a filter can be removed.
        let change = WebhookChange {
            url: Some("https://example.org/new".into()),
            filter: Some(None),
            ..WebhookChange::default()
        };
        let changed = store.update_webhook(&w1, "wh_0000000000000001", &change, 40).await?.expect("changed");
        assert_eq!(
            (changed.url.as_str(), &changed.filter, changed.updated_at_ms),
            ("https://example.org/new", &None, 40)
        );
        assert_eq!((changed.events.len(), changed.format, changed.created_at_ms), (2, Format::Herald, 10));
        let change = WebhookChange {
            events: Some(vec![EventKind::CacheMiss]),
            format: Some(Format::Pusher),
            filter: Some(Some(ChannelFilter::Namespace(NamespaceName::new("chat")?))),
            enabled: Some(false),
            ..WebhookChange::default()
        };
        let changed = store.update_webhook(&w1, "wh_0000000000000001", &change, 50).await?.expect("changed");
        assert_eq!((changed.events, changed.format), (vec![EventKind::CacheMiss], Format::Pusher), "{backend}");
        assert_eq!(changed.filter, Some(ChannelFilter::Namespace(NamespaceName::new("chat")?)));
        assert_eq!(
            (changed.status, changed.status_reason.as_deref()),
            (WebhookStatus::Disabled, Some("disabled by an operator"))
        );
        assert_eq!(store.enabled_webhooks().await?.len(), 1, "{backend}: a disabled endpoint is not listed");
        let enable = WebhookChange { enabled: Some(true), ..WebhookChange::default() };
        let changed = store.update_webhook(&w1, "wh_0000000000000001", &enable, 60).await?.expect("changed");
        assert_eq!((changed.status, changed.status_reason), (WebhookStatus::Active, None));
        assert!(store.update_webhook(&AppId::new("w2")?, "wh_0000000000000001", &enable, 60).await?.is_none());

        // Rotation keeps the previous secret for the overlap, or not at all.
        let rotated = store.rotate_webhook_secret(&w1, "wh_0000000000000002", "whsec_two", 1_000, 70).await?;
        let rotated = rotated.expect("rotated");
        assert_eq!(rotated.secret, "whsec_two");
        assert_eq!(rotated.previous_secret, Some(("whsec_one".to_owned(), 1_000)), "{backend}");
        assert_eq!((rotated.previous_secret_until(999), rotated.previous_secret_until(1_000)), (Some(1_000), None));
        let rotated = store.rotate_webhook_secret(&w1, "wh_0000000000000002", "whsec_three", 80, 80).await?;
        assert_eq!(rotated.expect("rotated").previous_secret, None, "{backend}: no overlap");
        assert!(store.rotate_webhook_secret(&w1, "wh_0000000000000009", "s", 1, 1).await?.is_none());

        assert!(store.delete_webhook(&w1, "wh_0000000000000002").await?);
        assert!(!store.delete_webhook(&w1, "wh_0000000000000002").await?);
        // Deleting an app deletes its endpoints.
        assert!(store.delete_app(&w1, 1_000, 0).await?);
        assert!(store.list_webhooks(&w1).await?.is_empty(), "{backend}");
        store.close().await;
    }
    Ok(())
}

#[tokio::test]
async fn migrations_are_idempotent_and_concurrent_replicas_share_a_database() -> Result<()> {
    for db in TestDb::both().await? {
        let (a, b) = tokio::join!(
            Store::connect(&db.url, 2, Duration::from_secs(5)),
            Store::connect(&db.url, 2, Duration::from_secs(5))
        );
        let (a, b) = (a?, b?);
        a.insert_app(&app("shared")).await?;
        assert!(b.get_app(&AppId::new("shared")?).await?.is_some(), "{}", a.backend());
        a.close().await;
        b.close().await;
    }
    Ok(())
}

#[tokio::test]
async fn unsupported_urls_are_refused() {
    assert!(matches!(Store::connect("mysql://x/y", 1, Duration::from_secs(1)).await, Err(StoreError::UnsupportedUrl)));
}

fn draft(app: &str, id: &str, channel: &str, kind: EventKind) -> EventDraft {
    EventDraft {
        id: id.into(),
        app: AppId::new(app).expect("app"),
        channel: channel.into(),
        kind,
        occurred_at_ms: 1_000,
        data: "{}".into(),
    }
}

#[tokio::test]
async fn the_webhook_outbox_records_once_keeps_order_leases_once_and_is_bounded() -> Result<()> {
    for db in TestDb::both().await? {
        let store = Store::connect(&db.url, 2, Duration::from_secs(5)).await?;
        let backend = store.backend();
        store.insert_app(&app("o1")).await?;
        let o1 = AppId::new("o1")?;
        assert!(store.insert_webhook(&webhook("o1", "wh_000000000000000a", 10), 10).await?);
        assert!(store.insert_webhook(&webhook("o1", "wh_000000000000000b", 10), 10).await?);
        let both = vec!["wh_000000000000000a".to_owned(), "wh_000000000000000b".to_owned()];

        // A state change is recorded once: a second replica making the same
        // change finds it made, and queues nothing.
        let occupied = Transition::Occupied { subscribers: 1 };
        let first = [(draft("o1", "evt_1", "room", EventKind::ChannelOccupied), both.clone())];
        let r = store.record_webhook_transition(&occupied, &first, 100).await?;
        assert_eq!((r.changed, r.queued), (true, 2), "{backend}");
        let again = [(draft("o1", "evt_2", "room", EventKind::ChannelOccupied), both.clone())];
        assert_eq!(store.record_webhook_transition(&occupied, &again, 100).await?, Recorded::default(), "{backend}");
        let added = Transition::MemberAdded("ada".into());
        let member = [(draft("o1", "evt_3", "room", EventKind::MemberAdded), both.clone())];
        assert_eq!(store.record_webhook_transition(&added, &member, 100).await?.queued, 2);
        let record = store.webhook_channel_record(&o1, "room").await?;
        assert_eq!((record.subscribers.map(|s| s.0), record.members), (Some(1), vec!["ada".to_owned()]));
        // Re-queuing an event id (an edge's resend) queues nothing.
        let client = draft("o1", "evt_3", "room", EventKind::ClientEvent);
        assert_eq!(store.queue_webhook_event(&client, &both, 100).await?.queued, 0, "{backend}");

        // Per endpoint and channel, only the oldest is due; another channel
        // is independent.
        let other = draft("o1", "evt_4", "lobby", EventKind::ChannelOccupied);
        store.queue_webhook_event(&other, &both[..1], 100).await?;
        let due = store.due_webhook_deliveries("wh_000000000000000a", 2_000, 10).await?;
        assert_eq!(due.len(), 2, "{backend}: the head of room and of lobby: {due:?}");
        let mut endpoints = store.due_webhook_endpoints(2_000).await?;
        endpoints.sort();
        assert_eq!(endpoints, both);

        // A lease is taken once; the next of the channel waits for it.
        let head = due[0];
        let leased = store.claim_webhook_delivery(head, "r1", 2_000, 9_000).await?.expect("leased");
        assert_eq!((leased.event_id.as_str(), leased.attempts), ("evt_1", 1), "{backend}");
        assert!(store.claim_webhook_delivery(head, "r2", 2_000, 9_000).await?.is_none(), "{backend}: leased twice");
        let due = store.due_webhook_deliveries("wh_000000000000000a", 2_000, 10).await?;
        assert_eq!(due.len(), 1, "{backend}: only lobby while room's head is out: {due:?}");
        // The lease ran out (its replica died): another replica takes it.
        let retaken = store.claim_webhook_delivery(head, "r2", 9_001, 20_000).await?.expect("retaken");
        assert_eq!(retaken.attempts, 2);
        // The first replica's late answer changes nothing.
        let attempt = Attempt {
            event_id: "evt_1".into(),
            kind: "channel_occupied".into(),
            channel: "room".into(),
            attempt: 1,
            at_ms: 2_000,
            status: Some(200),
            latency_ms: 5,
            error: None,
            outcome: "delivered".into(),
        };
        store.finish_webhook_delivery(&leased, "r1", &Outcome::Delivered, &attempt, 10, false).await?;
        assert!(store.due_webhook_deliveries("wh_000000000000000a", 30_000, 10).await?.contains(&head), "{backend}");
        // Retry later; then delivered: the next of the channel is due.
        let failed = Attempt { status: Some(503), error: Some("HTTP 503".into()), ..attempt.clone() };
        store.finish_webhook_delivery(&retaken, "r2", &Outcome::Retry(40_000), &failed, 10, false).await?;
        assert!(!store.due_webhook_deliveries("wh_000000000000000a", 39_999, 10).await?.contains(&head));
        let hook = store.get_webhook(&o1, "wh_000000000000000a").await?.expect("endpoint");
        assert_eq!((hook.status, hook.status_reason.as_deref()), (WebhookStatus::Failing, Some("HTTP 503")));
        let again = store.claim_webhook_delivery(head, "r2", 40_000, 50_000).await?.expect("due again");
        store.finish_webhook_delivery(&again, "r2", &Outcome::Delivered, &attempt, 10, true).await?;
        let hook = store.get_webhook(&o1, "wh_000000000000000a").await?.expect("endpoint");
        assert_eq!(hook.status, WebhookStatus::Active, "{backend}: a success clears failing");
        let due = store.due_webhook_deliveries("wh_000000000000000a", 40_000, 10).await?;
        assert_eq!(due.len(), 2, "{backend}: room's next (the member) and lobby: {due:?}");
        let log = store.webhook_attempts("wh_000000000000000a", 10).await?;
        assert_eq!(log.iter().map(|a| a.outcome.as_str()).collect::<Vec<_>>(), ["delivered", "retrying", "delivered"]);

        // The app's outbox is bounded: past it, events are dropped and
        // counted on each endpoint.
        let held = store.webhook_backlog().await?.0;
        let full = store.queue_webhook_event(&draft("o1", "evt_5", "x", EventKind::CacheMiss), &both, 5).await?;
        assert_eq!((full.queued, full.dropped), (0, 2), "{backend}: {held} held, bound 5");
        let hook = store.get_webhook(&o1, "wh_000000000000000b").await?.expect("endpoint");
        assert_eq!(hook.dropped, 1);

        // An endpoint disabled meanwhile gets nothing queued.
        let off = WebhookChange { enabled: Some(false), ..WebhookChange::default() };
        store.update_webhook(&o1, "wh_000000000000000b", &off, 60).await?;
        let late = store.queue_webhook_event(&draft("o1", "evt_6", "y", EventKind::CacheMiss), &both, 100).await?;
        assert_eq!(late.queued, 1, "{backend}: only the enabled endpoint");
        let vacated = [(draft("o1", "evt_7", "room", EventKind::ChannelVacated), both.clone())];
        assert!(store.record_webhook_transition(&Transition::Vacated, &vacated, 100).await?.changed);
        assert!(store.webhook_channel_record(&o1, "room").await?.subscribers.is_none());
    }
    Ok(())
}
