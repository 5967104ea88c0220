//! The usage tables: per-app counters per minute, hour and day, refusals by
//! reason, the batches stored, and each node's latest connection figures.
//!
//! A batch is stored in one transaction: its (node, sequence) goes into
//! `usage_batches` first, and only when that row is new do its counts add
//! to the app's minute, hour and day rows (the rollup happens as the batch
//! is stored, so every unit is exact and a batch sent twice counts once,
//! whichever replica stores it). Peaks keep the largest value. Deleting by
//! retention is a plain delete per unit, safe to run on every replica.

use herald_proto::{AppId, bus};
use sqlx::Row;

use super::{Store, StoreError, parse_app_id};

/// The length of an interval unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageUnit {
    /// 60 s.
    Minute,
    /// 3,600 s.
    Hour,
    /// 86,400 s (UTC days).
    Day,
}

impl UsageUnit {
    /// Every unit, shortest first.
    pub const ALL: [UsageUnit; 3] = [Self::Minute, Self::Hour, Self::Day];

    /// Its name in the API and the table.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }

    /// The unit of this name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|u| u.as_str() == s)
    }

    /// Its length in ms.
    #[must_use]
    pub const fn ms(self) -> i64 {
        match self {
            Self::Minute => 60_000,
            Self::Hour => 3_600_000,
            Self::Day => 86_400_000,
        }
    }

    /// The start of the interval holding `t_ms`.
    #[must_use]
    pub const fn start(self, t_ms: i64) -> i64 {
        t_ms - t_ms.rem_euclid(self.ms())
    }
}

/// One interval of one app's usage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageRow {
    /// The interval's start, Unix ms.
    pub start_ms: i64,
    /// Messages published through the REST API.
    pub published_rest: i64,
    /// Through the gRPC API.
    pub published_grpc: i64,
    /// Through Pusher's HTTP API.
    pub published_pusher_http: i64,
    /// By clients (Herald client publishes, Pusher client events).
    pub published_client: i64,
    /// Deliveries to subscribers.
    pub delivered: i64,
    /// Payload bytes published.
    pub bytes_in: i64,
    /// Frame bytes delivered.
    pub bytes_out: i64,
    /// Connections opened.
    pub connections_opened: i64,
    /// Most concurrent connections across edges.
    pub peak_connections: i64,
    /// Most channels with subscribers (summed over edges).
    pub peak_channels: i64,
    /// Webhook deliveries answered 2xx.
    pub webhooks_ok: i64,
    /// Webhook delivery attempts that failed.
    pub webhooks_failed: i64,
    /// Refusals by reason, by name.
    pub refusals: Vec<(String, i64)>,
}

/// An app's quotas (`None`: no such quota).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppQuotas {
    /// The app.
    pub app: AppId,
    /// Messages per UTC day.
    pub per_day: Option<i64>,
    /// Messages per UTC month.
    pub per_month: Option<i64>,
    /// Concurrent connections across edges.
    pub connections: Option<i64>,
}

/// What storing a report did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoredUsage {
    /// Batches counted now.
    pub stored: u64,
    /// Batches stored before (resent), not counted again.
    pub duplicates: u64,
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

const ADD_STATS: &str = "INSERT INTO usage_stats (app_id, unit, start_ms, published_rest, published_grpc, \
    published_pusher_http, published_client, delivered, bytes_in, bytes_out, connections_opened, webhooks_ok, \
    webhooks_failed, refused, peak_connections, peak_channels) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
    ON CONFLICT (app_id, unit, start_ms) DO UPDATE SET \
    published_rest = usage_stats.published_rest + excluded.published_rest, \
    published_grpc = usage_stats.published_grpc + excluded.published_grpc, \
    published_pusher_http = usage_stats.published_pusher_http + excluded.published_pusher_http, \
    published_client = usage_stats.published_client + excluded.published_client, \
    delivered = usage_stats.delivered + excluded.delivered, \
    bytes_in = usage_stats.bytes_in + excluded.bytes_in, \
    bytes_out = usage_stats.bytes_out + excluded.bytes_out, \
    connections_opened = usage_stats.connections_opened + excluded.connections_opened, \
    webhooks_ok = usage_stats.webhooks_ok + excluded.webhooks_ok, \
    webhooks_failed = usage_stats.webhooks_failed + excluded.webhooks_failed, \
    refused = usage_stats.refused + excluded.refused, \
    peak_connections = CASE WHEN excluded.peak_connections > usage_stats.peak_connections \
    THEN excluded.peak_connections ELSE usage_stats.peak_connections END, \
    peak_channels = CASE WHEN excluded.peak_channels > usage_stats.peak_channels \
    THEN excluded.peak_channels ELSE usage_stats.peak_channels END";

