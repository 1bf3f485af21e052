//! The status page's pictures: a timeline of the last 7 days for every job of the job table,
//! a chart of the last 30 days for every source, the campaign queue's oldest due age per
//! shard. Everything the assertions expect is computed here from the rows seeded here (the
//! expected schedule elapses by plain arithmetic on Unix time, not by the calendar code).

use camp_queue::testing::TestStand;
use chrono::{DateTime, Days, NaiveDate};
use zakaz_core::jobs::{JOBS, Schedule};
use zakaz_core::time::MOSCOW;

use crate::{ENABLED, Env, T, get};

const MIN: i64 = 60;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;
/// The window of the timelines: the 7 days up to T.
const FROM: i64 = T - 7 * DAY;

/// One seeded run.
pub struct Run {
    pub job: &'static str,
    pub status: &'static str,
    /// Seconds before T it started.
    pub ago: i64,
    pub took: i64,
    pub warnings: u64,
}

const fn run(job: &'static str, status: &'static str, ago: i64, took: i64) -> Run {
    Run {
        job,
        status,
        ago,
        took,
        warnings: 0,
    }
}

/// The journal: it begins with an `alerts` run nine days before T (before the window); a
/// qtickets run just before the window is followed 20 minutes later by one inside it (no gap);
/// qtickets was killed on Saturday noon, warned at 08:50 and failed at 11:59 on Monday.
pub const RUNS: &[Run] = &[
    run("alerts", "ok", 9 * DAY, 2),
    run("qtickets", "ok", 7 * DAY + 10 * MIN, 10),
    run("qtickets", "ok", 7 * DAY - 10 * MIN, 12),
    // Never ended: killed at its deadline (start + 300 s).
    run("qtickets", "running", 2 * DAY, 0),
    Run {
        warnings: 2,
        ..run("qtickets", "ok", 3 * HOUR + 10 * MIN, 20)
    },
    run("qtickets", "ok", 5 * MIN, 10),
    run("qtickets", "error", MIN, 5),
    run("vk_ads", "ok", HOUR, 60),
    run("direct", "ok", 50 * MIN, 30),
    run("alerts", "ok", 10 * MIN, 2),
];

/// Each timer job's calendar as Unix-time arithmetic: elapses at `offset` modulo `period`
/// (Moscow is UTC+3 all year), runs start within `delay` after one, and a gap longer than
/// `window` (interval × 1.5 + delay + timeout) is missed.
struct Expect {
    period: i64,
    offset: i64,
    delay: i64,
    window: i64,
}

fn schedule(job: &str) -> Expect {
    match job {
        // *:0/15
        "qtickets" => Expect {
            period: 15 * MIN,
            offset: 0,
            delay: MIN,
            window: 15 * MIN * 3 / 2 + MIN + 5 * MIN,
        },
        // 00:00 MSK = 21:00 UTC
        "vk_ads" => Expect {
            period: DAY,
            offset: 21 * HOUR,
            delay: 5 * MIN,
            window: DAY * 3 / 2 + 5 * MIN + 10 * MIN,
        },
        // 00:10 MSK
        "direct" => Expect {
            period: DAY,
            offset: 21 * HOUR + 10 * MIN,
            delay: 5 * MIN,
            window: DAY * 3 / 2 + 5 * MIN + 10 * MIN,
        },
        // Even Moscow hours = odd UTC hours.
        "alerts" => Expect {
            period: 2 * HOUR,
            offset: HOUR,
            delay: 5 * MIN,
            window: 3 * HOUR + 5 * MIN + 2 * MIN,
        },
        other => panic!("no schedule for {other}"),
    }
}

/// Elapses `t` with `after < t`, `t ≥ FROM` and `t + delay < before`: (count, first).
fn elapses(e: &Expect, after: i64, before: i64) -> (i64, Option<i64>) {
    let start = after.max(FROM - 1);
    let first = (start - e.offset).div_euclid(e.period) * e.period + e.offset + e.period;
    let last = (before - e.delay - 1 - e.offset).div_euclid(e.period) * e.period + e.offset;
    if last < first {
        (0, None)
    } else {
        ((last - first) / e.period + 1, Some(first))
    }
}

