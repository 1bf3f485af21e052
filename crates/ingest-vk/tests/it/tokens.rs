//! The token lifecycle against the sandbox's 5-token limit: stored and reused, refreshed
//! when expired or about to expire, the limit recovered, fatal answers exit 78, and two runs
//! at once share one token.

use serde_json::json;

use crate::{Env, NOW, stderr};
use zakaz_core::testing::{JobUnderTest, wait_until, waits_for_a_lock};

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
    // The first run's token request is held by the sandbox until the second run is waiting
    // for the token file's lock: the two surely meet there, however the machine schedules
    // them (without the lock the second would ask for a token of its own).
    env.control(
        "/faults",
        json!({"route": "/vk/api/v2/oauth2/token.json", "hold": true, "count": 1}),
    );
    let first = env.command(&["--days", "1"]).spawn().unwrap();
    wait_until("the first run asks for a token", || {
        env.token_requests("client_credentials") == 1
    });
    let second = env.command(&["--days", "1"]).spawn().unwrap();
    let second_pid = second.id();
    wait_until(
        "the second run waits for the lock or asks for a token",
        || waits_for_a_lock(second_pid) || env.token_requests("client_credentials") > 1,
    );
    env.control("/release", json!({}));
    for child in [first, second] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
    }
    assert_eq!(env.token_requests("client_credentials"), 1);
    let file = std::fs::read_to_string(env.state.path.join("vk_ads_tokens.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&file).unwrap();
    assert_eq!(parsed["tokens"].as_object().unwrap().len(), 1, "{file}");
}

#[test]
fn a_redirect_of_the_token_request_is_never_followed() {
    let env = Env::new();
    // Another origin, which must never hear from the loader.
    let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    elsewhere.set_nonblocking(true).unwrap();
    let location = format!("http://{}/steal", elsewhere.local_addr().unwrap());
    env.control(
        "/faults",
        json!({"route": "/vk/api/v2/oauth2/token.json", "status": 307, "headers": {"Location": location}}),
    );
    let out = env.run(&["--days", "1"], &[]);
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("answered HTTP 307 redirecting to 127.0.0.1:")
            && err.contains("/steal: not followed"),
        "{err}"
    );
    assert!(!err.contains("sandbox-secret"), "{err}");
    assert!(
        matches!(elsewhere.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the redirect target got a connection"
    );
}

#[test]
fn a_base_url_with_credentials_is_refused_naming_the_setting() {
    let env = Env::new();
    let url = env
        .sandbox
        .base_url
        .replace("http://", "http://user:pw-in-url@");
    let out = env.run(
        &["--days", "1"],
        &[("VK_ADS_BASE_URL", &format!("{url}/vk"))],
    );
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("VK_ADS_BASE_URL") && err.contains("carries a user name or password"),
        "{err}"
    );
    assert!(!err.contains("pw-in-url"), "{err}");
    assert!(env.requests("/vk/").is_empty(), "nothing was requested");
}

#[test]
fn state_files_left_by_root_stop_the_service_user_at_start_naming_the_fix() {
    let env = Env::new();
    // A run by hand as root leaves the token file root's (the test runs as root).
    env.run_ok(&["--days", "1"]);
    let file = env.state.path.join("vk_ads_tokens.json");
    assert!(file.exists());
    // The service's user (here `nobody`) may use the directory, not root's file.
    std::process::Command::new("chmod")
        .args(["0777"])
        .arg(&env.state.path)
        .status()
        .unwrap();
    let requests_before = env.requests("/vk/").len();
    let cmd = env.command(&["--days", "1"]);
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(ToOwned::to_owned).collect();
    let envs: Vec<_> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
        .collect();
    let out = zakaz_core::testing::clean_command("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(program)
        .args(args)
        .envs(envs)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("vk_ads_tokens.json` cannot be used by uid 65534")
            && err.contains("`chown` it to the service's user")
            && err.contains("VK_ADS_STATE_DIR"),
        "{err}"
    );
    assert_eq!(
        env.requests("/vk/").len(),
        requests_before,
        "nothing was requested"
    );
}
