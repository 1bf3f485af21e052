//! `ingest-gmail` end to end: the real binary, `api-sandbox` in-process with a pinned clock (the
//! loader acts as of the same instant), real ClickHouse.

use std::collections::BTreeMap;
use std::process::{Command, Output};

use api_sandbox::{SandboxConfig, Server};
use serde_json::{Value, json};
use zakaz_core::testing::{JobUnderTest, TestDb, sandbox_control};

mod properties;

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
    let client = env.run(&[], &[("GMAIL_CLIENT_SECRET", "wrong-client-secret")]);
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

/// Add a mail to the sandbox's mailbox (`POST /_sandbox/gmail/messages`).
fn add_mail(env: &Env, body: Value) {
    env.control("/gmail/messages", body);
}

fn failures(env: &Env, id: &str) -> String {
    env.query(&format!(
        "SELECT attempts, last_error FROM {{db}}.stg_mail_failures FINAL WHERE message_id = '{id}'"
    ))
}

#[test]
fn hostile_mails_are_each_a_counted_failure_and_the_other_mails_load() {
    let env = Env::new();
    // `İ` grows when lower-cased: positions found in the lower-cased text are not the
    // original's. The table itself is no report (no date column).
    let istanbul = "19e0000000000a01";
    add_mail(
        &env,
        json!({"id": istanbul, "html": "<p>Отчёт İstanbul</p><table><tr><th>Город</th><th>Выручка</th></tr><tr><td>Стамбул</td><td>1 000,00</td></tr></table>"}),
    );
    // A few KB whose two cells span the whole grid: 2^34 cells if read as a range.
    let grid = "19e0000000000a02";
    add_mail(
        &env,
        json!({"id": grid, "attachments": [{"filename": "sales.xlsx", "xlsx_cells": [["A1", "Дата"], ["XFD1048576", "1"]]}]}),
    );
    // A row number past u32: calamine's arithmetic overflows (a panic in a debug build).
    let overflow = "19e0000000000a04";
    add_mail(
        &env,
        json!({"id": overflow, "attachments": [{"filename": "sales.xlsx", "xlsx_cells": [["A1", "Дата"], ["A99999999999", "1"]]}]}),
    );
    // A valid report the API says is 3 GB: never downloaded.
    let huge = "19e0000000000a03";
    add_mail(
        &env,
        json!({"id": huge, "attachments": [{"filename": "sales.xlsx", "declared_size": 3_000_000_000u64,
            "xlsx_rows": [["date", "event", "tickets_sold", "revenue"], ["2026-11-24", "Концерт", "1", "100.00"]]}]}),
    );
    let out = env.run(&[], &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    // The caught panic is the mail's one-line error; nothing reached the default hook.
    assert!(!err.contains("thread '"), "{err}");
    // (A release build wraps instead, and the sheet-size limit refuses that mail.)
    if cfg!(debug_assertions) {
        assert!(err.contains("it panicked at "), "{err}");
    }
    assert_eq!(env.loaded(), env.meant(), "the other mails load");
    for (id, reason) in [
        (istanbul, "no date column"),
        (grid, "GMAIL_MAX_SHEET_CELLS"),
        (huge, "GMAIL_MAX_ATTACHMENT_BYTES"),
        (overflow, "sales.xlsx"),
    ] {
        let row = failures(&env, id);
        assert!(
            row.starts_with("1\t") && row.contains(reason),
            "{id}: {row}"
        );
        assert!(err.contains(&format!("message_id={id}")), "{err}");
        assert!(!env.labelled().contains(&id.to_owned()));
    }
    assert!(
        env.requests(&format!(
            "/gmail/gmail/v1/users/me/messages/{huge}/attachments"
        ))
        .is_empty(),
        "the 3 GB attachment is not fetched"
    );
    let run = env.query(
        "SELECT status, visitParamExtractUInt(metrics, 'messages_failed') FROM {db}.meta_job_runs WHERE job = 'gmail_ingest'",
    );
    assert_eq!(run, "ok\t4\n");
}

#[test]
fn a_rate_limit_403_is_backed_off_within_the_deadline_and_the_run_succeeds() {
    let env = Env::new();
    let first = report_ids(&env)[0].clone();
    let usage = |reason: &str| {
        json!({"error": {"code": 403, "message": "Rate Limit Exceeded", "status": "PERMISSION_DENIED",
            "errors": [{"domain": "usageLimits", "reason": reason, "message": "Rate Limit Exceeded"}]}})
    };
    env.control(
        "/faults",
        json!([
            // The label listing: `rateLimitExceeded`, `Retry-After: 0`.
            {"route": "/gmail/gmail/v1/users/me/labels", "status": 403, "count": 1,
             "headers": {"Retry-After": "0"}, "body": usage("rateLimitExceeded")},
            // The search: `userRateLimitExceeded`, `Retry-After: 0`.
            {"route": "/gmail/gmail/v1/users/me/messages", "status": 403, "count": 1,
             "headers": {"Retry-After": "0"}, "body": usage("userRateLimitExceeded")},
            // A message: Gmail's own body, "Retry after <a second from now>", no header.
            {"route": format!("/gmail/gmail/v1/users/me/messages/{first}"), "status": 403, "count": 1},
        ]),
    );
    let out = env.run_ok(&[]);
    let err = stderr(&out);
    assert_eq!(env.loaded(), env.meant(), "{err}");
    let waits: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("Gmail rate limit"))
        .collect();
    assert_eq!(waits.len(), 3, "{err}");
    assert!(waits.iter().any(|l| l.contains("delay_ms=1000")), "{err}");
    assert_eq!(
        waits.iter().filter(|l| l.contains("delay_ms=0")).count(),
        2,
        "{err}"
    );
    // A wait past the run's deadline is not waited: the run fails at once, saying so.
    env.control(
        "/faults",
        json!({"route": "/gmail/gmail/v1/users/me/labels", "status": 403, "count": 1,
               "headers": {"Retry-After": "3600"}, "body": usage("userRateLimitExceeded")}),
    );
    let late = env.run(&[], &[]);
    assert_eq!(late.status.code(), Some(1), "{}", stderr(&late));
    assert!(
        stderr(&late).contains("past the run's deadline"),
        "{}",
        stderr(&late)
    );
}

