//! Replacing a window's facts: what a window held before a load decides whether the rows the
//! load left unwritten are zeroed.

use zakaz_core::ads::{Before, Stamp, held_before, zero_stale};
use zakaz_core::testing::TestDb;

const COLUMNS: &[&str] = &["stat_date", "account", "banner_id", "shows", "_version"];
const SCOPE: &str =
    "account = 'a' AND stat_date BETWEEN toDate('2026-11-01') AND toDate('2026-11-30')";

/// A fresh database with a small facts table of the loaders' shape.
async fn facts_table() -> (TestDb, zakaz_core::ch::Ch) {
    let (db, ch) = TestDb::migrated().await;
    ch.execute(
        "CREATE TABLE facts (stat_date Date, account String, banner_id UInt64, shows UInt64, _version UInt64) \
         ENGINE = ReplacingMergeTree(_version) ORDER BY (stat_date, account, banner_id)",
    )
    .await
    .unwrap();
    (db, ch)
}

async fn shows(ch: &zakaz_core::ch::Ch) -> Vec<(u64, u64)> {
    ch.client()
        .query("SELECT banner_id, shows FROM facts FINAL ORDER BY banner_id")
        .fetch_all()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_window_is_empty_until_a_row_of_its_account_and_dates_is_there() {
    let (_db, ch) = facts_table().await;
    assert_eq!(
        held_before(&ch, "facts", SCOPE).await.unwrap(),
        Before::Empty
    );
    // Another account, and the account's day after the window: still empty.
    ch.execute(
        "INSERT INTO facts VALUES ('2026-11-10', 'b', 1, 5, 1), ('2026-12-01', 'a', 1, 5, 1)",
    )
    .await
    .unwrap();
    assert_eq!(
        held_before(&ch, "facts", SCOPE).await.unwrap(),
        Before::Empty
    );
    ch.execute("INSERT INTO facts VALUES ('2026-11-30', 'a', 7, 0, 1)")
        .await
        .unwrap();
    assert_eq!(
        held_before(&ch, "facts", SCOPE).await.unwrap(),
        Before::Held
    );
}

#[tokio::test]
async fn rows_a_load_left_unwritten_are_zeroed_only_when_the_window_held_rows_before_it() {
    let (_db, ch) = facts_table().await;
    let stamp = |version| Stamp {
        loaded_at: 1_796_000_000,
        version,
    };
    // A first load wrote banners 1 and 2; a second sees only banner 1.
    ch.execute(
        "INSERT INTO facts VALUES ('2026-11-10', 'a', 1, 5, 1), ('2026-11-10', 'a', 2, 7, 1)",
    )
    .await
    .unwrap();
    let before = held_before(&ch, "facts", SCOPE).await.unwrap();
    ch.execute("INSERT INTO facts VALUES ('2026-11-10', 'a', 1, 6, 2)")
        .await
        .unwrap();
    zero_stale(&ch, "facts", COLUMNS, &["shows"], SCOPE, stamp(2), before)
        .await
        .unwrap();
    assert_eq!(shows(&ch).await, vec![(1, 6), (2, 0)]);

    // Told the window was empty before, nothing is read or zeroed: a third load that saw
    // only banner 1 leaves banner 3 (put there behind its back) as it is.
    ch.execute("INSERT INTO facts VALUES ('2026-11-10', 'a', 3, 9, 2)")
        .await
        .unwrap();
    zero_stale(
        &ch,
        "facts",
        COLUMNS,
        &["shows"],
        SCOPE,
        stamp(3),
        Before::Empty,
    )
    .await
    .unwrap();
    assert_eq!(shows(&ch).await, vec![(1, 6), (2, 0), (3, 9)]);
}
