//! The real binaries on the replicated cluster of `scripts/clickhouse-cluster.sh` (ZooKeeper,
//! two ClickHouse servers as two replicas of one shard): loads through replica 1 reach
//! replica 2; with replica 1 stopped every loader's next run goes through replica 2; back,
//! replica 1 catches up to the same rows, and the totals are exactly those one server
//! computes from the same data. A read-only replica raises an alert. One test at a time
//! (nextest group `clickhouse-cluster`): they stop a replica or ZooKeeper.

use std::process::Command;

use api_sandbox::{SandboxConfig, Server};
use serde_json::json;
use zakaz_core::testing::{
    ClusterDb, TempDir, TestDb, cluster_script, cluster_urls, http_post, query_tsv, sandbox_control,
};
use zakaz_e2e::{binary, output_text};

/// The loaders' and the sandbox's "now": evening in Moscow.
const NOW: &str = "2026-11-25T21:30:00+03:00";

/// A loader against `sandbox`, acting as of the sandbox's clock, with `db` settings.
fn loader(
    name: &str,
    db_env: &[(&'static str, String)],
    sandbox: &Server,
    vk_state: &TempDir,
) -> Command {
    let now = chrono::DateTime::from_timestamp(sandbox.sandbox().now(), 0).unwrap();
    let base = &sandbox.base_url;
    let mut cmd = zakaz_core::testing::clean_command(binary(name));
    cmd.envs(db_env.iter().map(|(k, v)| (*k, v.as_str())))
        .arg(format!("--now={}", now.to_rfc3339()))
        .env("HTTP_MAX_ATTEMPTS", "2")
        .env("LOG_LEVEL", "info");
    match name {
        "ingest-qtickets" => cmd
            .env("QTICKETS_BASE_URL", format!("{base}/qtickets/api/rest/v1"))
            .env("QTICKETS_TOKEN", "sandbox-token")
            .env("QTICKETS_BACKFILL_DAYS", "40"),
        "ingest-vk" => cmd
            .env("VK_ADS_BASE_URL", format!("{base}/vk"))
            .env("VK_ADS_CLIENT_ID", "sandbox-client")
            .env("VK_ADS_CLIENT_SECRET", "sandbox-secret")
            .env("VK_ADS_STATE_DIR", &vk_state.path),
        "ingest-direct" => cmd
            .env("DIRECT_API_URL", format!("{base}/direct/json/v5"))
            .env("DIRECT_TOKEN", "sandbox-token")
            .env("DIRECT_LOGINS", "client-a,client-b"),
        "ingest-gmail" => cmd
            .env("GMAIL_API_URL", format!("{base}/gmail"))
            .env("GOOGLE_TOKEN_URL", format!("{base}/google/token"))
            .env("GMAIL_CLIENT_ID", "sandbox-client")
            .env("GMAIL_CLIENT_SECRET", "sandbox-secret")
            .env("GMAIL_REFRESH_TOKEN", "sandbox-refresh"),
        other => panic!("no loader {other}"),
    };
    cmd
}

fn run_ok(mut cmd: Command, what: &str) -> String {
    let out = cmd.output().expect("the loader runs");
    assert!(out.status.success(), "{what} failed: {}", output_text(&out));
    output_text(&out)
}

const LOADERS: [&str; 4] = [
    "ingest-qtickets",
    "ingest-vk",
    "ingest-direct",
    "ingest-gmail",
];

/// What the jobs wrote, summed per table (FINAL: the replacing tables' current rows).
const TOTALS: &[&str] = &[
    "SELECT 'qtickets', count(), sum(tickets_sold), toString(sum(revenue)), toString(sum(refunds)), toString(sum(net_revenue)) FROM {db}.fact_qtickets_sales_daily FINAL",
    "SELECT 'qtickets_utm', count(), sum(tickets_sold), toString(sum(revenue)), toString(sum(refunds)), toString(sum(net_revenue)) FROM {db}.fact_qtickets_sales_utm_daily FINAL",
    "SELECT 'vk', count(), sum(shows), toString(sum(spent)), toString(sum(clicks)), toString(sum(vk_goals)) FROM {db}.fact_vk_ads_daily FINAL",
    "SELECT 'direct', count(), sum(impressions), toString(sum(cost)), toString(sum(clicks)), '' FROM {db}.fact_direct_daily FINAL",
    "SELECT 'mail', count(), sum(tickets_sold), toString(sum(revenue)), toString(sum(refunds)), '' FROM {db}.stg_mail_sales FINAL",
    "SELECT 'sales_view', count(), sum(tickets_sold), toString(sum(revenue)), toString(sum(refunds)), toString(sum(net_revenue)) FROM {db}.v_sales_daily",
];

fn totals(query: impl Fn(&str) -> String) -> String {
    TOTALS.iter().map(|q| query(q)).collect()
}

/// Rows per table without FINAL: the same parts on both replicas give the same counts.
fn raw_counts(db: &ClusterDb, n: usize) -> String {
    let tables = db.query_on(
        n,
        &format!(
            "SELECT name FROM system.tables WHERE database = '{}' AND engine LIKE 'Replicated%' ORDER BY name",
            db.name
        ),
    );
    tables
        .lines()
        .map(|t| {
            format!(
                "{t}\t{}",
                db.query_on(n, &format!("SELECT count() FROM {{db}}.{t}"))
            )
        })
        .collect()
}

#[test]
fn every_loader_fails_over_to_replica_2_and_replica_1_catches_up_exactly() {
    let start = || {
        Server::start_local(SandboxConfig {
            now: Some(NOW.into()),
            ..SandboxConfig::default()
        })
        .unwrap()
    };
    let sandbox = start();
    let cluster = ClusterDb::empty();
    // The reference: the same runs on one server, against a twin sandbox (same seed, same
    // clock: the same data; a sandbox remembers what was read, e.g. Gmail's labels), whose
    // exactness the loaders' own tests prove against the sandbox's data.
    let twin = start();
    let single = TestDb::migrated_blocking();
    let (vk_cluster, vk_single) = (TempDir::new("vk-cluster"), TempDir::new("vk-single"));
    let cluster_env = cluster.env();
    let single_env = single.env();

    // --- both replicas up: the first load (and the migrations) through replica 1 -------------
    let out = run_ok(
        loader("ingest-qtickets", &cluster_env, &sandbox, &vk_cluster),
        "qtickets on the cluster",
    );
    assert!(!out.contains("this run uses"), "replica 1 answered: {out}");
    run_ok(
        loader("ingest-qtickets", &single_env, &twin, &vk_single),
        "qtickets on one server",
    );
    cluster.sync_replica(2);
    let on_single = totals(|q| single.query(q));
    assert!(on_single.starts_with("qtickets\t"), "{on_single}");
    assert_eq!(totals(|q| cluster.query_on(1, q)), on_single, "replica 1");
    assert_eq!(
        totals(|q| cluster.query_on(2, q)),
        on_single,
        "the load through replica 1 is on replica 2"
    );
    assert_eq!(
        cluster.query_on(
            2,
            "SELECT count() FROM {db}.fact_qtickets_sales_daily FINAL"
        ),
        cluster.query_on(
            1,
            "SELECT count() FROM {db}.fact_qtickets_sales_daily FINAL"
        )
    );

    // --- replica 1 stopped between runs: every loader's next run goes through replica 2 ------
    cluster_script(&["stop", "replica1"]);
    let restart = Restart;
    sandbox_control(&sandbox.base_url, "/advance", &json!({"days": 1}));
    sandbox_control(&twin.base_url, "/advance", &json!({"days": 1}));
    for name in LOADERS {
        let out = run_ok(loader(name, &cluster_env, &sandbox, &vk_cluster), name);
        assert!(
            out.contains(&format!("this run uses {}", cluster_urls()[1])),
            "{name} said which replica it used: {out}"
        );
        run_ok(loader(name, &single_env, &twin, &vk_single), name);
    }
    let runs = cluster.query_on(
        2,
        "SELECT job, status FROM {db}.meta_job_runs ORDER BY started_at, job",
    );
    assert_eq!(
        runs.lines().filter(|l| l.ends_with("\tok")).count(),
        5,
        "every run ok: {runs}"
    );

    // --- replica 1 back: after SYSTEM SYNC REPLICA the same rows, exact totals ---------------
    drop(restart);
    cluster.sync_replica(1);
    cluster.sync_replica(2);
    assert_eq!(raw_counts(&cluster, 1), raw_counts(&cluster, 2));
    let on_single = totals(|q| single.query(q));
    for n in [1, 2] {
        assert_eq!(totals(|q| cluster.query_on(n, q)), on_single, "replica {n}");
    }
    // The journal has every run on both replicas.
    assert_eq!(
        cluster.query_on(1, "SELECT count() FROM {db}.meta_job_runs"),
        "5\n"
    );
    assert_eq!(
        query_tsv(&format!(
            "SELECT count() FROM `{}`.meta_job_runs",
            single.name
        )),
        "5\n"
    );
}

/// Starts replica 1 again when dropped (also when the test fails half-way).
struct Restart;

impl Drop for Restart {
    fn drop(&mut self) {
        cluster_script(&["start", "replica1"]);
    }
}

/// Starts ZooKeeper again when dropped, and waits until no replica is read-only.
struct ZooKeeperBack;

impl Drop for ZooKeeperBack {
    fn drop(&mut self) {
        cluster_script(&["start", "zookeeper"]);
        for url in cluster_urls() {
            // A replica takes up its place again once its old session is gone (seconds).
            let mut waited = 0;
            while http_post(
                &url,
                "SELECT count() FROM system.replicas WHERE is_readonly",
            )
            .map_or(true, |t| t.trim() != "0")
            {
                assert!(
                    waited < 600,
                    "{url} still read-only a minute after ZooKeeper came back"
                );
                std::thread::sleep(std::time::Duration::from_millis(100));
                waited += 1;
            }
        }
    }
}

#[tokio::test]
async fn a_read_only_replica_raises_an_alert() {
    let (db, _ch) = ClusterDb::migrated().await;
    let alerts = |expect_success: bool| {
        let mut cmd = db.command(binary("alerts"));
        let out = cmd
            .args(["--dry-run", "--now", NOW])
            .env("ALERTS_LANGUAGE", "en")
            .env("TELEGRAM_BOT_TOKEN", "sandbox-token")
            .env("TELEGRAM_CHAT_ID", "-100123")
            .env("TELEGRAM_API_URL", "http://127.0.0.1:9/telegram")
            .env("SYSTEMD_UNIT_DIRS", "/nonexistent")
            .output()
            .unwrap();
        assert_eq!(
            out.status.success(),
            expect_success,
            "{}",
            output_text(&out)
        );
        output_text(&out)
    };
    // `healthcheck --once` prints every replica (it exits 1 here: the jobs never ran).
    let healthcheck = || {
        let out = db
            .command(binary("healthcheck"))
            .args(["--once", "--now", NOW])
            .env("SYSTEMD_UNIT_DIRS", "/nonexistent")
            .output()
            .unwrap();
        output_text(&out)
    };
    let healthy = alerts(true);
    assert!(!healthy.contains("replica"), "{healthy}");
    let report = healthcheck();
    for replica in ["127.0.0.1:9011", "127.0.0.1:9012"] {
        assert!(
            report.contains(&format!("  replica {replica}: OK (")),
            "{report}"
        );
    }

    // ZooKeeper gone: both replicas turn read-only (writes fail, nothing replicates).
    let back = ZooKeeperBack;
    cluster_script(&["stop", "zookeeper"]);
    zakaz_core::testing::wait_until("replica 2 is read-only", || {
        db.query_on(
            2,
            &format!(
                "SELECT count() FROM system.replicas WHERE database = '{}' AND is_readonly",
                db.name
            ),
        )
        .trim()
            != "0"
    });
    let out = alerts(true);
    for replica in ["127.0.0.1:9011", "127.0.0.1:9012"] {
        assert!(
            out.contains(&format!(
                "would send FIRING [critical] ClickHouse replica {replica} is read-only: replica {replica}:"
            )),
            "{out}"
        );
    }
    let report = healthcheck();
    assert!(
        report.contains("  replica 127.0.0.1:9012: ERROR — replica 127.0.0.1:9012: ")
            && report.contains("read-only"),
        "{report}"
    );
    drop(back);
    let out = alerts(true);
    assert!(!out.contains("read-only"), "{out}");
}

// --- two hosts, the same timers -----------------------------------------------------------

fn ok_in(machine: &zakaz_e2e::Machine, args: &[&str]) -> String {
    let out = machine.exec(args);
    assert!(
        out.status.success(),
        "`{}` failed: {}",
        args.join(" "),
        output_text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write_in(machine: &zakaz_e2e::Machine, inside: &str, content: &str) {
    let path = machine.path(inside);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, content).unwrap();
}

/// (tick, status, host, message) of every qtickets run, by the 10-second tick it started in.
fn qtickets_runs(db: &ClusterDb) -> Vec<(u32, String, String, String)> {
    db.query_on(
        1,
        "SELECT intDiv(toUInt32(started_at), 10), status, host, message FROM {db}.meta_job_runs WHERE job = 'qtickets' ORDER BY started_at, status",
    )
    .lines()
    .map(|l| {
        let f: Vec<&str> = l.splitn(4, '\t').collect();
        (f[0].parse().unwrap(), f[1].into(), f[2].into(), f[3].into())
    })
    .collect()
}

/// Ticks in which both hosts' timers fired and one host ran the job while the other recorded
/// `skipped`, naming it; panics on a tick the job ran twice.
fn ticks_run_once(runs: &[(u32, String, String, String)]) -> usize {
    let mut ticks: std::collections::BTreeMap<u32, Vec<&(u32, String, String, String)>> =
        Default::default();
    for run in runs {
        ticks.entry(run.0).or_default().push(run);
    }
    let mut once = 0;
    for (tick, rows) in &ticks {
        let ran: Vec<_> = rows.iter().filter(|r| r.1 != "skipped").collect();
        assert!(ran.len() <= 1, "tick {tick} ran twice: {rows:?}");
        let skipped: Vec<_> = rows.iter().filter(|r| r.1 == "skipped").collect();
        if let ([ran], [skipped]) = (ran.as_slice(), skipped.as_slice()) {
            assert_ne!(ran.2, skipped.2, "{rows:?}");
            assert!(
                skipped.3.starts_with(&format!("held by {}", ran.2)),
                "{rows:?}"
            );
            once += 1;
        }
    }
    once
}

/// The same install on two hosts sharing the cluster and ZooKeeper: the qtickets timer fires
/// on both every 10 seconds (a drop-in), yet each tick runs once — the other host records
/// `skipped` ("held by <host>"). The host holding a run is killed mid-run (SIGKILL to its
/// whole machine): the other host runs a following tick.
#[tokio::test(flavor = "multi_thread")]
async fn two_hosts_run_each_tick_once_and_the_survivor_takes_over() {
    let (db, _ch) = ClusterDb::migrated().await;
    let sandbox = Server::start_local(SandboxConfig::default()).unwrap();
    let mut machines = Vec::new();
    for name in ["zakaz-a", "zakaz-b"] {
        let log = std::env::temp_dir().join(format!(
            "zakaz-e2e-cluster-{name}-{}.log",
            std::process::id()
        ));
        let machine = zakaz_e2e::Machine::boot_as(&log, name)
            .expect("a real systemd boots in a namespace (needs root)");
        machine.forward_url(&sandbox.base_url).unwrap();
        for url in cluster_urls() {
            machine.forward_url(&url).unwrap();
        }
        let zk_port: u16 = zakaz_core::testing::zookeeper_hosts()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        machine.forward(zk_port).unwrap();
        assert_eq!(ok_in(&machine, &["hostname"]).trim(), name);
        write_in(
            &machine,
            "/opt/zakaz_dashboard/secrets/qtickets.env",
            &format!(
                "QTICKETS_BASE_URL={}/qtickets/api/rest/v1\nQTICKETS_TOKEN=sandbox-token\nQTICKETS_INVENTORY=false\nQTICKETS_BACKFILL_DAYS=3\nCLICKHOUSE_URL={}\nCLICKHOUSE_CLUSTER=zakaz\nCLICKHOUSE_DB={}\nZOOKEEPER_HOSTS={}\nZOOKEEPER_LEASE_PATH=/zakaz-test/leases\n",
                sandbox.base_url,
                cluster_urls().join(","),
                db.name,
                zakaz_core::testing::zookeeper_hosts()
            ),
        );
        let bin = machine.stage_binaries();
        ok_in(
            &machine,
            &[
                &format!("{bin}/manage-timers"),
                "install",
                "--binaries",
                bin,
            ],
        );
        // Ticks every 10 s, each host's timer up to 2 s late at random.
        write_in(
            &machine,
            "/etc/systemd/system/qtickets.timer.d/test-schedule.conf",
            "[Timer]\nOnCalendar=\nOnCalendar=*:*:0/10\nRandomizedDelaySec=2\nAccuracySec=1s\n",
        );
        // The unit's start limit (3 per 10 minutes, against a failing run hammering an API)
        // would stop a timer that fires every 10 s.
        write_in(
            &machine,
            "/etc/systemd/system/qtickets.service.d/test-schedule.conf",
            "[Unit]\nStartLimitIntervalSec=0\n",
        );
        machines.push(machine);
    }
    for machine in &machines {
        ok_in(machine, &["systemctl", "daemon-reload"]);
        ok_in(machine, &["systemctl", "restart", "qtickets.timer"]);
    }

    // --- every tick once ----------------------------------------------------------------
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while ticks_run_once(&qtickets_runs(&db)) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "two ticks run once each: {:?}",
            qtickets_runs(&db)
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let runs = qtickets_runs(&db);
    assert!(
        runs.iter()
            .all(|r| r.1 == "ok" || r.1 == "skipped" || r.1 == "running"),
        "{runs:?}"
    );

    // --- the holder dies mid-run -----------------------------------------------------------
    // The next run's first order request is held, so that run is surely in progress. The
    // timers stop until the hold is in place and no run is going on: a run already past its
    // first request when the hold came would take it, and then its (older) row would have to
    // be told apart from the new one by timing.
    for machine in &machines {
        ok_in(machine, &["systemctl", "stop", "qtickets.timer"]);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while qtickets_runs(&db).iter().any(|r| r.1 == "running") {
        assert!(
            std::time::Instant::now() < deadline,
            "the runs in progress end: {:?}",
            qtickets_runs(&db)
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let earlier = db.query_on(
        1,
        "SELECT run_id FROM {db}.meta_job_runs WHERE job = 'qtickets'",
    );
    sandbox_control(
        &sandbox.base_url,
        "/faults",
        &json!({"route": "/qtickets/api/rest/v1/orders*", "hold": true, "count": 1}),
    );
    for machine in &machines {
        ok_in(machine, &["systemctl", "start", "qtickets.timer"]);
    }
    let in_progress = || {
        db.query_on(
            1,
            "SELECT intDiv(toUInt32(started_at), 10), host, run_id FROM {db}.meta_job_runs \
             WHERE job = 'qtickets' AND status = 'running' ORDER BY started_at",
        )
        .lines()
        .find(|l| {
            let run_id = l.rsplit('\t').next().unwrap_or_default();
            !earlier.lines().any(|e| e == run_id)
        })
        .unwrap_or_default()
        .to_owned()
    };
    let mut held = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while held.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "a run in progress: {:?}",
            qtickets_runs(&db)
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
        held = in_progress();
    }
    let fields: Vec<String> = held.trim().split('\t').map(str::to_owned).collect();
    let (killed_tick, killed_host, killed_run): (u32, String, String) = (
        fields[0].parse().unwrap(),
        fields[1].clone(),
        fields[2].clone(),
    );
    let survivor = if killed_host == "zakaz-a" {
        "zakaz-b"
    } else {
        "zakaz-a"
    };
    let index = usize::from(killed_host == "zakaz-b");
    machines[index].kill();
    sandbox_control(&sandbox.base_url, "/release", &json!({}));

    // The survivor runs a later tick (once ZooKeeper dropped the dead host's lease).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let runs = qtickets_runs(&db);
        if runs
            .iter()
            .any(|r| r.0 > killed_tick && r.1 == "ok" && r.2 == survivor)
        {
            assert!(
                !runs.iter().any(|r| r.0 > killed_tick && r.2 == killed_host),
                "{runs:?}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{survivor} runs a tick after {killed_host} died: {runs:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    // The dead host's run never ended: it stays `running` until its deadline (then the
    // journal says `unfinished` and alerts say it was killed).
    assert_eq!(
        db.query_on(
            1,
            &format!("SELECT status, host FROM {{db}}.meta_job_runs WHERE run_id = '{killed_run}'")
        ),
        format!("running\t{killed_host}\n")
    );
}
