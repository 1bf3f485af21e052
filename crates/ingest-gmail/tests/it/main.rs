//! `ingest-gmail` end to end: the real binary, `api-sandbox` in-process with a pinned clock (the
//! loader acts as of the same instant), real ClickHouse.

use std::collections::BTreeMap;
use std::process::{Command, Output};

use api_sandbox::{SandboxConfig, Server};
use serde_json::{Value, json};
use zakaz_core::testing::{JobUnderTest, TestDb, sandbox_control};

/// 21:00 Moscow: the newest report mail arrived at exactly 00:00 Moscow that day (the
/// sandbox dates its mails from its clock), which the window-boundary test uses.
pub const NOW: &str = "2026-11-25T21:00:00+03:00";

pub struct Env {
    pub sandbox: Server,
    pub db: TestDb,
}

/// (message id, row number) → (date, event, city, tickets, revenue, refunds in kopecks, currency).
type Rows = BTreeMap<(String, u32), (String, String, String, u64, i64, i64, String)>;

impl Default for Env {
    fn default() -> Self {
        Env::new()
    }
}

impl Env {
    pub fn new() -> Env {
        let config = SandboxConfig {
            now: Some(NOW.into()),
            ..SandboxConfig::default()
        };
        let db = TestDb::migrated_blocking();
        Env {
            sandbox: Server::start_local(config).unwrap(),
            db,
        }
    }

    pub fn query(&self, sql: &str) -> String {
        self.db.query(sql)
    }

    /// A statement (an insert of hand-made rows), `{db}` standing for the test's database.
    pub fn exec(&self, sql: &str) {
        zakaz_core::testing::http_post(
            &zakaz_core::testing::clickhouse_url(),
            &sql.replace("{db}", &format!("`{}`", self.db.name)),
        )
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    pub fn control(&self, path: &str, body: Value) {
        sandbox_control(&self.sandbox.base_url, path, &body);
    }

    pub fn requests(&self, prefix: &str) -> Vec<Value> {
        zakaz_core::testing::sandbox_requests(&self.sandbox.base_url, prefix)
    }

    /// Every row the sandbox's report mails mean to carry.
    pub fn meant(&self) -> Rows {
        let reports: Vec<Value> =
            reqwest::blocking::get(format!("{}/_sandbox/gmail/reports", self.sandbox.base_url))
                .unwrap()
                .json()
                .unwrap();
        let mut out = Rows::new();
        let mut row_no: BTreeMap<String, u32> = BTreeMap::new();
        for r in reports {
            let id = r["message_id"].as_str().unwrap().to_owned();
            let n = row_no.entry(id.clone()).or_default();
            *n += 1;
            out.insert(
                (id, *n),
                (
                    r["date"].as_str().unwrap().to_owned(),
                    r["event"].as_str().unwrap().to_owned(),
                    r["city"].as_str().unwrap().to_owned(),
                    r["tickets_sold"].as_u64().unwrap(),
                    r["revenue_cents"].as_i64().unwrap(),
                    r["refunds_cents"].as_i64().unwrap(),
                    r["currency"].as_str().unwrap().to_owned(),
                ),
            );
        }
        out
    }

    pub fn loaded(&self) -> Rows {
        self.query(
            "SELECT message_id, row_no, report_date, event_name, city, tickets_sold, toInt64(revenue * 100), toInt64(refunds * 100), currency \
             FROM {db}.stg_mail_sales FINAL ORDER BY message_id, row_no",
        )
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (
                (f[0].to_owned(), f[1].parse().unwrap()),
                (
                    f[2].to_owned(),
                    f[3].to_owned(),
                    f[4].to_owned(),
                    f[5].parse().unwrap(),
                    f[6].parse().unwrap(),
                    f[7].parse().unwrap(),
                    f[8].to_owned(),
                ),
            )
        })
        .collect()
    }

    /// The ids of messages carrying the processed label.
    pub fn labelled(&self) -> Vec<String> {
        let state = self.sandbox.sandbox().state();
        let Some((label, _)) = state
            .gmail_user_labels
            .iter()
            .find(|(_, n)| n == "zakaz-processed")
        else {
            return Vec::new();
        };
        let mut ids: Vec<String> = state
            .gmail_labels
            .iter()
            .filter(|(_, labels)| labels.contains(label))
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }
}

