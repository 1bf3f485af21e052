//! Gmail API v1 and Google's OAuth token endpoint: refresh-token grant (a bad client is
//! `invalid_client`, a dead refresh token `invalid_grant`), message search paged by
//! `nextPageToken` (an invalid token is an error, not page 1) with no `messages` key when
//! nothing matches, the search language's dates (`after:`/`before:` a date are midnight
//! Pacific time, or epoch seconds; `newer_than:`/`older_than:`), `OR`, `{…}`, `(…)` and `-`;
//! a word that is no Gmail operator (`subjet:x`) is searched as text and finds nothing, as
//! Gmail does, while a Gmail operator the sandbox does not model is 400 (never a silently
//! wrong result). `internalDate` as a string, the headers a delivered mail carries (Google's
//! `Authentication-Results` first, the sender's `Date:`), MIME trees with base64url bodies
//! (padded or not), attachments fetched separately by ids that change with every fetch of
//! the message and expire, labels by id, Google's error bodies (`error.status` canonical,
//! `error.errors[].reason`; a rate-limit 403 says when to retry). Sales reports arrive as CSV
//! (UTF-8 or Windows-1251, `;` or `,`, decimal comma), XLSX, or an HTML table — one of them
//! UTF-8 under a `windows-1251` header — among unrelated mail; tests add hostile, spoofed or
//! misdated mail with `POST /_sandbox/gmail/messages`.

use std::sync::Arc;

use chrono::NaiveDate;
use serde_json::{Value, json};

use crate::encode::{base64url, cp1251, xlsx, zip_stored};
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

#[derive(Debug, Clone)]
pub struct Attachment {
    pub id: String,
    pub filename: String,
    pub mime: String,
    pub data: Vec<u8>,
    /// The `size` the API states instead of the real one (a mail too large to serve).
    pub declared_size: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub subject: String,
    pub from: String,
    /// When Google received it (`internalDate`).
    pub internal_ms: i64,
    /// The sender's `Date:` header: its claim, not Google's.
    pub date_header: String,
    /// `Authentication-Results` headers, top first: the first is Google's own verdict, any
    /// further one came with the mail (anyone can write one).
    pub authentication_results: Vec<String>,
    pub text: String,
    pub html: Option<String>,
    /// The charset the HTML part declares (not always the one its bytes are in).
    pub html_charset: &'static str,
    pub attachments: Vec<Attachment>,
    pub padded: bool,
}

/// The address of a `From:` value (`Name <user@domain>` or `user@domain`).
fn address(from: &str) -> &str {
    match (from.rfind('<'), from.rfind('>')) {
        (Some(a), Some(b)) if a < b => &from[a + 1..b],
        _ => from.trim(),
    }
}

/// What Google writes into `Authentication-Results` for a mail from `from`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Auth {
    /// DKIM-signed by the From domain, SPF passed for it.
    Pass,
    /// Sent through a mailing service: two DKIM signatures (the From domain's and the
    /// service's), SPF for the service's bounce domain only.
    ViaService,
    /// Not signed; SPF passed for a subdomain of the From domain.
    SpfSubdomain,
    /// Someone else's mail under the From domain: DKIM fails, SPF soft-fails, DMARC fails —
    /// and the sender wrote a passing `Authentication-Results` of its own further down.
    Spoofed,
    /// Neither signed nor covered by SPF.
    None,
}

impl Auth {
    fn parse(name: &str) -> Option<Auth> {
        Some(match name {
            "pass" => Auth::Pass,
            "via_service" => Auth::ViaService,
            "spf_subdomain" => Auth::SpfSubdomain,
            "spoofed" => Auth::Spoofed,
            "none" => Auth::None,
            _ => return Option::None,
        })
    }

