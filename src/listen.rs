//! The listeners of `herald edge`, `herald control-plane` and `herald dev`:
//! bound with the configured backlog (`listen_backlog`) rather than the
//! standard library's 128, so a storm of connects queues in the kernel
//! instead of being dropped, and a warning when the kernel's
//! `net.core.somaxconn` caps that backlog.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// Where Linux keeps the cap on every listen backlog.
const SOMAXCONN: &str = "/proc/sys/net/core/somaxconn";

/// Binds `addr` with `SO_REUSEADDR` (as the standard library does on Unix)
/// and listens with `backlog` pending connections. Needs a runtime.
///
/// # Errors
///
/// The socket's error when it cannot be created, bound or listened on.
pub fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Logs a warning when `backlog` (of the `key` setting) is above the
/// kernel's cap, read from `/proc/sys/net/core/somaxconn` where there is
/// one.
pub fn warn_if_capped(key: &str, backlog: u32) {
    let Some(cap) = std::fs::read_to_string(SOMAXCONN).ok().and_then(|s| s.trim().parse::<u32>().ok()) else {
        return;
    };
    if backlog > cap {
        tracing::warn!(
            key,
            backlog,
            somaxconn = cap,
            "the listen backlog is above the kernel's net.core.somaxconn, which caps it; raise that sysctl for the \
             configured backlog to take effect"
        );
    }
}
