//! De-duplication when ClickHouse cannot be asked: a small JSON file in the state directory
//! remembers when each fingerprint was last delivered, so a ClickHouse outage (every job
//! failing every 15 minutes, each starting `--unit-failed`) is one alert per cooldown, not a
//! storm.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const FILE: &str = "alerts-sent.json";

/// The fingerprint → last delivery (Unix seconds) record.
pub struct SentLog {
    path: PathBuf,
    sent: BTreeMap<String, u32>,
}

impl SentLog {
    /// Read the record in `dir` (missing or unreadable: empty, so nothing is ever suppressed
    /// by a broken file).
    pub fn open(dir: &Path) -> SentLog {
        let path = dir.join(FILE);
        let sent = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        SentLog { path, sent }
    }

    /// Whether `fingerprint` was delivered less than `cooldown` seconds before `now`.
    pub fn recently_sent(&self, fingerprint: &str, now: u32, cooldown: u32) -> bool {
        self.sent
            .get(fingerprint)
            .is_some_and(|t| now.saturating_sub(*t) < cooldown)
    }

    /// Remember a delivery; written to a temporary file and renamed, mode 0600.
    pub fn record(&mut self, fingerprint: &str, now: u32) -> anyhow::Result<()> {
        self.sent.insert(fingerprint.to_owned(), now);
        zakaz_core::state::write_private(&self.path, &serde_json::to_vec(&self.sent)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_is_remembered_across_opens_for_the_cooldown() {
        let dir = std::env::temp_dir().join(format!("zakaz-sentlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut log = SentLog::open(&dir);
        assert!(!log.recently_sent("clickhouse_unreachable", 1_000, 3_600));
        log.record("clickhouse_unreachable", 1_000).unwrap();
        let again = SentLog::open(&dir);
        assert!(again.recently_sent("clickhouse_unreachable", 4_599, 3_600));
        assert!(!again.recently_sent("clickhouse_unreachable", 4_600, 3_600));
        assert!(!again.recently_sent("failed_run:qtickets", 1_001, 3_600));
        std::fs::write(dir.join(FILE), "not json").unwrap();
        assert!(!SentLog::open(&dir).recently_sent("clickhouse_unreachable", 1_001, 3_600));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
