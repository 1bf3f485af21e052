use crate::{Env, stderr};
use zakaz_core::testing::JobUnderTest;

#[tokio::test]
async fn a_healthy_system_stays_quiet() {
    let env = Env::new().await;
    env.seed_healthy().await;
    env.run_ok(&[]);
    assert!(env.telegram().is_empty(), "{:?}", env.telegram());
    assert!(env.smtp.messages().is_empty());
    assert_eq!(env.query("SELECT count() FROM {db}.alerts").trim(), "0");
    let run =
        env.query("SELECT status, rows_processed FROM {db}.meta_job_runs WHERE job = 'alerts'");
    assert_eq!(run, "ok\t0\n");
}

#[tokio::test]
async fn each_check_fires_on_its_situation_and_lands_in_both_channels() {
    let env = Env::new().await;
    // qtickets failed; vk_ads has a run past its deadline (killed); direct last succeeded three
    // days ago (missed); vk_ads data is five days old (stale).
    env.seed_fresh("qtickets", 0).await;
    env.seed_fresh("direct", 1).await;
    env.seed_run("qtickets", "ok", 900, -600, "fine").await;
    env.seed_run(
        "qtickets",
        "error",
        300,
        -100,
        "QTickets answered HTTP 503 for `/orders`",
    )
    .await;
    env.seed_run("vk_ads", "ok", 3600, -3000, "fine").await;
    env.seed_run("vk_ads", "running", 2000, -60, "").await;
    env.seed_run("direct", "ok", 3 * 86_400, -3 * 86_400 + 600, "fine")
        .await;
    env.seed_fresh("vk_ads", 5).await;

    env.run_ok(&[]);
    let sent = env.telegram();
    let titles = [
        "qtickets failed",
        "vk_ads was killed",
        "direct has not run",
        "vk_ads data is stale",
    ];
    for title in titles {
        assert!(
            sent.iter().any(|m| m.contains(title)),
            "no Telegram alert `{title}`: {sent:?}"
        );
    }
    assert_eq!(sent.len(), titles.len(), "{sent:?}");
    let mails = env.smtp.messages();
    assert_eq!(mails.len(), titles.len());
    assert!(
        mails
            .iter()
            .any(|m| m.contains("Subject: [zakaz] FIRING qtickets failed")),
        "{mails:?}"
    );
    let rows =
        env.query("SELECT alert_type, job, state, channels FROM {db}.alerts ORDER BY alert_type");
    assert_eq!(
        rows,
        "failed_run\tqtickets\tfiring\ttelegram,email\n\
         killed_run\tvk_ads\tfiring\ttelegram,email\n\
         missed_run\tdirect\tfiring\ttelegram,email\n\
         stale_data\tvk_ads\tfiring\ttelegram,email\n"
    );
    // The seed's alert queries answer.
    let stats = env.query(&env.at_now("SELECT alert_type, count() as alerts_count, max(created_at) as last_alert FROM {db}.alerts WHERE created_at >= toDate(now()) - 7 GROUP BY alert_type ORDER BY alerts_count DESC, alert_type"));
    assert_eq!(stats.lines().count(), 4, "{stats}");

    // Within the cooldown nothing new is sent or recorded.
    env.run_ok(&[]);
    assert_eq!(env.telegram().len(), titles.len());
    assert_eq!(env.smtp.messages().len(), titles.len());
    assert_eq!(env.query("SELECT count() FROM {db}.alerts").trim(), "4");
}

#[tokio::test]
async fn a_cleared_problem_sends_one_resolved_notice() {
    let env = Env::new().await;
    env.seed_healthy().await;
    env.seed_run("qtickets", "error", 300, -100, "boom").await;
    env.run_ok(&[]);
    assert_eq!(env.telegram().len(), 1);
    // The job recovers after the check: a run stamped two seconds later than now (an explicit
    // timestamp instead of waiting for the clock to pass a second).
    env.seed_run("qtickets", "ok", -2, -1, "fine").await;
    env.run_ok(&[]);
    let sent = env.telegram();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent[1].contains("RESOLVED qtickets failed"), "{sent:?}");
    env.run_ok(&[]);
    assert_eq!(env.telegram().len(), 2, "resolved only once");
    let states = env.query("SELECT state FROM {db}.alerts ORDER BY created_us");
    assert_eq!(states, "firing\nresolved\n");
}

