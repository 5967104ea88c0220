//! Webhook endpoints (placeholder until the endpoint service lands).

use std::net::IpAddr;

/// Whether `ip` is a public unicast address.
#[must_use]
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified()),
        IpAddr::V6(v6) => !(v6.is_loopback() || v6.is_unspecified()),
    }
}
