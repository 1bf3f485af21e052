//! The shared library of the zakaz jobs: everything two binaries would otherwise write twice.

pub mod ads;
/// Benchmark support (drives release binaries; not used by the jobs themselves).
pub mod bench;
pub mod calendar;
pub mod ch;
pub mod checks;
pub mod cli;
pub mod env_file;
pub mod error;
pub mod http;
pub mod jobs;
pub mod journal;
pub mod lease;
pub mod logging;
pub mod loose;
pub mod money;
pub mod panic;
pub mod progress;
pub mod replicas;
pub mod rowbinary;
pub mod schema;
pub mod secret;
pub mod settings;
pub mod state;
/// Test support shared by every crate's tests (small; no extra dependencies).
pub mod testing;
pub mod time;
pub mod utm;

pub use secret::Secret;
