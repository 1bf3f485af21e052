//! `ingest-gmail`: Loads sales reports sent by e-mail (Gmail backup channel) into ClickHouse.
//!
//! Not built yet: the command parses the common settings and says so. Its design is in
//! `docs/architecture.md`; the shared pieces it will use live in `zakaz-core`.

use clap::Parser;
use zakaz_core::cli::{CommonArgs, JobCli};

#[derive(Debug, Parser)]
#[command(
    name = "ingest-gmail",
    version,
    about = "Loads sales reports sent by e-mail (Gmail backup channel) into ClickHouse"
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
    anyhow::bail!("`ingest-gmail` is not implemented yet")
}
