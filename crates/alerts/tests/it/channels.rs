//! What the channels' far ends do: a Telegram group that became a supergroup, a bot token or
//! an SMTP login they refuse.

use serde_json::json;

use crate::{Env, Smtp, stderr};
use zakaz_core::testing::JobUnderTest;

/// The supergroup the test's group (`TELEGRAM_CHAT_ID=-100123`) becomes.
const SUPERGROUP: i64 = -1_009_876_543_210;

#[tokio::test]
async fn a_group_that_became_a_supergroup_gets_the_alert_and_the_operator_is_told() {
    let env = Env::new().await;
    env.seed_healthy().await;
    env.seed_run("qtickets", "error", 300, -100, "boom").await;
    sandbox_config(
        &env,
        json!({"telegram_migrate": {"chat_id": "-100123", "to": SUPERGROUP}}),
    );
    let out = env.run_ok(&[]);
    let sent = env.sandbox.sandbox().state().telegram_messages.clone();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].chat_id, json!(SUPERGROUP));
    let advice = format!("set TELEGRAM_CHAT_ID={SUPERGROUP}");
    assert!(
        sent[0].text.contains(&advice) && sent[0].text.contains("FIRING qtickets failed"),
        "{}",
        sent[0].text
    );
    assert!(stderr(&out).contains(&advice), "{}", stderr(&out));
    let journal = env.query("SELECT status, message FROM {db}.meta_job_runs WHERE job = 'alerts'");
    assert!(
        journal.starts_with("ok\t") && journal.contains(&advice),
        "{journal}"
    );

    // The next run goes to the supergroup at once (the state directory remembers), and still
    // says the setting is out of date.
    env.seed_run("vk_ads", "error", 200, -100, "vk down").await;
    let before = sendmessage_requests(&env);
    env.run_ok(&[]);
    let sent = env.sandbox.sandbox().state().telegram_messages.clone();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[1].chat_id, json!(SUPERGROUP));
    assert!(sent[1].text.contains(&advice), "{}", sent[1].text);
    assert_eq!(sendmessage_requests(&env) - before, 1, "no 400 first");
}

#[tokio::test]
async fn a_rejected_bot_token_exits_78_naming_it_and_mail_still_goes_out() {
    let env = Env::new().await;
    env.seed_healthy().await;
    env.seed_run("qtickets", "error", 300, -100, "boom").await;
    let secret = "123456:wrong-token-abcdef";
    let out = env.run(&[], &[("TELEGRAM_BOT_TOKEN", secret)]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("Telegram rejected the bot token (HTTP 401")
            && err.contains("`TELEGRAM_BOT_TOKEN`"),
        "{err}"
    );
    assert!(!err.contains(secret), "{err}");
    assert_eq!(env.smtp.messages().len(), 1, "e-mail still goes out");
    let journal = env.query("SELECT status FROM {db}.meta_job_runs WHERE job = 'alerts'");
    assert_eq!(journal, "error\n");
    // The sandbox's request log shows no token in a path.
    let log = env.sandbox.sandbox().state().log.clone();
    assert!(
        log.iter()
            .filter(|r| r["path"].as_str().unwrap().starts_with("/telegram/"))
            .all(|r| r["path"] == "/telegram/bot***/sendMessage"),
        "{log:?}"
    );
}

#[tokio::test]
async fn a_refused_smtp_login_exits_78_naming_the_settings() {
    let env = Env::new().await;
    env.seed_healthy().await;
    env.seed_run("qtickets", "error", 300, -100, "boom").await;
    let smtp = Smtp::with_login("duty", "right-password");
    let port = smtp.port.to_string();
    let out = env.run(
        &[],
        &[
            ("SMTP_PORT", port.as_str()),
            ("SMTP_USER", "duty"),
            ("SMTP_PASSWORD", "wrong-password"),
        ],
    );
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("the SMTP server refused the login") && err.contains("`SMTP_PASSWORD`"),
        "{err}"
    );
    assert!(!err.contains("wrong-password"), "{err}");
    assert_eq!(env.telegram().len(), 1, "Telegram still gets it");
    assert!(smtp.messages().is_empty());
    // With the right password the same server takes the mail.
    let ok = env.run(
        &["--unit-failed", "vk_ads.service"],
        &[
            ("SMTP_PORT", port.as_str()),
            ("SMTP_USER", "duty"),
            ("SMTP_PASSWORD", "right-password"),
        ],
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_eq!(smtp.messages().len(), 1);
}

#[tokio::test]
async fn a_dry_run_on_a_database_without_the_schema_says_to_migrate() {
    let env = Env::new().await;
    let empty = zakaz_core::testing::TestDb::empty();
    let out = env.run(&["--dry-run"], &[("CLICKHOUSE_DB", empty.name.as_str())]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("run `manage-timers migrate` first") && err.contains(&empty.name),
        "{err}"
    );
    assert!(!err.contains("Code:"), "{err}");
}

