//! Gmail API v1 and Google's OAuth token endpoint: refresh-token grant (a bad one is
//! `invalid_grant`), message search paged by `nextPageToken` with no `messages` key when
//! nothing matches, `internalDate` as a string, MIME trees with base64url bodies (padded or
//! not), attachments fetched separately, labels by id. Sales reports arrive as CSV (UTF-8 or
//! Windows-1251, `;` or `,`, decimal comma), XLSX, or an HTML table, among unrelated mail.

use chrono::NaiveDate;
use serde_json::{Value, json};

use crate::encode::{base64url, cp1251, xlsx};
use crate::http::{Req, Resp, form_value};
use crate::rng::Rng;
use crate::{Sandbox, SandboxConfig};

pub const CLIENT_ID: &str = "sandbox-client";
pub const CLIENT_SECRET: &str = "sandbox-secret";
pub const REFRESH_TOKEN: &str = "sandbox-refresh";
const SYSTEM_LABELS: &[&str] = &["INBOX", "UNREAD", "IMPORTANT", "SENT", "TRASH", "SPAM"];

/// One row of a sales report, as the sender meant it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReportRow {
    pub message_id: String,
    pub date: NaiveDate,
    pub event: String,
    pub city: String,
    pub tickets_sold: u64,
    pub revenue_cents: i64,
    pub refunds_cents: i64,
    pub currency: String,
}

pub struct Attachment {
    pub id: String,
    pub filename: String,
    pub mime: String,
    pub data: Vec<u8>,
}

pub struct Message {
    pub id: String,
    pub subject: String,
    pub from: String,
    pub internal_ms: i64,
    pub text: String,
    pub html: Option<String>,
    pub attachments: Vec<Attachment>,
    pub padded: bool,
}

pub struct GmailData {
    pub messages: Vec<Message>,
    pub reports: Vec<ReportRow>,
}

