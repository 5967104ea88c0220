//! Channels: their history (read from the namespace's stream on the bus),
//! the app's occupied channels with their subscriber counts, and the state
//! of single channels (subscriptions and presence members, all from edges'
//! reports, applied as they arrive), with the checks of who may read them.

use herald_bus::BusError;
use herald_proto::caps::Operation;
use herald_proto::{AppId, ChannelName, ErrorCode, bus};
use prost::Message as _;

use crate::auth::Principal;
use crate::core::Core;
use crate::error::ApiError;
use crate::services::checks::{channel_reader, parse_app_id, parse_channel, require_app};
use crate::services::namespaces::keeps_history;

/// The number of messages a history read returns when the request names
/// none (or the server's `max_history_limit` when lower).
pub const DEFAULT_HISTORY_LIMIT: usize = 100;

/// One message of a channel's history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryMessage {
    /// Its sequence number in the namespace's stream.
    pub seq: u64,
    /// The message.
    pub message: bus::ChannelMessage,
}

/// A page of a channel's history.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    /// The channel.
    pub channel: ChannelName,
    /// The stream's epoch: sequence numbers of another epoch mean nothing
    /// here.
    pub epoch: String,
    /// Messages after `since`, oldest first.
    pub messages: Vec<HistoryMessage>,
    /// Whether every message after `since` (of the epoch asked for) is
    /// still held, i.e. this page continues exactly where the caller was.
    pub complete: bool,
    /// The channel's newest sequence number (0 when empty).
    pub last_seq: u64,
}

/// The app's occupied channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occupancy {
    /// Channel and subscriptions across edges, by name.
    pub channels: Vec<(ChannelName, u64)>,
    /// Whether more channels matched than `max_channels_listed`.
    pub truncated: bool,
}

/// What is known of one channel now, from edges' reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelState {
    /// Subscriptions across edges (a connection subscribed counts once).
    pub subscriptions: u64,
    /// For a channel with presence: its members (distinct client ids, or
    /// Pusher user ids); `None` for a channel without presence.
    pub members: Option<usize>,
}

impl ChannelState {
    /// Whether anyone is subscribed.
    #[must_use]
    pub fn occupied(&self) -> bool {
        self.subscriptions > 0 || self.members.is_some_and(|m| m > 0)
    }
}

/// `not_enabled`: the channel's namespace does not turn `what` on.
pub(crate) fn not_enabled(what: &str, channel: &ChannelName) -> ApiError {
    let why = match channel.namespace_name() {
        Some(ns) => format!("namespace {:?} does not turn on {what}", ns.as_str()),
        None => "it belongs to no namespace (channels `<namespace>:<name>` do)".to_owned(),
    };
    ApiError::new(ErrorCode::NotEnabled, format!("channel {:?} keeps no {what}: {why}", channel.as_str()))
}

