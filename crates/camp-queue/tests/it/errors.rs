//! How a worker lives with errors: a failed read of the properties is tolerated as a queue
//! error is (ten in a row end the run); a deadlock victim is run again without counting an
//! attempt; lock-wait timeouts are logged, counted and bounded; a copy whose source is
//! inconsistent fails, naming what is wrong, and never writes a phrase without its banner.

use crate::{Stand, T0, stand};

fn lines_with<'a>(lines: &'a str, text: &str) -> Vec<&'a str> {
    lines.lines().filter(|l| l.contains(text)).collect()
}

/// One campaign with one banner and two phrases per client.
fn small_stand(shards: u32, clients: u32) -> Stand {
    let stand = stand(shards);
    stand.ok(&[
        "demo-data",
        "--clients",
        &clients.to_string(),
        "--campaigns",
        "2",
        "--banners",
        "1",
        "--phrases",
        "2",
    ]);
    stand
}

fn enqueue(stand: &Stand, cid: u64, to: u64, role: &str) {
    stand.ok(&[
        "--now",
        T0,
        "enqueue",
        "copy",
        "--cid",
        &cid.to_string(),
        "--to-client",
        &to.to_string(),
        "--role",
        role,
    ]);
}

#[test]
fn properties_that_cannot_be_read_are_tolerated_like_queue_errors_and_ten_in_a_row_end_the_run() {
    let stand = small_stand(1, 1);
    let mut w = stand.spawn(&["--now", T0, "run", "--shard", "1", "--par-id", "copy:1"]);
    w.wait_for("shard_1,par-id_copy:1 started");
    stand.dict("RENAME TABLE ppc_properties TO ppc_properties_away");
    w.wait_for("cannot read the queue's properties (1 in a row");
    // The worker keeps serving its queue with the properties it read last.
    enqueue(&stand, 1, 1, "manager");
    w.wait_for("cid=1 done: copied");
    assert!(w.child.try_wait().unwrap().is_none(), "still running");
    // Ten failed reads in a row end the run with an error (the unit fails and alerts).
    let (code, lines) = w.wait_exit();
    assert_eq!(code, 1, "{lines}");
    assert_eq!(
        lines_with(&lines, "cannot read the queue's properties").len(),
        10,
        "{lines}"
    );
    assert!(
        lines.contains("shard_1,par-id_copy:1: 10 failed reads of the properties in a row"),
        "{lines}"
    );
}

#[test]
fn ten_queue_errors_in_a_row_end_the_run_and_a_success_resets_the_count() {
    let stand = small_stand(1, 1);
    let mut w = stand.spawn(&["--now", T0, "run", "--shard", "1", "--par-id", "copy:1"]);
    w.wait_for("shard_1,par-id_copy:1 started");
    // Without its table every claim fails.
    let break_claims = "RENAME TABLE camp_operations_queue_copy TO copy_queue_away";
    stand.sql(1, break_claims);
    w.wait_for("queue error (1 in a row)");
    w.wait_for("queue error (3 in a row)");
    stand.sql(
        1,
        "RENAME TABLE copy_queue_away TO camp_operations_queue_copy",
    );
    enqueue(&stand, 1, 1, "manager");
    w.wait_for("cid=1 done: copied");
    stand.sql(1, break_claims);
    let (code, lines) = w.wait_exit();
    assert_eq!(code, 1, "{lines}");
    // After the copy, the count started again at 1 and the tenth ended the run.
    let (_, after) = lines.split_once("cid=1 done: copied").unwrap();
    let errors = lines_with(after, "queue error (");
    assert_eq!(errors.len(), 10, "{lines}");
    for (i, line) in errors.iter().enumerate() {
        assert!(line.contains(&format!("({} in a row)", i + 1)), "{line}");
    }
    assert!(
        lines.contains("shard_1,par-id_copy:1: 10 queue errors in a row"),
        "{lines}"
    );
}

