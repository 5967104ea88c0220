//! Presence: the members of a channel whose namespace turns presence on
//! (or named `presence-…`), counted per client id across connections and
//! edges (from edges' reports), in pages by client id, or all their ids at
//! once (the Pusher HTTP API's user list).

use herald_bus::presence::{MAX_MEMBERS_PAGE, Member};
use herald_proto::ChannelName;
use herald_proto::caps::Operation;

use crate::auth::Principal;
use crate::core::Core;
use crate::error::ApiError;
use crate::services::channels::not_enabled;
use crate::services::checks::channel_reader;

/// A channel's presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    /// The channel.
    pub channel: ChannelName,
    /// A page of its members by client id, connections counted across
    /// edges.
    pub members: Vec<Member>,
    /// The client id the next page starts after; `None` after the last.
    pub next: Option<String>,
    /// How many members the channel has in all.
    pub total: usize,
}

impl Core {
    /// The members of a channel whose namespace has presence.
    ///
    /// # Errors
    ///
    /// `forbidden` (another app's key, no `presence` capability),
    /// `invalid_channel`, `not_found` (app), `not_enabled` (the channel's
    /// namespace has no presence), `unavailable`.
    pub async fn presence(
        &self,
        who: &Principal,
        app: &str,
        channel: &str,
        after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Presence, ApiError> {
        let (app, channel) = channel_reader(who, app, channel, Operation::Presence)?;
        let limit = match limit {
            None => MAX_MEMBERS_PAGE,
            Some(n) if (1..=MAX_MEMBERS_PAGE).contains(&n) => n,
            Some(n) => {
                return Err(ApiError::bad_request(format!(
                    "`limit` is {n}; it must lie between 1 and {MAX_MEMBERS_PAGE}"
                )));
            }
        };
        self.auth.app(&app).await?;
        if !self.channel_options(&app, &channel).await?.presence {
            return Err(not_enabled("presence", &channel));
        }
        let page = self.reports.members_page(&app, &channel, after.unwrap_or_default(), limit);
        Ok(Presence { channel, members: page.members, next: page.next, total: page.total })
    }

    /// Every member's client id (a Pusher user id), by id. The channel
    /// holds at most `presence_max_per_channel` entries.
    ///
    /// # Errors
    ///
    /// As [`Self::presence`].
    pub async fn member_ids(&self, who: &Principal, app: &str, channel: &str) -> Result<Vec<String>, ApiError> {
        let mut page = self.presence(who, app, channel, None, None).await?;
        let (app, channel) = (app.to_owned(), page.channel.clone());
        let mut ids: Vec<String> = Vec::with_capacity(page.total);
        loop {
            ids.extend(page.members.into_iter().map(|m| m.client_id));
            let Some(after) = page.next else { break };
            page = self.presence(who, &app, channel.as_str(), Some(&after), None).await?;
        }
        Ok(ids)
    }
}