    /// The headers, top first, in mx.google.com's format (folded as delivered).
    pub fn headers(self, from: &str) -> Vec<String> {
        let addr = address(from).to_ascii_lowercase();
        let (local, domain) = addr.rsplit_once('@').unwrap_or(("reports", addr.as_str()));
        let pass = format!(
            "mx.google.com;\r\n       dkim=pass header.i=@{domain} header.s=s1 header.b=AbCdEf12;\r\n       spf=pass (google.com: domain of {addr} designates 1.2.3.4 as permitted sender) smtp.mailfrom={addr};\r\n       dmarc=pass (p=NONE sp=NONE dis=NONE) header.from={domain}"
        );
        match self {
            Auth::Pass => vec![pass],
            Auth::ViaService => vec![format!(
                "mx.google.com; dkim=pass header.i=@{domain} header.s=s1 header.b=AbCdEf12; dkim=pass header.i=@sendgrid.net header.s=smtpapi header.b=Zx9YwV8u; spf=pass (google.com: domain of \"bounces+1234@em.sendgrid.net\" designates 167.89.0.1 as permitted sender) smtp.mailfrom=\"bounces+1234@em.sendgrid.net\"; dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from={domain}"
            )],
            Auth::SpfSubdomain => vec![format!(
                "mx.google.com; spf=pass (google.com: domain of {local}@mail.{domain} designates 1.2.3.5 as permitted sender) smtp.mailfrom={local}@mail.{domain}; dmarc=pass (p=NONE sp=NONE dis=NONE) header.from={domain}"
            )],
            Auth::Spoofed => vec![
                format!(
                    "mx.google.com;\r\n       dkim=fail header.i=@{domain} header.s=s1 header.b=AbCdEf12;\r\n       spf=softfail (google.com: domain of transitioning {addr} does not designate 203.0.113.7 as permitted sender) smtp.mailfrom={addr};\r\n       dmarc=fail (p=NONE sp=NONE dis=NONE) header.from={domain}"
                ),
                pass,
            ],
            Auth::None => vec![format!(
                "mx.google.com; spf=none (google.com: {addr} does not designate permitted sender hosts) smtp.mailfrom={addr}; dmarc=fail (p=NONE sp=NONE dis=NONE) header.from={domain}"
            )],
        }
    }
}

/// A `Date:` header: the sender's clock, a couple of minutes before Google received it.
fn date_header(internal_ms: i64) -> String {
    let sent = internal_ms.div_euclid(1000) - 120;
    chrono::DateTime::from_timestamp(sent, 0)
        .unwrap_or_default()
        .with_timezone(&chrono::FixedOffset::east_opt(3 * 3600).expect("+03:00"))
        .to_rfc2822()
}

pub struct GmailData {
    /// Newest first.
    pub messages: Vec<Arc<Message>>,
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
            let from = "QTickets <reports@qtickets.ru>";
            let auth = [Auth::Pass, Auth::ViaService, Auth::SpfSubdomain][i as usize % 3];
            let mut message = Message {
                id: id.clone(),
                subject,
                from: from.to_owned(),
                internal_ms,
                date_header: date_header(internal_ms),
                authentication_results: auth.headers(from),
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
                        declared_size: None,
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
                        declared_size: None,
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
                        declared_size: None,
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
                    date_header: date_header(internal_ms + 3_600_000),
                    authentication_results: Auth::Pass.headers("news@example.org"),
                    text: "Рассылка без вложений.".into(),
                    html: None,
                    html_charset: "UTF-8",
                    attachments: Vec::new(),
                    padded: false,
                });
            }
        }
        messages.sort_by_key(|m| std::cmp::Reverse(m.internal_ms));
        GmailData {
            messages: messages.into_iter().map(Arc::new).collect(),
            reports,
        }
    }
}

/// Google's error body: `status` is the canonical code of the HTTP status, `reason` the
/// finer one.
fn google_error(status: u16, reason: &str, message: &str) -> Resp {
    google_error_in(status, "global", reason, message)
}

fn google_error_in(status: u16, domain: &str, reason: &str, message: &str) -> Resp {
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
        &json!({"error": {"code": status, "message": message, "errors": [{"domain": domain, "reason": reason, "message": message}], "status": canonical}}),
    )
}

pub fn fault_body(status: u16) -> Resp {
    match status {
        401 => google_error(401, "authError", "Invalid Credentials"),
        403 => google_error_in(
            403,
            "usageLimits",
            "userRateLimitExceeded",
            "User-rate limit exceeded",
        ),
        429 => google_error(
            429,
            "rateLimitExceeded",
            "Too many concurrent requests for user",
        ),
        404 => google_error(404, "notFound", "Requested entity was not found."),
        s => google_error(s, "backendError", "Backend Error"),
    }
}