/// What a job's timeline must say: counts by category, missed elapses and gaps, longest run.
pub fn timeline_title(job: &str) -> String {
    let kind = zakaz_core::jobs::get(job).schedule;
    match kind {
        Schedule::Service { .. } => return format!("{job}: a service, not in the run journal"),
        Schedule::Workers { .. } => {
            return format!(
                "{job}: the queue's workers keep no run journal; see the campaign queue"
            );
        }
        Schedule::Timer { .. } => {}
    }
    let inside: Vec<&Run> = RUNS
        .iter()
        .filter(|r| r.job == job && r.ago <= 7 * DAY)
        .collect();
    let count = |f: &dyn Fn(&Run) -> bool| inside.iter().filter(|r| f(r)).count();
    let mut title = format!(
        "{job}, last 7 days: {} ok, {} warnings, {} error, {} killed, {} running",
        count(&|r| r.status == "ok" && r.warnings == 0),
        count(&|r| r.status == "ok" && r.warnings > 0),
        count(&|r| r.status == "error"),
        // Seeded `running` runs are all past their deadline at T.
        count(&|r| r.status == "running"),
        0,
    );
    if ENABLED.contains(&job) {
        let (missed, gaps) = missed(job);
        title.push_str(&format!(", {missed} missed in {gaps} gap(s)"));
    } else {
        title.push_str("; missed runs not counted (disabled)");
    }
    if let Some(longest) = inside
        .iter()
        .map(|r| if r.status == "running" { 300 } else { r.took })
        .max()
    {
        title.push_str(&format!("; longest run {}", duration(longest)));
    }
    title
}

fn duration(secs: i64) -> String {
    match secs {
        s if s < 60 => format!("{s} s"),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{} min {} s", s / 60, s % 60),
    }
}

/// Missed elapses and the gaps they are in: between the job's starts (from its last before
/// the window, or the journal's first run when it has none), and from its last start to T.
pub fn missed(job: &str) -> (i64, usize) {
    let e = schedule(job);
    let mut starts: Vec<i64> = RUNS
        .iter()
        .filter(|r| r.job == job)
        .map(|r| T - r.ago)
        .collect();
    starts.sort_unstable();
    let journal_began = RUNS.iter().map(|r| T - r.ago).min().unwrap();
    if !starts.iter().any(|s| *s < FROM) {
        starts.insert(0, journal_began);
    }
    starts.push(T);
    let (mut total, mut gaps) = (0, 0);
    for pair in starts.windows(2) {
        if pair[1] - pair[0] > e.window {
            let (n, _) = elapses(&e, pair[0], pair[1]);
            if n > 0 {
                total += n;
                gaps += 1;
            }
        }
    }
    (total, gaps)
}

/// `Mon 15 Jun 11:00` (Moscow).
fn when(unix: i64) -> String {
    DateTime::from_timestamp(unix, 0)
        .unwrap()
        .with_timezone(&MOSCOW)
        .format("%a %-d %b %H:%M")
        .to_string()
}

/// The qtickets bars the page must draw: (category, title).
pub fn qtickets_bars() -> Vec<(&'static str, String)> {
    let hour = |ago: i64| {
        let start = T - ago;
        let h = start - start.rem_euclid(HOUR);
        let end = when(h + HOUR);
        format!("{}–{} MSK", when(h), &end[end.len() - 5..])
    };
    vec![
        (
            "ok",
            format!("{}: 1 ok; longest 12 s", hour(7 * DAY - 10 * MIN)),
        ),
        (
            "killed",
            format!("{}: 1 killed; longest 5 min", hour(2 * DAY)),
        ),
        (
            "warnings",
            format!("{}: 1 warnings; longest 20 s", hour(3 * HOUR + 10 * MIN)),
        ),
        (
            "error",
            format!("{}: 1 ok, 1 error; longest 10 s", hour(5 * MIN)),
        ),
    ]
}