fn sandbox_config(env: &Env, body: serde_json::Value) {
    zakaz_core::testing::sandbox_control(&env.sandbox.base_url, "/config", &body);
}

fn sendmessage_requests(env: &Env) -> usize {
    env.sandbox
        .sandbox()
        .state()
        .log
        .iter()
        .filter(|r| r["path"] == "/telegram/bot***/sendMessage")
        .count()
}

#[tokio::test]
async fn a_unit_failure_alert_and_the_periodic_check_at_once_send_it_once() {
    let env = Env::new().await;
    env.seed_healthy().await;
    env.seed_run("qtickets", "error", 300, -100, "boom").await;
    // The unit-failure alert's message is held by Telegram until the periodic check is
    // waiting for its turn: the two meet there, however the machine schedules them.
    zakaz_core::testing::sandbox_control(
        &env.sandbox.base_url,
        "/faults",
        &json!({"route": "/telegram/*", "hold": true, "count": 1}),
    );
    let monitor = [("MONITOR_SERVICE_RESULT", "exit-code")];
    let mut unit_failed = env.command(&["--unit-failed", "qtickets.service"]);
    for (k, v) in monitor {
        unit_failed.env(k, v);
    }
    let first = unit_failed.spawn().unwrap();
    zakaz_core::testing::wait_until("the failure alert reaches Telegram", || {
        sendmessage_requests(&env) == 1
    });
    let periodic = env.command(&[]).spawn().unwrap();
    let periodic_pid = periodic.id();
    zakaz_core::testing::wait_until("the periodic check waits or sends", || {
        zakaz_core::testing::waits_for_a_lock(periodic_pid) || sendmessage_requests(&env) > 1
    });
    zakaz_core::testing::sandbox_control(&env.sandbox.base_url, "/release", &json!({}));
    for child in [first, periodic] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let sent = env.telegram();
    assert_eq!(sent.len(), 1, "one alert for one failure: {sent:?}");
    let firing = env.query("SELECT count() FROM {db}.alerts WHERE fingerprint = 'failed_run:qtickets' AND state = 'firing'");
    assert_eq!(firing, "1\n");
}

#[tokio::test]
async fn alerts_are_in_russian_unless_told_otherwise() {
    let env = Env::new().await;
    for job in ["qtickets", "vk_ads", "direct"] {
        env.seed_run(job, "ok", 600, -300, "fine").await;
    }
    env.seed_fresh("qtickets", 0).await;
    env.seed_fresh("direct", 1).await;
    env.seed_fresh("vk_ads", 5).await;
    env.seed_run("qtickets", "error", 300, -100, "QTickets answered HTTP 503")
        .await;
    // The default: the binary as installed, without `ALERTS_LANGUAGE`.
    let mut cmd = env.command(&[]);
    cmd.env_remove("ALERTS_LANGUAGE");
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let sent = env.telegram();
    assert!(
        sent.iter().any(|t| t.contains("ТРЕВОГА qtickets: запуск завершился ошибкой")
            && t.contains("неудачных запусков с последней проверки: 1; последняя ошибка: QTickets answered HTTP 503")),
        "{sent:?}"
    );
    assert!(
        sent.iter()
            .any(|t| t.contains("данные vk_ads устарели") && t.contains("отстаёт на 5 дн.")),
        "{sent:?}"
    );
    let mails = env.smtp.messages();
    assert!(
        mails
            .iter()
            .any(|m| m.contains("ТРЕВОГА") && m.contains("(критично)")),
        "{mails:?}"
    );
    // The record keeps what was sent.
    let titles = env.query("SELECT title FROM {db}.alerts ORDER BY title");
    assert!(
        titles.contains("qtickets: запуск завершился ошибкой"),
        "{titles}"
    );
}

#[tokio::test]
async fn a_chat_telegram_cannot_deliver_to_exits_78_naming_the_setting() {
    for (status, what) in [(400, "chat not found"), (403, "bot was blocked")] {
        let env = Env::new().await;
        env.seed_healthy().await;
        env.seed_run("qtickets", "error", 300, -100, "boom").await;
        zakaz_core::testing::sandbox_control(
            &env.sandbox.base_url,
            "/faults",
            &json!({"route": "/telegram/*", "status": status}),
        );
        let out = env.run(&[], &[]);
        assert_eq!(out.status.code(), Some(78), "{what}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("`TELEGRAM_CHAT_ID`"),
            "{what}: {}",
            stderr(&out)
        );
        assert_eq!(
            env.smtp.messages().len(),
            1,
            "{what}: e-mail still goes out"
        );
    }
}
