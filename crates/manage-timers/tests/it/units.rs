use std::path::{Path, PathBuf};
use std::process::Command;

use manage_timers::units::{Layout, render_all};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_owned()
}

#[test]
fn committed_units_match_the_job_table() {
    let dir = repo_root().join("systemd");
    let rendered = render_all(&Layout::default());
    let mut committed: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    committed.sort();
    let mut names: Vec<String> = rendered.iter().map(|u| u.name.clone()).collect();
    names.sort();
    assert_eq!(
        committed, names,
        "systemd/ holds exactly the generated units"
    );
    for unit in rendered {
        let on_disk = std::fs::read_to_string(dir.join(&unit.name)).unwrap();
        assert!(
            on_disk == unit.content,
            "systemd/{} drifted from the job table: run `manage-timers generate`",
            unit.name
        );
    }
    // The CLI's own check agrees.
    manage_timers_ok(&[
        "generate".as_ref(),
        "--check".as_ref(),
        "--out".as_ref(),
        dir.as_os_str(),
    ]);
}

/// Run manage-timers; it must succeed.
fn manage_timers_ok(args: &[&std::ffi::OsStr]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_manage-timers"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Units for a prefix in a temporary directory whose binaries exist (verify checks them).
fn units_with_binaries() -> (tempdir::Dir, PathBuf) {
    let tmp = tempdir::Dir::new("units");
    let prefix = tmp.path().join("opt");
    std::fs::create_dir_all(prefix.join("bin")).unwrap();
    for bin in manage_timers::install::BINARIES {
        // Stand-ins: verify checks only that each ExecStart exists and is executable.
        let path = prefix.join("bin").join(bin);
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    let units = tmp.path().join("units");
    manage_timers_ok(&[
        "generate".as_ref(),
        "--out".as_ref(),
        units.as_os_str(),
        "--prefix".as_ref(),
        prefix.as_os_str(),
    ]);
    (tmp, units)
}

#[test]
fn every_unit_verifies_and_every_service_is_exposed_at_most_2_0() {
    let (_tmp, units) = units_with_binaries();
    let out = Command::new(env!("CARGO_BIN_EXE_manage-timers"))
        .args(["verify", "--unit-dir"])
        .arg(&units)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("systemd-analyze verify: 17 units clean"),
        "{stdout}"
    );
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("calendar ok"))
            .count(),
        // Five job timers and the queue's four worker timers of its one shard.
        9,
        "{stdout}"
    );
    let exposures: Vec<f64> = stdout
        .lines()
        .filter(|l| l.ends_with(" OK") || l.ends_with("TOO HIGH"))
        .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(exposures.len(), 8, "{stdout}");
    assert!(exposures.iter().all(|e| *e <= 2.0), "{stdout}");
}

#[test]
fn verify_catches_a_broken_unit() {
    let (_tmp, units) = units_with_binaries();
    let timer = units.join("qtickets.timer");
    let text = std::fs::read_to_string(&timer)
        .unwrap()
        .replace("OnCalendar=*:0/15", "OnCalendar=every quarter hour");
    std::fs::write(&timer, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_manage-timers"))
        .args(["verify", "--unit-dir"])
        .arg(&units)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid calendar `every quarter hour`"),
        "{err}"
    );
}

/// A tiny temporary directory, removed on drop.
mod tempdir {
    pub struct Dir(std::path::PathBuf);
    impl Dir {
        pub fn new(tag: &str) -> Dir {
            let path = std::env::temp_dir().join(format!(
                "zakaz-{tag}-{}-{}",
                std::process::id(),
                rand_suffix()
            ));
            std::fs::create_dir_all(&path).unwrap();
            Dir(path)
        }
        pub fn path(&self) -> &std::path::Path {
            &self.0
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn rand_suffix() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    }
}
