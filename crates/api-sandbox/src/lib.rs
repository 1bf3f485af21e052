//! `api-sandbox`: a faithful local stand-in for QTickets, VK Ads, Yandex Direct, Gmail and
//! Telegram, with the quirks of the real services (see `docs/remote-apis.md` of the shared
//! docs), deterministic data from a seed, fault injection and a request log for tests.
//!
//! One port, one path prefix per service: `/qtickets/api/rest/v1/…`, `/vk/api/v2/…`,
//! `/direct/json/v5/reports`, `/gmail/gmail/v1/users/me/…`, `/google/token`,
//! `/telegram/bot<TOKEN>/sendMessage`; the control API lives under `/_sandbox/`.

pub mod direct;
pub mod encode;
pub mod gmail;
pub mod http;
pub mod qtickets;
pub mod rng;
pub mod telegram;
pub mod vk;
pub mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use clap::{Args, Parser};
use serde_json::{Value, json};
use zakaz_core::cli::{CommonArgs, JobCli};
use zakaz_core::error::config_error;

use crate::http::{Req, Resp};
use crate::rng::Rng;

/// Every credential the sandbox accepts (documented in `docs/sandbox.md`).
pub mod credentials {
    pub const TOKEN: &str = "sandbox-token";
    pub const CLIENT_ID: &str = "sandbox-client";
    pub const CLIENT_SECRET: &str = "sandbox-secret";
    pub const GOOGLE_REFRESH_TOKEN: &str = "sandbox-refresh";
}

/// The data a sandbox serves: all of it follows from these numbers.
#[derive(Debug, Clone, Args)]
pub struct SandboxConfig {
    /// Seed of the generated data; the same seed serves byte-identical data.
    #[arg(long, env = "SANDBOX_SEED", default_value_t = 42)]
    pub seed: u64,
    /// QTickets events (each with 1–3 shows in one of five cities).
    #[arg(long, default_value_t = 20)]
    pub events: u32,
    /// QTickets orders per day (±20%).
    #[arg(long, default_value_t = 40)]
    pub orders_per_day: u32,
    /// Days of history before the sandbox's "now".
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Days of orders after "now", revealed as the clock advances.
    #[arg(long, default_value_t = 7)]
    pub future_days: u32,
    /// VK Ads ad plans (each with 2 ad groups).
    #[arg(long, default_value_t = 4)]
    pub vk_campaigns: u32,
    /// VK Ads banners per ad group.
    #[arg(long, default_value_t = 2)]
    pub vk_banners_per_group: u32,
    /// VK Ads agency clients (`vk-client-1`, …) owning the ad plans in turn; 0: the client
    /// owns them itself.
    #[arg(long, default_value_t = 0)]
    pub vk_agency_clients: u32,
    /// Yandex Direct client logins (`client-a`, `client-b`, …).
    #[arg(long, default_value_t = 2)]
    pub direct_logins: u32,
    /// Yandex Direct campaigns per login (each with 2 ad groups of 2 ads).
    #[arg(long, default_value_t = 3)]
    pub direct_campaigns: u32,
    /// Gmail sales-report e-mails (unrelated mail comes on top).
    #[arg(long, default_value_t = 6)]
    pub emails: u32,
    /// The sandbox's "now" at start (RFC 3339); default: the real time, to the second.
    #[arg(long, value_name = "TIMESTAMP")]
    pub now: Option<String>,
    /// QTickets timestamps in each city's own offset (`+07:00` for Novosibirsk) instead of
    /// `+03:00` everywhere, which is what the real service was seen to send.
    #[arg(long)]
    pub qtickets_city_offsets: bool,
    /// Every Nth QTickets order is synced late (0: none), as a box office's sales reach the
    /// service later with their own times: it appears `--qtickets-late-sync-minutes` after
    /// it was created, with an id newer than the orders before its appearance and every
    /// timestamp older.
    #[arg(long, default_value_t = 0)]
    pub qtickets_late_sync_every: u32,
    /// How late a late-synced order appears (minutes after its `created_at`).
    #[arg(long, default_value_t = 180)]
    pub qtickets_late_sync_minutes: u32,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            seed: 42,
            events: 20,
            orders_per_day: 40,
            days: 30,
            future_days: 7,
            vk_campaigns: 4,
            vk_banners_per_group: 2,
            vk_agency_clients: 0,
            direct_logins: 2,
            direct_campaigns: 3,
            emails: 6,
            now: None,
            qtickets_city_offsets: false,
            qtickets_late_sync_every: 0,
            qtickets_late_sync_minutes: 180,
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "api-sandbox",
    version,
    about = "Local stand-in for the QTickets, VK Ads, Yandex Direct, Gmail and Telegram APIs"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Address to listen on; port 0 picks a free one.
    #[arg(long, env = "SANDBOX_LISTEN", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,

