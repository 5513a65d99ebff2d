//! When `puente serve` runs a sync: a poll interval, a reconciliation
//! schedule written the way people say it ("hourly", "daily at 03:00",
//! "weekly on sunday at 02:30", "every 15 minutes", "off"), and a debounce.

use std::time::Duration;

use chrono::{DateTime, Datelike, Duration as Span, NaiveTime, TimeZone, Timelike, Utc, Weekday};

/// How often a full reconciliation runs (catching what webhooks and
/// incremental reads missed). Times of day are UTC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reconcile {
    Off,
    Every(Duration),
    Daily(NaiveTime),
    Weekly(Weekday, NaiveTime),
}

impl Reconcile {
    /// Parses the schedule phrases the config accepts; the error is the fix.
    pub fn parse(s: &str) -> Result<Reconcile, String> {
        let words: Vec<String> = s
            .split_whitespace()
            .map(|w| w.to_ascii_lowercase())
            .collect();
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        let time = |t: &str| {
            NaiveTime::parse_from_str(t, "%H:%M")
                .map_err(|_| format!("{t:?} is not a time of day; write it as HH:MM (UTC)"))
        };
        let midnight = NaiveTime::MIN;
        match w.as_slice() {
            ["off"] | ["never"] => Ok(Reconcile::Off),
            ["hourly"] => Ok(Reconcile::Every(Duration::from_secs(3600))),
            ["daily"] => Ok(Reconcile::Daily(midnight)),
            ["daily", "at", t] => Ok(Reconcile::Daily(time(t)?)),
            ["weekly"] => Ok(Reconcile::Weekly(Weekday::Sun, midnight)),
            ["weekly", "on", d] => Ok(Reconcile::Weekly(weekday(d)?, midnight)),
            ["weekly", "on", d, "at", t] => Ok(Reconcile::Weekly(weekday(d)?, time(t)?)),
            ["every", n, unit] => {
                let n: u64 = n
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{n:?} is not a positive whole number"))?;
                let secs = match unit.trim_end_matches('s') {
                    "second" => 1,
                    "minute" => 60,
                    "hour" => 3600,
                    "day" => 86_400,
                    other => {
                        return Err(format!(
                            "{other:?} is not a unit; write seconds, minutes, hours or days"
                        ))
                    }
                };
                Ok(Reconcile::Every(Duration::from_secs(n * secs)))
            }
            _ => Err(
                "write one of: hourly, daily, daily at HH:MM, weekly on DAY at HH:MM, every N minutes|hours|days, off"
                    .into(),
            ),
        }
    }

    /// The first reconciliation strictly after `last` (the previous one, or
    /// the service's start).
    pub fn next_after(&self, last: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Reconcile::Off => None,
            Reconcile::Every(d) => Some(last + Span::from_std(*d).unwrap_or(Span::hours(1))),
            Reconcile::Daily(t) => {
                let today = Utc.from_utc_datetime(&last.date_naive().and_time(*t));
                Some(if today > last {
                    today
                } else {
                    today + Span::days(1)
                })
            }
            Reconcile::Weekly(day, t) => {
                let ahead = (7 + day.num_days_from_monday() as i64
                    - last.weekday().num_days_from_monday() as i64)
                    % 7;
                let at = Utc.from_utc_datetime(&last.date_naive().and_time(*t)) + Span::days(ahead);
                Some(if at > last { at } else { at + Span::days(7) })
            }
        }
    }
}

fn weekday(d: &str) -> Result<Weekday, String> {
    d.parse::<Weekday>()
        .map_err(|_| format!("{d:?} is not a day of the week; write monday … sunday"))
}

