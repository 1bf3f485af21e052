//! Four copy workers on one shard: every job is done exactly once, every worker takes some,
//! and the claim queries are served by the `claim` index in its order (no filesort, whose
//! row locks would make a second worker's `SKIP LOCKED` find nothing).

use std::collections::{BTreeMap, BTreeSet};

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
fn four_workers_on_one_shard_never_do_a_job_twice_and_all_make_progress() {
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
    let mut per_worker: BTreeMap<String, usize> = BTreeMap::new();
    for (_, w) in &done {
        *per_worker.entry(w.clone()).or_default() += 1;
    }
    assert_eq!(
        per_worker.len(),
        4,
        "every worker took jobs: {per_worker:?}"
    );
}
