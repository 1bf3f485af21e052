//! `ingest-direct` end to end: the real binary, `api-sandbox` in-process with a pinned clock
//! (the loader gets the same instant through `--now`), real ClickHouse. Expected values come
//! from a twin sandbox (same seed and instant) whose online reports the test parses itself.

use std::collections::BTreeMap;
use std::process::{Command, Output};

use api_sandbox::{SandboxConfig, Server};
use serde_json::{Value, json};
use zakaz_core::testing::{JobUnderTest, TestDb, sandbox_control};

/// Yesterday is 2026-11-24.
pub const NOW: &str = "2026-11-25T12:00:00+03:00";

pub struct Env {
    pub config: SandboxConfig,
    pub sandbox: Server,
    pub db: TestDb,
    /// `/config` changes of the data itself, made on twins too (see [`Env::shape`]).
    shaped: std::sync::Mutex<Vec<Value>>,
}

/// (date, login, campaign) → (impressions, clicks, cost in kopecks, conversions).
type CampaignDays = BTreeMap<(String, String, u64), (u64, u64, i64, u64)>;

impl Default for Env {
    fn default() -> Self {
        Env::new()
    }
}

impl Env {
    pub fn new() -> Env {
        Env::configured(|_| {})
    }

    /// A sandbox with `change` made to its default data.
    pub fn configured(change: impl FnOnce(&mut SandboxConfig)) -> Env {
        let mut config = SandboxConfig {
            now: Some(NOW.into()),
            ..SandboxConfig::default()
        };
        change(&mut config);
        let db = TestDb::migrated_blocking();
        let env = Env {
            sandbox: Server::start_local(config.clone()).unwrap(),
            config,
            db,
            shaped: Default::default(),
        };
        // No waiting in tests: `retryIn` 0 then 1 second.
        env.control("/config", json!({"direct_retry_in": 0}));
        env
    }

    pub fn query(&self, sql: &str) -> String {
        self.db.query(sql)
    }

    pub fn control(&self, path: &str, body: Value) {
        sandbox_control(&self.sandbox.base_url, path, &body);
    }

    /// A `/config` change of what Direct serves (rows dropped): made on the loader's sandbox
    /// now and on every twin made later, so that expectations follow the same data.
    pub fn shape(&self, body: Value) {
        self.control("/config", body.clone());
        self.shaped.lock().unwrap().push(body);
    }

    pub fn reports_requested(&self) -> Vec<Value> {
        zakaz_core::testing::sandbox_requests(&self.sandbox.base_url, "/direct/")
    }

