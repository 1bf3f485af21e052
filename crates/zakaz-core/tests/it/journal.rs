use std::time::Duration;

use zakaz_core::jobs;
use zakaz_core::journal::{Metrics, Outcome, Run, journaled};
use zakaz_core::testing::{TestDb, query_tsv};

/// The seed's first example query, on this test's database.
fn last_runs(db: &TestDb) -> Vec<Vec<String>> {
    let text = query_tsv(&format!(
        "SELECT * FROM `{}`.meta_job_runs ORDER BY started_at DESC LIMIT 10",
        db.name
    ));
    text.lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

/// The seed's second example query.
fn runs_per_status(db: &TestDb) -> String {
    query_tsv(&format!(
        "SELECT job, status, count() as runs, max(started_at) as last_run
         FROM `{}`.meta_job_runs GROUP BY job, status ORDER BY job, status",
        db.name
    ))
}

#[tokio::test]
async fn run_journal_round_trip_answers_the_seed_queries() {
    let (db, ch) = TestDb::migrated().await;
    let qtickets = jobs::get("qtickets");

    let ok = journaled(&ch, qtickets, None, |_run_id| async {
        Ok(Outcome {
            rows: 42,
            message: "loaded 42 orders".into(),
            metrics: Metrics::new().with("orders", 42u64),
        })
    })
    .await
    .unwrap();
    assert_eq!(ok.rows, 42);

    let failed = journaled(&ch, jobs::get("vk_ads"), None, |_run_id| async {
        Err::<Outcome, _>(anyhow::anyhow!(
            "VK Ads answered HTTP 403: ERR_ACCESS_DENIED"
        ))
    })
    .await
    .unwrap_err();
    assert!(failed.to_string().contains("ERR_ACCESS_DENIED"));

    // A run that started and is still within its deadline is `running`.
    let _live = Run::start(&ch, jobs::get("direct"), None).await.unwrap();

    let rows = last_runs(&db);
    assert_eq!(rows.len(), 3, "{rows:?}");
    let by_job = |job: &str| rows.iter().find(|r| r[0] == job).unwrap().clone();
    // Columns: job, run_id, started_at, finished_at, status, rows_processed, message, …
    let q = by_job("qtickets");
    assert_eq!(
        (q[4].as_str(), q[5].as_str(), q[6].as_str()),
        ("ok", "42", "loaded 42 orders")
    );
    assert_ne!(q[3], "\\N", "finished_at is set");
    assert_eq!(q[7], r#"{"orders":42}"#);
    let v = by_job("vk_ads");
    assert_eq!(v[4], "error");
    assert!(v[6].contains("ERR_ACCESS_DENIED"), "{v:?}");
    let d = by_job("direct");
    assert_eq!((d[3].as_str(), d[4].as_str()), ("\\N", "running"));

    let stats = runs_per_status(&db);
    let stats: Vec<_> = stats
        .lines()
        .map(|l| l.split('\t').take(3).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        stats,
        ["direct running 1", "qtickets ok 1", "vk_ads error 1"]
    );
}

#[tokio::test]
async fn a_run_left_behind_past_its_deadline_is_unfinished_not_running() {
    let (db, ch) = TestDb::migrated().await;
    // Judged at a pinned instant (the jobs' clock), never the wall clock.
    let now: chrono::DateTime<chrono::Utc> = "2026-11-25T09:00:00Z".parse().unwrap();
    let at = |minutes_ago: i64| {
        zakaz_core::time::Clock::Fixed(now - chrono::Duration::minutes(minutes_ago))
    };
    // A run whose process died (SIGKILL, OOM, reboot): started, never finished, and its
    // deadline has passed: started ten minutes ago with a five-minute timeout.
    let dead = Run::start_at(
        &ch,
        jobs::get("qtickets"),
        None,
        Duration::from_secs(300),
        at(10),
    )
    .await
    .unwrap();
    // One still running: started two minutes ago, five minutes to go before its deadline.
    let alive = Run::start_at(
        &ch,
        jobs::get("qtickets"),
        None,
        Duration::from_secs(420),
        at(2),
    )
    .await
    .unwrap();

    let status_of = |run_id: &str| {
        query_tsv(
            &format!(
                "SELECT status FROM {} WHERE run_id = '{run_id}'",
                zakaz_core::journal::runs_as_of(&now)
            )
            .replace(
                "FROM meta_job_runs",
                &format!("FROM `{}`.meta_job_runs", db.name),
            ),
        )
    };
    assert_eq!(status_of(&dead.run_id), "unfinished\n");
    assert_eq!(status_of(&alive.run_id), "running\n");

    // Finishing the live one turns it `ok`; the dead one stays `unfinished`.
    let alive_id = alive.run_id.clone();
    alive.finish_ok(&Outcome::default()).await.unwrap();
    assert_eq!(status_of(&alive_id), "ok\n");
    assert_eq!(status_of(&dead.run_id), "unfinished\n");
    // People's queries judge by the server's clock, which is past both deadlines.
    let stats = runs_per_status(&db);
    assert!(stats.starts_with("qtickets\tok\t1\t"), "{stats}");
    assert!(stats.contains("qtickets\tunfinished\t1\t"), "{stats}");
}

#[tokio::test]
async fn secrets_in_error_messages_are_not_journaled() {
    let (db, ch) = TestDb::migrated().await;
    let token = zakaz_core::Secret::new("journal-secret-token-9f8e7d");
    let err = journaled(&ch, jobs::get("qtickets"), None, |_| async move {
        Err::<Outcome, _>(anyhow::anyhow!("request with {} failed", token.expose()))
    })
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("journal-secret-token-9f8e7d"),
        "the raw error is the caller's"
    );
    let message = query_tsv(&format!("SELECT message FROM `{}`.meta_job_runs", db.name));
    assert_eq!(message, "request with *** failed\n");
}

#[tokio::test]
async fn metrics_are_stored_as_they_are_and_only_messages_are_redacted() {
    let (db, ch) = TestDb::migrated().await;
    // A short password that happens to appear inside the watermark's digits.
    let password = zakaz_core::Secret::new("7813");
    zakaz_core::secret::register(password.expose());
    journaled(&ch, jobs::get("qtickets"), None, |_| async {
        Ok(Outcome {
            rows: 1,
            message: "connected with password 7813".into(),
            metrics: Metrics::new()
                .with("watermark_updated_at", 1_781_378_130u64)
                .with("mode", "updated_since")
                .with("max_order_id", None::<u64>),
        })
    })
    .await
    .unwrap();
    let row = query_tsv(&format!(
        "SELECT metrics, message FROM `{}`.meta_job_runs WHERE job = 'qtickets'",
        db.name
    ));
    assert_eq!(
        row,
        "{\"max_order_id\":null,\"mode\":\"updated_since\",\"watermark_updated_at\":1781378130}\tconnected with password ***\n"
    );
}
