//! What `alerts` checks about the queue: copies waiting longer than
//! `camp_operations_queue_copy_age_limit_hours`, a primary worker without a heartbeat, a shard
//! that cannot be read. One condition per shard and problem.

use chrono::NaiveDateTime;
use zakaz_core::checks::Condition;

use crate::db::Deployment;
use crate::props;
use crate::status::{self, ShardStatus};

/// A primary's heartbeat older than this (or none) is a dead worker: a running worker beats
/// every 10 s, and its timer restarts it within 3 minutes of its lifetime's end.
pub const HEARTBEAT_LIMIT_SECS: f64 = 600.0;

/// The age limit property, in minutes (default 4 hours).
pub async fn age_limit_minutes(dep: &Deployment) -> f64 {
    let value = props::get(&dep.ppcdict, props::AGE_LIMIT)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    props::positive_number(&value).ok().flatten().unwrap_or(4.0) * 60.0
}

/// A condition of one shard: (title, message) in English and in Russian.
fn condition(
    kind: &'static str,
    severity: &'static str,
    shard: u32,
    (title, message): (String, String),
    (title_ru, message_ru): (String, String),
) -> Condition {
    Condition {
        fingerprint: format!("{kind}:camp_queue:shard_{shard}"),
        job: "camp_queue".to_owned(),
        alert_type: kind,
        severity,
        title,
        message,
        title_ru,
        message_ru,
        details: serde_json::json!({ "shard": shard }),
    }
}

/// The conditions of every shard; `workers_expected` is whether the worker timers are on
/// (no heartbeat is expected from workers that are switched off).
pub fn conditions(
    status: &[ShardStatus],
    age_limit_minutes: f64,
    workers_expected: bool,
) -> Vec<Condition> {
    let mut out = Vec::new();
    for s in status {
        if let Some(e) = &s.error {
            out.push(condition(
                "queue_unreadable",
                "error",
                s.shard,
                (
                    format!("Campaign queue shard {} cannot be read", s.shard),
                    e.clone(),
                ),
                (
                    format!("Очередь кампаний: шард {} не читается", s.shard),
                    e.clone(),
                ),
            ));
            continue;
        }
        if let Some(age) = s.queue("copy").and_then(|q| q.oldest_due_age_minutes)
            && age > age_limit_minutes
        {
            let q = s.queue("copy").expect("just read");
            out.push(condition(
                "queue_age",
                "warning",
                s.shard,
                (
                    format!("Campaign copies on shard {} wait {age:.0} min", s.shard),
                    format!(
                        "the oldest due copy on shard {} was queued {age:.0} minutes ago (limit {age_limit_minutes:.0}); {} queued, {} waiting clients",
                        s.shard, q.size, q.waiting_clients
                    ),
                ),
                (
                    format!("Копии кампаний на шарде {} ждут {age:.0} мин", s.shard),
                    format!(
                        "самая старая копия на шарде {} ждёт {age:.0} мин (предел {age_limit_minutes:.0}); в очереди {}, ждущих клиентов {}",
                        s.shard, q.size, q.waiting_clients
                    ),
                ),
            ));
        }
        if !workers_expected {
            continue;
        }
        for primary in ["copy:1", "rest"] {
            let beat = s.worker(primary);
            let stale = beat.is_none_or(|w| w.heartbeat_age_seconds > HEARTBEAT_LIMIT_SECS);
            if stale {
                let (seen, seen_ru) =
                    beat.map_or(("never".to_owned(), "ни разу".to_owned()), |w| {
                        let at = w.heartbeat_at.format("%Y-%m-%d %H:%M:%S");
                        (format!("last at {at} UTC"), format!("последний в {at} UTC"))
                    });
                out.push(Condition {
                    fingerprint: format!("queue_heartbeat:camp_queue:shard_{}:{primary}", s.shard),
                    ..condition(
                        "queue_heartbeat",
                        "error",
                        s.shard,
                        (
                            format!("Campaign queue worker {primary} of shard {} is not working", s.shard),
                            format!(
                                "no heartbeat from shard_{},par-id_{primary} for over {} minutes ({seen}); see `manage-timers status camp_queue`",
                                s.shard,
                                HEARTBEAT_LIMIT_SECS / 60.0
                            ),
                        ),
                        (
                            format!("Обработчик очереди {primary} шарда {} не работает", s.shard),
                            format!(
                                "нет пульса от shard_{},par-id_{primary} более {} мин ({seen_ru}); см. `manage-timers status camp_queue`",
                                s.shard,
                                HEARTBEAT_LIMIT_SECS / 60.0
                            ),
                        ),
                    )
                });
            }
        }
    }
    out
}

/// Read the queue and return its conditions.
pub async fn check(dep: &Deployment, now: NaiveDateTime, workers_expected: bool) -> Vec<Condition> {
    let status = status::collect(dep, now).await;
    conditions(&status, age_limit_minutes(dep).await, workers_expected)
}
