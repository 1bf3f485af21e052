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
    // No Gmail operator: plain text, as Gmail reads it.
    assert_eq!(
        parse_query("subjet:Отчёт", 0).unwrap(),
        Query::All(vec![Query::Word("subjet:отчёт".into())])
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
    // A Gmail operator the sandbox does not model is an error, never a wrong result...
    let (status, body) = search("larger:10M");
    assert_eq!(status, 400);
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
    // ...while a word that is no operator at all finds nothing, as with Gmail: no error.
    let (status, body) = search("from:qtickets.ru subjet:Отчёт");
    assert_eq!(status, 200, "{body}");
    assert!(body.get("messages").is_none(), "{body}");
    assert_eq!(body["resultSizeEstimate"], 0);
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

fn header<'a>(msg: &'a Value, name: &str) -> Vec<&'a str> {
    msg["payload"]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["name"] == name)
        .map(|h| h["value"].as_str().unwrap())
        .collect()
}

#[test]
fn delivered_mail_carries_googles_authentication_results_and_the_senders_date() {
    let sb = Sb::new();
    let token = access_token(&sb);
    let (_, list) = get_json(&sb, &token, "/messages?q=subject:Отчёт");
    let mut shapes = Vec::new();
    for id in ids_of(&list) {
        let (_, m) = get_json(&sb, &token, &format!("/messages/{id}"));
        let results = header(&m, "Authentication-Results");
        assert_eq!(results.len(), 1, "{m}");
        let google = results[0];
        assert!(google.starts_with("mx.google.com;"), "{google}");
        // The From domain passes DKIM (header.i, as Google writes it) or SPF (a subdomain).
        assert!(
            google.contains("dkim=pass header.i=@qtickets.ru")
                || google.contains("spf=pass (google.com: domain of reports@mail.qtickets.ru"),
            "{google}"
        );
        shapes.push(google.matches("dkim=").count());
        // The sender's Date: a little before Google received it.
        let date = chrono::DateTime::parse_from_rfc2822(header(&m, "Date")[0]).unwrap();
        let internal: i64 = m["internalDate"].as_str().unwrap().parse().unwrap();
        assert_eq!(date.timestamp(), internal / 1000 - 120);
        // Google's header sits above the `Received:` line of mx.google.com.
        let names: Vec<&str> = m["payload"]["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["name"].as_str().unwrap())
            .collect();
        let auth = names
            .iter()
            .position(|n| *n == "Authentication-Results")
            .unwrap();
        assert!(names[..auth].contains(&"Received"));
        assert!(names[..auth].contains(&"ARC-Authentication-Results"));
    }
    shapes.sort();
    shapes.dedup();
    assert_eq!(
        shapes,
        [0, 1, 2],
        "unsigned, signed once, signed twice (a mailing service)"
    );
}

#[test]
fn a_test_adds_spoofed_misdated_and_hostile_mail() {
    let sb = Sb::new();
    let token = access_token(&sb);
    let spoofed = sb.control(
        "/gmail/messages",
        json!({"auth": "spoofed", "attachments": [{"filename": "r.csv", "text": "date;event\n"}]}),
    );
    let future = sb.control(
        "/gmail/messages",
        json!({"date": "2099-01-01T00:00:00+03:00", "internal_date": "2026-11-24T10:00:00+03:00", "html": "<table></table>"}),
    );
    let hostile = sb.control(
        "/gmail/messages",
        json!({"subject": "Отчёт XL", "attachments": [
            {"filename": "big.xlsx", "xlsx_cells": [["A1", "date"], ["XFD1048576", "x"]], "xlsx_dimension": "A1:XFD1048576"},
            {"filename": "huge.xlsx", "xlsx_rows": [["date"]], "declared_size": 3_000_000_000u64}
        ]}),
    );
    let (spoofed, future, hostile) = (
        spoofed["id"].as_str().unwrap(),
        future["id"].as_str().unwrap(),
        hostile["id"].as_str().unwrap(),
    );
    let (_, list) = get_json(&sb, &token, "/messages?q=from:qtickets.ru");
    let found = ids_of(&list);
    for id in [spoofed, future, hostile] {
        assert!(found.contains(&id.to_owned()), "{id} in {found:?}");
    }
    // Spoofed: Google's verdict fails; the sender's own header below it claims a pass.
    let (_, m) = get_json(&sb, &token, &format!("/messages/{spoofed}"));
    let results = header(&m, "Authentication-Results");
    assert_eq!(results.len(), 2);
    assert!(
        results[0].contains("dkim=fail header.i=@qtickets.ru"),
        "{}",
        results[0]
    );
    assert!(results[1].contains("dkim=pass"), "{}", results[1]);
    // Misdated: the sender's Date says 2099, Google's internalDate does not.
    let (_, m) = get_json(&sb, &token, &format!("/messages/{future}"));
    assert!(header(&m, "Date")[0].contains("2099"), "{m}");
    assert_eq!(
        m["internalDate"],
        json!(
            chrono::DateTime::parse_from_rfc3339("2026-11-24T10:00:00+03:00")
                .unwrap()
                .timestamp_millis()
                .to_string()
        )
    );
    // Hostile: a sheet of a few KB spanning the whole grid, an attachment declared at 3 GB.
    let (_, m) = get_json(&sb, &token, &format!("/messages/{hostile}"));
    let parts = m["payload"]["parts"].as_array().unwrap();
    assert_eq!(parts[2]["body"]["size"], 3_000_000_000u64);
    let att = parts[1]["body"]["attachmentId"].as_str().unwrap();
    let (_, a) = get_json(
        &sb,
        &token,
        &format!("/messages/{hostile}/attachments/{att}"),
    );
    let bytes = decode_b64url(a["data"].as_str().unwrap());
    assert!(bytes.len() < 4_000, "{}", bytes.len());
    let sheet = String::from_utf8_lossy(&bytes);
    assert!(sheet.contains(r#"<c r="XFD1048576""#), "{sheet}");
    // Reset forgets them.
    sb.control("/reset", json!({}));
    let token = access_token(&sb);
    let (status, _) = get_json(&sb, &token, &format!("/messages/{spoofed}"));
    assert_eq!(status, 404);
}

#[test]
fn a_rate_limit_403_is_usage_limits_and_names_when_to_retry() {
    let sb = Sb::new();
    let token = access_token(&sb);
    sb.control(
        "/faults",
        json!({"route": "/gmail/gmail/v1/users/me/messages", "status": 403, "count": 1}),
    );
    let (status, body) = get_json(&sb, &token, "/messages?q=subject:x");
    assert_eq!(status, 403);
    let e = &body["error"];
    assert_eq!(e["status"], "PERMISSION_DENIED");
    assert_eq!(e["errors"][0]["domain"], "usageLimits");
    assert_eq!(e["errors"][0]["reason"], "userRateLimitExceeded");
    // A second after the sandbox clock's now (2026-11-25T12:00:00+03:00).
    assert_eq!(
        e["message"],
        "User-rate limit exceeded.  Retry after 2026-11-25T09:00:01.000Z"
    );
}
