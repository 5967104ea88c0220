//! The webhook tables the delivery engine writes: the bus-wide channel and
//! member state events are computed against (`webhook_channels`,
//! `webhook_members`), the outbox of deliveries (`webhook_outbox`) and the
//! log of attempts (`webhook_attempts`).
//!
//! A state change and the deliveries of the event it produces are written
//! in one transaction ([`Store::record_webhook_transition`]): the change is
//! conditional (insert if absent, delete if present), so when several
//! replicas see the same change only the first writes an event. A delivery
//! is leased by one replica at a time ([`Store::claim_webhook_delivery`], a
//! compare-and-set on `lease_until_ms`), and a delivery is only due when no
//! earlier one of the same endpoint and channel is left, which keeps
//! per-endpoint, per-channel order.

use herald_proto::AppId;
use herald_proto::webhook::EventKind;
use sqlx::Row;

use super::{Store, StoreError, parse_app_id};

/// A state change of one channel, as webhooks see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The channel has subscribers: recorded when it was not.
    Occupied {
        /// How many, over every edge.
        subscribers: u64,
    },
    /// The channel has none: recorded when it had.
    Vacated,
    /// A new subscriber count, recorded when it differs from the last one
    /// sent and that one is at least `min_gap_ms` old.
    Count {
        /// How many, over every edge.
        subscribers: u64,
        /// Shortest gap between two counts of the channel.
        min_gap_ms: i64,
    },
    /// A user is present: recorded when they were not.
    MemberAdded(String),
    /// A user is gone: recorded when they were present.
    MemberRemoved(String),
}

/// An event to queue for endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDraft {
    /// Its id, the same for every endpoint and attempt.
    pub id: String,
    /// The app.
    pub app: AppId,
    /// The channel.
    pub channel: String,
    /// What happened.
    pub kind: EventKind,
    /// When, Unix ms.
    pub occurred_at_ms: i64,
    /// A JSON object of the kind's own fields.
    pub data: String,
}

/// What recording did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recorded {
    /// Whether the state changed (and an event was produced).
    pub changed: bool,
    /// Deliveries queued.
    pub queued: usize,
    /// Deliveries dropped because the app's outbox was full.
    pub dropped: usize,
}

/// What the state tables hold for a channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelRecord {
    /// The subscriber count last recorded; `None` when not occupied.
    pub subscribers: Option<(i64, i64)>,
    /// The members recorded.
    pub members: Vec<String>,
}

/// A leased delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Its place in the outbox.
    pub seq: i64,
    /// The endpoint.
    pub webhook_id: String,
    /// The app.
    pub app_id: AppId,
    /// The event's id.
    pub event_id: String,
    /// The channel.
    pub channel: String,
    /// What happened.
    pub kind: EventKind,
    /// When, Unix ms.
    pub occurred_at_ms: i64,
    /// A JSON object of the kind's own fields.
    pub data: String,
    /// Attempts so far, this one included.
    pub attempts: i64,
}

/// How an attempt ended, for the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint answered 2xx: the delivery is done.
    Delivered,
    /// Try again at the time (Unix ms).
    Retry(i64),
    /// Given up (a final refusal, or out of retries).
    Failed,
}

impl Outcome {
    fn as_str(&self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retry(_) => "retrying",
            Self::Failed => "failed",
        }
    }
}

/// One attempt, as the delivery log shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The event's id.
    pub event_id: String,
    /// Its kind (`webhook_test` for a test send).
    pub kind: String,
    /// Its channel.
    pub channel: String,
    /// 1 for the event's first attempt.
    pub attempt: i64,
    /// When it started, Unix ms.
    pub at_ms: i64,
    /// The HTTP status; `None` when no answer came.
    pub status: Option<u16>,
    /// How long it took.
    pub latency_ms: i64,
    /// What went wrong, when something did.
    pub error: Option<String>,
    /// `delivered`, `retrying`, `failed` or `test`.
    pub outcome: String,
}

