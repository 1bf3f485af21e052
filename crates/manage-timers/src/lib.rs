//! `manage-timers`: installs and drives every job as real systemd timers (it replaces the
//! seed's `manage_timers.sh`), and owns the one-off administrative commands (migrations).
//!
//! Names are the job table's (`qtickets`, `vk_ads`, `direct`, `gmail_ingest` alias `gmail`,
//! `alerts`, `healthcheck`). For a timer job, `start/stop/restart/enable/disable NAME` act on
//! its timer, as the seed's runbook says; `NAME.service` names the service explicitly, and
//! `run NAME` runs the job now.

pub mod install;
pub mod ops;
pub mod system;
pub mod units;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use zakaz_core::ch::{Ch, ClickHouseArgs};
use zakaz_core::cli::{CommonArgs, JobCli};
use zakaz_core::error::config_error;
use zakaz_core::jobs::{self, Job};

use crate::system::Scope;

#[derive(Debug, Parser)]
#[command(
    name = "manage-timers",
    version,
    about = "Install and drive the systemd timers of every job",
    after_help = "Job names: qtickets, vk_ads, direct, gmail_ingest (gmail), alerts, healthcheck.\nSee docs/runbook.md."
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

/// A job named on the command line; `explicit` when the user typed a unit name.
#[derive(Debug, Clone)]
pub struct JobRef {
    pub job: &'static Job,
    pub explicit: Option<String>,
}

impl JobRef {
    /// The unit a timer-or-service command acts on: the timer of a timer job, unless the
    /// user named the unit.
    pub fn unit(&self) -> String {
        match &self.explicit {
            Some(u) => u.clone(),
            None if self.job.is_timer() => format!("{}.timer", self.job.name),
            None => format!("{}.service", self.job.name),
        }
    }

    pub fn service(&self) -> String {
        format!("{}.service", self.job.name)
    }
}

fn parse_job(s: &str) -> Result<JobRef, String> {
    let job = jobs::find(s)
        .ok_or_else(|| format!("unknown job `{s}`; valid names: {}", jobs::names()))?;
    // One worker's timer or service (`camp_queue-2-copy:1.timer`, `camp_queue@2-rest.service`)
    // is named as typed.
    if job.is_workers() && s != job.name && (s.ends_with(".service") || s.ends_with(".timer")) {
        return Ok(JobRef {
            job,
            explicit: Some(s.to_owned()),
        });
    }
    let explicit = (s.ends_with(".service") || s.ends_with(".timer")).then(|| {
        let suffix = if s.ends_with(".service") {
            "service"
        } else {
            "timer"
        };
        format!("{}.{suffix}", job.name)
    });
    if explicit.as_deref().is_some_and(|u| u.ends_with(".timer")) && !job.is_timer() {
        return Err(format!(
            "`{}` is a long-running service and has no timer",
            job.name
        ));
    }
    Ok(JobRef { job, explicit })
}

/// A required job name, with a message listing the valid names when it is missing.
#[derive(Debug, Clone, Args)]
pub struct NameArg {
    /// Job name (or unit name such as `qtickets.service`).
    #[arg(value_parser = parse_job, value_name = "NAME")]
    pub name: Option<JobRef>,
}

impl NameArg {
    pub fn get(&self, command: &str) -> anyhow::Result<&JobRef> {
        self.name.as_ref().ok_or_else(|| {
            config_error(format!(
                "`manage-timers {command}` needs a job name: one of {}",
                jobs::names()
            ))
        })
    }
}

/// Where units and the install live.
#[derive(Debug, Clone, Args)]
pub struct LayoutArgs {
    /// Per-user install: the user's systemd manager, no root needed.
    #[arg(long)]
    pub user: bool,

    /// Install prefix [default: /opt/zakaz_dashboard; with --user: ~/zakaz_dashboard].
    #[arg(long, value_name = "DIR")]
    pub prefix: Option<PathBuf>,

    /// Unit directory [default: /etc/systemd/system; with --user: ~/.config/systemd/user].
    #[arg(long, value_name = "DIR")]
    pub unit_dir: Option<PathBuf>,

    /// Let the services reach only these address ranges and localhost (systemd's
    /// `IPAddressAllow=`, space-separated, e.g. "10.0.0.0/8 149.154.160.0/20"); every other
    /// address is denied. Default: no restriction.
    #[arg(long, value_name = "RANGES", value_parser = parse_ip_allow)]
    pub ip_allow: Option<String>,

