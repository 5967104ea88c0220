//! Users: what goes to every connection of one user of an app, across
//! protocols — a user event (`UserEvent`, Pusher's server-to-user events)
//! and the end of them all (`UserTerminated`).
//!
//! A Herald connection is the user its token names (its subject); a Pusher
//! connection is the user it signed in as (`pusher:signin`), and no user
//! before. A user event reaches a Herald connection as a `Message` with an
//! empty channel, and a Pusher connection as an event on its
//! `#server-to-user-<id>` channel; each frame is built once, when a
//! connection speaks its protocol.

use std::sync::Arc;

use bytes::Bytes;
use herald_proto::client::{self, server_frame};
use herald_proto::{CloseCode, bus};

use crate::ws;

use super::connections::ConnEntry;
use super::{Hub, Wire, lock};

impl Hub {
    /// The connections of `user` of `app`.
    fn user_connections(&self, app: &str, user: &str) -> Vec<Arc<ConnEntry>> {
        lock(&self.conns)
            .values()
            .filter(|c| c.app.as_str() == app && lock(&c.user).as_deref() == Some(user))
            .cloned()
            .collect()
    }

    /// Closes every connection of `user` of `app`
    /// ([`CloseCode::UserTerminated`]). Returns how many.
    pub fn terminate_user(&self, app: &str, user: &str) -> usize {
        let conns = self.user_connections(app, user);
        for conn in &conns {
            conn.outbox.close(CloseCode::UserTerminated, CloseCode::UserTerminated.reason());
        }
        conns.len()
    }

    /// Sends a user event to every connection of its user. Returns how many
    /// took it.
    pub fn send_to_user(&self, event: &bus::UserEvent) -> usize {
        let conns = self.user_connections(&event.app_id, &event.user_id);
        let (mut herald, mut pusher): (Option<Bytes>, Option<Bytes>) = (None, None);
        conns
            .iter()
            .filter(|conn| {
                let frame = match conn.wire {
                    Wire::Herald => herald.get_or_insert_with(|| herald_user_frame(event)),
                    Wire::Pusher => pusher.get_or_insert_with(|| {
                        super::pusher::user_event_frame(&event.user_id, &event.event, &event.data)
                    }),
                };
                conn.outbox.push(frame.clone()).is_ok()
            })
            .count()
    }
}

/// A user event as Herald's protocol gives it: a `Message` of no channel.
fn herald_user_frame(event: &bus::UserEvent) -> Bytes {
    ws::binary_frame(&client::ServerFrame {
        kind: Some(server_frame::Kind::Message(client::Message {
            channel: String::new(),
            data: event.data.clone(),
            event: (!event.event.is_empty()).then(|| event.event.clone()),
            seq: 0,
            epoch: String::new(),
            publisher: String::new(),
            timestamp_ms: event.timestamp_ms,
            id: event.id.clone(),
        })),
    })
}
