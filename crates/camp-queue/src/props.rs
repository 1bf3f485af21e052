//! `ppcdict.ppc_properties` that steer the queue, with the validation `props set` applies
//! before writing and workers apply again on every read (the table can be edited by hand).

use std::collections::BTreeMap;
use std::fmt;

use anyhow::Context as _;
use sqlx::MySqlPool;

pub const ADDITIONAL_WORKERS: &str = "camp_copy_queue_additional_workers";
pub const SLEEP_COEF: &str = "camp_copy_queue_sleep_coef";
pub const ELA_DECAY: &str = "camp_copy_ela_decay_seconds";
pub const AGE_LIMIT: &str = "camp_operations_queue_copy_age_limit_hours";

/// Every property the queue reads, with what it means.
pub const KNOWN: &[(&str, &str)] = &[
    (
        ADDITIONAL_WORKERS,
        r#"extra copy workers: {"S:N":"on"} or {"S:N":"R:M"} (worker N of shard S serves shard R as M)"#,
    ),
    (
        SLEEP_COEF,
        r#"pause after a copy = coef × its duration: {"default":"1","shard_1":"0.5"}; empty: 0.01"#,
    ),
    (
        ELA_DECAY,
        "τ of a client's accumulated copy time, seconds (default 3600)",
    ),
    (
        AGE_LIMIT,
        "alert when the oldest due copy is older than this, hours (default 4)",
    ),
];

/// The value of a property; `None` when the row is missing.
pub async fn get(ppcdict: &MySqlPool, name: &str) -> anyhow::Result<Option<String>> {
    let row: Option<(String,)> = sqlx::query_as("SELECT value FROM ppc_properties WHERE name = ?")
        .bind(name)
        .fetch_optional(ppcdict)
        .await
        .with_context(|| format!("reading property `{name}` from ppcdict.ppc_properties"))?;
    Ok(row.map(|r| r.0))
}

/// Every property the queue reads, in one query (what a worker re-reads every second); a
/// missing row reads as empty.
pub async fn get_all(ppcdict: &MySqlPool) -> anyhow::Result<Values> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT name, value FROM ppc_properties WHERE name IN (?, ?, ?, ?)")
            .bind(KNOWN[0].0)
            .bind(KNOWN[1].0)
            .bind(KNOWN[2].0)
            .bind(KNOWN[3].0)
            .fetch_all(ppcdict)
            .await
            .context("reading the queue's properties from ppcdict.ppc_properties")?;
    Ok(Values(rows.into_iter().collect()))
}

/// The queue's properties as read at one moment.
#[derive(Debug, Clone, Default)]
pub struct Values(std::collections::HashMap<String, String>);

impl Values {
    pub fn get(&self, name: &str) -> &str {
        self.0.get(name).map_or("", String::as_str)
    }
}

pub async fn set(ppcdict: &MySqlPool, name: &str, value: &str) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO ppc_properties (name, value) VALUES (?, ?) \
         ON DUPLICATE KEY UPDATE value = VALUES(value)",
    )
    .bind(name)
    .bind(value)
    .execute(ppcdict)
    .await
    .with_context(|| format!("writing property `{name}`"))?;
    Ok(())
}

/// Check a value before `props set` writes it: the error says what is wrong.
pub fn validate(name: &str, value: &str, shards: u32, launched: u32) -> Result<(), String> {
    match name {
        ADDITIONAL_WORKERS => AdditionalWorkers::parse(value, shards, launched)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        SLEEP_COEF => SleepCoef::parse(value).map(|_| ()),
        ELA_DECAY | AGE_LIMIT => positive_number(value).map(|_| ()),
        _ => known(name),
    }
}

/// `Ok` for a property the queue reads; else an error listing those it does.
pub fn known(name: &str) -> Result<(), String> {
    if KNOWN.iter().any(|k| k.0 == name) {
        return Ok(());
    }
    Err(format!(
        "unknown property `{name}`; known: {}",
        KNOWN.iter().map(|k| k.0).collect::<Vec<_>>().join(", ")
    ))
}

/// A positive number; empty means the default.
pub fn positive_number(value: &str) -> Result<Option<f64>, String> {
    if value.trim().is_empty() {
        return Ok(None);
    }
    match value.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(Some(v)),
        _ => Err(format!("`{value}` is not a positive number")),
    }
}

/// A worker identity: shard and worker number (`S:N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot {
    pub shard: u32,
    pub worker: u32,
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.shard, self.worker)
    }
}

impl Slot {
    fn parse(text: &str) -> Option<Slot> {
        let (s, n) = text.trim().split_once(':')?;
        let shard = s.parse().ok().filter(|&v| v > 0)?;
        let worker = n.parse().ok().filter(|&v| v > 0)?;
        // `02:1` and `+2:1` parse as numbers; the canonical form is required.
        (format!("{shard}:{worker}") == text.trim()).then_some(Slot { shard, worker })
    }
}

