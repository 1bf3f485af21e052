//! VK Ads API v2: OAuth client-credentials tokens (at most 5 live per client; the 6th request
//! gets 403; `token/delete.json` frees them; refresh replaces the access token), 401s with
//! `WWW-Authenticate`, rate-limit headers on every answer, decimals as strings, `expires_in`
//! as a string, listings paged by `limit/offset`, daily statistics where one unknown id fails
//! the whole request.

use chrono::NaiveDate;
use serde_json::{Value, json};

use crate::http::{Req, Resp, form_value};
use crate::rng::Rng;
use crate::{Sandbox, SandboxConfig};

pub const CLIENT_ID: &str = "sandbox-client";
pub const CLIENT_SECRET: &str = "sandbox-secret";
pub const MAX_TOKENS: usize = 5;
pub const MAX_LIMIT: usize = 50;
pub const MAX_STAT_IDS: usize = 200;
pub const DAILY_LIMIT: u64 = 50_000;

pub struct Plan {
    pub id: u64,
    pub name: String,
    pub status: &'static str,
}
pub struct Group {
    pub id: u64,
    pub plan_id: u64,
    pub name: String,
    pub status: &'static str,
}
pub struct Banner {
    pub id: u64,
    pub group_id: u64,
    pub plan_id: u64,
    pub name: String,
    pub status: &'static str,
    pub url: String,
}

pub struct VkData {
    pub plans: Vec<Plan>,
    pub groups: Vec<Group>,
    pub banners: Vec<Banner>,
}

#[derive(Debug, Clone)]
pub struct Token {
    pub access: String,
    pub refresh: String,
    pub expired: bool,
}

impl VkData {
    pub fn generate(cfg: &SandboxConfig) -> VkData {
        let mut rng = Rng::stream(cfg.seed, "vk");
        let (mut plans, mut groups, mut banners) = (Vec::new(), Vec::new(), Vec::new());
        for p in 0..cfg.vk_campaigns {
            let plan_id = 2001 + u64::from(p);
            let status = match p % 7 {
                5 => "blocked",
                6 => "deleted",
                _ => "active",
            };
            plans.push(Plan {
                id: plan_id,
                name: format!("Кампания {plan_id}"),
                status,
            });
            for g in 0..2 {
                let group_id = plan_id * 10 + g;
                groups.push(Group {
                    id: group_id,
                    plan_id,
                    name: format!("Группа {group_id}"),
                    status,
                });
                for b in 0..cfg.vk_banners_per_group {
                    let banner_id = group_id * 100 + u64::from(b);
                    let event = 1001 + rng.range(0, 19);
                    banners.push(Banner {
                        id: banner_id,
                        group_id,
                        plan_id,
                        name: format!("Баннер {banner_id}"),
                        status,
                        url: format!(
                            "https://tickets.example.ru/event/{event}?utm_source=vk&utm_medium=cpc&utm_campaign=plan_{plan_id}&utm_content=banner_{banner_id}&utm_term="
                        ),
                    });
                }
            }
        }
        VkData {
            plans,
            groups,
            banners,
        }
    }
}

/// One banner's base metrics for one day: (shows, clicks, goals, spent in kopecks).
pub fn banner_day(seed: u64, banner_id: u64, date: NaiveDate) -> (u64, u64, u64, i64) {
    let mut rng = Rng::stream(seed, &format!("vk-{banner_id}-{date}"));
    if rng.chance(10) {
        return (0, 0, 0, 0);
    }
    let shows = rng.range(100, 80_000);
    let clicks = shows * rng.range(1, 6) / 1000;
    let goals = clicks / rng.range(5, 50);
    let spent = (shows * rng.range(150, 400) / 1000) as i64 * 100 + rng.range(0, 99) as i64;
    (shows, clicks, goals, spent)
}