impl Core {
    async fn read_history(
        &self,
        app: &AppId,
        channel: &ChannelName,
        since: u64,
        limit: usize,
    ) -> Result<herald_bus::HistoryPage, ApiError> {
        match self.publisher.bus().read_history(app, channel, since, limit).await {
            Ok(page) => Ok(page),
            Err(BusError::NoHistory(reason)) => {
                tracing::warn!(%app, %channel, %reason, "history namespace without a stream");
                Err(ApiError::unavailable(
                    "the channel's history stream is missing (its namespace just changed?); retry later",
                ))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Up to `limit` messages of a channel's history after sequence `since`
    /// (0: from the oldest held). With `epoch`, a page of another epoch is
    /// never `complete`.
    ///
    /// # Errors
    ///
    /// `forbidden` (another app's key, no `history` capability),
    /// `invalid_channel`, `not_found` (app), `not_enabled` (the channel's
    /// namespace keeps no history), `bad_request` (limit), `unavailable`.
    pub async fn history(
        &self,
        who: &Principal,
        app: &str,
        channel: &str,
        since: u64,
        limit: Option<usize>,
        epoch: Option<&str>,
    ) -> Result<History, ApiError> {
        let (app, channel) = channel_reader(who, app, channel, Operation::History)?;
        let max = self.config.max_history_limit;
        let limit = match limit {
            None => DEFAULT_HISTORY_LIMIT.min(max),
            Some(n) if (1..=max).contains(&n) => n,
            Some(n) => {
                return Err(ApiError::bad_request(format!("`limit` is {n}; it must lie between 1 and {max}")));
            }
        };
        self.auth.app(&app).await?;
        if !keeps_history(&self.channel_options(&app, &channel).await?) {
            return Err(not_enabled("history", &channel));
        }
        let mut page = self.read_history(&app, &channel, since, limit).await?;
        let same_epoch = epoch.is_none_or(|e| e == page.epoch);
        if !same_epoch && since > 0 {
            // `since` counts in another epoch: everything held is new.
            page = self.read_history(&app, &channel, 0, limit).await?;
        }
        let mut messages = Vec::with_capacity(page.messages.len());
        for entry in page.messages {
            match bus::ChannelMessage::decode(entry.payload) {
                Ok(message) => messages.push(HistoryMessage { seq: entry.seq, message }),
                Err(e) => {
                    tracing::warn!(%app, %channel, seq = entry.seq, error = %e, "undecodable history entry skipped")
                }
            }
        }
        Ok(History {
            channel,
            epoch: page.epoch,
            messages,
            complete: page.complete && same_epoch,
            last_seq: page.last_seq,
        })
    }

    /// The state of `channels` of `app` (no access checks: the caller
    /// checked them), in the same order.
    ///
    /// # Errors
    ///
    /// `unavailable` when a channel's namespace must be read and the
    /// database is down.
    pub async fn channel_states(&self, app: &AppId, channels: &[ChannelName]) -> Result<Vec<ChannelState>, ApiError> {
        let counts: std::collections::HashMap<ChannelName, u64> = self.reports.channels(app).into_iter().collect();
        let mut out = Vec::with_capacity(channels.len());
        for channel in channels {
            let presence = self.channel_options(app, channel).await?.presence;
            out.push(ChannelState {
                subscriptions: counts.get(channel).copied().unwrap_or(0),
                members: presence.then(|| self.reports.member_count(app, channel)),
            });
        }
        Ok(out)
    }

    /// The state of one channel: subscriptions and (with presence) members.
    /// A key needs some capability on the channel.
    ///
    /// # Errors
    ///
    /// `forbidden` (another app's key, or none of its capabilities names
    /// the channel), `invalid_channel`, `not_found` (app), `unavailable`.
    pub async fn channel_state(&self, who: &Principal, app: &str, channel: &str) -> Result<ChannelState, ApiError> {
        let app = parse_app_id(app)?;
        let key = require_app(who, &app)?;
        let channel = parse_channel(channel)?;
        if let Some(key) = key
            && !Operation::ALL.iter().any(|op| key.capabilities.allows(channel.as_str(), *op))
        {
            return Err(ApiError::forbidden(format!("the API key allows nothing on {:?}", channel.as_str())));
        }
        self.auth.app(&app).await?;
        let mut states = self.channel_states(&app, std::slice::from_ref(&channel)).await?;
        states.pop().ok_or_else(ApiError::internal)
    }

    /// The app's channels with subscribers, by name; with `prefix`, those
    /// starting with it. An API key sees the channels its capabilities name.
    ///
    /// # Errors
    ///
    /// `forbidden` (another app's key), `not_found` (app), `unavailable`.
    pub async fn occupied_channels(
        &self,
        who: &Principal,
        app: &str,
        prefix: Option<&str>,
    ) -> Result<Occupancy, ApiError> {
        let app = parse_app_id(app)?;
        let key = require_app(who, &app)?;
        self.auth.app(&app).await?;
        let all = self.reports.channels(&app);
        let max = self.config.max_channels_listed;
        let mut channels = Vec::new();
        let mut truncated = false;
        for (name, subscribers) in all {
            if prefix.is_some_and(|p| !name.as_str().starts_with(p)) {
                continue;
            }
            if let Some(key) = key
                && !Operation::ALL.iter().any(|op| key.capabilities.allows(name.as_str(), *op))
            {
                continue;
            }
            if channels.len() == max {
                truncated = true;
                break;
            }
            channels.push((name, subscribers));
        }
        Ok(Occupancy { channels, truncated })
    }
}
