use serde_json::{Value, json};

use crate::{Sb, json_of};

fn access_token(sb: &Sb) -> String {
    let resp = json_of(
        sb.post("/google/token")
            .form(&[
                ("grant_type", "refresh_token"),
                ("client_id", "sandbox-client"),
                ("client_secret", "sandbox-secret"),
                ("refresh_token", "sandbox-refresh"),
            ])
            .send()
            .unwrap(),
    );
    assert_eq!(resp["expires_in"], 3599);
    resp["access_token"].as_str().unwrap().to_owned()
}

fn decode_b64url(s: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes().filter(|c| *c != b'=') {
        bits = (bits << 6) | alphabet.iter().position(|a| *a == c).unwrap() as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

#[test]
fn a_dead_refresh_token_is_invalid_grant() {
    let sb = Sb::new();
    let resp = sb
        .post("/google/token")
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "sandbox-client"),
            ("client_secret", "sandbox-secret"),
            ("refresh_token", "old"),
        ])
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(json_of(resp)["error"], "invalid_grant");
}

#[test]
fn search_pages_end_without_next_page_token_and_empty_has_no_messages_key() {
    let sb = Sb::new();
    let token = access_token(&sb);
    let list = |q: &str, page: Option<&str>| {
        let mut url = format!("/gmail/gmail/v1/users/me/messages?maxResults=2&q={q}");
        if let Some(p) = page {
            url.push_str(&format!("&pageToken={p}"));
        }
        json_of(sb.get(&url).bearer_auth(&token).send().unwrap())
    };
    let mut ids = Vec::new();
    let mut page: Option<String> = None;
    for _ in 0..20 {
        let resp = list("subject:Отчёт", page.as_deref());
        ids.extend(
            resp["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_owned()),
        );
        match resp.get("nextPageToken") {
            Some(t) => page = Some(t.as_str().unwrap().to_owned()),
            None => break,
        }
    }
    assert_eq!(ids.len(), 6, "six reports among unrelated mail");
    let none = list("subject:nothing-like-this", None);
    assert!(none.get("messages").is_none(), "{none}");
    assert_eq!(none["resultSizeEstimate"], 0);
}

#[test]
fn messages_carry_base64url_attachments_and_labels_work() {
    let sb = Sb::new();
    let token = access_token(&sb);
    let get = |path: &str| {
        json_of(
            sb.get(&format!("/gmail/gmail/v1/users/me{path}"))
                .bearer_auth(&token)
                .send()
                .unwrap(),
        )
    };
    let list = get("/messages?q=has:attachment");
    let first = list["messages"][0]["id"].as_str().unwrap().to_owned();
    let msg = get(&format!("/messages/{first}?format=full"));
    assert!(msg["internalDate"].is_string(), "epoch ms as a string");
    let parts = msg["payload"]["parts"].as_array().unwrap();
    let attachment = parts
        .iter()
        .find(|p| p["body"]["attachmentId"].is_string())
        .unwrap();
    let att = get(&format!(
        "/messages/{first}/attachments/{}",
        attachment["body"]["attachmentId"].as_str().unwrap()
    ));
    let bytes = decode_b64url(att["data"].as_str().unwrap());
    assert_eq!(bytes.len() as u64, att["size"].as_u64().unwrap());

    // The reports the sandbox meant, for tests to compare a parser against.
    let reports: Vec<Value> = sb
        .get("/_sandbox/gmail/reports")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(reports.iter().any(|r| r["message_id"] == json!(first)));

    let label = json_of(
        sb.post("/gmail/gmail/v1/users/me/labels")
            .bearer_auth(&token)
            .json(&json!({"name": "zakaz-processed"}))
            .send()
            .unwrap(),
    );
    let label_id = label["id"].as_str().unwrap();
    let modified = json_of(
        sb.post(&format!("/gmail/gmail/v1/users/me/messages/{first}/modify"))
            .bearer_auth(&token)
            .json(&json!({"addLabelIds": [label_id], "removeLabelIds": ["UNREAD"]}))
            .send()
            .unwrap(),
    );
    assert!(
        modified["labelIds"]
            .as_array()
            .unwrap()
            .contains(&json!(label_id))
    );
    let remaining = get("/messages?q=has:attachment%20-label:zakaz-processed");
    assert!(
        !remaining["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == json!(first))
    );
    let dup = sb
        .post("/gmail/gmail/v1/users/me/labels")
        .bearer_auth(&token)
        .json(&json!({"name": "zakaz-processed"}))
        .send()
        .unwrap();
    assert_eq!(dup.status(), 409);
    let unauth = sb
        .get("/gmail/gmail/v1/users/me/labels")
        .bearer_auth("stale")
        .send()
        .unwrap();
    assert_eq!(json_of(unauth)["error"]["errors"][0]["reason"], "authError");
}

fn get_json(sb: &Sb, token: &str, path: &str) -> (u16, Value) {
    let resp = sb
        .get(&format!("/gmail/gmail/v1/users/me{path}"))
        .bearer_auth(token)
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap())
}

fn ids_of(list: &Value) -> Vec<String> {
    list["messages"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| m["id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn search_dates_are_pacific_midnights_or_epoch_seconds_and_the_rest_is_an_error() {
    use api_sandbox::gmail::{Query, parse_query};
    let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp();
    // November: PST (UTC−8); July: PDT (UTC−7). Not UTC midnight.
    assert_eq!(
        parse_query("after:2026/11/24", 0).unwrap(),
        Query::All(vec![Query::After(at("2026-11-24T08:00:00Z"))])
    );
    assert_eq!(
        parse_query("before:2026/07/01", 0).unwrap(),
        Query::All(vec![Query::Before(at("2026-07-01T07:00:00Z"))])
    );
    assert_eq!(
        parse_query("after:1795939200", 0).unwrap(),
        Query::All(vec![Query::After(1_795_939_200)])
    );
    assert_eq!(
        parse_query("newer_than:2d", 1_000_000).unwrap(),
        Query::All(vec![Query::After(1_000_000 - 2 * 86_400)])
    );
    for bad in [
        "larger:10M",
        "{subject:a",
        "after:yesterday",
        "OR x",
        "x OR",
    ] {
        assert!(parse_query(bad, 0).is_err(), "{bad}");
    }

    let sb = Sb::new();
    let token = access_token(&sb);
    let search = |q: &str| get_json(&sb, &token, &format!("/messages?q={}", url_escape(q)));
    // The newest report arrived at internalDate t: after:t includes it, before:t does not.
    let data = &sb.server.sandbox().data.gmail;
    let newest = data
        .messages
        .iter()
        .find(|m| m.subject.starts_with("Отчёт"))
        .unwrap();
    let t = newest.internal_ms / 1000;
    assert!(ids_of(&search(&format!("subject:Отчёт after:{t}")).1).contains(&newest.id));
    assert!(!ids_of(&search(&format!("subject:Отчёт before:{t}")).1).contains(&newest.id));
    assert!(ids_of(&search(&format!("subject:Отчёт before:{}", t + 1)).1).contains(&newest.id));
    // OR, {…} and negation.
    let reports = ids_of(&search("subject:Отчёт").1).len();
    let news = ids_of(&search("subject:Новости").1).len();
    assert_eq!(
        ids_of(&search("subject:Отчёт OR subject:Новости").1).len(),
        reports + news
    );
    assert_eq!(
        ids_of(&search("{subject:Отчёт subject:Новости}").1).len(),
        reports + news
    );
    let html_only = ids_of(&search("subject:Отчёт -has:attachment").1);
    assert_eq!(html_only.len(), 2, "the two HTML-table reports");
    // What the sandbox cannot answer is an error, never an empty result.
    let (status, body) = search("larger:10M");
    assert_eq!(status, 400);
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
    // `after:` that excludes its own second, switchable.
    sb.control("/config", json!({"gmail_after_exclusive": true}));
    assert!(!ids_of(&search(&format!("subject:Отчёт after:{t}")).1).contains(&newest.id));
}

fn url_escape(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn attachment_ids_change_with_every_fetch_and_expire() {
    let sb = Sb::new();
    let token = access_token(&sb);
    let (_, list) = get_json(&sb, &token, "/messages?q=has:attachment");
    let ids = ids_of(&list);
    let attachment_id = |msg: &str| {
        let (_, m) = get_json(&sb, &token, &format!("/messages/{msg}"));
        m["payload"]["parts"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|p| p["body"]["attachmentId"].as_str().map(str::to_owned))
            .unwrap()
    };
    let (first, second) = (attachment_id(&ids[0]), attachment_id(&ids[0]));
    assert_ne!(first, second, "a new id with every fetch");
    for id in [&first, &second] {
        let (status, _) = get_json(
            &sb,
            &token,
            &format!("/messages/{}/attachments/{id}", ids[0]),
        );
        assert_eq!(status, 200);
    }
    // Another message's id is not this message's.
    let other = attachment_id(&ids[1]);
    let (status, body) = get_json(
        &sb,
        &token,
        &format!("/messages/{}/attachments/{other}", ids[0]),
    );
    assert_eq!(
        (status, body["error"]["status"].as_str()),
        (400, Some("INVALID_ARGUMENT"))
    );
    // Two hours later they have expired.
    sb.control("/advance", json!({"hours": 2}));
    let (status, _) = get_json(
        &sb,
        &token,
        &format!("/messages/{}/attachments/{second}", ids[0]),
    );
    assert_eq!(status, 400);
}

#[test]
fn errors_carry_the_canonical_status_and_the_reason() {
    let sb = Sb::new();
    let token = access_token(&sb);
    let (status, missing) = get_json(&sb, &token, "/messages/nope");
    assert_eq!(status, 404);
    assert_eq!(missing["error"]["status"], "NOT_FOUND");
    assert_eq!(missing["error"]["errors"][0]["reason"], "notFound");
    let (status, unauth) = get_json(&sb, "stale", "/labels");
    assert_eq!(status, 401);
    assert_eq!(unauth["error"]["status"], "UNAUTHENTICATED");
    let (status, bad_page) = get_json(&sb, &token, "/messages?q=subject:x&pageToken=garbage");
    assert_eq!(
        status, 400,
        "an invalid page token is an error, not page 1: {bad_page}"
    );
    // The token endpoint: a bad client, then a revoked refresh token.
    let bad_client = sb
        .post("/google/token")
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "someone-else"),
            ("client_secret", "x"),
            ("refresh_token", "sandbox-refresh"),
        ])
        .send()
        .unwrap();
    assert_eq!(bad_client.status(), 401);
    assert_eq!(json_of(bad_client)["error"], "invalid_client");
    sb.control("/google/revoke", json!({}));
    let revoked = sb
        .post("/google/token")
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "sandbox-client"),
            ("client_secret", "sandbox-secret"),
            ("refresh_token", "sandbox-refresh"),
        ])
        .send()
        .unwrap();
    assert_eq!(json_of(revoked)["error"], "invalid_grant");
}

#[test]
fn one_html_report_is_utf8_under_a_windows_1251_header() {
    let sb = Sb::new();
    let token = access_token(&sb);
    let (_, list) = get_json(&sb, &token, "/messages?q=subject:Отчёт%20-has:attachment");
    let mut declared = Vec::new();
    for id in ids_of(&list) {
        let (_, m) = get_json(&sb, &token, &format!("/messages/{id}"));
        let html = m["payload"]["parts"][0]["parts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["mimeType"] == "text/html")
            .unwrap()
            .clone();
        let header = html["headers"][0]["value"].as_str().unwrap().to_owned();
        let bytes = decode_b64url(html["body"]["data"].as_str().unwrap());
        let text = String::from_utf8(bytes).expect("the bytes are UTF-8 whatever the header says");
        assert!(text.contains("Событие"));
        declared.push(header);
    }
    declared.sort();
    assert_eq!(
        declared,
        [
            "text/html; charset=UTF-8",
            "text/html; charset=windows-1251"
        ]
    );
}