fn money(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn vk_error(status: u16, code: &str, message: &str) -> Resp {
    Resp::json(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

fn auth_error(code: &str, message: &str) -> Resp {
    Resp::json(401, &json!({"code": code, "message": message})).with_header(
        "WWW-Authenticate",
        format!("Bearer realm=\"api\", error=\"{code}\", error_description=\"{message}\""),
    )
}

pub fn fault_body(status: u16) -> Resp {
    match status {
        401 => auth_error("expired_token", "Access token is expired"),
        403 => vk_error(403, "ERR_ACCESS_DENIED", "Access denied"),
        429 => vk_error(429, "ERR_LIMIT_EXCEEDED", "Rate limit exceeded"),
        400 => vk_error(400, "ERR_WRONG_PARAMETER", "Wrong parameter"),
        s => vk_error(s, "ERR_INTERNAL", "Internal error"),
    }
}

/// Rate-limit headers, as on every real answer.
pub fn with_rate_headers(sb: &Sandbox, mut resp: Resp) -> Resp {
    let state = sb.state();
    let daily = state.vk_daily_remaining;
    let hourly = daily.min(3600);
    for (name, value) in [
        ("X-RateLimit-RPS-Limit", 10),
        ("X-RateLimit-RPS-Remaining", 9),
        ("X-RateLimit-Hourly-Limit", 3600),
        ("X-RateLimit-Hourly-Remaining", hourly),
        ("X-RateLimit-Daily-Limit", DAILY_LIMIT),
        ("X-RateLimit-Daily-Remaining", daily),
    ] {
        resp.headers.push((name.to_owned(), value.to_string()));
    }
    resp
}

pub fn handle(sb: &Sandbox, req: &Req, path: &str) -> Resp {
    let resp = route(sb, req, path);
    with_rate_headers(sb, resp)
}

fn route(sb: &Sandbox, req: &Req, path: &str) -> Resp {
    match path {
        "/oauth2/token.json" => return token(sb, req),
        "/oauth2/token/delete.json" => return delete_tokens(sb, req),
        _ => {}
    }
    // Every other call needs a live access token.
    {
        let mut state = sb.state();
        let Some(presented) = req.bearer() else {
            return auth_error("invalid_token", "Access token is missing");
        };
        match state.vk_tokens.iter().find(|t| t.access == presented) {
            None => return auth_error("invalid_token", "Access token is invalid"),
            Some(t) if t.expired => return auth_error("expired_token", "Access token is expired"),
            Some(_) => {}
        }
        if state.vk_daily_remaining == 0 {
            return vk_error(429, "ERR_LIMIT_EXCEEDED", "Daily limit exceeded");
        }
        state.vk_daily_remaining -= 1;
    }
    let data = &sb.data.vk;
    match path {
        "/ad_plans.json" => listing(req, data.plans.iter().map(|p| (p.id, p.status, json!({"id": p.id, "name": p.name, "status": p.status}))).collect()),
        "/ad_groups.json" => listing(
            req,
            data.groups.iter().map(|g| (g.id, g.status, json!({"id": g.id, "name": g.name, "status": g.status, "ad_plan_id": g.plan_id}))).collect(),
        ),
        "/banners.json" => listing(
            req,
            data.banners
                .iter()
                .map(|b| {
                    (b.id, b.status, json!({"id": b.id, "name": b.name, "status": b.status, "ad_group_id": b.group_id, "urls": {"primary": {"id": b.id * 7, "url": b.url}}}))
                })
                .collect(),
        ),
        p if p.starts_with("/statistics/") && p.ends_with("/day.json") => statistics(sb, req, &p["/statistics/".len()..p.len() - "/day.json".len()]),
        _ => vk_error(404, "ERR_NOT_FOUND", "Unknown method"),
    }
}

fn token(sb: &Sandbox, req: &Req) -> Resp {
    let form = req.form();
    let grant = form_value(&form, "grant_type").unwrap_or_default();
    let client_ok = form_value(&form, "client_id") == Some(CLIENT_ID)
        && form_value(&form, "client_secret") == Some(CLIENT_SECRET);
    if !client_ok {
        return Resp::json(
            401,
            &json!({"error": "invalid_client", "error_description": "Invalid client credentials"}),
        );
    }
    let mut state = sb.state();
    match grant {
        "client_credentials" | "agency_client_credentials" => {
            if state.vk_tokens.len() >= MAX_TOKENS {
                return Resp::json(
                    403,
                    &json!({"error": "token_limit_exceeded", "error_description": "Active access token limit reached"}),
                );
            }
            state.vk_token_counter += 1;
            let n = state.vk_token_counter;
            let token = Token {
                access: format!("vk-access-{n}"),
                refresh: format!("vk-refresh-{n}"),
                expired: false,
            };
            state.vk_tokens.push(token.clone());
            token_json(&token)
        }
        "refresh_token" => {
            let presented = form_value(&form, "refresh_token").unwrap_or_default();
            state.vk_token_counter += 1;
            let n = state.vk_token_counter;
            match state.vk_tokens.iter_mut().find(|t| t.refresh == presented) {
                Some(t) => {
                    // A refresh invalidates the old access token.
                    t.access = format!("vk-access-{n}");
                    t.expired = false;
                    token_json(&t.clone())
                }
                None => Resp::json(
                    401,
                    &json!({"error": "invalid_grant", "error_description": "Invalid refresh token"}),
                ),
            }
        }
        _ => Resp::json(
            400,
            &json!({"error": "unsupported_grant_type", "error_description": "Unsupported grant type"}),
        ),
    }
}

fn token_json(t: &Token) -> Resp {
    Resp::json(
        200,
        &json!({"access_token": t.access, "token_type": "bearer", "expires_in": "86400", "refresh_token": t.refresh, "tokens_left": 0}),
    )
}

fn delete_tokens(sb: &Sandbox, req: &Req) -> Resp {
    let form = req.form();
    if form_value(&form, "client_id") != Some(CLIENT_ID)
        || form_value(&form, "client_secret") != Some(CLIENT_SECRET)
    {
        return Resp::json(
            401,
            &json!({"error": "invalid_client", "error_description": "Invalid client credentials"}),
        );
    }
    sb.state().vk_tokens.clear();
    Resp::empty(204)
}

fn listing(req: &Req, items: Vec<(u64, &'static str, Value)>) -> Resp {
    let limit = match req.query_param("limit").map(str::parse::<usize>) {
        None => 20,
        Some(Ok(n)) if n >= 1 => n.min(MAX_LIMIT),
        Some(_) => return vk_error(400, "ERR_WRONG_PARAMETER", "limit: wrong value"),
    };
    let offset = req
        .query_param("offset")
        .and_then(|o| o.parse::<usize>().ok())
        .unwrap_or(0);
    let status = req.query_param("_status");
    let ids: Option<Vec<u64>> = req
        .query_param("_id__in")
        .map(|s| s.split(',').filter_map(|i| i.trim().parse().ok()).collect());
    let fields: Vec<&str> = req
        .query_param("fields")
        .map(|f| f.split(',').collect())
        .unwrap_or_else(|| vec!["id"]);
    let matching: Vec<Value> = items
        .into_iter()
        .filter(|(id, st, _)| {
            status.is_none_or(|s| s == *st) && ids.as_ref().is_none_or(|ids| ids.contains(id))
        })
        .map(|(_, _, v)| {
            let mut out = serde_json::Map::new();
            for (k, val) in v.as_object().expect("object") {
                if k == "id" || fields.contains(&k.as_str()) {
                    out.insert(k.clone(), val.clone());
                }
            }
            Value::Object(out)
        })
        .collect();
    let count = matching.len();
    let page: Vec<Value> = matching.into_iter().skip(offset).take(limit).collect();
    Resp::json(
        200,
        &json!({"count": count, "offset": offset, "items": page}),
    )
}

fn statistics(sb: &Sandbox, req: &Req, level: &str) -> Resp {
    let data = &sb.data.vk;
    let (err_code, known): (&str, Vec<u64>) = match level {
        "ad_plans" => (
            "ERR_WRONG_ADPLANS",
            data.plans.iter().map(|p| p.id).collect(),
        ),
        "ad_groups" => (
            "ERR_WRONG_AD_GROUPS",
            data.groups.iter().map(|g| g.id).collect(),
        ),
        "banners" => (
            "ERR_WRONG_BANNERS",
            data.banners.iter().map(|b| b.id).collect(),
        ),
        _ => return vk_error(404, "ERR_NOT_FOUND", "Unknown method"),
    };
    let ids: Vec<u64> = match req.query_param("id").map(|s| {
        s.split(',')
            .map(|i| i.trim().parse::<u64>())
            .collect::<Result<Vec<_>, _>>()
    }) {
        Some(Ok(ids)) if !ids.is_empty() => ids,
        _ => return vk_error(400, "ERR_WRONG_PARAMETER", "id: required list of integers"),
    };
    if ids.len() > MAX_STAT_IDS {
        return vk_error(
            400,
            "ERR_WRONG_PARAMETER",
            "id: too many values, at most 200",
        );
    }
    if let Some(bad) = ids.iter().find(|i| !known.contains(i)) {
        return vk_error(400, err_code, &format!("Unknown id {bad}"));
    }
    let parse = |k: &str| {
        req.query_param(k)
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
    };
    let (Some(from), Some(to)) = (parse("date_from"), parse("date_to")) else {
        return vk_error(
            400,
            "ERR_WRONG_DATE",
            "date_from/date_to: expected YYYY-MM-DD",
        );
    };
    let today = sb.today();
    if from > to || (today - from).num_days() > 366 {
        return vk_error(400, "ERR_WRONG_DATE", "Wrong date range");
    }
    let seed = sb.config.seed;
    let banners_of = |id: u64| -> Vec<u64> {
        data.banners
            .iter()
            .filter(|b| match level {
                "ad_plans" => b.plan_id == id,
                "ad_groups" => b.group_id == id,
                _ => b.id == id,
            })
            .map(|b| b.id)
            .collect()
    };
    let mut grand = [0u64; 3];
    let mut grand_spent = 0i64;
    let items: Vec<Value> = ids
        .iter()
        .map(|id| {
            let banners = banners_of(*id);
            let mut total = [0u64; 3];
            let mut total_spent = 0i64;
            let rows: Vec<Value> = from
                .iter_days()
                .take_while(|d| *d <= to)
                .map(|date| {
                    let (mut shows, mut clicks, mut goals, mut spent) = (0, 0, 0, 0);
                    if date <= today {
                        for b in &banners {
                            let (s, c, g, sp) = banner_day(seed, *b, date);
                            shows += s;
                            clicks += c;
                            goals += g;
                            spent += sp;
                        }
                    }
                    total[0] += shows;
                    total[1] += clicks;
                    total[2] += goals;
                    total_spent += spent;
                    json!({"date": date.to_string(), "base": base(shows, clicks, goals, spent)})
                })
                .collect();
            for i in 0..3 {
                grand[i] += total[i];
            }
            grand_spent += total_spent;
            json!({"id": id, "rows": rows, "total": {"base": base(total[0], total[1], total[2], total_spent)}})
        })
        .collect();
    Resp::json(
        200,
        &json!({"items": items, "total": {"base": base(grand[0], grand[1], grand[2], grand_spent)}}),
    )
}

fn base(shows: u64, clicks: u64, goals: u64, spent: i64) -> Value {
    let ratio = |a: f64, b: f64| {
        if b == 0.0 {
            0.0
        } else {
            (a / b * 10_000.0).round() / 10_000.0
        }
    };
    let cents_per = |per: u64| if per == 0 { 0 } else { spent / per as i64 };
    json!({
        "shows": shows, "clicks": clicks, "goals": goals,
        "spent": money(spent),
        "cpm": money(if shows == 0 { 0 } else { spent * 1000 / shows as i64 }),
        "cpc": money(cents_per(clicks)),
        "cpa": money(cents_per(goals)),
        "ctr": ratio(clicks as f64 * 100.0, shows as f64),
        "cr": ratio(goals as f64 * 100.0, clicks as f64),
        "vk": {"goals": goals, "cpa": if goals == 0 { 0.0 } else { spent as f64 / 100.0 / goals as f64 }, "cr": ratio(goals as f64 * 100.0, clicks as f64)}
    })
}