    /// Loaded sums per date, login and campaign.
    pub fn loaded(&self) -> CampaignDays {
        self.query(
            "SELECT stat_date, client_login, campaign_id, sum(impressions), sum(clicks), toInt64(sum(cost) * 100), sum(ifNull(conversions, 0)) \
             FROM {db}.fact_direct_daily FINAL GROUP BY stat_date, client_login, campaign_id \
             HAVING sum(impressions) + sum(clicks) > 0 ORDER BY stat_date, client_login, campaign_id",
        )
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (
                (f[0].to_owned(), f[1].to_owned(), f[2].parse().unwrap()),
                (f[3].parse().unwrap(), f[4].parse().unwrap(), f[5].parse().unwrap(), f[6].parse().unwrap()),
            )
        })
        .collect()
    }

    /// The same sums from a twin sandbox's online reports, parsed by the test.
    pub fn expected(&self, from: &str, to: &str) -> CampaignDays {
        let mut out = CampaignDays::new();
        for (login, f) in self.twin_rows(from, to) {
            let e = out
                .entry((f[0].clone(), login, f[1].parse().unwrap()))
                .or_default();
            e.0 += f[2].parse::<u64>().unwrap();
            e.1 += f[3].parse::<u64>().unwrap();
            let (rub, kop) = f[4].split_once('.').unwrap();
            e.2 += rub.parse::<i64>().unwrap() * 100 + kop.parse::<i64>().unwrap();
            e.3 += f[5].parse::<u64>().unwrap_or(0);
        }
        out
    }

    /// (login, `Date, CampaignId, Impressions, Clicks, Cost, Conversions`) of every data
    /// line of a twin sandbox's online reports.
    pub fn twin_rows(&self, from: &str, to: &str) -> Vec<(String, Vec<String>)> {
        let twin = Server::start_local(self.config.clone()).unwrap();
        for body in self.shaped.lock().unwrap().iter() {
            sandbox_control(&twin.base_url, "/config", body);
        }
        let mut out = Vec::new();
        for login in ["client-a", "client-b"] {
            let body = json!({"params": {
                "SelectionCriteria": {"DateFrom": from, "DateTo": to},
                "FieldNames": ["Date", "CampaignId", "Impressions", "Clicks", "Cost", "Conversions"],
                "ReportName": format!("test {login}"), "ReportType": "CUSTOM_REPORT",
                "DateRangeType": "CUSTOM_DATE", "Format": "TSV", "IncludeVAT": "NO", "IncludeDiscount": "NO"
            }});
            let tsv = reqwest::blocking::Client::new()
                .post(format!("{}/direct/json/v5/reports", twin.base_url))
                .bearer_auth("sandbox-token")
                .header("Client-Login", login)
                .header("processingMode", "online")
                .header("returnMoneyInMicros", "false")
                .json(&body)
                .send()
                .unwrap()
                .text()
                .unwrap();
            // Title, column names, rows, `Total rows: N`.
            let lines: Vec<&str> = tsv.lines().collect();
            assert!(lines.last().unwrap().starts_with("Total rows"));
            for line in &lines[2..lines.len() - 1] {
                out.push((
                    login.to_owned(),
                    line.split('\t').map(str::to_owned).collect(),
                ));
            }
        }
        out
    }
}

