//! Several hosts running the same timers: each run of a job first takes the job's lease in
//! ZooKeeper (`ZOOKEEPER_HOSTS`), so that every tick of a job runs on one host.
//!
//! Two nodes per database and job, under `ZOOKEEPER_LEASE_PATH/<db>/<job>`:
//! - `lease`: an **ephemeral** node, created by the run that holds the job now and bound to
//!   its ZooKeeper session. It is deleted when the run ends, and goes away by itself when the
//!   holder dies (its session expires after [`SESSION_TIMEOUT`]): a killed host never blocks
//!   the others for longer.
//! - `tick`: a persistent node naming the last tick of the job's timer that a host claimed
//!   (and that host). Timers fire on every host at a tick, each after its own randomized delay
//!   (`RandomizedDelaySec=`), so one host may start after the other has already finished: the
//!   ephemeral node alone would let it run the same tick again. A run that gets the lease
//!   for a tick another host already ran does not run either.
//!
//! A run that does not get the lease is recorded as `skipped` ("held by <host>") and exits 0;
//! the health rules count it neither as a failure nor as a run (`journal::runs_as_of`). The
//! host that claimed a tick may run it again (systemd's restart after a failure, an
//! operator's run by hand). Without `ZOOKEEPER_HOSTS` there is no lease, as on one host.
//!
//! A tick is the latest elapse, at or before the run's start, of the job's timer calendar as
//! installed (`OnCalendar=` of `/etc/systemd/system/<job>.timer` and its drop-ins, also under
//! `/run/systemd/system`), else of the job table's: both hosts compute the same instant from
//! their own clock, however much randomized delay each timer added.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Args;
use zookeeper_client as zk;

use crate::error::UnavailableError;
use crate::jobs::Job;

/// Settings of the lease (shared by every binary that journals runs).
#[derive(Debug, Clone, Args)]
pub struct LeaseArgs {
    /// ZooKeeper servers (`host:port`, comma-separated) for the jobs' leases when several hosts
    /// run the same timers: each tick of a job runs on one host, the others record the run as
    /// `skipped`. Empty: no lease (one host).
    #[arg(long, env = "ZOOKEEPER_HOSTS", default_value = "")]
    pub zookeeper_hosts: String,

    /// ZooKeeper path under which the leases live (a node per database and job).
    #[arg(long, env = "ZOOKEEPER_LEASE_PATH", default_value = "/zakaz/leases", value_parser = parse_path)]
    pub zookeeper_lease_path: String,
}

impl Default for LeaseArgs {
    fn default() -> Self {
        LeaseArgs {
            zookeeper_hosts: String::new(),
            zookeeper_lease_path: "/zakaz/leases".to_owned(),
        }
    }
}

fn parse_path(s: &str) -> Result<String, String> {
    let ok = s.starts_with('/')
        && s.len() > 1
        && !s.ends_with('/')
        && s.split('/').skip(1).all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        });
    if ok {
        Ok(s.to_owned())
    } else {
        Err("an absolute ZooKeeper path such as `/zakaz/leases` (letters, digits, `_-.`)".into())
    }
}

/// How long ZooKeeper keeps a lease of a holder it no longer hears from (the server may
/// clamp it to its `minSessionTimeout`..`maxSessionTimeout`).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// What taking the lease gave.
pub enum Claim {
    /// No ZooKeeper configured: run, as on one host.
    Off,
    /// This run holds the job: run, then [`Lease::release`].
    Held(Lease),
    /// Another host holds the job now, or already ran this tick: record `skipped`.
    Busy {
        /// The other host's name.
        holder: String,
        /// The tick the holder ran, when that is why (it may have finished already).
        tick: Option<DateTime<Utc>>,
    },
}