fn comma(cents: i64) -> String {
    format!("{},{:02}", cents / 100, cents % 100)
}
fn point(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

impl GmailData {
    pub fn generate(cfg: &SandboxConfig, start: i64) -> GmailData {
        let mut rng = Rng::stream(cfg.seed, "gmail");
        let today = crate::moscow_date(start);
        let mut messages = Vec::new();
        let mut reports = Vec::new();
        let cities = ["Москва", "Санкт-Петербург", "Новосибирск", "Казань"];
        for i in 0..cfg.emails {
            let id = format!("18c{:013x}", 0x1000 + u64::from(i) * 0x11);
            let date = today - chrono::Days::new(u64::from(i) + 1);
            let internal_ms = (start - (i64::from(i) + 1) * 86_400 + 3 * 3600) * 1000;
            let rows: Vec<ReportRow> = (0..rng.range(2, 5))
                .map(|r| ReportRow {
                    message_id: id.clone(),
                    date,
                    event: format!("Концерт №{}", 100 + r),
                    city: cities[(r as usize + i as usize) % cities.len()].to_owned(),
                    tickets_sold: rng.range(1, 300),
                    revenue_cents: rng.range(10_000, 9_000_000) as i64
                        + if rng.chance(50) { 50 } else { 0 },
                    refunds_cents: if rng.chance(30) {
                        rng.range(1_000, 50_000) as i64
                    } else {
                        0
                    },
                    currency: "RUB".to_owned(),
                })
                .collect();
            let subject = format!("Отчёт о продажах за {}", date.format("%d.%m.%Y"));
            let mut message = Message {
                id: id.clone(),
                subject,
                from: "QTickets <reports@qtickets.ru>".to_owned(),
                internal_ms,
                text: "Отчёт о продажах во вложении.".to_owned(),
                html: None,
                attachments: Vec::new(),
                padded: i % 2 == 0,
            };
            let ru_header = "Дата;Событие;Город;Продано билетов;Выручка;Возвраты;Валюта";
            match i % 5 {
                0 | 1 => {
                    let mut csv = String::from(ru_header);
                    for r in &rows {
                        csv.push_str(&format!(
                            "\n{};{};{};{};{};{};{}",
                            r.date.format("%d.%m.%Y"),
                            r.event,
                            r.city,
                            r.tickets_sold,
                            comma(r.revenue_cents),
                            comma(r.refunds_cents),
                            r.currency
                        ));
                    }
                    let (data, name) = if i % 5 == 0 {
                        (csv.into_bytes(), "sales_utf8.csv")
                    } else {
                        (cp1251(&csv), "sales_cp1251.csv")
                    };
                    message.attachments.push(Attachment {
                        id: format!("ANGj{id}a"),
                        filename: name.into(),
                        mime: "text/csv".into(),
                        data,
                    });
                }
                2 => {
                    let mut csv =
                        String::from("date,event,city,tickets_sold,revenue,refunds,currency");
                    for r in &rows {
                        csv.push_str(&format!(
                            "\n{},\"{}\",{},{},{},{},{}",
                            r.date,
                            r.event,
                            r.city,
                            r.tickets_sold,
                            point(r.revenue_cents),
                            point(r.refunds_cents),
                            r.currency
                        ));
                    }
                    message.attachments.push(Attachment {
                        id: format!("ANGj{id}a"),
                        filename: "sales.csv".into(),
                        mime: "text/csv".into(),
                        data: csv.into_bytes(),
                    });
                }
                3 => {
                    let mut html = String::from(
                        "<html><body><p>Продажи за день:</p><table border=\"1\"><tr><th>Дата</th><th>Событие</th><th>Город</th><th>Продано билетов</th><th>Выручка</th><th>Возвраты</th><th>Валюта</th></tr>",
                    );
                    for r in &rows {
                        html.push_str(&format!("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", r.date.format("%d.%m.%Y"), r.event, r.city, r.tickets_sold, comma(r.revenue_cents), comma(r.refunds_cents), r.currency));
                    }
                    html.push_str("</table></body></html>");
                    message.html = Some(html);
                    message.text = "Продажи за день — см. HTML-версию письма.".into();
                }
                _ => {
                    let mut sheet = vec![
                        [
                            "date",
                            "event",
                            "city",
                            "tickets_sold",
                            "revenue",
                            "refunds",
                            "currency",
                        ]
                        .map(String::from)
                        .to_vec(),
                    ];
                    for r in &rows {
                        sheet.push(vec![
                            r.date.to_string(),
                            r.event.clone(),
                            r.city.clone(),
                            r.tickets_sold.to_string(),
                            point(r.revenue_cents),
                            point(r.refunds_cents),
                            r.currency.clone(),
                        ]);
                    }
                    message.attachments.push(Attachment {
                        id: format!("ANGj{id}a"),
                        filename: "sales.xlsx".into(),
                        mime: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
                            .into(),
                        data: xlsx(&sheet),
                    });
                }
            }
            messages.push(message);
            reports.extend(rows);
            // Unrelated mail between the reports.
            if i % 2 == 1 {
                messages.push(Message {
                    id: format!("18d{:013x}", 0x1000 + u64::from(i)),
                    subject: "Новости площадки: что нового в этом месяце".into(),
                    from: "news@example.org".into(),
                    internal_ms: internal_ms + 3_600_000,
                    text: "Рассылка без вложений.".into(),
                    html: None,
                    attachments: Vec::new(),
                    padded: false,
                });
            }
        }
        messages.sort_by_key(|m| std::cmp::Reverse(m.internal_ms));
        GmailData { messages, reports }
    }
}

fn google_error(status: u16, reason: &str, message: &str) -> Resp {
    Resp::json(
        status,
        &json!({"error": {"code": status, "message": message, "errors": [{"domain": "global", "reason": reason, "message": message}], "status": reason}}),
    )
}

pub fn fault_body(status: u16) -> Resp {
    match status {
        401 => google_error(401, "authError", "Invalid Credentials"),
        403 => google_error(403, "userRateLimitExceeded", "User-rate limit exceeded"),
        429 => google_error(
            429,
            "rateLimitExceeded",
            "Too many concurrent requests for user",
        ),
        404 => google_error(404, "notFound", "Requested entity was not found."),
        s => google_error(s, "backendError", "Backend Error"),
    }
}

pub fn token(sb: &Sandbox, req: &Req) -> Resp {
    let form = req.form();
    let ok = form_value(&form, "grant_type") == Some("refresh_token")
        && form_value(&form, "client_id") == Some(CLIENT_ID)
        && form_value(&form, "client_secret") == Some(CLIENT_SECRET)
        && form_value(&form, "refresh_token") == Some(REFRESH_TOKEN);
    if !ok {
        return Resp::json(
            400,
            &json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."}),
        );
    }
    let mut state = sb.state();
    let access = format!("ya29.sandbox-{}", state.google_tokens.len() + 1);
    state.google_tokens.push((access.clone(), false));
    Resp::json(
        200,
        &json!({"access_token": access, "expires_in": 3599, "scope": "https://www.googleapis.com/auth/gmail.modify", "token_type": "Bearer"}),
    )
}

fn labels_of(sb: &Sandbox, id: &str) -> Vec<String> {
    sb.state()
        .gmail_labels
        .get(id)
        .cloned()
        .unwrap_or_else(|| vec!["INBOX".into(), "UNREAD".into()])
}

fn matches_query(sb: &Sandbox, m: &Message, q: &str) -> bool {
    let labels = labels_of(sb, &m.id);
    let user_labels = sb.state().gmail_user_labels.clone();
    let label_id = |name: &str| {
        user_labels
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(name))
            .map(|(id, _)| id.clone())
            .unwrap_or_else(|| name.to_ascii_uppercase())
    };
    for token in q.split_whitespace() {
        let (negated, token) = match token.strip_prefix('-') {
            Some(t) => (true, t),
            None => (false, token),
        };
        let hit = if let Some(name) = token.strip_prefix("label:") {
            labels.contains(&label_id(name))
        } else if let Some(word) = token.strip_prefix("subject:") {
            m.subject
                .to_lowercase()
                .contains(&word.trim_matches('"').to_lowercase())
        } else if let Some(from) = token.strip_prefix("from:") {
            m.from.to_lowercase().contains(&from.to_lowercase())
        } else if token == "has:attachment" {
            !m.attachments.is_empty()
        } else if let Some(date) = token.strip_prefix("after:") {
            NaiveDate::parse_from_str(date, "%Y/%m/%d").is_ok_and(|d| {
                m.internal_ms / 1000 >= d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp()
            })
        } else {
            let word = token.trim_matches('"').to_lowercase();
            m.subject.to_lowercase().contains(&word) || m.text.to_lowercase().contains(&word)
        };
        if hit == negated {
            return false;
        }
    }
    true
}

