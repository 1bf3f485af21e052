//! Which workers run, as whom, from `camp_copy_queue_additional_workers`; the named lock;
//! SIGTERM; status of lanes and heartbeats.

use std::collections::BTreeSet;

use crate::{Stand, T0, stand};

const PROP: &str = "camp_copy_queue_additional_workers";

/// Run every launched worker (`copy:1..3` of every shard) once; return all their lines.
fn run_all_copy_workers(stand: &Stand) -> String {
    let mut out = String::new();
    for shard in 1..=stand.shards {
        for n in 1..=3 {
            out.push_str(&stand.drain(shard, &format!("copy:{n}"), T0));
        }
    }
    out
}

/// The prefixes of the workers that started working.
fn started(lines: &str) -> BTreeSet<String> {
    lines
        .lines()
        .filter(|l| l.contains(" started (lifetime"))
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with("shard_"))
                .map(str::to_owned)
        })
        .collect()
}

fn prefixes(list: &[(u32, u32)]) -> BTreeSet<String> {
    list.iter()
        .map(|(s, n)| format!("shard_{s},par-id_copy:{n}"))
        .collect()
}

fn with_lines<'a>(lines: &'a str, text: &str) -> Vec<&'a str> {
    lines.lines().filter(|l| l.contains(text)).collect()
}