#[test]
fn mail_dated_in_the_future_or_not_from_a_trusted_sender_changes_no_date() {
    let env = Env::new();
    let genuine = report_ids(&env)[0].clone();
    let meant = env.meant();
    let date = meant
        .iter()
        .find(|(k, _)| k.0 == genuine)
        .map(|(_, v)| v.0.clone())
        .unwrap();
    let (d, m, y) = (&date[8..10], &date[5..7], &date[0..4]);
    let report = |event: &str| {
        json!([{"filename": "sales.csv", "text": format!(
            "Дата;Событие;Город;Продано билетов;Выручка\n{d}.{m}.{y};{event};Москва;999;999 999,00\n"
        )}])
    };
    let spoofed = "19e0000000000b01";
    let lookalike = "19e0000000000b02";
    let unsigned = "19e0000000000b03";
    let future = "19e0000000000b04";
    // From the trusted domain, but Google's DKIM and SPF checks failed (the sender wrote a
    // passing Authentication-Results of its own further down).
    add_mail(
        &env,
        json!({"id": spoofed, "auth": "spoofed", "attachments": report("Подделка")}),
    );
    // Authenticated, for a domain that only starts like the trusted one.
    add_mail(
        &env,
        json!({"id": lookalike, "from": "QTickets <reports@qtickets.ru.example.net>", "attachments": report("Подделка")}),
    );
    add_mail(
        &env,
        json!({"id": unsigned, "auth": "none", "attachments": report("Подделка")}),
    );
    // Genuine, received before the newest report of that date, but its Date: says 2099.
    add_mail(
        &env,
        json!({"id": future, "date": "2099-01-01T00:00:00+03:00", "internal_date": "2026-11-24T22:00:00+03:00",
               "attachments": report("Старый отчёт")}),
    );
    let out = env.run_ok(&[]);
    let err = stderr(&out);
    // The view shows exactly what the genuine mails meant.
    let mut expected: BTreeMap<(String, String), (u64, i64, i64)> = BTreeMap::new();
    for v in meant.values() {
        let e = expected.entry((v.0.clone(), v.2.clone())).or_default();
        e.0 += v.3;
        e.1 += v.4;
        e.2 += v.5;
    }
    let expected: String = expected
        .iter()
        .map(|((d, c), (t, r, f))| format!("{d}\t{c}\t{t}\t{r}\t{f}\tmail\n"))
        .collect();
    assert_eq!(
        env.query("SELECT date, city, tickets_sold, toInt64(revenue * 100), toInt64(refunds * 100), source FROM {db}.v_sales_daily ORDER BY date, city"),
        expected,
        "{err}"
    );
    // Nothing of the untrusted mails is stored, nothing counted as failing, nothing labelled;
    // each is named in a warning with its From.
    for (id, from) in [
        (spoofed, "reports@qtickets.ru"),
        (lookalike, "reports@qtickets.ru.example.net"),
        (unsigned, "reports@qtickets.ru"),
    ] {
        assert_eq!(
            env.query(&format!(
                "SELECT count() FROM {{db}}.stg_mail_sales WHERE message_id = '{id}'"
            )),
            "0\n"
        );
        assert_eq!(failures(&env, id), "");
        assert!(!env.labelled().contains(&id.to_owned()));
        assert!(
            err.lines()
                .any(|l| l.contains(&format!("message_id={id}")) && l.contains(from)),
            "{err}"
        );
    }
    // The misdated mail is loaded, dated when Google received it.
    assert_eq!(
        env.query(&format!(
            "SELECT DISTINCT toString(received_at) FROM {{db}}.stg_mail_sales FINAL WHERE message_id = '{future}'"
        )),
        "2026-11-24 22:00:00\n"
    );
    assert!(env.labelled().contains(&future.to_owned()));
}

