//! VK Ads API v2: OAuth client-credentials tokens (at most 5 live per client and user; the 6th
//! request gets 403; `token/delete.json` frees them; refresh replaces the access token; a
//! token expires a day after it was issued, on the sandbox clock), agency clients with
//! their own tokens and ad plans, 401s with `WWW-Authenticate`, rate-limit headers on every
//! answer (a per-second limit that answers 429 with `Retry-After`), decimals as strings,
//! `expires_in` as a string, listings paged by `limit/offset` (`limit` at most 50), UTM on ad
//! groups (`utm` + `enable_utm`, appended by the service to the group's banner URLs),
//! daily statistics for the last 365 days where one unknown id fails the whole request.
//! Groups with `enable_utm` and no `utm` (VK tags their banners itself, [`AUTO_UTM`]);
//! `base.goals` (Top@Mail.ru goals) apart from `base.vk.goals` (VK pixel conversions). On
//! request, integers and booleans as strings (`"123"`, `"true"`, as the docs' type table
//! shows them), and banners deleted between runs (gone from the listing and the statistics).

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
/// A token's lifetime (`expires_in`).
pub const TOKEN_LIFETIME: i64 = 86_400;
/// Days back daily statistics reach.
pub const STATS_DAYS: i64 = 365;

/// `utm_content=<alias>_<dd>_<mm>`: the city aliases the ads use, with one the loaders do not
/// know (kept as is and counted).
pub const CITY_ALIASES: &[&str] = &["msk", "spb", "ekb", "nsk", "kzn", "tula"];

/// What VK appends to a group's banner URLs when `enable_utm` is on and `utm` is empty
/// (VK Ads help, "UTM-метки": medium `cpc`, source `vk_ads`, the group and banner ids as
/// macros). docs/vendor-facts.md has the sources and the variants seen (`vkads`,
/// `mytarget`).
pub const AUTO_UTM: &str =
    "utm_medium=cpc&utm_source=vk_ads&utm_campaign={{campaign_id}}&utm_content={{banner_id}}";

/// The name of the `n`th agency client (1-based).
pub fn agency_client(n: u32) -> String {
    format!("vk-client-{n}")
}

pub struct Plan {
    pub id: u64,
    pub name: String,
    pub status: &'static str,
    /// The user that owns it: `""` for the client itself, else an agency client's name.
    pub owner: String,
}
pub struct Group {
    pub id: u64,
    pub plan_id: u64,
    pub name: String,
    pub status: &'static str,
    /// UTM tags the service appends to every banner URL of the group, when `enable_utm`.
    pub utm: String,
    pub enable_utm: bool,
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
    /// `""` for the client itself, else the agency client's name.
    pub user: String,
    pub issued_at: i64,
    pub expired: bool,
    pub revoked: bool,
}

