//! The token lifecycle against the sandbox's 5-token limit: stored and reused, refreshed
//! when expired or about to expire, the limit recovered, fatal answers exit 78, and two runs
//! at once share one token.

use serde_json::json;

use crate::{Env, NOW, stderr};
use zakaz_core::testing::JobUnderTest;

#[test]
fn one_token_serves_every_run_and_the_count_stays_at_most_five() {
    let env = Env::new();
    env.run_ok(&[]);
    env.run_ok(&[]);
    assert_eq!(
        env.token_requests("client_credentials"),
        1,
        "the second run mints no token"
    );
    for _ in 0..8 {
        env.run_ok(&["--days", "1"]);
    }
    assert_eq!(env.token_requests("client_credentials"), 1);
    assert!(env.live_tokens() <= 5);
    let file = env.state.path.join("vk_ads_tokens.json");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    // Nothing secret leaked into the log or a URL.
    let log = serde_json::to_string(&env.requests("/vk/")).unwrap();
    assert!(!log.contains("sandbox-secret"), "{log}");
}

#[test]
fn an_expired_token_is_refreshed_and_one_about_to_expire_refreshed_first() {
    let env = Env::new();
    env.run_ok(&["--days", "1"]);
    env.control("/vk/expire", json!({}));
    let out = env.run_ok(&["--days", "1"]);
    assert!(
        stderr(&out).contains("refreshed the VK Ads access token"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.token_requests("refresh_token"), 1);
    // 23.5 hours later the token has half an hour left: refreshed before any call fails.
    env.control("/advance", json!({"minutes": 23 * 60 + 30}));
    let later = chrono::DateTime::parse_from_rfc3339(NOW).unwrap()
        + chrono::Duration::minutes(23 * 60 + 30);
    let before = env.requests("/vk/api/v2/ad_plans.json").len();
    env.command_at(&["--days", "1"], &later.to_rfc3339())
        .output()
        .map(|o| assert!(o.status.success(), "{}", stderr(&o)))
        .unwrap();
    assert_eq!(env.token_requests("refresh_token"), 2);
    assert_eq!(
        env.requests("/vk/api/v2/ad_plans.json").len(),
        before + 1,
        "no call was refused first"
    );
    assert_eq!(env.token_requests("client_credentials"), 1);
}

#[test]
fn at_the_token_limit_the_clients_tokens_are_deleted_and_one_more_asked() {
    let env = Env::new();
    // Five live tokens the loader does not know (a lost state file).
    let twin_url = format!("{}/vk/api/v2/oauth2/token.json", env.sandbox.base_url);
    for _ in 0..5 {
        let r = reqwest::blocking::Client::new()
            .post(&twin_url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "sandbox-client"),
                ("client_secret", "sandbox-secret"),
            ])
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let out = env.run_ok(&["--days", "1"]);
    assert!(
        stderr(&out).contains("deleting them and asking once more"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.requests("/vk/api/v2/oauth2/token/delete.json").len(), 1);
    assert_eq!(env.live_tokens(), 1);
    let recovered = env.query(
        "SELECT visitParamExtractUInt(metrics, 'token_limit_recoveries') FROM {db}.meta_job_runs WHERE job = 'vk_ads' AND status = 'ok'",
    );
    assert_eq!(recovered, "1\n");
}

#[test]
fn a_bad_client_or_a_revoked_token_exits_78_naming_the_settings() {
    let env = Env::new();
    let bad = env.run(&[], &[("VK_ADS_CLIENT_SECRET", "wrong-secret-value")]);
    assert_eq!(bad.status.code(), Some(78), "{}", stderr(&bad));
    let text = stderr(&bad);
    assert!(
        text.contains("`VK_ADS_CLIENT_ID` and `VK_ADS_CLIENT_SECRET`"),
        "{text}"
    );
    assert!(!text.contains("wrong-secret-value"), "{text}");
    env.run_ok(&["--days", "1"]);
    env.control("/vk/revoke", json!({}));
    let revoked = env.run(&["--days", "1"], &[]);
    assert_eq!(revoked.status.code(), Some(78), "{}", stderr(&revoked));
    assert!(
        stderr(&revoked).contains("revoked_token"),
        "{}",
        stderr(&revoked)
    );
    let runs = env.query(
        "SELECT status, count() FROM {db}.meta_job_runs WHERE job = 'vk_ads' GROUP BY status ORDER BY status",
    );
    assert_eq!(runs, "error\t2\nok\t1\n");
}

#[test]
fn two_runs_at_once_share_one_token() {
    let env = Env::new();
    // The first token request takes half a second: the first run holds the token file's lock
    // that long, so the two runs surely meet there (without the lock both would mint).
    env.control(
        "/faults",
        json!({"route": "/vk/api/v2/oauth2/token.json", "delay_ms": 500, "count": 1}),
    );
    let children: Vec<_> = (0..2)
        .map(|_| env.command(&["--days", "1"]).spawn().unwrap())
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
    }
    assert_eq!(env.token_requests("client_credentials"), 1);
    let file = std::fs::read_to_string(env.state.path.join("vk_ads_tokens.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&file).unwrap();
    assert_eq!(parsed["tokens"].as_object().unwrap().len(), 1, "{file}");
}
