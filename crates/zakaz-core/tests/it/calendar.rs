//! The calendar evaluator agrees with systemd itself (`systemd-analyze calendar`, which needs
//! no running manager) on every schedule of the job table, from fixed base times around the
//! day, a Moscow midnight and a year end.

use chrono::{DateTime, NaiveDateTime, Utc};
use zakaz_core::calendar::next_elapse;
use zakaz_core::jobs::{JOBS, Schedule};

/// The next `n` elapses after `base` as systemd computes them.
fn systemd_elapses(expr: &str, base: i64, n: usize) -> Vec<DateTime<Utc>> {
    let out = std::process::Command::new("systemd-analyze")
        .args([
            "calendar",
            &format!("--base-time=@{base}"),
            &format!("--iterations={n}"),
            expr,
        ])
        .env_clear()
        .env("TZ", "UTC")
        .output()
        .expect("systemd-analyze runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix("Next elapse: ").or_else(|| {
                l.split_once(": ")
                    .filter(|(k, _)| k.starts_with("Iter."))
                    .map(|(_, v)| v)
            })?;
            // `Mon 2026-06-15 13:00:00 UTC`
            let stamp = rest
                .split_whitespace()
                .skip(1)
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            Some(
                NaiveDateTime::parse_from_str(&stamp, "%Y-%m-%d %H:%M:%S")
                    .ok()?
                    .and_utc(),
            )
        })
        .collect()
}

#[test]
fn every_job_schedule_matches_systemd() {
    let bases = [
        1_781_514_000, // 2026-06-15 09:00:00 UTC (12:00 MSK)
        1_781_557_199, // 2026-06-15 20:59:59 UTC (one second before midnight MSK)
        1_798_750_799, // 2026-12-31 20:59:59 UTC (year end, MSK)
        1_772_323_500, // 2026-03-01 00:05:00 UTC
    ];
    let mut checked = 0;
    for job in JOBS {
        let Schedule::Timer { on_calendar, .. } = job.schedule else {
            continue;
        };
        for base in bases {
            let expected = systemd_elapses(on_calendar, base, 3);
            assert_eq!(expected.len(), 3, "{on_calendar}");
            let mut ours = Vec::new();
            let mut after = DateTime::from_timestamp(base, 0).unwrap();
            for _ in 0..3 {
                after = next_elapse(on_calendar, after)
                    .unwrap_or_else(|| panic!("`{on_calendar}` is not understood"));
                ours.push(after);
            }
            assert_eq!(ours, expected, "`{on_calendar}` after @{base}");
            checked += 1;
        }
    }
    assert!(checked >= 5 * bases.len(), "every timer job was checked");
}
