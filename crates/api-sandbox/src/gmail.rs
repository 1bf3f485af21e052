//! Gmail API v1 and Google's OAuth token endpoint: refresh-token grant (a bad client is
//! `invalid_client`, a dead refresh token `invalid_grant`), message search paged by
//! `nextPageToken` (an invalid token is an error, not page 1) with no `messages` key when
//! nothing matches, the search language's dates (`after:`/`before:` a date are midnight
//! Pacific time, or epoch seconds; `newer_than:`/`older_than:`), `OR`, `{…}`, `(…)` and `-`
//! (anything else: 400, never a silent empty result), `internalDate` as a string, MIME trees
//! with base64url bodies (padded or not), attachments fetched separately by ids that change
//! with every fetch of the message and expire, labels by id, Google's error bodies
//! (`error.status` canonical, `error.errors[].reason`). Sales reports arrive as CSV (UTF-8 or
//! Windows-1251, `;` or `,`, decimal comma), XLSX, or an HTML table — one of them UTF-8 under
//! a `windows-1251` header — among unrelated mail.

use chrono::NaiveDate;
use serde_json::{Value, json};

use crate::encode::{base64url, cp1251, xlsx};
use crate::http::{Req, Resp, form_value};
use crate::rng::Rng;
use crate::{Sandbox, SandboxConfig};

/// How long an attachment id stays valid after the message fetch that gave it out.
pub const ATTACHMENT_ID_TTL: i64 = 3600;

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
    /// The charset the HTML part declares (not always the one its bytes are in).
    pub html_charset: &'static str,
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
                html_charset: "UTF-8",
                attachments: Vec::new(),
                padded: i % 2 == 0,
            };
            let ru_header = "Дата;Событие;Город;Продано билетов;Выручка;Возвраты;Валюта";
            match i % 6 {
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
                3 | 5 => {
                    let mut html = String::from(
                        "<html><body><p>Продажи за день:</p><table border=\"1\"><tr><th>Дата</th><th>Событие</th><th>Город</th><th>Продано билетов</th><th>Выручка</th><th>Возвраты</th><th>Валюта</th></tr>",
                    );
                    for r in &rows {
                        html.push_str(&format!("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", r.date.format("%d.%m.%Y"), r.event, r.city, r.tickets_sold, comma(r.revenue_cents), comma(r.refunds_cents), r.currency));
                    }
                    html.push_str("</table></body></html>");
                    message.html = Some(html);
                    // Seen from real clients: UTF-8 bytes under a `windows-1251` header.
                    if i % 6 == 5 {
                        message.html_charset = "windows-1251";
                    }
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
                    html_charset: "UTF-8",
                    attachments: Vec::new(),
                    padded: false,
                });
            }
        }
        messages.sort_by_key(|m| std::cmp::Reverse(m.internal_ms));
        GmailData { messages, reports }
    }
}

/// Google's error body: `status` is the canonical code of the HTTP status, `reason` the
/// finer one.
fn google_error(status: u16, reason: &str, message: &str) -> Resp {
    let canonical = match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ALREADY_EXISTS",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    };
    Resp::json(
        status,
        &json!({"error": {"code": status, "message": message, "errors": [{"domain": "global", "reason": reason, "message": message}], "status": canonical}}),
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
    if form_value(&form, "grant_type") != Some("refresh_token") {
        return Resp::json(
            400,
            &json!({"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}),
        );
    }
    if form_value(&form, "client_id") != Some(CLIENT_ID)
        || form_value(&form, "client_secret") != Some(CLIENT_SECRET)
    {
        return Resp::json(
            401,
            &json!({"error": "invalid_client", "error_description": "The OAuth client was not found."}),
        );
    }
    let mut state = sb.state();
    if form_value(&form, "refresh_token") != Some(REFRESH_TOKEN) || state.google_refresh_revoked {
        return Resp::json(
            400,
            &json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."}),
        );
    }
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

/// A parsed search query.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    All(Vec<Query>),
    Any(Vec<Query>),
    Not(Box<Query>),
    Label(String),
    Subject(String),
    From(String),
    HasAttachment,
    Filename(String),
    /// `internalDate` at or after these epoch seconds.
    After(i64),
    /// `internalDate` before these epoch seconds.
    Before(i64),
    Word(String),
}

fn tokens(q: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = q.chars().peekable();
    let mut current = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                current.push('"');
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some(ch) => current.push(ch),
                        None => return Err("unbalanced quotes".into()),
                    }
                }
                current.push('"');
            }
            '{' | '}' | '(' | ')' => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
                out.push(c.to_string());
            }
            c if c.is_whitespace() => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    Ok(out)
}

