//! Queue throughput on one shard (on its own MariaDB server) with 1, 2 and 4 copy workers,
//! and the per-job cost of a client's copy with 100 000 of its copies queued vs 100 (the
//! pessimisation must not rewrite a client's backlog per copy: within 2×), 100 jobs taken
//! from each (the same work on both sides). Each is also a ratio to a plain `INSERT` +
//! `DELETE` autocommit loop on the same server, measured in the same repetitions. A warm-up,
//! then `BENCH_REPS` (default 5) repetitions, each running the six sides (baseline, 1, 2, 4
//! workers, small and big backlog) in an order rotated by one every repetition; each figure
//! printed as `bench queue <figure> <median> (<min>–<max>) n=<n>`.
//!
//! `scripts/bench.sh queue` runs this (it starts the extra MariaDB servers);
//! `CLIENTS`×`CAMPAIGNS` (default 50×40) size the throughput runs, `BACKLOG` (default
//! 100 000) the big backlog, `BACKLOG_JOBS` (default 100) the jobs taken from each backlog.

use std::time::Instant;

use camp_queue::testing::TestStand;
use sqlx::Connection as _;
use zakaz_core::bench::{CpuMeter, env_u32, figure, ratio, release_binary, reps};

/// Seconds for `workers` copy workers (separate processes) to drain shard 1's queue, at most
/// `max` jobs each.
fn drain(stand: &TestStand, workers: u32, max: Option<u64>) -> f64 {
    let t = Instant::now();
    let mut children: Vec<_> = (1..=workers)
        .map(|n| {
            let mut cmd = stand.command();
            cmd.args([
                "run",
                "--shard",
                "1",
                "--par-id",
                &format!("copy:{n}"),
                "--once",
            ]);
            if let Some(m) = max {
                cmd.args(["--max-jobs", &m.to_string()]);
            }
            cmd.spawn().expect("a worker starts")
        })
        .collect();
    for c in &mut children {
        assert!(c.wait().unwrap().success());
    }
    t.elapsed().as_secs_f64()
}

/// Microseconds per `INSERT` + `DELETE` pair, each its own commit, on the shard's server.
fn commit_loop(runtime: &tokio::runtime::Runtime, url: &str, n: usize) -> f64 {
    runtime.block_on(async {
        let mut conn = sqlx::MySqlConnection::connect(url).await.expect("the shard server answers");
        sqlx::query("CREATE TABLE IF NOT EXISTS bench_commit_loop (id BIGINT AUTO_INCREMENT PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB")
            .execute(&mut conn)
            .await
            .unwrap();
        let t = Instant::now();
        for i in 0..n {
            let id = sqlx::query("INSERT INTO bench_commit_loop (v) VALUES (?)")
                .bind(i as i64)
                .execute(&mut conn)
                .await
                .unwrap()
                .last_insert_id();
            sqlx::query("DELETE FROM bench_commit_loop WHERE id = ?")
                .bind(id)
                .execute(&mut conn)
                .await
                .unwrap();
        }
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    })
}

const NAME: &str = "queue";