/// The qtickets missed span between the killed run (Saturday noon) and the warned one.
pub fn qtickets_weekend_span() -> String {
    let e = schedule("qtickets");
    let (a, b) = (T - 2 * DAY, T - 3 * HOUR - 10 * MIN);
    let (n, first) = elapses(&e, a, b);
    format!(
        "missed: {n} expected run(s), none started from {} to {} MSK",
        when(first.unwrap()),
        when(b)
    )
}

/// T's Moscow date minus `days`.
pub fn date(days: u64) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 6, 15)
        .unwrap()
        .checked_sub_days(Days::new(days))
        .unwrap()
}

/// Fact rows: (source, days before today, value). qtickets: tickets per event and date
/// (event 1 on day 1 is loaded twice, the later version wins); vk_ads and direct: one row each;
/// gmail: tickets per mailed report row. Day 40 is outside the charts' 30 days.
pub const FACTS: &[(&str, u64, u64)] = &[
    ("qtickets", 1, 5),
    ("qtickets", 1, 7),
    ("qtickets", 1, 9),
    ("qtickets", 10, 4),
    ("qtickets", 40, 100),
    ("vk_ads", 1, 1),
    ("vk_ads", 1, 1),
    ("vk_ads", 1, 1),
    ("vk_ads", 2, 1),
    ("direct", 1, 1),
    ("direct", 1, 1),
    ("gmail_ingest", 3, 11),
    ("gmail_ingest", 3, 6),
];
/// The later version of qtickets' event 1 on day 1.
pub const REPLACED: u64 = 6;

/// What a source's chart must hold per day (days before today → value), from [`FACTS`].
pub fn chart_values(source: &str) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (i, (s, days, value)) in FACTS.iter().enumerate() {
        if *s != source || *days >= 30 {
            continue;
        }
        // The first qtickets row is replaced by its later version.
        let value = if i == 0 { REPLACED } else { *value };
        match out.iter_mut().find(|(d, _)| d == days) {
            Some(entry) => entry.1 += value,
            None => out.push((*days, value)),
        }
    }
    out
}

/// What a source's chart must say of its 30 days.
pub fn chart_title(source: &str) -> String {
    let unit = match source {
        "qtickets" | "gmail_ingest" => "tickets sold",
        _ => "rows",
    };
    let values = chart_values(source);
    let total: u64 = values.iter().map(|v| v.1).sum();
    let day = |d: NaiveDate| d.format("%a %-d %b").to_string();
    // The highest value; of equal ones the latest (fewest days ago).
    let top = values
        .iter()
        .max_by_key(|(days, value)| (*value, std::cmp::Reverse(*days)))
        .map(|(days, value)| format!(", most {value} on {}", day(date(*days))))
        .unwrap_or_default();
    format!(
        "<title id=\"ch-{source}\">{source}: {unit} per day, {} to {}: total {total}{top}; {} of 30 days without any</title>",
        day(date(29)),
        day(date(0)),
        30 - values.len()
    )
}

/// The campaign queue on two shards of the local MariaDB: (shard, table, cid, minutes queued
/// before T, minutes after T it may be tried). Copy 13 is older but waits for a retry.
pub const QUEUED: &[(u32, &str, u64, i64, i64)] = &[
    (1, "copy", 11, 90, -90),
    (1, "copy", 12, 30, -30),
    (1, "copy", 13, 200, 60),
    (2, "rest", 21, 15, -15),
];

pub struct Page {
    /// Dropping it drops the queue's databases.
    pub _stand: TestStand,
    pub queue: camp_queue::db::DbArgs,
}

