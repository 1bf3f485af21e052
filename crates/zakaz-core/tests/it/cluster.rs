//! The schema and the ClickHouse access on the real two-replica cluster of
//! `scripts/clickhouse-cluster.sh` (ZooKeeper and two ClickHouse 18.16 servers, replicas of
//! one shard). These tests run one at a time (nextest group `clickhouse-cluster`): some stop
//! a replica.

use zakaz_core::ch::Ch;
use zakaz_core::journal::{Metrics, Outcome, journaled};
use zakaz_core::testing::{ClusterDb, cluster_script, cluster_urls, wait_until};
use zakaz_core::{jobs, schema};

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[tokio::test]
async fn migrations_create_replicated_tables_and_views_on_both_replicas_idempotently() {
    let db = ClusterDb::empty();
    let ch = db.connect().await;
    assert_eq!(ch.cluster(), Some("zakaz"));
    assert_eq!(ch.url(), cluster_urls()[0], "replica 1 answers first");

    let first = schema::migrate(&ch).await.unwrap();
    assert_eq!(first.applied.len(), schema::MIGRATIONS.len());

    // Both replicas hold the same tables and views; every table is Replicated, its path from
    // the macros (shard 01) and its replica name from each server's own macro.
    let expected: Vec<String> = schema::final_objects(schema::MIGRATIONS, "")
        .into_keys()
        .collect();
    for n in [1, 2] {
        let objects = db.query_on(
            n,
            &format!(
                "SELECT name, engine FROM system.tables WHERE database = '{}' ORDER BY name",
                db.name
            ),
        );
        let names: Vec<&str> = objects
            .lines()
            .map(|l| l.split('\t').next().unwrap())
            .collect();
        assert_eq!(names, expected, "replica {n}");
        for line in objects.lines() {
            let (name, engine) = line.split_once('\t').unwrap();
            if name.starts_with("v_") || name == "meta_job_runs" {
                assert_eq!(engine, "View", "{name} on replica {n}");
            } else {
                assert!(
                    engine.starts_with("Replicated"),
                    "{name} on replica {n}: {engine}"
                );
            }
        }
        let paths = db.query_on(
            n,
            &format!(
                "SELECT DISTINCT replica_name, substring(zookeeper_path, 1, length(zookeeper_path) - length(table)) FROM system.replicas WHERE database = '{}'",
                db.name
            ),
        );
        assert_eq!(
            lines(&paths),
            [format!("replica{n}\t/clickhouse/tables/01/{}/", db.name).as_str()]
        );
    }

    // Idempotent: nothing to apply, nothing to repair.
    let second = schema::migrate(&ch).await.unwrap();
    assert!(second.applied.is_empty(), "{second:?}");
    assert!(schema::cluster_gaps(&ch, "zakaz").await.unwrap().is_empty());

    // A run journaled through replica 1 is on replica 2 too.
    journaled(&ch, jobs::get("qtickets"), None, |_| async {
        Ok(Outcome {
            rows: 3,
            message: "three".into(),
            metrics: Metrics::new(),
        })
    })
    .await
    .unwrap();
    db.sync_replica(2);
    assert_eq!(
        db.query_on(2, "SELECT status, rows_processed FROM {db}.meta_job_runs"),
        "ok\t3\n"
    );

    a_run_reads_its_own_writes_from_its_one_replica(&db, &ch).await;
    an_insert_sent_twice_is_stored_once(&db, &ch).await;
}

/// The consistency choice for a run's reads after its own writes: one replica per run. A run
/// connects once and sends every request to that replica, which holds what the run wrote as
/// soon as the insert returns. Another replica may not have it yet: here replica 2's fetches
/// are stopped, and only the run's own replica sees the row until they resume.
async fn a_run_reads_its_own_writes_from_its_one_replica(db: &ClusterDb, ch: &Ch) {
    db.query_on(2, "SYSTEM STOP FETCHES {db}.stg_mail_failures");
    ch.execute(
        "INSERT INTO stg_mail_failures (message_id, attempts, last_error, last_at, _version) SELECT 'own', 1, '', now(), 1",
    )
    .await
    .unwrap();
    let seen: u64 = ch
        .read("own write", |c| async move {
            c.query("SELECT count() FROM stg_mail_failures FINAL")
                .fetch_one::<u64>()
                .await
        })
        .await
        .unwrap();
    assert_eq!(seen, 1, "the run's replica has its write at once");
    assert_eq!(
        db.query_on(2, "SELECT count() FROM {db}.stg_mail_failures"),
        "0\n",
        "the other replica has not fetched it"
    );
    db.query_on(2, "SYSTEM START FETCHES {db}.stg_mail_failures");
    db.sync_replica(2);
    assert_eq!(
        db.query_on(2, "SELECT count() FROM {db}.stg_mail_failures"),
        "1\n"
    );
}