/// A session that holds client 1's `clients_options` row and has written more rows than the
/// worker's copy does (a few), so that MariaDB picks the worker as the deadlock victim (the
/// transaction with the smaller weight).
fn heavy_session_holding_client_1(stand: &Stand) -> camp_queue::testing::Session {
    let mut s = stand.session(1);
    s.exec("CREATE TABLE ballast (n BIGINT) ENGINE=InnoDB");
    s.exec("BEGIN");
    s.exec("SELECT ClientID FROM clients_options WHERE ClientID = 1 FOR UPDATE");
    s.exec("INSERT INTO ballast SELECT seq FROM mysql.seq_1_to_500");
    s
}

/// Wait (bounded) until the worker runs its locking read of client 1's `clients_options` row
/// (`queue::lock_client`): the session holds that row, so the statement waits for it.
/// (`information_schema.PROCESSLIST`: `INNODB_TRX` was seen to leave a waiting transaction
/// out.)
fn wait_for_the_worker_to_wait_for_client_1(stand: &Stand, w: &mut crate::Worker) {
    let sql = format!(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
         WHERE DB = '{}' AND INFO LIKE 'SELECT camp_copy_ela, camp_copy_ela_at FROM clients_options%FOR UPDATE'",
        stand.shard_db(1)
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while stand.count(1, &sql) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker does not wait for client 1's row: {}\n{}",
            w.lines_so_far(),
            stand.sql(1, "SELECT ID, COMMAND, TIME, STATE, LEFT(INFO, 80), DB FROM information_schema.PROCESSLIST WHERE COMMAND <> 'Daemon'"),
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_deadlock_victim_is_run_again_at_once_without_counting_an_attempt() {
    let stand = small_stand(1, 1);
    // A client's copy pinned to lane 1: its claim does not touch clients_options, its finish
    // does (the client's accumulated copy time).
    enqueue(&stand, 1, 1, "client");
    stand.sql(
        1,
        "UPDATE camp_operations_queue_copy SET par_id = 1 WHERE cid = 1",
    );
    let mut s = heavy_session_holding_client_1(&stand);
    let mut w = stand.spawn(&[
        "--now", T0, "run", "--shard", "1", "--par-id", "copy:1", "--once",
    ]);
    w.wait_for("cid=1 claimed");
    // The worker holds the job row and waits for the client's row; the session now asks for
    // the job row: a deadlock, whose victim is the worker.
    wait_for_the_worker_to_wait_for_client_1(&stand, &mut w);
    s.exec("SELECT id FROM camp_operations_queue_copy WHERE cid = 1 FOR UPDATE");
    w.wait_for("deadlock");
    s.exec("ROLLBACK");
    let (code, lines) = w.wait_exit();
    assert_eq!(code, 0, "{lines}");
    assert!(
        lines.contains("cid=1 done: copied"),
        "the victim was run again: {lines}"
    );
    assert!(
        lines.contains("queue drained (1 jobs; 1 deadlock)"),
        "the run's summary counts it: {lines}"
    );
    assert_eq!(
        stand.sql(
            1,
            "SELECT event, detail FROM camp_queue_history WHERE cid = 1 AND event <> 'queued' ORDER BY id"
        )
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect::<Vec<_>>(),
        vec!["claimed", "done"],
        "one attempt"
    );
    assert_eq!(
        stand.count(
            1,
            "SELECT COUNT(*) FROM campaigns WHERE copied_from_cid = 1"
        ),
        1
    );
}

#[test]
fn lock_wait_timeouts_are_logged_counted_and_bounded() {
    let mut stand = small_stand(1, 1);
    enqueue(&stand, 1, 1, "client");
    stand.sql(
        1,
        "UPDATE camp_operations_queue_copy SET par_id = 1 WHERE cid = 1",
    );
    let mut s = stand.session(1);
    s.exec("BEGIN");
    s.exec("SELECT ClientID FROM clients_options WHERE ClientID = 1 FOR UPDATE");
    stand
        .env
        .push(("CAMP_QUEUE_LOCK_WAIT_SECS".into(), "1".into()));
    let out = stand.drain(1, "copy:1", T0);
    // The first timeout is run again once; the second fails the attempt (counted, retried
    // in 1 s by the queue's schedule), not five more waits.
    let timeouts = lines_with(&out, "lock wait timeout");
    assert_eq!(timeouts.len(), 2, "{out}");
    assert!(
        timeouts[0].contains("shard_1,par-id_copy:1 cid=1") && timeouts[0].contains("run again"),
        "{out}"
    );
    assert!(
        out.contains("cid=1 attempt 1 of 5 failed: ") && out.contains("Lock wait timeout"),
        "{out}"
    );
    assert!(
        out.contains("queue drained (1 jobs; 2 lock-wait timeouts)"),
        "{out}"
    );
    assert_eq!(
        stand.sql(
            1,
            "SELECT attempts FROM camp_operations_queue_copy WHERE cid = 1"
        ),
        "1"
    );
    s.exec("ROLLBACK");
    let out = stand.drain(1, "copy:1", "2026-12-01T09:00:01Z");
    assert!(out.contains("cid=1 done: copied"), "{out}");
}

#[test]
fn a_phrase_whose_banner_is_not_in_the_copy_fails_the_copy_naming_both_and_writes_no_bid_0() {
    let stand = small_stand(2, 2);
    // cid 1 (client 1, shard 1) gets a phrase whose banner does not exist.
    stand.sql(
        1,
        "INSERT INTO phrases (cid, bid, phrase, price) VALUES (1, 987654, 'orphan phrase', 1.00)",
    );
    let ph_id = stand.sql(
        1,
        "SELECT ph_id FROM phrases WHERE phrase = 'orphan phrase'",
    );
    enqueue(&stand, 1, 2, "manager");
    let out = stand.drain(1, "copy:1", T0);
    let failed = stand.sql(
        1,
        "SELECT detail FROM camp_queue_history WHERE cid = 1 AND event = 'failed'",
    );
    assert!(
        failed.contains(&format!("phrase {ph_id}")) && failed.contains("banner 987654"),
        "{failed}\n{out}"
    );
    assert_eq!(
        stand.count(
            2,
            "SELECT COUNT(*) FROM campaigns WHERE copied_from_cid = 1"
        ),
        0
    );
    assert_eq!(
        stand.count(2, "SELECT COUNT(*) FROM phrases WHERE bid = 0"),
        0
    );
}

#[test]
fn a_copy_reads_its_source_in_one_snapshot() {
    let stand = small_stand(2, 2);
    enqueue(&stand, 1, 2, "manager");
    let mut w = stand.spawn(&[
        "--now",
        T0,
        "run",
        "--shard",
        "1",
        "--par-id",
        "copy:1",
        "--once",
        "--pause-at",
        "source-read",
    ]);
    w.wait_for("paused at");
    // Between the worker's reads of banners and phrases, the campaign gains a banner with a
    // phrase.
    stand.sql(
        1,
        "INSERT INTO banners (cid, title, body, href) VALUES (1, 'late', 'late', 'https://late.example'); \
         INSERT INTO phrases (cid, bid, phrase, price) VALUES (1, LAST_INSERT_ID(), 'late phrase', 2.00)",
    );
    w.resume();
    let (code, lines) = w.wait_exit();
    assert_eq!(code, 0, "{lines}");
    assert!(
        lines.contains("cid=1 done: copied to cid") && lines.contains("(1 banners, 2 phrases)"),
        "the campaign as it was when the copy began: {lines}"
    );
    assert_eq!(
        stand.count(2, "SELECT COUNT(*) FROM phrases WHERE bid = 0"),
        0
    );
    assert_eq!(
        stand.count(
            2,
            "SELECT COUNT(*) FROM phrases p JOIN campaigns c ON c.cid = p.cid \
                        LEFT JOIN banners b ON b.bid = p.bid AND b.cid = p.cid \
                        WHERE c.copied_from_cid = 1 AND b.bid IS NULL"
        ),
        0
    );
}