impl Claim {
    /// The journal's message of a skipped run: "held by <host>", and the tick when known.
    pub fn skipped_message(holder: &str, tick: Option<DateTime<Utc>>) -> String {
        match tick {
            Some(t) => format!(
                "held by {holder} (it ran the tick of {})",
                t.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            None => format!("held by {holder}"),
        }
    }
}

/// The lease of one job, held by this run until [`Lease::release`] (or the process's end).
pub struct Lease {
    client: zk::Client,
    node: String,
}

impl Lease {
    /// Resolves when the lease is lost: the ZooKeeper session expired (the holder was cut
    /// off longer than the session timeout) or was closed. Another host may hold the job
    /// from then on, so the run must stop.
    pub async fn lost(&self) {
        let mut watcher = self.client.state_watcher();
        loop {
            match watcher.changed().await {
                zk::SessionState::Expired
                | zk::SessionState::Closed
                | zk::SessionState::AuthFailed => return,
                _ => continue,
            }
        }
    }

    /// Give the job back: delete the node and close the session.
    pub async fn release(self) {
        let deleted =
            tokio::time::timeout(Duration::from_secs(5), self.client.delete(&self.node, None))
                .await;
        if !matches!(deleted, Ok(Ok(()))) {
            // The session's end removes it anyway (at once when the close arrives).
            tracing::debug!(node = %self.node, "lease node not deleted: {deleted:?}");
        }
        drop(self.client);
    }
}

/// The lease node's and the tick node's data.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Holder {
    host: String,
    #[serde(default)]
    pid: u32,
    /// Unix seconds of the tick (0: not a timer job).
    #[serde(default)]
    tick: i64,
}

/// Take the lease of `job` for a run starting at `now` on host `host`.
pub async fn claim(
    args: &LeaseArgs,
    db: &str,
    job: &Job,
    host: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<Claim> {
    let hosts = args.zookeeper_hosts.trim();
    if hosts.is_empty() {
        return Ok(Claim::Off);
    }
    let unavailable = |what: &str, e: &dyn std::fmt::Display| -> anyhow::Error {
        UnavailableError(format!(
            "ZooKeeper at `{hosts}` (setting `ZOOKEEPER_HOSTS`) {what}: {e}; the job's lease cannot be taken (without ZooKeeper the replicated tables are read-only too)"
        ))
        .into()
    };
    let connect = zk::Client::connector()
        .with_session_timeout(SESSION_TIMEOUT)
        .with_connection_timeout(Duration::from_secs(5))
        .connect(hosts);
    let client = match tokio::time::timeout(Duration::from_secs(15), connect).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(unavailable("is not reachable", &e)),
        Err(_) => return Err(unavailable("did not answer within 15 s", &"timed out")),
    };
    let base = format!("{}/{db}/{}", args.zookeeper_lease_path, job.name);
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let ephemeral = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    let fail = |what: &str, e: zk::Error| unavailable(&format!("failed to {what}"), &e);
    match client.mkdir(&base, &persistent).await {
        Ok(()) | Err(zk::Error::NodeExists) => {}
        Err(e) => return Err(fail(&format!("create `{base}`"), e)),
    }
    let tick = tick_of(job, now);
    let me = Holder {
        host: host.to_owned(),
        pid: std::process::id(),
        tick: tick.map_or(0, |t| t.timestamp()),
    };
    let data = serde_json::to_vec(&me)?;
    let node = format!("{base}/lease");
    // Held by someone else: whose is it? (Gone between create and read: try again.)
    for _ in 0..3 {
        match client.create(&node, &data, &ephemeral).await {
            Ok(_) => {
                let lease = Lease { client, node };
                return take_tick(lease, &base, &me, &data, tick).await;
            }
            Err(zk::Error::NodeExists) => match client.get_data(&node).await {
                Ok((held, _)) => {
                    let holder = serde_json::from_slice::<Holder>(&held)
                        .map_or_else(|_| "another host".to_owned(), |h| h.host);
                    return Ok(Claim::Busy { holder, tick: None });
                }
                Err(zk::Error::NoNode) => continue,
                Err(e) => return Err(fail(&format!("read `{node}`"), e)),
            },
            Err(e) => return Err(fail(&format!("create `{node}`"), e)),
        }
    }
    Err(unavailable(
        "kept changing",
        &format!("`{node}` appeared and vanished three times"),
    ))
}