    /// Allow listening on an address other than loopback.
    #[arg(long)]
    pub allow_non_loopback: bool,

    #[command(flatten)]
    pub config: SandboxConfig,
}

impl JobCli for Cli {
    fn common(&self) -> &CommonArgs {
        &self.common
    }
}

pub struct Data {
    pub qtickets: qtickets::QData,
    pub vk: vk::VkData,
    pub direct: direct::DirectData,
    pub gmail: gmail::GmailData,
}

/// A fault injected by a test.
#[derive(Debug, Clone)]
pub struct Fault {
    pub route: String,
    pub status: Option<u16>,
    pub body: Option<Value>,
    pub headers: Vec<(String, String)>,
    pub delay_ms: u64,
    pub truncate: bool,
    /// How many more requests it applies to (`None`: until cleared).
    pub remaining: Option<u32>,
    /// Apply to this fraction of matching requests (deterministic).
    pub fraction: Option<f64>,
    /// Let this many matching requests through first.
    pub after: u32,
    /// Hold the request until `POST /_sandbox/release` (at most a minute): a test makes two
    /// clients meet at a point of its choosing instead of hoping a delay is long enough.
    pub hold: bool,
}

impl Fault {
    fn parse(v: &Value) -> Result<Fault, String> {
        let route = v
            .get("route")
            .and_then(Value::as_str)
            .ok_or("`route` is required")?
            .to_owned();
        let headers = match v.get("headers") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                    )
                })
                .collect(),
            Some(_) => return Err("`headers` must be an object".into()),
        };
        Ok(Fault {
            route,
            status: v.get("status").and_then(Value::as_u64).map(|s| s as u16),
            body: v.get("body").cloned().filter(|b| !b.is_null()),
            headers,
            delay_ms: v.get("delay_ms").and_then(Value::as_u64).unwrap_or(0),
            truncate: v.get("truncate").and_then(Value::as_bool).unwrap_or(false),
            remaining: v.get("count").and_then(Value::as_u64).map(|c| c as u32),
            fraction: v.get("fraction").and_then(Value::as_f64),
            after: v.get("after").and_then(Value::as_u64).unwrap_or(0) as u32,
            hold: v.get("hold").and_then(Value::as_bool).unwrap_or(false),
        })
    }

    fn matches(&self, path: &str) -> bool {
        match self.route.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => self.route == path,
        }
    }
}

/// Mutable state: what the tests and the clients change.
pub struct State {
    pub faults: Vec<Fault>,
    fault_rng: Rng,
    pub log: std::collections::VecDeque<Value>,
    pub qtickets_date_filters: bool,
    /// Whether order pages carry `paging` (a variant the loader must survive without it).
    pub qtickets_paging: bool,
    pub vk_tokens: Vec<vk::Token>,
    pub vk_token_counter: u64,
    pub vk_daily_remaining: u64,
    pub vk_rps_limit: u64,
    /// The length of the "per second" window in real milliseconds (1000; a test stretches it so
    /// that its requests surely fall into one window, however slow the machine).
    pub vk_rps_window_ms: u64,
    /// (window number, requests in it).
    pub vk_rps_window: (u64, u64),
    /// Banner ids the listing shows and the statistics reject.
    pub vk_ghost_banners: Vec<u64>,
    /// The error code of an unknown ad plan id (the English and Russian docs differ).
    pub vk_plans_error: String,
    /// Banners still there (the rest deleted: gone from the listing and the statistics).
    pub vk_banners_kept_percent: u64,
    /// Integers and booleans as strings (`"123"`, `"true"`), as the docs' type table shows.
    pub vk_strings: bool,
    /// Deleted banners (gone from the listing) still have their statistics: whether VK keeps
    /// the statistics of deleted objects is not documented, so both must load.
    pub vk_deleted_keep_stats: bool,
    /// Report rows served (the rest dropped: statistics corrected after the fact).
    pub direct_rows_kept_percent: u64,
    /// A report ends cleanly after this many rows, without its summary line (a cut answer).
    pub direct_cut_after_rows: Option<u64>,
    /// Rows are served ad by ad even when `OrderBy` asks for dates: whether the service always
    /// honours `OrderBy` is not something a loader should bet its sums on.
    pub direct_ignore_order_by: bool,
    pub direct_pending: HashMap<String, u32>,
    pub direct_names: HashMap<String, String>,
    pub direct_retry_in: u64,
    /// In `processingMode: auto`, reports of at most this many days come back online at once.
    pub direct_online_days: u64,
    /// Whether answers carry a `Units` header (not confirmed for Reports).
    pub direct_units: bool,
    pub google_tokens: Vec<(String, bool)>,
    /// The refresh token was revoked (the token endpoint answers `invalid_grant`).
    pub google_refresh_revoked: bool,
    /// Attachment id → (message id, attachment index, minted at).
    pub gmail_attachment_ids: HashMap<String, (String, usize, i64)>,
    pub gmail_attachment_counter: u64,
    /// `after:` excludes its own instant (a variant the loaders must survive).
    pub gmail_after_exclusive: bool,
    pub gmail_labels: HashMap<String, Vec<String>>,
    pub gmail_user_labels: Vec<(String, String)>,
    /// Mail a test added (`POST /_sandbox/gmail/messages`).
    pub gmail_extra: Vec<Arc<gmail::Message>>,
    pub telegram_messages: Vec<telegram::SentMessage>,
    pub telegram_last_ms: HashMap<String, u64>,
    pub telegram_min_interval_ms: u64,
    /// Groups that became supergroups: old chat id (as text) → new id.
    pub telegram_migrated: HashMap<String, i64>,
    /// Error answers quote the request's credentials back (a careless service or proxy does):
    /// a client that prints error bodies must still never print a secret.
    pub echo_credentials: bool,
}

