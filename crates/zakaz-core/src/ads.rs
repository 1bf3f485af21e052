//! What the ad-statistics loaders (VK Ads, Yandex Direct) share: the nightly window, the
//! stamp of one load, and replacing a window's facts so that a re-run changes no total.

use crate::ch::Ch;
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

/// After a load wrote `scope` (an account and its dates) at `stamp`: every key of `scope`
/// this load did not write (a banner gone, a row the vendor dropped) gets a zero row of the
/// same version, so the window's totals are exactly this load's. `columns` lists the table's
/// columns; `zeroed` the metrics set to 0.
pub async fn zero_stale(
    ch: &Ch,
    table: &str,
    columns: &[&str],
    zeroed: &[&str],
    scope: &str,
    stamp: Stamp,
) -> anyhow::Result<()> {
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
    let sql = format!(
        "INSERT INTO {table} ({cols}) SELECT {select} FROM {table} FINAL \
         WHERE ({scope}) AND _version < {version} AND ({nonzero})",
        cols = columns.join(", "),
        select = select.join(", "),
        version = stamp.version,
        nonzero = nonzero.join(" OR "),
    );
    ch.execute(&sql).await.map_err(|e| {
        e.context(format!(
            "cannot zero the rows of `{table}` this load did not see"
        ))
    })
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