#[derive(Debug, clickhouse::Row, serde::Serialize)]
struct Failure {
    message_id: String,
    attempts: u32,
    last_error: String,
    last_at: u32,
    _version: u64,
}

/// An insert sent again after its answer was lost (what `insert_all` does on a cluster after
/// a network error) is dropped by the replicated block de-duplication: nothing is doubled.
async fn an_insert_sent_twice_is_stored_once(db: &ClusterDb, ch: &Ch) {
    let rows: Vec<Failure> = (0..50)
        .map(|i| Failure {
            message_id: format!("m{i}"),
            attempts: 1,
            last_error: String::new(),
            last_at: 1_700_000_000,
            _version: 7,
        })
        .collect();
    ch.insert_all("stg_mail_failures", &rows).await.unwrap();
    ch.insert_all("stg_mail_failures", &rows).await.unwrap();
    db.sync_replica(2);
    for n in [1, 2] {
        // Without FINAL: the second block was never stored (the 1 is the row above).
        assert_eq!(
            db.query_on(n, "SELECT count() FROM {db}.stg_mail_failures"),
            "51\n",
            "replica {n}"
        );
    }
}

#[tokio::test]
async fn a_half_migrated_cluster_is_completed_or_named() {
    let (db, ch) = ClusterDb::migrated().await;
    // Replica 2 lost a view and a table (say, dropped by hand there, or it missed them).
    db.query_on(2, "DROP TABLE {db}.v_sales_daily");
    db.query_on(2, "DROP TABLE {db}.stg_mail_failures");
    let gaps = schema::cluster_gaps(&ch, "zakaz").await.unwrap();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert_eq!(gaps[0].0.to_string(), "127.0.0.1:9012");
    assert_eq!(gaps[0].1, ["stg_mail_failures", "v_sales_daily"]);

    // `migrate` (what `manage-timers migrate` runs) creates them there again; the replicated
    // table rejoins the replication and fetches what replica 1 holds.
    http_insert(
        &cluster_urls()[0],
        &format!(
            "INSERT INTO `{}`.stg_mail_failures (message_id, attempts, last_error, last_at, _version) VALUES ('m1', 2, 'x', now(), 1)",
            db.name
        ),
    );
    let report = schema::migrate(&ch).await.unwrap();
    assert!(report.applied.is_empty());
    assert!(schema::cluster_gaps(&ch, "zakaz").await.unwrap().is_empty());
    db.sync_replica(2);
    assert_eq!(
        db.query_on(
            2,
            "SELECT message_id, attempts FROM {db}.stg_mail_failures FINAL"
        ),
        "m1\t2\n"
    );
    assert_eq!(
        db.query_on(2, "SELECT count() FROM {db}.v_sales_daily"),
        "0\n"
    );

    // What cannot be created again is named, replica by replica: a table whose replica
    // metadata is still in ZooKeeper with another structure.
    db.query_on(2, "DETACH TABLE {db}.dim_events");
    let err = schema::migrate(&ch).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("the cluster `zakaz` is half-migrated") && text.contains("dim_events"),
        "{text}"
    );
    db.query_on(2, "ATTACH TABLE {db}.dim_events");
    schema::migrate(&ch).await.unwrap();
}

/// A database migrated on one replica without `CLICKHOUSE_CLUSTER` holds plain tables; with
/// the cluster set, jobs and `migrate` refuse it by name instead of retrying inserts into
/// tables that cannot drop a duplicate.
#[tokio::test]
async fn a_database_migrated_without_the_cluster_is_refused_with_it() {
    let db = ClusterDb::empty();
    let mut single = db.args.clone();
    single.clickhouse_url = cluster_urls()[0].clone();
    single.clickhouse_cluster = String::new();
    let alone = zakaz_core::ch::Ch::connect(&single).await.unwrap();
    schema::migrate(&alone).await.unwrap();
    schema::ensure(&alone).await.unwrap();

    let ch = db.connect().await;
    for (what, err) in [
        ("ensure", schema::ensure(&ch).await.unwrap_err()),
        ("migrate", schema::migrate(&ch).await.unwrap_err()),
    ] {
        let text = format!("{err:#}");
        assert!(
            err.downcast_ref::<zakaz_core::error::ConfigError>()
                .is_some(),
            "{what}: {text}"
        );
        assert!(
            text.contains("CLICKHOUSE_CLUSTER is `zakaz`")
                && text.contains("alerts (MergeTree)")
                && text.contains("more"),
            "{what}: {text}"
        );
    }
}

