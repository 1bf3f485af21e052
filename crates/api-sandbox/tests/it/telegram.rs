use serde_json::{Value, json};

use crate::{Sb, json_of};

fn send(sb: &Sb, token: &str, text: &str) -> reqwest::blocking::Response {
    sb.post(&format!("/telegram/bot{token}/sendMessage"))
        .json(&json!({"chat_id": -100123, "text": text, "parse_mode": "HTML", "link_preview_options": {"is_disabled": true}}))
        .send()
        .unwrap()
}

#[test]
fn messages_are_accepted_and_recorded() {
    let sb = Sb::new();
    let ok = json_of(send(
        &sb,
        "sandbox-token",
        "<b>qtickets</b> failed: a &lt; b &amp; c",
    ));
    assert_eq!(ok["ok"], true);
    assert_eq!(ok["result"]["message_id"], 1);
    let sent: Vec<Value> = sb
        .get("/_sandbox/telegram/messages")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(sent[0]["text"], "<b>qtickets</b> failed: a &lt; b &amp; c");
}

#[test]
fn unescaped_html_long_text_and_bad_token_are_refused() {
    let sb = Sb::new();
    let bad = json_of(send(&sb, "sandbox-token", "error: x < y"));
    assert_eq!(bad["error_code"], 400);
    assert!(
        bad["description"]
            .as_str()
            .unwrap()
            .starts_with("Bad Request: can't parse entities")
    );
    let long = json_of(send(&sb, "sandbox-token", &"x".repeat(4097)));
    assert_eq!(long["description"], "Bad Request: message is too long");
    let unauthorized = send(&sb, "wrong-token", "hi");
    assert_eq!(unauthorized.status(), 401);
}

#[test]
fn rate_limit_answers_retry_after() {
    let sb = Sb::new();
    sb.control("/config", json!({"telegram_min_interval_ms": 60_000}));
    assert_eq!(send(&sb, "sandbox-token", "one").status(), 200);
    let limited = send(&sb, "sandbox-token", "two");
    assert_eq!(limited.status(), 429);
    let body = json_of(limited);
    assert!(body["parameters"]["retry_after"].as_u64().unwrap() >= 1);
    assert!(
        body["description"]
            .as_str()
            .unwrap()
            .starts_with("Too Many Requests: retry after")
    );
}