fn main() {
    let n = reps(5);
    let clients = env_u32("CLIENTS", 50);
    let campaigns = env_u32("CAMPAIGNS", 40);
    let backlog = env_u32("BACKLOG", 100_000);
    // Jobs taken from each backlog per repetition: the same work on both sides (a worker's
    // start-up spread over as many jobs).
    let measured = env_u32("BACKLOG_JOBS", 100);
    // The shard on an extra server of its own, as in a real deployment.
    let port = camp_queue::testing::servers()[1];
    let stand = |name: &str| {
        let mut stand = TestStand::on(release_binary("camp-queue"), 1, vec![port]);
        for (k, v) in [
            ("CAMP_QUEUE_COPY_WORKERS", "4"),
            ("CAMP_QUEUE_POLL_MS", "20"),
            ("LOG_LEVEL", "warn"),
        ] {
            stand.env.push((k.into(), v.into()));
        }
        stand.ok(&[
            "props",
            "set",
            "camp_copy_queue_additional_workers",
            r#"{"1:2":"on","1:3":"on","1:4":"on"}"#,
        ]);
        stand.ok(&[
            "props",
            "set",
            "camp_copy_queue_sleep_coef",
            r#"{"default":"0"}"#,
        ]);
        eprintln!("{name}: deployment {}", stand.prefix);
        stand
    };
    // Three deployments on the one shard server: throughput, a small and a big backlog.
    let (main, small, big) = (
        stand("throughput"),
        stand("small backlog"),
        stand("big backlog"),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = format!("mysql://root@127.0.0.1:{port}/{}", main.shard_db(1));
    commit_loop(&runtime, &url, 200);

    // Throughput: CLIENTS × CAMPAIGNS copies, half pessimised (role client), half not.
    let jobs = u64::from(clients * campaigns);
    let fill = || {
        main.ok(&[
            "demo-data",
            "--clients",
            &clients.to_string(),
            "--campaigns",
            &campaigns.to_string(),
            "--banners",
            "2",
            "--phrases",
            "3",
        ]);
        for c in 1..=clients {
            let role = if c % 2 == 0 { "client" } else { "manager" };
            let to = (c % clients + 1).to_string();
            main.ok(&[
                "enqueue",
                "copy",
                "--from-client",
                &c.to_string(),
                "--to-client",
                &to,
                "--role",
                role,
            ]);
        }
    };
    // Backlogs: a client's copies (role client: pessimised), `measured` of them taken by one
    // worker; the small backlog is exactly `measured` (copied to client 2, so that the copies
    // do not join it), the big one `backlog` and more (copied to the client itself).
    small.ok(&[
        "demo-data",
        "--clients",
        "2",
        "--campaigns",
        &measured.to_string(),
        "--banners",
        "1",
        "--phrases",
        "1",
    ]);
    big.ok(&[
        "demo-data",
        "--clients",
        "1",
        "--campaigns",
        &backlog.to_string(),
        "--banners",
        "1",
        "--phrases",
        "1",
    ]);
    let per_job = |stand: &TestStand, to: &str| -> f64 {
        stand.ok(&[
            "enqueue",
            "copy",
            "--from-client",
            "1",
            "--to-client",
            to,
            "--role",
            "client",
        ]);
        let queued: u64 = stand
            .sql(1, "SELECT COUNT(*) FROM camp_operations_queue_copy")
            .parse()
            .unwrap();
        assert!(queued >= u64::from(measured), "{queued} queued");
        drain(stand, 1, Some(u64::from(measured))) * 1e6 / f64::from(measured)
    };
    // Warm-up: one of each.
    fill();
    drain(&main, 1, None);
    per_job(&small, "2");
    per_job(&big, "1");
    println!(
        "camp-queue: throughput {jobs} copies ({clients} clients × {campaigns} campaigns, 2 banners and 6 phrases each) by 1, 2, 4 workers; one client's copies, {measured} taken with {measured} vs {backlog}+ queued; baseline an INSERT + DELETE autocommit pair; {n} repetitions, sides in rotating order"
    );

    let mut baseline = Vec::new();
    let mut rates: [Vec<f64>; 3] = Default::default();
    // Cores kept busy (workers and both MariaDB servers) while 1 and 4 workers drain.
    let mut busy: [Vec<f64>; 3] = Default::default();
    let (mut small_us, mut big_us) = (Vec::new(), Vec::new());
    for rep in 0..n {
        for side in zakaz_core::bench::rotation(rep, 6) {
            match side {
                0 => baseline.push(commit_loop(&runtime, &url, 2000)),
                1..=3 => {
                    let workers = [1, 2, 4][side - 1];
                    fill();
                    let meter = CpuMeter::start();
                    rates[side - 1].push(jobs as f64 / drain(&main, workers, None));
                    busy[side - 1].push(meter.busy_cores());
                }
                4 => small_us.push(per_job(&small, "2")),
                _ => big_us.push(per_job(&big, "1")),
            }
        }
    }
    let pairs = |us: &[f64], workers: f64| -> Vec<f64> {
        us.iter()
            .zip(&baseline)
            .map(|(us, pair)| us * workers / pair)
            .collect()
    };
    let job_us = |rates: &[f64]| -> Vec<f64> { rates.iter().map(|r| 1e6 / r).collect() };
    figure(NAME, "baseline_pair_us", &baseline, 0);
    for (i, workers) in [1, 2, 4].into_iter().enumerate() {
        let plural = if workers == 1 { "worker" } else { "workers" };
        figure(
            NAME,
            &format!("jobs_per_s_{workers}_{plural}"),
            &rates[i],
            0,
        );
    }
    figure(
        NAME,
        "pairs_per_job_1_worker",
        &pairs(&job_us(&rates[0]), 1.0),
        1,
    );
    ratio(NAME, "speedup_2_vs_1_worker", &rates[1], &rates[0], 2);
    ratio(NAME, "speedup_4_vs_1_worker", &rates[2], &rates[0], 2);
    figure(NAME, "busy_cores_1_worker", &busy[0], 2);
    figure(NAME, "busy_cores_4_workers", &busy[2], 2);
    // What more workers can gain at most here: the machine's cores over those one worker's
    // run keeps busy (the work of a job does not shrink with more of them).
    let cores = CpuMeter::start().cores() as f64;
    let ceiling: Vec<f64> = busy[0].iter().map(|b| cores / b).collect();
    figure(NAME, "speedup_ceiling_cpu", &ceiling, 2);
    figure(NAME, "job_us_backlog_small", &small_us, 0);
    figure(NAME, "job_us_backlog_big", &big_us, 0);
    figure(
        NAME,
        "pairs_per_job_backlog_small",
        &pairs(&small_us, 1.0),
        1,
    );
    figure(NAME, "pairs_per_job_backlog_big", &pairs(&big_us, 1.0), 1);
    ratio(NAME, "backlog_big_vs_small", &big_us, &small_us, 2);
}