impl State {
    fn new(seed: u64) -> State {
        State {
            faults: Vec::new(),
            fault_rng: Rng::stream(seed, "faults"),
            log: std::collections::VecDeque::new(),
            qtickets_date_filters: true,
            qtickets_paging: true,
            vk_tokens: Vec::new(),
            vk_token_counter: 0,
            vk_daily_remaining: vk::DAILY_LIMIT,
            vk_rps_limit: 10,
            vk_rps_window_ms: 1000,
            vk_rps_window: (0, 0),
            vk_ghost_banners: Vec::new(),
            vk_plans_error: "ERR_WRONG_CAMPAIGNS".to_owned(),
            vk_banners_kept_percent: 100,
            vk_strings: false,
            vk_deleted_keep_stats: false,
            direct_rows_kept_percent: 100,
            direct_cut_after_rows: None,
            direct_ignore_order_by: false,
            direct_pending: HashMap::new(),
            direct_names: HashMap::new(),
            direct_retry_in: 1,
            direct_online_days: 1,
            direct_units: false,
            google_tokens: Vec::new(),
            google_refresh_revoked: false,
            gmail_attachment_ids: HashMap::new(),
            gmail_attachment_counter: 0,
            gmail_after_exclusive: false,
            gmail_labels: HashMap::new(),
            gmail_user_labels: Vec::new(),
            gmail_extra: Vec::new(),
            telegram_messages: Vec::new(),
            telegram_last_ms: HashMap::new(),
            telegram_min_interval_ms: 0,
            telegram_migrated: HashMap::new(),
            echo_credentials: false,
        }
    }
}

/// The request log keeps at most this many entries (oldest dropped), bounding memory in
/// benchmarks.
const LOG_LIMIT: usize = 100_000;

pub struct Sandbox {
    pub config: SandboxConfig,
    /// The sandbox's "now" at start, seconds since the epoch.
    pub start: i64,
    pub data: Data,
    clock_offset: AtomicI64,
    wall_start: Instant,
    state: Mutex<State>,
    /// Held requests wait here until released (`true`).
    gate: (Mutex<bool>, std::sync::Condvar),
}

/// The Moscow date of an instant.
pub fn moscow_date(t: i64) -> NaiveDate {
    let utc = chrono::DateTime::from_timestamp(t, 0).expect("valid timestamp");
    zakaz_core::time::moscow_date(&utc)
}

impl Sandbox {
    pub fn new(config: SandboxConfig) -> anyhow::Result<Sandbox> {
        let start = match &config.now {
            Some(text) => zakaz_core::time::parse_api_timestamp(text)
                .map_err(|e| config_error(format!("`--now`: {e}")))?
                .timestamp(),
            None => chrono::Utc::now().timestamp(),
        };
        let data = Data {
            qtickets: qtickets::QData::generate(&config, start),
            vk: vk::VkData::generate(&config),
            direct: direct::DirectData::generate(&config),
            gmail: gmail::GmailData::generate(&config, start),
        };
        Ok(Sandbox {
            state: Mutex::new(State::new(config.seed)),
            config,
            start,
            data,
            clock_offset: AtomicI64::new(0),
            wall_start: Instant::now(),
            gate: (Mutex::new(true), std::sync::Condvar::new()),
        })
    }

