//! `ingest-vk` end to end: the real binary, `api-sandbox` in-process with a pinned clock (the
//! loader gets the same instant through `--now`), real ClickHouse. Expected values come from
//! a twin sandbox (same seed and instant, so the same data) read through the API by the
//! test's own small client, never from the loader's code.

mod load;
mod tokens;
mod vendor;

use std::collections::BTreeMap;
use std::process::{Command, Output};

use api_sandbox::{SandboxConfig, Server};
use serde_json::{Value, json};
use zakaz_core::testing::{JobUnderTest, TempDir, TestDb, sandbox_control};

/// The sandbox's and the loader's "now": yesterday is 2026-11-24.
pub const NOW: &str = "2026-11-25T12:00:00+03:00";

pub struct Env {
    pub config: SandboxConfig,
    pub sandbox: Server,
    pub db: TestDb,
    pub state: TempDir,
    /// `/config` changes of the data itself, made on twins too (see [`Env::shape`]).
    shaped: std::sync::Mutex<Vec<Value>>,
}

/// (date, ad plan id) → (shows, clicks, spent in kopecks).
pub type PlanDays = BTreeMap<(String, u64), (u64, u64, i64)>;

impl Default for Env {
    fn default() -> Self {
        Env::new()
    }
}

impl Env {
    pub fn new() -> Env {
        Env::with(SandboxConfig::default())
    }

    pub fn with(config: SandboxConfig) -> Env {
        let config = SandboxConfig {
            now: Some(NOW.into()),
            ..config
        };
        let db = TestDb::migrated_blocking();
        Env {
            sandbox: Server::start_local(config.clone()).unwrap(),
            config,
            db,
            state: TempDir::new("vk-state"),
            shaped: Default::default(),
        }
    }

    /// The loader acting as of `now`.
    pub fn command_at(&self, args: &[&str], now: &str) -> Command {
        let mut cmd = self.db.command(env!("CARGO_BIN_EXE_ingest-vk"));
        cmd.args(args)
            .arg(format!("--now={now}"))
            .env("VK_ADS_BASE_URL", format!("{}/vk", self.sandbox.base_url))
            .env("VK_ADS_CLIENT_ID", "sandbox-client")
            .env("VK_ADS_CLIENT_SECRET", "sandbox-secret")
            .env("VK_ADS_STATE_DIR", &self.state.path)
            .env("HTTP_MAX_ATTEMPTS", "3")
            .env("LOG_LEVEL", "info");
        cmd
    }

    pub fn query(&self, sql: &str) -> String {
        self.db.query(sql)
    }

    pub fn control(&self, path: &str, body: Value) {
        sandbox_control(&self.sandbox.base_url, path, &body);
    }

    /// A `/config` change of what the vendor serves (banners deleted, strings for numbers):
    /// made on the loader's sandbox now and on every twin made later, so that expectations
    /// follow the same data.
    pub fn shape(&self, body: Value) {
        self.control("/config", body.clone());
        self.shaped.lock().unwrap().push(body);
    }

    /// The sandbox's request log under `prefix`.
    pub fn requests(&self, prefix: &str) -> Vec<Value> {
        zakaz_core::testing::sandbox_requests(&self.sandbox.base_url, prefix)
    }

    /// Token requests of one grant type the loader made.
    pub fn token_requests(&self, grant: &str) -> usize {
        self.requests("/vk/api/v2/oauth2/token.json")
            .iter()
            .filter(|r| {
                r["body"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(&format!("grant_type={grant}"))
            })
            .count()
    }

    pub fn live_tokens(&self) -> usize {
        self.sandbox.sandbox().state().vk_tokens.len()
    }

    /// Loaded sums per date and ad plan, from ClickHouse.
    pub fn loaded(&self, account: Option<&str>) -> PlanDays {
        let filter = account.map_or(String::new(), |a| format!("WHERE account = '{a}'"));
        self.query(&format!(
            "SELECT stat_date, ad_plan_id, sum(shows), sum(clicks), toInt64(sum(spent) * 100) \
             FROM {{db}}.fact_vk_ads_daily FINAL {filter} GROUP BY stat_date, ad_plan_id \
             HAVING sum(shows) + sum(clicks) + sum(spent) > 0 ORDER BY stat_date, ad_plan_id"
        ))
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (
                (f[0].to_owned(), f[1].parse().unwrap()),
                (
                    f[2].parse().unwrap(),
                    f[3].parse().unwrap(),
                    f[4].parse().unwrap(),
                ),
            )
        })
        .collect()
    }

    /// A twin sandbox, for the test's own reads (its tokens do not count against the
    /// loader's sandbox).
    pub fn twin(&self) -> Twin {
        let server = Server::start_local(self.config.clone()).unwrap();
        sandbox_control(
            &server.base_url,
            "/config",
            &json!({"vk_rps_limit": 100_000}),
        );
        for body in self.shaped.lock().unwrap().iter() {
            sandbox_control(&server.base_url, "/config", body);
        }
        Twin {
            server,
            http: reqwest::blocking::Client::new(),
        }
    }
}

