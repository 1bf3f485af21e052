//! Time is explicit: business dates are Moscow dates; API timestamps carry their offset.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use clap::Args;

use crate::error::config_error;

pub const MOSCOW: Tz = chrono_tz::Europe::Moscow;

/// Where "now" comes from: the system clock in production, a pinned instant in tests, so that
/// no assertion depends on the time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Clock {
    #[default]
    System,
    Fixed(DateTime<Utc>),
}

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Fixed(t) => *t,
        }
    }

    /// The Moscow date of `now`.
    pub fn moscow_today(&self) -> NaiveDate {
        moscow_date(&self.now())
    }
}

/// A hidden `--now`: tests pin the clock of a binary to the sandbox's instant.
#[derive(Debug, Clone, Default, Args)]
pub struct ClockArgs {
    /// Act as of this instant instead of the system clock (tests pin time with it).
    #[arg(long, hide = true, value_name = "RFC3339")]
    pub now: Option<DateTime<Utc>>,
}

impl ClockArgs {
    pub fn clock(&self) -> Clock {
        self.now.map_or(Clock::System, Clock::Fixed)
    }
}

/// Today's date in Moscow.
pub fn moscow_today() -> NaiveDate {
    Utc::now().with_timezone(&MOSCOW).date_naive()
}

/// The Moscow date of an instant.
pub fn moscow_date<Z: TimeZone>(t: &DateTime<Z>) -> NaiveDate {
    t.with_timezone(&MOSCOW).date_naive()
}

/// Whether ClickHouse's `Date` can hold `d` (1970-01-01 to 2149-06-06): input from outside
/// is checked with this, since [`ch_date`] clamps what it cannot hold.
pub fn fits_ch_date(d: NaiveDate) -> bool {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch");
    (0..=i64::from(u16::MAX)).contains(&(d - epoch).num_days())
}

/// Whether ClickHouse's `DateTime` can hold `t` (1970 to 2106-02-07): input from outside is
/// checked with this, since [`ch_datetime`] clamps what it cannot hold.
pub fn fits_ch_datetime<Z: TimeZone>(t: &DateTime<Z>) -> bool {
    u32::try_from(t.timestamp()).is_ok()
}

/// Days since 1970-01-01: ClickHouse's `Date` on the wire.
pub fn ch_date(d: NaiveDate) -> u16 {
    let days = d.num_days_from_ce()
        - NaiveDate::from_ymd_opt(1970, 1, 1)
            .unwrap()
            .num_days_from_ce();
    days.clamp(0, i32::from(u16::MAX)) as u16
}

/// ClickHouse's `Date` back to a date.
pub fn ch_date_to_naive(days: u16) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).unwrap() + chrono::Days::new(u64::from(days))
}

/// Seconds since the epoch: ClickHouse's `DateTime` on the wire.
pub fn ch_datetime<Z: TimeZone>(t: &DateTime<Z>) -> u32 {
    t.timestamp().clamp(0, i64::from(u32::MAX)) as u32
}

/// Parse the timestamp forms the remote APIs use: RFC 3339 with `Z`, `+03:00` or `+0300`,
/// `T` or a space between date and time; a timestamp without an offset is Moscow time
/// (VK Ads writes `YYYY-MM-DD HH:MM:SS` in MSK).
pub fn parse_api_timestamp(text: &str) -> anyhow::Result<DateTime<FixedOffset>> {
    let s = text.trim();
    if let Some(t) = with_offset(s) {
        return Ok(t);
    }
    let with_t = s.replacen(' ', "T", 1);
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(&with_t, fmt)
            && let Some(t) = MOSCOW.from_local_datetime(&naive).earliest()
        {
            return Ok(t.fixed_offset());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        && let Some(t) = MOSCOW
            .from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap())
            .earliest()
    {
        return Ok(t.fixed_offset());
    }
    Err(anyhow::anyhow!("unrecognised timestamp `{s}`"))
}