const ADD_REFUSAL: &str = "INSERT INTO usage_refusals (app_id, unit, start_ms, reason, count) \
    VALUES ($1, $2, $3, $4, $5) ON CONFLICT (app_id, unit, start_ms, reason) DO UPDATE SET \
    count = usage_refusals.count + excluded.count";

/// What one (app, unit, interval) row gets from a report: counter deltas
/// (in [`bus::AppUsage`]'s fields) and peaks.
#[derive(Default)]
struct RowChange {
    add: [u64; 11],
    peaks: (i64, i64),
}

impl RowChange {
    fn add(&mut self, u: &bus::AppUsage) {
        let refused: u64 = u.refusals.iter().map(|r| r.count).sum();
        let values = [
            u.published_rest,
            u.published_grpc,
            u.published_pusher_http,
            u.published_client,
            u.delivered,
            u.bytes_in,
            u.bytes_out,
            u.connections_opened,
            u.webhooks_ok,
            u.webhooks_failed,
            refused,
        ];
        for (a, v) in self.add.iter_mut().zip(values) {
            *a = a.saturating_add(v);
        }
    }
}

macro_rules! stats_columns {
    () => {
        "start_ms, published_rest, published_grpc, published_pusher_http, published_client, delivered, bytes_in, \
         bytes_out, connections_opened, peak_connections, peak_channels, webhooks_ok, webhooks_failed"
    };
}

