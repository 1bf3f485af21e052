//! `manage-timers`: installs and drives every job as real systemd timers (it replaces the
//! seed's `manage_timers.sh`), and owns the one-off administrative commands (migrations).
//!
//! Names are the job table's (`qtickets`, `vk_ads`, `direct`, `gmail_ingest` alias `gmail`,
//! `alerts`, `camp_queue`, `healthcheck`). For a timer job, `start/stop/restart/enable/disable
//! NAME` act on its timer, as the seed's runbook says; `NAME.service` names the service
//! explicitly, and `run NAME` runs the job now.

pub mod front;
pub mod install;
pub mod ops;
pub mod shell;
pub mod system;
pub mod units;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::builder::{PossibleValue, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use zakaz_core::ch::{Ch, ClickHouseArgs};
use zakaz_core::cli::{CommonArgs, JobCli};
use zakaz_core::jobs::{self, JOBS, Job};

use crate::front::usage_error;
use crate::system::Scope;

/// The `--help` footer: every job with its aliases, generated from the job table.
pub fn jobs_footer() -> String {
    let jobs: Vec<String> = JOBS
        .iter()
        .map(|j| {
            if j.aliases.is_empty() {
                j.name.to_owned()
            } else {
                format!("{} ({})", j.name, j.aliases.join(", "))
            }
        })
        .collect();
    format!(
        "Jobs (aliases): {}.\nA job's unit may be named too: `qtickets.service`, `camp_queue-2-copy1.timer`.\nExit codes: 0 ok, 1 failure, 3 `status` found a failed run or a missing timer, 64 usage, 69 systemd or ClickHouse unreachable, 77 needs root, 78 configuration.\nSee `man manage-timers-<command>` and the runbook (installed as PREFIX/docs/runbook.md).",
        jobs.join(", ")
    )
}

#[derive(Debug, Parser)]
#[command(
    name = "manage-timers",
    version,
    about = "Install and drive the systemd timers of every job",
    after_help = jobs_footer()
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,

    /// When to color the output: `auto` (a terminal, and `NO_COLOR` unset), `always`, `never`.
    #[arg(long, global = true, value_name = "WHEN", default_value = "auto",
          value_parser = ["auto", "always", "never"])]
    pub color: String,

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

/// Edit distance, for "did you mean" (names are short).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The job name closest to a mistyped one, if any is close.
fn suggestion(s: &str) -> Option<&'static str> {
    let bare = s
        .strip_suffix(".service")
        .or_else(|| s.strip_suffix(".timer"))
        .unwrap_or(s);
    JOBS.iter()
        .flat_map(|j| std::iter::once(j.name).chain(j.aliases.iter().copied()))
        .map(|n| (distance(bare, n), n))
        .filter(|(d, n)| *d <= 2.max(n.len() / 3) || n.starts_with(bare) || bare.starts_with(n))
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