/// [`parse_api_timestamp`] for APIs whose timestamps always carry an offset (QTickets): one
/// without is an error, never silently read as Moscow time.
pub fn parse_offset_timestamp(text: &str) -> anyhow::Result<DateTime<FixedOffset>> {
    let s = text.trim();
    with_offset(s).ok_or_else(|| {
        if parse_api_timestamp(s).is_ok() {
            anyhow::anyhow!("timestamp `{s}` has no UTC offset")
        } else {
            anyhow::anyhow!("unrecognised timestamp `{s}`")
        }
    })
}

/// The forms that carry an offset: RFC 3339 with `Z`, `+03:00` or `+0300`, `T` or a space.
fn with_offset(s: &str) -> Option<DateTime<FixedOffset>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t);
    }
    let with_t = s.replacen(' ', "T", 1);
    [
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M:%S%.f%#z",
    ]
    .iter()
    .find_map(|fmt| DateTime::parse_from_str(&with_t, fmt).ok())
}

/// `--since/--until/--days`: the dates a run covers.
#[derive(Debug, Clone, Default, Args)]
pub struct WindowArgs {
    /// First date to (re)load, inclusive (YYYY-MM-DD, Moscow).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub since: Option<NaiveDate>,

    /// Last date to (re)load, inclusive (YYYY-MM-DD, Moscow); default: the job's usual last day.
    #[arg(long, value_name = "YYYY-MM-DD", requires = "since")]
    pub until: Option<NaiveDate>,

    /// Number of days ending at the job's usual last day (instead of `--since`).
    #[arg(long, value_name = "N", conflicts_with = "since")]
    pub days: Option<u32>,
}

/// An inclusive range of Moscow dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateWindow {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl DateWindow {
    /// Resolve the flags against `last_day` (today for sales, yesterday for ad statistics);
    /// without flags the window is `default_days` long.
    pub fn resolve(
        args: &WindowArgs,
        last_day: NaiveDate,
        default_days: u32,
    ) -> anyhow::Result<Self> {
        let window = match (args.since, args.days) {
            (Some(since), _) => DateWindow {
                from: since,
                to: args.until.unwrap_or(last_day),
            },
            (None, Some(0)) => return Err(config_error("`--days` must be at least 1")),
            (None, days) => {
                let days = days.unwrap_or(default_days.max(1));
                DateWindow {
                    from: last_day - chrono::Days::new(u64::from(days - 1)),
                    to: last_day,
                }
            }
        };
        if window.from > window.to {
            return Err(config_error(format!(
                "`--since` {} is after `--until` {}",
                window.from, window.to
            )));
        }
        Ok(window)
    }

    pub fn days(&self) -> impl Iterator<Item = NaiveDate> {
        self.from.iter_days().take_while({
            let to = self.to;
            move |d| *d <= to
        })
    }

    pub fn contains(&self, d: NaiveDate) -> bool {
        self.from <= d && d <= self.to
    }

    /// The window in consecutive pieces of at most `days` days (an API's longest period).
    pub fn chunks(&self, days: u32) -> Vec<DateWindow> {
        let step = u64::from(days.max(1));
        let mut out = Vec::new();
        let mut from = self.from;
        while from <= self.to {
            let to = (from + chrono::Days::new(step - 1)).min(self.to);
            out.push(DateWindow { from, to });
            from = to + chrono::Days::new(1);
        }
        out
    }

    pub fn len_days(&self) -> u32 {
        (self.to - self.from).num_days() as u32 + 1
    }
}