impl JobUnderTest for Env {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.db.command(env!("CARGO_BIN_EXE_ingest-direct"));
        cmd.args(args)
            .arg(format!("--now={NOW}"))
            .env(
                "DIRECT_API_URL",
                format!("{}/direct/json/v5", self.sandbox.base_url),
            )
            .env("DIRECT_TOKEN", "sandbox-token")
            .env("DIRECT_LOGINS", "client-a,client-b")
            .env("HTTP_MAX_ATTEMPTS", "2")
            .env("LOG_LEVEL", "info");
        cmd
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn sums_per_date_login_and_campaign_equal_the_reports_and_a_rerun_changes_nothing() {
    let env = Env::new();
    let out = env.run_ok(&[]);
    assert!(stderr(&out).contains("run finished"), "{}", stderr(&out));
    // Rows came date by date, as asked: one report per login, hidden ads written per day.
    assert!(
        !stderr(&out).contains("out of date order"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.reports_requested().len(), 6);
    // Not on a terminal: plain log lines, no progress redraws.
    assert!(!stderr(&out).contains('\r'), "{}", stderr(&out));
    let expected = env.expected("2026-11-21", "2026-11-24");
    assert!(!expected.is_empty());
    assert_eq!(env.loaded(), expected);
    let table = "SELECT stat_date, client_login, campaign_id, campaign_name, ad_group_id, ad_group_name, ad_id, \
                 impressions, clicks, cost, conversions, city FROM {db}.fact_direct_daily FINAL ORDER BY stat_date, ad_id";
    let first = env.query(table);
    env.run_ok(&[]);
    assert_eq!(env.query(table), first, "a re-run changes nothing");
    // `--` is NULL; the city comes from the campaign name.
    let quirks = env.query(
        "SELECT countIf(conversions IS NULL) > 0, countIf(conversions IS NOT NULL) > 0, \
                countIf(city = 'Москва' AND campaign_name LIKE '% msk %'), countIf(campaign_name LIKE '% msk %'), \
                countIf(city = '' AND campaign_name LIKE '% tula %') = countIf(campaign_name LIKE '% tula %') \
         FROM {db}.fact_direct_daily FINAL",
    );
    let f: Vec<&str> = quirks.trim().split('\t').collect();
    assert_eq!((f[0], f[1], f[4]), ("1", "1", "1"), "{quirks}");
    assert_eq!(f[2], f[3], "{quirks}");
    // The journal counts the rows Direct served, per login.
    let run = env.query(
        "SELECT status, visitParamExtractRaw(metrics, 'rows_by_login') FROM {db}.meta_job_runs WHERE job = 'direct' ORDER BY started_at, run_id LIMIT 1",
    );
    let served = env.twin_rows("2026-11-21", "2026-11-24");
    let counts: Vec<String> = ["client-a", "client-b"]
        .iter()
        .map(|login| {
            let n = served.iter().filter(|(l, _)| l == login).count();
            format!("\"{login}\":{n}")
        })
        .collect();
    assert_eq!(run, format!("ok\t{{{}}}\n", counts.join(",")));
    // Campaign Wizard campaigns (ads shown as `--`) are there, every row of them counted.
    let wizard = env.query(
        "SELECT count(), countIf(ad_id = 0 AND ad_group_id = 0 AND ad_group_name = '') FROM {db}.fact_direct_daily FINAL \
         WHERE campaign_name LIKE '% 1'",
    );
    let (n, hidden) = wizard.trim().split_once('\t').unwrap();
    assert!(n != "0" && n == hidden, "{wizard}");
}

#[test]
fn a_report_out_of_date_order_is_asked_again_and_its_hidden_ads_still_sum_right() {
    let env = Env::new();
    env.control("/config", json!({"direct_ignore_order_by": true}));
    let out = env.run_ok(&[]);
    assert!(
        stderr(&out).contains("out of date order although asked to sort it"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.loaded(), env.expected("2026-11-21", "2026-11-24"));
    // Each login's report twice (201, 202, 200 each time), every time asking for date order.
    let posts = env.reports_requested();
    assert_eq!(posts.len(), 12, "{posts:?}");
    for p in &posts {
        let body: Value = serde_json::from_str(p["body"].as_str().unwrap()).unwrap();
        assert_eq!(
            body["params"]["OrderBy"],
            json!([{"Field": "Date", "SortOrder": "ASCENDING"}])
        );
    }
    // One row per Campaign Wizard campaign and day, holding all of its ads.
    let wizard = env.query(
        "SELECT count(), uniqExact(stat_date, campaign_id) FROM {db}.fact_direct_daily FINAL \
         WHERE campaign_name LIKE '% 1' AND ad_id = 0",
    );
    let (n, keys) = wizard.trim().split_once('\t').unwrap();
    assert!(n != "0" && n == keys, "{wizard}");
}

#[test]
fn plain_rows_out_of_date_order_are_written_as_they_come_without_asking_again() {
    // One campaign per login: the first, never a Campaign Wizard one (those are every third
    // from the second), so no row is a hidden ad's and none is summed.
    let env = Env::configured(|c| c.direct_campaigns = 1);
    env.control("/config", json!({"direct_ignore_order_by": true}));
    let out = env.run_ok(&[]);
    assert!(
        !stderr(&out).contains("out of date order"),
        "{}",
        stderr(&out)
    );
    let expected = env.expected("2026-11-21", "2026-11-24");
    let dates: std::collections::BTreeSet<&String> = expected.keys().map(|k| &k.0).collect();
    assert!(
        dates.len() > 1,
        "rows of several dates, so their order can differ"
    );
    assert_eq!(env.loaded(), expected);
    // Each login's report once (201, 202, 200).
    assert_eq!(env.reports_requested().len(), 6);
    let hidden = env.query("SELECT count() FROM {db}.fact_direct_daily FINAL WHERE ad_id = 0");
    assert_eq!(hidden, "0\n");
}

#[test]
fn offline_201_202_200_resends_the_same_request_and_a_one_day_report_comes_at_once() {
    let env = Env::new();
    env.run_ok(&[]);
    let posts = env.reports_requested();
    // Per login (loaded at once, so their requests interleave): 201, 202, 200 — the
    // identical body each time (same ReportName).
    assert_eq!(posts.len(), 6, "{posts:?}");
    let mut by_login: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for p in &posts {
        let login = p["headers"]["client-login"].as_str().unwrap().to_owned();
        by_login.entry(login).or_default().push(p);
    }
    assert_eq!(by_login.len(), 2);
    for login_posts in by_login.values() {
        assert_eq!(login_posts.len(), 3);
        assert!(
            login_posts
                .iter()
                .all(|p| p["body"] == login_posts[0]["body"])
        );
        assert_eq!(login_posts[0]["headers"]["processingmode"], "auto");
        assert_eq!(login_posts[0]["headers"]["returnmoneyinmicros"], "false");
    }
    let firsts: Vec<&Value> = by_login.values().map(|v| v[0]).collect();
    assert_ne!(
        firsts[0]["body"], firsts[1]["body"],
        "a unique ReportName per report"
    );
    let waits = env.query(
        "SELECT visitParamExtractUInt(metrics, 'offline_waits') FROM {db}.meta_job_runs WHERE job = 'direct' AND status = 'ok'",
    );
    assert_eq!(waits, "4\n");
    // One day: online at once in `auto` mode.
    let before = env.reports_requested().len();
    env.run_ok(&["--days", "1"]);
    assert_eq!(
        env.reports_requested().len() - before,
        2,
        "one request per login"
    );
    assert_eq!(env.loaded(), env.expected("2026-11-21", "2026-11-24"));
}

#[test]
fn a_full_queue_is_waited_out_and_a_report_too_large_is_split() {
    let env = Env::new();
    env.control(
        "/faults",
        json!({"route": "/direct/json/v5/reports", "status": 400, "count": 1, "headers": {"retryIn": "0"}}),
    );
    let out = env.run(&["--days", "1"], &[("HTTP_MAX_ATTEMPTS", "1")]);
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("code 9000") && log.contains("offline queue"),
        "{log}"
    );
    assert_eq!(env.loaded(), env.expected("2026-11-24", "2026-11-24"));
    // A 502 on a longer window: the loader asks for the halves.
    let env = Env::new();
    env.control("/config", json!({"direct_online_days": 10}));
    env.control(
        "/faults",
        json!({"route": "/direct/json/v5/reports", "status": 502, "count": 1}),
    );
    // With the client's retries on (the tests' default is 2 attempts): a 502 is not retried.
    let out = env.run(&[], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("in two halves"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("retrying"), "{}", stderr(&out));
    assert_eq!(env.loaded(), env.expected("2026-11-21", "2026-11-24"));
}

#[test]
fn a_failing_login_fails_the_run_with_the_apis_words_and_the_others_are_loaded() {
    let env = Env::new();
    // A login Direct gives no rights to is a setting to fix: exit 78 naming it.
    let out = env.run(&["--days", "1"], &[("DIRECT_LOGINS", "client-a,stranger")]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let run = env.query("SELECT status, message FROM {db}.meta_job_runs WHERE job = 'direct'");
    assert!(
        run.starts_with("error\tYandex Direct refuses the login `stranger` (code 54: No rights: No rights to access the advertiser in Client-Login): check `DIRECT_LOGINS`"),
        "{run}"
    );
    let loaded: Vec<String> = env.loaded().keys().map(|k| k.1.clone()).collect();
    assert!(
        !loaded.is_empty() && loaded.iter().all(|l| l == "client-a"),
        "{loaded:?}"
    );
    let bad = env.run(&["--days", "1"], &[("DIRECT_TOKEN", "not-the-token")]);
    assert_eq!(bad.status.code(), Some(78), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("check `DIRECT_TOKEN`"),
        "{}",
        stderr(&bad)
    );
    assert!(!stderr(&bad).contains("not-the-token"));
}

#[test]
fn dry_run_parses_everything_writes_nothing_and_needs_no_clickhouse() {
    let env = Env::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let out = env.run(&["--dry-run"], &[("CLICKHOUSE_URL", &url)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = env.twin_rows("2026-11-21", "2026-11-24").len();
    let cost: i64 = env
        .expected("2026-11-21", "2026-11-24")
        .values()
        .map(|v| v.2)
        .sum();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "dry run, nothing written: would write {rows} ad-day rows"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("cost {}.{:02}", cost / 100, cost % 100)),
        "{text}"
    );
    assert_eq!(
        env.query("SELECT count() FROM {db}.fact_direct_daily"),
        "0\n"
    );
}

#[test]
fn a_rerun_after_direct_dropped_rows_leaves_exactly_the_second_runs_totals() {
    let env = Env::new();
    env.run_ok(&[]);
    let first = env.loaded();
    assert_eq!(first, env.expected("2026-11-21", "2026-11-24"));
    // Direct corrects its statistics: most rows of the window are gone.
    env.shape(json!({"direct_rows_kept_percent": 13}));
    env.run_ok(&[]);
    let expected = env.expected("2026-11-21", "2026-11-24");
    assert!(
        !expected.is_empty() && expected != first,
        "the vendor dropped rows"
    );
    assert_eq!(env.loaded(), expected, "exactly the second run's totals");
}

#[test]
fn a_report_cut_short_writes_nothing_of_that_piece_and_fails_naming_login_and_dates() {
    for (what, control) in [
        (
            "a clean end after 5 rows, no summary",
            json!({"direct_cut_after_rows": 5}),
        ),
        ("a body cut in the middle of a line", Value::Null),
    ] {
        let env = Env::new();
        if control.is_null() {
            // Every answer loses its second half (201/202 have no body to lose).
            env.control(
                "/faults",
                json!({"route": "/direct/json/v5/reports", "truncate": true}),
            );
        } else {
            env.control("/config", control);
        }
        let out = env.run(&[], &[]);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", stderr(&out));
        let err = stderr(&out);
        for login in ["client-a", "client-b"] {
            assert!(
                err.contains(&format!(
                    "Yandex Direct login {login} report 2026-11-21..2026-11-24: nothing of it written"
                )),
                "{what}: {err}"
            );
        }
        assert!(err.contains("cut off"), "{what}: {err}");
        let run = env.query("SELECT status, message FROM {db}.meta_job_runs WHERE job = 'direct'");
        assert!(
            run.starts_with("error\t") && run.contains("nothing of it written"),
            "{what}: {run}"
        );
        assert_eq!(
            env.query("SELECT count() FROM {db}.fact_direct_daily"),
            "0\n",
            "{what}: nothing written"
        );
    }
}

#[test]
fn a_report_of_several_months_writes_one_part_a_month_and_a_cut_one_writes_nothing() {
    // Enough rows that every month's insert has sent some to ClickHouse before the cut.
    let env = Env::configured(|c| c.direct_campaigns = 40);
    let (from, to) = ("2026-09-01", "2026-11-24");
    let window = ["--since", from, "--until", to];
    let one_piece = [("DIRECT_CHUNK_DAYS", "100")];
    let served = env.twin_rows(from, to);
    let fewest = ["client-a", "client-b"]
        .map(|l| served.iter().filter(|(login, _)| login == l).count())
        .into_iter()
        .min()
        .unwrap();
    // Cut in November: September's and October's rows are whole by then.
    let cut = fewest * 9 / 10;
    let november = served
        .iter()
        .filter(|(l, f)| l == "client-a" && f[0].starts_with("2026-11"))
        .count();
    assert!(fewest - cut < november, "the cut falls in the last month");
    env.control("/config", json!({"direct_cut_after_rows": cut}));
    let err = env.run_failing(&window, &one_piece, 1);
    assert!(err.contains("nothing of it written"), "{err}");
    assert_eq!(
        env.query("SELECT count() FROM {db}.fact_direct_daily"),
        "0\n",
        "nothing of a cut report"
    );

    env.control("/config", json!({"direct_cut_after_rows": null}));
    let out = env.run(&window, &one_piece);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(env.loaded(), env.expected(from, to));
    // Parts written by inserts (level 0, merged ones too): one a month for each login's
    // report, as a month's rows go to one insert.
    let parts = env.query(&format!(
        "SELECT partition, countIf(level = 0) FROM system.parts \
         WHERE database = '{}' AND table = 'fact_direct_daily' GROUP BY partition ORDER BY partition",
        env.db.name
    ));
    assert_eq!(parts, "202609\t2\n202610\t2\n202611\t2\n");
}
