//! UTC calendar arithmetic for usage: the start of a month, and dates as
//! the CLI prints them (no time-zone database: usage is in UTC).

/// The start (Unix ms) of the UTC month holding `t_ms`.
#[must_use]
pub fn month_start(t_ms: i64) -> i64 {
    let days = t_ms.div_euclid(86_400_000);
    let (y, m, _) = civil_from_days(days);
    days_from_civil(y, m, 1) * 86_400_000
}

/// `t_ms` as a UTC date and time to the minute: `2026-12-07 05:12`.
#[must_use]
pub fn format_utc_minute(t_ms: i64) -> String {
    let (y, m, d) = civil_from_days(t_ms.div_euclid(86_400_000));
    let minutes = t_ms.rem_euclid(86_400_000) / 60_000;
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}", minutes / 60, minutes % 60)
}

/// The Unix ms of a UTC date and time as people write it:
/// `2026-12-07 05:12`, `2026-12-07T05:12` (what a `datetime-local` input
/// sends) or `2026-12-07` (midnight). `None` for anything else.
#[must_use]
pub fn parse_utc_minute(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, time) = match s.split_once([' ', 'T']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut parts = date.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    let minutes = match time {
        None => 0,
        Some(t) => {
            let (h, min) = t.split_once(':')?;
            let (h, min): (i64, i64) = (h.parse().ok()?, min.parse().ok()?);
            if !(0..24).contains(&h) || !(0..60).contains(&min) {
                return None;
            }
            h * 60 + min
        }
    };
    Some(days_from_civil(y, m, d) * 86_400_000 + minutes * 60_000)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    u32::try_from(days_from_civil(ny, nm, 1) - days_from_civil(y, m, 1)).unwrap_or(0)
}

/// (year, month, day) of a day count since 1970-01-01 (Hinnant's algorithm).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_start_on_their_first_day() {
        // 2026-12-07T05:00:00Z → 2026-12-01.
        assert_eq!(month_start(1_796_619_600_000), 1_796_083_200_000);
        // 2024-02-29T23:59:59.999Z → 2024-02-01.
        assert_eq!(month_start(1_709_251_199_999), 1_706_745_600_000);
        // The first instant of a month is its own start.
        assert_eq!(month_start(1_706_745_600_000), 1_706_745_600_000);
        assert_eq!(month_start(0), 0);
        assert_eq!(format_utc_minute(1_796_619_600_000), "2026-12-07 05:00");
    }

    #[test]
    fn dates_people_write_parse() {
        assert_eq!(parse_utc_minute("2026-12-07 05:00"), Some(1_796_619_600_000));
        assert_eq!(parse_utc_minute("2026-12-07T05:00"), Some(1_796_619_600_000));
        assert_eq!(parse_utc_minute("2024-02-01"), Some(1_706_745_600_000));
        assert_eq!(parse_utc_minute("2024-02-29 23:59"), Some(1_709_251_140_000));
        for bad in ["", "2023-02-29", "2024-13-01", "2024-01-01 24:00", "2024-01-01 1:60", "yesterday", "2024-1"] {
            assert_eq!(parse_utc_minute(bad), None, "{bad}");
        }
    }
}
