//! The report in each of its forms: JSON for probes, the Prometheus text format, one HTML
//! page for a human, and plain text for a terminal. Pure functions of the report.

use std::fmt::Write;

use serde_json::json;

use crate::report::{Chart, History, Report, TIMELINE_DAYS, Timeline, Verdict};

pub fn healthz(report: &Report) -> String {
    json!({
        "status": if report.clickhouse.reachable { "ok" } else { "error" },
        "clickhouse": if report.clickhouse.reachable { "reachable" } else { "unreachable" },
    })
    .to_string()
}

pub fn detailed(report: &Report) -> String {
    serde_json::to_string_pretty(report).unwrap_or_default()
}

/// The freshness part alone; its status is the worst source's.
pub fn freshness(report: &Report) -> (Verdict, String) {
    let status = report
        .sources
        .iter()
        .map(|s| s.verdict)
        .max()
        .unwrap_or(Verdict::Ok);
    let body = serde_json::to_string_pretty(&json!({
        "status": status,
        "generated_at": report.generated_at,
        "sources": report.sources,
    }))
    .unwrap_or_default();
    (status, body)
}

/// One metric family: `# HELP`, `# TYPE`, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &str, kind: &str, help: &str) -> Self {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        push_labels(self.out, labels);
        let _ = writeln!(self.out, " {value}");
    }

    /// An integer sample: no formatting machinery, it is on every `/metrics` request.
    fn count(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.out.push_str(name);
        push_labels(self.out, labels);
        self.out.push(' ');
        self.out.push_str(itoa::Buffer::new().format(value));
        self.out.push('\n');
    }
}

fn push_labels(out: &mut String, labels: &[(&str, &str)]) {
    if labels.is_empty() {
        return;
    }
    out.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        push_label_value(out, v);
        out.push('"');
    }
    out.push('}');
}

/// A label value, escaped as the text format wants (backslash, quote, newline).
fn push_label_value(out: &mut String, v: &str) {
    if !v.contains(['\\', '"', '\n']) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// The data part of `/metrics` (cached with the report); the server appends its own counters.
pub fn metrics(report: &Report) -> String {
    let mut out = String::new();
    let name = "zakaz_clickhouse_up";
    Family::new(
        &mut out,
        name,
        "gauge",
        "1 when ClickHouse answered the last refresh.",
    )
    .sample(name, &[], u8::from(report.clickhouse.reachable));
    let name = "zakaz_health_status";
    Family::new(
        &mut out,
        name,
        "gauge",
        "Overall verdict: 0 ok, 1 warning, 2 error.",
    )
    .sample(name, &[], report.status.level());

    let name = "zakaz_job_status";
    let mut f = Family::new(
        &mut out,
        name,
        "gauge",
        "Verdict per job: 0 ok, 1 warning, 2 error.",
    );
    for j in &report.jobs {
        f.sample(name, &[("job", j.job)], j.verdict.level());
    }
    let name = "zakaz_job_enabled";
    let mut f = Family::new(
        &mut out,
        name,
        "gauge",
        "1 when the job's timer or service is enabled.",
    );
    for j in &report.jobs {
        f.sample(name, &[("job", j.job)], u8::from(j.enabled));
    }
    let name = "zakaz_job_last_success_timestamp_seconds";
    let mut f = Family::new(
        &mut out,
        name,
        "gauge",
        "Start of the job's last successful run (Unix time).",
    );
    for j in &report.jobs {
        if let Some(t) = j.last_success_unix {
            f.sample(name, &[("job", j.job)], t);
        }
    }
    let name = "zakaz_job_last_success_duration_seconds";
    let mut f = Family::new(
        &mut out,
        name,
        "gauge",
        "How long the job's last successful run took.",
    );
    for j in &report.jobs {
        if let Some(d) = j.last_success_duration_seconds {
            f.sample(name, &[("job", j.job)], d);
        }
    }
    let name = "zakaz_job_last_run_timestamp_seconds";
    let mut f = Family::new(
        &mut out,
        name,
        "gauge",
        "Start of the job's last run, whatever its status (Unix time).",
    );
    for j in &report.jobs {
        if let Some(r) = &j.last_run {
            f.sample(name, &[("job", j.job)], r.started_unix);
        }
    }
    let name = "zakaz_job_last_run_rows";
    let mut f = Family::new(
        &mut out,
        name,
        "gauge",
        "Rows the job's last run processed.",
    );
    for j in &report.jobs {
        if let Some(r) = &j.last_run {
            f.sample(name, &[("job", j.job)], r.rows);
        }
    }
    let name = "zakaz_job_next_run_timestamp_seconds";
    let mut f = Family::new(
        &mut out,
        name,
        "gauge",
        "Next scheduled start of an enabled timer job, before its randomized delay (Unix time).",
    );
    for j in &report.jobs {
        if let Some(t) = j.next_run_unix {
            f.sample(name, &[("job", j.job)], t);
        }
    }
    let name = "zakaz_job_runs_total";
    let mut f = Family::new(
        &mut out,
        name,
        "counter",
        "Runs recorded in meta_job_runs, by status.",
    );
    for j in &report.jobs {
        for (status, n) in [
            ("ok", j.runs.ok),
            ("error", j.runs.error),
            ("running", j.runs.running),
            ("unfinished", j.runs.unfinished),
        ] {
            f.sample(name, &[("job", j.job), ("status", status)], n);
        }
    }

    let name = "zakaz_source_status";
    let mut f = Family::new(
        &mut out,
        name,
        "gauge",
        "Freshness verdict per source: 0 ok, 1 warning, 2 error.",
    );
    for s in &report.sources {
        f.sample(name, &[("source", s.source)], s.verdict.level());
    }
    let name = "zakaz_source_lag_seconds";
    let mut f = Family::new(
        &mut out,
        name,
        "gauge",
        "Whole days between today (Moscow) and the source's latest business date, in seconds; absent when it never loaded.",
    );
    for s in &report.sources {
        if let Some(days) = s.lag_days {
            f.sample(name, &[("source", s.source)], days * 86_400);
        }
    }
    let name = "zakaz_source_rows";
    let mut f = Family::new(
        &mut out,
        name,
        "gauge",
        "Rows of the source's table in v_data_freshness.",
    );
    for s in &report.sources {
        f.sample(name, &[("source", s.source)], s.rows);
    }
    let name = "zakaz_alerts_open";
    Family::new(
        &mut out,
        name,
        "gauge",
        "Alerts whose latest state is firing.",
    )
    .sample(name, &[], report.open_alerts.len());
    queue_metrics(&mut out, &report.queue);
    out
}

/// Request counters and latencies of the server itself, appended to [`metrics`].
pub struct RequestStats<'a> {
    pub counts: &'a [((&'static str, u16), u64)],
    pub latencies: &'a [RouteLatency<'a>],
    /// The histogram's upper bounds, as their `le` labels.
    pub buckets: &'a [&'a str],
}

