use serde_json::{Value, json};

use crate::{Sb, json_of};

#[test]
fn five_tokens_at_most_and_delete_frees_them() {
    let sb = Sb::new();
    for _ in 0..5 {
        let t = json_of(sb.vk_token());
        assert_eq!(t["expires_in"], "86400", "a string");
        assert_eq!(t["token_type"], "bearer");
    }
    let sixth = sb.vk_token();
    assert_eq!(sixth.status(), 403);
    let deleted = sb
        .post("/vk/api/v2/oauth2/token/delete.json")
        .form(&[
            ("client_id", "sandbox-client"),
            ("client_secret", "sandbox-secret"),
        ])
        .send()
        .unwrap();
    assert!(deleted.status().is_success());
    assert_eq!(sb.vk_token().status(), 200);
}

#[test]
fn expired_tokens_get_401_and_refresh_replaces_the_access_token() {
    let sb = Sb::new();
    let t = json_of(sb.vk_token());
    let access = t["access_token"].as_str().unwrap().to_owned();
    let call = |tok: &str| {
        sb.get("/vk/api/v2/ad_plans.json")
            .bearer_auth(tok)
            .send()
            .unwrap()
    };
    assert_eq!(call(&access).status(), 200);
    sb.control("/vk/expire", json!({}));
    let resp = call(&access);
    assert_eq!(resp.status(), 401);
    let www = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(www.contains("error=\"expired_token\""), "{www}");
    assert_eq!(json_of(resp)["code"], "expired_token");

    let refreshed = json_of(
        sb.post("/vk/api/v2/oauth2/token.json")
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", t["refresh_token"].as_str().unwrap()),
                ("client_id", "sandbox-client"),
                ("client_secret", "sandbox-secret"),
            ])
            .send()
            .unwrap(),
    );
    let new_access = refreshed["access_token"].as_str().unwrap();
    assert_ne!(new_access, access);
    assert_eq!(call(new_access).status(), 200);
    assert_eq!(
        json_of(call(&access))["code"],
        "invalid_token",
        "the old access token is dead"
    );
    let bad_client = sb
        .post("/vk/api/v2/oauth2/token.json")
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "x"),
            ("client_secret", "y"),
        ])
        .send()
        .unwrap();
    assert_eq!(bad_client.status(), 401);
}