fn http_insert(url: &str, sql: &str) {
    zakaz_core::testing::http_post(url, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[tokio::test]
async fn schema_changes_wait_for_every_replica() {
    let db = ClusterDb::empty();
    let ch = db.connect().await;
    cluster_script(&["stop", "replica2"]);
    let result = schema::migrate(&ch).await;
    cluster_script(&["start", "replica2"]);
    let err = result.unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("on cluster `zakaz`: replica(s) 127.0.0.1:9012 (")
            && text.contains("every replica must be up")
            && text.contains("manage-timers migrate"),
        "{text}"
    );
    assert!(
        err.downcast_ref::<zakaz_core::error::UnavailableError>()
            .is_some(),
        "exit 69, retried by systemd: {text}"
    );
    // Nothing was created anywhere: no half-migrated cluster.
    for n in [1, 2] {
        assert_eq!(
            db.query_on(
                n,
                &format!(
                    "SELECT count() FROM system.databases WHERE name = '{}'",
                    db.name
                )
            ),
            "0\n"
        );
    }
    // Back up: the same call migrates the whole cluster.
    wait_until("replica 2 answers again", || {
        zakaz_core::testing::http_post(&cluster_urls()[1], "SELECT 1").is_ok()
    });
    schema::migrate(&ch).await.unwrap();
    assert!(schema::cluster_gaps(&ch, "zakaz").await.unwrap().is_empty());
}

#[tokio::test]
async fn connecting_tries_the_replicas_in_order() {
    let db = ClusterDb::empty();
    // A first URL where nothing listens: the run goes to the next one and stays there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut args = db.args.clone();
    args.clickhouse_url = format!("{dead},{}", cluster_urls()[1]);
    let ch = Ch::connect(&args).await.unwrap();
    assert_eq!(ch.url(), cluster_urls()[1]);
    assert_eq!(ch.urls().len(), 2);

    // None answers: unavailable (exit 69), naming the setting.
    args.clickhouse_url = dead.clone();
    args.clickhouse_url = format!("{dead},{dead}/");
    let err = Ch::connect(&args).await.err().unwrap();
    assert!(
        err.downcast_ref::<zakaz_core::error::UnavailableError>()
            .is_some(),
        "{err:#}"
    );
    assert!(format!("{err:#}").contains("CLICKHOUSE_URL"), "{err:#}");

    // A cluster the servers do not know is a setting to fix (exit 78).
    let mut args = db.args.clone();
    args.clickhouse_cluster = "nosuch".into();
    let err = Ch::connect(&args).await.err().unwrap();
    assert!(
        err.downcast_ref::<zakaz_core::error::ConfigError>()
            .is_some()
            && format!("{err:#}").contains("CLICKHOUSE_CLUSTER"),
        "{err:#}"
    );
}

// --- the lease in ZooKeeper (several hosts, the same timers) ---------------------------------

fn utc(text: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

fn lease_args() -> zakaz_core::lease::LeaseArgs {
    zakaz_core::lease::LeaseArgs {
        zookeeper_hosts: zakaz_core::testing::zookeeper_hosts(),
        zookeeper_lease_path: "/zakaz-test/leases".into(),
    }
}

fn busy(claim: &lease::Claim) -> Option<(String, Option<chrono::DateTime<chrono::Utc>>)> {
    match claim {
        lease::Claim::Busy { holder, tick } => Some((holder.clone(), *tick)),
        _ => None,
    }
}

use zakaz_core::lease;

/// Two hosts whose qtickets timers (`*:0/15`, up to a minute of randomized delay) fire for
/// the same tick: the first to start holds the job, the other is turned away while it runs
/// and after it finished; the holder itself may run the tick again (a restart); the next tick
/// goes to whoever starts first; a holder whose session ends leaves the job free.
#[tokio::test]
async fn the_lease_gives_each_tick_of_a_job_to_one_host() {
    let args = lease_args();
    let db = format!("db_{}", zakaz_core::testing::unique_suffix());
    let q = jobs::get("qtickets");
    let take = |host: &'static str, at: &'static str| {
        let (args, db) = (args.clone(), db.clone());
        async move { lease::claim(&args, &db, q, host, utc(at)).await.unwrap() }
    };

    let a = take("host-a", "2026-06-01T10:15:03Z").await;
    assert!(matches!(a, lease::Claim::Held(_)));
    // While host-a runs: held by it.
    let b = take("host-b", "2026-06-01T10:15:20Z").await;
    assert_eq!(busy(&b), Some(("host-a".to_owned(), None)));
    let lease::Claim::Held(a) = a else {
        unreachable!()
    };
    a.release().await;
    // host-a finished; host-b's timer fires later in the same tick: still not its to run.
    let b = take("host-b", "2026-06-01T10:15:58Z").await;
    assert_eq!(
        busy(&b),
        Some(("host-a".to_owned(), Some(utc("2026-06-01T10:15:00Z"))))
    );
    // host-a's restart after a failure runs the same tick again.
    let again = take("host-a", "2026-06-01T10:15:40Z").await;
    let lease::Claim::Held(again) = again else {
        panic!("the tick's own host may run it again")
    };
    again.release().await;
    // The next tick: host-b's timer fired first.
    let b = take("host-b", "2026-06-01T10:30:10Z").await;
    let lease::Claim::Held(b) = b else {
        panic!("the next tick is free")
    };
    let a = take("host-a", "2026-06-01T10:30:50Z").await;
    assert_eq!(busy(&a), Some(("host-b".to_owned(), None)));
    // host-b's session ends without a goodbye for the node (its process is gone): the
    // ephemeral lease goes with the session, and the next tick is host-a's.
    drop(b);
    wait_until_async(|| async {
        matches!(
            take("host-a", "2026-06-01T10:45:02Z").await,
            lease::Claim::Held(_)
        )
    })
    .await;

    // Without ZooKeeper configured there is no lease.
    let off = lease::claim(
        &lease::LeaseArgs::default(),
        &db,
        q,
        "h",
        utc("2026-06-01T10:15:03Z"),
    )
    .await
    .unwrap();
    assert!(matches!(off, lease::Claim::Off));
}

/// Poll an async state (bounded: 30 s) — never for time to pass.
async fn wait_until_async<F, Fut>(mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..300 {
        if done().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("timed out");
}

/// A run whose job another host holds is journaled as `skipped` ("held by <host>"), does no
/// work, returns Ok (exit 0), and the health rules see neither a failure nor a run.
#[tokio::test]
async fn a_run_that_does_not_get_the_lease_is_recorded_as_skipped() {
    let db = zakaz_core::testing::TestDb::empty();
    let mut args = db.args.clone();
    args.lease = lease_args();
    let ch = Ch::connect(&args).await.unwrap();
    schema::migrate(&ch).await.unwrap();
    let q = jobs::get("qtickets");
    // The other host holds the job's live lease: its tick does not matter (a pinned one).
    let other_at = chrono::DateTime::from_timestamp(1_795_597_200, 0).unwrap();
    let other = lease::claim(&args.lease, ch.db(), q, "other-host", other_at)
        .await
        .unwrap();
    assert!(matches!(other, lease::Claim::Held(_)));

    let outcome = journaled(&ch, q, None, |_| async {
        panic!("the body must not run without the lease")
    })
    .await
    .unwrap();
    assert_eq!(outcome.message, "held by other-host");
    let runs = db.query("SELECT job, status, message, rows_processed FROM {db}.meta_job_runs");
    assert_eq!(runs, "qtickets\tskipped\theld by other-host\t0\n");
    // As of the skipped run's own start, the instant the journal gave it.
    let skipped_at = db.query("SELECT toUnixTimestamp(started_at) FROM {db}.meta_job_runs");
    let as_of = chrono::DateTime::from_timestamp(skipped_at.trim().parse().unwrap(), 0).unwrap();
    let states = zakaz_core::checks::job_states(&ch, 0, &as_of)
        .await
        .unwrap();
    assert!(states.is_empty(), "a skipped run is no run: {states:?}");

    // Released: this host runs (ZooKeeper configured, the lease free, a tick nobody ran).
    if let lease::Claim::Held(l) = other {
        l.release().await;
    }
    let outcome = journaled(&ch, jobs::get("vk_ads"), None, |_| async {
        Ok(Outcome {
            rows: 1,
            message: "ran".into(),
            metrics: Metrics::new(),
        })
    })
    .await
    .unwrap();
    assert_eq!(outcome.message, "ran");
}
