//! Presence: the members of a channel whose namespace turns presence on,
//! counted per client id across connections and edges (from edges'
//! reports), in pages by client id.

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
}