impl Token {
    fn expired_at(&self, now: i64) -> bool {
        self.expired || now >= self.issued_at + TOKEN_LIFETIME
    }
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
            let owner = match cfg.vk_agency_clients {
                0 => String::new(),
                n => agency_client(p % n + 1),
            };
            plans.push(Plan {
                id: plan_id,
                name: format!("Кампания {plan_id}"),
                status,
                owner,
            });
            for g in 0..2 {
                let group_id = plan_id * 10 + g;
                // Four kinds of group: UTM on the group (the banners carry the rest, some
                // overriding a group tag); UTM text present but switched off; no UTM at all;
                // UTM switched on without text (VK tags the banners itself).
                let kind = (u64::from(p) * 2 + g) % 4;
                let (utm, enable_utm) = match kind {
                    0 => (
                        format!("utm_source=vk&utm_medium=cpc&utm_campaign=plan_{plan_id}"),
                        true,
                    ),
                    1 => ("utm_source=ignored&utm_medium=ignored".to_owned(), false),
                    3 => (String::new(), true),
                    _ => (String::new(), false),
                };
                groups.push(Group {
                    id: group_id,
                    plan_id,
                    name: format!("Группа {group_id}"),
                    status,
                    utm,
                    enable_utm,
                });
                for b in 0..cfg.vk_banners_per_group {
                    let banner_id = group_id * 100 + u64::from(b);
                    let event = 1001 + rng.range(0, 19);
                    let alias = rng.pick(CITY_ALIASES);
                    let content =
                        format!("{alias}_{:02}_{:02}", rng.range(1, 28), rng.range(1, 12));
                    let query = match kind {
                        0 if b % 2 == 1 => {
                            format!("utm_content={content}&utm_campaign=banner_{banner_id}")
                        }
                        0 => format!("utm_content={content}"),
                        // Auto-tagged: the banner names its city, VK adds the rest.
                        3 => format!("utm_content={content}"),
                        _ => format!(
                            "utm_source=vk&utm_medium=cpc&utm_campaign=plan_{plan_id}&utm_content={content}&utm_term="
                        ),
                    };
                    banners.push(Banner {
                        id: banner_id,
                        group_id,
                        plan_id,
                        name: format!("Баннер {banner_id}"),
                        status,
                        url: format!("https://tickets.example.ru/event/{event}?{query}"),
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

    fn owner_of_plan(&self, plan_id: u64) -> &str {
        self.plans
            .iter()
            .find(|p| p.id == plan_id)
            .map_or("", |p| p.owner.as_str())
    }
}

/// One banner's base metrics for one day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Day {
    pub shows: u64,
    pub clicks: u64,
    /// `base.goals`: Top@Mail.ru counter goals.
    pub goals: u64,
    /// `base.vk.goals`: VK pixel conversions (the team's capture: 0 goals, 3 of these).
    pub vk_goals: u64,
    /// Kopecks.
    pub spent: i64,
}

impl std::ops::AddAssign for Day {
    fn add_assign(&mut self, o: Day) {
        self.shows += o.shows;
        self.clicks += o.clicks;
        self.goals += o.goals;
        self.vk_goals += o.vk_goals;
        self.spent += o.spent;
    }
}

pub fn banner_day(seed: u64, banner_id: u64, date: NaiveDate) -> Day {
    let mut rng = Rng::stream(seed, &format!("vk-{banner_id}-{date}"));
    if rng.chance(10) {
        return Day::default();
    }
    let shows = rng.range(100, 80_000);
    let clicks = shows * rng.range(1, 6) / 1000;
    let goals = clicks / rng.range(5, 50);
    // 15–40 kopecks per show: a demo day of ads costs about what the demo sells.
    let spent = (shows * rng.range(15, 40) / 1000) as i64 * 100 + rng.range(0, 99) as i64;
    // Pixel conversions: more than the counter's goals, never the same series.
    let vk_goals = clicks / rng.range(3, 20) + rng.range(0, 2);
    Day {
        shows,
        clicks,
        goals,
        vk_goals,
        spent,
    }
}

/// Whether a banner is still there after the deletions `/config {"vk_banners_kept_percent"}`
/// asks for (deterministic per banner).
pub fn banner_kept(seed: u64, banner_id: u64, kept_percent: u64) -> bool {
    kept_percent >= 100
        || Rng::stream(seed, &format!("vk-kept-{banner_id}")).range(0, 99) < kept_percent
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
        404 => vk_error(404, "ERR_WRONG_RESOURCE", "Unknown resource"),
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
    let rps = state.vk_rps_limit;
    let rps_left = rps.saturating_sub(state.vk_rps_window.1);
    for (name, value) in [
        ("X-RateLimit-RPS-Limit", rps),
        ("X-RateLimit-RPS-Remaining", rps_left),
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
    // Every other call needs a live access token, and counts against the limits.
    let user = {
        let now = sb.now();
        let mut state = sb.state();
        let Some(presented) = req.bearer() else {
            return auth_error("invalid_token", "Access token is missing");
        };
        let user = match state.vk_tokens.iter().find(|t| t.access == presented) {
            None => return auth_error("invalid_token", "Access token is invalid"),
            Some(t) if t.revoked => return auth_error("revoked_token", "Access token is revoked"),
            Some(t) if t.expired_at(now) => {
                return auth_error("expired_token", "Access token is expired");
            }
            Some(t) => t.user.clone(),
        };
        if state.vk_daily_remaining == 0 {
            return vk_error(429, "ERR_LIMIT_EXCEEDED", "Daily limit exceeded");
        }
        let window = sb.wall_ms() / state.vk_rps_window_ms.max(1);
        if state.vk_rps_window.0 != window {
            state.vk_rps_window = (window, 0);
        }
        if state.vk_rps_window.1 >= state.vk_rps_limit {
            return vk_error(429, "ERR_LIMIT_EXCEEDED", "Too many requests per second")
                .with_header("Retry-After", "1");
        }
        state.vk_rps_window.1 += 1;
        state.vk_daily_remaining -= 1;
        user
    };
    let data = &sb.data.vk;
    let (ghosts, kept, strings) = {
        let state = sb.state();
        (
            state.vk_ghost_banners.clone(),
            state.vk_banners_kept_percent,
            state.vk_strings,
        )
    };
    let seed = sb.config.seed;
    let owns = |plan_id: u64| data.owner_of_plan(plan_id) == user;
    match path {
        "/ad_plans.json" => listing(
            req,
            strings,
            data.plans
                .iter()
                .filter(|p| p.owner == user)
                .map(|p| -> Item<'_> {
                    (p.id, p.status, Box::new(move || json!({"id": p.id, "name": p.name, "status": p.status})))
                })
                .collect(),
        ),
        "/ad_groups.json" => listing(
            req,
            strings,
            data.groups
                .iter()
                .filter(|g| owns(g.plan_id))
                .map(|g| -> Item<'_> {
                    (g.id, g.status, Box::new(move || json!({"id": g.id, "name": g.name, "status": g.status, "ad_plan_id": g.plan_id, "utm": g.utm, "enable_utm": g.enable_utm})))
                })
                .collect(),
        ),
        "/banners.json" => {
            let mut items: Vec<Item<'_>> = data
                .banners
                .iter()
                .filter(|b| owns(b.plan_id) && banner_kept(seed, b.id, kept))
                .map(|b| -> Item<'_> {
                    (b.id, b.status, Box::new(move || json!({"id": b.id, "name": b.name, "status": b.status, "ad_group_id": b.group_id, "urls": {"primary": {"id": b.id * 7, "url": b.url}}})))
                })
                .collect();
            // A banner the listing shows and the statistics do not know (deleted meanwhile).
            if let Some(first) = data.banners.iter().find(|b| owns(b.plan_id)) {
                for id in ghosts {
                    items.push((id, "active", Box::new(move || json!({"id": id, "name": format!("Баннер {id}"), "status": "active", "ad_group_id": first.group_id, "urls": {"primary": {"id": id * 7, "url": first.url}}}))));
                }
            }
            listing(req, strings, items)
        }
        p if p.starts_with("/statistics/") && p.ends_with("/day.json") => statistics(sb, req, &user, &p["/statistics/".len()..p.len() - "/day.json".len()]),
        _ => vk_error(404, "ERR_WRONG_RESOURCE", "Unknown resource"),
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
    let now = sb.now();
    let mut state = sb.state();
    match grant {
        "client_credentials" | "agency_client_credentials" => {
            let user = if grant == "client_credentials" {
                String::new()
            } else {
                let name = form_value(&form, "agency_client_name").unwrap_or_default();
                let known = (1..=sb.config.vk_agency_clients).any(|n| agency_client(n) == name);
                if !known {
                    return Resp::json(
                        400,
                        &json!({"error": "invalid_request", "error_description": format!("Unknown agency client `{name}`")}),
                    );
                }
                name.to_owned()
            };
            if state.vk_tokens.iter().filter(|t| t.user == user).count() >= MAX_TOKENS {
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
                user,
                issued_at: now,
                expired: false,
                revoked: false,
            };
            state.vk_tokens.push(token.clone());
            token_json(&token)
        }
        "refresh_token" => {
            let presented = form_value(&form, "refresh_token").unwrap_or_default();
            state.vk_token_counter += 1;
            let n = state.vk_token_counter;
            match state
                .vk_tokens
                .iter_mut()
                .find(|t| t.refresh == presented && !t.revoked)
            {
                Some(t) => {
                    // A refresh invalidates the old access token.
                    t.access = format!("vk-access-{n}");
                    t.expired = false;
                    t.issued_at = now;
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
    // `username`: only that agency client's tokens; without it every token of the client.
    let user = form_value(&form, "username").map(str::to_owned);
    sb.state()
        .vk_tokens
        .retain(|t| user.as_ref().is_some_and(|u| *u != t.user));
    Resp::empty(204)
}

/// A listing item: id, status, and its JSON, built only when the item is on the page asked
/// for (a listing of thousands served 50 at a time must not build them all every time).
type Item<'a> = (u64, &'static str, Box<dyn Fn() -> Value + 'a>);

fn listing(req: &Req, strings: bool, items: Vec<Item<'_>>) -> Resp {
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
    let matching: Vec<Item<'_>> = items
        .into_iter()
        .filter(|(id, st, _)| {
            status.is_none_or(|s| s == *st) && ids.as_ref().is_none_or(|ids| ids.contains(id))
        })
        .collect();
    let count = matching.len();
    let page: Vec<Value> = matching
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|(_, _, render)| {
            let v = render();
            let v = if strings { stringly(v) } else { v };
            let mut out = serde_json::Map::new();
            for (k, val) in v.as_object().expect("object") {
                if k == "id" || fields.contains(&k.as_str()) {
                    out.insert(k.clone(), val.clone());
                }
            }
            Value::Object(out)
        })
        .collect();
    Resp::json(
        200,
        &json!({"count": count, "offset": offset, "limit": limit, "items": page}),
    )
}

fn statistics(sb: &Sandbox, req: &Req, user: &str, level: &str) -> Resp {
    let data = &sb.data.vk;
    let owns = |plan_id: u64| data.owner_of_plan(plan_id) == user;
    let (err_code, known): (String, Vec<u64>) = match level {
        "ad_plans" => (
            sb.state().vk_plans_error.clone(),
            data.plans
                .iter()
                .filter(|p| p.owner == user)
                .map(|p| p.id)
                .collect(),
        ),
        "ad_groups" => (
            "ERR_WRONG_AD_GROUPS".to_owned(),
            data.groups
                .iter()
                .filter(|g| owns(g.plan_id))
                .map(|g| g.id)
                .collect(),
        ),
        "banners" => (
            "ERR_WRONG_BANNERS".to_owned(),
            data.banners
                .iter()
                .filter(|b| {
                    owns(b.plan_id)
                        && (sb.state().vk_deleted_keep_stats
                            || banner_kept(sb.config.seed, b.id, state_kept(sb)))
                })
                .map(|b| b.id)
                .collect(),
        ),
        _ => return vk_error(404, "ERR_WRONG_RESOURCE", "Unknown object type"),
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
            "ERR_LIMIT_EXCEEDED",
            "id: too many values, at most 200",
        );
    }
    // Like the real service, the message does not say which id is unknown.
    if ids.iter().any(|i| !known.contains(i)) {
        return vk_error(400, &err_code, "Some of the objects are not found");
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
    if from > to || (today - from).num_days() > STATS_DAYS {
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
    let strings = sb.state().vk_strings;
    let mut grand = Day::default();
    let items: Vec<Value> = ids
        .iter()
        .map(|id| {
            let banners = banners_of(*id);
            let mut total = Day::default();
            let rows: Vec<Value> = from
                .iter_days()
                .take_while(|d| *d <= to)
                .map(|date| {
                    let mut day = Day::default();
                    if date <= today {
                        for b in &banners {
                            day += banner_day(seed, *b, date);
                        }
                    }
                    total += day;
                    json!({"date": date.to_string(), "base": base(day, strings)})
                })
                .collect();
            grand += total;
            let id = if strings {
                json!(id.to_string())
            } else {
                json!(id)
            };
            json!({"id": id, "rows": rows, "total": {"base": base(total, strings)}})
        })
        .collect();
    Resp::json(
        200,
        &json!({"items": items, "total": {"base": base(grand, strings)}}),
    )
}

fn state_kept(sb: &Sandbox) -> u64 {
    sb.state().vk_banners_kept_percent
}

/// Integers and booleans as strings, as the docs' type table shows them (`"123"`,
/// `"true"`); nested objects too.
fn stringly(v: Value) -> Value {
    match v {
        Value::Number(n) if n.is_u64() || n.is_i64() => Value::String(n.to_string()),
        Value::Bool(b) => Value::String(b.to_string()),
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, stringly(v))).collect()),
        Value::Array(items) => Value::Array(items.into_iter().map(stringly).collect()),
        other => other,
    }
}

fn base(day: Day, strings: bool) -> Value {
    let Day {
        shows,
        clicks,
        goals,
        vk_goals,
        spent,
    } = day;
    let ratio = |a: f64, b: f64| {
        if b == 0.0 {
            0.0
        } else {
            (a / b * 10_000.0).round() / 10_000.0
        }
    };
    let cents_per = |per: u64| if per == 0 { 0 } else { spent / per as i64 };
    let v = json!({
        "shows": shows, "clicks": clicks, "goals": goals,
        "spent": money(spent),
        "cpm": money(if shows == 0 { 0 } else { spent * 1000 / shows as i64 }),
        "cpc": money(cents_per(clicks)),
        "cpa": money(cents_per(goals)),
        "ctr": ratio(clicks as f64 * 100.0, shows as f64),
        "cr": ratio(goals as f64 * 100.0, clicks as f64),
        "vk": {"goals": vk_goals, "cpa": if vk_goals == 0 { 0.0 } else { spent as f64 / 100.0 / vk_goals as f64 }, "cr": ratio(vk_goals as f64 * 100.0, clicks as f64)}
    });
    if strings { stringly(v) } else { v }
}
