//! What lands in `fact_vk_ads_daily`: exact sums, UTM and cities, re-runs, windows, partial
//! failures.

use serde_json::json;

use crate::{Env, stderr};
use zakaz_core::testing::JobUnderTest;

#[test]
fn sums_per_date_and_plan_equal_the_apis_and_a_rerun_changes_nothing() {
    let env = Env::new();
    let out = env.run_ok(&[]);
    let log = stderr(&out);
    assert!(log.contains("run finished"), "{log}");
    let twin = env.twin();
    let token = twin.token(None);
    // The default window: yesterday and the 3 days before it.
    let expected = twin.expected(&token, "2026-11-21", "2026-11-24");
    assert!(!expected.is_empty());
    assert_eq!(env.loaded(None), expected);
    // Every column but the load's own stamp (`loaded_at`, `_version`).
    let table = "SELECT stat_date, account, ad_plan_id, ad_group_id, banner_id, ad_plan_name, ad_group_name, banner_name, \
                 shows, clicks, goals, spent, utm_source, utm_medium, utm_campaign, utm_content, utm_term, city \
                 FROM {db}.fact_vk_ads_daily FINAL ORDER BY stat_date, banner_id";
    let first = env.query(table);
    env.run_ok(&[]);
    assert_eq!(env.query(table), first, "a re-run changes nothing");
    assert_eq!(env.loaded(None), expected);
    // The journal: ok, with rows per account.
    let run = env.query(
        "SELECT status, rows_processed, visitParamExtractRaw(metrics, 'rows_by_account') FROM {db}.meta_job_runs WHERE job = 'vk_ads' ORDER BY started_at DESC, run_id LIMIT 1",
    );
    let rows = env.query("SELECT count() FROM {db}.fact_vk_ads_daily FINAL");
    assert_eq!(
        run,
        format!("ok\t{}\t{{\"own\":{}}}\n", rows.trim(), rows.trim())
    );
}

#[test]
fn group_utm_reaches_the_rows_and_utm_content_names_the_city() {
    let env = Env::new();
    env.run_ok(&[]);
    let twin = env.twin();
    let token = twin.token(None);
    let groups = twin.all(&token, "ad_groups.json", "id,utm,enable_utm");
    let banners = twin.all(&token, "banners.json", "id,ad_group_id,urls");
    let mut checked_group_utm = 0;
    for b in &banners {
        let url = b["urls"]["primary"]["url"].as_str().unwrap();
        let group = groups.iter().find(|g| g["id"] == b["ad_group_id"]).unwrap();
        // The test's own merge: the URL's tags, then the enabled group's for missing keys.
        let pairs = |q: &str| -> Vec<(String, String)> {
            q.split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        };
        let mut tags = pairs(url.split_once('?').map_or("", |(_, q)| q));
        if group["enable_utm"] == true {
            // Without text of its own, the group gets VK's tags (the AdGroup doc; VK Ads
            // help lists them): `{{campaign_id}}` is the group, `{{banner_id}}` the banner.
            let text = match group["utm"].as_str().unwrap() {
                "" => format!(
                    "utm_medium=cpc&utm_source=vk_ads&utm_campaign={}&utm_content={}",
                    group["id"], b["id"]
                ),
                text => text.to_owned(),
            };
            for (k, v) in pairs(&text) {
                if !tags.iter().any(|(have, x)| *have == k && !x.is_empty()) {
                    tags.push((k, v));
                }
            }
            checked_group_utm += 1;
        }
        let tag = |k: &str| {
            tags.iter()
                .find(|(have, v)| have == k && !v.is_empty())
                .map_or("", |(_, v)| v.as_str())
                .to_owned()
        };
        let content = tag("utm_content");
        let city = match content.split('_').next().unwrap() {
            "msk" => "Москва",
            "spb" => "Санкт-Петербург",
            "ekb" => "Екатеринбург",
            "nsk" => "Новосибирск",
            "kzn" => "Казань",
            other => other,
        };
        let row = env.query(&format!(
            "SELECT DISTINCT utm_source, utm_medium, utm_campaign, utm_content, city FROM {{db}}.fact_vk_ads_daily FINAL WHERE banner_id = {}",
            b["id"]
        ));
        assert_eq!(
            row,
            format!(
                "{}\t{}\t{}\t{content}\t{city}\n",
                tag("utm_source"),
                tag("utm_medium"),
                tag("utm_campaign")
            ),
            "banner {} ({url}), group {group}",
            b["id"]
        );
    }
    assert!(
        checked_group_utm > 0,
        "some banners take their UTM from the group"
    );
    // The unknown alias is kept and counted.
    let unknown = env.query(
        "SELECT visitParamExtractUInt(metrics, 'unknown_city_aliases') > 0 FROM {db}.meta_job_runs WHERE job = 'vk_ads' AND status = 'ok'",
    );
    assert_eq!(unknown, "1\n");
}

#[test]
fn a_window_loads_exactly_its_dates_in_chunks_and_older_than_365_days_is_refused() {
    let env = Env::new();
    env.run_ok(&["--since", "2026-09-01", "--until", "2026-11-10"]);
    let twin = env.twin();
    let token = twin.token(None);
    assert_eq!(
        env.loaded(None),
        twin.expected(&token, "2026-09-01", "2026-11-10")
    );
    let stats_requests = env.requests("/vk/api/v2/statistics/").len();
    assert_eq!(stats_requests, 3, "71 days in 31-day pieces");
    let old = env.run(&["--since", "2025-11-24"], &[]);
    assert_eq!(old.status.code(), Some(78), "{}", stderr(&old));
    assert!(stderr(&old).contains("365 days"), "{}", stderr(&old));
}

