//! Cross-binary test support: every binary's command definition, and paths of the built
//! binaries (tests here run the real executables as an operator or systemd would).

use std::path::PathBuf;

use clap::CommandFactory;

/// The clap definition of every binary in the workspace.
pub fn all_commands() -> Vec<clap::Command> {
    vec![
        ingest_qtickets::Cli::command(),
        ingest_vk::Cli::command(),
        ingest_direct::Cli::command(),
        ingest_gmail::Cli::command(),
        alerts::Cli::command(),
        healthcheck::Cli::command(),
        camp_queue::Cli::command(),
        manage_timers::Cli::command(),
        api_sandbox::Cli::command(),
    ]
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace root")
        .to_owned()
}

/// A built binary of the workspace (`scripts/test.sh` builds them all first).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/e2e-HASH → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "binary `{}` is not built; run `cargo build --workspace` first (scripts/test.sh does)",
        path.display()
    );
    path
}