#[test]
fn the_seeds_two_examples_start_exactly_the_workers_and_prefixes_it_describes() {
    let stand = stand(6);
    stand.ok(&[
        "demo-data",
        "--clients",
        "6",
        "--campaigns",
        "2",
        "--banners",
        "1",
        "--phrases",
        "1",
    ]);
    // A copy on shard 6 pinned to lane 4: only shard 5's worker 2, remapped to 6:4, takes it.
    stand.ok(&[
        "--now",
        T0,
        "enqueue",
        "copy",
        "--cid",
        "11",
        "--to-client",
        "6",
        "--role",
        "manager",
    ]);
    stand.sql(
        6,
        "UPDATE camp_operations_queue_copy SET par_id = 4 WHERE cid = 11",
    );

    stand.set_prop(
        PROP,
        r#"{"2:2":"on", "5:3":"on", "6:2":"on", "6:3":"on", "5:2":"6:4"}"#,
    );
    let lines = run_all_copy_workers(&stand);
    let primaries: Vec<(u32, u32)> = (1..=6).map(|s| (s, 1)).collect();
    let mut expected = primaries.clone();
    expected.extend([(2, 2), (5, 3), (6, 2), (6, 3), (6, 4)]);
    assert_eq!(started(&lines), prefixes(&expected), "{lines}");
    let remap = with_lines(&lines, "remapping applied");
    assert_eq!(remap.len(), 1, "{lines}");
    assert!(
        remap[0].contains("shard_5,par-id_copy:2 remapping applied 5:2 -> 6:4"),
        "{}",
        remap[0]
    );
    // Under its own prefix the remapped worker says only that; it works as shard_6 copy:4.
    assert_eq!(
        with_lines(&lines, "shard_5,par-id_copy:2").len(),
        1,
        "{lines}"
    );
    assert!(
        lines.contains("shard_6,par-id_copy:4 cid=11 done: copied to cid"),
        "{lines}"
    );
    assert_eq!(stand.done(6), vec![(11, "copy:4".to_owned())]);

    // The seed's second example.
    stand.set_prop(PROP, r#"{"2:2":"6:5", "6:2":"on", "3:2":"on"}"#);
    let lines = run_all_copy_workers(&stand);
    let mut expected = primaries;
    expected.extend([(3, 2), (6, 2), (6, 5)]);
    assert_eq!(started(&lines), prefixes(&expected), "{lines}");
    let remap = with_lines(&lines, "remapping applied");
    assert_eq!(remap.len(), 1, "{lines}");
    assert!(
        remap[0].contains("shard_2,par-id_copy:2 remapping applied 2:2 -> 6:5"),
        "{}",
        remap[0]
    );
    for gone in ["shard_5,par-id_copy:3", "shard_6,par-id_copy:3"] {
        assert!(
            with_lines(&lines, gone)
                .iter()
                .all(|l| l.contains("not activated")),
            "{gone}: {lines}"
        );
    }
}

#[test]
fn every_invalid_configuration_leaves_only_the_primaries_and_says_additional_workers_error() {
    let stand = stand(6);
    stand.ok(&[
        "demo-data",
        "--clients",
        "2",
        "--campaigns",
        "1",
        "--banners",
        "1",
        "--phrases",
        "1",
    ]);
    let valid = r#"{"2:2":"on"}"#;
    stand.ok(&["props", "set", PROP, valid]);
    for invalid in [
        r#"{"2:1":"on"}"#,
        r#"{"2:1":"3:2"}"#,
        r#"{"3:2":"2:1"}"#,
        r#"{"2:2":"on","2:x":"on"}"#,
        r#"{"2:2":"on","3:2":"sure"}"#,
        r#"{"2:2":"6:4","3:2":"6:4"}"#,
        r#"{"2:2":"on","2:4":"on"}"#,
        r#"{"2:2":"on""#,
    ] {
        // `props set` refuses it and keeps the old value.
        let out = stand.run(&["props", "set", PROP, invalid]);
        assert_eq!(out.status.code(), Some(78), "{invalid}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("property `{PROP}` not changed")),
            "{err}"
        );
        assert_eq!(stand.ok(&["props", "get", PROP]).trim(), valid);

        // Written by hand anyway: the primary works and says so, worker 2 does not start.
        stand.set_prop(PROP, invalid);
        let primary = stand.drain(2, "copy:1", T0);
        assert!(
            primary.contains("additional_workers_error"),
            "{invalid}: {primary}"
        );
        assert!(
            primary.contains("shard_2,par-id_copy:1 started"),
            "{invalid}: {primary}"
        );
        let extra = stand.drain(2, "copy:2", T0);
        assert!(
            extra.contains("shard_2,par-id_copy:2 additional_workers_error"),
            "{invalid}: {extra}"
        );
        assert!(!extra.contains("started"), "{invalid}: {extra}");
        stand.set_prop(PROP, valid);
    }
    // And the valid value activates worker 2 again.
    assert!(
        stand
            .drain(2, "copy:2", T0)
            .contains("shard_2,par-id_copy:2 started")
    );
}

#[test]
fn a_worker_exits_when_its_entry_changes_and_the_others_keep_working() {
    let stand = stand(6);
    stand.ok(&[
        "demo-data",
        "--clients",
        "6",
        "--campaigns",
        "2",
        "--banners",
        "1",
        "--phrases",
        "1",
    ]);
    stand.set_prop(PROP, r#"{"6:2":"on","6:3":"on"}"#);
    let mut two = stand.spawn(&["run", "--shard", "6", "--par-id", "copy:2"]);
    let mut three = stand.spawn(&["run", "--shard", "6", "--par-id", "copy:3"]);
    two.wait_for("shard_6,par-id_copy:2 started");
    three.wait_for("shard_6,par-id_copy:3 started");

    stand.set_prop(PROP, r#"{"6:2":"on","6:3":"2:4"}"#);
    let (code, lines) = three.wait_exit();
    assert_eq!(code, 0, "{lines}");
    assert!(
        lines.contains(
            "shard_6,par-id_copy:3 exiting: camp_copy_queue_additional_workers changed for 6:3"
        ),
        "{lines}"
    );

    // 6:2's entry did not change: it is still there and takes the next copy.
    stand.ok(&[
        "enqueue",
        "copy",
        "--cid",
        "12",
        "--to-client",
        "6",
        "--role",
        "support",
    ]);
    two.wait_for("shard_6,par-id_copy:2 cid=12 done");
    assert!(
        two.child.try_wait().unwrap().is_none(),
        "copy:2 is still running"
    );
    two.terminate();
    let (code, lines) = two.wait_exit();
    assert_eq!(code, 0, "{lines}");
    assert!(
        lines.contains("shard_6,par-id_copy:2 exiting: stopping on a signal"),
        "{lines}"
    );
}

#[test]
fn one_process_per_worker_identity_and_status_tells_running_lanes_from_stopped_ones() {
    let stand = stand(2);
    stand.ok(&[
        "demo-data",
        "--clients",
        "2",
        "--campaigns",
        "3",
        "--banners",
        "1",
        "--phrases",
        "1",
    ]);
    let mut first = stand.spawn(&["run", "--shard", "1", "--par-id", "copy:1"]);
    first.wait_for("shard_1,par-id_copy:1 started");
    let second = stand.ok(&["run", "--shard", "1", "--par-id", "copy:1"]);
    assert!(
        second
            .contains("shard_1,par-id_copy:1 another process already runs as this worker; exiting"),
        "{second}"
    );

    // A copy pinned to lane 3, whose worker is not running, waits and is shown.
    stand.ok(&[
        "enqueue",
        "copy",
        "--cid",
        "2",
        "--to-client",
        "1",
        "--role",
        "agency",
    ]);
    stand.sql(
        1,
        "UPDATE camp_operations_queue_copy SET par_id = 3 WHERE cid = 2",
    );
    let json: serde_json::Value =
        serde_json::from_str(&stand.stdout(&["status", "--json"])).unwrap();
    let shard1 = &json[0];
    assert_eq!(
        shard1["pinned_to_stopped_lanes"],
        serde_json::json!([{"par_id": "copy:3", "jobs": 1}])
    );
    let copy1 = shard1["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["par_id"] == "copy:1")
        .unwrap();
    assert_eq!(copy1["running"], true);
    assert_eq!(shard1["queues"][0]["size"], 1);
    assert_eq!(shard1["queues"][0]["waiting_clients"], 1);

    first.terminate();
    let (code, lines) = first.wait_exit();
    assert_eq!(code, 0, "{lines}");
    let text = stand.ok(&["status"]);
    assert!(
        text.contains("shard 1 copy:1: not running, last heartbeat"),
        "{text}"
    );
    assert!(
        text.contains("shard 1 copy: 1 jobs wait for copy:3, whose worker is not running"),
        "{text}"
    );
    assert!(text.contains("shard 2 copy:1: no heartbeat yet"), "{text}");
}

#[test]
fn a_worker_past_its_lifetime_takes_no_more_jobs_and_exits_cleanly() {
    let mut stand = stand(1);
    stand.ok(&[
        "demo-data",
        "--clients",
        "1",
        "--campaigns",
        "2",
        "--banners",
        "1",
        "--phrases",
        "1",
    ]);
    stand.ok(&[
        "enqueue",
        "copy",
        "--cid",
        "1",
        "--to-client",
        "1",
        "--role",
        "manager",
    ]);
    stand
        .env
        .push(("CAMP_QUEUE_LIFETIME_SECS".into(), "0".into()));
    let out = stand.ok(&["run", "--shard", "1", "--par-id", "copy:1"]);
    assert!(
        out.contains("shard_1,par-id_copy:1 exiting: lifetime reached"),
        "{out}"
    );
    assert_eq!(
        stand.count(1, "SELECT COUNT(*) FROM camp_operations_queue_copy"),
        1,
        "the job waits for the next start"
    );
    // Its lock went with it: the next start takes the job.
    stand.env.pop();
    let out = stand.ok(&["run", "--shard", "1", "--par-id", "copy:1", "--once"]);
    assert!(out.contains("cid=1 done: copied"), "{out}");
}

#[test]
fn sigterm_during_a_copy_finishes_the_job_in_hand_whole_then_exits_0() {
    let stand = stand(2);
    // Client 1 on shard 1 (cids 1, 2), client 2 on shard 2.
    stand.ok(&[
        "demo-data",
        "--clients",
        "2",
        "--campaigns",
        "2",
        "--banners",
        "3",
        "--phrases",
        "4",
    ]);
    for cid in ["1", "2"] {
        stand.ok(&[
            "--now",
            T0,
            "enqueue",
            "copy",
            "--cid",
            cid,
            "--to-client",
            "2",
            "--role",
            "manager",
        ]);
    }
    let mut w = stand.spawn(&[
        "--now",
        T0,
        "run",
        "--shard",
        "1",
        "--par-id",
        "copy:1",
        "--pause-at",
        "mid-copy",
    ]);
    // Frozen inside the copy's transaction on shard 2: campaign and banners written, not
    // committed.
    w.wait_for("cid=1 claimed");
    w.wait_for("paused at");
    let copies = "SELECT COUNT(*) FROM campaigns WHERE copied_from_cid = 1";
    assert_eq!(stand.count(2, copies), 0);
    w.terminate();
    w.wait_for("shard_1,par-id_copy:1 SIGTERM received: finishing the job in hand");
    w.resume();
    let (code, lines) = w.wait_exit();
    assert_eq!(code, 0, "{lines}");
    assert!(
        lines.contains("shard_1,par-id_copy:1 cid=1 done: copied to cid"),
        "{lines}"
    );
    assert!(
        lines.contains("shard_1,par-id_copy:1 exiting: stopping on a signal"),
        "{lines}"
    );
    // The job in hand is whole on the target; the next one was not started.
    assert_eq!(stand.count(2, copies), 1);
    let new_cid = stand.sql(2, "SELECT cid FROM campaigns WHERE copied_from_cid = 1");
    assert_eq!(
        stand.count(
            2,
            &format!("SELECT COUNT(*) FROM banners WHERE cid = {new_cid}")
        ),
        3
    );
    assert_eq!(
        stand.count(
            2,
            &format!("SELECT COUNT(*) FROM phrases p JOIN banners b ON b.bid = p.bid AND b.cid = p.cid WHERE p.cid = {new_cid}")
        ),
        12
    );
    assert_eq!(
        stand.sql(
            1,
            "SELECT cid, par_id IS NULL, attempts FROM camp_operations_queue_copy"
        ),
        "2\t1\t0"
    );
}