/// The body of an injected fault as of the sandbox clock: a rate-limit 403 names the instant
/// to retry after (a second from now), as Gmail's do.
pub fn fault_body_at(status: u16, now: i64) -> Resp {
    if status != 403 {
        return fault_body(status);
    }
    let at = chrono::DateTime::from_timestamp(now + 1, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    google_error_in(
        403,
        "usageLimits",
        "userRateLimitExceeded",
        &format!("User-rate limit exceeded.  Retry after {at}"),
    )
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

/// Gmail's documented search operators (`word:`); any other `word:` is plain text to Gmail.
pub const OPERATORS: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "label",
    "has",
    "filename",
    "in",
    "is",
    "category",
    "after",
    "before",
    "older",
    "newer",
    "older_than",
    "newer_than",
    "size",
    "larger",
    "smaller",
    "list",
    "deliveredto",
    "rfc822msgid",
];

fn atom(token: &str, now: i64) -> Result<Query, String> {
    let Some((key, value)) = token.split_once(':').filter(|(k, _)| !k.starts_with('"')) else {
        return Ok(Query::Word(token.trim_matches('"').to_lowercase()));
    };
    let lower = key.to_ascii_lowercase();
    if !OPERATORS.contains(&lower.as_str()) {
        // No operator: Gmail searches the text `subjet:x`, which finds nothing.
        return Ok(Query::Word(token.trim_matches('"').to_lowercase()));
    }
    let value = value.trim_matches('"');
    Ok(match lower.as_str() {
        "label" | "in" => Query::Label(value.to_owned()),
        "is" if value.eq_ignore_ascii_case("unread") => Query::Label("UNREAD".into()),
        "subject" => Query::Subject(value.to_lowercase()),
        "from" => Query::From(value.to_lowercase()),
        "has" if value == "attachment" => Query::HasAttachment,
        "filename" => Query::Filename(value.to_lowercase()),
        "after" | "newer" => Query::After(search_instant(value)?),
        "before" | "older" => Query::Before(search_instant(value)?),
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
            "body": {"attachmentId": attachment_id, "size": a.declared_size.unwrap_or(a.data.len() as u64)}
        }));
    }
    let received = chrono::DateTime::from_timestamp(m.internal_ms.div_euclid(1000), 0)
        .unwrap_or_default()
        .with_timezone(&chrono_tz::America::Los_Angeles)
        .format("%a, %d %b %Y %H:%M:%S %z (%Z)")
        .to_string();
    let sender = address(&m.from).to_ascii_lowercase();
    let sender_domain = sender.rsplit_once('@').map_or("", |(_, d)| d).to_owned();
    let mut headers = vec![
        json!({"name": "Delivered-To", "value": "sales@example.ru"}),
        json!({"name": "Received", "value": format!("by 2002:a05:6a10:8e0c:b0:5c1:1e2f:1a2b with SMTP id d12csp123456pxb;\r\n        {received}")}),
        json!({"name": "ARC-Seal", "value": "i=1; a=rsa-sha256; t=1764028800; cv=none; d=google.com; s=arc-20240605; b=QmFzZTY0U2lnbmF0dXJl"}),
    ];
    if let Some(google) = m.authentication_results.first() {
        headers
            .push(json!({"name": "ARC-Authentication-Results", "value": format!("i=1; {google}")}));
    }
    headers.push(json!({"name": "Return-Path", "value": format!("<{sender}>")}));
    headers.push(json!({"name": "Received", "value": format!("from mail.{sender_domain} (mail.{sender_domain}. [1.2.3.4])\r\n        by mx.google.com with ESMTPS id a1si123456lfb.42.2026.11.25\r\n        for <sales@example.ru>;\r\n        {received}")}));
    // Google's verdict sits above its `Received:` line; a header that came with the mail
    // sits below it.
    for (i, value) in m.authentication_results.iter().enumerate() {
        if i == 1 {
            headers.push(json!({"name": "Received", "value": format!("from localhost by mail.{sender_domain}; {}", m.date_header)}));
        }
        headers.push(json!({"name": "Authentication-Results", "value": value}));
    }
    for (name, value) in [
        (
            "DKIM-Signature",
            format!(
                "v=1; a=rsa-sha256; c=relaxed/relaxed; d={sender_domain}; s=s1; h=from:to:subject:date; bh=Ym9keQ==; b=AbCdEf12"
            ),
        ),
        ("Date", m.date_header.clone()),
        ("From", m.from.clone()),
        ("To", "sales@example.ru".to_owned()),
        ("Subject", m.subject.clone()),
        ("Message-ID", format!("<{}@mail.example>", m.id)),
        ("MIME-Version", "1.0".to_owned()),
        (
            "Content-Type",
            "multipart/mixed; boundary=\"000000000000a1b2c3\"".to_owned(),
        ),
    ] {
        headers.push(json!({"name": name, "value": value}));
    }
    json!({
        "id": m.id, "threadId": m.id, "labelIds": labels_of(sb, &m.id),
        "snippet": m.text.chars().take(100).collect::<String>(),
        "internalDate": m.internal_ms.to_string(),
        "sizeEstimate": 2048,
        "payload": {
            "partId": "", "mimeType": "multipart/mixed", "filename": "",
            "headers": headers,
            "body": {"size": 0},
            "parts": parts
        }
    })
}

