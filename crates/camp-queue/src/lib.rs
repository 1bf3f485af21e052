//! `camp-queue`: Workers of the sharded campaign copy/archive/delete queue.
//!
//! Not built yet: the command parses the common settings and says so. Its design is in
//! `docs/architecture.md`; the shared pieces it will use live in `zakaz-core`.

use clap::Parser;
use zakaz_core::cli::{CommonArgs, JobCli};

#[derive(Debug, Parser)]
#[command(
    name = "camp-queue",
    version,
    about = "Workers of the sharded campaign copy/archive/delete queue"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
}

impl JobCli for Cli {
    fn common(&self) -> &CommonArgs {
        &self.common
    }
}

pub async fn run(_cli: Cli) -> anyhow::Result<()> {
    anyhow::bail!("`camp-queue` is not implemented yet")
}