fn part(part_id: &str, mime: &str, data: &[u8], padded: bool) -> Value {
    json!({"partId": part_id, "mimeType": mime, "filename": "", "headers": [{"name": "Content-Type", "value": format!("{mime}; charset=UTF-8")}], "body": {"size": data.len(), "data": base64url(data, padded)}})
}

fn message_json(sb: &Sandbox, m: &Message) -> Value {
    let mut alternative = vec![part("0.0", "text/plain", m.text.as_bytes(), m.padded)];
    if let Some(html) = &m.html {
        alternative.push(part("0.1", "text/html", html.as_bytes(), m.padded));
    }
    let mut parts = vec![
        json!({"partId": "0", "mimeType": "multipart/alternative", "filename": "", "headers": [], "body": {"size": 0}, "parts": alternative}),
    ];
    for (i, a) in m.attachments.iter().enumerate() {
        parts.push(json!({
            "partId": (i + 1).to_string(), "mimeType": a.mime, "filename": a.filename,
            "headers": [{"name": "Content-Disposition", "value": format!("attachment; filename=\"{}\"", a.filename)}],
            "body": {"attachmentId": a.id, "size": a.data.len()}
        }));
    }
    json!({
        "id": m.id, "threadId": m.id, "labelIds": labels_of(sb, &m.id),
        "snippet": m.text.chars().take(100).collect::<String>(),
        "internalDate": m.internal_ms.to_string(),
        "sizeEstimate": 2048,
        "payload": {
            "partId": "", "mimeType": "multipart/mixed", "filename": "",
            "headers": [
                {"name": "From", "value": m.from},
                {"name": "To", "value": "sales@example.ru"},
                {"name": "Subject", "value": m.subject},
                {"name": "Message-ID", "value": format!("<{}@mail.example>", m.id)}
            ],
            "body": {"size": 0},
            "parts": parts
        }
    })
}

