//! What the loader benchmarks share.

use std::path::PathBuf;

/// The release loader next to the benchmark binary (`scripts/bench.sh` builds it first).
pub fn release_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("ingest-qtickets");
    assert!(
        path.exists(),
        "build it first: cargo build --release -p ingest-qtickets"
    );
    path
}
