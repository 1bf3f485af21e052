//! Pessimisation on a hand-computed example: `effective = queue_time + accumulated(client)`
//! for copies a client queued itself, `accumulated = accumulated·exp(−elapsed/τ) + duration`
//! after each of its copies (τ = 3600 s), other roles in plain queue order.

use chrono::NaiveDateTime;

use crate::{Stand, stand};

const T0: &str = "2026-12-01 09:00:00";

fn at(seconds: f64) -> String {
    let t = NaiveDateTime::parse_from_str(T0, "%Y-%m-%d %H:%M:%S").unwrap()
        + chrono::TimeDelta::microseconds((seconds * 1e6) as i64);
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn secs_since_t0(stand: &Stand, expr: &str, from: &str) -> f64 {
    stand
        .sql(
            1,
            &format!("SELECT TIMESTAMPDIFF(MICROSECOND, '{T0}', {expr}) FROM {from}"),
        )
        .parse::<f64>()
        .unwrap()
        / 1e6
}

#[test]
fn copies_are_processed_in_the_order_the_formula_gives() {
    let stand = stand(1);
    // Clients A=1 (cids 1-3), B=2 (4-6), C=3 (7-9), D=4 (10-12), all on shard 1.
    stand.ok(&[
        "demo-data",
        "--clients",
        "4",
        "--campaigns",
        "3",
        "--banners",
        "1",
        "--phrases",
        "1",
    ]);
    stand.set_prop("camp_copy_queue_sleep_coef", r#"{"default":"0"}"#);
    // A has copied a lot lately: 100 s accumulated, as of T0.
    stand.sql(1, &format!("UPDATE clients_options SET camp_copy_ela = 100, camp_copy_ela_at = '{T0}' WHERE ClientID = 1"));
    for (t, cid, role) in [
        (0.0, 1, "client"),     // A: 0 + 100 = 100
        (10.0, 2, "client"),    // A: behind A's first copy
        (20.0, 4, "client"),    // B: 20 + 0
        (30.0, 3, "manager"),   // A's campaign, by a manager: 30, not pessimised
        (40.0, 5, "client"),    // B: behind B's first copy
        (60.0, 7, "support"),   // C: 60
        (105.0, 6, "client"),   // B: behind B's second copy
        (109.5, 10, "manager"), // D: 109.5
    ] {
        stand.ok(&[
            "--now",
            &at(t),
            "enqueue",
            "copy",
            "--cid",
            &cid.to_string(),
            "--to-client",
            "4",
            "--role",
            role,
        ]);
    }
    let effective = |cid: u64| {
        secs_since_t0(
            &stand,
            "effective_queue_time",
            &format!("camp_operations_queue_copy WHERE cid = {cid}"),
        )
    };
    assert_eq!(effective(1), 100.0);
    assert_eq!(effective(3), 30.0, "a manager's copy is not pessimised");
    assert_eq!(effective(4), 20.0);

    // Hand-computed order (d = a copy's duration, milliseconds here):
    //  B4 (20); A3 (30); B5 (40 + d); C7 (60); A1 (100); then A's accumulated time becomes
    //  100·exp(−200/3600) + d ≈ 94.6, so A2 = 10 + 94.6 = 104.6 goes before B6 (105 + 2d) and
    //  D10 (109.5). (Without the decay A2 would be 110 + d, after both.)
    let drain = |now: f64, max: &str| {
        stand.ok(&[
            "--now",
            &at(now),
            "run",
            "--shard",
            "1",
            "--par-id",
            "copy:1",
            "--once",
            "--max-jobs",
            max,
        ]);
    };
    drain(200.0, "2");
    assert_eq!(
        stand.done(1).iter().map(|d| d.0).collect::<Vec<_>>(),
        vec![4, 3]
    );
    assert_eq!(
        stand.sql(
            1,
            "SELECT camp_copy_ela FROM clients_options WHERE ClientID = 1"
        ),
        "100",
        "A's manager copy did not count"
    );

    drain(201.0, "3");
    assert_eq!(
        stand.done(1).iter().map(|d| d.0).collect::<Vec<_>>(),
        vec![4, 3, 5, 7, 1]
    );
    // The stored state follows the formula: A's accumulated time and A2's effective time.
    let acc: f64 = stand
        .sql(
            1,
            "SELECT camp_copy_ela FROM clients_options WHERE ClientID = 1",
        )
        .parse()
        .unwrap();
    let copied_at = secs_since_t0(
        &stand,
        "camp_copy_ela_at",
        "clients_options WHERE ClientID = 1",
    );
    let duration: f64 = stand
        .sql(
            1,
            "SELECT duration_ms FROM camp_queue_history WHERE cid = 1 AND event = 'done'",
        )
        .parse::<f64>()
        .unwrap()
        / 1000.0;
    let expected = 100.0 * (-copied_at / 3600.0).exp() + duration;
    assert!(
        (acc - expected).abs() < 0.002,
        "accumulated {acc}, formula {expected}"
    );
    assert!(
        (effective(2) - (10.0 + acc)).abs() < 1e-5,
        "A2 = queue_time + accumulated"
    );

    drain(202.0, "10");
    assert_eq!(
        stand.done(1).iter().map(|d| d.0).collect::<Vec<_>>(),
        vec![4, 3, 5, 7, 1, 2, 6, 10]
    );
}