/// Midnight of a date in Pacific time (what Gmail's `after:2025/05/01` means), or epoch
/// seconds as they are.
fn search_instant(value: &str) -> Result<i64, String> {
    if !value.is_empty() && value.chars().all(|c| c.is_ascii_digit()) {
        return value.parse().map_err(|_| format!("bad epoch `{value}`"));
    }
    let date = ["%Y/%m/%d", "%Y-%m-%d", "%m/%d/%Y"]
        .iter()
        .find_map(|f| NaiveDate::parse_from_str(value, f).ok())
        .ok_or_else(|| format!("bad date `{value}`"))?;
    use chrono::TimeZone;
    chrono_tz::America::Los_Angeles
        .from_local_datetime(&date.and_hms_opt(0, 0, 0).expect("midnight"))
        .earliest()
        .map(|t| t.timestamp())
        .ok_or_else(|| format!("no midnight on {value} in Pacific time"))
}

/// `3d`, `2m`, `1y` in seconds (months of 30 days, years of 365).
fn relative(value: &str) -> Result<i64, String> {
    let (n, unit) = value.split_at(value.len().saturating_sub(1));
    let n: i64 = n.parse().map_err(|_| format!("bad period `{value}`"))?;
    let day = 86_400;
    match unit {
        "d" => Ok(n * day),
        "m" => Ok(n * 30 * day),
        "y" => Ok(n * 365 * day),
        _ => Err(format!("bad period `{value}`")),
    }
}

fn atom(token: &str, now: i64) -> Result<Query, String> {
    let Some((key, value)) = token.split_once(':').filter(|(k, _)| !k.starts_with('"')) else {
        return Ok(Query::Word(token.trim_matches('"').to_lowercase()));
    };
    let value = value.trim_matches('"');
    Ok(match key.to_ascii_lowercase().as_str() {
        "label" | "in" => Query::Label(value.to_owned()),
        "is" if value.eq_ignore_ascii_case("unread") => Query::Label("UNREAD".into()),
        "subject" => Query::Subject(value.to_lowercase()),
        "from" => Query::From(value.to_lowercase()),
        "has" if value == "attachment" => Query::HasAttachment,
        "filename" => Query::Filename(value.to_lowercase()),
        "after" => Query::After(search_instant(value)?),
        "before" => Query::Before(search_instant(value)?),
        "newer_than" => Query::After(now - relative(value)?),
        "older_than" => Query::Before(now - relative(value)?),
        _ => {
            return Err(format!(
                "the sandbox does not support the operator `{key}:`"
            ));
        }
    })
}

/// Terms up to `close` (or the end): ANDed, with `OR` binding the terms beside it.
fn sequence(
    tokens: &[String],
    pos: &mut usize,
    close: Option<&str>,
    now: i64,
) -> Result<Vec<Query>, String> {
    let mut terms: Vec<Query> = Vec::new();
    let mut pending_or = false;
    while *pos < tokens.len() {
        let t = tokens[*pos].as_str();
        if Some(t) == close {
            *pos += 1;
            return Ok(terms);
        }
        *pos += 1;
        if t == "OR" {
            if terms.is_empty() {
                return Err("`OR` needs a term before it".into());
            }
            pending_or = true;
            continue;
        }
        let term = term(t, tokens, pos, now)?;
        if pending_or {
            let left = terms.pop().expect("checked above");
            terms.push(match left {
                Query::Any(mut v) => {
                    v.push(term);
                    Query::Any(v)
                }
                other => Query::Any(vec![other, term]),
            });
            pending_or = false;
        } else {
            terms.push(term);
        }
    }
    match (close, pending_or) {
        (Some(c), _) => Err(format!("missing `{c}`")),
        (None, true) => Err("`OR` needs a term after it".into()),
        (None, false) => Ok(terms),
    }
}

fn term(t: &str, tokens: &[String], pos: &mut usize, now: i64) -> Result<Query, String> {
    if let Some(rest) = t.strip_prefix('-') {
        let inner = if rest.is_empty() {
            let next = tokens.get(*pos).ok_or("`-` needs a term")?.clone();
            *pos += 1;
            term(&next, tokens, pos, now)?
        } else {
            term(rest, tokens, pos, now)?
        };
        return Ok(Query::Not(Box::new(inner)));
    }
    match t {
        "{" => Ok(Query::Any(sequence(tokens, pos, Some("}"), now)?)),
        "(" => Ok(Query::All(sequence(tokens, pos, Some(")"), now)?)),
        "}" | ")" => Err(format!("unbalanced `{t}`")),
        _ => atom(t, now),
    }
}

/// Parse a search query as of `now`; what the sandbox does not understand is an error.
pub fn parse_query(q: &str, now: i64) -> Result<Query, String> {
    let tokens = tokens(q)?;
    let mut pos = 0;
    Ok(Query::All(sequence(&tokens, &mut pos, None, now)?))
}