#[test]
fn a_banner_vk_rejects_is_dropped_named_and_the_rest_of_its_batch_loaded() {
    let env = Env::new();
    env.control("/config", json!({"vk_ghost_banner": 99_999_999}));
    let out = env.run_ok(&[]);
    assert!(
        stderr(&out).contains("rejects banner 99999999"),
        "{}",
        stderr(&out)
    );
    let twin = env.twin();
    let token = twin.token(None);
    assert_eq!(
        env.loaded(None),
        twin.expected(&token, "2026-11-21", "2026-11-24")
    );
    let run = env.query(
        "SELECT status, visitParamExtractUInt(metrics, 'warnings'), position(message, '99999999') > 0 FROM {db}.meta_job_runs WHERE job = 'vk_ads'",
    );
    assert_eq!(run, "ok\t1\t1\n");
}

#[test]
fn a_429_with_retry_after_is_waited_out_and_the_per_second_limit_paced() {
    let env = Env::new();
    env.control(
        "/faults",
        json!({"route": "/vk/api/v2/statistics/banners/day.json", "status": 429, "headers": {"Retry-After": "1"}, "count": 1}),
    );
    // Two requests a second: the loader slows down instead of being refused.
    env.control("/config", json!({"vk_rps_limit": 2}));
    let out = env.run_ok(&[]);
    let log = stderr(&out);
    let retries: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("retrying after a temporary error"))
        .collect();
    assert_eq!(retries.len(), 1, "only the injected 429: {log}");
    assert!(
        retries[0].contains("status=429") && retries[0].contains("delay_ms=1000"),
        "{log}"
    );
    let twin = env.twin();
    let token = twin.token(None);
    assert_eq!(
        env.loaded(None),
        twin.expected(&token, "2026-11-21", "2026-11-24")
    );
}

#[test]
fn a_failing_agency_client_fails_the_run_and_the_others_are_loaded() {
    let env = Env::with(api_sandbox::SandboxConfig {
        vk_agency_clients: 2,
        ..Default::default()
    });
    let out = env.run(&[], &[("VK_ADS_AGENCY_CLIENTS", "vk-client-1,vk-client-9")]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let run = env.query("SELECT status, message FROM {db}.meta_job_runs WHERE job = 'vk_ads'");
    assert!(
        run.starts_with("error\t1 of 2 VK Ads account(s) failed: account vk-client-9"),
        "{run}"
    );
    let twin = env.twin();
    let token = twin.token(Some("vk-client-1"));
    let expected = twin.expected(&token, "2026-11-21", "2026-11-24");
    assert!(!expected.is_empty());
    assert_eq!(env.loaded(Some("vk-client-1")), expected);
    assert_eq!(env.loaded(None), expected, "nothing of the failed client");
    // Both agency clients configured: both loaded, each with its own token.
    let ok = env.run(
        &[],
        &[("VK_ADS_AGENCY_CLIENTS", "vk-client-1, vk-client-2")],
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    let two = twin.token(Some("vk-client-2"));
    assert_eq!(
        env.loaded(Some("vk-client-2")),
        twin.expected(&two, "2026-11-21", "2026-11-24")
    );
    let by_user = &env.sandbox.sandbox().state().vk_tokens;
    assert!(by_user.iter().any(|t| t.user == "vk-client-2"));
}

#[test]
fn dry_run_writes_nothing() {
    let env = Env::new();
    let out = env.run_ok(&["--dry-run"]);
    // Nor does it need ClickHouse: pointed at a port nobody listens on, it still runs.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let without = env.run(&["--dry-run"], &[("CLICKHOUSE_URL", &url)]);
    assert!(without.status.success(), "{}", stderr(&without));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("dry run, nothing written: would write 64 banner-day rows"),
        "{text}"
    );
    assert_eq!(
        env.query("SELECT count() FROM {db}.fact_vk_ads_daily"),
        "0\n"
    );
    assert_eq!(env.query("SELECT count() FROM {db}.meta_job_runs"), "0\n");
}

#[test]
fn a_used_up_daily_limit_stops_the_run_saying_when_it_resets() {
    let env = Env::new();
    // Three calls left today: the three listings; statistics would only be refused.
    env.control("/config", json!({"vk_daily_remaining": 3}));
    let out = env.run(&[], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("daily request limit is used up"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("Moscow midnight"), "{}", stderr(&out));
    assert!(
        env.requests("/vk/api/v2/statistics/").is_empty(),
        "nothing sent to be refused"
    );
    assert!(!stderr(&out).contains("retrying"), "{}", stderr(&out));
}

#[test]
fn a_load_that_fails_after_its_first_rows_were_sent_writes_none_of_them() {
    // 2 000 banners: ten statistics requests of 200, whose rows run to about 2 MB, so the
    // first requests' rows have gone to ClickHouse when a later one fails.
    let env = Env::with(api_sandbox::SandboxConfig {
        vk_campaigns: 100,
        vk_banners_per_group: 10,
        ..Default::default()
    });
    env.control(
        "/faults",
        json!({"route": "/vk/api/v2/statistics/banners/day.json", "status": 500, "after": 6}),
    );
    let err = env.run_failing(&[], &[("HTTP_MAX_ATTEMPTS", "1")], 1);
    assert!(err.contains("500"), "{err}");
    let served = env.requests("/vk/api/v2/statistics/");
    assert!(served.len() > 6, "the failure came after six answers");
    assert_eq!(
        env.query("SELECT count() FROM {db}.fact_vk_ads_daily"),
        "0\n",
        "nothing of a failed load"
    );
}
