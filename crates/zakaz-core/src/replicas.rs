//! Replica health on a ClickHouse cluster (`CLICKHOUSE_CLUSTER`), for `alerts` and
//! `healthcheck`: every replica of the cluster is read through the connected one
//! (`remote()` over `system.clusters`' addresses), so a replica that `CLICKHOUSE_URL` does not
//! list is watched too. Per replica: does it answer, which of the database's replicated tables
//! are read-only (it lost ZooKeeper or its metadata there), the largest absolute delay and the
//! replication queue. Nothing is read on a single server.

use clap::Args;
use serde_json::json;

use crate::ch::{Ch, short};
use crate::checks::Condition;

/// The thresholds of replica health (read by alerts and healthcheck; part of the ClickHouse
/// settings, so both get them with their connection).
#[derive(Debug, Clone, Args)]
pub struct ReplicaArgs {
    /// On a cluster: a replica whose tables lag more than this many seconds behind the others
    /// (`system.replicas.absolute_delay`) is reported as lagging.
    #[arg(long, env = "CLICKHOUSE_REPLICA_MAX_DELAY_SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub replica_max_delay_secs: u64,

    /// On a cluster: a replica with more entries than this in its replication queue
    /// (`system.replicas.queue_size`, summed over the database's tables) is reported as lagging.
    #[arg(long, env = "CLICKHOUSE_REPLICA_MAX_QUEUE", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub replica_max_queue: u64,
}

impl Default for ReplicaArgs {
    fn default() -> Self {
        ReplicaArgs {
            replica_max_delay_secs: 300,
            replica_max_queue: 100,
        }
    }
}

/// One replica as seen now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReplicaHealth {
    /// `host:port` (native protocol), as `system.clusters` names it.
    pub replica: String,
    pub reachable: bool,
    /// Replicated tables of the database on it.
    pub tables: u64,
    /// Its tables that are read-only.
    pub readonly_tables: Vec<String>,
    /// The largest `absolute_delay` of its tables, in seconds.
    pub max_delay_secs: u64,
    /// Entries in its replication queues.
    pub queue_size: u64,
    /// Why it could not be read (for the operator's terminal and logs, never over HTTP).
    #[serde(skip)]
    pub error: Option<String>,
}

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct TableRow {
    table: String,
    is_readonly: u8,
    absolute_delay: u64,
    queue_size: u32,
}

/// Every replica of the cluster (empty on a single server). Fails only when the connected
/// replica cannot say which replicas there are.
pub async fn replica_health(ch: &Ch) -> anyhow::Result<Vec<ReplicaHealth>> {
    let Some(cluster) = ch.cluster() else {
        return Ok(Vec::new());
    };
    let replicas = crate::schema::cluster_replicas(ch, cluster).await?;
    let mut out = Vec::new();
    for replica in replicas {
        let sql = format!(
            "SELECT table, toUInt8(is_readonly), toUInt64(absolute_delay), toUInt32(queue_size) FROM {} WHERE database = ? ORDER BY table",
            crate::schema::remote_system(ch, &replica, "replicas")
        );
        let rows = ch
            .server()
            .query(&sql)
            .bind(ch.db())
            .fetch_all::<TableRow>()
            .await;
        out.push(match rows {
            Ok(rows) => ReplicaHealth {
                replica: replica.to_string(),
                reachable: true,
                tables: rows.len() as u64,
                readonly_tables: rows
                    .iter()
                    .filter(|r| r.is_readonly != 0)
                    .map(|r| r.table.clone())
                    .collect(),
                max_delay_secs: rows.iter().map(|r| r.absolute_delay).max().unwrap_or(0),
                queue_size: rows.iter().map(|r| u64::from(r.queue_size)).sum(),
                error: None,
            },
            Err(e) => ReplicaHealth {
                replica: replica.to_string(),
                reachable: false,
                tables: 0,
                readonly_tables: Vec::new(),
                max_delay_secs: 0,
                queue_size: 0,
                error: Some(short(&e)),
            },
        });
    }
    Ok(out)
}

/// [`replica_health`] judged by the connection's thresholds: the conditions that hold now.
pub async fn replica_problems(ch: &Ch) -> anyhow::Result<(Vec<ReplicaHealth>, Vec<Condition>)> {
    let health = replica_health(ch).await?;
    let conditions = replica_conditions(&health, ch.replica_args());
    Ok((health, conditions))
}

