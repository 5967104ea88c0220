//! Every message of every Herald schema survives encode → decode unchanged,
//! filled with non-default values; and no schema message is left out of this
//! test (checked against the compiled descriptor set).

use std::collections::BTreeSet;

use bytes::Bytes;
use herald_proto::{api, bus, client};
use prost::{Message, Name};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// Encodes and decodes `msg`, asserts equality, and returns its full name.
fn rt<M: Message + Name + Default + PartialEq + std::fmt::Debug>(msg: M) -> String {
    let bytes = msg.encode_to_vec();
    let back = M::decode(bytes.as_slice()).unwrap_or_else(|e| panic!("{}: {e}", M::full_name()));
    assert_eq!(back, msg, "{}", M::full_name());
    // Length-delimited too, as frames of a stream would be.
    let delimited = msg.encode_length_delimited_to_vec();
    assert_eq!(M::decode_length_delimited(delimited.as_slice()).expect("delimited"), msg);
    M::full_name()
}

fn pos() -> client::StreamPosition {
    client::StreamPosition { seq: 42, epoch: "e1".into() }
}

fn member() -> client::Member {
    client::Member { client_id: "user-1".into(), info: b("{\"name\":\"Ada\"}") }
}

fn client_messages() -> Vec<String> {
    use client::*;
    let frames = [
        client_frame::Kind::Connect(Connect { token: "jwt".into(), client_name: "sdk/1".into() }),
        client_frame::Kind::Subscribe(Subscribe { channel: "chat:a".into(), recover_from: Some(pos()) }),
        client_frame::Kind::Unsubscribe(Unsubscribe { channel: "chat:a".into() }),
        client_frame::Kind::Publish(Publish {
            channel: "c".into(),
            data: Bytes::from_static(&[0, 1, 255]),
            event: Some("ev".into()),
            idempotency_id: Some("id-1".into()),
        }),
        client_frame::Kind::RefreshToken(RefreshToken { token: "jwt2".into() }),
        client_frame::Kind::PresenceQuery(PresenceQuery { channel: "p".into(), after: "a".into(), limit: 5 }),
        client_frame::Kind::Ping(Ping {}),
    ];
    let mut names = vec![];
    for (i, kind) in frames.into_iter().enumerate() {
        names.push(rt(ClientFrame { request_id: u64::MAX - i as u64, kind: Some(kind) }));
    }
    names.push(rt(Connect { token: "t".into(), client_name: "n".into() }));
    names.push(rt(Subscribe { channel: "c".into(), recover_from: Some(pos()) }));
    names.push(rt(pos()));
    names.push(rt(Unsubscribe { channel: "c".into() }));
    names.push(rt(Publish { channel: "c".into(), data: b("x"), event: None, idempotency_id: Some("i".into()) }));
    names.push(rt(RefreshToken { token: "t".into() }));
    names.push(rt(PresenceQuery { channel: "c".into(), after: String::new(), limit: 0 }));
    names.push(rt(Ping {}));

    let limits = Limits {
        max_frame_bytes: 65536,
        max_message_bytes: 65536,
        max_subscriptions: 100,
        publish_rate_per_sec: 50,
        publish_burst: 100,
    };
    let connected = Connected {
        connection_id: "conn-1".into(),
        client_id: "user-1".into(),
        heartbeat_interval_ms: 25_000,
        heartbeat_timeout_ms: 60_000,
        token_expires_at_ms: 1_764_100_000_000,
        limits: Some(limits),
        edge_id: "edge-a".into(),
    };
    let oks = [
        ReplyOk {
            value: Some(reply_ok::Value::Subscribed(SubscribeResult {
                history: true,
                recovered: true,
                position: Some(pos()),
            })),
        },
        ReplyOk { value: Some(reply_ok::Value::Published(PublishResult { id: "m1".into(), position: Some(pos()) })) },
        ReplyOk {
            value: Some(reply_ok::Value::Presence(PresenceResult {
                channel: "p".into(),
                members: vec![member(), member()],
                next: "b".into(),
                total: 9,
            })),
        },
        ReplyOk { value: Some(reply_ok::Value::Refreshed(RefreshResult { token_expires_at_ms: 7 })) },
        ReplyOk { value: None },
    ];
    let message = Message {
        channel: "c".into(),
        data: Bytes::from_static(&[9; 64]),
        event: Some("e".into()),
        seq: 10,
        epoch: "ep".into(),
        publisher: "user-2".into(),
        timestamp_ms: 123,
        id: "m-1".into(),
    };
    let event = PresenceEvent { channel: "p".into(), kind: presence_event::Kind::Leave as i32, member: Some(member()) };
    let disconnect = Disconnect { code: 4000, reason: "slow".into(), advice: ReconnectAdvice::Reconnect as i32 };
    let error = ReplyError { code: 9, message: "rate limited".into(), retryable: true };
    let mut server = vec![
        server_frame::Kind::Connected(connected.clone()),
        server_frame::Kind::Reply(Reply { request_id: 5, result: Some(reply::Result::Error(error.clone())) }),
        server_frame::Kind::Message(message.clone()),
        server_frame::Kind::PresenceEvent(event.clone()),
        server_frame::Kind::Disconnect(disconnect.clone()),
        server_frame::Kind::GoAway(GoAway { within_ms: 5_000 }),
    ];
    for ok in &oks {
        server.push(server_frame::Kind::Reply(Reply { request_id: 1, result: Some(reply::Result::Ok(ok.clone())) }));
    }
    for kind in server {
        names.push(rt(ServerFrame { kind: Some(kind) }));
    }
    names.push(rt(connected));
    names.push(rt(GoAway { within_ms: 2_500 }));
    names.push(rt(limits));
    names.push(rt(Reply { request_id: 3, result: Some(reply::Result::Ok(oks[0].clone())) }));
    for ok in oks {
        names.push(rt(ok));
    }
    names.push(rt(error));
    names.push(rt(SubscribeResult { history: true, recovered: false, position: Some(pos()) }));
    names.push(rt(PublishResult { id: "x".into(), position: None }));
    names.push(rt(PresenceResult { channel: "p".into(), members: vec![member()], next: String::new(), total: 1 }));
    names.push(rt(RefreshResult { token_expires_at_ms: -1 }));
    names.push(rt(message));
    names.push(rt(member()));
    names.push(rt(event));
    names.push(rt(disconnect));
    names
}

