//! `kill -9` in the middle of a copy — on one shard, and into a shard on another server,
//! before and after the target committed — loses nothing and copies nothing twice: the same
//! worker number resumes its claimed job, and the counts of campaigns, banners and phrases
//! are exactly one copy's.

use crate::{T0, stand};

struct Case {
    cid: u64,
    to_client: u64,
    pause: &'static str,
}

#[test]
fn a_worker_killed_mid_copy_resumes_its_job_and_copies_exactly_once() {
    let stand = stand(2);
    assert_ne!(
        stand.port_of(1),
        stand.port_of(2),
        "shards 1 and 2 live on different servers"
    );
    // Clients 1 and 3 on shard 1, client 2 on shard 2; cids 1,2 | 3,4 | 5,6.
    stand.ok(&[
        "demo-data",
        "--clients",
        "3",
        "--campaigns",
        "2",
        "--banners",
        "3",
        "--phrases",
        "4",
    ]);
    stand.set_prop("camp_copy_queue_additional_workers", r#"{"1:2":"on"}"#);
    let cases = [
        // Same shard: the copy and the job's deletion are one transaction.
        Case {
            cid: 1,
            to_client: 3,
            pause: "mid-copy",
        },
        // Across servers, killed before the target committed.
        Case {
            cid: 2,
            to_client: 2,
            pause: "mid-copy",
        },
        // Across servers, killed after the target committed, before the job was deleted.
        Case {
            cid: 5,
            to_client: 2,
            pause: "after-target-commit",
        },
    ];
    for case in cases {
        let cid = case.cid.to_string();
        let to = case.to_client.to_string();
        let target = if case.to_client == 2 { 2 } else { 1 };
        let banners = stand.count(
            1,
            &format!("SELECT COUNT(*) FROM banners WHERE cid = {cid}"),
        );
        let phrases = stand.count(
            1,
            &format!("SELECT COUNT(*) FROM phrases WHERE cid = {cid}"),
        );
        assert!(banners > 0 && phrases > 0);
        stand.ok(&[
            "--now",
            T0,
            "enqueue",
            "copy",
            "--cid",
            &cid,
            "--to-client",
            &to,
            "--role",
            "client",
        ]);

        let mut worker = stand.spawn(&[
            "--now",
            T0,
            "run",
            "--shard",
            "1",
            "--par-id",
            "copy:1",
            "--once",
            "--pause-at",
            case.pause,
        ]);
        worker.wait_for("paused at");
        worker.kill9();
        assert_eq!(
            stand.sql(1, &format!("SELECT par_id, attempts, new_cid IS NOT NULL FROM camp_operations_queue_copy WHERE cid = {cid}")),
            "1\t1\t1",
            "{}: the job stays claimed by copy:1 with its new cid",
            case.pause
        );
        // Another worker does not take a job claimed by copy:1.
        let other = stand.drain(1, "copy:2", T0);
        assert!(other.contains("queue drained (0 jobs)"), "{other}");

        let resumed = stand.drain(1, "copy:1", T0);
        assert!(
            resumed.contains(&format!(
                "cid={cid} claimed: copy to client {to} (attempt 2"
            )),
            "{resumed}"
        );
        let copies = format!("SELECT COUNT(*) FROM campaigns WHERE copied_from_cid = {cid}");
        assert_eq!(stand.count(target, &copies), 1, "{}: one copy", case.pause);
        assert_eq!(
            stand.count(3 - target, &copies),
            0,
            "{}: and none elsewhere",
            case.pause
        );
        let new_cid = stand.sql(
            target,
            &format!("SELECT cid FROM campaigns WHERE copied_from_cid = {cid}"),
        );
        assert_eq!(
            stand.count(
                target,
                &format!("SELECT COUNT(*) FROM banners WHERE cid = {new_cid}")
            ),
            banners
        );
        assert_eq!(
            stand.count(
                target,
                &format!("SELECT COUNT(*) FROM phrases WHERE cid = {new_cid}")
            ),
            phrases
        );
        // Every copied phrase points at a copied banner of the new campaign.
        assert_eq!(
            stand.count(target, &format!("SELECT COUNT(*) FROM phrases p JOIN banners b ON b.bid = p.bid AND b.cid = p.cid WHERE p.cid = {new_cid}")),
            phrases
        );
        assert_eq!(
            stand.count(1, "SELECT COUNT(*) FROM camp_operations_queue_copy"),
            0
        );
        assert_eq!(
            stand.dict(&format!(
                "SELECT ClientID FROM shard_inc_cid WHERE cid = {new_cid}"
            )),
            to
        );
        if case.pause == "after-target-commit" {
            assert!(
                resumed.contains(&format!("done: already copied as cid {new_cid} on shard 2")),
                "{resumed}"
            );
        }
    }
}
