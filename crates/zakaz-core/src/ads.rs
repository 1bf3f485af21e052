//! What the ad-statistics loaders (VK Ads, Yandex Direct) share: the nightly window, the
//! stamp of one load, and replacing a window's facts so that a re-run changes no total.

use crate::ch::Ch;
use crate::journal::{Outcome, PartialFailure};
use crate::time::{Clock, DateWindow, WindowArgs};

/// Yesterday (Moscow) and the `refresh_days` before it (late conversions and corrections
/// arrive for days), unless `--since/--until/--days` say otherwise.
pub fn nightly_window(
    args: &WindowArgs,
    clock: &Clock,
    refresh_days: u32,
) -> anyhow::Result<DateWindow> {
    let yesterday = clock.moscow_today() - chrono::Days::new(1);
    DateWindow::resolve(args, yesterday, refresh_days + 1)
}

/// When a load happened: `loaded_at` for people, `_version` for `ReplacingMergeTree` (the
/// later load wins; microseconds, so two loads in one second still order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub loaded_at: u32,
    pub version: u64,
}

impl Stamp {
    /// From the system clock: versions must grow with real loads, whatever a test pins.
    pub fn now() -> Stamp {
        let now = chrono::Utc::now();
        Stamp {
            loaded_at: crate::time::ch_datetime(&now),
            version: now.timestamp_micros().max(0) as u64,
        }
    }
}

/// What `scope` of a table held before a load began (see [`held_before`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Before {
    /// No row: every row of the scope after the load is the load's own.
    Empty,
    /// Some row, which the load may leave unwritten.
    Held,
}

/// Read before a load writes anything: whether `table` holds a row of `scope`. One row by
/// the primary key, so a first backfill need not read back everything it wrote to learn
/// that nothing was there before it. Rows another load writes meanwhile are not seen: with
/// ZooKeeper the job's lease keeps its loads apart; without it two loads started by hand at
/// once could each miss the other's (a re-run mends it), and on a cluster rows of an earlier
/// load still on their way to this replica are missed, as the zero pass itself could.
pub async fn held_before(ch: &Ch, table: &str, scope: &str) -> anyhow::Result<Before> {
    let sql = format!("SELECT count() FROM (SELECT 1 FROM {table} WHERE {scope} LIMIT 1)");
    let sql = sql.as_str();
    let found: u64 = ch
        .read(
            "whether the window held rows before the load",
            |c| async move { c.query(sql).fetch_one::<u64>().await },
        )
        .await?;
    Ok(if found == 0 {
        Before::Empty
    } else {
        Before::Held
    })
}

/// After a load wrote `scope` (an account and its dates) at `stamp`: every key of `scope`
/// this load did not write (a banner gone, a row the vendor dropped) gets a zero row of the
/// same version, so the window's totals are exactly this load's. `columns` lists the table's
/// columns; `zeroed` the metrics set to 0. Nothing to do when the scope was empty `before`.
pub async fn zero_stale(
    ch: &Ch,
    table: &str,
    columns: &[&str],
    zeroed: &[&str],
    scope: &str,
    stamp: Stamp,
    before: Before,
) -> anyhow::Result<()> {
    if before == Before::Empty {
        tracing::debug!(
            table,
            "the window held no rows before this load: none to zero"
        );
        return Ok(());
    }
    ch.execute(&zero_stale_sql(table, columns, zeroed, scope, stamp))
        .await
        .map_err(|e| {
            e.context(format!(
                "cannot zero the rows of `{table}` this load did not see"
            ))
        })
}

/// The statement of [`zero_stale`]. The rows are chosen in a subquery of their own: in one
/// `SELECT`, ClickHouse resolves `impressions` and `_version` in `WHERE` to the outer
/// aliases (`0 AS impressions`, the new version), and the filter would never match.
pub fn zero_stale_sql(
    table: &str,
    columns: &[&str],
    zeroed: &[&str],
    scope: &str,
    stamp: Stamp,
) -> String {
    let select: Vec<String> = columns
        .iter()
        .map(|c| match *c {
            "loaded_at" => format!("toDateTime({}) AS loaded_at", stamp.loaded_at),
            "_version" => format!("toUInt64({}) AS _version", stamp.version),
            c if zeroed.contains(&c) => format!("0 AS {c}"),
            c => c.to_owned(),
        })
        .collect();
    let nonzero: Vec<String> = zeroed
        .iter()
        .map(|c| format!("(isNotNull({c}) AND {c} != 0)"))
        .collect();
    format!(
        "INSERT INTO {table} ({cols}) SELECT {select} FROM \
         (SELECT {cols} FROM {table} FINAL WHERE ({scope}) AND _version < {version} AND ({nonzero}))",
        cols = columns.join(", "),
        select = select.join(", "),
        version = stamp.version,
        nonzero = nonzero.join(" OR "),
    )
}

/// `'text'` as a ClickHouse string literal.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `column BETWEEN toDate('from') AND toDate('to')`.
pub fn date_range(column: &str, window: DateWindow) -> String {
    format!(
        "{column} BETWEEN toDate('{}') AND toDate('{}')",
        window.from, window.to
    )
}

/// The accounts a list setting names (trimmed, empties dropped), or the one own account
/// (`""`) when it names none.
pub fn accounts_or_own(named: &[String]) -> Vec<String> {
    let named: Vec<String> = named
        .iter()
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty())
        .collect();
    if named.is_empty() {
        vec![String::new()]
    } else {
        named
    }
}

/// How an account is named in logs and the journal: `own` for the client's own (`""`).
pub fn label(account: &str) -> String {
    if account.is_empty() {
        "own".to_owned()
    } else {
        account.to_owned()
    }
}

/// Load every account, up to `at_once` of them concurrently (results in the accounts'
/// order). One that fails does not stop the others: it is logged and named in the returned
/// failures (`"<what> <name>: <reason>"`). A setting the operator must fix (exit 78) fails the
/// run, since it would fail every account alike.
pub async fn each_account<T, F, Fut>(
    what: &str,
    accounts: &[String],
    at_once: usize,
    mut load: F,
) -> anyhow::Result<(Vec<(String, T)>, Vec<String>)>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    use futures_util::stream::{self, StreamExt};
    let results: Vec<(String, anyhow::Result<T>)> = stream::iter(accounts.iter().cloned())
        .map(|account| {
            let loading = load(account.clone());
            async move { (account, loading.await) }
        })
        .buffered(at_once.max(1))
        .collect()
        .await;
    let (mut loaded, mut failures) = (Vec::new(), Vec::new());
    for (account, result) in results {
        match result {
            Ok(t) => loaded.push((account, t)),
            Err(e) if crate::error::exit_code_for(&e) == crate::error::exit::CONFIG => {
                return Err(e);
            }
            Err(e) => {
                let reason = crate::error::one_line(&e);
                tracing::error!(account = %label(&account), "{what} failed: {reason}");
                failures.push(format!("{what} {}: {reason}", label(&account)));
            }
        }
    }
    Ok((loaded, failures))
}

/// The run's result: `outcome`, or — when some of the `total` accounts failed — an error that
/// names them and keeps the outcome of the others for the journal.
pub fn outcome_or_partial(
    what: &str,
    total: usize,
    failures: Vec<String>,
    outcome: Outcome,
) -> anyhow::Result<Outcome> {
    if failures.is_empty() {
        return Ok(outcome);
    }
    Err(PartialFailure {
        message: format!(
            "{} of {total} {what} failed: {}; loaded: {}",
            failures.len(),
            failures.join("; "),
            outcome.message
        ),
        outcome,
    }
    .into())
}
