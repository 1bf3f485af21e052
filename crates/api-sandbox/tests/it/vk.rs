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
    let access = json_of(sb.vk_token())["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
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
        assert!(items.iter().all(|b| {
            b["urls"]["primary"]["url"]
                .as_str()
                .unwrap()
                .contains("utm_source=vk")
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
    assert_eq!(json_of(unknown)["error"]["code"], "ERR_WRONG_ADPLANS");
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
fn daily_limit_exhausted_answers_429_with_headers() {
    let sb = Sb::new();
    let access = json_of(sb.vk_token())["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
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