/// What an additional worker does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Serve its own shard under its own number.
    On,
    /// Serve another (or the same) shard's queue as another number.
    Remap(Slot),
}

/// A valid `camp_copy_queue_additional_workers`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdditionalWorkers(pub BTreeMap<Slot, Activation>);

/// Why a value is invalid; logged with the word `additional_workers_error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidWorkers(pub String);

impl fmt::Display for InvalidWorkers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AdditionalWorkers {
    /// Parse and validate against the deployment: `shards` shards, workers `copy:1..=launched`
    /// launched per shard.
    pub fn parse(value: &str, shards: u32, launched: u32) -> Result<Self, InvalidWorkers> {
        let bad = |m: String| Err(InvalidWorkers(m));
        if value.trim().is_empty() {
            return Ok(Self::default());
        }
        let json: serde_json::Value = match serde_json::from_str(value) {
            Ok(j) => j,
            Err(e) => return bad(format!("not JSON: {e}")),
        };
        let Some(object) = json.as_object() else {
            return bad("must be a JSON object of \"S:N\": \"on\" | \"R:M\"".to_owned());
        };
        let mut out = BTreeMap::new();
        let mut targets: BTreeMap<Slot, Slot> = BTreeMap::new();
        for (key, v) in object {
            let Some(slot) = Slot::parse(key) else {
                return bad(format!("key `{key}` is not `shard:worker`"));
            };
            if slot.worker == 1 {
                return bad(format!(
                    "`{key}`: the primary worker 1 cannot be configured"
                ));
            }
            if slot.shard > shards {
                return bad(format!("`{key}`: there are only {shards} shards"));
            }
            if slot.worker > launched {
                return bad(format!(
                    "`{key}`: only workers 1..{launched} are launched per shard"
                ));
            }
            let Some(text) = v.as_str() else {
                return bad(format!("`{key}`: the value must be a string"));
            };
            let activation = if text == "on" {
                Activation::On
            } else {
                let Some(target) = Slot::parse(text) else {
                    return bad(format!(
                        "`{key}`: value `{text}` is neither `on` nor `shard:worker`"
                    ));
                };
                if target.worker == 1 {
                    return bad(format!(
                        "`{key}`: cannot act as the primary worker `{text}`"
                    ));
                }
                if target.shard > shards {
                    return bad(format!("`{key}`: `{text}` names a shard beyond {shards}"));
                }
                if target.worker <= launched {
                    return bad(format!(
                        "`{key}`: `{text}` is the identity of a launched worker; remap to a number above {launched}"
                    ));
                }
                Activation::Remap(target)
            };
            let serves = match activation {
                Activation::On => slot,
                Activation::Remap(t) => t,
            };
            if let Some(other) = targets.insert(serves, slot) {
                return bad(format!(
                    "`{other}` and `{slot}` would both work as `{serves}`"
                ));
            }
            out.insert(slot, activation);
        }
        Ok(Self(out))
    }

    /// The entry that concerns worker `slot` (what it watches for changes).
    pub fn entry(&self, slot: Slot) -> Option<Activation> {
        self.0.get(&slot).copied()
    }

    /// Which identities serve shard `shard`'s copy queue: (identity there, launched as).
    pub fn serving(&self, shard: u32) -> Vec<(u32, Slot)> {
        let mut out = vec![(1, Slot { shard, worker: 1 })];
        for (slot, act) in &self.0 {
            match act {
                Activation::On if slot.shard == shard => out.push((slot.worker, *slot)),
                Activation::Remap(t) if t.shard == shard => out.push((t.worker, *slot)),
                _ => {}
            }
        }
        out.sort();
        out
    }
}

/// `camp_copy_queue_sleep_coef`: per-shard pause coefficients.
#[derive(Debug, Clone, PartialEq)]
pub struct SleepCoef {
    default: f64,
    shards: BTreeMap<u32, f64>,
}

/// The coefficient when the property is empty.
pub const EMPTY_SLEEP_COEF: f64 = 0.01;

