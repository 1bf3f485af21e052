//! Enqueueing as the platform does, with one-line rejections that queue nothing; demo data
//! that is the same after every run.

use crate::{Stand, T0, stand};

fn queued(stand: &Stand) -> (u64, u64) {
    (
        stand.count(1, "SELECT COUNT(*) FROM camp_operations_queue_copy"),
        stand.count(1, "SELECT COUNT(*) FROM camp_operations_queue"),
    )
}

#[test]
fn bad_requests_are_one_line_errors_and_queue_nothing() {
    let stand = stand(2);
    stand.ok(&["demo-data", "--clients", "2", "--campaigns", "2"]);
    stand.ok(&[
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
    stand.ok(&["--now", T0, "enqueue", "del", "--cid", "1"]);
    for (args, code, message) in [
        (
            vec!["copy", "--cid", "1", "--to-client", "2", "--role", "client"],
            1,
            "campaign 1 is already in the copy queue of shard 1",
        ),
        (
            vec!["del", "--cid", "1"],
            1,
            "campaign 1 already has an operation queued on shard 1",
        ),
        (
            vec![
                "copy",
                "--cid",
                "999",
                "--to-client",
                "2",
                "--role",
                "client",
            ],
            1,
            "campaign 999 does not exist",
        ),
        (
            vec![
                "copy",
                "--cid",
                "2",
                "--to-client",
                "77",
                "--role",
                "client",
            ],
            1,
            "client 77 does not exist",
        ),
        (
            vec!["copy", "--cid", "2", "--to-client", "2", "--role", "boss"],
            78,
            "invalid value 'boss' for '--role <ROLE>'",
        ),
        (
            vec![
                "copy",
                "--cid",
                "abc",
                "--to-client",
                "2",
                "--role",
                "client",
            ],
            78,
            "invalid value 'abc' for '--cid <CID>'",
        ),
        (
            vec!["copy", "--cid", "0", "--to-client", "2", "--role", "client"],
            78,
            "--cid <CID>",
        ),
        (
            vec!["arc", "--cid", "12345"],
            1,
            "campaign 12345 does not exist",
        ),
    ] {
        let mut full = vec!["enqueue"];
        full.extend(args);
        let out = stand.run(&full);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{full:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{full:?}: one line: {err}");
        assert!(err.contains(message), "{full:?}: {err}");
        assert_eq!(queued(&stand), (1, 1), "{full:?} queued nothing");
    }
    let history = stand.ok(&["history", "--cid", "1"]);
    assert!(
        history.contains("copy queued: copy to client 2 (role client)"),
        "{history}"
    );
    assert!(history.contains("rest queued: del"), "{history}");
}

#[test]
fn settings_errors_name_the_setting() {
    let stand = stand(1);
    for (env, value, message) in [
        ("PPCDICT_DSN", "", "`PPCDICT_DSN` is not set"),
        (
            "PPC_SHARD_DSNS",
            "mysql://root@127.0.0.1:3306/x{shard}",
            "`PPC_SHARDS` is required",
        ),
        (
            "PPCDICT_DSN",
            "http://u:sekret-pass-1@h/x",
            "`PPCDICT_DSN`: the scheme must be `mysql://`",
        ),
    ] {
        let out = stand
            .command()
            .env(env, value)
            .args(["status"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{env}={value}: {err}");
        assert!(err.contains(message), "{err}");
        assert!(!err.contains("sekret-pass-1"), "{err}");
    }
}

#[test]
fn demo_data_is_the_same_after_every_run_and_archive_unarchive_delete_work() {
    let stand = stand(3);
    let fingerprint = || {
        (1..=3)
            .map(|s| {
                stand.sql(
                    s,
                    "SELECT COUNT(*), COALESCE(SUM(cid), 0), COALESCE(SUM(sum), 0), \
                    (SELECT COUNT(*) FROM banners), (SELECT COUNT(*) FROM phrases), \
                    (SELECT COUNT(*) FROM camp_operations_queue_copy) FROM campaigns",
                )
            })
            .collect::<Vec<_>>()
            .join(" | ")
    };
    stand.ok(&["demo-data", "--clients", "6", "--campaigns", "3"]);
    let first = fingerprint();
    // A copy, an archive and a delete change the data; demo-data puts it back.
    stand.ok(&[
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
    stand.ok(&["--now", T0, "enqueue", "arc", "--cid", "2"]);
    stand.ok(&["--now", T0, "enqueue", "del", "--cid", "1"]);
    stand.ok(&["--now", T0, "enqueue", "del", "--cid", "3"]);
    stand.drain(1, "copy:1", T0);
    let rest = stand.drain(1, "rest", T0);
    assert!(rest.contains("cid=2 done: archived"), "{rest}");
    assert!(
        rest.contains("cid=1 done: deleted with its banners and phrases"),
        "{rest}"
    );
    assert!(
        rest.contains("cid=3 rejected: campaign 3 still has 750 of money"),
        "{rest}"
    );
    assert_eq!(
        stand.sql(
            1,
            "SELECT statusArchived, statusShow FROM campaigns WHERE cid = 2"
        ),
        "Yes\tNo"
    );
    assert_eq!(
        stand.count(1, "SELECT COUNT(*) FROM campaigns WHERE cid IN (1, 3)"),
        1
    );
    assert_eq!(
        stand.count(1, "SELECT COUNT(*) FROM phrases WHERE cid = 1"),
        0
    );
    stand.ok(&["--now", T0, "enqueue", "unarc", "--cid", "2"]);
    assert!(
        stand
            .drain(1, "rest", T0)
            .contains("cid=2 done: unarchived")
    );
    assert_ne!(fingerprint(), first);
    stand.ok(&["demo-data", "--clients", "6", "--campaigns", "3"]);
    assert_eq!(fingerprint(), first);
}

#[test]
fn a_client_flooding_the_queue_gets_one_head_with_its_accumulated_time() {
    let stand = stand(1);
    stand.ok(&[
        "demo-data",
        "--clients",
        "2",
        "--campaigns",
        "50",
        "--banners",
        "1",
        "--phrases",
        "1",
    ]);
    stand.sql(
        1,
        "UPDATE clients_options SET camp_copy_ela = 42.5 WHERE ClientID = 1",
    );
    let out = stand.ok(&[
        "--now",
        T0,
        "enqueue",
        "copy",
        "--from-client",
        "1",
        "--to-client",
        "2",
        "--role",
        "client",
    ]);
    assert!(
        out.contains("queued 50 copies of client 1's campaigns"),
        "{out}"
    );
    // Only the first copy carries its time (queue_time + 42.5 s); the others wait behind it.
    let timed = stand.sql(
        1,
        "SELECT cid, TIMESTAMPDIFF(MICROSECOND, queue_time, effective_queue_time) FROM camp_operations_queue_copy \
         WHERE effective_queue_time < '9999-01-01'",
    );
    assert_eq!(timed, "1\t42500000");
    // A manager's flood is not pessimised: every copy at its queue time.
    let out = stand.ok(&[
        "--now",
        T0,
        "enqueue",
        "copy",
        "--from-client",
        "2",
        "--to-client",
        "1",
        "--role",
        "manager",
    ]);
    assert!(out.contains("queued 50 copies"), "{out}");
    assert_eq!(
        stand.count(1, "SELECT COUNT(*) FROM camp_operations_queue_copy WHERE ClientID = 2 AND effective_queue_time = queue_time"),
        50
    );
}
