//! `generate`, `install` and `uninstall`: files on disk, owners and modes, enabling.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use zakaz_core::error::config_error;
use zakaz_core::jobs::JOBS;

use crate::LayoutArgs;
use crate::system::{self, Scope};
use crate::units::{self, Layout, MANAGED_MARKER, UnitFile};

/// Binaries a deployment needs in PREFIX/bin.
pub const BINARIES: &[&str] = &[
    "ingest-qtickets",
    "ingest-vk",
    "ingest-direct",
    "ingest-gmail",
    "alerts",
    "healthcheck",
    "camp-queue",
    "manage-timers",
];

pub fn generate(out: &Path, prefix: &Path, check: bool) -> anyhow::Result<()> {
    let layout = Layout {
        prefix: prefix.to_owned(),
        ..Layout::default()
    };
    let rendered = units::render_all(&layout);
    if check {
        let drift: Vec<String> = rendered
            .iter()
            .filter(|u| {
                fs::read_to_string(out.join(&u.name)).ok().as_deref() != Some(u.content.as_str())
            })
            .map(|u| u.name.clone())
            .collect();
        anyhow::ensure!(
            drift.is_empty(),
            "units in `{}` differ from the job table: {} (run `manage-timers generate --out {}`)",
            out.display(),
            drift.join(", "),
            out.display()
        );
        println!(
            "{} units in {} match the job table",
            rendered.len(),
            out.display()
        );
        return Ok(());
    }
    fs::create_dir_all(out)
        .map_err(|e| anyhow::anyhow!("cannot create `{}`: {e}", out.display()))?;
    for unit in &rendered {
        write_if_changed(&out.join(&unit.name), &unit.content, 0o644)?;
    }
    println!("wrote {} units to {}", rendered.len(), out.display());
    Ok(())
}

/// Write a file when its content differs; returns whether it changed. Written to a temporary
/// name in the same directory and renamed, so a reader never sees half a file and a symbolic
/// link at `path` is replaced, never written through.
fn write_if_changed(path: &Path, content: &str, mode: u32) -> anyhow::Result<bool> {
    let is_link = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if !is_link && fs::read_to_string(path).ok().as_deref() == Some(content) {
        return Ok(false);
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.manage-timers-{}", std::process::id()));
    let fail = |e: std::io::Error| anyhow::anyhow!("cannot write `{}`: {e}", path.display());
    fs::write(&tmp, content).map_err(fail)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).map_err(fail)?;
    fs::rename(&tmp, path).map_err(fail)?;
    Ok(true)
}

/// What stands at a unit's path before `install` writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Existing {
    Nothing,
    /// A file whose first line is the marker.
    Ours,
    /// A file manage-timers did not write.
    Foreign,
    /// A symbolic link (a masked unit links to `/dev/null`), with its target.
    Link(PathBuf),
}

/// Look at `path` without following a link.
pub fn existing(path: &Path) -> anyhow::Result<Existing> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Existing::Nothing),
        Err(e) => Err(anyhow::anyhow!("cannot read `{}`: {e}", path.display())),
        Ok(m) if m.file_type().is_symlink() => {
            Ok(Existing::Link(fs::read_link(path).unwrap_or_default()))
        }
        Ok(_) => {
            let text = fs::read_to_string(path).unwrap_or_default();
            Ok(if text.lines().next() == Some(MANAGED_MARKER) {
                Existing::Ours
            } else {
                Existing::Foreign
            })
        }
    }
}

fn ids(user: &str) -> anyhow::Result<(u32, u32)> {
    let uid = system::run("id", &["-u", user])?.trim().parse()?;
    let gid = system::run("id", &["-g", user])?.trim().parse()?;
    Ok((uid, gid))
}

