//! A failing job is tried five times, 1, 30, 60 and 180 s apart (on the worker's clock, which
//! the test pins with `--now`), then deleted; nothing of a failed copy is left behind.

use chrono::{NaiveDateTime, TimeDelta};

use crate::{T0, stand};

fn rfc3339(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn parse(t: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f").unwrap()
}

#[test]
fn a_failing_copy_is_retried_after_1_30_60_180_seconds_then_dropped() {
    let stand = stand(2);
    stand.ok(&[
        "demo-data",
        "--clients",
        "2",
        "--campaigns",
        "1",
        "--banners",
        "2",
        "--phrases",
        "2",
    ]);
    let target_banners = stand.count(2, "SELECT COUNT(*) FROM banners");
    // The target shard lost a table: every attempt fails inside the copy's transaction.
    stand.sql(2, "RENAME TABLE phrases TO phrases_away");
    stand.ok(&[
        "--now",
        T0,
        "enqueue",
        "copy",
        "--cid",
        "1",
        "--to-client",
        "2",
        "--role",
        "client",
    ]);

    let mut now = rfc3339(parse("2026-12-01 09:00:00"));
    let mut delays = Vec::new();
    for attempt in 1..=5u32 {
        stand.drain(1, "copy:1", &now);
        let row = stand.sql(
            1,
            "SELECT attempts, next_try_at FROM camp_operations_queue_copy WHERE cid = 1",
        );
        let failed_at = stand.sql(1, "SELECT at FROM camp_queue_history WHERE cid = 1 AND event IN ('failed', 'gave_up') ORDER BY id DESC LIMIT 1");
        if attempt == 5 {
            assert_eq!(row, "", "deleted after the fifth failure");
            break;
        }
        let (attempts, next) = row.split_once('\t').unwrap();
        assert_eq!(attempts, attempt.to_string());
        let next = parse(next);
        delays.push((next - parse(&failed_at)).num_microseconds().unwrap());
        // A microsecond before it is due, the job is left alone.
        stand.drain(1, "copy:1", &rfc3339(next - TimeDelta::microseconds(1)));
        let still = stand.sql(
            1,
            "SELECT attempts FROM camp_operations_queue_copy WHERE cid = 1",
        );
        assert_eq!(
            still,
            attempt.to_string(),
            "attempt {attempt}: retried too early"
        );
        now = rfc3339(next);
    }
    assert_eq!(delays, vec![1_000_000, 30_000_000, 60_000_000, 180_000_000]);

    let events = stand.sql(
        1,
        "SELECT event FROM camp_queue_history WHERE cid = 1 ORDER BY id",
    );
    let events: Vec<&str> = events.lines().collect();
    let mut expected = vec!["queued"];
    for _ in 0..4 {
        expected.extend(["claimed", "failed"]);
    }
    expected.extend(["claimed", "gave_up"]);
    assert_eq!(events, expected);
    let last = stand.sql(
        1,
        "SELECT detail FROM camp_queue_history WHERE cid = 1 ORDER BY id DESC LIMIT 1",
    );
    assert!(
        last.contains("attempt 5 failed, giving up") && last.contains("phrases"),
        "{last}"
    );
    // Nothing of the failed copies is on the target.
    assert_eq!(
        stand.count(
            2,
            "SELECT COUNT(*) FROM campaigns WHERE copied_from_cid = 1"
        ),
        0
    );
    assert_eq!(
        stand.count(2, "SELECT COUNT(*) FROM banners"),
        target_banners
    );
}
