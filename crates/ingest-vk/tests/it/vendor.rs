//! What the real VK Ads does that a naive loader gets wrong: banners deleted between runs,
//! two kinds of goals, integers and booleans as strings.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::Env;
use zakaz_core::testing::JobUnderTest;

#[test]
fn a_rerun_after_vk_deleted_banners_leaves_exactly_the_second_runs_totals() {
    let env = Env::new();
    env.run_ok(&[]);
    let first = env.loaded(None);
    // Half the banners are deleted: gone from the listing, unknown to the statistics.
    env.shape(json!({"vk_banners_kept_percent": 50}));
    env.run_ok(&[]);
    let twin = env.twin();
    let token = twin.token(None);
    let expected = twin.expected(&token, "2026-11-21", "2026-11-24");
    assert!(
        !expected.is_empty() && expected != first,
        "the vendor dropped banners"
    );
    assert_eq!(
        env.loaded(None),
        expected,
        "exactly the second run's totals"
    );
}

/// Per date: (`base.goals`, `base.vk.goals`) summed over every banner, from the twin's API.
fn goals_per_date(env: &Env) -> BTreeMap<String, (u64, u64)> {
    let twin = env.twin();
    let token = twin.token(None);
    let ids: Vec<String> = twin
        .all(&token, "banners.json", "id")
        .iter()
        .map(|b| b["id"].to_string())
        .collect();
    let stats = twin.get(
        &token,
        &format!(
            "statistics/banners/day.json?id={}&date_from=2026-11-21&date_to=2026-11-24&metrics=base",
            ids.join(",")
        ),
    );
    let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for item in stats["items"].as_array().unwrap() {
        for row in item["rows"].as_array().unwrap() {
            let e = out
                .entry(row["date"].as_str().unwrap().to_owned())
                .or_default();
            e.0 += row["base"]["goals"].as_u64().unwrap();
            e.1 += row["base"]["vk"]["goals"].as_u64().unwrap();
        }
    }
    out
}

#[test]
fn both_goal_counts_are_kept_and_v_marketing_daily_counts_the_vk_pixels() {
    let env = Env::new();
    env.run_ok(&[]);
    let expected = goals_per_date(&env);
    assert!(
        expected.values().any(|(goals, vk)| goals != vk),
        "the two counts differ: {expected:?}"
    );
    let loaded: BTreeMap<String, (u64, u64)> = env
        .query("SELECT stat_date, sum(goals), sum(vk_goals) FROM {db}.fact_vk_ads_daily FINAL GROUP BY stat_date ORDER BY stat_date")
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_owned(), (f[1].parse().unwrap(), f[2].parse().unwrap()))
        })
        .collect();
    assert_eq!(loaded, expected);
    let conversions =
        env.query("SELECT sum(conversions) FROM {db}.v_marketing_daily WHERE source = 'vk'");
    let pixels: u64 = expected.values().map(|(_, vk)| vk).sum();
    assert_eq!(conversions, format!("{pixels}\n"));
}

#[test]
fn integers_and_booleans_as_strings_load_the_same_numbers_and_tags() {
    let env = Env::new();
    env.run_ok(&[]);
    let table = "SELECT stat_date, ad_plan_id, ad_group_id, banner_id, shows, clicks, goals, vk_goals, spent, \
                 utm_source, utm_medium, utm_campaign, utm_content, city \
                 FROM {db}.fact_vk_ads_daily FINAL ORDER BY stat_date, banner_id";
    let as_numbers = env.query(table);
    assert!(
        as_numbers.contains("\tvk_ads\tcpc\t"),
        "auto-tagged groups: {as_numbers}"
    );
    // The same data with every integer and boolean a string, into a fresh database.
    let strings = Env::new();
    strings.shape(json!({"vk_strings": true}));
    let page: Value = {
        let twin = strings.twin();
        let token = twin.token(None);
        twin.get(&token, "ad_groups.json?fields=id,enable_utm&limit=1")
    };
    assert!(
        page["items"][0]["id"].is_string() && page["items"][0]["enable_utm"].is_string(),
        "{page}"
    );
    strings.run_ok(&[]);
    assert_eq!(strings.query(table), as_numbers);
}

#[test]
fn deleted_banners_whose_statistics_vk_keeps_keep_their_spend() {
    let env = Env::new();
    env.run_ok(&[]);
    let first = env.loaded(None);
    // Half the banners are deleted this morning; VK still has their statistics.
    env.shape(json!({"vk_banners_kept_percent": 50, "vk_deleted_keep_stats": true}));
    let out = env.run_ok(&[]);
    assert_eq!(env.loaded(None), first, "yesterday's spend stays");
    let run = env.query(
        "SELECT visitParamExtractUInt(metrics, 'warnings'), visitParamExtractUInt(metrics, 'banners') \
         FROM {db}.meta_job_runs WHERE job = 'vk_ads' ORDER BY started_at DESC, run_id LIMIT 1",
    );
    assert!(
        run.starts_with("0\t"),
        "no warning for a deleted banner: {run} {}",
        crate::stderr(&out)
    );
}

#[test]
fn an_answer_without_its_items_writes_nothing_and_fails() {
    let env = Env::new();
    env.run_ok(&[]);
    let first = env.loaded(None);
    env.control(
        "/faults",
        json!({"route": "/vk/api/v2/statistics/banners/day.json", "status": 200, "body": {"ok": true}}),
    );
    let out = env.run(&[], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", crate::stderr(&out));
    assert!(
        crate::stderr(&out).contains("without `items`"),
        "{}",
        crate::stderr(&out)
    );
    assert_eq!(env.loaded(None), first, "nothing zeroed");
}