#[test]
fn an_unknown_search_operator_or_no_trusted_sender_exits_78_before_any_request() {
    let env = Env::new();
    let typo = env.run(
        &[],
        &[(
            "GMAIL_QUERY",
            "from:qtickets.ru subjet:\"Отчёт о продажах\"",
        )],
    );
    assert_eq!(typo.status.code(), Some(78), "{}", stderr(&typo));
    assert!(
        stderr(&typo).contains("`GMAIL_QUERY`") && stderr(&typo).contains("`subjet:`"),
        "{}",
        stderr(&typo)
    );
    let open = env.run(&[], &[("GMAIL_QUERY", "from:qtickets.ru subject:\"Отчёт")]);
    assert_eq!(open.status.code(), Some(78), "{}", stderr(&open));
    let nobody = env.run(&[], &[("GMAIL_TRUSTED_SENDERS", " ")]);
    assert_eq!(nobody.status.code(), Some(78), "{}", stderr(&nobody));
    assert!(
        stderr(&nobody).contains("`GMAIL_TRUSTED_SENDERS`"),
        "{}",
        stderr(&nobody)
    );
    assert!(env.requests("/").is_empty(), "no request was made");
    // Every documented operator, grouping and quoting passes.
    env.run_ok(&[]);
    let out = env.run(
        &["--dry-run"],
        &[(
            "GMAIL_QUERY",
            "{from:qtickets.ru from:(reports@qtickets.ru)} -in:spam +Отчёт (subject:\"о продажах\" OR filename:csv) has:attachment older_than:1y newer_than:30d",
        )],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_gmail_outage_fails_the_run_and_blames_no_mail() {
    let env = Env::new();
    // Gmail answers 503 on every message (after the client's own retries).
    env.control(
        "/faults",
        json!({"route": "/gmail/gmail/v1/users/me/messages/*", "status": 503}),
    );
    let out = env.run(&[], &[("HTTP_MAX_ATTEMPTS", "1")]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        env.query("SELECT count() FROM {db}.stg_mail_failures"),
        "0\n",
        "no mail is counted as failing for Gmail's trouble"
    );
    assert_eq!(env.query("SELECT count() FROM {db}.stg_mail_sales"), "0\n");
}

#[test]
fn a_query_ending_in_or_is_refused_before_any_request() {
    let env = Env::new();
    let out = env.run(&[], &[("GMAIL_QUERY", "subject:\"Отчёт о продажах\" OR")]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("GMAIL_QUERY"), "{}", stderr(&out));
}

#[test]
fn a_refresh_token_without_the_modify_scope_exits_78_naming_it() {
    let env = Env::new();
    env.control(
        "/faults",
        json!({"route": "/gmail/gmail/v1/users/me/labels", "status": 403,
               "body": {"error": {"code": 403, "message": "Request had insufficient authentication scopes.",
                                  "errors": [{"domain": "global", "reason": "insufficientPermissions"}]}}}),
    );
    let out = env.run(&[], &[]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("`GMAIL_REFRESH_TOKEN` needs the scope"),
        "{}",
        stderr(&out)
    );
}