    /// Shards of the campaign queue: a worker timer per shard and lane (`camp_queue@S-…`).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub queue_shards: u32,
}

/// Address ranges as systemd takes them: addresses or prefixes, or its named sets.
fn parse_ip_allow(s: &str) -> Result<String, String> {
    let named = ["any", "localhost", "link-local", "multicast"];
    for word in s.split_whitespace() {
        let (addr, prefix) = word.split_once('/').unwrap_or((word, ""));
        let ok = named.contains(&word)
            || (addr.parse::<std::net::IpAddr>().is_ok()
                && (prefix.is_empty() || prefix.parse::<u8>().is_ok_and(|p| p <= 128)));
        if !ok {
            return Err(format!(
                "`{word}` is not an address, a prefix or a systemd range name"
            ));
        }
    }
    if s.split_whitespace().next().is_none() {
        return Err("give at least one range".into());
    }
    Ok(s.split_whitespace().collect::<Vec<_>>().join(" "))
}

impl LayoutArgs {
    pub fn scope(&self) -> Scope {
        if self.user {
            Scope::User
        } else {
            Scope::System
        }
    }

    fn home() -> anyhow::Result<PathBuf> {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .ok_or_else(|| config_error("`HOME` is not set; pass --prefix and --unit-dir"))
    }

    pub fn layout(&self) -> anyhow::Result<units::Layout> {
        let prefix = match (&self.prefix, self.user) {
            (Some(p), _) => p.clone(),
            (None, false) => PathBuf::from("/opt/zakaz_dashboard"),
            (None, true) => Self::home()?.join("zakaz_dashboard"),
        };
        Ok(units::Layout {
            prefix,
            user: (!self.user).then(|| "etl".to_owned()),
            ip_allow: self.ip_allow.clone(),
            queue_shards: self.queue_shards,
        })
    }