#[tokio::test]
async fn a_failure_that_never_reached_the_journal_is_resolved_only_by_a_newer_ok_run() {
    let env = Env::new().await;
    env.seed_healthy().await;
    // Five minutes ago `qtickets` exited 78 before it could write to the journal, and
    // `--unit-failed` alerted; its last run in the journal is still the ok one before that.
    env.ch
        .execute(&env.at_now(
            "INSERT INTO alerts (created_at, alert_id, fingerprint, job, alert_type, severity, state, title, channels) \
             SELECT now() - 300, 'a1', 'failed_run:qtickets', 'qtickets', 'failed_run', 'critical', 'firing', 'qtickets.service failed', 'telegram'",
        ))
        .await
        .unwrap();
    env.run_ok(&[]);
    assert!(
        env.telegram().is_empty(),
        "not resolved: {:?}",
        env.telegram()
    );
    assert_eq!(
        env.query("SELECT state FROM {db}.alerts WHERE fingerprint = 'failed_run:qtickets'"),
        "firing\n"
    );
    // Then a run succeeds.
    env.seed_run("qtickets", "ok", 60, -1, "fine").await;
    env.run_ok(&[]);
    let sent = env.telegram();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0].contains("RESOLVED qtickets.service failed"),
        "{sent:?}"
    );
}

#[tokio::test]
async fn an_ok_run_with_warnings_raises_its_own_alert() {
    let env = Env::new().await;
    env.seed_healthy().await;
    env.ch
        .execute(&env.at_now(
            "INSERT INTO meta_job_run_events (job, run_id, seq, status, started_at, finished_at, deadline_at, rows_processed, message, metrics, host, pid) \
             SELECT 'qtickets', 'w1', 1, 'ok', now() - 60, now() - 50, now() + 240, 10, \
                    '10 orders; inventory failed for 1 show(s): show 77: HTTP 500', '{\"warnings\":1,\"orders\":10}', 'test', 1",
        ))
        .await
        .unwrap();
    env.run_ok(&[]);
    let sent = env.telegram();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0].contains("qtickets finished with warnings") && sent[0].contains("show 77"),
        "{sent:?}"
    );
    assert_eq!(
        env.query("SELECT fingerprint, severity FROM {db}.alerts"),
        "run_warning:qtickets\twarning\n"
    );
}

#[tokio::test]
async fn a_clickhouse_outage_is_one_alert_per_cooldown_not_a_storm() {
    let env = Env::new().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let outage = [("CLICKHOUSE_URL", down.as_str())];
    for _ in 0..3 {
        let out = env.run(&[], &outage);
        assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    }
    // Every job failing meanwhile starts `--unit-failed`, twice for qtickets.
    let monitor = [
        ("CLICKHOUSE_URL", down.as_str()),
        ("MONITOR_SERVICE_RESULT", "exit-code"),
        ("MONITOR_EXIT_CODE", "exited"),
        ("MONITOR_EXIT_STATUS", "69"),
    ];
    for unit in ["qtickets.service", "qtickets.service", "vk_ads.service"] {
        let out = env.run(&["--unit-failed", unit], &monitor);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let sent = env.telegram();
    let count = |title: &str| sent.iter().filter(|m| m.contains(title)).count();
    assert_eq!(count("ClickHouse unreachable"), 1, "{sent:?}");
    assert_eq!(count("qtickets.service failed"), 1, "{sent:?}");
    assert_eq!(count("vk_ads.service failed"), 1, "{sent:?}");
    assert_eq!(sent.len(), 3, "{sent:?}");
    let file = env.state_dir.join("alerts-sent.json");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn a_clickhouse_that_answers_but_fails_queries_still_gets_its_alert_out() {
    let env = Env::new().await;
    env.seed_healthy().await;
    // The schema is recorded as current, but a table the checks read is gone.
    env.ch.execute("DROP TABLE alerts").await.unwrap();
    let out = env.run(&[], &[]);
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    let sent = env.telegram();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0].contains("ClickHouse fails queries")
            && sent[0].contains("the alert checks could not run"),
        "{sent:?}"
    );
    let again = env.run(&[], &[]);
    assert_ne!(again.status.code(), Some(0));
    assert_eq!(env.telegram().len(), 1, "de-duplicated by the state file");
    // A unit failure meanwhile is still alerted, de-duplicated the same way.
    let monitor = [("MONITOR_SERVICE_RESULT", "exit-code")];
    let out = env.run(&["--unit-failed", "qtickets.service"], &monitor);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(env.telegram().len(), 2);
}

