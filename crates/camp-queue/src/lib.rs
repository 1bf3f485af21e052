//! `camp-queue`: the sharded campaign copy/archive/delete queue on MySQL/MariaDB
//! (`docs/camp-queue.md`). Each shard has two queues, `camp_operations_queue_copy` (served by
//! workers `copy:N`) and `camp_operations_queue` (archive, unarchive, delete; worker `rest`),
//! and each shard may live on its own server. systemd starts the workers from timers
//! (`manage-timers` generates one instance per shard and worker).

pub mod checks;
pub mod db;
pub mod demo;
pub mod identity;
pub mod ops;
pub mod props;
pub mod queue;
pub mod schema;
pub mod status;
/// Test and benchmark support (drives the binary; not used by the jobs).
pub mod testing;
pub mod worker;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use zakaz_core::cli::{CommonArgs, JobCli};
use zakaz_core::error::{UnavailableError, config_error};
use zakaz_core::time::ClockArgs;

use crate::db::{CONNECT_TIMEOUT, DbArgs, Deployment, Needs, PoolSettings};
use crate::queue::{CopyRequest, Operation, Role};
use crate::worker::{RunArgs, RunClock, Worker};

#[derive(Debug, Parser)]
#[command(
    name = "camp-queue",
    version,
    about = "Workers of the sharded campaign copy/archive/delete queue",
    after_help = "Queue rules: docs/camp-queue.md. Operating it: docs/runbook.md (camp-queue)."
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,

    #[command(flatten)]
    pub db: DbArgs,

    /// Copy workers the timers launch per shard (`copy:1..N`); additional workers must be
    /// within it.
    #[arg(long, env = "CAMP_QUEUE_COPY_WORKERS", default_value = "3", value_name = "N", global = true,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub copy_workers: u32,

    #[command(flatten)]
    pub clock: ClockArgs,

    #[command(subcommand)]
    pub command: Command,
}