    pub fn unit_dir(&self) -> anyhow::Result<PathBuf> {
        Ok(match (&self.unit_dir, self.user) {
            (Some(d), _) => d.clone(),
            (None, false) => PathBuf::from("/etc/systemd/system"),
            (None, true) => Self::home()?.join(".config/systemd/user"),
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the `etl` user and the directory tree, install binaries, write units,
    /// reload systemd and enable the jobs enabled by default. Idempotent.
    Install {
        #[command(flatten)]
        layout: LayoutArgs,
        /// Copy the binaries from this directory into PREFIX/bin.
        #[arg(long, value_name = "DIR")]
        binaries: Option<PathBuf>,
        /// Overwrite unit files that manage-timers did not write.
        #[arg(long)]
        force: bool,
        /// Write everything but enable no timer.
        #[arg(long)]
        no_enable: bool,
    },
    /// Stop and disable every job, and remove the unit files manage-timers wrote (data,
    /// secrets and logs under the prefix are kept).
    Uninstall {
        #[command(flatten)]
        layout: LayoutArgs,
    },
    /// Enable a job: its timer (or service) starts now and at every boot.
    Enable {
        #[command(flatten)]
        name: NameArg,
        #[arg(long)]
        user: bool,
    },
    /// Disable a job: its timer (or service) stops and stays off after reboot.
    Disable {
        #[command(flatten)]
        name: NameArg,
        #[arg(long)]
        user: bool,
    },
    /// Start a job's timer (or `NAME.service`).
    Start {
        #[command(flatten)]
        name: NameArg,
        #[arg(long)]
        user: bool,
    },
    /// Stop a job's timer (or `NAME.service`) until the next start or boot.
    Stop {
        #[command(flatten)]
        name: NameArg,
        #[arg(long)]
        user: bool,
    },
    /// Restart a job's timer (or `NAME.service`).
    Restart {
        #[command(flatten)]
        name: NameArg,
        #[arg(long)]
        user: bool,
    },
    /// Run a job now, wait for it, and show its log.
    Run {
        #[command(flatten)]
        name: NameArg,
        #[arg(long)]
        user: bool,
    },
    /// Timer state, last and next run from systemd, last result from `meta_job_runs`.
    Status {
        /// Job name; all jobs when omitted.
        #[arg(value_parser = parse_job, value_name = "NAME")]
        name: Option<JobRef>,
        #[arg(long)]
        user: bool,
        #[command(flatten)]
        clickhouse: ClickHouseArgs,
    },
    /// The journal of the service behind a job.
    Logs {
        #[command(flatten)]
        name: NameArg,
        /// Follow new lines.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Number of lines.
        #[arg(short = 'n', long, default_value_t = 100)]
        lines: u32,
        #[arg(long)]
        user: bool,
    },
    /// Every timer's calendar, randomized delay and next elapse (local time and MSK).
    Schedule,
    /// `systemd-analyze verify` and `calendar` on every installed unit, and the security
    /// exposure of each service.
    Verify {
        #[command(flatten)]
        layout: LayoutArgs,
        /// Highest acceptable `systemd-analyze security` exposure.
        #[arg(long, default_value_t = 1.5)]
        threshold: f64,
    },
    /// Write every unit file from the job table (the committed `systemd/` is its output).
    Generate {
        /// Output directory.
        #[arg(long, default_value = "systemd")]
        out: PathBuf,
        /// Install prefix the units point at.
        #[arg(long, default_value = "/opt/zakaz_dashboard")]
        prefix: PathBuf,
        /// Compare instead of writing; fail when the files differ.
        #[arg(long)]
        check: bool,
    },
    /// Create the ClickHouse database and apply every missing schema migration.
    Migrate {
        #[command(flatten)]
        clickhouse: ClickHouseArgs,
    },
    /// List every job of the job table with its schedule.
    List,
}

fn scope(user: bool) -> Scope {
    if user { Scope::User } else { Scope::System }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Install {
            layout,
            binaries,
            force,
            no_enable,
        } => install::install(&layout, binaries.as_deref(), force, no_enable),
        Command::Uninstall { layout } => install::uninstall(&layout),
        Command::Enable { name, user } => ops::enable(name.get("enable")?, scope(user), true),
        Command::Disable { name, user } => ops::enable(name.get("disable")?, scope(user), false),
        Command::Start { name, user } => ops::control("start", name.get("start")?, scope(user)),
        Command::Stop { name, user } => ops::control("stop", name.get("stop")?, scope(user)),
        Command::Restart { name, user } => {
            ops::control("restart", name.get("restart")?, scope(user))
        }
        Command::Run { name, user } => ops::run_now(name.get("run")?, scope(user)),
        Command::Status {
            name,
            user,
            clickhouse,
        } => ops::status(name.as_ref(), scope(user), &clickhouse).await,
        Command::Logs {
            name,
            follow,
            lines,
            user,
        } => ops::logs(name.get("logs")?, scope(user), follow, lines),
        Command::Schedule => ops::schedule(),
        Command::Verify { layout, threshold } => ops::verify(&layout.unit_dir()?, threshold),
        Command::Generate { out, prefix, check } => install::generate(&out, &prefix, check),
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
    use zakaz_core::jobs::{JOBS, Schedule};
    let mut out = format!(
        "{:<14} {:<8} {:<46} {:<8} {}\n",
        "NAME", "KIND", "SCHEDULE", "DEFAULT", "BINARY"
    );
    for job in JOBS {
        let (kind, schedule) = match job.schedule {
            Schedule::Timer { on_calendar, .. } => ("timer", on_calendar.to_owned()),
            Schedule::Service { port, .. } => ("service", format!("long-running, port {port}")),
            Schedule::Workers { lanes, .. } => (
                "workers",
                lanes
                    .iter()
                    .map(|l| format!("{} {}", l.par_id, l.on_calendar))
                    .collect::<Vec<_>>()
                    .join(", ")
                    + " per shard",
            ),
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

/// The starting env file of `job`: `secrets/<job>.env.example` of the repository, generated
/// from its binary's settings (a test keeps the two in step).
pub fn env_example(job: &zakaz_core::jobs::Job) -> &'static str {
    macro_rules! example {
        ($file:literal) => {
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../secrets/",
                $file
            ))
        };
    }
    match job.name {
        "qtickets" => example!("qtickets.env.example"),
        "vk_ads" => example!("vk_ads.env.example"),
        "direct" => example!("direct.env.example"),
        "gmail_ingest" => example!("gmail.env.example"),
        "alerts" => example!("alerts.env.example"),
        "healthcheck" => example!("healthcheck.env.example"),
        "camp_queue" => example!("camp_queue.env.example"),
        _ => "# KEY=VALUE settings of this job; see docs/configuration.md.\n",
    }
}
