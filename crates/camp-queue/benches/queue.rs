//! Queue throughput on one shard (on its own MariaDB server) with 1, 2 and 4 copy workers,
//! and the per-job cost of a client's copy with 100 000 of its copies queued vs 100 (the
//! pessimisation must not rewrite a client's backlog per copy: within 2×). Each is also a
//! ratio to a plain `INSERT` + `DELETE` autocommit loop on the same server, measured in the
//! same run. A warm-up, then `BENCH_REPS` (default 3) repetitions; median (min–max).
//!
//! `scripts/bench.sh queue` runs this (it starts the extra MariaDB servers);
//! `CLIENTS`×`CAMPAIGNS` (default 50×40) size the throughput runs, `BACKLOG` (default
//! 100 000) the big backlog.

use std::process::Command;
use std::time::Instant;

use sqlx::Connection as _;
use zakaz_core::bench::{Spread, env_u32, release_binary, reps};

struct Stand {
    env: Vec<(&'static str, String)>,
    prefix: String,
    port: u16,
}

impl Stand {
    fn run(&self, args: &[&str]) {
        let out = Command::new(release_binary("camp-queue"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().cloned())
            .env("LOG_LEVEL", "warn")
            .args(args)
            .output()
            .expect("camp-queue runs");
        assert!(
            out.status.success(),
            "camp-queue {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Seconds for `workers` copy workers to drain what is queued (at most `max` jobs each).
    fn drain(&self, workers: u32, max: Option<u64>) -> f64 {
        let t = Instant::now();
        let mut children: Vec<_> = (1..=workers)
            .map(|n| {
                let mut cmd = Command::new(release_binary("camp-queue"));
                cmd.env_clear()
                    .env("PATH", std::env::var("PATH").unwrap_or_default())
                    .envs(self.env.iter().cloned())
                    .env("LOG_LEVEL", "warn")
                    .args([
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
}

impl Drop for Stand {
    fn drop(&mut self) {
        let p = &self.prefix;
        for (port, db) in [
            (3306, format!("{p}_dict")),
            (self.port, format!("{p}_ppc1")),
        ] {
            let _ = Command::new("mariadb")
                .args([
                    "--no-defaults",
                    "-h127.0.0.1",
                    "-uroot",
                    &format!("-P{port}"),
                ])
                .args(["-e", &format!("DROP DATABASE IF EXISTS {db}")])
                .output();
        }
    }
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
    let port: u16 = std::env::var("ZAKAZ_SHARD_PORTS")
        .unwrap_or_else(|_| "3316 3317".into())
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let prefix = format!("cqb_{}", std::process::id());
    let stand = Stand {
        env: vec![
            (
                "PPCDICT_DSN",
                format!("mysql://root@127.0.0.1:3306/{prefix}_dict"),
            ),
            (
                "PPC_SHARD_DSNS",
                format!("mysql://root@127.0.0.1:{port}/{prefix}_ppc1"),
            ),
            ("CAMP_QUEUE_COPY_WORKERS", "4".into()),
            ("CAMP_QUEUE_POLL_MS", "20".into()),
        ],
        prefix: prefix.clone(),
        port,
    };
    stand.run(&["migrate"]);
    stand.run(&[
        "props",
        "set",
        "camp_copy_queue_additional_workers",
        r#"{"1:2":"on","1:3":"on","1:4":"on"}"#,
    ]);
    stand.run(&[
        "props",
        "set",
        "camp_copy_queue_sleep_coef",
        r#"{"default":"0"}"#,
    ]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = format!("mysql://root@127.0.0.1:{port}/{prefix}_ppc1");
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
        stand.run(&[
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
            stand.run(&[
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
    stand.drain(1, None);
    let mut one_worker = 0.0;
    for workers in [1, 2, 4] {
        let rates: Vec<f64> = (0..n)
            .map(|_| {
                fill();
                jobs as f64 / stand.drain(workers, None)
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
        stand.run(&[
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
        stand.run(&[
            "enqueue",
            "copy",
            "--from-client",
            "1",
            "--to-client",
            "1",
            "--role",
            "client",
        ]);
        stand.drain(1, Some(take)) * 1e6 / take as f64
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
