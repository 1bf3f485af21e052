//! The report in each of its forms: JSON for probes, the Prometheus text format, one HTML
//! page for a human, and plain text for a terminal. Pure functions of the report.

use std::fmt::Write;

use serde_json::json;

use crate::report::{Report, Verdict};

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
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", label_value(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
    /// Per route: cumulative bucket counts, the sum of latencies and the count.
    pub latencies: &'a [(&'static str, Vec<u64>, f64, u64)],
    pub buckets: &'a [f64],
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
        f.sample(name, &[("route", route), ("code", &code.to_string())], n);
    }
    let name = "healthcheck_http_request_duration_seconds";
    let mut f = Family::new(
        out,
        name,
        "histogram",
        "Time to answer a request, by route.",
    );
    for (route, cumulative, sum, count) in stats.latencies {
        for (le, n) in stats.buckets.iter().zip(cumulative) {
            f.sample(
                &format!("{name}_bucket"),
                &[("route", route), ("le", &le.to_string())],
                n,
            );
        }
        f.sample(
            &format!("{name}_bucket"),
            &[("route", route), ("le", "+Inf")],
            count,
        );
        f.sample(&format!("{name}_sum"), &[("route", route)], sum);
        f.sample(&format!("{name}_count"), &[("route", route)], count);
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
    Family::new(out, name, "gauge", "Client connections open now.").sample(name, &[], stats.open);
    let name = "healthcheck_http_connections_max";
    Family::new(
        out,
        name,
        "gauge",
        "Client connections open at most; at the cap the one waiting longest is closed.",
    )
    .sample(name, &[], stats.max);
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
        f.sample(name, &[("reason", reason)], n);
    }
    let name = "healthcheck_http_accept_errors_total";
    Family::new(out, name, "counter", "accept() failures.").sample(name, &[], stats.accept_errors);
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

/// One self-contained page (no external assets), readable on a phone.
pub fn html(report: &Report) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"30\"><title>zakaz: {status}</title><style>\
         body{{font:15px/1.4 system-ui,sans-serif;margin:1em;color:#222}}\
         table{{border-collapse:collapse;width:100%;margin-bottom:1.5em}}\
         th,td{{text-align:left;padding:.35em .5em;border-bottom:1px solid #ddd;vertical-align:top}}\
         .ok{{color:#176b1a}}.warning{{color:#9a6700}}.error{{color:#b42318}}\
         .badge{{font-weight:bold;text-transform:uppercase}}small{{color:#666}}\
         @media(max-width:600px){{.wide{{display:none}}}}</style></head><body>\
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
            job = j.job,
            v = j.verdict.as_str(),
            next = j
                .next_run_at
                .as_deref()
                .map(short)
                .unwrap_or_else(|| "—".to_owned()),
            why = esc(&j.reasons.join("; ")),
        );
    }
    out.push_str(
        "</table><h2>Data freshness</h2><table id=\"sources\"><tr><th>source</th><th>state</th>\
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
            src = s.source,
            v = s.verdict.as_str(),
            state = s.state,
            rows = s.rows,
        );
    }
    out.push_str("</table><h2>Open alerts</h2>");
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
