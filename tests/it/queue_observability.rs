//! The campaign queue as `alerts` and `healthcheck` see it: copies waiting past
//! `camp_operations_queue_copy_age_limit_hours`, primaries without a heartbeat, and the
//! per-shard gauges on `/metrics` (checked by promtool). Real binaries, real MariaDB servers
//! (shard 2 on an extra instance), real ClickHouse; the queue's clock pinned with `--now`.

use std::process::Command;

use zakaz_core::testing::{TestDb, UnitDir};
use zakaz_e2e::{binary, free_port, output_text, queue_stand};

const T0: &str = "2026-12-01T06:00:00Z";
const FIVE_HOURS_LATER: &str = "2026-12-01T11:00:00Z";

#[test]
fn alerts_see_old_copies_and_silent_primaries_and_metrics_show_every_shard() {
    let queue = queue_stand();
    let db = TestDb::migrated_blocking();
    queue.ok(&["demo-data", "--clients", "2", "--campaigns", "2"]);
    // Shard 1: two copies queued at T0 by two clients; shard 2: nothing.
    queue.ok(&[
        "--now",
        T0,
        "enqueue",
        "copy",
        "--cid",
        "1",
        "--to-client",
        "2",
        "--role",
        "client",
    ]);
    queue.ok(&[
        "--now",
        T0,
        "enqueue",
        "copy",
        "--cid",
        "2",
        "--to-client",
        "2",
        "--role",
        "manager",
    ]);
    // Shard 2's primaries beat (they find nothing to do); shard 1's never ran.
    queue.ok(&[
        "--now",
        FIVE_HOURS_LATER,
        "run",
        "--shard",
        "2",
        "--par-id",
        "copy:1",
        "--once",
    ]);
    queue.ok(&[
        "--now",
        FIVE_HOURS_LATER,
        "run",
        "--shard",
        "2",
        "--par-id",
        "rest",
        "--once",
    ]);

    let units = UnitDir::enabling(&["camp_queue"]);
    let alerts = |now: &str| {
        let out = db
            .command(binary("alerts"))
            .envs(queue.dsn_env())
            .env("SYSTEMD_UNIT_DIRS", &units.path)
            .env("ALERTS_LANGUAGE", "en")
            .args(["--dry-run", "--now", now])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let plan = alerts(FIVE_HOURS_LATER);
    assert!(
        plan.contains("[warning] Campaign copies on shard 1 wait 300 min"),
        "{plan}"
    );
    assert!(
        plan.contains("limit 240); 2 queued, 1 waiting clients"),
        "{plan}"
    );
    for primary in ["copy:1", "rest"] {
        assert!(
            plan.contains(&format!(
                "[error] Campaign queue worker {primary} of shard 1 is not working"
            )),
            "{plan}"
        );
        assert!(
            !plan.contains(&format!("worker {primary} of shard 2")),
            "{plan}"
        );
    }
    assert!(!plan.contains("on shard 2 wait"), "{plan}");
    // A higher limit (an operator's property) silences the age alert.
    queue.ok(&[
        "props",
        "set",
        "camp_operations_queue_copy_age_limit_hours",
        "6",
    ]);
    assert!(!alerts(FIVE_HOURS_LATER).contains("Campaign copies on shard 1 wait"));

    // `healthcheck --once` (a terminal report) shows the queue as `camp-queue status` does.
    let once = db
        .command(binary("healthcheck"))
        .envs(queue.dsn_env())
        .env("SYSTEMD_UNIT_DIRS", &units.path)
        .args(["--once", "--now", FIVE_HOURS_LATER])
        .output()
        .unwrap();
    let once = String::from_utf8_lossy(&once.stdout);
    assert!(once.contains("campaign queue:"), "{once}");
    assert!(
        once.contains("shard 1 copy: 2 queued, 2 due, oldest due 300.0 min, 1 waiting clients"),
        "{once}"
    );

    // The healthcheck exports the same per shard and queue.
    let port = free_port();
    let mut server = db
        .command(binary("healthcheck"))
        .envs(queue.dsn_env())
        .env("SYSTEMD_UNIT_DIRS", &units.path)
        .env("HEALTHCHECK_LISTEN", format!("127.0.0.1:{port}"))
        .args(["--now", FIVE_HOURS_LATER])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let metrics = (0..100)
        .find_map(|_| {
            let got = get(port, "/metrics");
            if got.is_none() {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            got
        })
        .expect("the healthcheck answers /metrics");
    let _ = server.kill();
    let _ = server.wait();
    for line in [
        "zakaz_camp_queue_shard_up{shard=\"1\"} 1",
        "zakaz_camp_queue_shard_up{shard=\"2\"} 1",
        "zakaz_camp_queue_oldest_due_age_seconds{shard=\"1\",queue=\"copy\"} 18000",
        "zakaz_camp_queue_oldest_due_age_seconds{shard=\"2\",queue=\"copy\"} 0",
        "zakaz_camp_queue_size{shard=\"1\",queue=\"copy\"} 2",
        "zakaz_camp_queue_size{shard=\"1\",queue=\"rest\"} 0",
        "zakaz_camp_queue_waiting_clients{shard=\"1\",queue=\"copy\"} 1",
        "zakaz_camp_queue_heartbeat_age_seconds{shard=\"2\",par_id=\"copy:1\"} 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (scripts/setup.sh installs it)");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(checked.status.success(), "{}", output_text(&checked));
}

fn get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    Some(raw.split_once("\r\n\r\n")?.1.to_owned())
}

#[test]
fn a_shard_that_cannot_be_read_raises_an_alert_and_shows_down() {
    let queue = queue_stand();
    let db = TestDb::migrated_blocking();
    queue.ok(&["demo-data", "--clients", "2", "--campaigns", "1"]);
    // Shard 2's server goes away: its DSN points at a port nobody listens on.
    let closed = free_port();
    let dsns: Vec<(&str, String)> = queue
        .dsn_env()
        .into_iter()
        .map(|(k, v)| {
            if k == "PPC_SHARD_DSNS" {
                let port2 = format!(":{}/", queue.port_of(2));
                (k, v.replacen(&port2, &format!(":{closed}/"), 1))
            } else {
                (k, v)
            }
        })
        .collect();
    assert!(
        dsns.iter()
            .any(|(k, v)| *k == "PPC_SHARD_DSNS" && v.contains(&format!(":{closed}/"))),
        "{dsns:?}"
    );
    let units = UnitDir::enabling(&["camp_queue"]);
    let out = db
        .command(binary("alerts"))
        .envs(dsns.iter().map(|(k, v)| (*k, v.as_str())))
        .env("SYSTEMD_UNIT_DIRS", &units.path)
        .env("ALERTS_LANGUAGE", "en")
        .args(["--dry-run", "--now", T0])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        plan.contains("[error] Campaign queue shard 2 cannot be read"),
        "{plan}"
    );
    assert!(!plan.contains("shard 1 cannot be read"), "{plan}");
}