/// One route's latency histogram.
pub struct RouteLatency<'a> {
    pub route: &'a str,
    /// Per bucket, not cumulative: requests at most that bound and above the one before.
    pub per_bucket: &'a [u64],
    pub sum_seconds: f64,
    pub count: u64,
}

pub fn request_metrics(stats: &RequestStats<'_>, out: &mut String) {
    let name = "healthcheck_http_requests_total";
    let mut f = Family::new(
        out,
        name,
        "counter",
        "Requests answered, by route and status code.",
    );
    for ((route, code), n) in stats.counts {
        let mut buf = itoa::Buffer::new();
        f.count(name, &[("route", route), ("code", buf.format(*code))], *n);
    }
    let name = "healthcheck_http_request_duration_seconds";
    let mut f = Family::new(
        out,
        name,
        "histogram",
        "Time to answer a request, by route.",
    );
    for l in stats.latencies {
        let mut cumulative = 0;
        for (le, n) in stats.buckets.iter().zip(l.per_bucket) {
            cumulative += n;
            f.count(
                "healthcheck_http_request_duration_seconds_bucket",
                &[("route", l.route), ("le", le)],
                cumulative,
            );
        }
        f.count(
            "healthcheck_http_request_duration_seconds_bucket",
            &[("route", l.route), ("le", "+Inf")],
            l.count,
        );
        f.sample(
            "healthcheck_http_request_duration_seconds_sum",
            &[("route", l.route)],
            l.sum_seconds,
        );
        f.count(
            "healthcheck_http_request_duration_seconds_count",
            &[("route", l.route)],
            l.count,
        );
    }
}

/// The front's connections, appended to [`metrics`] after the request counters.
pub struct ConnectionStats {
    pub open: usize,
    pub max: usize,
    pub evicted: u64,
    pub timed_out: u64,
    pub rejected: u64,
    pub accept_errors: u64,
}

pub fn connection_metrics(stats: &ConnectionStats, out: &mut String) {
    let name = "healthcheck_http_connections_open";
    Family::new(out, name, "gauge", "Client connections open now.").count(
        name,
        &[],
        stats.open as u64,
    );
    let name = "healthcheck_http_connections_max";
    Family::new(
        out,
        name,
        "gauge",
        "Client connections open at most; at the cap the one waiting longest is closed.",
    )
    .count(name, &[], stats.max as u64);
    let name = "healthcheck_http_connections_closed_total";
    let mut f = Family::new(
        out,
        name,
        "counter",
        "Connections the server closed early: evicted at the cap, past their deadline, or rejected (not HTTP, too large).",
    );
    for (reason, n) in [
        ("evicted", stats.evicted),
        ("deadline", stats.timed_out),
        ("rejected", stats.rejected),
    ] {
        f.count(name, &[("reason", reason)], n);
    }
    let name = "healthcheck_http_accept_errors_total";
    Family::new(out, name, "counter", "accept() failures.").count(name, &[], stats.accept_errors);
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `YYYY-MM-DD HH:MM` of an RFC 3339 Moscow timestamp.
fn short(ts: &str) -> String {
    ts.get(..16).unwrap_or(ts).replace('T', " ")
}

/// The colour of each run category on the page (the Okabe–Ito palette, which people with
/// any common colour-vision deficiency tell apart), and what the legend says of it.
pub const CATEGORIES: &[(&str, &str, &str)] = &[
    ("ok", "#009E73", "ok"),
    ("warnings", "#E69F00", "ok, problems worked around"),
    ("error", "#D55E00", "error"),
    ("killed", "#000000", "killed (no end before its deadline)"),
    ("running", "#0072B2", "running"),
    ("unknown", "#999999", "unknown"),
    ("missed", "#CC79A7", "missed (expected, never started)"),
];

/// How opaque a missed span is drawn (bars over it stay readable).
const MISSED_OPACITY: &str = "0.45";
/// The charts' bars.
const VALUE_COLOUR: &str = "#0072B2";
/// A day without rows.
const NONE_COLOUR: &str = "#BBBBBB";
const BACKGROUND: &str = "#F3F4F6";
const GRID: &str = "#C9CCD1";

pub fn colour(category: &str) -> &'static str {
    CATEGORIES
        .iter()
        .find(|(c, _, _)| *c == category)
        .map_or("#999999", |(_, colour, _)| colour)
}

/// The page's CSS: no external assets, readable from 320 px up.
const STYLE: &str = "body{font:15px/1.4 system-ui,sans-serif;margin:1em;color:#222;max-width:60em}\
    table{border-collapse:collapse;width:100%;margin-bottom:1.5em}\
    th,td{text-align:left;padding:.35em .5em;border-bottom:1px solid #ddd;vertical-align:top}\
    .ok{color:#176b1a}.warning{color:#9a6700}.error{color:#b42318}\
    .badge{font-weight:bold;text-transform:uppercase}small{color:#666}\
    figure{margin:0 0 1.2em}figcaption{margin-bottom:.2em}svg{display:block;width:100%}\
    .axis{position:relative;height:1.4em;overflow:hidden;font-size:12px;color:#555}\
    .axis span{position:absolute;top:0;padding-left:2px;white-space:nowrap}.axis .r{right:0}\
    .legend{display:flex;flex-wrap:wrap;gap:.2em 1em;list-style:none;padding:0;margin:.3em 0}\
    .sw{display:inline-block;width:.9em;height:.9em;margin-right:.3em;vertical-align:-.1em}\
    details{font-size:13px}td.bar{width:40%;vertical-align:middle}\
    @media(max-width:600px){.wide{display:none}body{margin:.6em}}";

fn msk_time(unix: i64) -> chrono::DateTime<chrono_tz::Tz> {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap_or_default()
        .with_timezone(&zakaz_core::time::MOSCOW)
}

