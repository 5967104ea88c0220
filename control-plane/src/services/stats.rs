//! An app's usage statistics: one entry per minute, hour or day with every
//! counter, in pages (modelled on Ably's stats API). Readable by the admin
//! and by any API key of the app, whatever its capabilities (usage is the
//! app's, not a channel's). Also what counts against an app's quotas now
//! ([`QuotaUse`]), as the quota verdicts count it.

use crate::auth::Principal;
use crate::core::Core;
use crate::error::ApiError;
use crate::services::checks::{parse_app_id, require_app};
use crate::store::{UsageRow, UsageUnit};

/// Intervals in a page unless `limit` says otherwise.
pub const DEFAULT_STATS_LIMIT: u32 = 100;

/// A stats query as a caller gives it, before the checks.
#[derive(Debug, Clone, Default)]
pub struct StatsQuery {
    /// `minute` (default), `hour` or `day`.
    pub unit: Option<String>,
    /// Intervals starting at or after this time (Unix ms; default 0).
    pub start: Option<i64>,
    /// Intervals starting at or before this time (Unix ms; default now).
    pub end: Option<i64>,
    /// Most intervals (default 100, at most `usage_max_limit`).
    pub limit: Option<u32>,
    /// `backwards` (default: newest first) or `forwards`.
    pub direction: Option<String>,
}

/// A page of stats.
#[derive(Debug, Clone)]
pub struct StatsPage {
    /// The unit of the entries.
    pub unit: UsageUnit,
    /// Intervals with usage, in the direction asked.
    pub entries: Vec<UsageRow>,
    /// The `start` and `end` of the next page, when this one was full.
    pub next: Option<(i64, i64)>,
}

/// What counts against an app's quotas now: the figures the quota
/// verdicts are worked out from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaUse {
    /// Messages published (every source) since 00:00 UTC.
    pub messages_today: i64,
    /// Messages published since the 1st of the UTC month.
    pub messages_this_month: i64,
    /// The app's connections across edges: the sum of every edge's latest
    /// figure (figures older than three `usage_report_interval`s left out).
    pub connections: i64,
}

impl Core {
    /// What counts against `app`'s quotas now.
    ///
    /// # Errors
    ///
    /// `forbidden` (another app's key), `not_found`, `unavailable`.
    pub async fn quota_use(&self, who: &Principal, app: &str) -> Result<QuotaUse, ApiError> {
        let app_id = parse_app_id(app)?;
        require_app(who, &app_id)?;
        self.auth.app(&app_id).await?;
        let now = herald_bus::now_ms();
        let ttl = crate::usage::gauge_ttl(&self.config);
        let fresh_after = now.saturating_sub(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        let (day, month) = (UsageUnit::Day.start(now), crate::usage::month_start(now));
        let (messages_today, messages_this_month, connections) =
            self.store.usage_for_quota(&app_id, day, month, fresh_after).await?;
        Ok(QuotaUse { messages_today, messages_this_month, connections })
    }

    /// A page of `app`'s usage.
    ///
    /// # Errors
    ///
    /// `bad_request` naming the parameter (`unit`, `start`, `end`, `limit`,
    /// `direction`), `forbidden` (another app's key), `not_found`,
    /// `unavailable`.
    pub async fn app_stats(&self, who: &Principal, app: &str, q: StatsQuery) -> Result<StatsPage, ApiError> {
        let app_id = parse_app_id(app)?;
        require_app(who, &app_id)?;
        let unit = match q.unit.as_deref() {
            None | Some("") => UsageUnit::Minute,
            Some(u) => UsageUnit::parse(u).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "`unit` {:?} is not one of minute, hour, day",
                    u.chars().take(32).collect::<String>()
                ))
            })?,
        };
        let forwards = match q.direction.as_deref() {
            None | Some("" | "backwards") => false,
            Some("forwards") => true,
            Some(d) => {
                return Err(ApiError::bad_request(format!(
                    "`direction` {:?} is not one of backwards, forwards",
                    d.chars().take(32).collect::<String>()
                )));
            }
        };
        let max = u32::try_from(self.config.usage_max_limit).unwrap_or(u32::MAX);
        let limit = q.limit.unwrap_or(DEFAULT_STATS_LIMIT.min(max));
        if limit == 0 || limit > max {
            return Err(ApiError::bad_request(format!("`limit` is {limit}; it must be 1 to {max}")));
        }
        let start = q.start.unwrap_or(0);
        let end = q.end.unwrap_or_else(herald_bus::now_ms);
        if start < 0 {
            return Err(ApiError::bad_request("`start` must be a Unix time in ms, not negative"));
        }
        if end < 0 {
            return Err(ApiError::bad_request("`end` must be a Unix time in ms, not negative"));
        }
        if start > end {
            return Err(ApiError::bad_request(format!("`start` ({start}) is after `end` ({end})")));
        }
        // The app must exist (a deleted app's usage is not served).
        self.auth.app(&app_id).await?;
        let entries = self.store.usage_stats(&app_id, unit, start, end, i64::from(limit), forwards).await?;
        let next = match entries.last() {
            Some(last) if entries.len() == limit as usize => {
                if forwards {
                    (last.start_ms < end).then_some((last.start_ms + 1, end))
                } else {
                    (last.start_ms > start).then_some((start, last.start_ms - 1))
                }
            }
            _ => None,
        };
        Ok(StatsPage { unit, entries, next })
    }
}