fn utc(unix: i64) -> String {
    DateTime::from_timestamp(unix, 0)
        .unwrap()
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Seed the journal, the facts and the queue.
pub async fn seed(env: &Env) -> Page {
    for r in RUNS {
        let started = T - r.ago;
        let finished = if r.status == "running" {
            "NULL".to_owned()
        } else {
            format!("toDateTime({})", started + r.took)
        };
        env.ch
            .execute(&format!(
                "INSERT INTO meta_job_run_events (job, run_id, seq, status, started_at, finished_at, deadline_at, rows_processed, message, metrics, host, pid) \
                 SELECT '{job}', '{job}-{ago}', {seq}, '{status}', toDateTime({started}), {finished}, toDateTime({deadline}), 1, 'a message', '{{\"warnings\":{w}}}', 'test', 1",
                job = r.job,
                ago = r.ago,
                seq = u8::from(r.status != "running"),
                status = r.status,
                deadline = started + 300,
                w = r.warnings,
            ))
            .await
            .unwrap();
    }
    for (i, (source, days, value)) in FACTS.iter().enumerate() {
        let date = format!("toDate('{}')", date(*days));
        let n = i + 1;
        let sql = match *source {
            "qtickets" => format!(
                "INSERT INTO fact_qtickets_sales_daily (sales_date, event_id, city, tickets_sold, _version) SELECT {date}, {n}, 'Москва', {value}, 1"
            ),
            "vk_ads" => format!(
                "INSERT INTO fact_vk_ads_daily (stat_date, ad_plan_id, _version) SELECT {date}, {n}, 1"
            ),
            "direct" => format!(
                "INSERT INTO fact_direct_daily (stat_date, client_login, _version) SELECT {date}, 'login-{n}', 1"
            ),
            "gmail_ingest" => format!(
                "INSERT INTO stg_mail_sales (report_date, tickets_sold, message_id, row_no, _version) SELECT {date}, {value}, 'm-1', {n}, 1"
            ),
            other => panic!("no facts for {other}"),
        };
        env.ch.execute(&sql).await.unwrap();
    }
    env.ch
        .execute(&format!(
            "INSERT INTO fact_qtickets_sales_daily (sales_date, event_id, city, tickets_sold, _version) SELECT toDate('{}'), 1, 'Москва', {REPLACED}, 2",
            date(1)
        ))
        .await
        .unwrap();

    // Both shards on the system MariaDB; the binary is never run (the schema comes from the
    // library).
    let stand = TestStand {
        binary: "camp-queue".into(),
        prefix: format!("hct_{}", zakaz_core::testing::unique_suffix()),
        shards: 2,
        ports: vec![3306],
        env: Vec::new(),
    };
    let env_vars = stand.dsn_env();
    let queue = camp_queue::db::DbArgs {
        ppcdict_dsn: Some(zakaz_core::Secret::new(env_vars[0].1.clone())),
        shard_dsns: Some(zakaz_core::Secret::new(env_vars[1].1.clone())),
        shards: None,
    };
    let deployment = camp_queue::db::connect(&queue).unwrap();
    camp_queue::schema::migrate(&deployment).await.unwrap();
    deployment.close().await;
    for (shard, table, cid, ago, retry) in QUEUED {
        let (queued, next) = (utc(T - ago * 60), utc(T + retry * 60));
        let sql = match *table {
            "copy" => format!(
                "INSERT INTO camp_operations_queue_copy (cid, ClientID, new_ClientID, role, queue_time, effective_queue_time, next_try_at) \
                 VALUES ({cid}, 1, 2, 'client', '{queued}', '{queued}', '{next}')"
            ),
            _ => format!(
                "INSERT INTO camp_operations_queue (cid, operation, queue_time, next_try_at) VALUES ({cid}, 'arc', '{queued}', '{next}')"
            ),
        };
        stand.sql(*shard, &sql);
    }
    Page {
        _stand: stand,
        queue,
    }
}

/// The queue rows the page must show: (shard, queue, text of the age cell).
pub fn queue_rows() -> Vec<(u32, &'static str, String)> {
    let mut out = Vec::new();
    for shard in [1, 2] {
        for queue in ["copy", "rest"] {
            let rows: Vec<_> = QUEUED
                .iter()
                .filter(|q| q.0 == shard && q.1 == queue)
                .collect();
            let due: Vec<_> = rows.iter().filter(|q| q.4 <= 0).collect();
            let text = match due.iter().map(|q| q.3).max() {
                Some(age) => format!(
                    "{age} min <small>({} due of {})</small>",
                    due.len(),
                    rows.len()
                ),
                None => format!("nothing due <small>({} queued)</small>", rows.len()),
            };
            out.push((shard, queue, text));
        }
    }
    out
}

/// Every picture the page must hold, as fragments of its HTML.
pub fn fragments() -> Vec<String> {
    let mut out = Vec::new();
    for job in JOBS {
        out.push(format!(
            "<svg class=\"timeline\" data-job=\"{job}\" viewBox=\"0 0 1000 40\" preserveAspectRatio=\"none\" width=\"100%\" height=\"40\" role=\"img\" aria-labelledby=\"tl-{job}\"><title id=\"tl-{job}\">{title}</title>",
            job = job.name,
            title = timeline_title(job.name),
        ));
    }
    for (category, title) in qtickets_bars() {
        out.push(format!("data-category=\"{category}\""));
        out.push(format!("<title>{title}</title>"));
    }
    out.push(format!("<title>{}</title>", qtickets_weekend_span()));
    for job in JOBS {
        let Some(fresh) = job.freshness else { continue };
        out.push(format!(
            "<svg class=\"chart\" data-source=\"{}\"",
            fresh.source
        ));
        let values = chart_values(fresh.source);
        out.push(chart_title(fresh.source));
        for (days, value) in values {
            out.push(format!(
                "data-day=\"{}\" data-value=\"{value}\"",
                date(days)
            ));
        }
        // The first and last day of the window.
        out.push(format!("data-day=\"{}\" data-value=\"0\"", date(29)));
    }
    for (shard, queue, text) in queue_rows() {
        out.push(format!(
            "<tr data-shard=\"{shard}\" data-queue=\"{queue}\"><td>{shard}</td><td>{queue}</td><td>{text}</td>"
        ));
        out.push(format!(
            "<svg class=\"age\" data-shard=\"{shard}\" data-queue=\"{queue}\""
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_draws_every_jobs_week_every_sources_month_and_the_queues_age() {
    let mut env = Env::new().await;
    let page = seed(&env).await;
    let mut config = env.config();
    config.queue = page.queue.clone();
    let addr = env.start(config);
    let answer = get(addr, "/");
    assert_eq!(answer.code, 200);
    let html = answer.body;
    for fragment in fragments() {
        assert!(html.contains(&fragment), "no `{fragment}` in\n{html}");
    }
    // The numbers as the test computed them (a guard on the arithmetic above).
    assert_eq!(
        timeline_title("qtickets"),
        "qtickets, last 7 days: 2 ok, 1 warnings, 1 error, 1 killed, 0 running, \
         670 missed in 3 gap(s); longest run 5 min"
    );
    assert_eq!(
        chart_title("vk_ads"),
        "<title id=\"ch-vk_ads\">vk_ads: rows per day, Sun 17 May to Mon 15 Jun: total 4, \
         most 3 on Sun 14 Jun; 28 of 30 days without any</title>"
    );
    assert_eq!(chart_values("qtickets"), vec![(1, 22), (10, 4)]);
    // One bar per hour with runs: qtickets ran in 4 hours of the week.
    let qtickets = section(&html, "<svg class=\"timeline\" data-job=\"qtickets\"");
    assert_eq!(qtickets.matches("<rect class=\"run\"").count(), 4);
    assert_eq!(qtickets.matches("<rect class=\"missed\"").count(), 3);
    // A day of each chart per date of the 30.
    let chart = section(&html, "<svg class=\"chart\" data-source=\"vk_ads\"");
    assert_eq!(chart.matches("<rect data-day=").count(), 30);
    // No run's message, no script, nothing loaded from elsewhere.
    assert!(!html.contains("a message"));
    assert!(!html.contains("<script") && !html.contains(" src=") && !html.contains("<link"));
    drop(page);
}

/// From `start` to the end of that `<svg>`.
pub fn section<'a>(html: &'a str, start: &str) -> &'a str {
    let at = html
        .find(start)
        .unwrap_or_else(|| panic!("no {start} in {html}"));
    let end = html[at..].find("</svg>").unwrap() + at;
    &html[at..end]
}