/// Queues `event` for `targets` inside the open transaction `$tx`; drops it
/// (counting it per endpoint) when the app's outbox holds `$max` or more.
/// A target deleted or disabled meanwhile (the caller's list may be a
/// moment old) gets nothing.
macro_rules! queue_in {
    ($tx:expr, $event:expr, $targets:expr, $max:expr) => {{
        let event: &EventDraft = $event;
        let targets: &[String] = $targets;
        let mut recorded = Recorded { changed: true, ..Recorded::default() };
        if !targets.is_empty() {
            let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_outbox WHERE app_id = $1")
                .bind(event.app.as_str())
                .fetch_one(&mut *$tx)
                .await?;
            let room = u64::try_from(held).map_or(true, |h| h.saturating_add(targets.len() as u64) <= $max);
            for id in targets {
                if room {
                    let done = sqlx::query(
                        "INSERT INTO webhook_outbox (webhook_id, app_id, event_id, channel, kind, occurred_at_ms, \
                         data, next_attempt_at_ms) SELECT $1, $2, $3, $4, $5, $6, $7, $6 \
                         WHERE EXISTS (SELECT 1 FROM webhooks WHERE id = $1 AND status <> 'disabled') \
                         ON CONFLICT (webhook_id, event_id) DO NOTHING",
                    )
                    .bind(id)
                    .bind(event.app.as_str())
                    .bind(&event.id)
                    .bind(&event.channel)
                    .bind(event.kind.as_str())
                    .bind(event.occurred_at_ms)
                    .bind(&event.data)
                    .execute(&mut *$tx)
                    .await?;
                    recorded.queued += done.rows_affected() as usize;
                } else {
                    sqlx::query("UPDATE webhooks SET dropped = dropped + 1 WHERE id = $1")
                        .bind(id)
                        .execute(&mut *$tx)
                        .await?;
                    recorded.dropped += 1;
                }
            }
        }
        recorded
    }};
}

/// How often the log of an endpoint is trimmed: every this many attempts
/// (so it holds up to `log_size + TRIM_EVERY - 1` between trims).
const TRIM_EVERY: i64 = 16;