impl Store {
    /// Stores a usage report at `now_ms`: each batch not stored before adds
    /// to its apps' minute, hour and day rows (in the interval of the
    /// batch's time); the node's gauges replace its previous ones, and the
    /// apps' bus-wide totals (the sum of every node's figures updated since
    /// `fresh_after_ms`) raise the peaks of the intervals holding `now_ms`.
    /// One transaction.
    ///
    /// # Errors
    ///
    /// Database errors (nothing is stored then).
    pub async fn store_usage(
        &self,
        report: &bus::UsageReport,
        now_ms: i64,
        fresh_after_ms: i64,
    ) -> Result<StoredUsage, StoreError> {
        use std::collections::BTreeMap;
        let mut stored = StoredUsage::default();
        // Rows are changed in key order, the same in every transaction:
        // replicas storing reports at once wait for each other, never
        // deadlock.
        let mut rows: BTreeMap<(&str, usize, i64), RowChange> = BTreeMap::new();
        let mut refusals: BTreeMap<(&str, usize, i64, &str), u64> = BTreeMap::new();
        let mut gauges: Vec<&bus::AppGauge> = report.gauges.iter().collect();
        gauges.sort_by(|a, b| a.app_id.cmp(&b.app_id));
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for batch in &report.batches {
                let new = sqlx::query(
                    "INSERT INTO usage_batches (node_id, seq, stored_at_ms) VALUES ($1, $2, $3) \
                     ON CONFLICT (node_id, seq) DO NOTHING",
                )
                .bind(&report.node_id)
                .bind(i(batch.seq))
                .bind(now_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    > 0;
                if !new {
                    stored.duplicates += 1;
                    continue;
                }
                stored.stored += 1;
                for app in &batch.apps {
                    for (u, unit) in UsageUnit::ALL.into_iter().enumerate() {
                        let key = (app.app_id.as_str(), u, unit.start(batch.timestamp_ms));
                        rows.entry(key).or_default().add(app);
                        for r in &app.refusals {
                            let n = refusals.entry((key.0, key.1, key.2, r.reason.as_str())).or_default();
                            *n = n.saturating_add(r.count);
                        }
                    }
                }
            }
            for g in &gauges {
                if g.connections == 0 && g.channels == 0 {
                    sqlx::query("DELETE FROM usage_gauges WHERE app_id = $1 AND node_id = $2")
                        .bind(&g.app_id)
                        .bind(&report.node_id)
                        .execute(&mut *tx)
                        .await?;
                } else {
                    sqlx::query(
                        "INSERT INTO usage_gauges (app_id, node_id, connections, channels, updated_at_ms) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (app_id, node_id) DO UPDATE SET \
                         connections = excluded.connections, channels = excluded.channels, \
                         updated_at_ms = excluded.updated_at_ms",
                    )
                    .bind(&g.app_id)
                    .bind(&report.node_id)
                    .bind(i64::from(g.connections))
                    .bind(i64::from(g.channels))
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                }
                let row = sqlx::query(
                    "SELECT CAST(COALESCE(SUM(connections), 0) AS BIGINT) AS c, CAST(COALESCE(SUM(channels), 0) AS BIGINT) AS ch \
                     FROM usage_gauges WHERE app_id = $1 AND updated_at_ms >= $2",
                )
                .bind(&g.app_id)
                .bind(fresh_after_ms)
                .fetch_one(&mut *tx)
                .await?;
                let peaks: (i64, i64) = (row.try_get("c")?, row.try_get("ch")?);
                for (u, unit) in UsageUnit::ALL.into_iter().enumerate() {
                    rows.entry((g.app_id.as_str(), u, unit.start(now_ms))).or_default().peaks = peaks;
                }
            }
            for ((app, u, start), change) in &rows {
                let mut q = sqlx::query(ADD_STATS).bind(*app).bind(UsageUnit::ALL[*u].as_str()).bind(*start);
                for v in change.add {
                    q = q.bind(i(v));
                }
                q.bind(change.peaks.0).bind(change.peaks.1).execute(&mut *tx).await?;
            }
            for ((app, u, start, reason), count) in &refusals {
                sqlx::query(ADD_REFUSAL)
                    .bind(*app)
                    .bind(UsageUnit::ALL[*u].as_str())
                    .bind(*start)
                    .bind(*reason)
                    .bind(i(*count))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(stored)
    }

    /// Up to `limit` intervals of `unit` of `app` starting in
    /// `[start_ms, end_ms]`, newest first (`forwards`: oldest first), with
    /// their refusals. Intervals without usage have no row.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn usage_stats(
        &self,
        app: &AppId,
        unit: UsageUnit,
        start_ms: i64,
        end_ms: i64,
        limit: i64,
        forwards: bool,
    ) -> Result<Vec<UsageRow>, StoreError> {
        let sql = if forwards {
            concat!(
                "SELECT ",
                stats_columns!(),
                " FROM usage_stats WHERE app_id = $1 AND unit = $2 AND start_ms >= $3 AND start_ms <= $4 \
                 ORDER BY start_ms ASC LIMIT $5"
            )
        } else {
            concat!(
                "SELECT ",
                stats_columns!(),
                " FROM usage_stats WHERE app_id = $1 AND unit = $2 AND start_ms >= $3 AND start_ms <= $4 \
                 ORDER BY start_ms DESC LIMIT $5"
            )
        };
        let mut rows = with_pool!(self, pool => {
            let rows = sqlx::query(sql)
                .bind(app.as_str())
                .bind(unit.as_str())
                .bind(start_ms)
                .bind(end_ms)
                .bind(limit)
                .fetch_all(pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                out.push(UsageRow {
                    start_ms: row.try_get("start_ms")?,
                    published_rest: row.try_get("published_rest")?,
                    published_grpc: row.try_get("published_grpc")?,
                    published_pusher_http: row.try_get("published_pusher_http")?,
                    published_client: row.try_get("published_client")?,
                    delivered: row.try_get("delivered")?,
                    bytes_in: row.try_get("bytes_in")?,
                    bytes_out: row.try_get("bytes_out")?,
                    connections_opened: row.try_get("connections_opened")?,
                    peak_connections: row.try_get("peak_connections")?,
                    peak_channels: row.try_get("peak_channels")?,
                    webhooks_ok: row.try_get("webhooks_ok")?,
                    webhooks_failed: row.try_get("webhooks_failed")?,
                    refusals: Vec::new(),
                });
            }
            out
        });
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else { return Ok(rows) };
        let (lo, hi) = (first.start_ms.min(last.start_ms), first.start_ms.max(last.start_ms));
        let refusals: Vec<(i64, String, i64)> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT start_ms, reason, count FROM usage_refusals WHERE app_id = $1 AND unit = $2 \
                 AND start_ms >= $3 AND start_ms <= $4 ORDER BY reason",
            )
            .bind(app.as_str())
            .bind(unit.as_str())
            .bind(lo)
            .bind(hi)
            .fetch_all(pool)
            .await?
        });
        for (start, reason, count) in refusals {
            if let Some(row) = rows.iter_mut().find(|r| r.start_ms == start) {
                row.refusals.push((reason, count));
            }
        }
        Ok(rows)
    }

    /// Messages `app` published (every source) in the day and in the month
    /// starting at `day_ms` and `month_ms`, and its connections now: the sum
    /// of every node's figure updated since `fresh_after_ms`.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn usage_for_quota(
        &self,
        app: &AppId,
        day_ms: i64,
        month_ms: i64,
        fresh_after_ms: i64,
    ) -> Result<(i64, i64, i64), StoreError> {
        const SUM: &str = "SELECT CAST(COALESCE(SUM(published_rest + published_grpc + published_pusher_http \
            + published_client), 0) AS BIGINT) FROM usage_stats WHERE app_id = $1 AND unit = 'day' AND start_ms >= $2 \
            AND start_ms <= $3";
        with_pool!(self, pool => {
            let day: i64 = sqlx::query_scalar(SUM).bind(app.as_str()).bind(day_ms).bind(day_ms).fetch_one(pool).await?;
            let month: i64 =
                sqlx::query_scalar(SUM).bind(app.as_str()).bind(month_ms).bind(i64::MAX).fetch_one(pool).await?;
            let connections: i64 = sqlx::query_scalar(
                "SELECT CAST(COALESCE(SUM(connections), 0) AS BIGINT) FROM usage_gauges \
                 WHERE app_id = $1 AND updated_at_ms >= $2",
            )
            .bind(app.as_str())
            .bind(fresh_after_ms)
            .fetch_one(pool)
            .await?;
            Ok((day, month, connections))
        })
    }

    /// The apps with a quota, with their quotas.
    ///
    /// # Errors
    ///
    /// Database errors; [`StoreError::Corrupt`] for an unreadable id.
    pub async fn apps_with_quotas(&self) -> Result<Vec<AppQuotas>, StoreError> {
        type Row = (String, Option<i64>, Option<i64>, Option<i64>);
        let rows: Vec<Row> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, quota_messages_per_day, quota_messages_per_month, quota_connections FROM apps \
                 WHERE quota_messages_per_day IS NOT NULL OR quota_messages_per_month IS NOT NULL \
                 OR quota_connections IS NOT NULL ORDER BY id",
            )
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(id, per_day, per_month, connections)| {
                Ok(AppQuotas { app: parse_app_id(&id)?, per_day, per_month, connections })
            })
            .collect()
    }

    /// Deletes usage rows of `unit` that started before `before_ms`.
    /// Returns how many rows went.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn delete_usage_before(&self, unit: UsageUnit, before_ms: i64) -> Result<u64, StoreError> {
        with_pool!(self, pool => {
            let a = sqlx::query("DELETE FROM usage_stats WHERE unit = $1 AND start_ms < $2")
                .bind(unit.as_str())
                .bind(before_ms)
                .execute(pool)
                .await?
                .rows_affected();
            let b = sqlx::query("DELETE FROM usage_refusals WHERE unit = $1 AND start_ms < $2")
                .bind(unit.as_str())
                .bind(before_ms)
                .execute(pool)
                .await?
                .rows_affected();
            Ok(a + b)
        })
    }

    /// Forgets the batches stored before `before_ms` (a node resends a
    /// batch for at most its pending bound, far less than this) and the
    /// gauges not updated since `stale_ms` (nodes gone).
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn forget_usage_batches(&self, before_ms: i64, stale_ms: i64) -> Result<u64, StoreError> {
        with_pool!(self, pool => {
            let a = sqlx::query("DELETE FROM usage_batches WHERE stored_at_ms < $1")
                .bind(before_ms)
                .execute(pool)
                .await?
                .rows_affected();
            let b = sqlx::query("DELETE FROM usage_gauges WHERE updated_at_ms < $1")
                .bind(stale_ms)
                .execute(pool)
                .await?
                .rows_affected();
            Ok(a + b)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_start_on_their_unit() {
        let t = 1_700_000_123_456;
        assert_eq!(UsageUnit::Minute.start(t), 1_700_000_100_000);
        assert_eq!(UsageUnit::Hour.start(t) % 3_600_000, 0);
        assert_eq!(UsageUnit::Day.start(t) % 86_400_000, 0);
        assert_eq!(UsageUnit::parse("hour"), Some(UsageUnit::Hour));
        assert_eq!(UsageUnit::parse("week"), None);
    }
}
