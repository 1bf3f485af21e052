//! What the health rules read from ClickHouse: the journal per job as of a pinned instant,
//! and the latest state of every alert.

use zakaz_core::checks::{job_states, open_alerts};
use zakaz_core::testing::TestDb;

/// 2026-11-25T09:00:00Z.
const NOW: i64 = 1_795_597_200;

#[tokio::test]
async fn job_states_fold_the_journal_as_of_the_callers_clock() {
    let (db, ch) = TestDb::migrated().await;
    let at = |secs_ago: i64| format!("toDateTime({})", NOW - secs_ago);
    // qtickets: ok an hour ago, an error 10 min ago, then ok again with 2 warnings; vk_ads: a
    // run started 20 min ago whose deadline passed 5 min ago, never finished; alerts: ignored.
    let events = [
        ("qtickets", "q1", 1, "ok", 3600, 600, "fine", "{}"),
        ("qtickets", "q2", 1, "error", 600, 600, "boom", "{}"),
        (
            "qtickets",
            "q3",
            1,
            "ok",
            60,
            600,
            "worked around",
            "{\"warnings\":2}",
        ),
        ("vk_ads", "v1", 0, "running", 1200, -300, "", "{}"),
        ("alerts", "a1", 1, "error", 60, 600, "x", "{}"),
    ];
    for (job, run, seq, status, ago, deadline_in, message, metrics) in events {
        ch.execute(&format!(
            "INSERT INTO meta_job_run_events (job, run_id, seq, status, started_at, finished_at, deadline_at, rows_processed, message, metrics, host, pid) \
             SELECT '{job}', '{run}', {seq}, '{status}', {}, NULL, {}, 1, '{message}', '{metrics}', 'h', 1",
            at(ago),
            at(-deadline_in),
        ))
        .await
        .unwrap();
    }
    let now = chrono::DateTime::from_timestamp(NOW, 0).unwrap();
    // Errors since ten minutes and a half ago.
    let states = job_states(&ch, (NOW - 630) as u32, &now).await.unwrap();
    assert!(
        !states.contains_key("alerts"),
        "alerts does not judge itself"
    );
    let q = &states["qtickets"];
    assert_eq!(
        (
            q.last_status.as_str(),
            q.last_message.as_str(),
            q.errors_since,
            q.last_error_message.as_str(),
            q.last_warnings
        ),
        ("ok", "worked around", 1, "boom", 2)
    );
    assert_eq!(q.last_ok_at as i64, NOW - 60);
    assert_eq!(q.first_seen_at as i64, NOW - 3600);
    let v = &states["vk_ads"];
    assert_eq!(
        (v.last_status.as_str(), v.unfinished_since),
        ("unfinished", 1)
    );
    // Since later than the error: it no longer counts.
    let later = job_states(&ch, (NOW - 300) as u32, &now).await.unwrap();
    assert_eq!(later["qtickets"].errors_since, 0);
    drop(db);
}

#[tokio::test]
async fn open_alerts_give_each_fingerprints_latest_state() {
    let (db, ch) = TestDb::migrated().await;
    ch.execute(
        "INSERT INTO alerts (created_at, created_us, alert_id, fingerprint, job, alert_type, severity, state, title, message, details, channels, channel_errors) VALUES \
         (toDateTime(1795590000), 1795590000000000, 'a1', 'failed_run:qtickets', 'qtickets', 'failed_run', 'critical', 'firing', 'qtickets failed', '', '{}', 'telegram', ''), \
         (toDateTime(1795590000), 1795590000000001, 'a2', 'failed_run:qtickets', 'qtickets', 'failed_run', 'info', 'resolved', 'qtickets failed', '', '{}', 'telegram', ''), \
         (toDateTime(1795591000), 1795591000000000, 'a3', 'stale_data:vk_ads', 'vk_ads', 'stale_data', 'warning', 'firing', 'vk_ads data is stale', '', '{}', '', 'telegram: down')",
    )
    .await
    .unwrap();
    let open = open_alerts(&ch).await.unwrap();
    assert_eq!(open.len(), 2);
    let q = &open["failed_run:qtickets"];
    assert_eq!(
        q.state, "resolved",
        "the later of two rows in the same second"
    );
    assert_eq!((q.last_sent, q.fired_at), (1_795_590_000, 1_795_590_000));
    let v = &open["stale_data:vk_ads"];
    assert_eq!(
        (
            v.state.as_str(),
            v.last_sent,
            v.fired_at,
            v.job.as_str(),
            v.alert_type.as_str(),
            v.title.as_str()
        ),
        (
            "firing",
            0,
            1_795_591_000,
            "vk_ads",
            "stale_data",
            "vk_ads data is stale"
        ),
        "fired but never accepted by a channel"
    );
    drop(db);
}
