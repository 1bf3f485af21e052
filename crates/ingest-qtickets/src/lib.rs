//! `ingest-qtickets`: Loads ticket sales, events and inventory from QTickets into ClickHouse.
//!
//! Not built yet: the command parses the common settings and says so. Its design is in
//! `docs/architecture.md`; the shared pieces it will use live in `zakaz-core`.

use clap::Parser;
use zakaz_core::cli::{CommonArgs, JobCli};

#[derive(Debug, Parser)]
#[command(
    name = "ingest-qtickets",
    version,
    about = "Loads ticket sales, events and inventory from QTickets into ClickHouse"
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
    anyhow::bail!("`ingest-qtickets` is not implemented yet")
}