fn fault(
    route: &str,
    status: Option<u16>,
    body: Option<serde_json::Value>,
    truncate: bool,
    count: u32,
) -> api_sandbox::Fault {
    api_sandbox::Fault {
        route: route.into(),
        status,
        body,
        headers: vec![],
        delay_ms: 0,
        truncate,
        remaining: Some(count),
        fraction: None,
        after: 0,
        hold: false,
    }
}

#[tokio::test]
async fn a_message_telegram_may_have_accepted_is_never_sent_twice() {
    let env = Env::new().await;
    env.seed_healthy().await;
    env.seed_run("qtickets", "error", 300, -100, "boom").await;
    // Telegram takes the message, but its answer arrives cut off.
    env.sandbox
        .sandbox()
        .add_fault(fault("/telegram/*", None, None, true, 1));
    let out = env.run_ok(&[]);
    assert!(
        stderr(&out).contains("Telegram may have received the message, not resending"),
        "{}",
        stderr(&out)
    );
    env.run_ok(&[]);
    let sent = env.telegram();
    assert_eq!(sent.len(), 1, "not sent again: {sent:?}");
    assert_eq!(
        env.query("SELECT channels FROM {db}.alerts"),
        "telegram?,email\n"
    );
}

#[tokio::test]
async fn telegram_never_waits_past_its_share_of_the_units_timeout() {
    let env = Env::new().await;
    env.seed_healthy().await;
    env.seed_run("qtickets", "error", 300, -100, "boom").await;
    let busy = serde_json::json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 100", "parameters": {"retry_after": 100}});
    env.sandbox
        .sandbox()
        .add_fault(fault("/telegram/*", Some(429), Some(busy), false, 5));
    let out = env.run_ok(&[]);
    assert!(
        stderr(&out).contains("Telegram asks to wait 100 s, more than the"),
        "{}",
        stderr(&out)
    );
    assert!(env.telegram().is_empty());
    assert_eq!(env.smtp.messages().len(), 1, "e-mail still goes out");
}

#[tokio::test]
async fn a_resolved_notice_no_channel_accepted_is_sent_again() {
    let env = Env::new().await;
    env.seed_healthy().await;
    env.seed_run("qtickets", "error", 300, -100, "boom").await;
    env.run_ok(&[]);
    assert_eq!(env.telegram().len(), 1);
    env.seed_run("qtickets", "ok", -2, -1, "fine").await;
    // Both channels down for this run.
    env.sandbox
        .sandbox()
        .add_fault(fault("/telegram/*", Some(403), None, false, 1));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port().to_string();
    drop(closed);
    let down = env.run(&[], &[("SMTP_PORT", &port)]);
    assert_ne!(down.status.code(), Some(0), "{}", stderr(&down));
    assert_eq!(
        env.query("SELECT count() FROM {db}.alerts WHERE state = 'resolved'"),
        "0\n",
        "an unheard RESOLVED is not recorded"
    );
    env.run_ok(&[]);
    let sent = env.telegram();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent[1].contains("RESOLVED qtickets failed"), "{sent:?}");
}

#[tokio::test]
async fn a_reminder_comes_after_the_cooldown_and_not_a_minute_before() {
    let env = Env::new().await;
    env.seed_healthy().await;
    env.seed_run("qtickets", "error", 300, -100, "still broken")
        .await;
    env.seed_run("vk_ads", "error", 300, -100, "also broken")
        .await;
    // Both were alerted before: qtickets a minute more than the 24 h cooldown ago, vk_ads a
    // minute less.
    env.ch
        .execute(&env.at_now(
            "INSERT INTO alerts (created_at, alert_id, fingerprint, job, alert_type, severity, state, title, channels) VALUES \
             (now() - 86460, 'a1', 'failed_run:qtickets', 'qtickets', 'failed_run', 'critical', 'firing', 'qtickets failed', 'telegram'), \
             (now() - 86340, 'a2', 'failed_run:vk_ads', 'vk_ads', 'failed_run', 'critical', 'firing', 'vk_ads failed', 'telegram')",
        ))
        .await
        .unwrap();
    env.run_ok(&[]);
    let sent = env.telegram();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].contains("REMINDER qtickets failed"), "{sent:?}");
    // The reminder restarts the cooldown.
    env.run_ok(&[]);
    assert_eq!(env.telegram().len(), 1);
}

