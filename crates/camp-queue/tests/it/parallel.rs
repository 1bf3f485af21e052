//! Four copy workers on one shard: every job is done exactly once; a claim held open by one
//! worker never keeps another from claiming (checked by holding a claim open, not by hoping
//! the scheduler interleaves the workers); and the claim queries are served by the `claim`
//! index in its order (no filesort, whose row locks would make a second worker's `SKIP
//! LOCKED` find nothing).

use std::collections::BTreeSet;

use crate::{T0, stand};

#[test]
fn claims_are_index_ordered_without_filesort() {
    let stand = stand(1);
    stand.ok(&[
        "demo-data",
        "--clients",
        "3",
        "--campaigns",
        "40",
        "--banners",
        "1",
        "--phrases",
        "1",
    ]);
    for client in 1..=3 {
        stand.ok(&[
            "--now",
            T0,
            "enqueue",
            "copy",
            "--from-client",
            &client.to_string(),
            "--to-client",
            "1",
            "--role",
            "client",
        ]);
    }
    stand.sql(1, "ANALYZE TABLE camp_operations_queue_copy");
    for (name, sql) in [
        (
            "own lane",
            camp_queue::queue::CLAIM_OWN
                .replacen('?', "2", 1)
                .replacen('?', "'2026-12-02'", 1),
        ),
        (
            "shared lane",
            camp_queue::queue::CLAIM_SHARED
                .replacen('?', "'9999-12-31'", 1)
                .replacen('?', "'2026-12-02'", 1),
        ),
    ] {
        let plan = stand.sql(1, &format!("EXPLAIN {sql}"));
        // id select_type table type possible_keys key key_len ref rows Extra
        let cols: Vec<&str> = plan.split('\t').collect();
        assert_eq!(cols[5], "claim", "{name}: {plan}");
        assert!(!plan.contains("filesort"), "{name}: {plan}");
    }
    let rest = camp_queue::queue::CLAIM_REST.replacen('?', "'2026-12-02'", 1);
    let plan = stand.sql(1, &format!("EXPLAIN {rest}"));
    assert!(!plan.contains("filesort"), "rest: {plan}");
}

#[test]
fn four_workers_on_one_shard_never_do_a_job_twice() {
    let mut stand = stand(1);
    stand
        .env
        .push(("CAMP_QUEUE_COPY_WORKERS".into(), "4".into()));
    stand.ok(&[
        "demo-data",
        "--clients",
        "8",
        "--campaigns",
        "60",
        "--banners",
        "1",
        "--phrases",
        "2",
    ]);
    stand.set_prop(
        "camp_copy_queue_additional_workers",
        r#"{"1:2":"on","1:3":"on","1:4":"on"}"#,
    );
    stand.set_prop("camp_copy_queue_sleep_coef", r#"{"default":"0"}"#);
    // Half the clients copy their own campaigns (pessimised), half are copied by managers.
    for client in 1..=8u64 {
        let role = if client % 2 == 0 { "client" } else { "manager" };
        let to = (client % 8 + 1).to_string();
        stand.ok(&[
            "--now",
            T0,
            "enqueue",
            "copy",
            "--from-client",
            &client.to_string(),
            "--to-client",
            &to,
            "--role",
            role,
        ]);
    }
    let queued = stand.count(1, "SELECT COUNT(*) FROM camp_operations_queue_copy");
    assert_eq!(queued, 480);
    let campaigns_before = stand.count(1, "SELECT COUNT(*) FROM campaigns");

    let mut workers: Vec<_> = (1..=4)
        .map(|n| {
            stand.spawn(&[
                "--now",
                T0,
                "run",
                "--shard",
                "1",
                "--par-id",
                &format!("copy:{n}"),
                "--once",
            ])
        })
        .collect();
    for w in &mut workers {
        let (code, lines) = w.wait_exit();
        assert_eq!(code, 0, "{lines}");
    }

    assert_eq!(
        stand.count(1, "SELECT COUNT(*) FROM camp_operations_queue_copy"),
        0,
        "left: {}\nfailures: {}",
        stand.sql(1, "SELECT * FROM camp_operations_queue_copy"),
        stand.sql(1, "SELECT cid, worker, detail FROM camp_queue_history WHERE event <> 'done' AND event <> 'claimed' AND event <> 'queued'")
    );
    let done = stand.done(1);
    assert_eq!(done.len() as u64, queued);
    assert_eq!(
        stand.count(
            1,
            "SELECT COUNT(*) FROM camp_queue_history WHERE event = 'failed'"
        ),
        0
    );
    let cids: BTreeSet<u64> = done.iter().map(|d| d.0).collect();
    assert_eq!(cids.len() as u64, queued, "no job done twice");
    assert_eq!(
        stand.count(1, "SELECT COUNT(*) FROM campaigns") - campaigns_before,
        queued
    );
    assert_eq!(
        stand.count(1, "SELECT COUNT(DISTINCT copied_from_cid) FROM campaigns WHERE copied_from_cid IS NOT NULL"),
        queued,
        "one copy per source campaign"
    );
    assert_eq!(
        stand.count(1, "SELECT COUNT(*) FROM phrases p JOIN campaigns c ON c.cid = p.cid WHERE c.copied_from_cid IS NOT NULL"),
        queued * 2
    );
}

#[test]
fn a_claim_held_open_by_one_worker_never_keeps_another_from_claiming() {
    let mut stand = stand(1);
    stand
        .env
        .push(("CAMP_QUEUE_COPY_WORKERS".into(), "4".into()));
    stand.ok(&[
        "demo-data",
        "--clients",
        "2",
        "--campaigns",
        "10",
        "--banners",
        "1",
        "--phrases",
        "1",
    ]);
    stand.set_prop(
        "camp_copy_queue_additional_workers",
        r#"{"1:2":"on","1:3":"on","1:4":"on"}"#,
    );
    stand.set_prop("camp_copy_queue_sleep_coef", r#"{"default":"0"}"#);
    for (from, to) in [("1", "2"), ("2", "1")] {
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
    // Another worker's claim, held open: the same query, in a transaction of a session that
    // runs as the workers' do (READ COMMITTED).
    let claim = camp_queue::queue::CLAIM_SHARED
        .replacen('?', "'9999-12-31'", 1)
        .replacen('?', "'2026-12-01 09:00:00'", 1);
    let mut other = stand.session(1);
    other.exec("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED");
    for n in 1..=4 {
        other.exec("BEGIN");
        let held = other.exec(&claim);
        let held_cid = held.split('\t').nth(1).expect("a due job").to_owned();
        // While it is open, worker n claims and does the next job.
        let out = stand.ok(&[
            "--now",
            T0,
            "run",
            "--shard",
            "1",
            "--par-id",
            &format!("copy:{n}"),
            "--once",
            "--max-jobs",
            "1",
        ]);
        assert!(
            out.contains(&format!(
                "shard_1,par-id_copy:{n} exiting: 1 jobs done (--max-jobs)"
            )),
            "copy:{n} claimed nothing while another claim was open: {out}"
        );
        assert!(
            !out.contains(&format!("cid={held_cid} ")),
            "copy:{n} took the job held by the open claim: {out}"
        );
        other.exec("ROLLBACK");
    }
    let done = stand.done(1);
    assert_eq!(done.len(), 4, "{done:?}");
    let workers: BTreeSet<&str> = done.iter().map(|d| d.1.as_str()).collect();
    assert_eq!(
        workers,
        BTreeSet::from(["copy:1", "copy:2", "copy:3", "copy:4"])
    );
}
