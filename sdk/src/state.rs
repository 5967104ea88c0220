//! The connection's state as the application sees it: [`ConnectionState`],
//! why a connection ended ([`DisconnectReason`]), and [`StateEvents`], every
//! transition in order.
//!
//! A connection goes `Connecting → Connected`; when it drops it becomes
//! `Disconnected` (with the reason and, when the edge gave one, the close
//! code), then `Reconnecting` (attempt number and delay), then `Connecting`
//! again. `Closed` is final: after `close()`, a terminal close code, or when
//! the reconnect policy gave up.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use herald_proto::{Advice, CloseCode};
use tokio::sync::broadcast;

use crate::error::Error;

/// The state of a client's connection.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use herald_sdk::{Client, ConnectionState};
/// let client = Client::builder("ws://127.0.0.1:9").token("eyJ…").connect_lazy()?;
/// assert!(!client.state().is_connected(), "nothing listens there");
/// client.close().await;
/// assert!(matches!(client.state(), ConnectionState::Closed { error: None }), "closed when asked");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Opening a connection to `url` (attempt 0 is the first connection).
    Connecting {
        /// The edge URL being tried.
        url: String,
        /// Consecutive failed attempts before this one.
        attempt: u32,
    },
    /// Connected and authenticated.
    Connected(ConnectionInfo),
    /// The connection ended; a reconnect follows unless the state becomes
    /// `Closed`.
    Disconnected {
        /// Why.
        reason: DisconnectReason,
    },
    /// Waiting `delay` before attempt `attempt`.
    Reconnecting {
        /// The attempt number (1 for the first reconnect after a drop).
        attempt: u32,
        /// How long the client waits before it.
        delay: Duration,
    },
    /// The client stopped for good; `error` is `None` after `close()`.
    Closed {
        /// Why it stopped, when it was not asked to.
        error: Option<Error>,
    },
}

impl ConnectionState {
    /// True when connected.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// println!("online: {}", client.state().is_connected());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn is_connected(&self) -> bool {
        matches!(self, Self::Connected(_))
    }

    /// True when closed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// if client.state().is_closed() {
    ///     println!("the client stopped for good");
    /// }
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed { .. })
    }
}

/// What the edge said when the connection was accepted.
///
/// ```no_run
/// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// let info = client.wait_connected(Duration::from_secs(10)).await?;
/// println!("{} connected to {} as {} ({})", info.client_id, info.edge_id, info.connection_id, info.url);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The URL connected to.
    pub url: String,
    /// The connection's id (`"1234.5678"`: unique across edges, the same
    /// form as a Pusher `socket_id`). Give it to the app's backend to keep a
    /// message from this connection
    /// ([`crate::MessageOptions::exclude_connection`]); also for logs and
    /// support. Each connection has its own, so it changes with every
    /// reconnect.
    pub connection_id: String,
    /// The token's subject.
    pub client_id: String,
    /// The edge node reached.
    pub edge_id: String,
    /// The expiry of the token the connection was opened with, Unix
    /// milliseconds (in-band refreshes extend the connection past it).
    pub token_expires_at_ms: i64,
}

/// Why a connection ended.
///
/// ```
/// use herald_proto::Advice;
/// use herald_sdk::DisconnectReason;
/// let slow = DisconnectReason::Closed { code: 4000, reason: "send queue full".into() };
/// assert_eq!((slow.code(), slow.advice()), (Some(4000), Advice::Reconnect));
/// let revoked = DisconnectReason::Closed { code: 4101, reason: "key revoked".into() };
/// assert_eq!(revoked.advice(), Advice::RefreshToken);
/// assert_eq!(DisconnectReason::HeartbeatTimeout.code(), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The edge closed it with `code` (from its `Disconnect` frame or the
    /// WebSocket close frame).
    Closed {
        /// The close code.
        code: u16,
        /// The reason given.
        reason: String,
    },
    /// Nothing was heard from the edge for the heartbeat timeout.
    HeartbeatTimeout,
    /// The socket failed or the edge could not be reached.
    Transport(String),
    /// The edge did not finish the handshake in time.
    Timeout,
    /// The token provider failed.
    TokenProvider(String),
    /// The edge is shutting down and told the client to move (`GoAway`):
    /// the client finished its requests there and left, to reconnect at
    /// once, to the next URL.
    Moved,
}

