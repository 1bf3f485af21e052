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