pub fn handle(sb: &Sandbox, req: &Req, path: &str) -> Resp {
    {
        let state = sb.state();
        match req
            .bearer()
            .and_then(|t| state.google_tokens.iter().find(|(a, _)| a == t))
        {
            Some((_, false)) => {}
            _ => {
                return google_error(
                    401,
                    "authError",
                    "Request had invalid authentication credentials.",
                );
            }
        }
    }
    let data = &sb.data.gmail;
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (req.method.as_str(), segments.as_slice()) {
        ("GET", ["messages"]) => {
            let q = req.query_param("q").unwrap_or_default();
            let max = req
                .query_param("maxResults")
                .and_then(|m| m.parse::<usize>().ok())
                .unwrap_or(100)
                .clamp(1, 500);
            let offset = req
                .query_param("pageToken")
                .and_then(|t| t.strip_prefix("p").and_then(|n| n.parse::<usize>().ok()))
                .unwrap_or(0);
            let hits: Vec<&Message> = data
                .messages
                .iter()
                .filter(|m| matches_query(sb, m, q))
                .collect();
            let page: Vec<Value> = hits
                .iter()
                .skip(offset)
                .take(max)
                .map(|m| json!({"id": m.id, "threadId": m.id}))
                .collect();
            let mut out = serde_json::Map::new();
            if !page.is_empty() {
                out.insert("messages".into(), Value::Array(page));
            }
            if offset + max < hits.len() {
                out.insert("nextPageToken".into(), json!(format!("p{}", offset + max)));
            }
            out.insert("resultSizeEstimate".into(), json!(hits.len()));
            Resp::json(200, &Value::Object(out))
        }
        ("GET", ["messages", id]) => match data.messages.iter().find(|m| m.id == *id) {
            Some(m) => Resp::json(200, &message_json(sb, m)),
            None => fault_body(404),
        },
        ("GET", ["messages", id, "attachments", att]) => {
            match data
                .messages
                .iter()
                .find(|m| m.id == *id)
                .and_then(|m| m.attachments.iter().find(|a| a.id == *att).map(|a| (m, a)))
            {
                Some((m, a)) => Resp::json(
                    200,
                    &json!({"size": a.data.len(), "data": base64url(&a.data, m.padded)}),
                ),
                None => fault_body(404),
            }
        }
        ("POST", ["messages", id, "modify"]) => {
            if !data.messages.iter().any(|m| m.id == *id) {
                return fault_body(404);
            }
            let body = req.json().unwrap_or(Value::Null);
            let ids = |k: &str| -> Vec<String> {
                body.get(k)
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let (add, remove) = (ids("addLabelIds"), ids("removeLabelIds"));
            let mut labels = labels_of(sb, id);
            let mut state = sb.state();
            for l in add.iter().chain(remove.iter()) {
                if !SYSTEM_LABELS.contains(&l.as_str())
                    && !state.gmail_user_labels.iter().any(|(lid, _)| lid == l)
                {
                    return google_error(400, "invalidArgument", &format!("Invalid label: {l}"));
                }
            }
            labels.retain(|l| !remove.contains(l));
            for l in add {
                if !labels.contains(&l) {
                    labels.push(l);
                }
            }
            state.gmail_labels.insert((*id).to_owned(), labels.clone());
            Resp::json(200, &json!({"id": id, "threadId": id, "labelIds": labels}))
        }
        ("GET", ["labels"]) => {
            let state = sb.state();
            let mut labels: Vec<Value> = SYSTEM_LABELS
                .iter()
                .map(|l| json!({"id": l, "name": l, "type": "system"}))
                .collect();
            labels.extend(
                state
                    .gmail_user_labels
                    .iter()
                    .map(|(id, name)| json!({"id": id, "name": name, "type": "user"})),
            );
            Resp::json(200, &json!({"labels": labels}))
        }
        ("POST", ["labels"]) => {
            let name = req
                .json()
                .ok()
                .and_then(|b| b.get("name").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_default();
            if name.is_empty() {
                return google_error(400, "invalidArgument", "Invalid label name");
            }
            let mut state = sb.state();
            if state
                .gmail_user_labels
                .iter()
                .any(|(_, n)| n.eq_ignore_ascii_case(&name))
            {
                return google_error(409, "failedPrecondition", "Label name exists or conflicts");
            }
            let id = format!("Label_{}", state.gmail_user_labels.len() + 1);
            state.gmail_user_labels.push((id.clone(), name.clone()));
            Resp::json(
                200,
                &json!({"id": id, "name": name, "type": "user", "messageListVisibility": "show", "labelListVisibility": "labelShow"}),
            )
        }
        _ => fault_body(404),
    }
}
