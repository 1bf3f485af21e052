//! `manage-timers`: generates, installs and drives the systemd units of every job, and owns
//! the one-off administrative commands (schema migrations).

use clap::{Parser, Subcommand};
use zakaz_core::ch::{Ch, ClickHouseArgs};
use zakaz_core::cli::{CommonArgs, JobCli};
use zakaz_core::jobs::{JOBS, Schedule};

#[derive(Debug, Parser)]
#[command(
    name = "manage-timers",
    version,
    about = "Install and drive the systemd timers of every job"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,

    #[command(subcommand)]
    pub command: Command,
}

impl JobCli for Cli {
    fn common(&self) -> &CommonArgs {
        &self.common
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the ClickHouse database and apply every missing schema migration.
    Migrate {
        #[command(flatten)]
        clickhouse: ClickHouseArgs,
    },
    /// List every job of the job table with its schedule.
    List,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Migrate { clickhouse } => migrate(&clickhouse).await,
        Command::List => {
            print!("{}", list());
            Ok(())
        }
    }
}

async fn migrate(args: &ClickHouseArgs) -> anyhow::Result<()> {
    let ch = Ch::connect(args).await?;
    let report = zakaz_core::schema::migrate(&ch).await?;
    println!(
        "ClickHouse {}.{} at {}: database `{}` at schema version {} (applied now: {:?})",
        ch.version.major,
        ch.version.minor,
        ch.url(),
        ch.db(),
        zakaz_core::schema::latest_version(),
        report.applied
    );
    Ok(())
}

/// One line per job: name, kind, schedule, enabled by default, binary.
pub fn list() -> String {
    let mut out = format!(
        "{:<14} {:<8} {:<46} {:<8} {}\n",
        "NAME", "KIND", "SCHEDULE", "DEFAULT", "BINARY"
    );
    for job in JOBS {
        let (kind, schedule) = match job.schedule {
            Schedule::Timer { on_calendar, .. } => ("timer", on_calendar.to_owned()),
            Schedule::Service { port } => ("service", format!("long-running, port {port}")),
        };
        let default = if job.enabled_by_default {
            "enabled"
        } else {
            "disabled"
        };
        out.push_str(&format!(
            "{:<14} {:<8} {:<46} {:<8} {}\n",
            job.name, kind, schedule, default, job.binary
        ));
    }
    out
}
