//! The next elapse of an `OnCalendar=` expression, for the forms the job table uses
//! (`*:0/15`, `*-*-* 00/2:00:00 Europe/Moscow`, `*-*-* 00,04,08:00:00 Europe/Moscow`). The
//! healthcheck shows when a job runs next without asking systemd (its sandboxed service has
//! no D-Bus); a test compares every job's schedule with `systemd-analyze calendar`.

use chrono::{DateTime, Days, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

/// A parsed expression: every day, at the listed hours, minutes and seconds, in a zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    hours: Vec<u32>,
    minutes: Vec<u32>,
    seconds: Vec<u32>,
    zone: Tz,
}

impl Calendar {
    /// Parse `[*-*-*] H:M[:S] [ZONE]`; each field is `*`, a number, a list `a,b`, a range
    /// `a..b` or a repetition `a/step`. Weekdays and explicit dates are not supported (the job
    /// table has none): `None`.
    pub fn parse(expr: &str) -> Option<Calendar> {
        let mut words: Vec<&str> = expr.split_whitespace().collect();
        let zone = match words.last().and_then(|w| w.parse::<Tz>().ok()) {
            Some(tz) => {
                words.pop();
                tz
            }
            None => Tz::UTC,
        };
        let time = match words.as_slice() {
            ["*-*-*", time] | [time] => *time,
            _ => return None,
        };
        let parts: Vec<&str> = time.split(':').collect();
        let (h, m, s) = match parts.as_slice() {
            [h, m] => (*h, *m, "0"),
            [h, m, s] => (*h, *m, *s),
            _ => return None,
        };
        Some(Calendar {
            hours: field(h, 24)?,
            minutes: field(m, 60)?,
            seconds: field(s, 60)?,
            zone,
        })
    }

    /// The first elapse strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local_day = after.with_timezone(&self.zone).date_naive();
        // Two days ahead always holds the next elapse of an every-day schedule (a DST gap can
        // skip one local time, never a whole day).
        (0..3).find_map(|ahead| {
            let day = local_day.checked_add_days(Days::new(ahead))?;
            self.first_on(day, after)
        })
    }

    fn first_on(&self, day: NaiveDate, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        for &h in &self.hours {
            for &m in &self.minutes {
                for &s in &self.seconds {
                    let Some(t) = day
                        .and_hms_opt(h, m, s)
                        .and_then(|naive| self.zone.from_local_datetime(&naive).earliest())
                    else {
                        continue;
                    };
                    let t = t.with_timezone(&Utc);
                    if t > after {
                        return Some(t);
                    }
                }
            }
        }
        None
    }
}

/// One field as the sorted values it allows, each below `limit`.
fn field(text: &str, limit: u32) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in text.split(',') {
        if part == "*" {
            out.extend(0..limit);
        } else if let Some((start, step)) = part.split_once('/') {
            let start = if start == "*" { 0 } else { start.parse().ok()? };
            let step: u32 = step.parse().ok().filter(|s| *s > 0)?;
            out.extend((start..limit).step_by(step as usize));
        } else if let Some((a, b)) = part.split_once("..") {
            let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
            if a > b || b >= limit {
                return None;
            }
            out.extend(a..=b);
        } else {
            let v: u32 = part.parse().ok()?;
            if v >= limit {
                return None;
            }
            out.push(v);
        }
    }
    out.sort_unstable();
    out.dedup();
    (!out.is_empty()).then_some(out)
}

/// The next elapse of `on_calendar` after `after`; `None` for a form this module cannot read.
pub fn next_elapse(on_calendar: &str, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    Calendar::parse(on_calendar)?.next_after(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn quarter_hours_and_msk_schedules() {
        let t = utc("2026-06-01T10:07:30Z");
        assert_eq!(next_elapse("*:0/15", t), Some(utc("2026-06-01T10:15:00Z")));
        // 00:00 MSK is 21:00 UTC the day before.
        assert_eq!(
            next_elapse("*-*-* 00:00:00 Europe/Moscow", t),
            Some(utc("2026-06-01T21:00:00Z"))
        );
        assert_eq!(
            next_elapse("*-*-* 00/2:00:00 Europe/Moscow", t),
            Some(utc("2026-06-01T11:00:00Z"))
        );
        assert_eq!(
            next_elapse("*-*-* 00,04,08,12,16,20:00:00 Europe/Moscow", t),
            Some(utc("2026-06-01T13:00:00Z"))
        );
        // Strictly after: an elapse at `after` itself is the previous one.
        assert_eq!(
            next_elapse("*:0/15", utc("2026-06-01T10:15:00Z")),
            Some(utc("2026-06-01T10:30:00Z"))
        );
    }

    #[test]
    fn fields_allow_exactly_their_values() {
        assert_eq!(field("*", 3), Some(vec![0, 1, 2]));
        assert_eq!(field("0/20", 60), Some(vec![0, 20, 40]));
        assert_eq!(field("*/30", 60), Some(vec![0, 30]));
        assert_eq!(field("0/0", 60), None, "a step of 0");
        assert_eq!(field("1..3", 24), Some(vec![1, 2, 3]));
        assert_eq!(field("23..23", 24), Some(vec![23]));
        assert_eq!(field("3..1", 24), None);
        assert_eq!(field("1..24", 24), None);
        assert_eq!(field("1..30", 24), None);
        assert_eq!(field("5,1,5", 24), Some(vec![1, 5]));
        assert_eq!(field("24", 24), None);
    }

    #[test]
    fn unsupported_forms_are_none() {
        assert_eq!(Calendar::parse("Mon *-*-* 00:00:00"), None);
        assert_eq!(Calendar::parse("*:61"), None);
        assert_eq!(Calendar::parse("weekly"), None);
        assert!(Calendar::parse("*-*-* 1..3:00").is_some());
    }
}