/// The problems of the replicas: one that does not answer (warning: the others serve, but
/// there is no spare), read-only tables (critical: writes through it fail, it does not
/// replicate), a delay or queue above the thresholds (warning).
pub fn replica_conditions(replicas: &[ReplicaHealth], args: &ReplicaArgs) -> Vec<Condition> {
    let mut out = Vec::new();
    for r in replicas {
        let name = &r.replica;
        if !r.reachable {
            out.push(Condition {
                fingerprint: format!("replica_down:{name}"),
                job: "clickhouse".to_owned(),
                alert_type: "replica_down",
                severity: "warning",
                title: format!("ClickHouse replica {name} does not answer"),
                message: format!(
                    "replica {name} does not answer; the jobs use the other replicas, but there is no spare until it is back"
                ),
                title_ru: format!("Реплика ClickHouse {name} не отвечает"),
                message_ru: format!(
                    "реплика {name} не отвечает; задания работают через другие реплики, но запаса нет, пока она не вернётся"
                ),
                details: json!({"replica": name}),
            });
            continue;
        }
        if !r.readonly_tables.is_empty() {
            let tables = r.readonly_tables.join(", ");
            out.push(Condition {
                fingerprint: format!("replica_readonly:{name}"),
                job: "clickhouse".to_owned(),
                alert_type: "replica_readonly",
                severity: "critical",
                title: format!("ClickHouse replica {name} is read-only"),
                message: format!(
                    "replica {name}: {} table(s) read-only ({tables}): it lost ZooKeeper or its metadata there; writes through it fail and it does not replicate",
                    r.readonly_tables.len()
                ),
                title_ru: format!("Реплика ClickHouse {name} только для чтения"),
                message_ru: format!(
                    "реплика {name}: таблиц только для чтения: {} ({tables}); она потеряла ZooKeeper или свои метаданные в нём; запись через неё не проходит, репликация стоит",
                    r.readonly_tables.len()
                ),
                details: json!({"replica": name, "readonly_tables": r.readonly_tables}),
            });
        }
        if r.max_delay_secs > args.replica_max_delay_secs || r.queue_size > args.replica_max_queue {
            out.push(Condition {
                fingerprint: format!("replica_lagging:{name}"),
                job: "clickhouse".to_owned(),
                alert_type: "replica_lagging",
                severity: "warning",
                title: format!("ClickHouse replica {name} lags behind"),
                message: format!(
                    "replica {name}: delay {} s (allowed {} s), replication queue {} (allowed {})",
                    r.max_delay_secs,
                    args.replica_max_delay_secs,
                    r.queue_size,
                    args.replica_max_queue
                ),
                title_ru: format!("Реплика ClickHouse {name} отстаёт"),
                message_ru: format!(
                    "реплика {name}: отставание {} с (допустимо {} с), очередь репликации {} (допустимо {})",
                    r.max_delay_secs,
                    args.replica_max_delay_secs,
                    r.queue_size,
                    args.replica_max_queue
                ),
                details: json!({"replica": name, "absolute_delay": r.max_delay_secs, "queue_size": r.queue_size}),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy(name: &str) -> ReplicaHealth {
        ReplicaHealth {
            replica: name.into(),
            reachable: true,
            tables: 12,
            readonly_tables: vec![],
            max_delay_secs: 0,
            queue_size: 0,
            error: None,
        }
    }

    #[test]
    fn healthy_replicas_raise_nothing_and_each_problem_has_its_alert() {
        let args = ReplicaArgs::default();
        assert!(replica_conditions(&[healthy("a:1"), healthy("b:2")], &args).is_empty());

        let down = ReplicaHealth {
            reachable: false,
            ..healthy("a:1")
        };
        let readonly = ReplicaHealth {
            readonly_tables: vec!["alerts".into(), "dim_events".into()],
            ..healthy("b:2")
        };
        let lagging = ReplicaHealth {
            max_delay_secs: 301,
            ..healthy("c:3")
        };
        let queued = ReplicaHealth {
            queue_size: 101,
            ..healthy("d:4")
        };
        let at_limits = ReplicaHealth {
            max_delay_secs: 300,
            queue_size: 100,
            ..healthy("e:5")
        };
        let found: Vec<(String, &str)> =
            replica_conditions(&[down, readonly, lagging, queued, at_limits], &args)
                .into_iter()
                .map(|c| (c.fingerprint, c.severity))
                .collect();
        assert_eq!(
            found,
            [
                ("replica_down:a:1".to_owned(), "warning"),
                ("replica_readonly:b:2".to_owned(), "critical"),
                ("replica_lagging:c:3".to_owned(), "warning"),
                ("replica_lagging:d:4".to_owned(), "warning"),
            ]
        );
        let tight = ReplicaArgs {
            replica_max_delay_secs: 10,
            replica_max_queue: 100,
        };
        let slow = ReplicaHealth {
            max_delay_secs: 11,
            ..healthy("a:1")
        };
        assert_eq!(replica_conditions(&[slow], &tight).len(), 1);
    }
}