/// Every message: the generated ones and those a test added.
fn all_messages(sb: &Sandbox) -> Vec<Arc<Message>> {
    let mut all: Vec<Arc<Message>> = sb.state().gmail_extra.clone();
    if all.is_empty() {
        return sb.data.gmail.messages.clone();
    }
    all.extend(sb.data.gmail.messages.iter().cloned());
    all.sort_by_key(|m| std::cmp::Reverse(m.internal_ms));
    all
}

fn find_message(sb: &Sandbox, id: &str) -> Option<Arc<Message>> {
    if let Some(m) = sb.data.gmail.messages.iter().find(|m| m.id == id) {
        return Some(m.clone());
    }
    sb.state().gmail_extra.iter().find(|m| m.id == id).cloned()
}

fn rfc3339_ms(body: &Value, key: &str, default: i64) -> Result<i64, String> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_millis())
            .map_err(|e| format!("`{key}`: {e}")),
        Some(other) => Err(format!("`{key}`: {other} is not an RFC 3339 timestamp")),
    }
}

/// A one-sheet XLSX with the cells where their references say (`A1`, `XFD1048576`), strings
/// inline, and an optional `<dimension>` claim.
pub fn xlsx_cells(cells: &[(String, String)], dimension: Option<&str>) -> Vec<u8> {
    let row_of = |r: &str| -> u64 {
        r.trim_start_matches(|c: char| c.is_ascii_alphabetic())
            .parse()
            .unwrap_or(1)
    };
    let mut sorted: Vec<&(String, String)> = cells.iter().collect();
    sorted.sort_by_key(|(r, _)| row_of(r));
    let mut sheet = String::from(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">"#,
    );
    if let Some(d) = dimension {
        sheet.push_str(&format!(r#"<dimension ref="{d}"/>"#));
    }
    sheet.push_str("<sheetData>");
    let mut open: Option<u64> = None;
    for (r, v) in sorted {
        let row = row_of(r);
        if open != Some(row) {
            if open.is_some() {
                sheet.push_str("</row>");
            }
            sheet.push_str(&format!(r#"<row r="{row}">"#));
            open = Some(row);
        }
        let v = v.replace('&', "&amp;").replace('<', "&lt;");
        sheet.push_str(&format!(
            r#"<c r="{r}" t="inlineStr"><is><t>{v}</t></is></c>"#
        ));
    }
    if open.is_some() {
        sheet.push_str("</row>");
    }
    sheet.push_str("</sheetData></worksheet>");
    zip_stored(&[
        ("[Content_Types].xml", br#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>"#.to_vec()),
        ("_rels/.rels", br#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#.to_vec()),
        ("xl/workbook.xml", br#"<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Sales" sheetId="1" r:id="rId1"/></sheets></workbook>"#.to_vec()),
        ("xl/_rels/workbook.xml.rels", br#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#.to_vec()),
        ("xl/worksheets/sheet1.xml", sheet.into_bytes()),
    ])
}

/// `POST /_sandbox/gmail/messages`: add a mail to the mailbox (until `reset`). Fields, all
/// optional: `id`, `subject`, `from`, `internal_date` (RFC 3339; default now), `date`
/// (RFC 3339, the sender's `Date:`; default a little before `internal_date`) or
/// `date_header` (verbatim), `auth` (`pass`, `via_service`, `spf_subdomain`, `spoofed`,
/// `none`) or `authentication_results` (verbatim values, top first), `text`, `html`,
/// `html_charset`, `attachments`: `[{filename, mime?, text | xlsx_rows | xlsx_cells
/// ([[ref, value]]) + xlsx_dimension?, declared_size?}]`.
pub fn inject(sb: &Sandbox, body: &Value) -> Resp {
    match injected(sb, body) {
        Ok(m) => {
            let id = m.id.clone();
            sb.state().gmail_extra.push(Arc::new(m));
            Resp::json(200, &json!({"ok": true, "id": id}))
        }
        Err(e) => Resp::json(400, &json!({"error": e})),
    }
}

fn injected(sb: &Sandbox, body: &Value) -> Result<Message, String> {
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    let now = sb.now();
    let internal_ms = rfc3339_ms(body, "internal_date", now * 1000)?;
    let date_header = match (text("date_header"), body.get("date")) {
        (Some(h), _) => h,
        (None, Some(_)) => date_header(rfc3339_ms(body, "date", 0)? + 120_000),
        (None, None) => date_header(internal_ms),
    };
    let from = text("from").unwrap_or_else(|| "QTickets <reports@qtickets.ru>".into());
    let authentication_results = match body.get("authentication_results") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or("`authentication_results` must be strings")?,
        _ => {
            let name = text("auth").unwrap_or_else(|| "pass".into());
            Auth::parse(&name)
                .ok_or_else(|| format!("unknown `auth` {name}"))?
                .headers(&from)
        }
    };
    let n = sb.state().gmail_extra.len();
    let id = text("id").unwrap_or_else(|| format!("19e{:013x}", 0x1000 + n as u64));
    let mut attachments = Vec::new();
    for (i, a) in body
        .get("attachments")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let filename = a
            .get("filename")
            .and_then(Value::as_str)
            .unwrap_or("report.csv")
            .to_owned();
        let strings = |v: &Value| -> Option<Vec<String>> {
            v.as_array()?
                .iter()
                .map(|c| c.as_str().map(str::to_owned))
                .collect()
        };
        let data = if let Some(t) = a.get("text").and_then(Value::as_str) {
            t.as_bytes().to_vec()
        } else if let Some(rows) = a.get("xlsx_rows").and_then(Value::as_array) {
            let rows: Vec<Vec<String>> = rows
                .iter()
                .map(strings)
                .collect::<Option<_>>()
                .ok_or("`xlsx_rows` must be rows of strings")?;
            xlsx(&rows)
        } else if let Some(cells) = a.get("xlsx_cells").and_then(Value::as_array) {
            let cells: Vec<(String, String)> = cells
                .iter()
                .map(|c| match strings(c)?.as_slice() {
                    [r, v] => Some((r.clone(), v.clone())),
                    _ => None,
                })
                .collect::<Option<_>>()
                .ok_or("`xlsx_cells` must be [reference, value] pairs")?;
            xlsx_cells(&cells, a.get("xlsx_dimension").and_then(Value::as_str))
        } else {
            return Err(format!(
                "attachment {i}: give `text`, `xlsx_rows` or `xlsx_cells`"
            ));
        };
        let mime = a.get("mime").and_then(Value::as_str).map_or_else(
            || {
                if filename.ends_with(".xlsx") {
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet".into()
                } else {
                    "text/csv".into()
                }
            },
            str::to_owned,
        );
        attachments.push(Attachment {
            id: format!("ANGj{id}{i}"),
            filename,
            mime,
            data,
            declared_size: a.get("declared_size").and_then(Value::as_u64),
        });
    }
    Ok(Message {
        subject: text("subject").unwrap_or_else(|| "Отчёт о продажах".into()),
        from,
        internal_ms,
        date_header,
        authentication_results,
        text: text("text").unwrap_or_else(|| "Отчёт о продажах.".into()),
        html: text("html"),
        html_charset: match text("html_charset").as_deref() {
            Some("windows-1251") => "windows-1251",
            _ => "UTF-8",
        },
        attachments,
        padded: false,
        id,
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
            let hits: Vec<Arc<Message>> = all_messages(sb)
                .into_iter()
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
        ("GET", ["messages", id]) => match find_message(sb, id) {
            Some(m) => Resp::json(200, &message_json(sb, &m)),
            None => fault_body(404),
        },
        ("GET", ["messages", id, "attachments", att]) => {
            let Some(m) = find_message(sb, id) else {
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
            if find_message(sb, id).is_none() {
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
