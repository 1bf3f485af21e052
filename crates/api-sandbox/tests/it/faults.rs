use serde_json::{Value, json};

use crate::{Sb, json_of};

#[test]
fn qtickets_503_in_the_middle_of_paging_then_recovers() {
    let sb = Sb::new();
    sb.control(
        "/faults",
        json!({"route": "/qtickets/api/rest/v1/orders", "status": 503, "after": 2, "count": 1}),
    );
    assert_eq!(sb.qt("/orders", crate::every_order(1)).status(), 200);
    assert_eq!(sb.qt("/orders", crate::every_order(2)).status(), 200);
    let failed = sb.qt("/orders", crate::every_order(3));
    assert_eq!(failed.status(), 503);
    assert_eq!(json_of(failed)["code"], "UNKNOWN_ERROR");
    assert_eq!(
        sb.qt("/orders", crate::every_order(3)).status(),
        200,
        "count: 1 means once"
    );
}

#[test]
fn truncated_and_delayed_answers() {
    let sb = Sb::new();
    sb.control(
        "/faults",
        json!({"route": "/qtickets/api/rest/v1/events", "truncate": true, "count": 1}),
    );
    let text = sb.qt("/events", json!({})).text().unwrap();
    assert!(
        serde_json::from_str::<Value>(&text).is_err(),
        "invalid JSON"
    );
    sb.control(
        "/faults",
        json!({"route": "/qtickets/*", "delay_ms": 1500, "count": 1}),
    );
    let client = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_millis(300))
        .build()
        .unwrap();
    let timed_out = client
        .get(sb.url("/qtickets/api/rest/v1/events"))
        .bearer_auth("sandbox-token")
        .send();
    assert!(timed_out.unwrap_err().is_timeout());
}

#[test]
fn vk_429_is_vendor_shaped_with_rate_headers() {
    let sb = Sb::new();
    sb.control("/faults", json!({"route": "/vk/api/v2/oauth2/token.json", "status": 429, "headers": {"Retry-After": "3"}, "count": 1}));
    let resp = sb
        .post("/vk/api/v2/oauth2/token.json")
        .form(&[("grant_type", "client_credentials")])
        .send()
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "3");
    assert!(resp.headers().contains_key("x-ratelimit-daily-remaining"));
    assert_eq!(json_of(resp)["error"]["code"], "ERR_LIMIT_EXCEEDED");
}

#[test]
fn direct_gmail_and_telegram_faults() {
    let sb = Sb::new();
    sb.control(
        "/faults",
        json!([
            {"route": "/direct/json/v5/reports", "status": 500, "count": 1},
            {"route": "/gmail/*", "status": 429, "count": 1},
            {"route": "/telegram/*", "status": 429, "count": 1}
        ]),
    );
    let direct = sb
        .post("/direct/json/v5/reports")
        .json(&json!({}))
        .send()
        .unwrap();
    assert_eq!(direct.status(), 500);
    assert_eq!(json_of(direct)["error"]["error_code"], 1000);
    let gmail = sb.get("/gmail/gmail/v1/users/me/messages").send().unwrap();
    assert_eq!(
        json_of(gmail)["error"]["errors"][0]["reason"],
        "rateLimitExceeded"
    );
    let tg = sb
        .post("/telegram/botsandbox-token/sendMessage")
        .json(&json!({"chat_id": 1, "text": "x"}))
        .send()
        .unwrap();
    assert_eq!(json_of(tg)["parameters"]["retry_after"], 1);
}

#[test]
fn a_fraction_of_requests_fail_and_reset_clears_everything() {
    let sb = Sb::new();
    sb.control(
        "/faults",
        json!({"route": "/qtickets/api/rest/v1/events", "status": 502, "fraction": 0.5}),
    );
    let failures = (0..40)
        .filter(|_| sb.qt("/events", json!({})).status() == 502)
        .count();
    assert!((5..=35).contains(&failures), "{failures} of 40");
    sb.control("/reset", json!({}));
    assert_eq!(sb.qt("/events", json!({})).status(), 200);
    assert_eq!(sb.requests("").len(), 1, "the log starts over");
}
