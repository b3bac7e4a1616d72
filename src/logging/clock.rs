//! Timestamps for the two log formats, in local time as gunicorn prints them, computed from
//! `SystemTime` without a date crate: the local offset is read once at startup (through Python's
//! `time`, which knows the zone database), so no line reads the zone database.

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A broken-down time at a fixed UTC offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// Seconds east of UTC.
    pub offset: i32,
}

/// The local UTC offset in seconds, as Python's `time.localtime().tm_gmtoff` gave it at
/// startup (gunicorn stamps its logs in local time; a DST change is seen after a restart).
static LOCAL_OFFSET: AtomicI32 = AtomicI32::new(0);

pub fn set_local_offset(secs: i32) {
    LOCAL_OFFSET.store(secs, Ordering::Relaxed);
}

impl Civil {
    /// Local time now, at the offset given to [`set_local_offset`] (UTC until then).
    pub(crate) fn now() -> Civil {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let offset = LOCAL_OFFSET.load(Ordering::Relaxed);
        Civil {
            offset,
            ..Civil::from_unix(secs as i64 + i64::from(offset))
        }
    }

    /// Converts seconds since the epoch (Howard Hinnant's `civil_from_days`).
    pub(crate) fn from_unix(secs: i64) -> Civil {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
            offset: 0,
        }
    }

    /// `+0100`, `-0530`: the offset as strftime's `%z` writes it.
    fn zone(&self) -> String {
        let sign = if self.offset < 0 { '-' } else { '+' };
        let m = self.offset.unsigned_abs() / 60;
        format!("{sign}{:02}{:02}", m / 60, m % 60)
    }

    /// `2026-11-24 09:00:00 +0000`: the error log's stamp.
    pub(crate) fn error_log_stamp(&self) -> String {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} {}",
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            self.zone()
        )
    }

    /// `2026-11-24T09:00:00+00:00`: ISO 8601, for the JSON access log.
    pub(crate) fn iso8601(&self) -> String {
        let zone = self.zone();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}:{}",
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            &zone[..3],
            &zone[3..]
        )
    }

    /// `[24/Nov/2026:09:00:00 +0000]`: the access log's `%(t)s`, brackets included.
    pub(crate) fn access_log_stamp(&self) -> String {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        format!(
            "[{:02}/{}/{:04}:{:02}:{:02}:{:02} {}]",
            self.day,
            MONTHS[(self.month as usize).saturating_sub(1) % 12],
            self.year,
            self.hour,
            self.minute,
            self.second,
            self.zone()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        let c = Civil::from_unix(0);
        assert_eq!(c.error_log_stamp(), "1970-01-01 00:00:00 +0000");
        // 2000-02-29 12:34:56 UTC, a leap day.
        let c = Civil::from_unix(951_827_696);
        assert_eq!(c.error_log_stamp(), "2000-02-29 12:34:56 +0000");
        assert_eq!(c.access_log_stamp(), "[29/Feb/2000:12:34:56 +0000]");
        // 2026-11-24 08:57:23 UTC
        assert_eq!(
            Civil::from_unix(1_795_510_643).error_log_stamp(),
            "2026-11-24 08:57:23 +0000"
        );
    }

    #[test]
    fn zones_print_like_strftime() {
        let at = |offset| Civil {
            offset,
            ..Civil::from_unix(0)
        };
        assert_eq!(at(3600).zone(), "+0100");
        assert_eq!(at(-(5 * 3600 + 1800)).zone(), "-0530");
        assert!(at(19800).access_log_stamp().ends_with(" +0530]"));
    }
}
