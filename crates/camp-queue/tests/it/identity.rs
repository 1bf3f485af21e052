//! A worker whose named lock is gone (its connection killed: `KILL`, `wait_timeout`, a server
//! restart, a proxy failover) no longer owns its identity: the next start of its timer runs a
//! second process as the same worker. The orphan must notice before it claims or copies
//! anything more, and stop; no campaign may be copied twice.

use crate::{Stand, T0, stand};

/// Per target shard: source cids copied more than once, and the number of copies.
fn copies(stand: &Stand, shards: &[u32]) -> (Vec<String>, u64) {
    let mut twice = Vec::new();
    let mut total = 0;
    for &s in shards {
        let dup = stand.sql(
            s,
            "SELECT copied_from_cid, COUNT(*) FROM campaigns WHERE copied_from_cid IS NOT NULL \
             GROUP BY copied_from_cid HAVING COUNT(*) > 1",
        );
        twice.extend(dup.lines().map(|l| format!("shard {s}: {l}")));
        total += stand.count(
            s,
            "SELECT COUNT(*) FROM campaigns WHERE copied_from_cid IS NOT NULL",
        );
    }
    (twice, total)
}

#[test]
fn a_worker_that_lost_its_lock_copies_nothing_more_and_its_successor_copies_each_campaign_once() {
    let stand = stand(2);
    // Client 1 on shard 1 (cids 1–3), client 2 on shard 2.
    stand.ok(&[
        "demo-data",
        "--clients",
        "2",
        "--campaigns",
        "3",
        "--banners",
        "2",
        "--phrases",
        "2",
    ]);
    stand.ok(&[
        "--now",
        T0,
        "enqueue",
        "copy",
        "--from-client",
        "1",
        "--to-client",
        "2",
        "--role",
        "manager",
    ]);
    // A claims the first copy and freezes before it allocates the new cid.
    let mut a = stand.spawn(&[
        "--now",
        T0,
        "run",
        "--shard",
        "1",
        "--par-id",
        "copy:1",
        "--once",
        "--pause-at",
        "before-allocate",
    ]);
    a.wait_for("cid=1 claimed");
    a.wait_for("paused at");
    // Its lock connection dies; the timer's next start runs as copy:1 and does every job,
    // including the one A holds (it is claimed by copy:1, so copy:1 resumes it).
    stand.kill_lock_connection(1, "copy:1");
    let b = stand.drain(1, "copy:1", T0);
    assert!(b.contains("shard_1,par-id_copy:1 started"), "{b}");
    assert!(b.contains("queue drained (3 jobs)"), "{b}");
    // A goes on: it must find that it is no longer copy:1 and stop, copying nothing.
    a.resume();
    let (code, lines) = a.wait_exit();
    assert_ne!(code, 0, "the orphan fails its unit: {lines}");
    assert!(
        lines.contains("shard_1,par-id_copy:1 lost its named lock"),
        "{lines}"
    );
    assert!(!lines.contains("done:"), "{lines}");

    let (twice, total) = copies(&stand, &[1, 2]);
    assert!(twice.is_empty(), "copied twice: {twice:?}");
    assert_eq!(total, 3);
    assert_eq!(
        stand.count(2, "SELECT COUNT(*) FROM phrases p JOIN campaigns c ON c.cid = p.cid WHERE c.copied_from_cid IS NOT NULL"),
        3 * 2 * 2
    );
    assert_eq!(
        stand.count(1, "SELECT COUNT(*) FROM camp_operations_queue_copy"),
        0
    );
}

#[test]
fn under_load_a_killed_lock_connection_and_a_second_process_never_copy_a_campaign_twice() {
    let stand = stand(2);
    // Clients 1 and 3 on shard 1 (cids 1–60 and 121–180), clients 2 and 4 on shard 2.
    stand.ok(&[
        "demo-data",
        "--clients",
        "4",
        "--campaigns",
        "60",
        "--banners",
        "1",
        "--phrases",
        "2",
    ]);
    stand.set_prop("camp_copy_queue_sleep_coef", r#"{"default":"0"}"#);
    // Copies within shard 1 and into shard 2 (another server).
    for (from, to) in [("1", "3"), ("3", "2")] {
        stand.ok(&[
            "--now",
            T0,
            "enqueue",
            "copy",
            "--from-client",
            from,
            "--to-client",
            to,
            "--role",
            "manager",
        ]);
    }
    let queued = stand.count(1, "SELECT COUNT(*) FROM camp_operations_queue_copy");
    assert_eq!(queued, 120);

    let mut a = stand.spawn(&["--now", T0, "run", "--shard", "1", "--par-id", "copy:1"]);
    a.wait_for("shard_1,par-id_copy:1 started");
    a.wait_for(" done: copied");
    stand.kill_lock_connection(1, "copy:1");
    let mut b = stand.spawn(&[
        "--now", T0, "run", "--shard", "1", "--par-id", "copy:1", "--once",
    ]);
    let (code, lines) = a.wait_exit();
    assert_ne!(code, 0, "{lines}");
    assert!(
        lines.contains("shard_1,par-id_copy:1 lost its named lock"),
        "{lines}"
    );
    let (code, b_lines) = b.wait_exit();
    assert_eq!(code, 0, "{b_lines}");
    assert!(
        b_lines.contains("shard_1,par-id_copy:1 started"),
        "{b_lines}"
    );

    assert_eq!(
        stand.count(1, "SELECT COUNT(*) FROM camp_operations_queue_copy"),
        0,
        "{}",
        stand.sql(1, "SELECT * FROM camp_operations_queue_copy")
    );
    let (twice, total) = copies(&stand, &[1, 2]);
    assert!(twice.is_empty(), "copied twice: {twice:?}");
    assert_eq!(total, queued, "every campaign copied once");
}