impl DisconnectReason {
    /// The close code, when the edge sent one.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use herald_sdk::ConnectionState;
    ///
    /// let mut events = client.state_events();
    /// while let Some(state) = events.next().await {
    ///     if let ConnectionState::Disconnected { reason, .. } = state {
    ///         println!("closed with {:?}", reason.code());
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn code(&self) -> Option<u16> {
        match self {
            Self::Closed { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// What the protocol says to do after this: the close code's advice
    /// (unknown codes in 4000–4499 reconnect, in 4500–4999 are terminal),
    /// and "reconnect" for everything that is not a close code.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use herald_sdk::ConnectionState;
    ///
    /// let mut events = client.state_events();
    /// while let Some(state) = events.next().await {
    ///     if let ConnectionState::Disconnected { reason, .. } = state {
    ///         println!("{reason}: {:?}", reason.advice());
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn advice(&self) -> Advice {
        match self {
            Self::Closed { code, .. } => advice_for(*code),
            Self::Moved => Advice::ReconnectNow,
            _ => Advice::Reconnect,
        }
    }
}

/// The advice for a close code, with the protocol's rule for unknown codes.
///
/// # Examples
///
/// ```
/// use herald_proto::Advice;
/// use herald_sdk::state::advice_for;
///
/// assert_eq!(advice_for(1001), Advice::ReconnectNow);
/// assert_eq!(advice_for(4599), Advice::Terminal);
/// ```
#[must_use]
pub fn advice_for(code: u16) -> Advice {
    match CloseCode::from_number(code) {
        Some(c) => c.advice(),
        None if (4500..=4999).contains(&code) => Advice::Terminal,
        // Unknown 4000–4499, 1005/1006 (no code, abnormal) and the rest.
        None => Advice::Reconnect,
    }
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Closed { code, reason } => match CloseCode::from_number(*code) {
                Some(c) => write!(f, "closed by the edge with {c}: {reason}"),
                None => write!(f, "closed by the edge with {code}: {reason}"),
            },
            Self::HeartbeatTimeout => f.write_str("no heartbeat from the edge within the timeout"),
            Self::Transport(e) => write!(f, "{e}"),
            Self::Timeout => f.write_str("the edge did not complete the handshake in time"),
            Self::TokenProvider(e) => write!(f, "token provider failed: {e}"),
            Self::Moved => f.write_str("the edge is shutting down; moving to another edge"),
        }
    }
}

/// Every state transition, in order (from [`crate::Client::state_events`]).
///
/// The buffer holds `ClientConfig::state_event_buffer` transitions; a
/// reader that falls further behind skips the oldest and goes on.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// let client = herald_sdk::Client::builder("ws://127.0.0.1:9").token("eyJ…").connect_lazy()?;
/// let mut events = client.state_events();
/// client.close().await;
/// let closed = tokio::time::timeout(Duration::from_secs(5), async {
///     while let Some(state) = events.next().await {
///         if state.is_closed() {
///             return true;
///         }
///     }
///     false
/// });
/// assert!(closed.await?, "the last transition is to Closed");
/// # Ok(())
/// # }
/// ```
pub struct StateEvents {
    rx: Option<broadcast::Receiver<ConnectionState>>,
    fut: Option<Pin<Box<dyn Future<Output = Next> + Send>>>,
}

type Next = (Option<ConnectionState>, broadcast::Receiver<ConnectionState>);

async fn recv(mut rx: broadcast::Receiver<ConnectionState>) -> Next {
    loop {
        match rx.recv().await {
            Ok(state) => return (Some(state), rx),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::debug!(skipped = n, "state events reader fell behind");
            }
            Err(broadcast::error::RecvError::Closed) => return (None, rx),
        }
    }
}

impl StateEvents {
    pub(crate) fn new(rx: broadcast::Receiver<ConnectionState>) -> Self {
        Self { rx: Some(rx), fut: None }
    }

    /// The next transition; `None` once the client is gone.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut events = client.state_events();
    /// while let Some(state) = events.next().await {
    ///     println!("{state:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn next(&mut self) -> Option<ConnectionState> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl Stream for StateEvents {
    type Item = ConnectionState;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.fut.is_none() {
            let Some(rx) = this.rx.take() else { return Poll::Ready(None) };
            this.fut = Some(Box::pin(recv(rx)));
        }
        let Some(fut) = this.fut.as_mut() else { return Poll::Ready(None) };
        match fut.as_mut().poll(cx) {
            Poll::Ready((next, rx)) => {
                this.fut = None;
                this.rx = Some(rx);
                Poll::Ready(next)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_follows_the_table_and_the_ranges() {
        assert_eq!(advice_for(1001), Advice::ReconnectNow);
        assert_eq!(advice_for(4100), Advice::RefreshToken);
        assert_eq!(advice_for(4500), Advice::Terminal);
        assert_eq!(advice_for(4001), Advice::Reconnect);
        assert_eq!(advice_for(4321), Advice::Reconnect);
        assert_eq!(advice_for(4777), Advice::Terminal);
        assert_eq!(advice_for(1006), Advice::Reconnect);
        assert_eq!(advice_for(1000), Advice::Terminal);
        assert_eq!(DisconnectReason::HeartbeatTimeout.advice(), Advice::Reconnect);
    }
}