    /// The sandbox clock: start plus every advance.
    /// `{"order_id": N, "payed_at": "ISO" | null, "updated_at": "ISO"?}`: from now on the
    /// order is paid at that time, or un-paid; its `updated_at` becomes now (or the given
    /// earlier time).
    fn change_payment(&self, body: &Value) -> Resp {
        let Some(id) = body.get("order_id").and_then(Value::as_u64) else {
            return Resp::json(400, &json!({"error": "`order_id` is required"}));
        };
        let payed_at = match body.get("payed_at") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => match zakaz_core::time::parse_offset_timestamp(s) {
                Ok(t) => Some(t.timestamp()),
                Err(e) => return Resp::json(400, &json!({"error": format!("`payed_at`: {e}")})),
            },
            Some(other) => {
                return Resp::json(
                    400,
                    &json!({"error": format!("`payed_at`: {other} is not a timestamp")}),
                );
            }
        };
        let Some(order) = self.data.qtickets.orders.iter().find(|o| o.id == id) else {
            return Resp::json(404, &json!({"error": format!("no order {id}")}));
        };
        // `updated_at` (optional, not after now): a change the vendor stamps late, so that
        // it appears with a time before the last run.
        let at = match body.get("updated_at").and_then(Value::as_str) {
            None => self.now(),
            Some(s) => match zakaz_core::time::parse_offset_timestamp(s) {
                Ok(t) if t.timestamp() <= self.now() => t.timestamp(),
                Ok(_) => return Resp::json(400, &json!({"error": "`updated_at` is after now"})),
                Err(e) => return Resp::json(400, &json!({"error": format!("`updated_at`: {e}")})),
            },
        };
        let change = qtickets::PaymentChange { at, payed_at };
        match order.payment_change.set(change) {
            Ok(()) => Resp::json(
                200,
                &json!({"ok": true, "updated_at": qtickets::iso(change.at, 3)}),
            ),
            Err(_) => Resp::json(
                409,
                &json!({"error": format!("order {id} had its payment changed already")}),
            ),
        }
    }

    /// Refund a paid ticket now (a postponed show, weeks after the payment): `order_id`,
    /// optionally `basket_id` (default: its first ticket neither refunded nor cancelled) and
    /// `bump_updated_at` (default true: whether the order's `updated_at` moves).
    fn late_refund(&self, body: &Value) -> Resp {
        let Some(id) = body.get("order_id").and_then(Value::as_u64) else {
            return Resp::json(400, &json!({"error": "`order_id` is required"}));
        };
        let now = self.now();
        let Some(order) = self.data.qtickets.visible(now).iter().find(|o| o.id == id) else {
            return Resp::json(404, &json!({"error": format!("no order {id}")}));
        };
        let view = order.view(now, self.data.qtickets.refunds_bump());
        if view.payed_at.is_none() || view.deleted_at.is_some() {
            return Resp::json(409, &json!({"error": format!("order {id} is not paid")}));
        }
        let refundable = |b: &&qtickets::Basket| {
            b.refund(now, true).is_none() && order.basket_cancelled_at(b, view.payed_at).is_none()
        };
        let wanted = body.get("basket_id").and_then(Value::as_u64);
        let Some(basket) = order
            .baskets
            .iter()
            .filter(refundable)
            .find(|b| wanted.is_none_or(|w| b.id == w))
        else {
            return Resp::json(
                409,
                &json!({"error": format!("order {id} has no ticket to refund")}),
            );
        };
        let refund = qtickets::LateRefund {
            at: now,
            cents: basket.price_cents * i64::from(self.data.qtickets.quantity(order, basket)),
            bumps: body
                .get("bump_updated_at")
                .and_then(Value::as_bool)
                .unwrap_or(true),
        };
        match basket.late_refund.set(refund) {
            Ok(()) => Resp::json(200, &json!({"ok": true, "basket_id": basket.id})),
            Err(_) => Resp::json(409, &json!({"error": "refunded already"})),
        }
    }

    pub fn now(&self) -> i64 {
        self.start + self.clock_offset.load(Ordering::Relaxed)
    }

    pub fn today(&self) -> NaiveDate {
        moscow_date(self.now())
    }

    /// Milliseconds of real time since start (for rate limits).
    pub fn wall_ms(&self) -> u64 {
        self.wall_start.elapsed().as_millis() as u64
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn advance(&self, seconds: i64) {
        self.clock_offset.fetch_add(seconds, Ordering::Relaxed);
    }

    /// Forget faults, log, tokens, queues, labels and messages; rewind the clock.
    pub fn reset(&self) {
        *self.state() = State::new(self.config.seed);
        self.clock_offset.store(0, Ordering::Relaxed);
    }

    pub fn add_fault(&self, fault: Fault) {
        self.state().faults.push(fault);
    }

    /// Every QTickets order visible now, as the API would serve it.
    pub fn qtickets_orders(&self) -> Vec<Value> {
        let now = self.now();
        let data = &self.data.qtickets;
        data.visible(now)
            .iter()
            .map(|o| qtickets::order_json(data, o, now))
            .collect()
    }

    /// Answer one request (the control API included).
    pub fn respond(&self, req: &Req) -> Resp {
        if let Some(path) = req.path.strip_prefix("/_sandbox") {
            return self.control(req, path);
        }
        let resp = self.answer(req);
        if resp.status >= 400 && self.state().echo_credentials {
            return echo_credentials(resp, req);
        }
        resp
    }

    fn answer(&self, req: &Req) -> Resp {
        self.log(req);
        let fault = self.take_fault(&req.path);
        if let Some(f) = &fault {
            if f.hold {
                let (open, released) = &self.gate;
                let guard = open.lock().unwrap_or_else(|e| e.into_inner());
                // Bounded: a test that never releases does not hang the sandbox for good.
                let _ = released.wait_timeout_while(guard, Duration::from_secs(60), |open| !*open);
            }
            if f.delay_ms > 0 {
                std::thread::sleep(Duration::from_millis(f.delay_ms));
            }
            if let Some(status) = f.status {
                let mut resp = match &f.body {
                    Some(Value::String(text)) => {
                        Resp::text(status, "text/plain; charset=utf-8", text.clone())
                    }
                    Some(value) => Resp::json(status, value),
                    None => self.vendor_fault(&req.path, status),
                };
                if req.path.starts_with("/vk/") {
                    resp = vk::with_rate_headers(self, resp);
                }
                resp.headers.extend(f.headers.iter().cloned());
                return resp;
            }
        }
        let mut resp = self.route(req);
        if let Some(f) = fault {
            resp.headers.extend(f.headers);
            if f.truncate {
                let keep = resp.body.len() / 2;
                resp.body.truncate(keep);
            }
        }
        resp
    }

    fn route(&self, req: &Req) -> Resp {
        let path = req.path.as_str();
        if let Some(rest) = path.strip_prefix("/qtickets/api/rest/v1") {
            qtickets::handle(self, req, rest)
        } else if let Some(rest) = path.strip_prefix("/vk/api/v2") {
            vk::handle(self, req, rest)
        } else if path == "/direct/json/v5/reports" {
            direct::handle(self, req)
        } else if let Some(rest) = path.strip_prefix("/gmail/gmail/v1/users/me") {
            gmail::handle(self, req, rest)
        } else if path == "/google/token" {
            gmail::token(self, req)
        } else if let Some(rest) = path.strip_prefix("/telegram/") {
            telegram::handle(self, req, rest)
        } else {
            Resp::html_404()
        }
    }

    /// The body the real service would send with this status.
    fn vendor_fault(&self, path: &str, status: u16) -> Resp {
        if path.starts_with("/qtickets/") {
            qtickets::fault_body(status)
        } else if path.starts_with("/vk/") {
            vk::fault_body(status)
        } else if path.starts_with("/direct/") {
            direct::fault_body(status)
        } else if path.starts_with("/gmail/") || path.starts_with("/google/") {
            gmail::fault_body_at(status, self.now())
        } else if path.starts_with("/telegram/") {
            telegram::fault_body(status)
        } else {
            Resp::empty(status)
        }
    }

    fn take_fault(&self, path: &str) -> Option<Fault> {
        let mut state = self.state();
        let State {
            faults, fault_rng, ..
        } = &mut *state;
        let idx = faults.iter().position(|f| f.matches(path))?;
        let fault = &mut faults[idx];
        if fault.after > 0 {
            fault.after -= 1;
            return None;
        }
        if let Some(fraction) = fault.fraction
            && (fault_rng.next_u64() % 10_000) as f64 >= fraction * 10_000.0
        {
            return None;
        }
        let taken = fault.clone();
        if let Some(remaining) = &mut fault.remaining {
            *remaining -= 1;
            if *remaining == 0 {
                faults.remove(idx);
            }
        }
        Some(taken)
    }

    fn log(&self, req: &Req) {
        let headers: serde_json::Map<String, Value> = req
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), json!(mask_header(k, v))))
            .collect();
        let entry = json!({
            "method": req.method,
            "path": mask_path(&req.path),
            "query": req.query.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&"),
            "headers": headers,
            "body": mask_body(&String::from_utf8_lossy(&req.body)),
        });
        let mut state = self.state();
        if state.log.len() >= LOG_LIMIT {
            // O(1): a long benchmark must not pay for shifting 100 000 entries per request.
            state.log.pop_front();
        }
        state.log.push_back(entry);
    }

    fn control(&self, req: &Req, path: &str) -> Resp {
        let body = req.json().unwrap_or(Value::Null);
        match (req.method.as_str(), path) {
            ("POST", "/faults") => {
                let list = match &body {
                    Value::Array(items) => items.clone(),
                    other => vec![other.clone()],
                };
                for item in &list {
                    match Fault::parse(item) {
                        Ok(f) => {
                            if f.hold {
                                *self.gate.0.lock().unwrap_or_else(|e| e.into_inner()) = false;
                            }
                            self.add_fault(f)
                        }
                        Err(e) => return Resp::json(400, &json!({"error": e})),
                    }
                }
                Resp::json(
                    200,
                    &json!({"ok": true, "faults": self.state().faults.len()}),
                )
            }
            ("DELETE", "/faults") => {
                self.state().faults.clear();
                Resp::json(200, &json!({"ok": true}))
            }
            ("GET", "/requests") => {
                let prefix = req.query_param("path_prefix").unwrap_or("");
                let log: Vec<Value> = self
                    .state()
                    .log
                    .iter()
                    .filter(|e| e["path"].as_str().is_some_and(|p| p.starts_with(prefix)))
                    .cloned()
                    .collect();
                Resp::json(200, &Value::Array(log))
            }
            ("DELETE", "/requests") => {
                self.state().log.clear();
                Resp::json(200, &json!({"ok": true}))
            }
            ("POST", "/advance") => {
                let secs = ["seconds", "minutes", "hours", "days"]
                    .iter()
                    .zip([1, 60, 3600, 86_400])
                    .filter_map(|(k, mult)| body.get(*k).and_then(Value::as_i64).map(|n| n * mult))
                    .sum::<i64>();
                if secs < 0 {
                    return Resp::json(400, &json!({"error": "the clock only moves forward"}));
                }
                self.advance(secs);
                Resp::json(200, &json!({"now": qtickets::iso(self.now(), 3)}))
            }
            ("POST", "/release") => {
                *self.gate.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
                self.gate.1.notify_all();
                Resp::json(200, &json!({"ok": true}))
            }
            ("POST", "/reset") => {
                self.reset();
                Resp::json(200, &json!({"ok": true}))
            }
            ("POST", "/config") => {
                let mut state = self.state();
                if let Some(mode) = body.get("qtickets_date_filters").and_then(Value::as_str) {
                    state.qtickets_date_filters = mode != "ignored";
                }
                if let Some(b) = body
                    .get("qtickets_refunds_bump_updated_at")
                    .and_then(Value::as_bool)
                {
                    self.data.qtickets.refunds_bump.store(b, Ordering::Relaxed);
                }
                if let Some(list) = body.get("qtickets_shapes").and_then(Value::as_array) {
                    let mut bits = 0u8;
                    for name in list {
                        match qtickets::SHAPES
                            .iter()
                            .find(|(n, _)| Some(*n) == name.as_str())
                        {
                            Some((_, bit)) => bits |= bit,
                            None => {
                                return Resp::json(
                                    400,
                                    &json!({"error": format!("unknown shape {name}; known: {:?}", qtickets::SHAPES.iter().map(|(n, _)| n).collect::<Vec<_>>())}),
                                );
                            }
                        }
                    }
                    self.data.qtickets.shapes.store(bits, Ordering::Relaxed);
                }
                if let Some(mode) = body.get("qtickets_paging").and_then(Value::as_str) {
                    state.qtickets_paging = mode != "missing";
                }
                if let Some(n) = body.get("vk_daily_remaining").and_then(Value::as_u64) {
                    state.vk_daily_remaining = n;
                }
                if let Some(n) = body.get("vk_rps_limit").and_then(Value::as_u64) {
                    state.vk_rps_limit = n;
                }
                if let Some(n) = body.get("vk_rps_window_ms").and_then(Value::as_u64) {
                    state.vk_rps_window_ms = n;
                }
                if let Some(id) = body.get("vk_ghost_banner").and_then(Value::as_u64) {
                    state.vk_ghost_banners.push(id);
                }
                if let Some(code) = body.get("vk_plans_error").and_then(Value::as_str) {
                    state.vk_plans_error = code.to_owned();
                }
                if let Some(n) = body.get("vk_banners_kept_percent").and_then(Value::as_u64) {
                    state.vk_banners_kept_percent = n;
                }
                if let Some(b) = body.get("vk_strings").and_then(Value::as_bool) {
                    state.vk_strings = b;
                }
                if let Some(b) = body.get("vk_deleted_keep_stats").and_then(Value::as_bool) {
                    state.vk_deleted_keep_stats = b;
                }
                if let Some(n) = body.get("direct_rows_kept_percent").and_then(Value::as_u64) {
                    state.direct_rows_kept_percent = n;
                }
                if let Some(v) = body.get("direct_cut_after_rows") {
                    state.direct_cut_after_rows = v.as_u64();
                }
                if let Some(b) = body.get("direct_ignore_order_by").and_then(Value::as_bool) {
                    state.direct_ignore_order_by = b;
                }
                if let Some(n) = body.get("direct_retry_in").and_then(Value::as_u64) {
                    state.direct_retry_in = n;
                }
                if let Some(n) = body.get("direct_online_days").and_then(Value::as_u64) {
                    state.direct_online_days = n;
                }
                if let Some(b) = body.get("direct_units").and_then(Value::as_bool) {
                    state.direct_units = b;
                }
                if let Some(b) = body.get("gmail_after_exclusive").and_then(Value::as_bool) {
                    state.gmail_after_exclusive = b;
                }
                if let Some(m) = body.get("telegram_migrate") {
                    match (m.get("chat_id"), m.get("to").and_then(Value::as_i64)) {
                        (Some(from), Some(to)) => {
                            state.telegram_migrated.insert(telegram::chat_key(from), to);
                        }
                        _ => {
                            return Resp::json(
                                400,
                                &json!({"error": "`telegram_migrate` needs `chat_id` and `to` (an integer)"}),
                            );
                        }
                    }
                }
                if let Some(b) = body.get("echo_credentials").and_then(Value::as_bool) {
                    state.echo_credentials = b;
                }
                if let Some(n) = body.get("telegram_min_interval_ms").and_then(Value::as_u64) {
                    state.telegram_min_interval_ms = n;
                }
                Resp::json(200, &json!({"ok": true}))
            }
            ("POST", "/vk/expire") => {
                for t in &mut self.state().vk_tokens {
                    t.expired = true;
                }
                Resp::json(200, &json!({"ok": true}))
            }
            ("POST", "/vk/revoke") => {
                for t in &mut self.state().vk_tokens {
                    t.revoked = true;
                }
                Resp::json(200, &json!({"ok": true}))
            }
            ("POST", "/google/revoke") => {
                self.state().google_refresh_revoked = true;
                Resp::json(200, &json!({"ok": true}))
            }
            ("POST", "/google/expire") => {
                for t in &mut self.state().google_tokens {
                    t.1 = true;
                }
                Resp::json(200, &json!({"ok": true}))
            }
            ("GET", "/state") => {
                let state = self.state();
                Resp::json(
                    200,
                    &json!({
                        "now": qtickets::iso(self.now(), 3),
                        "vk_tokens": state.vk_tokens.len(),
                        "vk_tokens_by_user": state.vk_tokens.iter().fold(serde_json::Map::new(), |mut m, t| {
                            let n = m.get(&t.user).and_then(Value::as_u64).unwrap_or(0);
                            m.insert(t.user.clone(), json!(n + 1));
                            m
                        }),
                        "direct_pending": state.direct_pending.len(),
                        "faults": state.faults.len(),
                        "requests": state.log.len(),
                    }),
                )
            }
            ("GET", "/qtickets/orders") => Resp::json(200, &Value::Array(self.qtickets_orders())),
            ("POST", "/qtickets/payment") => self.change_payment(&body),
            ("POST", "/qtickets/refund") => self.late_refund(&body),
            ("GET", "/telegram/messages") => {
                Resp::json(200, &json!(self.state().telegram_messages))
            }
            ("GET", "/gmail/reports") => Resp::json(200, &json!(self.data.gmail.reports)),
            ("POST", "/gmail/messages") => gmail::inject(self, &body),
            _ => Resp::json(
                404,
                &json!({"error": format!("unknown control route {} /_sandbox{path}", req.method)}),
            ),
        }
    }
}