impl std::fmt::Display for DateWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}..{}", self.from, self.to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn a_window_holds_its_ends_and_knows_its_length() {
        let w = DateWindow {
            from: d("2026-01-30"),
            to: d("2026-02-10"),
        };
        assert_eq!(w.len_days(), 12);
        assert!(w.contains(d("2026-01-30")) && w.contains(d("2026-02-10")));
        assert!(w.contains(d("2026-02-01")));
        assert!(!w.contains(d("2026-01-29")) && !w.contains(d("2026-02-11")));
        assert_eq!(w.to_string(), "2026-01-30..2026-02-10");
        assert_eq!(w.days().count(), 12);
    }

    #[test]
    fn the_clock_gives_moscow_dates_of_its_instant() {
        // 21:30 UTC is already the next day in Moscow (UTC+3).
        let late: DateTime<Utc> = "2026-11-25T21:30:00Z".parse().unwrap();
        assert_eq!(Clock::Fixed(late).moscow_today(), d("2026-11-26"));
        let args = ClockArgs { now: Some(late) };
        assert_eq!(args.clock(), Clock::Fixed(late));
        assert_eq!(ClockArgs::default().clock(), Clock::System);
        // The system clock's date is today's, wherever the machine is.
        let today = moscow_today();
        assert!(today > d("2025-01-01"), "{today}");
        assert!((Clock::System.moscow_today() - today).num_days().abs() <= 1);
    }

    #[test]
    fn clickhouse_dates_go_there_and_back() {
        for date in ["1970-01-01", "2026-11-25", "2100-12-31"] {
            assert_eq!(ch_date_to_naive(ch_date(d(date))), d(date));
        }
        assert_eq!(ch_date(d("1970-01-02")), 1);
        assert_eq!(ch_date_to_naive(20_417), d("2025-11-25"));
        assert_eq!(ch_date(d("1969-12-31")), 0, "before the epoch is held at 0");
    }

    #[test]
    fn chunks_cover_the_window_once() {
        let w = DateWindow {
            from: d("2026-01-30"),
            to: d("2026-02-10"),
        };
        let parts = w.chunks(5);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].from, w.from);
        assert_eq!(parts[2].to, w.to);
        assert_eq!(
            parts.iter().map(DateWindow::len_days).sum::<u32>(),
            w.len_days()
        );
        assert!(
            parts
                .windows(2)
                .all(|p| p[0].to.succ_opt() == Some(p[1].from))
        );
    }

    #[test]
    fn parses_every_api_timestamp_form() {
        let msk = parse_api_timestamp("2025-05-01T10:00:00+03:00").unwrap();
        assert_eq!(msk.timestamp(), 1746082800);
        assert_eq!(
            parse_api_timestamp("2025-05-01T10:00:00+0300").unwrap(),
            msk
        );
        assert_eq!(
            parse_api_timestamp("2025-05-01 10:00:00+03:00").unwrap(),
            msk
        );
        assert_eq!(parse_api_timestamp("2025-05-01T07:00:00Z").unwrap(), msk);
        assert_eq!(parse_api_timestamp("2025-05-01 10:00:00").unwrap(), msk);
        let novosibirsk = parse_api_timestamp("2025-05-01T14:00:00+07:00").unwrap();
        assert_eq!(novosibirsk.timestamp(), msk.timestamp());
        assert!(parse_api_timestamp("yesterday").is_err());
    }

    #[test]
    fn moscow_date_of_late_evening_utc_is_next_day() {
        let t = parse_api_timestamp("2025-05-01T22:30:00Z").unwrap();
        assert_eq!(moscow_date(&t), d("2025-05-02"));
    }

    #[test]
    fn windows_resolve_from_flags() {
        let last = d("2025-05-10");
        let none = WindowArgs::default();
        assert_eq!(
            DateWindow::resolve(&none, last, 1).unwrap(),
            DateWindow {
                from: last,
                to: last
            }
        );
        let days = WindowArgs {
            days: Some(7),
            ..Default::default()
        };
        assert_eq!(
            DateWindow::resolve(&days, last, 1).unwrap().from,
            d("2025-05-04")
        );
        let since = WindowArgs {
            since: Some(d("2025-05-01")),
            until: Some(d("2025-05-03")),
            days: None,
        };
        let w = DateWindow::resolve(&since, last, 1).unwrap();
        assert_eq!(w.days().count(), 3);
        let bad = WindowArgs {
            since: Some(d("2025-05-05")),
            until: Some(d("2025-05-03")),
            days: None,
        };
        let err = DateWindow::resolve(&bad, last, 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`--since` 2025-05-05 is after `--until` 2025-05-03"
        );
    }

    #[test]
    fn clickhouse_wire_dates() {
        assert_eq!(ch_date(d("1970-01-02")), 1);
        assert_eq!(ch_date(d("2025-05-01")), 20209);
    }
}