/// `Mon 15 Jun 11:00` (Moscow).
pub fn when(unix: i64) -> String {
    msk_time(unix).format("%a %-d %b %H:%M").to_string()
}

/// `Mon 15 Jun`.
pub fn day(date: chrono::NaiveDate) -> String {
    date.format("%a %-d %b").to_string()
}

/// A run's length: `45 s`, `5 min`, `2 min 5 s`, `1 h 20 min`.
pub fn duration(secs: u32) -> String {
    match secs {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 && s % 60 == 0 => format!("{} min", s / 60),
        s if s < 3600 => format!("{} min {} s", s / 60, s % 60),
        s if s % 3600 < 60 => format!("{} h", s / 3600),
        s => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

/// `1 ok, 1 error` — the categories with runs.
fn tally_words(t: &crate::report::Tally) -> String {
    t.by_category()
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(word, n)| format!("{n} {word}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a job's timeline says, in words: its `<title>` and caption.
pub fn timeline_summary(job: &str, t: &Timeline) -> String {
    match t.history {
        History::NotJournaled if job == "camp_queue" => {
            format!("{job}: the queue's workers keep no run journal; see the campaign queue")
        }
        History::NotJournaled => format!("{job}: a service, not in the run journal"),
        History::Unavailable => format!("{job}: the run journal could not be read"),
        History::Runs => {
            let r = &t.total;
            let mut out = format!(
                "{job}, last {TIMELINE_DAYS} days: {} ok, {} warnings, {} error, {} killed, {} running",
                r.ok, r.warnings, r.error, r.killed, r.running
            );
            if r.unknown > 0 {
                let _ = write!(out, ", {} unknown", r.unknown);
            }
            if t.expected {
                let _ = write!(
                    out,
                    ", {} missed in {} gap(s)",
                    t.missed_runs(),
                    t.missed.len()
                );
            } else {
                out.push_str("; missed runs not counted (disabled)");
            }
            if r.total() > 0 {
                let _ = write!(out, "; longest run {}", duration(t.longest));
            }
            out
        }
    }
}

/// What one hour's bar says.
pub fn hour_label(h: &crate::report::HourBar) -> String {
    format!(
        "{}–{} MSK: {}; longest {}",
        when(h.start),
        msk_time(h.start + 3600).format("%H:%M"),
        tally_words(&h.runs),
        duration(h.longest)
    )
}

/// What one missed span says.
pub fn missed_label(m: &crate::report::Missed) -> String {
    if m.expected == 0 {
        format!("missed: no run from {} to {} MSK", when(m.from), when(m.to))
    } else {
        format!(
            "missed: {} expected run(s), none started from {} to {} MSK",
            m.expected,
            when(m.from),
            when(m.to)
        )
    }
}

/// Width and height of a timeline's drawing (stretched to the page's width).
const TL_W: f64 = 1000.0;
const TL_H: f64 = 40.0;
/// The width of one hour's bar (an hour is 1000 / 168 ≈ 5.95 wide): wider, so that a single
/// run stays visible at a phone's width; the worse categories are drawn over the others.
const BAR_W: f64 = 8.0;

/// The order bars are drawn in: the worst last, on top.
fn drawing_order(category: &str) -> u8 {
    match category {
        "ok" => 0,
        "running" => 1,
        "warnings" => 2,
        "unknown" => 3,
        "error" => 4,
        _ => 5,
    }
}

/// Moscow midnights strictly inside `from..to`.
fn midnights(from: i64, to: i64) -> Vec<i64> {
    let mut out = Vec::new();
    let mut date = msk_time(from).date_naive();
    loop {
        date = date.succ_opt().unwrap_or(date);
        let Some(t) = date
            .and_hms_opt(0, 0, 0)
            .and_then(|n| {
                use chrono::TimeZone;
                zakaz_core::time::MOSCOW.from_local_datetime(&n).earliest()
            })
            .map(|t| t.timestamp())
        else {
            break;
        };
        if t >= to || out.len() > 400 {
            break;
        }
        if t > from {
            out.push(t);
        }
    }
    out
}

/// A job's last days as an inline SVG (bars per hour, shaded missed spans, day lines), with
/// its summary as the accessible name and a title on every bar and span.
pub fn timeline_svg(job: &str, t: &Timeline) -> String {
    let span = (t.to - t.from).max(1) as f64;
    let x = |at: i64| ((at - t.from) as f64 / span * TL_W).clamp(0.0, TL_W);
    let mut out = String::new();
    let job_e = esc(job);
    let _ = write!(
        out,
        "<svg class=\"timeline\" data-job=\"{job_e}\" viewBox=\"0 0 {TL_W} {TL_H}\" \
         preserveAspectRatio=\"none\" width=\"100%\" height=\"{TL_H}\" role=\"img\" \
         aria-labelledby=\"tl-{job_e}\"><title id=\"tl-{job_e}\">{}</title>\
         <rect width=\"{TL_W}\" height=\"{TL_H}\" fill=\"{BACKGROUND}\"/>",
        esc(&timeline_summary(job, t)),
    );
    let days = if t.history == History::Runs {
        midnights(t.from, t.to)
    } else {
        Vec::new()
    };
    for m in days {
        let _ = write!(
            out,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"0\" y2=\"{TL_H}\" stroke=\"{GRID}\" \
             vector-effect=\"non-scaling-stroke\"/>",
            x = x(m)
        );
    }
    for m in &t.missed {
        let (x0, x1) = (x(m.from), x(m.to));
        let _ = write!(
            out,
            "<rect class=\"missed\" data-category=\"missed\" data-expected=\"{n}\" x=\"{x0:.1}\" \
             y=\"0\" width=\"{w:.1}\" height=\"{TL_H}\" fill=\"{c}\" fill-opacity=\"{MISSED_OPACITY}\">\
             <title>{label}</title></rect>",
            n = m.expected,
            w = (x1 - x0).max(2.0),
            c = colour("missed"),
            label = esc(&missed_label(m)),
        );
    }
    let scale = f64::from(t.timeout.max(1));
    let mut hours: Vec<_> = t.hours.iter().collect();
    hours.sort_by_key(|h| (drawing_order(h.runs.worst()), h.start));
    for h in hours {
        let category = h.runs.worst();
        let height = TL_H * (0.2 + 0.8 * (f64::from(h.longest) / scale).min(1.0));
        let _ = write!(
            out,
            "<rect class=\"run\" data-category=\"{category}\" data-runs=\"{runs}\" \
             data-longest=\"{longest}\" x=\"{bx:.1}\" y=\"{y:.1}\" width=\"{BAR_W}\" \
             height=\"{height:.1}\" fill=\"{c}\"><title>{label}</title></rect>",
            runs = h.runs.total(),
            longest = h.longest,
            bx = x(h.start.max(t.from)).min(TL_W - BAR_W),
            y = TL_H - height,
            c = colour(category),
            label = esc(&hour_label(h)),
        );
    }
    out.push_str("</svg>");
    out
}

/// Day labels under a timeline, at each Moscow midnight (not where too little room is left).
fn timeline_axis(t: &Timeline) -> String {
    if t.history != History::Runs {
        return String::new();
    }
    let span = (t.to - t.from).max(1) as f64;
    let mut out = String::from("<div class=\"axis\" aria-hidden=\"true\">");
    for m in midnights(t.from, t.to) {
        let pct = (m - t.from) as f64 / span * 100.0;
        if pct <= 92.0 {
            let _ = write!(
                out,
                "<span style=\"left:{pct:.1}%\">{}</span>",
                msk_time(m).format("%a %-d")
            );
        }
    }
    out.push_str("</div>");
    out
}

/// The hours with something to say (not all ok) and the missed spans, newest first: the
/// timeline as text for whoever cannot see or hover the picture.
fn timeline_details(t: &Timeline) -> String {
    let mut items: Vec<(i64, String)> = t
        .hours
        .iter()
        .filter(|h| !matches!(h.runs.worst(), "ok" | "running"))
        .map(|h| (h.start, hour_label(h)))
        .chain(t.missed.iter().map(|m| (m.from, missed_label(m))))
        .collect();
    if items.is_empty() {
        return String::new();
    }
    items.sort_by_key(|item| std::cmp::Reverse(item.0));
    let shown = items.len().min(20);
    let mut out = format!(
        "<details><summary>as text: {} hour(s) and gap(s) not ok</summary><ul>",
        items.len()
    );
    for (_, label) in &items[..shown] {
        let _ = write!(out, "<li>{}</li>", esc(label));
    }
    if items.len() > shown {
        let _ = write!(out, "<li>… and {} earlier</li>", items.len() - shown);
    }
    out.push_str("</ul></details>");
    out
}

/// Width and height of a chart's drawing; one slot of `CHART_SLOT` per day.
const CH_H: f64 = 50.0;
const CH_SLOT: f64 = 10.0;

/// What a source's chart says, in words.
pub fn chart_summary(source: &str, c: &Chart) -> String {
    let (Some(first), Some(last)) = (c.days.first(), c.days.last()) else {
        return format!("{source}: {} per day could not be read", c.unit);
    };
    let total: u64 = c.days.iter().map(|d| d.1).sum();
    let none = c.days.iter().filter(|d| d.1 == 0).count();
    let mut out = format!(
        "{source}: {} per day, {} to {}: total {total}",
        c.unit,
        day(first.0),
        day(last.0)
    );
    // The latest of the highest days.
    if let Some(top) = c.days.iter().filter(|d| d.1 > 0).max_by_key(|d| (d.1, d.0)) {
        let _ = write!(out, ", most {} on {}", top.1, day(top.0));
    }
    let _ = write!(out, "; {none} of {} days without any", c.days.len());
    out
}

/// A source's last days as an inline SVG: one bar per date, a grey stub where it had none.
pub fn chart_svg(source: &str, c: &Chart) -> String {
    let width = CH_SLOT * c.days.len().max(1) as f64;
    let top = c.days.iter().map(|d| d.1).max().unwrap_or(0).max(1) as f64;
    let src = esc(source);
    let mut out = format!(
        "<svg class=\"chart\" data-source=\"{src}\" viewBox=\"0 0 {width} {CH_H}\" \
         preserveAspectRatio=\"none\" width=\"100%\" height=\"{CH_H}\" role=\"img\" \
         aria-labelledby=\"ch-{src}\"><title id=\"ch-{src}\">{}</title>\
         <rect width=\"{width}\" height=\"{CH_H}\" fill=\"{BACKGROUND}\"/>",
        esc(&chart_summary(source, c))
    );
    for (i, (date, value)) in c.days.iter().enumerate() {
        let (height, fill, what) = if *value > 0 {
            (
                ((CH_H - 2.0) * *value as f64 / top).max(2.0),
                VALUE_COLOUR,
                format!("{value} {}", c.unit),
            )
        } else {
            (1.5, NONE_COLOUR, format!("no {}", c.unit))
        };
        let _ = write!(
            out,
            "<rect data-day=\"{date}\" data-value=\"{value}\" x=\"{x:.1}\" y=\"{y:.1}\" \
             width=\"{w:.1}\" height=\"{height:.1}\" fill=\"{fill}\"><title>{label}</title></rect>",
            x = i as f64 * CH_SLOT + 1.0,
            y = CH_H - height,
            w = CH_SLOT - 2.0,
            label = esc(&format!("{}: {what}", day(*date))),
        );
    }
    out.push_str("</svg>");
    out
}

/// The campaign queue's oldest due job per shard and queue, as text and bars.
pub fn queue_html(queue: &[camp_queue::status::ShardStatus]) -> String {
    if queue.is_empty() {
        return "<p id=\"queue\">not configured here</p>".to_owned();
    }
    let ages = queue
        .iter()
        .flat_map(|s| &s.queues)
        .filter_map(|q| q.oldest_due_age_minutes);
    let scale = ages.fold(60.0_f64, f64::max);
    let mut out = format!(
        "<p><small>Bars: the age of the oldest due job, full width {scale:.0} min.</small></p>\
         <table id=\"queue\"><tr><th>shard</th><th>queue</th><th>oldest due</th>\
         <th class=\"bar\">age</th></tr>"
    );
    for s in queue {
        if s.error.is_some() {
            let _ = write!(
                out,
                "<tr data-shard=\"{n}\"><td>{n}</td><td colspan=\"3\" class=\"error\">unreachable</td></tr>",
                n = s.shard
            );
            continue;
        }
        for q in &s.queues {
            let (text, label, width) = match q.oldest_due_age_minutes {
                Some(m) => (
                    format!("{m:.0} min <small>({} due of {})</small>", q.due, q.size),
                    format!(
                        "shard {} {}: the oldest due job has waited {m:.0} min",
                        s.shard, q.queue
                    ),
                    (m / scale * 100.0).clamp(1.0, 100.0),
                ),
                None => (
                    format!("nothing due <small>({} queued)</small>", q.size),
                    format!("shard {} {}: nothing due", s.shard, q.queue),
                    0.0,
                ),
            };
            let _ = write!(
                out,
                "<tr data-shard=\"{n}\" data-queue=\"{queue}\"><td>{n}</td><td>{queue}</td><td>{text}</td>\
                 <td class=\"bar\"><svg class=\"age\" data-shard=\"{n}\" data-queue=\"{queue}\" \
                 viewBox=\"0 0 100 10\" preserveAspectRatio=\"none\" width=\"100%\" height=\"12\" \
                 role=\"img\" aria-label=\"{label}\"><rect width=\"100\" height=\"10\" fill=\"{BACKGROUND}\"/>\
                 <rect width=\"{width:.1}\" height=\"10\" fill=\"{VALUE_COLOUR}\"/></svg></td></tr>",
                n = s.shard,
                queue = esc(q.queue),
                label = esc(&label),
            );
        }
    }
    out.push_str("</table>");
    out
}

/// One self-contained page (no external assets, no script), readable on a phone.
pub fn html(report: &Report) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"30\"><title>zakaz: {status}</title>\
         <style>{STYLE}</style></head><body>\
         <h1>zakaz jobs: <span id=\"overall\" class=\"badge {status}\">{status}</span></h1>\
         <p><small>as of {at} MSK; ClickHouse {ch}</small></p>",
        status = report.status.as_str(),
        at = esc(&short(&report.generated_at)),
        ch = match (&report.clickhouse.version, report.clickhouse.reachable) {
            (Some(v), true) => format!("{} reachable", esc(v)),
            _ => "<span class=\"error\">unreachable</span>".to_owned(),
        },
    );
    out.push_str(
        "<h2>Jobs</h2><table id=\"jobs\"><tr><th>job</th><th>state</th><th>last run</th>\
         <th>next run</th><th class=\"wide\">why</th></tr>",
    );
    for j in &report.jobs {
        let last = match &j.last_run {
            Some(r) => format!(
                "{} <small>{} ({} s, {} rows), run {}</small>",
                r.category,
                esc(&short(&r.started_at)),
                r.duration_seconds,
                r.rows,
                esc(&r.run_id)
            ),
            None => "<small>never</small>".to_owned(),
        };
        let state = if j.enabled {
            j.verdict.as_str()
        } else {
            "disabled"
        };
        let _ = write!(
            out,
            "<tr data-job=\"{job}\"><td>{job}</td><td class=\"badge {v}\">{state}</td><td>{last}</td>\
             <td>{next}</td><td class=\"wide\">{why}</td></tr>",
            job = esc(j.job),
            v = j.verdict.as_str(),
            next = j
                .next_run_at
                .as_deref()
                .map(short)
                .unwrap_or_else(|| "—".to_owned()),
            why = esc(&j.reasons.join("; ")),
        );
    }
    out.push_str("</table>");

    let _ = write!(
        out,
        "<section id=\"timelines\"><h2>Runs, last {TIMELINE_DAYS} days</h2><ul class=\"legend\" id=\"legend\">"
    );
    for (category, colour, words) in CATEGORIES {
        let opacity = if *category == "missed" {
            format!(";opacity:{MISSED_OPACITY}")
        } else {
            String::new()
        };
        let _ = write!(
            out,
            "<li data-category=\"{category}\"><span class=\"sw\" style=\"background:{colour}{opacity}\"></span>{words}</li>"
        );
    }
    out.push_str(
        "</ul><p><small>One bar per hour with runs, in the colour of its worst run; it grows \
         with the longest run (full height: the job's timeout). Shaded: runs the schedule \
         expected that never started. Lines: midnights (MSK).</small></p>",
    );
    for j in &report.jobs {
        let t = &j.timeline;
        let _ = write!(
            out,
            "<figure id=\"timeline-{job}\"><figcaption><b>{job}</b> <small>{summary}</small></figcaption>",
            job = esc(j.job),
            summary = esc(timeline_summary(j.job, t)
                .split_once(": ")
                .map_or("", |(_, rest)| rest)),
        );
        out.push_str(&timeline_svg(j.job, t));
        out.push_str(&timeline_axis(t));
        out.push_str(&timeline_details(t));
        out.push_str("</figure>");
    }
    out.push_str("</section>");

    out.push_str(
        "<h2>Data freshness</h2><table id=\"sources\"><tr><th>source</th><th>state</th>\
         <th>latest date</th><th>rows</th></tr>",
    );
    for s in &report.sources {
        let latest = match (&s.latest_date, s.lag_days) {
            (Some(d), Some(lag)) => format!("{} <small>({lag} d behind)</small>", esc(d)),
            _ => "never".to_owned(),
        };
        let _ = write!(
            out,
            "<tr data-source=\"{src}\"><td>{src}</td><td class=\"badge {v}\">{state}</td><td>{latest}</td><td>{rows}</td></tr>",
            src = esc(s.source),
            v = s.verdict.as_str(),
            state = s.state,
            rows = s.rows,
        );
    }
    let _ = write!(
        out,
        "</table><section id=\"charts\"><h2>Data, last {} days</h2>",
        crate::report::CHART_DAYS
    );
    for s in &report.sources {
        let c = &s.chart;
        let _ = write!(
            out,
            "<figure id=\"chart-{src}\"><figcaption><b>{src}</b> <small>{summary}</small></figcaption>",
            src = esc(s.source),
            summary = esc(chart_summary(s.source, c)
                .split_once(": ")
                .map_or("", |(_, rest)| rest)),
        );
        out.push_str(&chart_svg(s.source, c));
        if let (Some(first), Some(last)) = (c.days.first(), c.days.last()) {
            let _ = write!(
                out,
                "<div class=\"axis\" aria-hidden=\"true\"><span style=\"left:0\">{}</span>\
                 <span class=\"r\">{}</span></div>",
                first.0.format("%-d %b"),
                last.0.format("%-d %b")
            );
        }
        out.push_str("</figure>");
    }
    out.push_str("</section><section id=\"queue-ages\"><h2>Campaign queue</h2>");
    out.push_str(&queue_html(&report.queue));
    out.push_str("</section><h2>Open alerts</h2>");
    if report.open_alerts.is_empty() {
        out.push_str("<p id=\"alerts\">none</p>");
    } else {
        out.push_str("<ul id=\"alerts\">");
        for a in &report.open_alerts {
            let _ = write!(out, "<li>{}</li>", esc(&a.title));
        }
        out.push_str("</ul>");
    }
    out.push_str(
        "<p><small><a href=\"/healthz/detailed\">detailed JSON</a> · \
         <a href=\"/healthz/freshness\">freshness</a> · <a href=\"/metrics\">metrics</a></small></p>\
         </body></html>\n",
    );
    out
}

/// `healthcheck --once`: the detailed report for a terminal.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "overall: {}    ClickHouse: {}",
        report.status.as_str().to_uppercase(),
        match &report.clickhouse.version {
            Some(v) => format!("{v} reachable"),
            None => "unreachable".to_owned(),
        }
    );
    // On a cluster: one line per replica.
    for r in &report.clickhouse.replicas {
        let _ = writeln!(
            out,
            "  replica {}: {}{}",
            r.health.replica,
            r.verdict.as_str().to_uppercase(),
            if r.reasons.is_empty() {
                format!(
                    " ({} tables, delay {} s, queue {})",
                    r.health.tables, r.health.max_delay_secs, r.health.queue_size
                )
            } else {
                format!(" — {}", r.reasons.join("; "))
            }
        );
    }
    let _ = writeln!(
        out,
        "\n{:<13} {:<9} {:<36} {:<17} why",
        "JOB", "STATE", "LAST RUN", "NEXT RUN"
    );
    for j in &report.jobs {
        let last = j.last_run.as_ref().map_or("never".to_owned(), |r| {
            format!(
                "{} {} {}s {}r",
                r.category,
                short(&r.started_at),
                r.duration_seconds,
                r.rows
            )
        });
        let _ = writeln!(
            out,
            "{:<13} {:<9} {:<36} {:<17} {}",
            j.job,
            if j.enabled {
                j.verdict.as_str()
            } else {
                "disabled"
            },
            last,
            j.next_run_at.as_deref().map_or("-".to_owned(), short),
            j.reasons.join("; ")
        );
    }
    let _ = writeln!(
        out,
        "\n{:<13} {:<9} {:<12} {:>5} {:>10}",
        "SOURCE", "STATE", "LATEST", "LAG", "ROWS"
    );
    for s in &report.sources {
        let _ = writeln!(
            out,
            "{:<13} {:<9} {:<12} {:>5} {:>10}",
            s.source,
            s.state,
            s.latest_date.as_deref().unwrap_or("never"),
            s.lag_days.map_or("-".to_owned(), |d| format!("{d}d")),
            s.rows
        );
    }
    if !report.queue.is_empty() {
        // The same lines as `camp-queue status`.
        let _ = writeln!(out, "\ncampaign queue:");
        for line in camp_queue::status::render(&report.queue).lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    let _ = writeln!(out, "\nopen alerts: {}", report.open_alerts.len());
    for a in &report.open_alerts {
        let _ = writeln!(out, "  {}", a.title);
    }
    out
}

/// The campaign queue per shard and queue (nothing when the queue is not configured here).
fn queue_metrics(out: &mut String, queue: &[camp_queue::status::ShardStatus]) {
    if queue.is_empty() {
        return;
    }
    let name = "zakaz_camp_queue_shard_up";
    let mut f = Family::new(
        out,
        name,
        "gauge",
        "1 when the shard's queues could be read.",
    );
    for s in queue {
        f.sample(
            name,
            &[("shard", &s.shard.to_string())],
            u8::from(s.error.is_none()),
        );
    }
    type Field = fn(&camp_queue::status::QueueStatus) -> f64;
    let families: [(&str, &str, Field); 3] = [
        (
            // Seconds, as Prometheus wants; `camp-queue status` and alerts speak minutes.
            "zakaz_camp_queue_oldest_due_age_seconds",
            "Seconds since the oldest due job was queued (0 when nothing is due).",
            |q| q.oldest_due_age_minutes.unwrap_or(0.0) * 60.0,
        ),
        ("zakaz_camp_queue_size", "Jobs in the queue.", |q| {
            q.size as f64
        }),
        (
            "zakaz_camp_queue_waiting_clients",
            "Distinct clients with jobs in the queue.",
            |q| q.waiting_clients as f64,
        ),
    ];
    for (name, help, value) in families {
        let mut f = Family::new(out, name, "gauge", help);
        for s in queue {
            for q in &s.queues {
                f.sample(
                    name,
                    &[("shard", &s.shard.to_string()), ("queue", q.queue)],
                    value(q),
                );
            }
        }
    }
    let name = "zakaz_camp_queue_pinned_to_stopped_lanes";
    let mut f = Family::new(
        out,
        name,
        "gauge",
        "Copies waiting for a lane whose worker is not running.",
    );
    for s in queue.iter().filter(|s| s.error.is_none()) {
        let jobs: i64 = s.pinned_to_stopped_lanes.iter().map(|p| p.jobs).sum();
        f.sample(name, &[("shard", &s.shard.to_string())], jobs);
    }
    let name = "zakaz_camp_queue_heartbeat_age_seconds";
    let mut f = Family::new(
        out,
        name,
        "gauge",
        "Seconds since each worker's last heartbeat.",
    );
    for s in queue {
        for w in &s.workers {
            f.sample(
                name,
                &[("shard", &s.shard.to_string()), ("par_id", &w.par_id)],
                w.heartbeat_age_seconds,
            );
        }
    }
}

#[cfg(test)]
mod page {
    use super::*;
    use crate::report::{HourBar, Missed, Tally};

    /// Monday 2026-06-15 12:00 MSK.
    const T: i64 = 1_781_514_000;
    const DAY: i64 = 86_400;

    fn qtickets() -> Timeline {
        let hours = vec![
            HourBar {
                start: T - 5 * DAY,
                runs: Tally {
                    warnings: 1,
                    ..Tally::default()
                },
                longest: 150,
            },
            HourBar {
                start: T - 2 * DAY,
                runs: Tally {
                    killed: 1,
                    ..Tally::default()
                },
                longest: 300,
            },
            HourBar {
                start: T - 3600,
                runs: Tally {
                    ok: 1,
                    error: 1,
                    ..Tally::default()
                },
                longest: 10,
            },
        ];
        Timeline {
            from: T - 7 * DAY,
            to: T,
            history: History::Runs,
            total: Tally {
                ok: 1,
                warnings: 1,
                error: 1,
                killed: 1,
                ..Tally::default()
            },
            longest: 300,
            hours,
            missed: vec![Missed {
                from: T - 2 * DAY + 900,
                to: T - 300,
                expected: 191,
            }],
            expected: true,
            timeout: 300,
        }
    }

    #[test]
    fn a_timeline_draws_each_hour_in_its_worst_category_sized_by_its_longest_run() {
        let svg = timeline_svg("qtickets", &qtickets());
        assert!(
            svg.starts_with(
                "<svg class=\"timeline\" data-job=\"qtickets\" viewBox=\"0 0 1000 40\" \
                 preserveAspectRatio=\"none\" width=\"100%\" height=\"40\" role=\"img\" \
                 aria-labelledby=\"tl-qtickets\"><title id=\"tl-qtickets\">qtickets, last 7 days: \
                 1 ok, 1 warnings, 1 error, 1 killed, 0 running, 191 missed in 1 gap(s); \
                 longest run 5 min</title>"
            ),
            "{svg}"
        );
        // x: the hour's place in the week (of 1000); height 40 × (0.2 + 0.8 × longest/timeout).
        for rect in [
            "<rect class=\"run\" data-category=\"warnings\" data-runs=\"1\" data-longest=\"150\" \
             x=\"285.7\" y=\"16.0\" width=\"8\" height=\"24.0\" fill=\"#E69F00\">\
             <title>Wed 10 Jun 12:00–13:00 MSK: 1 warnings; longest 2 min 30 s</title></rect>",
            "<rect class=\"run\" data-category=\"killed\" data-runs=\"1\" data-longest=\"300\" \
             x=\"714.3\" y=\"0.0\" width=\"8\" height=\"40.0\" fill=\"#000000\">\
             <title>Sat 13 Jun 12:00–13:00 MSK: 1 killed; longest 5 min</title></rect>",
            "<rect class=\"run\" data-category=\"error\" data-runs=\"2\" data-longest=\"10\" \
             x=\"992.0\" y=\"30.9\" width=\"8\" height=\"9.1\" fill=\"#D55E00\">\
             <title>Mon 15 Jun 11:00–12:00 MSK: 1 ok, 1 error; longest 10 s</title></rect>",
            "<rect class=\"missed\" data-category=\"missed\" data-expected=\"191\" x=\"715.8\" y=\"0\" \
             width=\"283.7\" height=\"40\" fill=\"#CC79A7\" fill-opacity=\"0.45\">\
             <title>missed: 191 expected run(s), none started from Sat 13 Jun 12:15 to \
             Mon 15 Jun 11:55 MSK</title></rect>",
        ] {
            assert!(svg.contains(rect), "no {rect} in {svg}");
        }
        // Missed spans first, bars over them, the worst bars last (on top of their neighbours).
        let at = |what: &str| svg.find(what).unwrap();
        assert!(at("class=\"missed\"") < at("class=\"run\""));
        assert!(at("\"warnings\"") < at("\"error\"") && at("\"error\"") < at("\"killed\""));
        // A line at each Moscow midnight inside the week: Tuesday 9 to Monday 15.
        assert_eq!(svg.matches("<line ").count(), 7);
        assert!(svg.contains("<line x1=\"71.4\" x2=\"71.4\""), "{svg}");
        assert!(svg.ends_with("</svg>"));
    }

    #[test]
    fn a_bar_never_leaves_the_drawing_and_every_category_has_a_colour_and_a_legend() {
        let mut t = qtickets();
        t.hours = vec![HourBar {
            start: T - 600,
            runs: Tally {
                running: 1,
                ..Tally::default()
            },
            longest: 9999,
        }];
        let svg = timeline_svg("qtickets", &t);
        assert!(
            svg.contains("data-category=\"running\" data-runs=\"1\" data-longest=\"9999\" x=\"992.0\" y=\"0.0\" width=\"8\" height=\"40.0\" fill=\"#0072B2\""),
            "{svg}"
        );
        let colours: std::collections::HashSet<&str> =
            CATEGORIES.iter().map(|(_, c, _)| *c).collect();
        assert_eq!(colours.len(), CATEGORIES.len(), "colours told apart");
        for word in [
            "ok", "warnings", "error", "killed", "running", "unknown", "missed",
        ] {
            assert_ne!(colour(word), "", "{word}");
            assert!(CATEGORIES.iter().any(|(c, _, _)| *c == word), "{word}");
        }
    }

    #[test]
    fn timelines_say_why_they_have_no_bars() {
        let empty = |history| Timeline {
            from: T - 7 * DAY,
            to: T,
            history,
            ..Timeline::default()
        };
        assert_eq!(
            timeline_summary("healthcheck", &empty(History::NotJournaled)),
            "healthcheck: a service, not in the run journal"
        );
        assert_eq!(
            timeline_summary("camp_queue", &empty(History::NotJournaled)),
            "camp_queue: the queue's workers keep no run journal; see the campaign queue"
        );
        assert_eq!(
            timeline_summary("vk_ads", &empty(History::Unavailable)),
            "vk_ads: the run journal could not be read"
        );
        assert_eq!(
            timeline_summary("gmail_ingest", &empty(History::Runs)),
            "gmail_ingest, last 7 days: 0 ok, 0 warnings, 0 error, 0 killed, 0 running; \
             missed runs not counted (disabled)"
        );
        let svg = timeline_svg("healthcheck", &empty(History::NotJournaled));
        assert!(
            !svg.contains("<rect class=") && !svg.contains("<line"),
            "{svg}"
        );
        assert_eq!(timeline_axis(&empty(History::Unavailable)), "");
    }

    #[test]
    fn what_comes_from_data_is_escaped() {
        let svg = timeline_svg("a<b\"c", &qtickets());
        assert!(svg.contains("data-job=\"a&lt;b&quot;c\""), "{svg}");
        assert!(
            svg.contains("<title id=\"tl-a&lt;b&quot;c\">a&lt;b&quot;c, last"),
            "{svg}"
        );
        let chart = Chart {
            unit: "rows",
            days: vec![(chrono::NaiveDate::from_ymd_opt(2026, 6, 15).unwrap(), 1)],
            available: true,
        };
        assert!(chart_svg("x&<y>", &chart).contains("data-source=\"x&amp;&lt;y&gt;\""));
    }

    #[test]
    fn a_chart_has_a_bar_per_day_scaled_to_the_highest_and_stubs_for_days_without_rows() {
        let d = |day| chrono::NaiveDate::from_ymd_opt(2026, 6, day).unwrap();
        let chart = Chart {
            unit: "tickets sold",
            days: vec![(d(12), 4), (d(13), 0), (d(14), 21), (d(15), 0)],
            available: true,
        };
        let svg = chart_svg("qtickets", &chart);
        assert!(
            svg.starts_with(
                "<svg class=\"chart\" data-source=\"qtickets\" viewBox=\"0 0 40 50\" \
                 preserveAspectRatio=\"none\" width=\"100%\" height=\"50\" role=\"img\" \
                 aria-labelledby=\"ch-qtickets\"><title id=\"ch-qtickets\">qtickets: tickets sold \
                 per day, Fri 12 Jun to Mon 15 Jun: total 25, most 21 on Sun 14 Jun; 2 of 4 days \
                 without any</title>"
            ),
            "{svg}"
        );
        for rect in [
            // 48 × 4/21 = 9.1
            "<rect data-day=\"2026-06-12\" data-value=\"4\" x=\"1.0\" y=\"40.9\" width=\"8.0\" \
             height=\"9.1\" fill=\"#0072B2\"><title>Fri 12 Jun: 4 tickets sold</title></rect>",
            "<rect data-day=\"2026-06-13\" data-value=\"0\" x=\"11.0\" y=\"48.5\" width=\"8.0\" \
             height=\"1.5\" fill=\"#BBBBBB\"><title>Sat 13 Jun: no tickets sold</title></rect>",
            "<rect data-day=\"2026-06-14\" data-value=\"21\" x=\"21.0\" y=\"2.0\" width=\"8.0\" \
             height=\"48.0\" fill=\"#0072B2\"><title>Sun 14 Jun: 21 tickets sold</title></rect>",
        ] {
            assert!(svg.contains(rect), "no {rect} in {svg}");
        }
        let unread = Chart {
            unit: "rows",
            ..Chart::default()
        };
        assert_eq!(
            chart_summary("direct", &unread),
            "direct: rows per day could not be read"
        );
        assert!(!chart_svg("direct", &unread).contains("<rect data-day"));
    }

    #[test]
    fn the_queue_shows_each_shards_oldest_due_age_as_text_and_bar() {
        use camp_queue::status::{QueueStatus, ShardStatus};
        let queue = |name, due, age| QueueStatus {
            queue: name,
            size: 3,
            due,
            oldest_due_age_minutes: age,
            waiting_clients: 1,
        };
        let shard = |n, queues, error: Option<&str>| ShardStatus {
            shard: n,
            database: format!("ppc{n}"),
            error: error.map(str::to_owned),
            failure: None,
            queues,
            pinned_to_stopped_lanes: vec![],
            workers: vec![],
        };
        let html = queue_html(&[
            shard(
                1,
                vec![queue("copy", 2, Some(90.0)), queue("rest", 0, None)],
                None,
            ),
            shard(2, vec![queue("copy", 1, Some(30.0))], None),
            shard(3, vec![], Some("unreachable")),
        ]);
        for part in [
            "full width 90 min",
            "<tr data-shard=\"1\" data-queue=\"copy\"><td>1</td><td>copy</td><td>90 min <small>(2 due of 3)</small></td>",
            "aria-label=\"shard 1 copy: the oldest due job has waited 90 min\"><rect width=\"100\" height=\"10\" fill=\"#F3F4F6\"/><rect width=\"100.0\" height=\"10\" fill=\"#0072B2\"/>",
            "aria-label=\"shard 2 copy: the oldest due job has waited 30 min\"><rect width=\"100\" height=\"10\" fill=\"#F3F4F6\"/><rect width=\"33.3\"",
            "<td>nothing due <small>(3 queued)</small></td>",
            "aria-label=\"shard 1 rest: nothing due\"",
            "<tr data-shard=\"3\"><td>3</td><td colspan=\"3\" class=\"error\">unreachable</td></tr>",
        ] {
            assert!(html.contains(part), "no {part} in {html}");
        }
        assert_eq!(queue_html(&[]), "<p id=\"queue\">not configured here</p>");
    }

    #[test]
    fn durations_read_like_a_person_says_them() {
        for (secs, text) in [
            (0, "0 s"),
            (59, "59 s"),
            (60, "1 min"),
            (150, "2 min 30 s"),
            (3600, "1 h"),
            (4830, "1 h 20 min"),
        ] {
            assert_eq!(duration(secs), text);
        }
    }
}

#[cfg(test)]
mod prometheus {
    use super::*;

    #[test]
    fn request_counters_are_cumulative_per_bucket_and_labels_are_escaped() {
        let mut out = String::new();
        request_metrics(
            &RequestStats {
                counts: &[(("/metrics", 200), 7), (("/x\"y\\z\nw", 404), 1)],
                latencies: &[RouteLatency {
                    route: "/metrics",
                    per_bucket: &[2, 0, 3],
                    sum_seconds: 0.25,
                    count: 6,
                }],
                buckets: &["0.001", "0.01", "1"],
            },
            &mut out,
        );
        let samples: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                r#"healthcheck_http_requests_total{route="/metrics",code="200"} 7"#,
                r#"healthcheck_http_requests_total{route="/x\"y\\z\nw",code="404"} 1"#,
                r#"healthcheck_http_request_duration_seconds_bucket{route="/metrics",le="0.001"} 2"#,
                r#"healthcheck_http_request_duration_seconds_bucket{route="/metrics",le="0.01"} 2"#,
                r#"healthcheck_http_request_duration_seconds_bucket{route="/metrics",le="1"} 5"#,
                r#"healthcheck_http_request_duration_seconds_bucket{route="/metrics",le="+Inf"} 6"#,
                r#"healthcheck_http_request_duration_seconds_sum{route="/metrics"} 0.25"#,
                r#"healthcheck_http_request_duration_seconds_count{route="/metrics"} 6"#,
            ]
        );
    }
}