impl SleepCoef {
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut out = SleepCoef {
            default: EMPTY_SLEEP_COEF,
            shards: BTreeMap::new(),
        };
        if value.trim().is_empty() {
            return Ok(out);
        }
        let json: serde_json::Value =
            serde_json::from_str(value).map_err(|e| format!("not JSON: {e}"))?;
        let object = json
            .as_object()
            .ok_or("must be a JSON object like {\"default\":\"1\",\"shard_1\":\"0.5\"}")?;
        for (key, v) in object {
            let coef = match v {
                serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
                serde_json::Value::Number(n) => n.as_f64(),
                _ => None,
            }
            .filter(|c| c.is_finite() && *c >= 0.0)
            .ok_or_else(|| format!("`{key}`: `{v}` is not a number ≥ 0"))?;
            if key == "default" {
                out.default = coef;
            } else if let Some(n) = key.strip_prefix("shard_").and_then(|n| n.parse().ok()) {
                out.shards.insert(n, coef);
            } else {
                return Err(format!("key `{key}` is neither `default` nor `shard_<N>`"));
            }
        }
        Ok(out)
    }

    /// The coefficient of the shard whose queue is served.
    pub fn for_shard(&self, shard: u32) -> f64 {
        self.shards.get(&shard).copied().unwrap_or(self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(shard: u32, worker: u32) -> Slot {
        Slot { shard, worker }
    }

    #[test]
    fn the_seeds_first_example() {
        let w = AdditionalWorkers::parse(
            r#"{"2:2":"on", "5:3":"on", "6:2":"on", "6:3":"on", "5:2":"6:4"}"#,
            6,
            3,
        )
        .unwrap();
        let ids = |s| w.serving(s).into_iter().map(|x| x.0).collect::<Vec<_>>();
        assert_eq!(ids(2), vec![1, 2]);
        assert_eq!(ids(5), vec![1, 3]);
        assert_eq!(ids(6), vec![1, 2, 3, 4]);
        assert_eq!(ids(1), vec![1]);
        assert_eq!(w.entry(slot(5, 2)), Some(Activation::Remap(slot(6, 4))));
    }

    #[test]
    fn invalid_values() {
        for (value, why) in [
            (r#"{"2:1":"on"}"#, "primary"),
            (r#"{"2:1":"3:2"}"#, "primary"),
            (r#"{"3:2":"2:1"}"#, "primary"),
            (r#"{"2:4":"on"}"#, "only workers 1..3"),
            (r#"{"2:2":"6:4","3:2":"6:4"}"#, "would both work as `6:4`"),
            (r#"{"2-2":"on"}"#, "not `shard:worker`"),
            (r#"{"2:2":"yes"}"#, "neither `on`"),
            (r#"{"2:2":1}"#, "must be a string"),
            (r#"["2:2"]"#, "JSON object"),
            (r#"{"2:2":"on""#, "not JSON"),
            (r#"{"9:2":"on"}"#, "only 6 shards"),
            (r#"{"2:2":"6:3"}"#, "identity of a launched worker"),
        ] {
            let err = AdditionalWorkers::parse(value, 6, 3).unwrap_err().0;
            assert!(err.contains(why), "{value}: {err}");
        }
    }

    #[test]
    fn sleep_coefficients() {
        let c = SleepCoef::parse(r#"{"default":"1", "shard_1":"0.5", "shard_6":"3"}"#).unwrap();
        assert_eq!(c.for_shard(1), 0.5);
        assert_eq!(c.for_shard(6), 3.0);
        assert_eq!(c.for_shard(2), 1.0);
        assert_eq!(SleepCoef::parse("").unwrap().for_shard(4), EMPTY_SLEEP_COEF);
        assert!(SleepCoef::parse(r#"{"shard_x":"1"}"#).is_err());
        assert!(SleepCoef::parse(r#"{"default":"-1"}"#).is_err());
        // A number as a JSON number, not only as text.
        assert_eq!(
            SleepCoef::parse(r#"{"default":2}"#).unwrap().for_shard(1),
            2.0
        );
    }

    #[test]
    fn props_set_checks_each_property_by_its_own_rule() {
        assert!(validate(SLEEP_COEF, r#"{"default":"-1"}"#, 6, 3).is_err());
        assert!(validate(SLEEP_COEF, r#"{"default":"2"}"#, 6, 3).is_ok());
        for name in [ELA_DECAY, AGE_LIMIT] {
            let err = validate(name, "0", 6, 3).unwrap_err();
            assert!(err.contains("not a positive number"), "{name}: {err}");
            assert!(validate(name, "48", 6, 3).is_ok(), "{name}");
        }
        let err = validate(ADDITIONAL_WORKERS, r#"{"2:1":"on"}"#, 6, 3).unwrap_err();
        assert!(err.contains("primary"), "{err}");
        assert!(known(AGE_LIMIT).is_ok());
        let err = validate("camp_copy_queue_sleep_coeff", "1", 6, 3).unwrap_err();
        assert!(
            err.contains("unknown property `camp_copy_queue_sleep_coeff`")
                && err.contains(SLEEP_COEF),
            "{err}"
        );
    }

    #[test]
    fn positive_numbers_and_the_default() {
        assert_eq!(positive_number(""), Ok(None));
        assert_eq!(positive_number(" 48 "), Ok(Some(48.0)));
        assert_eq!(positive_number("0.5"), Ok(Some(0.5)));
        for bad in ["0", "-1", "inf", "NaN", "x"] {
            let err = positive_number(bad).unwrap_err();
            assert!(err.contains("not a positive number"), "{bad}: {err}");
        }
    }

    #[test]
    fn worker_identities_count_from_one() {
        assert_eq!(
            Slot::parse("2:3"),
            Some(Slot {
                shard: 2,
                worker: 3
            })
        );
        assert_eq!(Slot::parse("2:0"), None);
        assert_eq!(Slot::parse("0:2"), None);
    }
}
