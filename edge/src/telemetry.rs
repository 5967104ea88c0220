//! The edge's Prometheus metrics: their HELP text, and the page `/metrics`
//! serves. The recorder is the process-wide one of the bus crate, shared
//! by every Herald component in the process (an edge, the control plane,
//! or both in the embedded mode).

use metrics_exporter_prometheus::PrometheusHandle;

/// The HELP text of the edge's metrics.
pub const DESCRIPTIONS: &[(&str, &str)] = &[
    ("herald_connections", "Open client connections (Herald and Pusher protocols)."),
    ("herald_subscriptions", "Channel subscriptions of the open connections."),
    ("herald_connections_accepted_total", "Client connections accepted (upgraded and authenticated)."),
    ("herald_closes_total", "Connections closed, by close code name."),
    ("herald_auth_failures_total", "Connections refused at authentication, by reason."),
    ("herald_requests_total", "Requests (frames with a request id) read from clients."),
    ("herald_request_errors_total", "Requests answered with an error, by error code name."),
    ("herald_client_publishes_total", "Messages published by clients over their connection."),
    ("herald_messages_in_total", "Messages received from the bus for local subscribers."),
    ("herald_deliveries_total", "Messages handed to local subscribers' send queues."),
    (
        "herald_fanout_seconds",
        "Time to hand one message to every local subscriber of its channel, or to add it to the channel's burst when the channel is busy.",
    ),
    ("herald_frames_out_total", "WebSocket frames written to clients."),
    ("herald_slow_consumer_closes_total", "Connections closed because their send queue was full."),
    ("herald_presence_events_total", "Presence join and leave events delivered to subscribers."),
    ("herald_recovered_messages_total", "Messages replayed to resubscribing clients from history."),
    ("herald_history_gap_fills_total", "Gaps in a channel's sequence filled from its history stream."),
    ("herald_history_streams_recreated_total", "History streams created again after they were lost."),
    ("herald_user_event_deliveries_total", "Server-to-user events delivered to connections."),
    ("herald_jwks_fetch_failures_total", "Failed fetches of the control plane's JWKS."),
    ("herald_pusher_connections", "Open Pusher-protocol connections."),
    ("herald_pusher_subscriptions", "Channel subscriptions of Pusher-protocol connections."),
    ("herald_pusher_messages_in_total", "Messages received from the bus for Pusher subscribers."),
    ("herald_pusher_client_events_total", "Pusher client events (client-*) relayed."),
    ("herald_pusher_client_events_refused_total", "Pusher client events refused, by reason."),
    ("herald_pusher_subscription_errors_total", "Pusher subscriptions refused, by reason."),
    ("herald_pusher_signins_total", "Pusher user sign-ins accepted."),
    ("herald_pusher_signin_failures_total", "Pusher user sign-ins refused."),
    ("herald_pusher_errors_total", "pusher:error events sent to Pusher clients, by code."),
    ("herald_pusher_cache_misses_total", "Subscriptions to Pusher cache channels that had no cached message."),
    (
        "herald_edge_webhook_events_reported_total",
        "Webhook events (client events, cache misses) reported to the control plane.",
    ),
    (
        "herald_edge_webhook_events_dropped_total",
        "Webhook events dropped because the report queue was full or reports kept failing.",
    ),
    ("herald_edge_webhook_report_retries_total", "Webhook event reports sent again after a failure."),
];

/// The process's Prometheus handle ([`herald_bus::telemetry::process_recorder`]),
/// with the edge's metrics described.
pub fn prometheus() -> &'static PrometheusHandle {
    static DESCRIBED: std::sync::Once = std::sync::Once::new();
    let handle = herald_bus::telemetry::process_recorder();
    DESCRIBED.call_once(|| herald_bus::telemetry::describe(DESCRIPTIONS));
    handle
}

/// The metrics page in the Prometheus text format: the recorded metrics,
/// then the process's (`process_*`, `herald_build_info`).
#[must_use]
pub fn render() -> String {
    let mut page = prometheus().render();
    page.push_str(&herald_bus::telemetry::process_text());
    page
}