fn bus_messages() -> Vec<String> {
    use bus::*;
    let entry =
        PresenceEntry { channel: "p".into(), connection_id: "c1".into(), client_id: "u1".into(), info: b("{}") };
    let pusher = PusherApp {
        client_events: true,
        presence_max_members: 100,
        max_event_bytes: 10_240,
        subscription_count: true,
        secrets: vec![PusherSecret { key_id: "k".into(), secret: "s".into() }],
        client_event_rate: 10,
        allowed_origins: vec!["https://app.example".into()],
        disabled: true,
        disabled_reason: "unpaid".into(),
    };
    let quota = QuotaState {
        app_id: "a".into(),
        messages_over: true,
        connections_over: true,
        reason: "over quota".into(),
        ttl_ms: 30_000,
    };
    let usage = AppUsage {
        app_id: "a".into(),
        published_rest: 1,
        published_grpc: 2,
        published_pusher_http: 3,
        published_client: 4,
        delivered: 5,
        bytes_in: 6,
        bytes_out: 7,
        connections_opened: 8,
        webhooks_ok: 9,
        webhooks_failed: 10,
        refusals: vec![Refusal { reason: "quota_exceeded".into(), count: 11 }],
    };
    let user_event = UserEvent {
        app_id: "a".into(),
        user_id: "u".into(),
        event: "e".into(),
        data: b("{}"),
        id: "m".into(),
        timestamp_ms: 4,
    };
    let mut names = vec![
        rt(ChannelMessage {
            app_id: "app".into(),
            channel: "c".into(),
            data: b("payload"),
            event: Some("e".into()),
            id: "m1".into(),
            publisher: "u".into(),
            exclude_connection: "1.2".into(),
            timestamp_ms: 99,
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
        }),
        rt(entry.clone()),
        rt(PresenceJoin { entry: Some(entry.clone()) }),
        rt(PresenceLeave { entry: Some(entry.clone()) }),
        rt(PresenceSnapshot { entries: vec![entry.clone(), entry.clone()], taken_at_ms: 5 }),
        rt(KeyRevoked { app_id: "a".into(), key_id: "k".into(), at: 1_764_100_000, until: 1_764_190_000 }),
        rt(AppDeleted { app_id: "a".into(), at: 1_764_100_000, until: 1_764_190_000 }),
        rt(AppStatusChanged {
            app_id: "a".into(),
            disabled: true,
            reason: "unpaid".into(),
            at: 1_764_100_000,
            until: 1_764_190_000,
        }),
        rt(SigningKeysRotated { current_kid: "kid".into() }),
        rt(AppLimitsChanged { app_id: "a".into(), max_message_bytes: 1024, max_connections: 10 }),
        rt(NamespacesChanged { app_id: "a".into() }),
        rt(OccupancySync { app_id: "a".into() }),
        rt(PresenceSync {}),
        rt(PresenceSyncAll {}),
        rt(ChannelCount { channel: "c".into(), subscribers: 3 }),
        rt(OccupancyReport {
            edge_id: "e".into(),
            app_id: "a".into(),
            channels: vec![ChannelCount { channel: "c".into(), subscribers: 3 }],
            part: 1,
            parts: 2,
            ttl_ms: 30_000,
        }),
        rt(NamespaceOptions {
            presence: true,
            join_leave: true,
            client_publish: false,
            history_size: 10,
            history_ttl_ms: 60_000,
        }),
        rt(Namespace { name: "chat".into(), options: Some(NamespaceOptions { presence: true, ..Default::default() }) }),
        rt(NamespaceList {
            app_exists: true,
            namespaces: vec![Namespace { name: "chat".into(), options: Some(NamespaceOptions::default()) }],
            error: "db down".into(),
            history_max_bytes: 1 << 20,
            history_replicas: 3,
            pusher: Some(pusher.clone()),
            webhook_events: vec!["client_event".into(), "cache_miss".into()],
        }),
        rt(pusher.clone()),
        rt(PusherSecret { key_id: "k".into(), secret: "s".into() }),
        rt(UserTerminated { app_id: "a".into(), user_id: "u".into() }),
        rt(user_event.clone()),
        rt(WebhookEvent {
            id: "ev_1".into(),
            app_id: "a".into(),
            channel: "private-c".into(),
            kind: "client_event".into(),
            event: "client-e".into(),
            data: b("{}"),
            connection_id: "1.2".into(),
            user_id: "u".into(),
            timestamp_ms: 4,
        }),
        rt(WebhookEventReply { error: "busy".into() }),
        rt(quota.clone()),
        rt(usage.clone()),
        rt(Refusal { reason: "rate_limited".into(), count: 3 }),
        rt(AppGauge { app_id: "a".into(), connections: 4, channels: 5 }),
        rt(UsageBatch { seq: 7, timestamp_ms: 8, apps: vec![usage.clone()] }),
        rt(UsageReport {
            node_id: "edge-1".into(),
            batches: vec![UsageBatch { seq: 7, timestamp_ms: 8, apps: vec![usage.clone()] }],
            gauges: vec![AppGauge { app_id: "a".into(), connections: 4, channels: 5 }],
            timestamp_ms: 9,
        }),
        rt(UsageReportReply { error: "busy".into() }),
        rt(DebugTapOn { app_id: "a".into(), until_ms: 5, lease_ms: 30_000 }),
        rt(DebugPublish {
            source: "rest".into(),
            channel: "c".into(),
            size: 300,
            preview: b("{\"a\""),
            truncated: true,
            event: "e".into(),
        }),
        rt(DebugConnect { protocol: "pusher".into(), remote_ip: "10.0.0.1".into(), user_id: "u".into() }),
        rt(DebugDisconnect { code: 4000, reason: "slow".into() }),
        rt(DebugSubscribe { channel: "c".into() }),
        rt(DebugRefusal { code: "token_invalid".into(), number: 4100, reason: "bad".into(), channel: "c".into() }),
        rt(DebugWebhook {
            endpoint_id: "wh_1".into(),
            event_type: "channel_occupied".into(),
            status: 500,
            latency_ms: 12,
            error: "500".into(),
            ok: false,
        }),
    ];
    for kind in [
        debug_event::Kind::Publish(DebugPublish { source: "grpc".into(), ..Default::default() }),
        debug_event::Kind::Connect(DebugConnect { protocol: "herald".into(), ..Default::default() }),
        debug_event::Kind::Disconnect(DebugDisconnect { code: 1000, reason: "bye".into() }),
        debug_event::Kind::Subscribe(DebugSubscribe { channel: "c".into() }),
        debug_event::Kind::Unsubscribe(DebugSubscribe { channel: "c".into() }),
        debug_event::Kind::Refusal(DebugRefusal { code: "x".into(), ..Default::default() }),
        debug_event::Kind::Webhook(DebugWebhook { ok: true, ..Default::default() }),
    ] {
        names.push(rt(DebugEvent {
            timestamp_ms: 1,
            node_id: "edge-1".into(),
            app_id: "a".into(),
            connection_id: "1.2".into(),
            dropped: 7,
            kind: Some(kind),
        }));
    }
    for kind in [
        presence_report::Kind::Join(PresenceJoin { entry: Some(entry.clone()) }),
        presence_report::Kind::Leave(PresenceLeave { entry: Some(entry.clone()) }),
        presence_report::Kind::Snapshot(PresenceSnapshot { entries: vec![entry.clone()], taken_at_ms: 1 }),
        presence_report::Kind::Sync(PresenceSync {}),
    ] {
        names.push(rt(PresenceReport { edge_id: "e".into(), app_id: "a".into(), ttl_ms: 30_000, kind: Some(kind) }));
    }
    for kind in [
        control_event::Kind::KeyRevoked(KeyRevoked { app_id: "a".into(), key_id: "k".into(), at: 1, until: 2 }),
        control_event::Kind::AppDeleted(AppDeleted { app_id: "a".into(), at: 1, until: 2 }),
        control_event::Kind::SigningKeysRotated(SigningKeysRotated { current_kid: "k".into() }),
        control_event::Kind::AppLimitsChanged(AppLimitsChanged {
            app_id: "a".into(),
            max_message_bytes: 1024,
            max_connections: 10,
        }),
        control_event::Kind::NamespacesChanged(NamespacesChanged { app_id: "a".into() }),
        control_event::Kind::PresenceSyncAll(PresenceSyncAll {}),
        control_event::Kind::UserTerminated(UserTerminated { app_id: "a".into(), user_id: "u".into() }),
        control_event::Kind::UserEvent(user_event),
        control_event::Kind::OccupancySync(OccupancySync { app_id: "a".into() }),
        control_event::Kind::QuotaState(quota),
        control_event::Kind::DebugTapOn(DebugTapOn { app_id: "a".into(), until_ms: 9, lease_ms: 30_000 }),
        control_event::Kind::AppStatusChanged(AppStatusChanged {
            app_id: "a".into(),
            disabled: true,
            reason: "unpaid".into(),
            at: 1,
            until: 2,
        }),
    ] {
        names.push(rt(ControlEvent { timestamp_ms: 3, kind: Some(kind) }));
    }
    names
}

