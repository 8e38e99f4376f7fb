//! Calendar dates as Mixmaster writes them (`YYYY-MM-DD`, UTC) and the key
//! validity rule.

/// Seconds in one day.
pub const SECONDS_PER_DAY: u64 = 86_400;

/// Time a remailer still accepts packets for a key after its `Expires` date
/// (Mixmaster's `KEYGRACEPERIOD`, 7 days).
pub const KEY_GRACE_PERIOD_SECS: u64 = 7 * SECONDS_PER_DAY;

/// Converts a proleptic Gregorian date to days since 1970-01-01.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    // Howard Hinnant's days_from_civil algorithm.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Converts days since 1970-01-01 to `(year, month, day)`.
pub fn days_to_ymd(days: u64) -> (u64, u32, u32) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = if m <= 2 { y + 1 } else { y };
    (year as u64, m, d)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Parses `YYYY-MM-DD` (exactly that shape, 1970 or later) into seconds since
/// the epoch at 00:00 UTC of that day.
pub fn parse_date(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = &text[range];
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let year = digits(0..4)?;
    let month = digits(5..7)?;
    let day = digits(8..10)?;
    if year < 1970 || !(1..=12).contains(&month) {
        return None;
    }
    let month_days = [31, if is_leap(year) { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if day < 1 || day > month_days[(month - 1) as usize] {
        return None;
    }
    let days = days_from_civil(year, month as u32, day as u32);
    u64::try_from(days).ok().map(|d| d * SECONDS_PER_DAY)
}

/// Formats seconds since the epoch as the UTC date `YYYY-MM-DD`.
pub fn format_date(secs: u64) -> String {
    let (y, m, d) = days_to_ymd(secs / SECONDS_PER_DAY);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Returns whether a key may be used at `now`: from its creation to its
/// expiry plus the 7-day grace period, as Mixmaster checks it
/// (`expires + KEYGRACEPERIOD < now` means expired).
///
/// `created` and `expires` are the start (00:00 UTC) of the days the key
/// states, as [`parse_date`] returns them. So a key with `Expires` date E is
/// usable until 00:00 UTC of day E + 7.
pub fn key_usable(created: u64, expires: u64, now: u64) -> bool {
    created <= now && now <= expires.saturating_add(KEY_GRACE_PERIOD_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_round_trips() {
        for text in ["1970-01-01", "2000-02-29", "2026-12-04", "2027-06-02", "2100-12-31"] {
            let secs = parse_date(text).unwrap();
            assert_eq!(format_date(secs), text);
        }
        assert_eq!(parse_date("2026-12-04"), Some(20_791 * SECONDS_PER_DAY));
    }

    #[test]
    fn date_rejects_bad_shapes() {
        for text in ["2026-2-04", "2026-13-01", "2026-02-30", "1969-12-31", "2026-12-0x", "", "2026/12/04"] {
            assert_eq!(parse_date(text), None, "{text}");
        }
    }

    #[test]
    fn key_usable_applies_grace_and_creation() {
        let created = parse_date("2026-12-04").unwrap();
        let expires = parse_date("2027-06-02").unwrap();
        let noon = |d: &str| parse_date(d).unwrap() + 12 * 3600;
        assert!(key_usable(created, expires, noon("2026-12-04")));
        assert!(key_usable(created, expires, created));
        assert!(key_usable(created, expires, noon("2027-06-08")));
        assert!(key_usable(created, expires, parse_date("2027-06-09").unwrap()));
        assert!(!key_usable(created, expires, parse_date("2027-06-09").unwrap() + 1));
        assert!(!key_usable(created, expires, noon("2026-12-03")));
        assert!(!key_usable(created, expires, created - 1));
    }
}