/// A directory with an owner and a mode; reports what it did.
fn ensure_dir(
    path: &Path,
    mode: u32,
    owner: Option<(u32, u32)>,
    report: &mut Vec<String>,
) -> anyhow::Result<()> {
    let existed = path.is_dir();
    fs::create_dir_all(path)
        .map_err(|e| anyhow::anyhow!("cannot create `{}`: {e}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(|e| anyhow::anyhow!("cannot chown `{}`: {e}", path.display()))?;
    }
    if !existed {
        report.push(format!("created {} ({:o})", path.display(), mode));
    }
    Ok(())
}

pub fn install(
    args: &LayoutArgs,
    binaries: Option<&Path>,
    force: bool,
    no_enable: bool,
) -> anyhow::Result<()> {
    let scope = args.scope();
    system::require_root("install", scope)?;
    let layout = args.layout()?;
    let unit_dir = args.unit_dir()?;
    let mut report = Vec::new();

    // Every unit path is checked before anything is written, so a refusal leaves nothing
    // half-installed.
    let rendered = units::render_all(&layout);
    let mut before = Vec::with_capacity(rendered.len());
    let mut refusals = Vec::new();
    for unit in &rendered {
        let path = unit_dir.join(&unit.name);
        let found = existing(&path)?;
        match &found {
            Existing::Link(target) => refusals.push(format!(
                "`{}` is a symbolic link to `{}` (a masked unit?): unmask or remove it first",
                path.display(),
                target.display()
            )),
            Existing::Foreign if !force => refusals.push(format!(
                "`{}` was not written by manage-timers (move it away or pass --force)",
                path.display()
            )),
            _ => {}
        }
        before.push(found);
    }
    if !refusals.is_empty() {
        return Err(config_error(format!(
            "refusing to install, nothing was changed: {}",
            refusals.join("; ")
        )));
    }

    // The user and the tree: secrets readable by root only (systemd reads them), logs and
    // state writable by the jobs, everything else read-only for them.
    let owner = match &layout.user {
        Some(user) => {
            if !system::user_exists(user) {
                system::run(
                    "useradd",
                    &[
                        "--system",
                        "--user-group",
                        "--home-dir",
                        &layout.prefix.display().to_string(),
                        "--no-create-home",
                        "--shell",
                        "/usr/sbin/nologin",
                        user,
                    ],
                )?;
                report.push(format!("created system user {user}"));
            }
            Some(ids(user)?)
        }
        None => None,
    };
    let root = owner.map(|_| (0, 0));
    // An existing prefix (say, a home directory) keeps its owner and mode.
    if !layout.prefix.is_dir() {
        ensure_dir(&layout.prefix, 0o755, root, &mut report)?;
    }
    ensure_dir(&layout.bin(), 0o755, root, &mut report)?;
    ensure_dir(&layout.secrets(), 0o700, root, &mut report)?;
    ensure_dir(&layout.logs(), 0o750, owner, &mut report)?;
    ensure_dir(&layout.state(), 0o700, owner, &mut report)?;
    let mut env_files: Vec<&str> = JOBS.iter().map(|j| j.env_file).collect();
    env_files.dedup();
    for env_file in env_files {
        let path = layout.prefix.join(env_file);
        if !path.exists() {
            // Every setting of the job's binary, commented out with its default.
            let example = JOBS
                .iter()
                .find(|j| j.env_file == env_file)
                .map_or("", crate::env_example);
            fs::write(&path, example)?;
            report.push(format!(
                "created {} (0600, every setting listed: fill in the required ones)",
                path.display()
            ));
        }
        if matches!(existing(&path)?, Existing::Link(_)) {
            report.push(format!(
                "left {} alone: it is a symbolic link (make its target 0600 yourself)",
                path.display()
            ));
        } else {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
        }
    }
    if let Some(dir) = binaries {
        for name in BINARIES {
            let from = dir.join(name);
            if !from.exists() {
                return Err(config_error(format!(
                    "`--binaries {}` has no `{name}`",
                    dir.display()
                )));
            }
            let to = layout.bin().join(name);
            if fs::read(&to).ok() != Some(fs::read(&from)?) {
                // Copy to a temporary name and rename: a running job keeps its old binary.
                let tmp = to.with_extension("new");
                fs::copy(&from, &tmp)?;
                fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
                fs::rename(&tmp, &to)?;
                report.push(format!("installed {}", to.display()));
            }
        }
    }

    install_docs(&layout, scope, &mut report)?;

    fs::create_dir_all(&unit_dir)
        .map_err(|e| anyhow::anyhow!("cannot create `{}`: {e}", unit_dir.display()))?;
    let mut unchanged = 0;
    for unit in &rendered {
        let path = unit_dir.join(&unit.name);
        if write_if_changed(&path, &unit.content, 0o644)? {
            report.push(format!("wrote {}", path.display()));
        } else {
            unchanged += 1;
        }
    }
    if unchanged > 0 {
        report.push(format!(
            "{unchanged} unit(s) already as they should be: unchanged"
        ));
    }

    // Worker timers of shards the deployment no longer has (fewer `--queue-shards`).
    for path in units::installed_worker_timers(&unit_dir) {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if !rendered.iter().any(|u| u.name == name) {
            if system::systemd_running() || scope == Scope::User {
                let _ = system::systemctl(scope, &["disable", "--now", &name]);
            }
            fs::remove_file(&path)?;
            report.push(format!(
                "removed {} (beyond --queue-shards {})",
                path.display(),
                layout.queue_shards
            ));
        }
    }

    if system::systemd_running() || scope == Scope::User {
        system::systemctl(scope, &["daemon-reload"])?;
        report.push("reloaded systemd".to_owned());
    } else {
        report.push(
            "systemd is not running here: units written, nothing reloaded or started".to_owned(),
        );
    }
    if !no_enable {
        for job in JOBS.iter().filter(|j| j.enabled_by_default) {
            let unit = if job.is_timer() {
                format!("{}.timer", job.name)
            } else {
                format!("{}.service", job.name)
            };
            // An upgrade keeps the operator's choice: a unit that was already installed is
            // enabled or disabled as they left it.
            let was_ours = rendered
                .iter()
                .zip(&before)
                .any(|(u, b)| u.name == unit && *b == Existing::Ours);
            if was_ours {
                continue;
            }
            let mut cmd = vec!["enable"];
            if system::systemd_running() || scope == Scope::User {
                cmd.push("--now");
            }
            cmd.push(&unit);
            system::systemctl(scope, &cmd)?;
            report.push(format!("enabled {unit}"));
        }
    }
    for line in &report {
        println!("{line}");
    }
    println!(
        "install complete: {} units in {}, prefix {}; fill in {}/*.env, then `manage-timers status`",
        rendered.len(),
        unit_dir.display(),
        layout.prefix.display(),
        layout.secrets().display()
    );
    Ok(())
}

/// Where the system looks for shell completions and man pages: `/etc/bash_completion.d/`
/// and `/usr/local/share/man/man1/`; for a per-user install the user's
/// `~/.local/share/bash-completion/completions/` and `~/.local/share/man/man1/`.
pub fn doc_dirs(scope: Scope) -> Option<(PathBuf, PathBuf)> {
    match scope {
        Scope::System => Some((
            PathBuf::from("/etc/bash_completion.d"),
            PathBuf::from("/usr/local/share/man/man1"),
        )),
        Scope::User => {
            let home = PathBuf::from(std::env::var_os("HOME")?);
            let share = home.join(".local/share");
            Some((
                share.join("bash-completion/completions"),
                share.join("man/man1"),
            ))
        }
    }
}

/// Bash completions and a man page of every installed binary, generated by the binary itself
/// (`--completions bash`, `--man`), so they always match its flags. A binary that is missing
/// or cannot generate them is reported, never fatal.
fn install_docs(layout: &Layout, scope: Scope, report: &mut Vec<String>) -> anyhow::Result<()> {
    let Some((completions, man)) = doc_dirs(scope) else {
        report.push("no HOME: completions and man pages not installed".to_owned());
        return Ok(());
    };
    for name in BINARIES {
        let binary = layout.bin().join(name);
        if !binary.exists() {
            continue;
        }
        for (args, dir, file) in [
            (
                &["--completions", "bash"][..],
                &completions,
                name.to_string(),
            ),
            (&["--man"][..], &man, format!("{name}.1")),
        ] {
            let out = std::process::Command::new(&binary)
                .args(args)
                .env_clear()
                .output();
            let text = match out {
                Ok(o) if o.status.success() && !o.stdout.is_empty() => {
                    String::from_utf8_lossy(&o.stdout).into_owned()
                }
                _ => {
                    report.push(format!(
                        "{name} could not generate `{}`: skipped",
                        args.join(" ")
                    ));
                    continue;
                }
            };
            fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("cannot create `{}`: {e}", dir.display()))?;
            let path = dir.join(&file);
            if write_if_changed(&path, &text, 0o644)? {
                report.push(format!("wrote {}", path.display()));
            }
        }
    }
    Ok(())
}

