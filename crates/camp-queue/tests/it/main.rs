//! `camp-queue` end to end: the real binary against real MariaDB servers — the system one
//! (127.0.0.1:3306) and the extra instances `scripts/mariadb-shards.sh` starts — with shards
//! spread over them, so a copy into another shard crosses servers. Every test has its own
//! databases (dropped at the end); expected values come from the test's own reading of the
//! rows, never from the queue's code.

mod crash;
mod enqueue;
mod errors;
mod fairness;
mod identity;
mod parallel;
mod retries;
mod settings;
mod workers;

pub use camp_queue::testing::{TestStand as Stand, Worker};

pub const T0: &str = "2026-12-01T09:00:00Z";

/// A deployment of the test's own, spread over every MariaDB server.
pub fn stand(shards: u32) -> Stand {
    Stand::new(env!("CARGO_BIN_EXE_camp-queue"), shards)
}