/// Holding the lease: claim the tick, unless another host already ran it.
async fn take_tick(
    lease: Lease,
    base: &str,
    me: &Holder,
    data: &[u8],
    tick: Option<DateTime<Utc>>,
) -> anyhow::Result<Claim> {
    let Some(tick) = tick else {
        return Ok(Claim::Held(lease));
    };
    let tick_node = format!("{base}/tick");
    let client = &lease.client;
    let fail = |what: String, e: zk::Error| -> anyhow::Error {
        UnavailableError(format!("ZooKeeper failed to {what}: {e}")).into()
    };
    match client.get_data(&tick_node).await {
        Ok((last, _)) => {
            if let Ok(last) = serde_json::from_slice::<Holder>(&last)
                && last.tick >= tick.timestamp()
                && last.host != me.host
            {
                let holder = last.host;
                lease.release().await;
                return Ok(Claim::Busy {
                    holder,
                    tick: DateTime::from_timestamp(last.tick, 0),
                });
            }
            client
                .set_data(&tick_node, data, None)
                .await
                .map_err(|e| fail(format!("write `{tick_node}`"), e))?;
        }
        Err(zk::Error::NoNode) => {
            let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
            match client.create(&tick_node, data, &persistent).await {
                // Only the lease's holder writes here: NodeExists cannot race with another.
                Ok(_) | Err(zk::Error::NodeExists) => {}
                Err(e) => return Err(fail(format!("create `{tick_node}`"), e)),
            }
        }
        Err(e) => return Err(fail(format!("read `{tick_node}`"), e)),
    }
    Ok(Claim::Held(lease))
}

/// The tick a run of `job` starting at `now` belongs to: the latest elapse at or before
/// `now` of the timer's calendar as installed, else the job table's. `None` for jobs without
/// a timer (services, queue workers) or a calendar this crate cannot read.
pub fn tick_of(job: &Job, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let crate::jobs::Schedule::Timer { on_calendar, .. } = job.schedule else {
        return None;
    };
    let installed = installed_calendars(
        &[
            PathBuf::from("/etc/systemd/system"),
            PathBuf::from("/run/systemd/system"),
        ],
        &format!("{}.timer", job.name),
    );
    let calendars = if installed.is_empty() {
        vec![on_calendar.to_owned()]
    } else {
        installed
    };
    calendars
        .iter()
        .map(|c| latest_elapse(c, now))
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .max()
}

/// The latest elapse of `on_calendar` at or before `now`.
pub fn latest_elapse(on_calendar: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let calendar = crate::calendar::Calendar::parse(on_calendar)?;
    // Look back far enough to find one elapse, then walk forward to the last one.
    for back in [10, 60, 600, 3600, 6 * 3600, 26 * 3600, 50 * 3600] {
        let from = now - chrono::Duration::seconds(back);
        let mut last = None;
        let mut t = from;
        while let Some(next) = calendar.next_after(t) {
            if next > now {
                break;
            }
            last = Some(next);
            t = next;
        }
        if last.is_some() {
            return last;
        }
    }
    None
}

/// `OnCalendar=` values of `unit` as installed: the unit file (first directory that has it)
/// and its drop-ins (`<unit>.d/*.conf` in every directory, in file-name order; a later file
/// wins for the same name); an empty value clears the earlier ones, as systemd reads them.
pub fn installed_calendars(dirs: &[PathBuf], unit: &str) -> Vec<String> {
    let Some(main) = dirs.iter().map(|d| d.join(unit)).find(|p| p.is_file()) else {
        return Vec::new();
    };
    let mut dropins: std::collections::BTreeMap<String, PathBuf> = Default::default();
    for dir in dirs.iter().rev() {
        let Ok(entries) = std::fs::read_dir(dir.join(format!("{unit}.d"))) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".conf") {
                dropins.insert(name, entry.path());
            }
        }
    }
    let mut values = Vec::new();
    for file in std::iter::once(main).chain(dropins.into_values()) {
        read_calendars(&file, &mut values);
    }
    values
}