impl JobUnderTest for Env {
    fn command(&self, args: &[&str]) -> Command {
        let now = chrono::DateTime::from_timestamp(self.sandbox.sandbox().now(), 0).unwrap();
        let mut cmd = self.db.command(env!("CARGO_BIN_EXE_ingest-gmail"));
        cmd.args(args)
            .arg(format!("--now={}", now.to_rfc3339()))
            .env("GMAIL_API_URL", format!("{}/gmail", self.sandbox.base_url))
            .env(
                "GOOGLE_TOKEN_URL",
                format!("{}/google/token", self.sandbox.base_url),
            )
            .env("GMAIL_CLIENT_ID", "sandbox-client")
            .env("GMAIL_CLIENT_SECRET", "sandbox-secret")
            .env("GMAIL_REFRESH_TOKEN", "sandbox-refresh")
            .env("HTTP_MAX_ATTEMPTS", "3")
            .env("LOG_LEVEL", "info");
        cmd
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The report mail ids, newest first.
fn report_ids(env: &Env) -> Vec<String> {
    env.sandbox
        .sandbox()
        .data
        .gmail
        .messages
        .iter()
        .filter(|m| m.subject.starts_with("Отчёт"))
        .map(|m| m.id.clone())
        .collect()
}

#[test]
fn every_report_variant_becomes_exactly_the_rows_it_meant_and_a_rerun_changes_nothing() {
    let env = Env::new();
    let out = env.run_ok(&[]);
    assert!(
        stderr(&out).contains("run finished: 6 report mail(s) loaded"),
        "{}",
        stderr(&out)
    );
    let meant = env.meant();
    assert_eq!(
        env.loaded(),
        meant,
        "CSV UTF-8/1251, CSV with commas, XLSX, HTML, HTML under a wrong charset"
    );
    let mut all = report_ids(&env);
    all.sort();
    assert_eq!(env.labelled(), all, "every loaded mail is labelled");
    // A second run finds nothing new, and the table is the same.
    let again = env.run_ok(&[]);
    assert!(
        stderr(&again).contains("0 report mail(s) loaded (0 rows) of 0 found"),
        "{}",
        stderr(&again)
    );
    assert_eq!(env.loaded(), meant);
    // Re-reading a window processes the mails again: still the same table.
    env.run_ok(&["--since", "2026-11-01"]);
    assert_eq!(env.loaded(), meant);
    let runs = env.query(
        "SELECT status, count() FROM {db}.meta_job_runs WHERE job = 'gmail_ingest' GROUP BY status",
    );
    assert_eq!(runs, "ok\t3\n");
}

#[test]
fn a_broken_attachment_is_reported_left_unlabelled_retried_and_alerts_after_repeated_failures() {
    let env = Env::new();
    let ids = report_ids(&env);
    let broken = ids[0].clone();
    // Its CSV attachment comes back as a table without the columns of a report.
    let garbage = api_sandbox::encode::base64url(b"foo;bar\n1;2\n", false);
    env.control(
        "/faults",
        json!({"route": format!("/gmail/gmail/v1/users/me/messages/{broken}/attachments/*"), "status": 200, "body": {"size": 12, "data": garbage}}),
    );
    let first = env.run(&[], &[("GMAIL_MAX_FAILURES", "2")]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stderr(&first).contains(&format!("message_id={broken}")),
        "{}",
        stderr(&first)
    );
    assert!(!env.labelled().contains(&broken), "left for the next run");
    let loaded_ids: Vec<String> = env.loaded().keys().map(|k| k.0.clone()).collect();
    assert!(
        !loaded_ids.contains(&broken),
        "nothing of the broken report"
    );
    assert_eq!(env.labelled().len(), ids.len() - 1);
    let run = env.query(
        "SELECT status, visitParamExtractUInt(metrics, 'warnings'), position(message, 'no date column') > 0 FROM {db}.meta_job_runs WHERE job = 'gmail_ingest'",
    );
    assert_eq!(run, "ok\t1\t1\n");
    // The second failure in a row fails the run, naming the mail: the alerts job alerts.
    let second = env.run(&[], &[("GMAIL_MAX_FAILURES", "2")]);
    assert_eq!(second.status.code(), Some(1), "{}", stderr(&second));
    assert!(
        stderr(&second).contains(&format!("failed 2 runs in a row ({broken})")),
        "{}",
        stderr(&second)
    );
    // Fixed at the source: the next run loads it and clears its count.
    reqwest::blocking::Client::new()
        .delete(format!("{}/_sandbox/faults", env.sandbox.base_url))
        .send()
        .unwrap();
    env.run_ok(&[]);
    assert_eq!(env.loaded(), env.meant());
    assert_eq!(
        env.query(&format!(
            "SELECT attempts FROM {{db}}.stg_mail_failures FINAL WHERE message_id = '{broken}'"
        )),
        "0\n"
    );
}

#[test]
fn a_mail_exactly_at_a_window_boundary_is_read_once_whichever_way_after_counts() {
    for exclusive in [false, true] {
        let env = Env::new();
        env.control("/config", json!({"gmail_after_exclusive": exclusive}));
        let newest = env
            .sandbox
            .sandbox()
            .data
            .gmail
            .messages
            .iter()
            .find(|m| m.subject.starts_with("Отчёт"))
            .unwrap()
            .id
            .clone();
        // 00:00 Moscow on 2026-11-25: the end of one window and the start of the next.
        env.run_ok(&["--since", "2026-11-20", "--until", "2026-11-24"]);
        env.run_ok(&["--since", "2026-11-25", "--until", "2026-11-25"]);
        let fetches = env
            .requests(&format!("/gmail/gmail/v1/users/me/messages/{newest}"))
            .iter()
            .filter(|r| r["path"].as_str().unwrap().ends_with(&newest))
            .count();
        assert_eq!(fetches, 1, "after: exclusive = {exclusive}");
        assert!(env.loaded().keys().any(|k| k.0 == newest));
    }
}

#[test]
fn oauth_errors_exit_78_naming_the_setting_and_a_429_is_waited_out() {
    let env = Env::new();
    let bad = env.run(&[], &[("GMAIL_REFRESH_TOKEN", "revoked-long-ago")]);
    assert_eq!(bad.status.code(), Some(78), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("`GMAIL_REFRESH_TOKEN`") && stderr(&bad).contains("authorise"),
        "{}",
        stderr(&bad)
    );
    assert!(!stderr(&bad).contains("revoked-long-ago"));
    let client = env.run(&[], &[("GMAIL_CLIENT_SECRET", "wrong")]);
    assert_eq!(client.status.code(), Some(78), "{}", stderr(&client));
    assert!(
        stderr(&client).contains("`GMAIL_CLIENT_ID` and `GMAIL_CLIENT_SECRET`"),
        "{}",
        stderr(&client)
    );
    env.control(
        "/faults",
        json!({"route": "/gmail/gmail/v1/users/me/messages", "status": 429, "count": 1}),
    );
    let out = env.run_ok(&[]);
    assert!(stderr(&out).contains("status=429"), "{}", stderr(&out));
    assert_eq!(env.loaded(), env.meant());
}

#[test]
fn the_daily_sales_view_takes_the_api_where_it_has_data_and_the_mail_elsewhere() {
    let env = Env::new();
    env.run_ok(&[]);
    // QTickets delivered the oldest report's date (one event in Moscow), not the newest's.
    let meant = env.meant();
    let mut dates: Vec<String> = meant.values().map(|v| v.0.clone()).collect();
    dates.sort();
    dates.dedup();
    let (api_date, mail_date) = (dates[0].clone(), dates[dates.len() - 1].clone());
    env.exec(&format!(
        "INSERT INTO {{db}}.fact_qtickets_sales_daily (sales_date, event_id, city, tickets_sold, revenue, refunds, net_revenue, orders, _version) \
         VALUES ('{api_date}', 1, 'Москва', 7, 700.00, 100.00, 600.00, 3, 1)"
    ));
    let view = |date: &str| {
        env.query(&format!(
        "SELECT source, sum(tickets_sold), toInt64(sum(revenue) * 100), toInt64(sum(net_revenue) * 100) FROM {{db}}.v_sales_daily WHERE date = '{date}' GROUP BY source"
    ))
    };
    assert_eq!(
        view(&api_date),
        "qtickets\t7\t70000\t60000\n",
        "the API wins"
    );
    let (t, r, f) = meant
        .values()
        .filter(|v| v.0 == mail_date)
        .fold((0, 0, 0), |a, v| (a.0 + v.3, a.1 + v.4, a.2 + v.5));
    assert_eq!(
        view(&mail_date),
        format!("mail\t{t}\t{r}\t{}\n", r - f),
        "the mail fills in"
    );
    // A newer report of the same date (by the e-mail's own date) supersedes the older one.
    env.exec(&format!(
        "INSERT INTO {{db}}.stg_mail_sales (report_date, event_name, city, tickets_sold, revenue, refunds, currency, message_id, row_no, received_at, _version) \
         VALUES ('{mail_date}', 'Поправка', 'Москва', 1, 10.00, 0, 'RUB', 'zzz-newer', 1, toDateTime('2026-12-31 00:00:00'), 1)"
    ));
    assert_eq!(view(&mail_date), "mail\t1\t1000\t1000\n");
}

#[test]
fn dry_run_reads_everything_writes_and_labels_nothing_and_needs_no_clickhouse() {
    let env = Env::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let out = env.run(&["--dry-run"], &[("CLICKHOUSE_URL", &url)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let rows = env.meant().len();
    assert!(
        text.contains(&format!(
            "dry run, nothing written or labelled: 6 report mail(s) loaded ({rows} rows)"
        )),
        "{text}"
    );
    assert!(env.labelled().is_empty());
    assert_eq!(env.query("SELECT count() FROM {db}.stg_mail_sales"), "0\n");
}

#[test]
fn a_processed_label_with_spaces_is_searched_as_gmail_writes_it() {
    let env = Env::new();
    env.run(&[], &[("GMAIL_PROCESSED_LABEL", "zakaz processed")]);
    let again = env.run(&[], &[("GMAIL_PROCESSED_LABEL", "zakaz processed")]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("0 report mail(s) loaded (0 rows) of 0 found"),
        "the labelled mails are not found again: {}",
        stderr(&again)
    );
    let searches = env.requests("/gmail/gmail/v1/users/me/messages");
    let last = searches
        .iter()
        .rev()
        .find(|r| r["path"].as_str().unwrap().ends_with("/messages"))
        .unwrap();
    assert!(
        last["query"]
            .as_str()
            .unwrap()
            .contains("-label:zakaz-processed"),
        "{last}"
    );
}
