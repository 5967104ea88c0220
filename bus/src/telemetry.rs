//! The bus's own metrics. Each is recorded under its `herald_bus_*` name
//! and, until a later release drops them, under the `herald_backplane_*`
//! name dashboards used before the bus was named (documented as
//! deprecated in the README's metrics table).

/// Whether the NATS connection is up (`herald_bus_connected`).
pub(crate) fn connected(up: bool) {
    let v = if up { 1.0 } else { 0.0 };
    metrics::gauge!("herald_bus_connected").set(v);
    metrics::gauge!("herald_backplane_connected").set(v);
}

/// The NATS connection was lost; the client reconnects on its own
/// (`herald_bus_reconnects_total`).
pub(crate) fn disconnected() {
    metrics::counter!("herald_bus_reconnects_total").increment(1);
    metrics::counter!("herald_backplane_reconnects_total").increment(1);
}

/// The NATS client dropped messages of a subscription that fell behind
/// (`herald_bus_slow_consumer_total`).
pub(crate) fn slow_consumer() {
    metrics::counter!("herald_bus_slow_consumer_total").increment(1);
    metrics::counter!("herald_backplane_slow_consumer_total").increment(1);
}

/// A message from the bus could not be decoded
/// (`herald_bus_decode_errors_total`).
pub fn decode_error() {
    metrics::counter!("herald_bus_decode_errors_total").increment(1);
    metrics::counter!("herald_backplane_decode_errors_total").increment(1);
}