/// When one sync runs under `puente serve`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Incremental reads this often (also when webhooks arrive).
    pub poll: Duration,
    pub reconcile: Reconcile,
    /// After a webhook, wait until the record has been quiet this long.
    pub debounce: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            poll: Duration::from_secs(60),
            reconcile: Reconcile::Every(Duration::from_secs(3600)),
            debounce: Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn backfill_windows_wrap_past_midnight() {
        let at = |h: u32, m: u32| Utc.with_ymd_and_hms(2026, 11, 22, h, m, 0).unwrap();
        let night = Backfill {
            window: Some(Backfill::parse_window("22:00-06:00").unwrap()),
            budget_share: None,
        };
        assert!(night.open_at(at(23, 10)) && night.open_at(at(5, 59)));
        assert!(!night.open_at(at(6, 0)) && !night.open_at(at(12, 0)));
        let day = Backfill {
            window: Some(Backfill::parse_window("09:30-17:00").unwrap()),
            budget_share: None,
        };
        assert!(day.open_at(at(9, 30)) && !day.open_at(at(17, 0)));
        assert!(Backfill::default().open_at(at(3, 0)));
        for bad in ["22-06", "25:00-06:00", "10:00-10:00", "night"] {
            assert!(Backfill::parse_window(bad).is_err(), "{bad}");
        }
    }

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn check(phrase: &str, last: &str, expect: Option<&str>) {
        let r = Reconcile::parse(phrase).unwrap();
        assert_eq!(
            r.next_after(at(last)),
            expect.map(at),
            "{phrase} after {last}"
        );
    }

    #[test]
    fn phrases_give_the_next_reconciliation() {
        check(
            "hourly",
            "2026-11-22T10:15:00Z",
            Some("2026-11-22T11:15:00Z"),
        );
        check(
            "daily",
            "2026-11-22T10:15:00Z",
            Some("2026-11-23T00:00:00Z"),
        );
        check(
            "daily at 03:30",
            "2026-11-22T01:00:00Z",
            Some("2026-11-22T03:30:00Z"),
        );
        check(
            "daily at 03:30",
            "2026-11-22T03:30:00Z",
            Some("2026-11-23T03:30:00Z"),
        );
        // 2026-11-22 is a Sunday.
        check(
            "weekly on Wednesday at 02:00",
            "2026-11-22T10:00:00Z",
            Some("2026-11-25T02:00:00Z"),
        );
        check(
            "weekly on sunday at 12:00",
            "2026-11-22T10:00:00Z",
            Some("2026-11-22T12:00:00Z"),
        );
        check(
            "weekly on sunday at 09:00",
            "2026-11-22T10:00:00Z",
            Some("2026-11-29T09:00:00Z"),
        );
        check(
            "every 15 minutes",
            "2026-11-22T10:00:00Z",
            Some("2026-11-22T10:15:00Z"),
        );
        check("off", "2026-11-22T10:00:00Z", None);
    }

    #[test]
    fn a_bad_phrase_says_what_to_write() {
        for (bad, says) in [
            ("daily at 25:00", "HH:MM"),
            ("weekly on someday", "monday"),
            ("every 0 minutes", "positive"),
            ("every 5 fortnights", "unit"),
            ("sometimes", "hourly, daily"),
        ] {
            let e = Reconcile::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}

/// A gradual exchange: the initial read of a side (its backfill) goes on
/// only inside a daily window and within a share of the API's daily budget.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Backfill {
    /// Minutes of the UTC day, `[start, end)`; wraps past midnight when
    /// `end <= start`.
    pub window: Option<(u32, u32)>,
    /// The share of a connection's daily API budget the backfill may spend.
    pub budget_share: Option<f64>,
}

impl Backfill {
    /// Reads `HH:MM-HH:MM` (UTC).
    pub fn parse_window(s: &str) -> Result<(u32, u32), String> {
        let fix = || "write the window as HH:MM-HH:MM in UTC, e.g. \"22:00-06:00\"".to_string();
        let (a, b) = s.split_once('-').ok_or_else(fix)?;
        let minutes = |t: &str| -> Result<u32, String> {
            let (h, m) = t.trim().split_once(':').ok_or_else(fix)?;
            let (h, m): (u32, u32) = (h.parse().map_err(|_| fix())?, m.parse().map_err(|_| fix())?);
            if h > 23 || m > 59 {
                return Err(fix());
            }
            Ok(h * 60 + m)
        };
        let (start, end) = (minutes(a)?, minutes(b)?);
        if start == end {
            return Err(
                "the window is empty; to backfill at any hour, leave backfill_window out".into(),
            );
        }
        Ok((start, end))
    }

    /// The window as `HH:MM-HH:MM UTC`.
    pub fn window_text(&self) -> Option<String> {
        self.window.map(|(s, e)| {
            format!(
                "{:02}:{:02}-{:02}:{:02} UTC",
                s / 60,
                s % 60,
                e / 60,
                e % 60
            )
        })
    }

    /// Whether the backfill may read at `t`.
    pub fn open_at(&self, t: DateTime<Utc>) -> bool {
        let Some((start, end)) = self.window else {
            return true;
        };
        let now = t.hour() * 60 + t.minute();
        if start < end {
            (start..end).contains(&now)
        } else {
            now >= start || now < end
        }
    }
}
