//! Presence requests of a connection: member queries.

use std::sync::Arc;

use bytes::Bytes;
use herald_proto::client::{self, reply_ok};
use herald_proto::{ChannelName, ErrorCode, Operation};

use herald_bus::presence::MAX_MEMBERS_PAGE;

use super::reply::{bus_err, reply_err, reply_ok};
use super::session::Session;
use super::shared::Shared;

/// Most bytes of client ids and info in one page of a presence reply, and
/// at most a quarter of the send queue.
const MEMBERS_PAGE_BYTES: usize = 256 * 1024;

pub(super) async fn presence_query(
    shared: &Arc<Shared>,
    session: &Session,
    rid: u64,
    q: client::PresenceQuery,
) -> Bytes {
    let Ok(channel) = ChannelName::new(&q.channel) else {
        return reply_err(rid, ErrorCode::InvalidChannel, "invalid channel name");
    };
    if !session.claims.caps.allows(channel.as_str(), Operation::Presence) {
        return reply_err(rid, ErrorCode::Forbidden, "token does not allow presence on this channel");
    }
    let options = match shared.hub.namespace_options(&session.entry.app, &channel).await {
        Ok(o) => o,
        Err(e) => return bus_err(rid, "namespace lookup", &e),
    };
    if !options.presence {
        return reply_err(rid, ErrorCode::NotEnabled, "presence is not enabled for this channel");
    }
    if !session.subscriptions.contains_key(&channel) {
        return reply_err(rid, ErrorCode::NotSubscribed, "subscribe to the channel to see its members");
    }
    let limit = match q.limit as usize {
        0 => MAX_MEMBERS_PAGE,
        n => n.min(MAX_MEMBERS_PAGE),
    };
    let max_bytes = MEMBERS_PAGE_BYTES.min(shared.config.send_queue_bytes.0 as usize / 4);
    let page = shared.hub.members_page(&session.entry.app, &channel, &q.after, limit, max_bytes).unwrap_or_default();
    let result = client::PresenceResult {
        channel: channel.as_str().to_owned(),
        members: page.members.into_iter().map(|m| client::Member { client_id: m.client_id, info: m.info }).collect(),
        next: page.next.unwrap_or_default(),
        total: u32::try_from(page.total).unwrap_or(u32::MAX),
    };
    reply_ok(rid, Some(reply_ok::Value::Presence(result)))
}
