//! Every endpoint's status code and body for ok, warning and error situations.

use std::process::Command;

use serde_json::Value;
use zakaz_core::jobs::JOBS;

use crate::{Env, Proxy, clickhouse_addr, get, request};

fn job<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job"] == name)
        .unwrap_or_else(|| panic!("no job {name} in {report}"))
}

fn source<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == name)
        .unwrap_or_else(|| panic!("no source {name} in {report}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_healthy_system_answers_200_everywhere() {
    let mut env = Env::new().await;
    env.seed_healthy().await;
    let addr = env.start(env.config());

    let healthz = get(addr, "/healthz");
    assert_eq!(healthz.code, 200, "{healthz:?}");
    assert_eq!(
        healthz.json(),
        serde_json::json!({"status": "ok", "clickhouse": "reachable"})
    );

    let detailed = get(addr, "/healthz/detailed");
    assert_eq!(detailed.code, 200, "{}", detailed.body);
    let report = detailed.json();
    assert_eq!(report["status"], "ok");
    assert_eq!(report["generated_at"], "2026-06-15T12:00:00+03:00");
    assert!(
        report["clickhouse"]["version"]
            .as_str()
            .unwrap()
            .contains('.')
    );
    assert_eq!(
        report["jobs"].as_array().unwrap().len(),
        JOBS.len(),
        "every job of the job table"
    );
    for j in report["jobs"].as_array().unwrap() {
        assert_eq!(j["verdict"], "ok", "{j}");
    }
    let q = job(&report, "qtickets");
    assert_eq!(q["last_run"]["status"], "ok");
    assert_eq!(q["last_run"]["rows"], 42);
    assert_eq!(q["last_run"]["duration_seconds"], 10);
    assert_eq!(q["last_run"]["started_at"], "2026-06-15T11:55:00+03:00");
    assert_eq!(q["last_success_at"], "2026-06-15T11:55:00+03:00");
    assert_eq!(q["runs"]["ok"], 1);
    // `*:0/15` after 12:00:00 MSK; vk_ads at 00:00 MSK, direct at 00:10 MSK the next night.
    assert_eq!(q["next_run_at"], "2026-06-15T12:15:00+03:00");
    assert_eq!(
        job(&report, "vk_ads")["next_run_at"],
        "2026-06-16T00:00:00+03:00"
    );
    assert_eq!(
        job(&report, "direct")["next_run_at"],
        "2026-06-16T00:10:00+03:00"
    );
    let gmail = job(&report, "gmail_ingest");
    assert_eq!(gmail["enabled"], false, "disabled by default");
    assert_eq!(gmail["next_run_at"], Value::Null);
    assert_eq!(job(&report, "healthcheck")["kind"], "service");

    let freshness = get(addr, "/healthz/freshness");
    assert_eq!(freshness.code, 200, "{}", freshness.body);
    let fresh = freshness.json();
    let vk = source(&fresh, "vk_ads");
    assert_eq!(vk["state"], "fresh");
    assert_eq!(vk["latest_date"], "2026-06-14");
    assert_eq!(vk["lag_days"], 1);
    assert_eq!(vk["rows"], 1);
    let mail = source(&fresh, "gmail_ingest");
    assert_eq!(
        (mail["state"].as_str(), mail["latest_date"].clone()),
        (Some("never"), Value::Null),
        "a source that never loaded says never, not 1970"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missed_run_and_stale_data_are_warnings_with_their_reasons() {
    let mut env = Env::new().await;
    env.seed_run("qtickets", "ok", 300, 10, 42, "fine").await;
    env.seed_run("vk_ads", "ok", 3600, 60, 7, "fine").await;
    env.seed_run("alerts", "ok", 600, 2, 0, "fine").await;
    // direct last succeeded three days before T: its window is 1.5 days + delay + timeout.
    env.seed_run("direct", "ok", 3 * 86_400, 30, 5, "fine")
        .await;
    env.seed_fresh("qtickets", 0).await;
    env.seed_fresh("vk_ads", 5).await;
    env.seed_fresh("direct", 1).await;
    let addr = env.start(env.config());

    let detailed = get(addr, "/healthz/detailed");
    assert_eq!(detailed.code, 503, "only ok is 200");
    let report = detailed.json();
    assert_eq!(report["status"], "warning");
    let direct = job(&report, "direct");
    assert_eq!(direct["verdict"], "warning");
    assert_eq!(
        direct["reasons"][0],
        "direct expected at least every 36 h; last successful run 3 days ago"
    );
    assert_eq!(job(&report, "qtickets")["verdict"], "ok");

    let freshness = get(addr, "/healthz/freshness");
    assert_eq!(freshness.code, 503);
    let fresh = freshness.json();
    assert_eq!(fresh["status"], "warning");
    let vk = source(&fresh, "vk_ads");
    assert_eq!(
        (vk["state"].as_str(), vk["lag_days"].as_i64()),
        (Some("stale"), Some(5))
    );
    assert_eq!(
        vk["reason"],
        "source vk_ads is 5 day(s) behind (latest 2026-06-10); allowed: 2 day(s)"
    );
    // A warning is not an outage: ClickHouse answers.
    assert_eq!(get(addr, "/healthz").code, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_and_a_killed_run_are_errors() {
    let mut env = Env::new().await;
    env.seed_healthy().await;
    env.seed_run(
        "qtickets",
        "error",
        60,
        5,
        0,
        "QTickets answered HTTP 503 for `/orders`",
    )
    .await;
    env.seed_run("vk_ads", "running", 1200, 0, 0, "").await;
    // One alert firing, one resolved.
    env.ch
        .execute(
            "INSERT INTO alerts (created_at, fingerprint, job, alert_type, state, title, channels) VALUES \
             (toDateTime(1781513000), 'failed_run:qtickets', 'qtickets', 'failed_run', 'firing', 'qtickets failed', 'telegram'), \
             (toDateTime(1781500000), 'stale_data:direct', 'direct', 'stale_data', 'firing', 'direct data is stale', 'telegram'), \
             (toDateTime(1781510000), 'stale_data:direct', 'direct', 'stale_data', 'resolved', 'direct data is stale', 'telegram')",
        )
        .await
        .unwrap();
    let addr = env.start(env.config());

    let detailed = get(addr, "/healthz/detailed");
    assert_eq!(detailed.code, 503);
    let report = detailed.json();
    assert_eq!(report["status"], "error");
    let q = job(&report, "qtickets");
    assert_eq!(q["verdict"], "error");
    // The run's message stays in the journal; the report names the run.
    assert_eq!(
        q["reasons"][0],
        "1 failed run(s) since the last check; last error: see run qtickets-60-error",
        "{q}"
    );
    assert_eq!(
        (
            q["last_run"]["category"].as_str(),
            q["last_run"]["run_id"].as_str()
        ),
        (Some("error"), Some("qtickets-60-error"))
    );
    assert_eq!(q["runs"]["ok"], 1);
    assert_eq!(q["runs"]["error"], 1);
    let vk = job(&report, "vk_ads");
    assert_eq!(
        (
            vk["verdict"].as_str(),
            vk["last_run"]["status"].as_str(),
            vk["last_run"]["category"].as_str()
        ),
        (Some("error"), Some("unfinished"), Some("killed"))
    );
    assert!(
        vk["reasons"][0]
            .as_str()
            .unwrap()
            .contains("never finished within the timeout of 600 s")
    );
    let open: Vec<&str> = report["open_alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["title"].as_str().unwrap())
        .collect();
    assert_eq!(open, ["qtickets failed"]);

    let metrics = get(addr, "/metrics").body;
    for line in [
        "zakaz_health_status 2",
        "zakaz_job_status{job=\"qtickets\"} 2",
        "zakaz_job_runs_total{job=\"qtickets\",status=\"error\"} 1",
        "zakaz_job_runs_total{job=\"vk_ads\",status=\"unfinished\"} 1",
        "zakaz_alerts_open 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in\n{metrics}"
        );
    }
}

/// The healthcheck answers anyone: a run's message (ClickHouse's error text, table, host and
/// account names) is shown nowhere, only the run's category and id.
#[tokio::test(flavor = "multi_thread")]
async fn a_runs_message_shows_in_no_response_only_its_category_and_run_id() {
    let mut env = Env::new().await;
    env.seed_healthy().await;
    let secrets = [
        "DB::Exception",
        "fact_hidden_orders",
        "UNKNOWN_TABLE",
        "ch-internal-3",
        "acct-5521",
    ];
    env.seed_run(
        "qtickets",
        "error",
        60,
        5,
        0,
        "cannot insert: Code: 60. DB::Exception: Table zakaz_prod.fact_hidden_orders does not exist. (UNKNOWN_TABLE)",
    )
    .await;
    env.seed_run(
        "vk_ads",
        "running",
        1200,
        0,
        0,
        "loading from ch-internal-3",
    )
    .await;
    // An ok run that worked around problems: its message names them.
    env.ch
        .execute(
            "INSERT INTO meta_job_run_events (job, run_id, seq, status, started_at, finished_at, deadline_at, rows_processed, message, metrics, host, pid) \
             SELECT 'direct', 'direct-warned', 1, 'ok', toDateTime(1781513000), toDateTime(1781513030), toDateTime(1781513600), 5, \
             'account acct-5521 skipped: DB::Exception from ch-internal-3', '{\"warnings\":1}', 'test', 1",
        )
        .await
        .unwrap();
    let addr = env.start(env.config());

    let report = get(addr, "/healthz/detailed").json();
    for (name, category, run_id) in [
        ("qtickets", "error", "qtickets-60-error"),
        ("vk_ads", "killed", "vk_ads-1200-running"),
        ("direct", "warnings", "direct-warned"),
        ("alerts", "ok", "alerts-600-ok"),
    ] {
        let last = &job(&report, name)["last_run"];
        assert_eq!(
            (last["category"].as_str(), last["run_id"].as_str()),
            (Some(category), Some(run_id)),
            "{name}: {last}"
        );
        assert!(last.get("message").is_none(), "{name}: {last}");
    }
    assert_eq!(
        job(&report, "direct")["reasons"][0],
        "1 problem(s) worked around in the last run: see run direct-warned"
    );
    for path in [
        "/healthz",
        "/healthz/detailed",
        "/healthz/freshness",
        "/metrics",
        "/",
    ] {
        let answer = get(addr, path);
        for secret in secrets {
            assert!(
                !answer.body.contains(secret),
                "{path} shows `{secret}`: {}",
                answer.body
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_pass_promtool_and_carry_the_journal_and_the_servers_own_counters() {
    let mut env = Env::new().await;
    env.seed_healthy().await;
    let addr = env.start(env.config());
    for _ in 0..3 {
        assert_eq!(get(addr, "/healthz").code, 200);
    }
    assert_eq!(get(addr, "/nope").code, 404);
    let metrics = get(addr, "/metrics");
    assert_eq!(metrics.code, 200);
    assert!(
        metrics.head.contains("text/plain; version=0.0.4"),
        "{}",
        metrics.head
    );
    let body = metrics.body;
    for line in [
        "zakaz_clickhouse_up 1",
        "zakaz_health_status 0",
        "zakaz_job_last_run_rows{job=\"qtickets\"} 42",
        "zakaz_job_last_success_duration_seconds{job=\"vk_ads\"} 60",
        // T − 300 s.
        "zakaz_job_last_success_timestamp_seconds{job=\"qtickets\"} 1781513700",
        // 12:15 MSK.
        "zakaz_job_next_run_timestamp_seconds{job=\"qtickets\"} 1781514900",
        "zakaz_job_runs_total{job=\"qtickets\",status=\"ok\"} 1",
        "zakaz_source_lag_seconds{source=\"vk_ads\"} 86400",
        "zakaz_source_rows{source=\"gmail_ingest\"} 0",
        "zakaz_alerts_open 0",
        "healthcheck_http_requests_total{route=\"/healthz\",code=\"200\"} 3",
        "healthcheck_http_requests_total{route=\"other\",code=\"404\"} 1",
        "healthcheck_http_request_duration_seconds_count{route=\"/healthz\"} 3",
        "healthcheck_http_request_duration_seconds_bucket{route=\"/healthz\",le=\"+Inf\"} 3",
    ] {
        assert!(body.lines().any(|l| l == line), "no `{line}` in\n{body}");
    }
    assert!(
        !body.contains("zakaz_source_lag_seconds{source=\"gmail_ingest\"}"),
        "no lag for a source that never loaded"
    );
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/setup.sh installs it)");
    std::io::Write::write_all(promtool.stdin.as_mut().unwrap(), body.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn methods_paths_and_malformed_requests() {
    let mut env = Env::new().await;
    env.seed_healthy().await;
    let addr = env.start(env.config());
    let post = request(addr, "POST", "/healthz");
    assert_eq!(post.code, 405);
    assert!(post.head.contains("Allow: GET, HEAD"), "{}", post.head);
    assert_eq!(request(addr, "DELETE", "/").code, 405);
    let head = request(addr, "HEAD", "/healthz/detailed");
    assert_eq!(
        (head.code, head.body.as_str()),
        (200, ""),
        "HEAD has no body"
    );
    let missing = get(addr, "/healthz/nope");
    assert_eq!(
        (missing.code, missing.json()["error"].as_str()),
        (404, Some("not found"))
    );
    assert_eq!(
        get(addr, "/healthz?verbose=1").code,
        200,
        "a query string is ignored"
    );
    assert_eq!(get(addr, "/healthz/live").code, 200);
    // Not HTTP at all.
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    std::io::Write::write_all(&mut stream, b"\x16\x03\x01 not http at all\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut stream, &mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn clickhouse_going_away_is_a_503_and_coming_back_recovers() {
    let mut env = Env::new().await;
    env.seed_healthy().await;
    let proxy = Proxy::start(clickhouse_addr());
    let mut args = env.db.args.clone();
    args.clickhouse_url = proxy.url();
    let addr = env.start(env.config_with(args));
    assert_eq!(get(addr, "/healthz").code, 200);

    proxy.down();
    let healthz = get(addr, "/healthz");
    assert_eq!(healthz.code, 503);
    assert_eq!(
        healthz.json(),
        serde_json::json!({"status": "error", "clickhouse": "unreachable"})
    );
    let detailed = get(addr, "/healthz/detailed");
    assert_eq!(detailed.code, 503);
    assert_eq!(detailed.json()["status"], "error");
    assert_eq!(detailed.json()["clickhouse"]["reachable"], false);
    // The server keeps serving, and says nothing of how it reaches ClickHouse.
    assert_eq!(get(addr, "/healthz/live").code, 200);
    let metrics = get(addr, "/metrics").body;
    assert!(
        metrics.lines().any(|l| l == "zakaz_clickhouse_up 0"),
        "{metrics}"
    );
    for body in [
        &healthz.body,
        &detailed.body,
        &metrics,
        &get(addr, "/").body,
    ] {
        assert!(
            !body.contains(&proxy.addr.to_string()),
            "ClickHouse address in a response"
        );
    }

    // A ClickHouse that accepts and never answers: 503 once the refresh times out (2 s here),
    // not a probe that hangs with it.
    proxy.hang();
    let hung = get(addr, "/healthz");
    assert_eq!(hung.code, 503, "{hung:?}");
    assert_eq!(get(addr, "/healthz/live").code, 200);

    proxy.up();
    let mut recovered = false;
    for _ in 0..50 {
        if get(addr, "/healthz").code == 200 {
            recovered = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        recovered,
        "/healthz did not recover when ClickHouse came back"
    );
    assert_eq!(get(addr, "/healthz/detailed").json()["status"], "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_password_shows_in_no_response() {
    let mut env = Env::new().await;
    let mut args = env.db.args.clone();
    let password = "pw-that-must-never-show-7f3a";
    args.clickhouse_password = Some(zakaz_core::Secret::new(password));
    let addr = env.start(env.config_with(args));
    for path in [
        "/healthz",
        "/healthz/detailed",
        "/healthz/freshness",
        "/metrics",
        "/",
    ] {
        let answer = get(addr, path);
        assert!(
            !answer.body.contains(password) && !answer.head.contains(password),
            "secret in {path}"
        );
        // No server error text either (it names users and hosts).
        assert!(!answer.body.contains("Code: "), "{path}: {}", answer.body);
    }
    assert_eq!(get(addr, "/healthz").code, 503);
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_are_cached_so_probes_do_not_reach_clickhouse_each_time() {
    let mut env = Env::new().await;
    env.seed_healthy().await;
    let mut cfg = env.config();
    cfg.cache = std::time::Duration::from_secs(3600);
    let addr = env.start(cfg);
    assert_eq!(
        get(addr, "/healthz/detailed").json()["jobs"][0]["runs"]["ok"],
        1
    );
    // A new run lands; the cached report does not see it within the cache period.
    env.seed_run("qtickets", "ok", 100, 10, 1, "later").await;
    for _ in 0..20 {
        assert_eq!(
            get(addr, "/healthz/detailed").json()["jobs"][0]["runs"]["ok"],
            1
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn once_prints_the_report_and_exits_by_its_verdict() {
    let env = Env::new().await;
    env.seed_healthy().await;
    let run = |db: &zakaz_core::testing::TestDb, extra: &[(&str, &str)]| {
        db.command(env!("CARGO_BIN_EXE_healthcheck"))
            .args(["--once", "--now", "2026-06-15T09:00:00Z"])
            .env("SYSTEMD_UNIT_DIRS", &env.units.path)
            .envs(extra.iter().copied())
            .output()
            .unwrap()
    };
    let ok = run(&env.db, &[]);
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(text.starts_with("overall: OK"), "{text}");
    let line = text.lines().find(|l| l.starts_with("qtickets ")).unwrap();
    assert!(
        line.contains("ok") && line.contains("2026-06-15 11:55") && line.contains("42r"),
        "{line}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("gmail_ingest") && l.contains("disabled")),
        "{text}"
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let down = run(&env.db, &[("CLICKHOUSE_URL", &url)]);
    assert_eq!(down.status.code(), Some(1));
    let text = String::from_utf8_lossy(&down.stdout);
    assert!(
        text.starts_with("overall: ERROR    ClickHouse: unreachable"),
        "{text}"
    );
}