/// Remove what [`install_docs`] wrote.
fn uninstall_docs(scope: Scope) {
    let Some((completions, man)) = doc_dirs(scope) else {
        return;
    };
    for name in BINARIES {
        for path in [completions.join(name), man.join(format!("{name}.1"))] {
            // Only ours: generated for this very binary name.
            let ours = fs::read_to_string(&path).is_ok_and(|t| t.contains(name));
            if ours && fs::remove_file(&path).is_ok() {
                println!("removed {}", path.display());
            }
        }
    }
}

pub fn uninstall(args: &LayoutArgs) -> anyhow::Result<()> {
    let scope = args.scope();
    system::require_root("uninstall", scope)?;
    let unit_dir = args.unit_dir()?;
    let layout = args.layout()?;
    let mut ours: Vec<(UnitFile, PathBuf)> = units::render_all(&layout)
        .into_iter()
        .map(|u| {
            let path = unit_dir.join(&u.name);
            (u, path)
        })
        .filter(|(_, path)| matches!(existing(path), Ok(Existing::Ours)))
        .collect();
    // Worker timers of shards beyond this layout's count (an install with more shards).
    for path in units::installed_worker_timers(&unit_dir) {
        if !ours.iter().any(|(_, p)| *p == path) {
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            ours.push((
                UnitFile {
                    name,
                    content: String::new(),
                },
                path,
            ));
        }
    }
    let running = system::systemd_running() || scope == Scope::User;
    for (unit, path) in &ours {
        // Templates (`…@.service`) cannot be disabled; worker instance timers can.
        if running && !unit.name.contains("@.") {
            // Not all of them are enabled or running: failures here are not errors.
            let _ = system::systemctl(scope, &["disable", "--now", &unit.name]);
        }
        fs::remove_file(path)?;
        println!("removed {}", path.display());
    }
    if running {
        system::systemctl(scope, &["daemon-reload"])?;
    }
    uninstall_docs(scope);
    println!(
        "uninstalled {} units; kept {} (secrets, logs, state, binaries) and the `etl` user",
        ours.len(),
        layout.prefix.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("zakaz-install-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_marker_counts_only_as_the_first_line_and_links_are_seen_as_links() {
        let dir = temp_dir("existing");
        let ours = dir.join("a.service");
        fs::write(&ours, format!("{MANAGED_MARKER}\n[Unit]\n")).unwrap();
        let foreign = dir.join("b.service");
        fs::write(&foreign, format!("[Unit]\n{MANAGED_MARKER}\n")).unwrap();
        let target = dir.join("target");
        fs::write(&target, format!("{MANAGED_MARKER}\n")).unwrap();
        let link = dir.join("c.timer");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(existing(&ours).unwrap(), Existing::Ours);
        assert_eq!(existing(&foreign).unwrap(), Existing::Foreign);
        assert_eq!(existing(&link).unwrap(), Existing::Link(target.clone()));
        assert_eq!(existing(&dir.join("none")).unwrap(), Existing::Nothing);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn writing_replaces_a_link_and_never_touches_its_target() {
        let dir = temp_dir("write");
        let target = dir.join("target");
        fs::write(&target, "the test's own file\n").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.join("x.service");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(write_if_changed(&link, "new\n", 0o644).unwrap());
        assert_eq!(
            fs::read_to_string(&target).unwrap(),
            "the test's own file\n"
        );
        assert_eq!(
            fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(
            !fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read_to_string(&link).unwrap(), "new\n");
        assert!(
            !write_if_changed(&link, "new\n", 0o644).unwrap(),
            "unchanged"
        );
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 2);
        fs::remove_dir_all(&dir).unwrap();
    }
}