fn api_messages() -> Vec<String> {
    use api::*;
    let limits = AppLimits {
        max_connections: 10,
        max_message_bytes: 1024,
        publish_rate_per_sec: 5,
        quota_messages_per_day: 1_000,
        quota_messages_per_month: 20_000,
        quota_connections: 50,
    };
    let stats_entry = AppStatsEntry {
        interval_start: 60_000,
        unit: "minute".into(),
        published: 10,
        published_rest: 1,
        published_grpc: 2,
        published_pusher_http: 3,
        published_client: 4,
        delivered: 5,
        bytes_in: 6,
        bytes_out: 7,
        connections_opened: 8,
        peak_connections: 9,
        peak_channels: 10,
        webhooks_ok: 11,
        webhooks_failed: 12,
        refusals: vec![StatsRefusal { reason: "rate_limited".into(), count: 13 }],
    };
    let delivery = WebhookDelivery {
        event_id: "evt_1".into(),
        r#type: "member_added".into(),
        channel: "presence-room".into(),
        attempt: 2,
        at_ms: 9,
        status: None,
        latency_ms: 5000,
        error: Some("no answer within 5s".into()),
        outcome: "retrying".into(),
    };
    let webhook = Webhook {
        id: "wh_1".into(),
        app_id: "a".into(),
        url: "https://example.com/hooks".into(),
        events: vec!["channel_occupied".into(), "member_removed".into()],
        format: "herald".into(),
        filter: None,
        status: "failing".into(),
        status_reason: Some("HTTP 503".into()),
        failing_since_ms: Some(5),
        dropped: 2,
        created_at_ms: 1,
        updated_at_ms: 2,
        previous_secret_expires_at_ms: Some(3),
    };
    let app = App {
        id: "app1".into(),
        name: "Demo".into(),
        limits: Some(limits),
        allowed_origins: vec!["https://example.com".into()],
        created_at_ms: 1,
        pusher: Some(PusherSettings {
            enabled: true,
            client_events: true,
            presence_max_members: 100,
            max_event_bytes: 10_240,
            subscription_count: true,
            client_event_rate: 10,
            batch_max: 10,
            app_id: "1234567".into(),
        }),
        disabled: Some(AppDisabled { at_ms: 5, reason: "unpaid".into() }),
    };
    let pusher_update = PusherSettingsUpdate {
        enabled: Some(true),
        client_events: None,
        presence_max_members: Some(0),
        max_event_bytes: Some(1),
        subscription_count: Some(false),
        client_event_rate: None,
        batch_max: Some(5),
        app_id: Some("0042".into()),
    };
    let cap = Capability { pattern: "chat:*".into(), operations: vec!["subscribe".into(), "publish".into()] };
    let key = ApiKey {
        id: "k1".into(),
        app_id: "app1".into(),
        name: "backend".into(),
        capabilities: vec![cap.clone()],
        created_at_ms: 2,
        revoked_at_ms: 3,
        pusher: true,
    };
    let publish = PublishRequest {
        app_id: "app1".into(),
        channel: "c".into(),
        channels: vec!["a".into(), "b".into()],
        data: b("{}"),
        event: Some("e".into()),
        idempotency_id: Some("i".into()),
        exclude_connection: Some("1.2".into()),
    };
    let response = PublishResponse {
        id: "m".into(),
        seq: Some(4),
        position: Some(HistoryPosition { seq: 4, epoch: "e".into() }),
        positions: vec![ChannelPosition { channel: "c".into(), seq: 4, epoch: "e".into() }],
    };
    let ns_options = NamespaceOptions {
        presence: true,
        join_leave: true,
        client_publish: Some(false),
        history_size: 10,
        history_ttl_ms: 60_000,
    };
    let namespace = Namespace { name: "chat".into(), options: Some(ns_options), created_at_ms: 1, updated_at_ms: 2 };
    let error = ApiError { code: "invalid_channel".into(), message: "bad".into() };
    let results = vec![
        PublishResult { result: Some(publish_result::Result::Ok(response.clone())) },
        PublishResult { result: Some(publish_result::Result::Error(error.clone())) },
    ];
    vec![
        rt(limits),
        rt(app.clone()),
        rt(CreateAppRequest {
            name: "n".into(),
            limits: Some(limits),
            allowed_origins: vec!["o".into()],
            id: Some("app2".into()),
            pusher: Some(pusher_update.clone()),
        }),
        rt(AppDisabled { at_ms: 5, reason: "unpaid".into() }),
        rt(UpdateAppRequest {
            app_id: "a".into(),
            name: Some("n".into()),
            limits: Some(AppLimitsUpdate {
                max_connections: Some(0),
                max_message_bytes: Some(512),
                publish_rate_per_sec: None,
                quota_messages_per_day: Some(100),
                quota_messages_per_month: None,
                quota_connections: Some(0),
            }),
            allowed_origins: Some(AllowedOrigins { origins: vec![] }),
            pusher: Some(pusher_update.clone()),
            disabled: Some(true),
            disabled_reason: Some("unpaid".into()),
        }),
        rt(pusher_update),
        rt(app.pusher.clone().unwrap_or_default()),
        rt(AllowedOrigins { origins: vec!["https://example.com".into()] }),
        rt(AppLimitsUpdate { publish_rate_per_sec: Some(3), ..Default::default() }),
        rt(RotateSigningKeysRequest { overlap_seconds: Some(0) }),
        rt(WebhookFilter { kind: Some(webhook_filter::Kind::Prefix("presence-".into())) }),
        rt(webhook.clone()),
        rt(WebhookWithSecret { webhook: Some(webhook.clone()), secret: "whsec_x".into() }),
        rt(CreateWebhookRequest {
            app_id: "a".into(),
            url: "https://example.com/hooks".into(),
            events: vec!["channel_occupied".into()],
            format: "pusher".into(),
            filter: Some(WebhookFilter { kind: Some(webhook_filter::Kind::Namespace("chat".into())) }),
        }),
        rt(ListWebhooksRequest { app_id: "a".into() }),
        rt(ListWebhooksResponse { webhooks: vec![webhook.clone(), webhook] }),
        rt(GetWebhookRequest { app_id: "a".into(), webhook_id: "wh_1".into() }),
        rt(WebhookEvents { events: vec!["member_added".into(), "client_event".into()] }),
        rt(UpdateWebhookRequest {
            app_id: "a".into(),
            webhook_id: "wh_1".into(),
            url: Some("https://example.com/new".into()),
            events: Some(WebhookEvents { events: vec!["cache_miss".into()] }),
            format: None,
            filter: Some(WebhookFilter { kind: None }),
            enabled: Some(false),
        }),
        rt(DeleteWebhookRequest { app_id: "a".into(), webhook_id: "wh_1".into() }),
        rt(DeleteWebhookResponse {}),
        rt(RotateWebhookSecretRequest { app_id: "a".into(), webhook_id: "wh_1".into(), overlap_seconds: Some(60) }),
        rt(TestWebhookRequest { app_id: "a".into(), webhook_id: "wh_1".into() }),
        rt(TestWebhookResponse { event_id: "evt_1".into(), status: Some(200), latency_ms: 3, error: None }),
        rt(ListWebhookDeliveriesRequest { app_id: "a".into(), webhook_id: "wh_1".into(), limit: Some(10) }),
        rt(delivery.clone()),
        rt(ListWebhookDeliveriesResponse { deliveries: vec![delivery] }),
        rt(RotateSigningKeysResponse {
            kid: "k2".into(),
            previous_kid: Some("k1".into()),
            previous_expires_at_ms: Some(7),
        }),
        rt(CreateConsoleLinkRequest {}),
        rt(CreateConsoleLinkResponse { path: "/console/login/ab".into(), expires_at_ms: 9 }),
        rt(ListAppsRequest {}),
        rt(ListAppsResponse { apps: vec![app.clone(), app] }),
        rt(GetAppRequest { app_id: "a".into() }),
        rt(DeleteAppRequest { app_id: "a".into() }),
        rt(DeleteAppResponse {}),
        rt(cap.clone()),
        rt(key.clone()),
        rt(CreateKeyRequest { app_id: "a".into(), name: "n".into(), capabilities: vec![cap.clone()], pusher: true }),
        rt(CreateKeyResponse {
            key: Some(key.clone()),
            secret: "s".into(),
            pusher_secret: "0123456789abcdef0123456789abcdef".into(),
        }),
        rt(ListKeysRequest { app_id: "a".into() }),
        rt(ListKeysResponse { keys: vec![key] }),
        rt(RevokeKeyRequest { app_id: "a".into(), key_id: "k".into() }),
        rt(RevokeKeyResponse { revoked_at_ms: 5, edges_notified: true }),
        rt(MintTokenRequest {
            app_id: "a".into(),
            client_id: "u".into(),
            capabilities: vec![cap],
            ttl_seconds: 60,
            info: b("{}"),
        }),
        rt(MintTokenResponse { token: "t".into(), expires_at_ms: 9 }),
        rt(publish.clone()),
        rt(response),
        rt(PublishBatchRequest { messages: vec![publish.clone(), publish] }),
        rt(results[0].clone()),
        rt(PublishBatchResponse { results }),
        rt(error),
        rt(GetPresenceRequest { app_id: "a".into(), channel: "c".into(), after: "u".into(), limit: 10 }),
        rt(PresenceMember { client_id: "u".into(), connections: 3, info: b("{}") }),
        rt(GetPresenceResponse {
            members: vec![PresenceMember { client_id: "u".into(), connections: 1, info: b("") }],
            channel: "c".into(),
            count: 1,
            next: "u".into(),
        }),
        rt(ListChannelsRequest { app_id: "a".into(), prefix: "chat:".into() }),
        rt(GetAppStatsRequest {
            app_id: "a".into(),
            unit: "hour".into(),
            start: Some(1),
            end: Some(2),
            limit: 10,
            direction: "forwards".into(),
        }),
        rt(StatsRefusal { reason: "quota_exceeded".into(), count: 2 }),
        rt(stats_entry.clone()),
        rt(GetAppStatsResponse { entries: vec![stats_entry], next_start: Some(1), next_end: Some(5) }),
        rt(ChannelInfo { name: "c".into(), subscribers: 2 }),
        rt(ListChannelsResponse { channels: vec![ChannelInfo { name: "c".into(), subscribers: 2 }], truncated: true }),
        rt(GetHistoryRequest { app_id: "a".into(), channel: "c".into(), since: 3, limit: 10, epoch: "e".into() }),
        rt(HistoryMessage {
            seq: 1,
            data: b("d"),
            event: Some("e".into()),
            id: "i".into(),
            publisher: "p".into(),
            timestamp_ms: 2,
        }),
        rt(GetHistoryResponse {
            epoch: "e".into(),
            messages: vec![],
            complete: true,
            last_seq: 3,
            channel: "c".into(),
        }),
        rt(HistoryPosition { seq: 4, epoch: "e".into() }),
        rt(ChannelPosition { channel: "c".into(), seq: 4, epoch: "e".into() }),
        rt(ns_options),
        rt(namespace.clone()),
        rt(PutNamespaceRequest { app_id: "a".into(), name: "chat".into(), options: Some(ns_options) }),
        rt(PutNamespaceResponse { namespace: Some(namespace.clone()), created: true }),
        rt(GetNamespaceRequest { app_id: "a".into(), name: "chat".into() }),
        rt(ListNamespacesRequest { app_id: "a".into() }),
        rt(ListNamespacesResponse { namespaces: vec![namespace] }),
        rt(DeleteNamespaceRequest { app_id: "a".into(), name: "chat".into() }),
        rt(DeleteNamespaceResponse {}),
        rt(PublishToUserRequest { app_id: "a".into(), user_id: "u".into(), data: b("d"), event: Some("e".into()) }),
        rt(PublishToUserResponse { id: "m".into() }),
        rt(TerminateUserRequest { app_id: "a".into(), user_id: "u".into() }),
        rt(TerminateUserResponse {}),
        rt(WatchDebugEventsRequest {
            app_id: "a".into(),
            channel: "chat".into(),
            types: vec!["publish".into(), "connect".into()],
        }),
        rt(DebugEventItem { r#type: "publish".into(), json: "{\"type\":\"publish\"}".into() }),
    ]
}

/// Every message type declared in the schemas (nested types included).
fn declared_messages() -> BTreeSet<String> {
    fn walk(prefix: &str, msgs: &[prost_types::DescriptorProto], out: &mut BTreeSet<String>) {
        for m in msgs {
            let name = format!("{prefix}.{}", m.name());
            walk(&name, &m.nested_type, out);
            out.insert(name);
        }
    }
    let set = prost_types::FileDescriptorSet::decode(herald_proto::FILE_DESCRIPTOR_SET).expect("descriptor set");
    let mut out = BTreeSet::new();
    for file in set.file {
        walk(file.package(), &file.message_type, &mut out);
    }
    out
}

#[test]
fn every_schema_message_round_trips() {
    let tested: BTreeSet<String> = client_messages().into_iter().chain(bus_messages()).chain(api_messages()).collect();
    let declared = declared_messages();
    let missing: Vec<_> = declared.difference(&tested).collect();
    assert!(missing.is_empty(), "messages without a round-trip test: {missing:?}");
    assert!(declared.len() > 60, "descriptor set looks incomplete: {}", declared.len());
}

#[test]
fn garbage_never_panics_the_decoder() {
    let inputs: [&[u8]; 6] = [
        &[0xff; 32],
        &[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f], // length prefix far beyond the input
        &[0x52, 0x80],                         // truncated varint
        &[0x08],                               // field without value
        b"\x7a\x05hello",                      // wrong wire type for a oneof message
        &[],
    ];
    for input in inputs {
        let _ = client::ClientFrame::decode(input);
        let _ = client::ServerFrame::decode(input);
        let _ = bus::ChannelMessage::decode(input);
    }
    // An empty frame decodes to a frame without a kind; the edge must reject
    // it as "bad frame".
    assert_eq!(client::ClientFrame::decode(&[][..]).expect("empty").kind, None);
}
