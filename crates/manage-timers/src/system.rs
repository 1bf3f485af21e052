//! The system tools `manage-timers` drives: systemctl, journalctl, systemd-analyze, useradd.
//! Through their command lines with machine-readable output, every failure one clear line.

use std::process::{Command, Output, Stdio};

use zakaz_core::error::UnavailableError;

use crate::front::noperm_error;

/// `systemctl`/`journalctl` for the system manager, or the user's (`--user`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    System,
    User,
}

impl Scope {
    fn flag(self) -> Option<&'static str> {
        match self {
            Scope::System => None,
            Scope::User => Some("--user"),
        }
    }
}

fn output(program: &str, args: &[&str]) -> anyhow::Result<Output> {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            UnavailableError(format!(
                "cannot run `{program}`: {e} (is systemd installed?)"
            ))
            .into()
        })
}

/// Whether a tool's error says the manager cannot be reached (not booted with systemd, no
/// bus): exit 69, not a failure of the command.
fn unreachable(stderr: &str) -> bool {
    [
        "System has not been booted with systemd",
        "Failed to connect to bus",
        "Failed to connect to system scope bus",
        "Failed to connect to user scope bus",
        "Host is down",
    ]
    .iter()
    .any(|m| stderr.contains(m))
}

fn stderr_line(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr);
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Run a tool; fail with its own error line when it fails.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = output(program, args)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else if unreachable(&stderr_line(&out)) {
        Err(UnavailableError(format!(
            "systemd is not reachable: `{program} {}` said: {}",
            args.join(" "),
            stderr_line(&out)
        ))
        .into())
    } else {
        Err(anyhow::anyhow!(
            "`{program} {}` failed: {}",
            args.join(" "),
            stderr_line(&out)
        ))
    }
}

pub fn systemctl(scope: Scope, args: &[&str]) -> anyhow::Result<String> {
    let mut all: Vec<&str> = scope.flag().into_iter().collect();
    all.extend_from_slice(args);
    run("systemctl", &all)
}

/// `systemctl show UNIT -p A -p B`, as pairs.
pub fn show(scope: Scope, unit: &str, props: &[&str]) -> anyhow::Result<Vec<(String, String)>> {
    show_with(scope, unit, props, &[])
}

/// `show` with more flags (`--timestamp=unix`).
pub fn show_with(
    scope: Scope,
    unit: &str,
    props: &[&str],
    flags: &[&str],
) -> anyhow::Result<Vec<(String, String)>> {
    let mut args = vec!["show", unit];
    args.extend_from_slice(flags);
    for p in props {
        args.push("-p");
        args.push(p);
    }
    let text = systemctl(scope, &args)?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect())
}

/// Run `journalctl` with the terminal attached (for `logs -f`).
pub fn journalctl_interactive(scope: Scope, args: &[&str]) -> anyhow::Result<()> {
    let mut all: Vec<&str> = scope.flag().into_iter().collect();
    all.extend_from_slice(args);
    let status = Command::new("journalctl")
        .args(&all)
        .status()
        .map_err(|e| UnavailableError(format!("cannot run `journalctl`: {e}")))?;
    anyhow::ensure!(status.success(), "`journalctl {}` failed", all.join(" "));
    Ok(())
}

pub fn journalctl(scope: Scope, args: &[&str]) -> anyhow::Result<String> {
    let mut all: Vec<&str> = scope.flag().into_iter().collect();
    all.extend_from_slice(args);
    run("journalctl", &all)
}

/// Whether this process runs as root (from /proc: no libc needed).
pub fn is_root() -> bool {
    effective_uid() == Some(0)
}

/// The effective user id of this process (from /proc).
pub fn effective_uid() -> Option<u32> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2)?.parse().ok())
        })
}

/// Fail before doing anything when a system-wide command is run without root (exit 77).
pub fn require_root(command: &str, scope: Scope) -> anyhow::Result<()> {
    if scope == Scope::System && !is_root() {
        return Err(noperm_error(format!(
            "`manage-timers {command}` changes system units and needs root: run it with sudo (or use --user for a per-user install)"
        )));
    }
    Ok(())
}

pub fn user_exists(name: &str) -> bool {
    output("getent", &["passwd", name]).is_ok_and(|o| o.status.success())
}

/// A tool's whole output, whatever its exit status: (success, stdout, stderr).
pub fn run_any(program: &str, args: &[&str]) -> anyhow::Result<(Option<i32>, String, String)> {
    let out = output(program, args)?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Whether systemd runs as the system manager here (not true in most containers).
pub fn systemd_running() -> bool {
    std::path::Path::new("/run/systemd/system").is_dir()
}