fn parse_job(s: &str) -> Result<JobRef, String> {
    let job = jobs::find(s).ok_or_else(|| match suggestion(s) {
        Some(close) => format!(
            "unknown job `{s}`; did you mean `{close}`? valid names: {}",
            jobs::names()
        ),
        None => format!("unknown job `{s}`; valid names: {}", jobs::names()),
    })?;
    // One worker's timer or service (`camp_queue-2-copy1.timer`, `camp_queue@2-rest.service`)
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

/// Parses a job name and offers the job table's names to shell completion.
#[derive(Debug, Clone, Copy)]
pub struct JobParser;

impl TypedValueParser for JobParser {
    type Value = JobRef;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<JobRef, clap::Error> {
        let parse: fn(&str) -> Result<JobRef, String> = parse_job;
        parse.parse_ref(cmd, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(JOBS.iter().flat_map(|j| {
            std::iter::once(PossibleValue::new(j.name).help(j.description)).chain(
                j.aliases
                    .iter()
                    .map(move |a| PossibleValue::new(*a).help(format!("= {}", j.name))),
            )
        })))
    }
}

/// A required job name, with a message listing the valid names when it is missing.
#[derive(Debug, Clone, Args)]
pub struct NameArg {
    /// Job name or alias (or a unit name such as `qtickets.service`).
    #[arg(value_parser = JobParser, value_name = "NAME")]
    pub name: Option<JobRef>,
}

impl NameArg {
    pub fn get(&self, command: &str) -> anyhow::Result<&JobRef> {
        self.name.as_ref().ok_or_else(|| {
            usage_error(format!(
                "`manage-timers {command}` needs a job name: one of {}",
                jobs::names()
            ))
        })
    }
}

/// Where an install lives. Unset: what the last install remembered, else the defaults.
#[derive(Debug, Clone, Default, Args)]
pub struct PlaceArgs {
    /// Per-user install: the user's systemd manager, no root needed.
    #[arg(long)]
    pub user: bool,

    /// Install prefix [default: the last install's, else /opt/zakaz_dashboard; with --user:
    /// ~/zakaz_dashboard].
    #[arg(long, value_name = "DIR")]
    pub prefix: Option<PathBuf>,

    /// Unit directory [default: the last install's, else /etc/systemd/system; with --user:
    /// ~/.config/systemd/user].
    #[arg(long, value_name = "DIR")]
    pub unit_dir: Option<PathBuf>,
}

impl PlaceArgs {
    pub fn scope(&self) -> Scope {
        scope(self.user)
    }
}

/// Install choices that are remembered: a later `install` without them keeps them.
#[derive(Debug, Clone, Default, Args)]
pub struct ChoiceArgs {
    /// Let the services reach only these address ranges and localhost (systemd's
    /// `IPAddressAllow=`, space-separated, e.g. "10.0.0.0/8 149.154.160.0/20"); every other
    /// address is denied. `none` removes the fence. [default: the last install's, else none]
    #[arg(long, value_name = "RANGES", value_parser = parse_ip_allow)]
    pub ip_allow: Option<String>,

    /// Shards of the campaign queue: a worker timer per shard and lane (`camp_queue@S-…`);
    /// fewer than before removes the extra shards' timers. [default: the last install's, else 1]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub queue_shards: Option<u32>,
}

/// Address ranges as systemd takes them: addresses or prefixes, or its named sets; `none`
/// (alone) for no fence, returned as the empty string.
fn parse_ip_allow(s: &str) -> Result<String, String> {
    if s.trim() == "none" {
        return Ok(String::new());
    }
    let named = ["any", "localhost", "link-local", "multicast"];
    for word in s.split_whitespace() {
        let (addr, prefix) = word.split_once('/').unwrap_or((word, ""));
        let ok = named.contains(&word)
            || (addr.parse::<std::net::IpAddr>().is_ok()
                && (prefix.is_empty() || prefix.parse::<u8>().is_ok_and(|p| p <= 128)));
        if !ok {
            return Err(format!(
                "`{word}` is not an address, a prefix or a systemd range name (or `none`)"
            ));
        }
    }
    if s.split_whitespace().next().is_none() {
        return Err("give at least one range, or `none`".into());
    }
    Ok(s.split_whitespace().collect::<Vec<_>>().join(" "))
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the `etl` user and the directory tree, install binaries (linked into
    /// /usr/local/bin), docs, completions and man pages, write units, reload systemd and
    /// enable the jobs enabled by default. Idempotent; remembers its choices.
    #[command(after_help = jobs_footer())]
    Install {
        #[command(flatten)]
        place: PlaceArgs,
        #[command(flatten)]
        choices: ChoiceArgs,
        /// Copy the binaries from this directory into PREFIX/bin.
        #[arg(long, value_name = "DIR")]
        binaries: Option<PathBuf>,
        /// Overwrite unit files that manage-timers did not write.
        #[arg(long)]
        force: bool,
        /// Write everything but enable no timer.
        #[arg(long)]
        no_enable: bool,
        /// Print the remembered install choices and change nothing.
        #[arg(long, conflicts_with_all = ["binaries", "force", "no_enable", "ip_allow", "queue_shards"])]
        show: bool,
    },
    /// Stop and disable every job, remove the unit files manage-timers wrote and the links
    /// on the PATH (data, secrets, logs and the remembered choices under the prefix are kept).
    Uninstall {
        #[command(flatten)]
        place: PlaceArgs,
    },
    /// Enable a job: its timer (or service) starts now and at every boot.
    #[command(after_help = jobs_footer())]
    Enable {
        #[command(flatten)]
        name: NameArg,
        /// Act on the user's systemd manager (a `--user` install).
        #[arg(long)]
        user: bool,
    },
    /// Disable a job: its timer (or service) stops and stays off after reboot.
    #[command(after_help = jobs_footer())]
    Disable {
        #[command(flatten)]
        name: NameArg,
        /// Act on the user's systemd manager (a `--user` install).
        #[arg(long)]
        user: bool,
    },
    /// Start a job's timer (or `NAME.service`).
    #[command(after_help = jobs_footer())]
    Start {
        #[command(flatten)]
        name: NameArg,
        /// Act on the user's systemd manager (a `--user` install).
        #[arg(long)]
        user: bool,
    },
    /// Stop a job's timer (or `NAME.service`) until the next start or boot.
    #[command(after_help = jobs_footer())]
    Stop {
        #[command(flatten)]
        name: NameArg,
        /// Act on the user's systemd manager (a `--user` install).
        #[arg(long)]
        user: bool,
    },
    /// Restart a job's timer (or `NAME.service`).
    #[command(after_help = jobs_footer())]
    Restart {
        #[command(flatten)]
        name: NameArg,
        /// Act on the user's systemd manager (a `--user` install).
        #[arg(long)]
        user: bool,
    },
    /// Run a job now, wait for it, and show its log and result. With `-- ARGS`, the job's
    /// binary runs once with those arguments as a transient unit with the service's user,
    /// env file, sandboxing and journal identity (e.g. `run vk_ads -- --since 2026-11-01
    /// --until 2026-11-30`). Exits with the run's exit status.
    #[command(after_help = jobs_footer())]
    Run {
        #[command(flatten)]
        name: NameArg,
        /// Act on the user's systemd manager (a `--user` install).
        #[arg(long)]
        user: bool,
        /// Arguments for the job's binary, after `--`.
        #[arg(last = true, value_name = "ARGS")]
        args: Vec<OsString>,
    },
    /// Timer state, last and next run from systemd, last result from `meta_job_runs`. Exits 3
    /// when a job's last run failed or its timer (or service) is not installed.
    #[command(after_help = jobs_footer())]
    Status {
        /// Job name; all jobs when omitted.
        #[arg(value_parser = JobParser, value_name = "NAME")]
        name: Option<JobRef>,
        /// Act on the user's systemd manager (a `--user` install).
        #[arg(long)]
        user: bool,
        /// One JSON document instead of the table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        clickhouse: ClickHouseArgs,
    },
    /// The journal of a job's service(s); every job's when no name is given.
    #[command(after_help = jobs_footer())]
    Logs {
        /// Job name; every job when omitted.
        #[arg(value_parser = JobParser, value_name = "NAME")]
        name: Option<JobRef>,
        /// Follow new lines.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Number of lines.
        #[arg(short = 'n', long, default_value_t = 100)]
        lines: u32,
        /// Only lines since this time (journalctl's `--since`: "2026-11-01", "1 hour ago").
        #[arg(short = 'S', long, value_name = "WHEN")]
        since: Option<String>,
        /// Only lines of this priority or more urgent (journalctl's `-p`: err, warning, …).
        #[arg(short = 'p', long, value_name = "PRIORITY")]
        priority: Option<String>,
        /// Output format (journalctl's `-o`: short, cat, json, …).
        #[arg(short = 'o', long, value_name = "FORMAT")]
        output: Option<String>,
        /// Act on the user's systemd manager (a `--user` install).
        #[arg(long)]
        user: bool,
    },
    /// Every timer's calendar, randomized delay and next elapse (local time and MSK).
    Schedule {
        /// One JSON document instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// `systemd-analyze verify` and `calendar` on every installed unit, and the security
    /// exposure of each service (fails above the threshold).
    Verify {
        /// The user's units (a `--user` install).
        #[arg(long)]
        user: bool,
        /// Unit directory [default: the last install's, else /etc/systemd/system; with
        /// --user: ~/.config/systemd/user].
        #[arg(long, value_name = "DIR")]
        unit_dir: Option<PathBuf>,
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
    /// List every job of the job table with its schedule, delay, timeout and default.
    List {
        /// One JSON document instead of the table.
        #[arg(long)]
        json: bool,
    },
}

fn scope(user: bool) -> Scope {
    if user { Scope::User } else { Scope::System }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Install {
            place,
            choices,
            binaries,
            force,
            no_enable,
            show,
        } => {
            if show {
                install::show(&place)
            } else {
                if let Some(dir) = binaries.as_deref() {
                    install::hand_over_to_the_new_release(dir)?;
                }
                install::install(&place, &choices, binaries.as_deref(), force, no_enable)
            }
        }
        Command::Uninstall { place } => install::uninstall(&place),
        Command::Enable { name, user } => ops::enable(name.get("enable")?, scope(user), true),
        Command::Disable { name, user } => ops::enable(name.get("disable")?, scope(user), false),
        Command::Start { name, user } => ops::control("start", name.get("start")?, scope(user)),
        Command::Stop { name, user } => ops::control("stop", name.get("stop")?, scope(user)),
        Command::Restart { name, user } => {
            ops::control("restart", name.get("restart")?, scope(user))
        }
        Command::Run { name, user, args } => {
            let job = name.get("run")?;
            if args.is_empty() {
                ops::run_now(job, scope(user))
            } else {
                ops::run_with_args(job, scope(user), &args)
            }
        }
        Command::Status {
            name,
            user,
            json,
            clickhouse,
        } => ops::status(name.as_ref(), scope(user), json, &clickhouse).await,
        Command::Logs {
            name,
            follow,
            lines,
            since,
            priority,
            output,
            user,
        } => ops::logs(
            name.as_ref(),
            scope(user),
            &ops::LogOptions {
                follow,
                lines,
                since,
                priority,
                output,
            },
        ),
        Command::Schedule { json } => ops::schedule(json),
        Command::Verify {
            user,
            unit_dir,
            threshold,
        } => {
            let place = PlaceArgs {
                user,
                prefix: None,
                unit_dir,
            };
            ops::verify(install::resolve(&place, None)?.unit_dir(), threshold)
        }
        Command::Generate { out, prefix, check } => install::generate(&out, &prefix, check),
        Command::Migrate { clickhouse } => migrate(&clickhouse).await,
        Command::List { json } => {
            if json {
                println!("{}", serde_json::to_string_pretty(&list_json())?);
            } else {
                print!("{}", list());
            }
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
    // A cluster: `migrate` has checked that every replica holds every table and view.
    if let Some(cluster) = ch.cluster() {
        let replicas = zakaz_core::schema::cluster_replicas(&ch, cluster).await?;
        let names: Vec<String> = replicas.iter().map(ToString::to_string).collect();
        println!(
            "cluster `{cluster}`: Replicated tables and views on every replica ({})",
            names.join(", ")
        );
    }
    Ok(())
}

/// What `list` shows of one job.
struct ListRow {
    name: String,
    kind: &'static str,
    schedule: String,
    delay: String,
    timeout: String,
    default: &'static str,
    binary: &'static str,
}

fn list_rows() -> Vec<ListRow> {
    use zakaz_core::jobs::Schedule;
    let mut rows = Vec::new();
    for job in JOBS {
        let default = if job.enabled_by_default {
            "enabled"
        } else {
            "disabled"
        };
        let name = if job.aliases.is_empty() {
            job.name.to_owned()
        } else {
            format!("{} ({})", job.name, job.aliases.join(", "))
        };
        match job.schedule {
            Schedule::Timer {
                on_calendar,
                randomized_delay,
                timeout,
                ..
            } => rows.push(ListRow {
                name,
                kind: "timer",
                schedule: on_calendar.to_owned(),
                delay: format!("≤{}s", randomized_delay.as_secs()),
                timeout: format!("{}s", timeout.as_secs()),
                default,
                binary: job.binary,
            }),
            Schedule::Service { port, watchdog } => rows.push(ListRow {
                name,
                kind: "service",
                schedule: format!("long-running, 127.0.0.1:{port}"),
                delay: "-".to_owned(),
                timeout: format!("watchdog {}s", watchdog.as_secs()),
                default,
                binary: job.binary,
            }),
            Schedule::Workers { lanes, runtime_max } => {
                for (i, lane) in lanes.iter().enumerate() {
                    rows.push(ListRow {
                        name: if i == 0 {
                            name.clone()
                        } else {
                            format!("{} {}", job.name, lane.par_id)
                        },
                        kind: "worker",
                        schedule: format!("{} {} (per shard)", lane.par_id, lane.on_calendar),
                        delay: "0s".to_owned(),
                        timeout: format!("{}s (max)", runtime_max.as_secs()),
                        default,
                        binary: job.binary,
                    });
                }
            }
        }
    }
    rows
}

/// One line per job (a line per lane for the queue's workers): name and aliases, kind,
/// schedule, randomized delay, timeout, enabled by default, binary — in aligned columns.
pub fn list() -> String {
    let rows = list_rows();
    let header = [
        "NAME", "KIND", "SCHEDULE", "DELAY", "TIMEOUT", "DEFAULT", "BINARY",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.kind.to_owned(),
                r.schedule.clone(),
                r.delay.clone(),
                r.timeout.clone(),
                r.default.to_owned(),
                r.binary.to_owned(),
            ]
        })
        .collect();
    front::table(&header, &cells)
}

fn list_json() -> serde_json::Value {
    use zakaz_core::jobs::Schedule;
    let jobs: Vec<serde_json::Value> = JOBS
        .iter()
        .map(|job| {
            let mut v = serde_json::json!({
                "name": job.name,
                "aliases": job.aliases,
                "binary": job.binary,
                "description": job.description,
                "enabled_by_default": job.enabled_by_default,
                "env_file": job.env_file,
                "memory_max_mib": job.memory_max_mib,
                "tasks_max": job.tasks_max,
            });
            let extra = match job.schedule {
                Schedule::Timer {
                    on_calendar,
                    randomized_delay,
                    timeout,
                    interval,
                } => serde_json::json!({
                    "kind": "timer",
                    "on_calendar": on_calendar,
                    "randomized_delay_secs": randomized_delay.as_secs(),
                    "timeout_secs": timeout.as_secs(),
                    "interval_secs": interval.as_secs(),
                }),
                Schedule::Service { port, watchdog } => serde_json::json!({
                    "kind": "service",
                    "port": port,
                    "watchdog_secs": watchdog.as_secs(),
                }),
                Schedule::Workers { lanes, runtime_max } => serde_json::json!({
                    "kind": "workers",
                    "runtime_max_secs": runtime_max.as_secs(),
                    "lanes": lanes.iter().map(|l| serde_json::json!({
                        "par_id": l.par_id,
                        "on_calendar": l.on_calendar,
                    })).collect::<Vec<_>>(),
                }),
            };
            if let (Some(o), serde_json::Value::Object(e)) = (v.as_object_mut(), extra) {
                o.extend(e);
            }
            v
        })
        .collect();
    serde_json::Value::Array(jobs)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_gets_a_suggestion() {
        let err = parse_job("qtickts").unwrap_err();
        assert!(err.contains("did you mean `qtickets`?"), "{err}");
        let err = parse_job("zzzzzzzz").unwrap_err();
        assert!(!err.contains("did you mean"), "{err}");
        assert_eq!(parse_job("queue").unwrap().job.name, "camp_queue");
    }

    #[test]
    fn ip_allow_none_clears_the_fence() {
        assert_eq!(parse_ip_allow("none").unwrap(), "");
        assert_eq!(
            parse_ip_allow(" 10.0.0.0/8  ::1 ").unwrap(),
            "10.0.0.0/8 ::1"
        );
        assert!(parse_ip_allow("10.0.0.0/8 none").is_err());
    }
}