/// Logs `$attempt` of endpoint `$id` inside the open transaction `$tx`,
/// keeping its last `$keep` attempts (trimmed every [`TRIM_EVERY`]).
macro_rules! log_attempt {
    ($tx:expr, $id:expr, $attempt:expr, $outcome:expr, $keep:expr) => {{
        let attempt: &Attempt = $attempt;
        let id: &str = $id;
        let logged: i64 = sqlx::query_scalar(
            "INSERT INTO webhook_attempts (webhook_id, event_id, kind, channel, attempt, at_ms, status, latency_ms, \
             error, outcome) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        )
        .bind(id)
        .bind(&attempt.event_id)
        .bind(&attempt.kind)
        .bind(&attempt.channel)
        .bind(attempt.attempt)
        .bind(attempt.at_ms)
        .bind(attempt.status.map(i64::from))
        .bind(attempt.latency_ms)
        .bind(attempt.error.as_deref())
        .bind($outcome)
        .fetch_one(&mut *$tx)
        .await?;
        if logged % TRIM_EVERY == 0 {
            sqlx::query(
                "DELETE FROM webhook_attempts WHERE webhook_id = $1 AND id <= \
                 (SELECT id FROM webhook_attempts WHERE webhook_id = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
            )
            .bind(id)
            .bind(i64::try_from($keep).unwrap_or(i64::MAX))
            .execute(&mut *$tx)
            .await?;
        }
    }};
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Store {
    /// What the state tables hold for one channel.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn webhook_channel_record(&self, app: &AppId, channel: &str) -> Result<ChannelRecord, StoreError> {
        with_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT subscribers, count_sent_at_ms FROM webhook_channels WHERE app_id = $1 AND channel = $2",
            )
            .bind(app.as_str())
            .bind(channel)
            .fetch_optional(pool)
            .await?;
            let subscribers = match row {
                Some(row) => Some((row.try_get("subscribers")?, row.try_get("count_sent_at_ms")?)),
                None => None,
            };
            let members: Vec<String> = sqlx::query_scalar(
                "SELECT user_id FROM webhook_members WHERE app_id = $1 AND channel = $2 ORDER BY user_id",
            )
            .bind(app.as_str())
            .bind(channel)
            .fetch_all(pool)
            .await?;
            Ok(ChannelRecord { subscribers, members })
        })
    }

    /// The channels of `app` the state tables hold anything for.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn webhook_recorded_channels(&self, app: &AppId) -> Result<Vec<String>, StoreError> {
        with_pool!(self, pool => {
            Ok(sqlx::query_scalar(
                "SELECT channel FROM webhook_channels WHERE app_id = $1 \
                 UNION SELECT channel FROM webhook_members WHERE app_id = $1",
            )
            .bind(app.as_str())
            .fetch_all(pool)
            .await?)
        })
    }

    /// Forgets the state of apps without an enabled endpoint (so an
    /// endpoint added later starts from what is, not from what was).
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn forget_unwatched_webhook_state(&self) -> Result<u64, StoreError> {
        with_pool!(self, pool => {
            let a = sqlx::query(
                "DELETE FROM webhook_channels WHERE app_id NOT IN (SELECT app_id FROM webhooks WHERE status <> 'disabled')",
            )
                .execute(pool)
                .await?
                .rows_affected();
            let b = sqlx::query(
                "DELETE FROM webhook_members WHERE app_id NOT IN (SELECT app_id FROM webhooks WHERE status <> 'disabled')",
            )
                .execute(pool)
                .await?
                .rows_affected();
            Ok(a + b)
        })
    }

    /// Records `transition` of a channel and, when it changed the state,
    /// queues `events` (each for its targets; all of the same app and
    /// channel, the first being the transition's) — in one transaction.
    ///
    /// # Errors
    ///
    /// Database errors (nothing is written then).
    pub async fn record_webhook_transition(
        &self,
        transition: &Transition,
        events: &[(EventDraft, Vec<String>)],
        max_per_app: u64,
    ) -> Result<Recorded, StoreError> {
        let Some((event, _)) = events.first() else { return Ok(Recorded::default()) };
        let (app, channel, now) = (event.app.as_str(), event.channel.as_str(), event.occurred_at_ms);
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let changed = match transition {
                Transition::Occupied { subscribers } => sqlx::query(
                    "INSERT INTO webhook_channels (app_id, channel, subscribers, count_sent_at_ms) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (app_id, channel) DO NOTHING",
                )
                .bind(app)
                .bind(channel)
                .bind(count(*subscribers))
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
                Transition::Vacated => {
                    sqlx::query("DELETE FROM webhook_channels WHERE app_id = $1 AND channel = $2")
                        .bind(app)
                        .bind(channel)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                }
                Transition::Count { subscribers, min_gap_ms } => sqlx::query(
                    "UPDATE webhook_channels SET subscribers = $3, count_sent_at_ms = $4 \
                     WHERE app_id = $1 AND channel = $2 AND subscribers <> $3 AND count_sent_at_ms <= $5",
                )
                .bind(app)
                .bind(channel)
                .bind(count(*subscribers))
                .bind(now)
                .bind(now.saturating_sub(*min_gap_ms))
                .execute(&mut *tx)
                .await?
                .rows_affected(),
                Transition::MemberAdded(user) => sqlx::query(
                    "INSERT INTO webhook_members (app_id, channel, user_id) VALUES ($1, $2, $3) \
                     ON CONFLICT (app_id, channel, user_id) DO NOTHING",
                )
                .bind(app)
                .bind(channel)
                .bind(user)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
                Transition::MemberRemoved(user) => sqlx::query(
                    "DELETE FROM webhook_members WHERE app_id = $1 AND channel = $2 AND user_id = $3",
                )
                .bind(app)
                .bind(channel)
                .bind(user)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
            };
            if changed == 0 {
                return Ok(Recorded::default());
            }
            let mut recorded = Recorded { changed: true, ..Recorded::default() };
            for (event, targets) in events {
                let r = queue_in!(tx, event, targets, max_per_app);
                recorded.queued += r.queued;
                recorded.dropped += r.dropped;
            }
            tx.commit().await?;
            Ok(recorded)
        })
    }

    /// Queues an event that changes no state (a client event, a cache
    /// miss) for `targets`. Queuing the same event id again does nothing.
    ///
    /// # Errors
    ///
    /// Database errors (nothing is written then).
    pub async fn queue_webhook_event(
        &self,
        event: &EventDraft,
        targets: &[String],
        max_per_app: u64,
    ) -> Result<Recorded, StoreError> {
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let recorded = queue_in!(tx, event, targets, max_per_app);
            tx.commit().await?;
            Ok(recorded)
        })
    }

    /// The endpoints with deliveries due at `now_ms` (not leased).
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn due_webhook_endpoints(&self, now_ms: i64) -> Result<Vec<String>, StoreError> {
        // Per endpoint, the first due row found on its (webhook_id, seq)
        // index ends the look: no scan of the whole outbox.
        let sql = "SELECT w.id FROM webhooks w WHERE w.status <> 'disabled' AND EXISTS \
                   (SELECT 1 FROM webhook_outbox o WHERE o.webhook_id = w.id \
                   AND o.next_attempt_at_ms <= $1 AND o.lease_until_ms < $1) ORDER BY w.id";
        with_pool!(self, pool => Ok(sqlx::query_scalar(sql).bind(now_ms).fetch_all(pool).await?))
    }

    /// Up to `limit` deliveries of `webhook_id` due at `now_ms`: not
    /// leased, and the oldest left of their channel. Their `seq`, oldest
    /// first.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn due_webhook_deliveries(
        &self,
        webhook_id: &str,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let sql = "SELECT o.seq FROM webhook_outbox o \
                   WHERE o.webhook_id = $1 AND o.next_attempt_at_ms <= $2 AND o.lease_until_ms < $2 \
                   AND NOT EXISTS (SELECT 1 FROM webhook_outbox e \
                   WHERE e.webhook_id = o.webhook_id AND e.channel = o.channel AND e.seq < o.seq) \
                   ORDER BY o.seq LIMIT $3";
        with_pool!(self, pool => Ok(sqlx::query_scalar(sql).bind(webhook_id).bind(now_ms).bind(limit).fetch_all(pool).await?))
    }

    /// Leases delivery `seq` for `owner` until `until_ms`, counting the
    /// attempt; `None` when another replica holds it or it is gone.
    ///
    /// # Errors
    ///
    /// Database errors; [`StoreError::Corrupt`] for an unreadable row.
    pub async fn claim_webhook_delivery(
        &self,
        seq: i64,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<Option<Delivery>, StoreError> {
        let sql = "UPDATE webhook_outbox SET lease_owner = $2, lease_until_ms = $4, attempts = attempts + 1 \
                   WHERE seq = $1 AND lease_until_ms < $3 AND next_attempt_at_ms <= $3 \
                   RETURNING seq, webhook_id, app_id, event_id, channel, kind, occurred_at_ms, data, attempts";
        with_pool!(self, pool => {
            let Some(row) = sqlx::query(sql).bind(seq).bind(owner).bind(now_ms).bind(until_ms).fetch_optional(pool).await?
            else {
                return Ok(None);
            };
            let app_id: String = row.try_get("app_id")?;
            let kind: String = row.try_get("kind")?;
            Ok(Some(Delivery {
                seq: row.try_get("seq")?,
                webhook_id: row.try_get("webhook_id")?,
                app_id: parse_app_id(&app_id)?,
                event_id: row.try_get("event_id")?,
                channel: row.try_get("channel")?,
                kind: kind.parse().map_err(|e| StoreError::Corrupt(format!("outbox row {seq}: {e}")))?,
                occurred_at_ms: row.try_get("occurred_at_ms")?,
                data: row.try_get("data")?,
                attempts: row.try_get("attempts")?,
            }))
        })
    }

    /// Ends an attempt of a leased delivery: removes it (delivered, failed)
    /// or sets its next attempt; logs the attempt (keeping about the last
    /// `log_size` of the endpoint); marks the endpoint active again on a
    /// success when it `was_failing`, failing (with the error) on a
    /// failure. Does nothing to the delivery when `owner` lost the lease
    /// meanwhile.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn finish_webhook_delivery(
        &self,
        delivery: &Delivery,
        owner: &str,
        outcome: &Outcome,
        attempt: &Attempt,
        log_size: u64,
        was_failing: bool,
    ) -> Result<(), StoreError> {
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            match outcome {
                Outcome::Delivered | Outcome::Failed => {
                    sqlx::query("DELETE FROM webhook_outbox WHERE seq = $1 AND lease_owner = $2")
                        .bind(delivery.seq)
                        .bind(owner)
                        .execute(&mut *tx)
                        .await?;
                }
                Outcome::Retry(at) => {
                    sqlx::query(
                        "UPDATE webhook_outbox SET next_attempt_at_ms = $3, lease_until_ms = 0, lease_owner = NULL, \
                         last_error = $4 WHERE seq = $1 AND lease_owner = $2",
                    )
                    .bind(delivery.seq)
                    .bind(owner)
                    .bind(*at)
                    .bind(attempt.error.as_deref())
                    .execute(&mut *tx)
                    .await?;
                }
            }
            if matches!(outcome, Outcome::Delivered) && was_failing {
                sqlx::query(
                    "UPDATE webhooks SET status = 'active', status_reason = NULL, failing_since_ms = NULL \
                     WHERE id = $1 AND status = 'failing'",
                )
                .bind(&delivery.webhook_id)
                .execute(&mut *tx)
                .await?;
            } else if !matches!(outcome, Outcome::Delivered) {
                sqlx::query(
                    "UPDATE webhooks SET status = 'failing', status_reason = $2, \
                     failing_since_ms = COALESCE(failing_since_ms, $3) WHERE id = $1 AND status <> 'disabled'",
                )
                .bind(&delivery.webhook_id)
                .bind(attempt.error.as_deref().unwrap_or("failed"))
                .bind(attempt.at_ms)
                .execute(&mut *tx)
                .await?;
            }
            log_attempt!(tx, &delivery.webhook_id, attempt, outcome.as_str(), log_size);
            tx.commit().await?;
            Ok(())
        })
    }

    /// Logs a test send of an endpoint.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn log_webhook_test(&self, webhook_id: &str, attempt: &Attempt, log_size: u64) -> Result<(), StoreError> {
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            log_attempt!(tx, webhook_id, attempt, "test", log_size);
            tx.commit().await?;
            Ok(())
        })
    }

    /// Disables `webhook_id` when it has been failing since `cutoff_ms` or
    /// earlier, dropping its queued deliveries (counted in `dropped`).
    /// Returns how many were dropped, `None` when it was not disabled.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn disable_failing_webhook(
        &self,
        webhook_id: &str,
        cutoff_ms: i64,
        reason: &str,
        now_ms: i64,
    ) -> Result<Option<u64>, StoreError> {
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let disabled = sqlx::query(
                "UPDATE webhooks SET status = 'disabled', status_reason = $2, updated_at_ms = $4 \
                 WHERE id = $1 AND status = 'failing' AND failing_since_ms <= $3",
            )
            .bind(webhook_id)
            .bind(reason)
            .bind(cutoff_ms)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if disabled == 0 {
                return Ok(None);
            }
            let dropped = sqlx::query("DELETE FROM webhook_outbox WHERE webhook_id = $1")
                .bind(webhook_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query("UPDATE webhooks SET dropped = dropped + $2 WHERE id = $1")
                .bind(webhook_id)
                .bind(i64::try_from(dropped).unwrap_or(i64::MAX))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Some(dropped))
        })
    }

    /// The last `limit` attempts of an endpoint, newest first.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn webhook_attempts(&self, webhook_id: &str, limit: i64) -> Result<Vec<Attempt>, StoreError> {
        let sql = "SELECT event_id, kind, channel, attempt, at_ms, status, latency_ms, error, outcome \
                   FROM webhook_attempts WHERE webhook_id = $1 ORDER BY id DESC LIMIT $2";
        with_pool!(self, pool => {
            let rows = sqlx::query(sql).bind(webhook_id).bind(limit).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let status: Option<i64> = row.try_get("status")?;
                out.push(Attempt {
                    event_id: row.try_get("event_id")?,
                    kind: row.try_get("kind")?,
                    channel: row.try_get("channel")?,
                    attempt: row.try_get("attempt")?,
                    at_ms: row.try_get("at_ms")?,
                    status: status.and_then(|s| u16::try_from(s).ok()),
                    latency_ms: row.try_get("latency_ms")?,
                    error: row.try_get("error")?,
                    outcome: row.try_get("outcome")?,
                });
            }
            Ok(out)
        })
    }

    /// Deliveries queued over every app, and when the oldest undelivered
    /// event happened (Unix ms).
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn webhook_backlog(&self) -> Result<(i64, Option<i64>), StoreError> {
        with_pool!(self, pool => {
            let row = sqlx::query("SELECT COUNT(*) AS n, MIN(occurred_at_ms) AS oldest FROM webhook_outbox")
                .fetch_one(pool)
                .await?;
            Ok((row.try_get("n")?, row.try_get("oldest")?))
        })
    }
}