fn matches(sb: &Sandbox, m: &Message, q: &Query) -> bool {
    let after_exclusive = sb.state().gmail_after_exclusive;
    let seconds = m.internal_ms / 1000;
    match q {
        Query::All(v) => v.iter().all(|x| matches(sb, m, x)),
        Query::Any(v) => v.iter().any(|x| matches(sb, m, x)),
        Query::Not(x) => !matches(sb, m, x),
        Query::Label(name) => {
            let labels = labels_of(sb, &m.id);
            let id = sb
                .state()
                .gmail_user_labels
                .iter()
                // A search writes a label's spaces as hyphens (`label:my-label`).
                .find(|(_, n)| {
                    n.replace(' ', "-")
                        .eq_ignore_ascii_case(&name.replace(' ', "-"))
                })
                .map(|(id, _)| id.clone())
                .unwrap_or_else(|| name.to_ascii_uppercase());
            labels.contains(&id)
        }
        Query::Subject(w) => m.subject.to_lowercase().contains(w),
        Query::From(w) => m.from.to_lowercase().contains(w),
        Query::HasAttachment => !m.attachments.is_empty(),
        Query::Filename(w) => m
            .attachments
            .iter()
            .any(|a| a.filename.to_lowercase().contains(w)),
        Query::After(t) if after_exclusive => seconds > *t,
        Query::After(t) => seconds >= *t,
        Query::Before(t) => seconds < *t,
        Query::Word(w) => m.subject.to_lowercase().contains(w) || m.text.to_lowercase().contains(w),
    }
}

fn part(part_id: &str, mime: &str, charset: &str, data: &[u8], padded: bool) -> Value {
    json!({"partId": part_id, "mimeType": mime, "filename": "", "headers": [{"name": "Content-Type", "value": format!("{mime}; charset={charset}")}], "body": {"size": data.len(), "data": base64url(data, padded)}})
}

/// The message as the API serves it. Its attachment ids are minted anew by every fetch and
/// valid for [`ATTACHMENT_ID_TTL`] seconds of the sandbox clock.
fn message_json(sb: &Sandbox, m: &Message) -> Value {
    let mut alternative = vec![part(
        "0.0",
        "text/plain",
        "UTF-8",
        m.text.as_bytes(),
        m.padded,
    )];
    if let Some(html) = &m.html {
        alternative.push(part(
            "0.1",
            "text/html",
            m.html_charset,
            html.as_bytes(),
            m.padded,
        ));
    }
    let mut parts = vec![
        json!({"partId": "0", "mimeType": "multipart/alternative", "filename": "", "headers": [], "body": {"size": 0}, "parts": alternative}),
    ];
    for (i, a) in m.attachments.iter().enumerate() {
        let attachment_id = {
            let now = sb.now();
            let mut state = sb.state();
            state.gmail_attachment_counter += 1;
            let id = format!("{}{:06}", a.id, state.gmail_attachment_counter);
            state
                .gmail_attachment_ids
                .insert(id.clone(), (m.id.clone(), i, now));
            id
        };
        parts.push(json!({
            "partId": (i + 1).to_string(), "mimeType": a.mime, "filename": a.filename,
            "headers": [{"name": "Content-Disposition", "value": format!("attachment; filename=\"{}\"", a.filename)}],
            "body": {"attachmentId": attachment_id, "size": a.data.len()}
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
            let query = match parse_query(q, sb.now()) {
                Ok(query) => query,
                Err(e) => {
                    return google_error(
                        400,
                        "invalidArgument",
                        &format!("Invalid search query: {e}"),
                    );
                }
            };
            let hits: Vec<&Message> = data
                .messages
                .iter()
                .filter(|m| matches(sb, m, &query))
                .collect();
            let offset = match req.query_param("pageToken") {
                None => 0,
                Some(t) => match t.strip_prefix('p').and_then(|n| n.parse::<usize>().ok()) {
                    Some(n) if n < hits.len() => n,
                    _ => return google_error(400, "invalidArgument", "Invalid pageToken"),
                },
            };
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
            let Some(m) = data.messages.iter().find(|m| m.id == *id) else {
                return fault_body(404);
            };
            let minted = sb.state().gmail_attachment_ids.get(*att).cloned();
            match minted {
                Some((msg, i, at)) if msg == m.id && sb.now() < at + ATTACHMENT_ID_TTL => {
                    let a = &m.attachments[i];
                    Resp::json(
                        200,
                        &json!({"size": a.data.len(), "data": base64url(&a.data, m.padded)}),
                    )
                }
                // An id from another message, an expired one, or one never given out.
                _ => google_error(400, "invalidArgument", "Invalid attachment token"),
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