#[test]
fn listings_page_by_offset_and_stats_keep_vendor_types() {
    let sb = Sb::new();
    let access = sb.vk_access();
    let get = |path: &str| sb.get(path).bearer_auth(&access).send().unwrap();
    let resp = get("/vk/api/v2/banners.json?fields=id,name,urls&limit=5&offset=0");
    for h in [
        "x-ratelimit-rps-limit",
        "x-ratelimit-hourly-remaining",
        "x-ratelimit-daily-remaining",
    ] {
        assert!(resp.headers().contains_key(h), "{h}");
    }
    let first = json_of(resp);
    let count = first["count"].as_u64().unwrap() as usize;
    assert_eq!(count, 4 * 2 * 2);
    let mut seen = 0;
    let mut offset = 0;
    while offset < count {
        let page = json_of(get(&format!(
            "/vk/api/v2/banners.json?fields=id,urls&limit=5&offset={offset}"
        )));
        let items = page["items"].as_array().unwrap();
        assert_eq!(page["limit"], 5, "the answer says its limit");
        assert!(items.iter().all(|b| {
            b["urls"]["primary"]["url"]
                .as_str()
                .unwrap()
                .contains("utm_content=")
        }));
        seen += items.len();
        offset += 5;
    }
    assert_eq!(seen, count);

    let stats = json_of(get(
        "/vk/api/v2/statistics/ad_plans/day.json?id=2001,2002&date_from=2026-11-20&date_to=2026-11-24&metrics=base",
    ));
    let items = stats["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let rows = items[0]["rows"].as_array().unwrap();
    assert_eq!(
        rows.len(),
        5,
        "date_to is inclusive; zero days still have rows"
    );
    let base = &rows[0]["base"];
    assert!(
        base["spent"].is_string() && base["cpc"].is_string(),
        "money as strings"
    );
    assert!(base["shows"].is_u64() && base["clicks"].is_u64());
    // The plan total is the sum of its banners.
    let banner_ids: Vec<String> = (0..2)
        .flat_map(|g| (0..2).map(move |b| (20010 + g) * 100 + b))
        .map(|i: u64| i.to_string())
        .collect();
    let banners = json_of(get(&format!(
        "/vk/api/v2/statistics/banners/day.json?id={}&date_from=2026-11-20&date_to=2026-11-20",
        banner_ids.join(",")
    )));
    let banner_shows: u64 = banners["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["rows"][0]["base"]["shows"].as_u64().unwrap())
        .sum();
    assert_eq!(banner_shows, base["shows"].as_u64().unwrap());

    let unknown = get(
        "/vk/api/v2/statistics/ad_plans/day.json?id=2001,999&date_from=2026-11-20&date_to=2026-11-20",
    );
    assert_eq!(unknown.status(), 400);
    assert_eq!(json_of(unknown)["error"]["code"], "ERR_WRONG_CAMPAIGNS");
    let too_many: Vec<String> = (0..201).map(|i| i.to_string()).collect();
    assert_eq!(
        get(&format!(
            "/vk/api/v2/statistics/banners/day.json?id={}&date_from=2026-11-20&date_to=2026-11-20",
            too_many.join(",")
        ))
        .status(),
        400
    );
}

#[test]
fn groups_carry_utm_that_banners_inherit_and_listings_cap_the_limit() {
    let sb = Sb::new();
    let access = sb.vk_access();
    let get = |path: &str| json_of(sb.get(path).bearer_auth(&access).send().unwrap());
    let groups = get("/vk/api/v2/ad_groups.json?fields=id,utm,enable_utm&limit=100");
    assert_eq!(groups["limit"], 50, "limit is at most 50");
    let items = groups["items"].as_array().unwrap();
    let with = items.iter().filter(|g| g["enable_utm"] == true).count();
    let off_with_text = items
        .iter()
        .filter(|g| g["enable_utm"] == false && g["utm"] != "")
        .count();
    let without = items.iter().filter(|g| g["utm"] == "").count();
    assert!(with > 0 && off_with_text > 0 && without > 0, "{groups}");
    // Without `fields`, only the id comes back.
    let bare = get("/vk/api/v2/ad_groups.json?limit=1");
    assert!(bare["items"][0].get("utm").is_none(), "{bare}");
    // A banner of a UTM group carries only some tags in its URL; the group adds the rest.
    let data = &sb.server.sandbox().data.vk;
    let group = data.groups.iter().find(|g| g.enable_utm).unwrap();
    let banner = data
        .banners
        .iter()
        .find(|b| b.group_id == group.id)
        .unwrap();
    assert!(!banner.url.contains("utm_source"), "{}", banner.url);
    assert!(group.utm.contains("utm_source=vk"), "{}", group.utm);
}

#[test]
fn statistics_reach_365_days_and_name_errors_as_documented() {
    let sb = Sb::new();
    let access = sb.vk_access();
    let get = |path: &str| sb.get(path).bearer_auth(&access).send().unwrap();
    // The sandbox's today is 2026-11-25.
    let ok = get(
        "/vk/api/v2/statistics/banners/day.json?id=2001000&date_from=2025-11-25&date_to=2025-11-25",
    );
    assert_eq!(ok.status(), 200);
    let old = get(
        "/vk/api/v2/statistics/banners/day.json?id=2001000&date_from=2025-11-24&date_to=2025-11-25",
    );
    assert_eq!(old.status(), 400);
    assert_eq!(json_of(old)["error"]["code"], "ERR_WRONG_DATE");
    let unknown = get(
        "/vk/api/v2/statistics/banners/day.json?id=2001000,42&date_from=2026-11-20&date_to=2026-11-20",
    );
    assert_eq!(json_of(unknown)["error"]["code"], "ERR_WRONG_BANNERS");
    let kind = get(
        "/vk/api/v2/statistics/campaigns/day.json?id=1&date_from=2026-11-20&date_to=2026-11-20",
    );
    assert_eq!(kind.status(), 404);
    assert_eq!(json_of(kind)["error"]["code"], "ERR_WRONG_RESOURCE");
    // The Russian docs' name for an unknown plan, switchable.
    sb.control("/config", json!({"vk_plans_error": "ERR_WRONG_ADPLANS"}));
    let plan =
        get("/vk/api/v2/statistics/ad_plans/day.json?id=1&date_from=2026-11-20&date_to=2026-11-20");
    assert_eq!(json_of(plan)["error"]["code"], "ERR_WRONG_ADPLANS");
}

#[test]
fn more_than_the_per_second_limit_gets_429_with_retry_after() {
    let sb = Sb::new();
    let access = sb.vk_access();
    // Two requests per window, the window stretched to a minute so that no request of this
    // test falls into the next one however slow the machine: two answers, then refusals.
    sb.control(
        "/config",
        json!({"vk_rps_limit": 2, "vk_rps_window_ms": 60_000}),
    );
    let statuses: Vec<(u16, Option<String>, String)> = (0..4)
        .map(|_| {
            let r = sb
                .get("/vk/api/v2/ad_plans.json")
                .bearer_auth(&access)
                .send()
                .unwrap();
            let h = |n: &str| r.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
            (
                r.status().as_u16(),
                h("retry-after"),
                h("x-ratelimit-rps-remaining").unwrap(),
            )
        })
        .collect();
    let codes: Vec<u16> = statuses.iter().map(|s| s.0).collect();
    assert_eq!(codes, [200, 200, 429, 429], "{statuses:?}");
    let refused: Vec<_> = statuses.iter().filter(|s| s.0 == 429).collect();
    assert!(
        refused
            .iter()
            .all(|s| s.1.as_deref() == Some("1") && s.2 == "0"),
        "{statuses:?}"
    );
}

#[test]
fn agency_clients_have_their_own_tokens_and_plans_and_tokens_expire_after_a_day() {
    let sb = Sb::with(api_sandbox::SandboxConfig {
        now: Some(crate::NOW.into()),
        vk_agency_clients: 2,
        ..Default::default()
    });
    sb.control("/config", json!({"vk_rps_limit": 1000}));
    let agency = |name: &str| {
        sb.post("/vk/api/v2/oauth2/token.json")
            .form(&[
                ("grant_type", "agency_client_credentials"),
                ("client_id", "sandbox-client"),
                ("client_secret", "sandbox-secret"),
                ("agency_client_name", name),
            ])
            .send()
            .unwrap()
    };
    let one = json_of(agency("vk-client-1"))["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let two = json_of(agency("vk-client-2"))["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(agency("nobody").status(), 400);
    let plans = |tok: &str| {
        json_of(
            sb.get("/vk/api/v2/ad_plans.json")
                .bearer_auth(tok)
                .send()
                .unwrap(),
        )["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    let (p1, p2) = (plans(&one), plans(&two));
    assert!(!p1.is_empty() && !p2.is_empty() && p1.iter().all(|p| !p2.contains(p)));
    // Five tokens per user: the others' do not count.
    for _ in 0..4 {
        assert_eq!(agency("vk-client-1").status(), 200);
    }
    assert_eq!(agency("vk-client-1").status(), 403);
    assert_eq!(agency("vk-client-2").status(), 200);
    // A day later on the sandbox clock, the tokens are expired.
    sb.control("/advance", json!({"hours": 24}));
    let resp = sb
        .get("/vk/api/v2/ad_plans.json")
        .bearer_auth(&two)
        .send()
        .unwrap();
    assert_eq!(json_of(resp)["code"], "expired_token");
    sb.control("/vk/revoke", json!({}));
    let resp = sb
        .get("/vk/api/v2/ad_plans.json")
        .bearer_auth(&two)
        .send()
        .unwrap();
    assert_eq!(json_of(resp)["code"], "revoked_token");
}

#[test]
fn the_request_log_masks_secrets_in_form_bodies() {
    let sb = Sb::new();
    let t = json_of(sb.vk_token());
    sb.post("/vk/api/v2/oauth2/token.json")
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
            ("client_id", "sandbox-client"),
            ("client_secret", "sandbox-secret"),
        ])
        .send()
        .unwrap();
    let log = serde_json::to_string(&sb.requests("/vk/")).unwrap();
    assert!(!log.contains("sandbox-secret"), "{log}");
    assert!(!log.contains(t["refresh_token"].as_str().unwrap()), "{log}");
    assert!(
        log.contains("client_secret=***") && log.contains("client_id=sandbox-client"),
        "{log}"
    );
}

#[test]
fn daily_limit_exhausted_answers_429_with_headers() {
    let sb = Sb::new();
    let access = sb.vk_access();
    sb.control("/config", json!({"vk_daily_remaining": 0}));
    let resp = sb
        .get("/vk/api/v2/ad_plans.json")
        .bearer_auth(&access)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["x-ratelimit-daily-remaining"], "0");
    let body: Value = resp.json().unwrap();
    assert_eq!(body["error"]["code"], "ERR_LIMIT_EXCEEDED");
}
