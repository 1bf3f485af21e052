//! `healthcheck`: one long-running server that tells probes, humans and Prometheus how the
//! integrations are. Everything it judges comes from the job table and ClickHouse, by the
//! same rules as `alerts` (`zakaz_core::checks`).
//!
//! Routes: `/healthz` (process up and ClickHouse reachable), `/healthz/live` (process up),
//! `/healthz/detailed`, `/healthz/freshness`, `/metrics`, `/` (a status page: every job's
//! last 7 days of runs, every source's last 30 days, the campaign queue's age per shard, as
//! inline SVG).

pub mod http;
pub mod render;
pub mod report;
pub mod server;

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use zakaz_core::ch::{Ch, ClickHouseArgs};
use zakaz_core::checks::CheckArgs;
use zakaz_core::cli::{CommonArgs, JobCli};
use zakaz_core::jobs::{self, Schedule};
use zakaz_core::time::Clock;

use crate::report::Verdict;

pub const JOB: &str = "healthcheck";

/// `127.0.0.1:<the job table's port>`.
pub fn default_listen() -> SocketAddr {
    let port = match jobs::get(JOB).schedule {
        Schedule::Service { port, .. } => port,
        _ => unreachable!("healthcheck is a service in the job table"),
    };
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[derive(Debug, Parser)]
#[command(
    name = "healthcheck",
    version,
    about = "HTTP health, freshness and metrics endpoints for probes, humans and Prometheus"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    #[command(flatten)]
    pub checks: CheckArgs,
    /// The campaign queue's databases (its metrics are exported when they are set).
    #[command(flatten)]
    pub queue: camp_queue::db::DbArgs,

    /// Address and port to listen on (`0.0.0.0:8080` to serve other hosts).
    #[arg(long, env = "HEALTHCHECK_LISTEN", default_value_t = default_listen())]
    pub listen: SocketAddr,

    /// Worker threads answering requests.
    #[arg(long, env = "HEALTHCHECK_THREADS", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,

    /// Seconds a report read from ClickHouse is served before it is read again.
    #[arg(long, env = "HEALTHCHECK_CACHE_SECONDS", default_value_t = 5.0, value_parser = parse_seconds)]
    pub cache_seconds: f64,

    /// Seconds ClickHouse may take to answer a refresh before it counts as unreachable.
    #[arg(long, env = "HEALTHCHECK_CLICKHOUSE_TIMEOUT_SECONDS", default_value_t = 3.0, value_parser = parse_seconds)]
    pub clickhouse_timeout_seconds: f64,

    /// Seconds a client may take to send a whole request (on a kept-alive connection, from
    /// the previous answer on), and again to take the answer.
    #[arg(long, env = "HEALTHCHECK_CLIENT_TIMEOUT_SECONDS", default_value_t = 5.0, value_parser = parse_seconds)]
    pub client_timeout_seconds: f64,

    /// Connections open at once; at the cap the one that has waited longest for its request
    /// is closed to make room. Lowered to fit the descriptor limit (`LimitNOFILE=`).
    #[arg(long, env = "HEALTHCHECK_MAX_CONNECTIONS", default_value_t = server::DEFAULT_MAX_CONNECTIONS, value_parser = parse_connections)]
    pub max_connections: usize,

    /// Print the detailed report for a terminal and exit: 0 when everything is ok, 1 otherwise.
    #[arg(long)]
    pub once: bool,

    /// Judge as of this instant instead of the system clock (tests pin time with it).
    #[arg(long, hide = true, value_name = "RFC3339")]
    pub now: Option<chrono::DateTime<chrono::Utc>>,
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if (0.0..=3600.0).contains(&v) {
        Ok(v)
    } else {
        Err("must be between 0 and 3600 seconds".into())
    }
}

fn parse_connections(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (8..=65_536).contains(&n) => Ok(n),
        _ => Err(format!("`{s}` is not a number between 8 and 65536")),
    }
}

impl JobCli for Cli {
    fn common(&self) -> &CommonArgs {
        &self.common
    }
}

impl Cli {
    pub fn clock(&self) -> Clock {
        self.now.map_or(Clock::System, Clock::Fixed)
    }

    pub fn server_config(&self, clock: Clock) -> server::Config {
        server::Config {
            listen: self.listen,
            threads: usize::from(self.threads),
            cache: Duration::from_secs_f64(self.cache_seconds),
            clickhouse_timeout: Duration::from_secs_f64(self.clickhouse_timeout_seconds.max(0.1)),
            client_timeout: Duration::from_secs_f64(self.client_timeout_seconds.max(0.1)),
            max_connections: self.max_connections,
            clickhouse: self.clickhouse.clone(),
            checks: self.checks.clone(),
            queue: self.queue.clone(),
            clock,
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.once {
        return once(&cli).await;
    }
    let running = server::start(
        cli.server_config(cli.clock()),
        tokio::runtime::Handle::current(),
    )?;
    let status = format!("listening on http://{}", running.addr);
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&status),
    ]);
    let watchdog = sd_notify::watchdog_enabled().map(|period| {
        let addr = running.addr;
        // Ping at half the period, and only while a worker answers our own probe: a hung
        // server stops pinging and systemd restarts it.
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(period / 2);
                if server::probe(addr, period / 4) {
                    notify(&[sd_notify::NotifyState::Watchdog]);
                } else {
                    tracing::warn!(
                        "the server did not answer its own probe; not pinging the watchdog"
                    );
                }
            }
        })
    });
    tracing::info!(watchdog = watchdog.is_some(), "{status}");
    let failure = tokio::select! {
        signal = zakaz_core::journal::termination() => {
            tracing::info!("{signal} received, stopping");
            None
        }
        reason = failed(&running) => Some(reason),
    };
    notify(&[sd_notify::NotifyState::Stopping]);
    tokio::task::spawn_blocking(move || running.stop()).await?;
    match failure {
        None => Ok(()),
        Some(reason) => Err(anyhow::anyhow!(
            "the HTTP server stopped accepting connections ({reason}); exiting so that it is restarted"
        )),
    }
}

async fn failed(running: &server::Running) -> String {
    loop {
        if let Some(reason) = running.failure() {
            return reason;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn notify(states: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot notify systemd: {e}");
    }
}

/// `--once`: one report for a terminal.
async fn once(cli: &Cli) -> anyhow::Result<()> {
    let timeout = Duration::from_secs_f64(cli.clickhouse_timeout_seconds.max(0.1));
    let queue = camp_queue::db::connect_if_configured(&cli.queue)?;
    let inputs = match tokio::time::timeout(timeout, async {
        let ch = Ch::connect(&cli.clickhouse).await?;
        report::gather(&ch, queue.as_ref(), cli.clock().now().naive_utc()).await
    })
    .await
    {
        Ok(Ok(inputs)) => Some(inputs),
        Ok(Err(e)) => {
            eprintln!("ClickHouse: {}", zakaz_core::error::one_line(&e));
            None
        }
        Err(_) => {
            eprintln!("ClickHouse did not answer within {timeout:?}");
            None
        }
    };
    let report = report::evaluate(
        inputs.as_ref(),
        &report::Context {
            now: cli.clock().now(),
            enabled: cli.checks.enabled_jobs(),
            tolerance: cli.checks.alert_missed_tolerance,
            // A terminal is the operator's: the runs' own words help there.
            show_messages: true,
        },
    );
    print!("{}", render::text(&report));
    anyhow::ensure!(
        report.status == Verdict::Ok,
        "overall status is {}",
        report.status.as_str()
    );
    Ok(())
}