fn read_calendars(file: &Path, values: &mut Vec<String>) {
    let Ok(text) = std::fs::read_to_string(file) else {
        return;
    };
    let mut in_timer = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_timer = line == "[Timer]";
        } else if in_timer && let Some(value) = line.strip_prefix("OnCalendar=") {
            let value = value.trim();
            if value.is_empty() {
                values.clear();
            } else {
                values.push(value.to_owned());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn a_tick_is_the_latest_elapse_at_or_before_the_start() {
        let q = "*:0/15";
        // Both hosts' timers fired for 10:15, one 3 s and one 58 s after it.
        assert_eq!(
            latest_elapse(q, utc("2026-06-01T10:15:03Z")),
            Some(utc("2026-06-01T10:15:00Z"))
        );
        assert_eq!(
            latest_elapse(q, utc("2026-06-01T10:15:58Z")),
            Some(utc("2026-06-01T10:15:00Z"))
        );
        assert_eq!(
            latest_elapse(q, utc("2026-06-01T10:15:00Z")),
            Some(utc("2026-06-01T10:15:00Z"))
        );
        // Daily at 00:00 Moscow (21:00 UTC), five minutes of delay.
        let vk = "*-*-* 00:00:00 Europe/Moscow";
        assert_eq!(
            latest_elapse(vk, utc("2026-06-01T21:04:10Z")),
            Some(utc("2026-06-01T21:00:00Z"))
        );
        assert_eq!(
            latest_elapse(vk, utc("2026-06-01T20:59:59Z")),
            Some(utc("2026-05-31T21:00:00Z"))
        );
        assert_eq!(
            latest_elapse("*:*:0/20", utc("2026-06-01T10:15:39Z")),
            Some(utc("2026-06-01T10:15:20Z"))
        );
        assert_eq!(
            latest_elapse("Mon *-*-* 00:00", utc("2026-06-01T10:15:39Z")),
            None
        );
        // Every timer job of the table has ticks.
        for job in crate::jobs::JOBS.iter().filter(|j| j.is_timer()) {
            assert!(
                tick_of(job, utc("2026-06-01T10:15:39Z")).is_some(),
                "{}",
                job.name
            );
        }
    }

    #[test]
    fn the_installed_calendar_follows_drop_ins() {
        let dir = std::env::temp_dir().join(format!("zakaz-lease-units-{}", std::process::id()));
        let run = dir.join("run");
        let etc = dir.join("etc");
        std::fs::create_dir_all(etc.join("qtickets.timer.d")).unwrap();
        std::fs::create_dir_all(run.join("qtickets.timer.d")).unwrap();
        let dirs = [etc.clone(), run.clone()];
        assert!(installed_calendars(&dirs, "qtickets.timer").is_empty());
        std::fs::write(
            etc.join("qtickets.timer"),
            "[Unit]\nDescription=x\n[Timer]\nOnCalendar=*:0/15\nRandomizedDelaySec=60\n",
        )
        .unwrap();
        assert_eq!(installed_calendars(&dirs, "qtickets.timer"), ["*:0/15"]);
        std::fs::write(
            run.join("qtickets.timer.d/a-test.conf"),
            "[Timer]\nOnCalendar=\nOnCalendar=*:*:0/10\n",
        )
        .unwrap();
        assert_eq!(installed_calendars(&dirs, "qtickets.timer"), ["*:*:0/10"]);
        std::fs::write(
            etc.join("qtickets.timer.d/b-more.conf"),
            "[Timer]\nOnCalendar=*-*-* 03:00:00\n",
        )
        .unwrap();
        assert_eq!(
            installed_calendars(&dirs, "qtickets.timer"),
            ["*:*:0/10", "*-*-* 03:00:00"]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn skipped_runs_say_who_holds_the_job() {
        assert_eq!(Claim::skipped_message("host-a", None), "held by host-a");
        assert_eq!(
            Claim::skipped_message("host-a", Some(utc("2026-06-01T10:15:00Z"))),
            "held by host-a (it ran the tick of 2026-06-01 10:15:00 UTC)"
        );
        assert!(parse_path("/zakaz/leases").is_ok());
        assert!(parse_path("zakaz").is_err() && parse_path("/a/../b").is_err());
    }
}
