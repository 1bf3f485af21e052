//! Queue throughput on one shard (on its own MariaDB server) with 1, 2 and 4 copy workers,
//! and the per-job cost of a client's copy with 100 000 of its copies queued vs 100 (the
//! pessimisation must not rewrite a client's backlog per copy: within 2×). Each is also a
//! ratio to a plain `INSERT` + `DELETE` autocommit loop on the same server, measured in the
//! same run. A warm-up, then `BENCH_REPS` (default 3) repetitions; median (min–max).
//!
//! `scripts/bench.sh queue` runs this (it starts the extra MariaDB servers);
//! `CLIENTS`×`CAMPAIGNS` (default 50×40) size the throughput runs, `BACKLOG` (default
//! 100 000) the big backlog.

use std::time::Instant;

use camp_queue::testing::TestStand;
use sqlx::Connection as _;
use zakaz_core::bench::{Spread, env_u32, release_binary, reps};

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

fn main() {
    let n = reps(3);
    let clients = env_u32("CLIENTS", 50);
    let campaigns = env_u32("CAMPAIGNS", 40);
    let backlog = env_u32("BACKLOG", 100_000);
    // The shard on an extra server of its own, as in a real deployment.
    let port = camp_queue::testing::servers()[1];
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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = format!("mysql://root@127.0.0.1:{port}/{}", stand.shard_db(1));
    commit_loop(&runtime, &url, 200);
    let baseline = Spread::of(
        &(0..n)
            .map(|_| commit_loop(&runtime, &url, 2000))
            .collect::<Vec<_>>(),
    );
    println!(
        "baseline: INSERT + DELETE autocommit pair on the shard's server: {} µs",
        baseline.show(0)
    );

    // Throughput: CLIENTS × CAMPAIGNS copies, half pessimised (role client), half not.
    let jobs = u64::from(clients * campaigns);
    let fill = || {
        stand.ok(&[
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
            stand.ok(&[
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
    fill();
    drain(&stand, 1, None);
    let mut one_worker = 0.0;
    for workers in [1, 2, 4] {
        let rates: Vec<f64> = (0..n)
            .map(|_| {
                fill();
                jobs as f64 / drain(&stand, workers, None)
            })
            .collect();
        let rate = Spread::of(&rates);
        if workers == 1 {
            one_worker = rate.median;
        }
        let per_job_us = 1e6 / rate.median;
        println!(
            "{workers} worker(s): {} jobs/s ({:.2}× one worker); a job (campaign + 2 banners + 6 phrases copied, queue row claimed and deleted) costs {:.1} commit-loop pairs",
            rate.show(0),
            rate.median / one_worker,
            per_job_us * f64::from(workers) / baseline.median
        );
    }

    // Per-job cost with a client's big backlog vs a small one (role client: pessimised).
    let measured = 500u64;
    let per_job = |queued: u32, take: u64| -> f64 {
        stand.ok(&[
            "demo-data",
            "--clients",
            "1",
            "--campaigns",
            &queued.to_string(),
            "--banners",
            "1",
            "--phrases",
            "1",
        ]);
        stand.ok(&[
            "enqueue",
            "copy",
            "--from-client",
            "1",
            "--to-client",
            "1",
            "--role",
            "client",
        ]);
        drain(&stand, 1, Some(take)) * 1e6 / take as f64
    };
    per_job(100, 100);
    let small: Vec<f64> = (0..n).map(|_| per_job(100, 100)).collect();
    let big: Vec<f64> = (0..n).map(|_| per_job(backlog, measured)).collect();
    let (small, big) = (Spread::of(&small), Spread::of(&big));
    println!(
        "per job, 100 queued copies of one client: {} µs ({:.1} commit-loop pairs)",
        small.show(0),
        small.median / baseline.median
    );
    println!(
        "per job, {backlog} queued copies of one client: {} µs ({:.1} commit-loop pairs); {:.2}× the small backlog ({})",
        big.show(0),
        big.median / baseline.median,
        big.median / small.median,
        if big.median / small.median <= 2.0 {
            "within 2×"
        } else {
            "ABOVE 2×"
        }
    );
}