#[tokio::test]
async fn a_telegram_429_is_waited_out() {
    let env = Env::new().await;
    env.seed_healthy().await;
    env.seed_run("qtickets", "error", 300, -100, "boom").await;
    env.sandbox.sandbox().add_fault(api_sandbox::Fault {
        route: "/telegram/*".into(),
        status: Some(429),
        body: None,
        headers: vec![],
        delay_ms: 0,
        truncate: false,
        remaining: Some(1),
        fraction: None,
        after: 0,
        hold: false,
    });
    let out = env.run_ok(&[]);
    assert!(
        stderr(&out).contains("Telegram asks to wait"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.telegram().len(), 1);
    assert_eq!(
        env.query("SELECT channels FROM {db}.alerts"),
        "telegram,email\n"
    );
}

#[tokio::test]
async fn a_broken_smtp_does_not_lose_the_telegram_message() {
    let env = Env::new().await;
    env.seed_healthy().await;
    env.seed_run("qtickets", "error", 300, -100, "boom").await;
    let closed = crate::free_port().to_string();
    let out = env.run(&[], &[("SMTP_PORT", &closed)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(env.telegram().len(), 1);
    let row = env.query("SELECT channels, channel_errors FROM {db}.alerts");
    assert!(row.starts_with("telegram\temail: SMTP"), "{row}");
}

#[tokio::test]
async fn text_with_markup_characters_arrives_intact() {
    let env = Env::new().await;
    env.seed_healthy().await;
    let nasty = "answer <html><b>502</b> & retry > later";
    env.seed_run("qtickets", "error", 300, -100, nasty).await;
    env.run_ok(&[]);
    let sent = env.sandbox.sandbox().state().telegram_messages.clone();
    assert_eq!(sent.len(), 1, "Telegram accepted the HTML");
    assert!(
        sent[0]
            .text
            .contains("answer &lt;html&gt;&lt;b&gt;502&lt;/b&gt; &amp; retry &gt; later"),
        "{}",
        sent[0].text
    );
    assert_eq!(sent[0].parse_mode.as_deref(), Some("HTML"));
    let mails = env.smtp.messages();
    assert!(mails[0].contains(nasty), "{}", mails[0]);
}

#[tokio::test]
async fn unit_failed_alerts_at_once_with_the_same_deduplication() {
    let env = Env::new().await;
    let monitor = [
        ("MONITOR_SERVICE_RESULT", "exit-code"),
        ("MONITOR_EXIT_CODE", "exited"),
        ("MONITOR_EXIT_STATUS", "78"),
    ];
    let out = env.run(&["--unit-failed", "qtickets.service"], &monitor);
    assert!(out.status.success(), "{}", stderr(&out));
    let sent = env.telegram();
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].contains("qtickets.service failed")
            && sent[0].contains("result exit-code, exited 78"),
        "{sent:?}"
    );
    let again = env.run(&["--unit-failed", "qtickets.service"], &monitor);
    assert!(again.status.success());
    assert_eq!(env.telegram().len(), 1, "within the cooldown: not again");
    assert_eq!(
        env.query("SELECT fingerprint, job, state FROM {db}.alerts"),
        "failed_run:qtickets\tqtickets\tfiring\n"
    );
}

#[tokio::test]
async fn dry_run_prints_and_sends_nothing() {
    let env = Env::new().await;
    env.seed_healthy().await;
    env.seed_run("qtickets", "error", 300, -100, "boom").await;
    let out = env.run_ok(&["--dry-run"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("would send FIRING [critical] qtickets failed"),
        "{stdout}"
    );
    assert!(env.telegram().is_empty());
    assert_eq!(env.query("SELECT count() FROM {db}.alerts").trim(), "0");
}

#[tokio::test]
async fn half_configured_channels_fail_with_one_line() {
    let env = Env::new().await;
    let out = env.run(&[], &[("TELEGRAM_CHAT_ID", "")]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("set both `TELEGRAM_BOT_TOKEN` and `TELEGRAM_CHAT_ID`"),
        "{err}"
    );
    assert!(!err.contains("sandbox-token"));
}