impl JobCli for Cli {
    fn common(&self) -> &CommonArgs {
        &self.common
    }
    const JOURNAL_FIELDS: bool = true;
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or upgrade the schema of ppcdict and of every shard (idempotent).
    Migrate,
    /// Load reproducible demo clients and campaigns on every shard (resets the demo rows).
    DemoData {
        #[arg(long, default_value = "6", value_parser = clap::value_parser!(u64).range(1..))]
        clients: u64,
        /// Campaigns per client.
        #[arg(long, default_value = "5", value_parser = clap::value_parser!(u64).range(1..))]
        campaigns: u64,
        /// Banners per campaign.
        #[arg(long, default_value = "3")]
        banners: u64,
        /// Phrases per banner.
        #[arg(long, default_value = "4")]
        phrases: u64,
    },
    /// Queue an operation on a campaign.
    Enqueue {
        #[command(subcommand)]
        what: Enqueue,
    },
    /// Run one worker.
    Run(RunArgs),
    /// Age, size and waiting clients per shard and queue; lanes without a worker; heartbeats.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Read or change a queue property in ppcdict.ppc_properties.
    Props {
        #[command(subcommand)]
        what: Props,
    },
    /// Every claim and result recorded for a campaign, on every shard.
    History {
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        cid: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum Enqueue {
    /// Copy a campaign (or, with --from-client, every campaign of a client) to a client.
    Copy {
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..), required_unless_present = "from_client", conflicts_with = "from_client")]
        cid: Option<u64>,
        /// Queue a copy of every campaign of this client.
        #[arg(long, value_name = "CLIENT_ID", value_parser = clap::value_parser!(u64).range(1..))]
        from_client: Option<u64>,
        #[arg(long, value_name = "CLIENT_ID", value_parser = clap::value_parser!(u64).range(1..))]
        to_client: u64,
        /// Who asks: only `client` copies are pessimised.
        #[arg(long, value_enum)]
        role: Role,
    },
    /// Archive a campaign.
    Arc {
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        cid: u64,
    },
    /// Unarchive a campaign.
    Unarc {
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        cid: u64,
    },
    /// Delete a campaign (refused while it has money).
    Del {
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        cid: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum Props {
    /// Print one property (or all known ones).
    Get { name: Option<String> },
    /// Validate and write a property (an empty VALUE clears it).
    Set { name: String, value: String },
}

/// The connection errors a command's probes did not name (a server that went away later, a
/// login refused mid-run): a server that cannot be reached is "unavailable" (exit 69), a
/// refused login or TLS that cannot be had a setting (exit 78) — not a failed job.
fn classify(err: anyhow::Error) -> anyhow::Error {
    if zakaz_core::error::exit_code_for(&err) != zakaz_core::error::exit::FAILURE {
        return err;
    }
    let label = db::Label::unnamed();
    let named = err
        .chain()
        .filter_map(|c| c.downcast_ref::<sqlx::Error>())
        .find_map(|e| db::connect_failure(&label, e));
    match named {
        Some(class) => {
            let line = zakaz_core::error::one_line(&err);
            match zakaz_core::error::exit_code_for(&class) {
                zakaz_core::error::exit::CONFIG => err.context(zakaz_core::error::ConfigError(
                    format!("a MySQL server refused this program's settings: {line}"),
                )),
                _ => err.context(UnavailableError(format!(
                    "a MySQL server cannot be reached: {line}"
                ))),
            }
        }
        None => err,
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = match &cli.command {
        Command::Run(args) => PoolSettings {
            lock_wait_secs: args.lock_wait_secs,
            ..PoolSettings::default()
        },
        _ => PoolSettings::default(),
    };
    let deployment = db::connect_with(&cli.db, settings)?;
    let result = dispatch(&cli, &deployment).await;
    deployment.close().await;
    result.map_err(classify)
}

/// What a command connects to before it starts (`run` probes its own shards itself; `status`
/// reads every shard it can and says which it cannot).
fn needs(command: &Command) -> Option<Needs> {
    match command {
        Command::Migrate | Command::DemoData { .. } => Some(Needs::Servers),
        Command::Enqueue { .. } | Command::Props { .. } => Some(Needs::Ppcdict),
        Command::History { .. } => Some(Needs::Shards),
        Command::Run(_) | Command::Status { .. } => None,
    }
}

async fn dispatch(cli: &Cli, dep: &Deployment) -> anyhow::Result<()> {
    let clock = RunClock::new(cli.clock.now);
    if let Some(needs) = needs(&cli.command) {
        dep.probe(needs, CONNECT_TIMEOUT).await?;
    }
    match &cli.command {
        Command::Migrate => {
            for line in schema::migrate(dep).await? {
                println!("{line}");
            }
        }
        Command::DemoData {
            clients,
            campaigns,
            banners,
            phrases,
        } => {
            schema::migrate(dep).await?;
            let demo = demo::Demo {
                clients: *clients,
                campaigns: *campaigns,
                banners: *banners,
                phrases: *phrases,
            };
            println!("{}", demo::load(dep, demo, clock.now()).await?);
        }
        Command::Enqueue { what } => enqueue(dep, what, clock).await?,
        Command::Run(args) => {
            Worker {
                deployment: dep,
                args,
                launched: cli.copy_workers,
                clock,
            }
            .run()
            .await?
        }
        Command::Status { json } => {
            let status = status::collect(dep, clock.now()).await;
            if *json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", status::render(&status));
            }
            if let Some(err) = status::failure(&status) {
                return Err(err);
            }
        }
        Command::Props { what } => match what {
            Props::Get { name: Some(name) } => {
                props::known(name).map_err(config_error)?;
                println!(
                    "{}",
                    props::get(&dep.ppcdict, name).await?.unwrap_or_default()
                );
            }
            Props::Get { name: None } => {
                let values = props::get_all(&dep.ppcdict).await?;
                for (name, about) in props::KNOWN {
                    println!("{name} = {}\n    {about}", values.get(name));
                }
            }
            Props::Set { name, value } => {
                props::validate(name, value, dep.shards.len() as u32, cli.copy_workers)
                    .map_err(|e| config_error(format!("property `{name}` not changed: {e}")))?;
                props::set(&dep.ppcdict, name, value).await?;
                println!("{name} = {value}");
            }
        },
        Command::History { cid } => {
            let lines = status::history(dep, *cid).await?;
            if lines.is_empty() {
                println!("campaign {cid}: no queue events on any shard");
            }
            for line in lines {
                println!("{line}");
            }
        }
    }
    Ok(())
}

async fn enqueue(dep: &Deployment, what: &Enqueue, clock: RunClock) -> anyhow::Result<()> {
    let campaign_shard = |cid: u64| async move {
        let (client, shard) = dep.campaign_home(cid).await?.ok_or_else(|| {
            anyhow::anyhow!("campaign {cid} does not exist (not in ppcdict.shard_inc_cid)")
        })?;
        let shard = dep.shard(shard)?;
        let found: Option<(u64,)> = sqlx::query_as("SELECT cid FROM campaigns WHERE cid = ?")
            .bind(cid)
            .fetch_optional(&shard.pool)
            .await
            .with_context(|| format!("reading shard {}", shard.number))?;
        anyhow::ensure!(
            found.is_some(),
            "campaign {cid} does not exist on its shard {}",
            shard.number
        );
        anyhow::Ok((client, shard))
    };
    match what {
        Enqueue::Copy {
            cid,
            from_client,
            to_client,
            role,
        } => {
            if dep.client_shard(*to_client).await?.is_none() {
                anyhow::bail!(
                    "client {to_client} does not exist (not in ppcdict.shard_client_id); nothing queued"
                );
            }
            if let Some(from) = from_client {
                let shard = dep.client_shard(*from).await?.ok_or_else(|| {
                    anyhow::anyhow!("client {from} does not exist (not in ppcdict.shard_client_id)")
                })?;
                let shard = dep.shard(shard)?;
                let n = queue::enqueue_client_copies(shard, *from, *to_client, *role, clock.now())
                    .await?;
                println!(
                    "queued {n} copies of client {from}'s campaigns to client {to_client} on shard {} (role {})",
                    shard.number,
                    role.as_str()
                );
                return Ok(());
            }
            let cid = cid.expect("clap requires --cid or --from-client");
            let (client, shard) = campaign_shard(cid).await?;
            let req = CopyRequest {
                cid,
                client,
                to_client: *to_client,
                role: *role,
            };
            queue::enqueue_copy(shard, &req, clock.now()).await?;
            println!(
                "queued a copy of campaign {cid} (client {client}, shard {}) to client {to_client} (role {})",
                shard.number,
                role.as_str()
            );
        }
        Enqueue::Arc { cid } | Enqueue::Unarc { cid } | Enqueue::Del { cid } => {
            let op = match what {
                Enqueue::Arc { .. } => Operation::Arc,
                Enqueue::Unarc { .. } => Operation::Unarc,
                _ => Operation::Del,
            };
            let (_, shard) = campaign_shard(*cid).await?;
            queue::enqueue_rest(shard, *cid, op, clock.now()).await?;
            println!(
                "queued {} of campaign {cid} on shard {}",
                op.as_str(),
                shard.number
            );
        }
    }
    Ok(())
}