/// The test's own VK client, against a twin sandbox.
pub struct Twin {
    pub server: Server,
    http: reqwest::blocking::Client,
}

impl Twin {
    pub fn token(&self, agency_client: Option<&str>) -> String {
        let mut form = vec![
            ("client_id", "sandbox-client"),
            ("client_secret", "sandbox-secret"),
        ];
        match agency_client {
            None => form.push(("grant_type", "client_credentials")),
            Some(name) => {
                form.push(("grant_type", "agency_client_credentials"));
                form.push(("agency_client_name", name));
            }
        }
        let answer: Value = self
            .http
            .post(format!(
                "{}/vk/api/v2/oauth2/token.json",
                self.server.base_url
            ))
            .form(&form)
            .send()
            .unwrap()
            .json()
            .unwrap();
        answer["access_token"].as_str().unwrap().to_owned()
    }

    pub fn get(&self, token: &str, path: &str) -> Value {
        self.http
            .get(format!("{}/vk/api/v2/{path}", self.server.base_url))
            .bearer_auth(token)
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    /// Every item of a listing, paged by the answer's own `count`.
    pub fn all(&self, token: &str, path: &str, fields: &str) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let page = self.get(
                token,
                &format!("{path}?fields={fields}&limit=50&offset={}", out.len()),
            );
            let items = page["items"].as_array().unwrap().clone();
            let done = items.is_empty()
                || out.len() + items.len() >= page["count"].as_u64().unwrap() as usize;
            out.extend(items);
            if done {
                return out;
            }
        }
    }

    /// Sums per date and plan over `from..=to`, from the API's answers.
    pub fn expected(&self, token: &str, from: &str, to: &str) -> PlanDays {
        let plan_of: BTreeMap<u64, u64> = self
            .all(token, "ad_groups.json", "id,ad_plan_id")
            .iter()
            .map(|g| (g["id"].as_u64().unwrap(), g["ad_plan_id"].as_u64().unwrap()))
            .collect();
        let banners: Vec<(u64, u64)> = self
            .all(token, "banners.json", "id,ad_group_id")
            .iter()
            .map(|b| {
                (
                    b["id"].as_u64().unwrap(),
                    plan_of[&b["ad_group_id"].as_u64().unwrap()],
                )
            })
            .collect();
        let mut out = PlanDays::new();
        for batch in banners.chunks(100) {
            let ids: Vec<String> = batch.iter().map(|(id, _)| id.to_string()).collect();
            let stats = self.get(
                token,
                &format!(
                    "statistics/banners/day.json?id={}&date_from={from}&date_to={to}&metrics=base",
                    ids.join(",")
                ),
            );
            for item in stats["items"].as_array().unwrap() {
                let id = item["id"].as_u64().unwrap();
                let plan = batch.iter().find(|(b, _)| *b == id).unwrap().1;
                for row in item["rows"].as_array().unwrap() {
                    let base = &row["base"];
                    let e = out
                        .entry((row["date"].as_str().unwrap().to_owned(), plan))
                        .or_default();
                    e.0 += base["shows"].as_u64().unwrap();
                    e.1 += base["clicks"].as_u64().unwrap();
                    e.2 += kopecks(base["spent"].as_str().unwrap());
                }
            }
        }
        out.retain(|_, v| v.0 + v.1 > 0 || v.2 > 0);
        out
    }
}

/// `"123.4"` → 12340, written for the test.
pub fn kopecks(s: &str) -> i64 {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let frac = format!("{frac:0<2}");
    whole.parse::<i64>().unwrap() * 100 + frac[..2].parse::<i64>().unwrap()
}

impl JobUnderTest for Env {
    fn command(&self, args: &[&str]) -> Command {
        self.command_at(args, NOW)
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