/// `resp` with the request's credentials quoted at the end of its body: the `Authorization`
/// header, the raw body (form secrets) and the path (Telegram's token).
fn echo_credentials(mut resp: Resp, req: &Req) -> Resp {
    let quoted = format!(
        " [request: {} {} authorization={} body={}]",
        req.method,
        req.path,
        req.header("authorization").unwrap_or(""),
        String::from_utf8_lossy(&req.body)
    );
    resp.body.extend_from_slice(quoted.as_bytes());
    resp
}

/// The Telegram bot token lives in the path (`…/bot<token>/sendMessage`), wherever a client
/// was pointed: the log shows `bot***` for any segment that could be one.
fn mask_path(path: &str) -> String {
    path.split('/')
        .map(|segment| match segment.strip_prefix("bot") {
            Some(rest) if !rest.is_empty() => "bot***",
            _ => segment,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Secrets in headers are masked in the request log; everything else stays as sent so that
/// tests can see a secret that leaked into a URL or body.
fn mask_header(name: &str, value: &str) -> String {
    let lower = name.to_ascii_lowercase();
    if lower == "authorization" {
        match value.split_once(' ') {
            Some((scheme, _)) => format!("{scheme} ***"),
            None => "***".to_owned(),
        }
    } else if ["token", "secret", "key", "password", "cookie"]
        .iter()
        .any(|w| lower.contains(w))
    {
        "***".to_owned()
    } else {
        value.to_owned()
    }
}

/// A form field or JSON key named like a secret.
fn secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    ["token", "secret", "key", "password"]
        .iter()
        .any(|w| lower.contains(w))
}

/// Secrets in a logged body are masked too: form-encoded `client_secret=…`,
/// `refresh_token=…`, and JSON string fields named like secrets.
fn mask_body(body: &str) -> String {
    if let Ok(mut value) = serde_json::from_str::<Value>(body) {
        fn walk(v: &mut Value) -> bool {
            match v {
                Value::Object(m) => m.iter_mut().fold(false, |changed, (k, val)| {
                    if secret_name(k) && val.is_string() {
                        *val = json!("***");
                        true
                    } else {
                        walk(val) || changed
                    }
                }),
                Value::Array(items) => {
                    // Every item is walked (no short circuit): each may hold a secret.
                    let mut changed = false;
                    for v in items {
                        changed |= walk(v);
                    }
                    changed
                }
                _ => false,
            }
        }
        // Re-serialised only when something was masked: tests read the body as sent.
        return if walk(&mut value) {
            value.to_string()
        } else {
            body.to_owned()
        };
    }
    let looks_form = !body.is_empty() && body.contains('=') && !body.contains(char::is_whitespace);
    if !looks_form {
        return body.to_owned();
    }
    body.split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if secret_name(k) => format!("{k}=***"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A running sandbox server. Dropping it stops the server.
pub struct Server {
    sandbox: Arc<Sandbox>,
    // Dropped with the server: stops accepting and closes the open connections.
    _listening: wire::Listening,
    pub base_url: String,
}

impl Server {
    pub fn start(config: SandboxConfig, listen: SocketAddr) -> anyhow::Result<Server> {
        let sandbox = Arc::new(Sandbox::new(config)?);
        let listener = std::net::TcpListener::bind(listen).map_err(|e| {
            anyhow::anyhow!("cannot listen on `{listen}` (setting `SANDBOX_LISTEN`): {e}")
        })?;
        // Accepted sockets inherit TCP_NODELAY on Linux. Without it, the separate writes of
        // head and body meet the client's delayed ACK: 40 ms per large answer.
        socket2::SockRef::from(&listener).set_tcp_nodelay(true)?;
        let handler: wire::Handler = {
            let sandbox = sandbox.clone();
            Arc::new(move |req: &Req| sandbox.respond(req))
        };
        let listening = wire::serve(listener, handler)
            .map_err(|e| anyhow::anyhow!("cannot serve on `{listen}`: {e}"))?;
        let base_url = format!("http://{}", listening.addr());
        Ok(Server {
            sandbox,
            _listening: listening,
            base_url,
        })
    }

    /// An in-process sandbox on a free loopback port, for tests.
    pub fn start_local(config: SandboxConfig) -> anyhow::Result<Server> {
        Server::start(config, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// The base URL of every service, as each loader's base-URL setting wants it.
    pub fn urls(&self) -> Value {
        let b = &self.base_url;
        json!({
            "base_url": b,
            "qtickets": format!("{b}/qtickets/api/rest/v1"),
            "vk": format!("{b}/vk"),
            "direct": format!("{b}/direct/json/v5/reports"),
            "gmail": format!("{b}/gmail"),
            "google_token": format!("{b}/google/token"),
            "telegram": format!("{b}/telegram"),
            "control": format!("{b}/_sandbox"),
        })
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if !cli.listen.ip().is_loopback() && !cli.allow_non_loopback {
        return Err(config_error(format!(
            "`SANDBOX_LISTEN` {} is not a loopback address; pass --allow-non-loopback to expose the sandbox",
            cli.listen
        )));
    }
    // Handlers first: whoever reads the printed URLs may send SIGTERM at once.
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let server = Server::start(cli.config, cli.listen)?;
    println!("{}", server.urls());
    tracing::info!(base_url = %server.base_url, "api-sandbox is serving");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("api-sandbox stopping");
    drop(server);
    Ok(())
}
