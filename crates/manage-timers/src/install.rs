//! `generate`, `install` and `uninstall`: files on disk, owners and modes, enabling.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

use zakaz_core::error::config_error;
use zakaz_core::jobs::JOBS;

use crate::system::{self, Scope};
use crate::units::{self, Layout, MANAGED_MARKER, UnitFile};
use crate::{ChoiceArgs, PlaceArgs};

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

/// Binaries an operator types: linked into `/usr/local/bin` (a `--user` install:
/// `~/.local/bin`), so `sudo manage-timers …` and `camp-queue …` work as the runbook says.
pub const ON_PATH: &[&str] = &["manage-timers", "camp-queue"];

/// The docs `install` puts in PREFIX/docs, where every unit's `Documentation=` points.
pub const DOCS: &[(&str, &str)] = &[
    (
        "runbook.md",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/runbook.md"
        )),
    ),
    (
        "runbook.ru.md",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/runbook.ru.md"
        )),
    ),
    (
        "security.md",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/security.md"
        )),
    ),
];

/// The file under the prefix that remembers an install's choices.
pub const RECORD: &str = "install.json";

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

/// `create_dir_all`, with every directory it creates 0755 whatever the umask: a root umask
/// of 077 would leave a new parent (`/srv/zakaz` of `--prefix /srv/zakaz/prod`, a man page
/// directory) unreadable to the jobs' user and to every other user.
fn create_dirs(path: &Path) -> anyhow::Result<()> {
    let missing: Vec<&Path> = path.ancestors().take_while(|p| !p.exists()).collect();
    fs::create_dir_all(path)
        .map_err(|e| anyhow::anyhow!("cannot create `{}`: {e}", path.display()))?;
    for dir in missing {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

/// A directory with an owner and a mode; reports what it did.
fn ensure_dir(
    path: &Path,
    mode: u32,
    owner: Option<(u32, u32)>,
    report: &mut Vec<String>,
) -> anyhow::Result<()> {
    let existed = path.is_dir();
    create_dirs(path)?;
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

/// Set on the `manage-timers` an install hands over to, so that it never hands over again.
const HANDED_OVER: &str = "ZAKAZ_INSTALL_HANDED_OVER";

/// An upgrade (`install --binaries DIR`) is usually typed as the installed, older
/// `manage-timers`, whose units, docs and binary list are its own release's. When `DIR`
/// holds another `manage-timers`, the install is handed to it (the same arguments, this
/// process replaced), so the new release writes its own units. Returns only when there is
/// nothing to hand over.
pub fn hand_over_to_the_new_release(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let new = dir.join("manage-timers");
    if std::env::var_os(HANDED_OVER).is_some() || !new.is_file() {
        return Ok(());
    }
    let running = std::env::current_exe()?;
    let same = |a: &Path, b: &Path| -> std::io::Result<bool> {
        if fs::canonicalize(a)? == fs::canonicalize(b)? {
            return Ok(true);
        }
        Ok(fs::metadata(a)?.len() == fs::metadata(b)?.len() && fs::read(a)? == fs::read(b)?)
    };
    if same(&running, &new)? {
        return Ok(());
    }
    eprintln!(
        "manage-timers: handing the install to {} (the new release writes its own units)",
        new.display()
    );
    let err = std::process::Command::new(&new)
        .args(std::env::args_os().skip(1))
        .env(HANDED_OVER, "1")
        .exec();
    Err(anyhow::anyhow!(
        "cannot run `{}` to install its release: {err}",
        new.display()
    ))
}

/// An install's remembered choices (`PREFIX/install.json`, root-owned 0644).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Remembered {
    pub prefix: PathBuf,
    pub unit_dir: PathBuf,
    /// `None`: no network fence.
    pub ip_allow: Option<String>,
    pub queue_shards: u32,
}

/// Where an install is and what it chose: the flags, else what the last install remembered,
/// else the defaults.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub scope: Scope,
    pub now: Remembered,
    /// What the last install remembered, if one did.
    pub before: Option<Remembered>,
}

impl Resolved {
    pub fn layout(&self) -> Layout {
        Layout {
            prefix: self.now.prefix.clone(),
            user: (self.scope == Scope::System).then(|| "etl".to_owned()),
            ip_allow: self.now.ip_allow.clone(),
            queue_shards: self.now.queue_shards,
        }
    }
    pub fn unit_dir(&self) -> &Path {
        &self.now.unit_dir
    }
    pub fn record(&self) -> PathBuf {
        self.now.prefix.join(RECORD)
    }
}

fn home() -> anyhow::Result<PathBuf> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .ok_or_else(|| config_error("`HOME` is not set; pass --prefix and --unit-dir"))
}

/// The directory the operator-facing binaries are linked into.
pub fn link_dir(scope: Scope) -> Option<PathBuf> {
    match scope {
        Scope::System => Some(PathBuf::from("/usr/local/bin")),
        Scope::User => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/bin")),
    }
}

fn read_record(prefix: &Path) -> anyhow::Result<Option<Remembered>> {
    let path = prefix.join(RECORD);
    match fs::read_to_string(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("cannot read `{}`: {e}", path.display())),
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            config_error(format!(
                "`{}` is not an install record of manage-timers ({e}): fix or remove it",
                path.display()
            ))
        }),
    }
}

/// The prefix of an existing install when none is named: the one the PATH link of
/// `manage-timers` points into, else the one this binary runs from, if it holds a record.
fn discovered_prefix(scope: Scope) -> Option<PathBuf> {
    let from_bin = |exe: &Path| -> Option<PathBuf> {
        let bin = exe.parent()?;
        (bin.file_name()? == "bin").then(|| bin.parent().map(Path::to_owned))?
    };
    let linked = link_dir(scope)
        .map(|d| d.join("manage-timers"))
        .and_then(|l| fs::read_link(l).ok());
    let running = std::env::current_exe().ok();
    [linked, running]
        .into_iter()
        .flatten()
        .filter_map(|exe| from_bin(&exe))
        .find(|p| p.join(RECORD).is_file())
}

/// Resolve the place and the choices of an install.
pub fn resolve(place: &PlaceArgs, choices: Option<&ChoiceArgs>) -> anyhow::Result<Resolved> {
    let scope = place.scope();
    let default_prefix = || -> anyhow::Result<PathBuf> {
        Ok(match scope {
            Scope::System => PathBuf::from("/opt/zakaz_dashboard"),
            Scope::User => home()?.join("zakaz_dashboard"),
        })
    };
    let prefix = match &place.prefix {
        Some(p) => p.clone(),
        None => match discovered_prefix(scope) {
            Some(p) => p,
            None => default_prefix()?,
        },
    };
    if let Some(why) = units::unusable_path(&prefix) {
        return Err(config_error(format!("--prefix: {why}")));
    }
    let before = read_record(&prefix)?;
    let unit_dir = match (&place.unit_dir, &before) {
        (Some(d), _) => d.clone(),
        (None, Some(b)) => b.unit_dir.clone(),
        (None, None) => match scope {
            Scope::System => PathBuf::from("/etc/systemd/system"),
            Scope::User => home()?.join(".config/systemd/user"),
        },
    };
    let ip_allow = match (choices.and_then(|c| c.ip_allow.clone()), &before) {
        (Some(s), _) if s.is_empty() => None,
        (Some(s), _) => Some(s),
        (None, Some(b)) => b.ip_allow.clone(),
        (None, None) => None,
    };
    let queue_shards = match (choices.and_then(|c| c.queue_shards), &before) {
        (Some(n), _) => n,
        (None, Some(b)) => b.queue_shards,
        (None, None) => 1,
    };
    Ok(Resolved {
        scope,
        now: Remembered {
            prefix,
            unit_dir,
            ip_allow,
            queue_shards,
        },
        before,
    })
}

/// `install --show`: the remembered choices, or what an install would use.
pub fn show(place: &PlaceArgs) -> anyhow::Result<()> {
    let r = resolve(place, None)?;
    match &r.before {
        Some(_) => println!(
            "install choices remembered in {} (a bare `install` keeps them; a flag changes one):",
            r.record().display()
        ),
        None => println!(
            "no install recorded at {}: an install would use",
            r.record().display()
        ),
    }
    print!("{}", describe(&r.now));
    Ok(())
}

fn describe(c: &Remembered) -> String {
    format!(
        "  --prefix        {}\n  --unit-dir      {}\n  --queue-shards  {}\n  --ip-allow      {}\n",
        c.prefix.display(),
        c.unit_dir.display(),
        c.queue_shards,
        c.ip_allow.as_deref().unwrap_or("none (no network fence)")
    )
}

/// The lines `install` prints about its choices: which were kept, which changed.
fn choice_report(r: &Resolved) -> Vec<String> {
    let Some(b) = &r.before else {
        return vec![format!(
            "remembering the choices in {}: queue shards {}, ip-allow {}",
            r.record().display(),
            r.now.queue_shards,
            r.now.ip_allow.as_deref().unwrap_or("none")
        )];
    };
    let mut out = Vec::new();
    let fence = |f: &Option<String>| f.clone().unwrap_or_else(|| "none".to_owned());
    let pairs = [
        (
            "unit dir",
            b.unit_dir.display().to_string(),
            r.now.unit_dir.display().to_string(),
        ),
        (
            "queue shards",
            b.queue_shards.to_string(),
            r.now.queue_shards.to_string(),
        ),
        ("ip-allow", fence(&b.ip_allow), fence(&r.now.ip_allow)),
    ];
    let mut kept = Vec::new();
    for (what, old, new) in pairs {
        if old == new {
            kept.push(format!("{what} {new}"));
        } else {
            out.push(format!("changed {what}: {old} → {new}"));
        }
    }
    if !kept.is_empty() {
        out.push(format!(
            "kept the remembered choices: {} (`install --show`)",
            kept.join(", ")
        ));
    }
    out
}

/// Refuse a prefix that someone other than the installing user could change: `install`
/// runs PREFIX/bin/* (as root, for a system install), and the units run them. Every existing
/// directory from the prefix up to `/` must belong to root (or, for a `--user` install, the
/// user) and be writable by no one else (a sticky directory such as /tmp excepted, above the
/// prefix). The tree under the prefix must not hold symbolic links where directories go.
fn check_prefix(prefix: &Path, scope: Scope) -> Result<(), String> {
    let me = system::effective_uid().unwrap_or(0);
    let owner_ok = |uid: u32| uid == 0 || (scope == Scope::User && uid == me);
    let who = if scope == Scope::System {
        "root".to_owned()
    } else {
        format!("root or uid {me}")
    };
    // The prefix itself, as it stands (a link is followed: its target is checked).
    let mut existing = prefix.to_owned();
    while !existing.exists() {
        match existing.parent() {
            Some(p) => existing = p.to_owned(),
            None => break,
        }
    }
    let real = fs::canonicalize(&existing)
        .map_err(|e| format!("cannot read `{}`: {e}", existing.display()))?;
    let mut dir = Some(real.as_path());
    let mut first = true;
    while let Some(d) = dir {
        let meta = fs::metadata(d).map_err(|e| format!("cannot read `{}`: {e}", d.display()))?;
        let is_prefix = first && existing == *prefix;
        if !owner_ok(meta.uid()) {
            return Err(format!(
                "`{}` is owned by uid {}, not {who}: its binaries would be run by whoever can change it (chown it, or choose another --prefix)",
                d.display(),
                meta.uid()
            ));
        }
        let mode = meta.mode();
        let sticky = mode & 0o1000 != 0;
        let group_ok = meta.gid() == 0 || (scope == Scope::User && meta.uid() == me);
        let writable_by_others = mode & 0o002 != 0 || (mode & 0o020 != 0 && !group_ok);
        if writable_by_others && (is_prefix || !sticky) {
            return Err(format!(
                "`{}` is writable by other users (mode {:o}): its binaries would be run by whoever can change it (chmod go-w it, or choose another --prefix)",
                d.display(),
                mode & 0o7777
            ));
        }
        first = false;
        dir = d.parent();
    }
    for sub in ["bin", "secrets", "logs", "state", "docs"] {
        let path = prefix.join(sub);
        if let Ok(meta) = fs::symlink_metadata(&path) {
            if meta.file_type().is_symlink() {
                return Err(format!(
                    "`{}` is a symbolic link: the install tree is made of plain directories (replace the link with a directory)",
                    path.display()
                ));
            }
            if matches!(sub, "bin" | "secrets" | "docs") && !owner_ok(meta.uid()) {
                return Err(format!(
                    "`{}` is owned by uid {}, not {who} (chown it)",
                    path.display(),
                    meta.uid()
                ));
            }
        }
    }
    Ok(())
}

/// Create `path` (a new file, mode 0600 from the start) with `content`; never through a link.
fn create_private(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(0o400000) // O_NOFOLLOW
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create `{}`: {e}", path.display()))?;
    file.write_all(content.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", path.display()))?;
    Ok(())
}

pub fn install(
    place: &PlaceArgs,
    choices: &ChoiceArgs,
    binaries: Option<&Path>,
    force: bool,
    no_enable: bool,
) -> anyhow::Result<()> {
    let scope = place.scope();
    system::require_root("install", scope)?;
    let resolved = resolve(place, Some(choices))?;
    let layout = resolved.layout();
    let unit_dir = resolved.unit_dir().to_owned();
    let mut report = Vec::new();

    // Every path is checked before anything is written, so a refusal leaves nothing
    // half-installed.
    let mut refusals = Vec::new();
    if let Err(why) = check_prefix(&layout.prefix, scope) {
        refusals.push(why);
    }
    let rendered = units::render_all(&layout);
    let mut before = Vec::with_capacity(rendered.len());
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
    let mut env_files: Vec<&str> = JOBS.iter().map(|j| j.env_file).collect();
    env_files.dedup();
    for env_file in &env_files {
        let path = layout.prefix.join(env_file);
        if let Existing::Link(target) = existing(&path)? {
            refusals.push(format!(
                "`{}` is a symbolic link to `{}`: secrets are plain 0600 files in {} (put the file itself there)",
                path.display(),
                target.display(),
                layout.secrets().display()
            ));
        }
    }
    if let Some(dir) = binaries {
        for name in BINARIES {
            if !dir.join(name).is_file() {
                refusals.push(format!("`--binaries {}` has no `{name}`", dir.display()));
            }
        }
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
    ensure_dir(&layout.docs(), 0o755, root, &mut report)?;
    for env_file in env_files {
        let path = layout.prefix.join(env_file);
        if !path.exists() {
            // Every setting of the job's binary, commented out with its default.
            let example = JOBS
                .iter()
                .find(|j| j.env_file == env_file)
                .map_or("", crate::env_example);
            create_private(&path, example)?;
            report.push(format!(
                "created {} (0600, every setting listed: fill in the required ones)",
                path.display()
            ));
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
    }
    if let Some(dir) = binaries {
        for name in BINARIES {
            let from = dir.join(name);
            let to = layout.bin().join(name);
            if fs::read(&to).ok() != Some(fs::read(&from)?) {
                // Copy to a temporary name and rename: a running job keeps its old binary.
                let tmp = to.with_extension("new");
                let _ = fs::remove_file(&tmp);
                fs::copy(&from, &tmp)?;
                fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
                fs::rename(&tmp, &to)?;
                report.push(format!("installed {}", to.display()));
            }
        }
    }
    link_binaries(&layout, scope, &mut report)?;
    for (name, text) in DOCS {
        let path = layout.docs().join(name);
        if write_if_changed(&path, text, 0o644)? {
            report.push(format!("wrote {}", path.display()));
        }
    }

    install_docs(&layout, scope, &mut report)?;

    create_dirs(&unit_dir)?;
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
    let mut not_started = Vec::new();
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
            system::systemctl(scope, &["enable", &unit])?;
            // A unit that does not start (the healthcheck's port taken) stays enabled and
            // the install goes on: the rest is installed and remembered, and it is named.
            if (system::systemd_running() || scope == Scope::User)
                && let Err(e) = system::systemctl(scope, &["start", &unit])
            {
                report.push(format!("enabled {unit}, but it did not start"));
                not_started.push(format!("{unit} ({})", zakaz_core::error::one_line(&e)));
                continue;
            }
            report.push(format!("enabled {unit}"));
        }
    }
    // Remembered last, once everything else is in place.
    report.extend(choice_report(&resolved));
    if resolved.before.as_ref() != Some(&resolved.now) {
        let text = serde_json::to_string_pretty(&resolved.now)? + "\n";
        write_if_changed(&resolved.record(), &text, 0o644)?;
    }
    for line in &report {
        println!("{line}");
    }
    if !not_started.is_empty() {
        anyhow::bail!(
            "installed, but {} did not start: see `manage-timers logs NAME`, fix its settings, then `sudo systemctl start` it",
            not_started.join("; ")
        );
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

/// Link the operator-facing binaries into the PATH. A file there that is not such a link (an
/// operator's own) is left alone, and said so.
fn link_binaries(layout: &Layout, scope: Scope, report: &mut Vec<String>) -> anyhow::Result<()> {
    let Some(dir) = link_dir(scope) else {
        report.push("no HOME: nothing linked into the PATH".to_owned());
        return Ok(());
    };
    for name in ON_PATH {
        let target = layout.bin().join(name);
        if !target.exists() {
            continue;
        }
        let link = dir.join(name);
        match fs::symlink_metadata(&link) {
            Ok(m) if m.file_type().is_symlink() => {
                let current = fs::read_link(&link).unwrap_or_default();
                if current == target {
                    continue;
                }
                // Another install's link (`…/bin/NAME`) is moved here; anything else stays.
                let ours = current.file_name().is_some_and(|n| n == *name)
                    && current
                        .parent()
                        .and_then(Path::file_name)
                        .is_some_and(|b| b == "bin");
                if !ours {
                    report.push(format!(
                        "left {} alone: it links to {}, not to an install of manage-timers",
                        link.display(),
                        current.display()
                    ));
                    continue;
                }
            }
            Ok(_) => {
                report.push(format!(
                    "left {} alone: it is not a link of manage-timers (run {} by its path)",
                    link.display(),
                    target.display()
                ));
                continue;
            }
            Err(_) => {}
        }
        create_dirs(&dir)?;
        let tmp = dir.join(format!(".{name}.manage-timers-{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&target, &tmp)
            .map_err(|e| anyhow::anyhow!("cannot link `{}`: {e}", link.display()))?;
        fs::rename(&tmp, &link)
            .map_err(|e| anyhow::anyhow!("cannot link `{}`: {e}", link.display()))?;
        report.push(format!("linked {} → {}", link.display(), target.display()));
    }
    Ok(())
}

/// Remove the links [`link_binaries`] made (only links into this prefix).
fn unlink_binaries(layout: &Layout, scope: Scope) {
    let Some(dir) = link_dir(scope) else {
        return;
    };
    for name in ON_PATH {
        let link = dir.join(name);
        if fs::read_link(&link).is_ok_and(|t| t == layout.bin().join(name))
            && fs::remove_file(&link).is_ok()
        {
            println!("removed {}", link.display());
        }
    }
}

/// Where the system looks for shell completions and man pages, per shell: bash
/// `/etc/bash_completion.d/`, zsh `/usr/local/share/zsh/site-functions/_NAME`, fish
/// `/usr/local/share/fish/vendor_completions.d/NAME.fish`, man pages
/// `/usr/local/share/man/man1/`; for a per-user install the same under `~/.local/share/`.
pub struct DocDirs {
    pub bash: PathBuf,
    pub zsh: PathBuf,
    pub fish: PathBuf,
    pub man: PathBuf,
}

impl DocDirs {
    /// The completion file of `binary` for `shell`.
    pub fn completion(&self, shell: &str, binary: &str) -> PathBuf {
        match shell {
            "bash" => self.bash.join(binary),
            "zsh" => self.zsh.join(format!("_{binary}")),
            _ => self.fish.join(format!("{binary}.fish")),
        }
    }
}

pub fn doc_dirs(scope: Scope) -> Option<DocDirs> {
    match scope {
        Scope::System => Some(DocDirs {
            bash: PathBuf::from("/etc/bash_completion.d"),
            zsh: PathBuf::from("/usr/local/share/zsh/site-functions"),
            fish: PathBuf::from("/usr/local/share/fish/vendor_completions.d"),
            man: PathBuf::from("/usr/local/share/man/man1"),
        }),
        Scope::User => {
            let share = PathBuf::from(std::env::var_os("HOME")?).join(".local/share");
            Some(DocDirs {
                bash: share.join("bash-completion/completions"),
                zsh: share.join("zsh/site-functions"),
                fish: share.join("fish/vendor_completions.d"),
                man: share.join("man/man1"),
            })
        }
    }
}

/// Run an installed binary for text it generates; `None` when it cannot.
fn generated_by(binary: &Path, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(binary)
        .args(args)
        .env_clear()
        .output()
        .ok()?;
    (out.status.success() && !out.stdout.is_empty())
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Completions (bash, zsh, fish) and man pages of every installed binary, generated by the
/// binary itself (`--completions SHELL`, `--man`; `manage-timers` has a page per subcommand,
/// `--man-pages`), so they always match its flags. A binary that is missing or cannot
/// generate them is reported, never fatal.
fn install_docs(layout: &Layout, scope: Scope, report: &mut Vec<String>) -> anyhow::Result<()> {
    let Some(dirs) = doc_dirs(scope) else {
        report.push("no HOME: completions and man pages not installed".to_owned());
        return Ok(());
    };
    let mut write = |path: PathBuf, text: &str| -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            create_dirs(dir)?;
        }
        if write_if_changed(&path, text, 0o644)? {
            report.push(format!("wrote {}", path.display()));
        }
        Ok(())
    };
    let mut skipped = Vec::new();
    for name in BINARIES {
        let binary = layout.bin().join(name);
        if !binary.exists() {
            continue;
        }
        for shell in crate::shell::SHELLS {
            match generated_by(&binary, &["--completions", shell]) {
                Some(text) => {
                    let text = if *shell == "bash" {
                        crate::shell::fix_bash(name, &text)
                    } else {
                        text
                    };
                    write(dirs.completion(shell, name), &text)?;
                }
                None => skipped.push(format!("{name} --completions {shell}")),
            }
        }
        let pages: Vec<String> = generated_by(&binary, &["--man-pages"])
            .map(|t| t.lines().map(str::to_owned).collect())
            .unwrap_or_else(|| vec![name.to_string()]);
        for page in pages {
            let args: Vec<&str> = if page == *name {
                vec!["--man"]
            } else {
                vec!["--man", page.as_str()]
            };
            match generated_by(&binary, &args) {
                Some(text) => write(dirs.man.join(format!("{page}.1")), &text)?,
                None => skipped.push(format!("{name} {}", args.join(" "))),
            }
        }
    }
    if !skipped.is_empty() {
        report.push(format!(
            "could not generate (skipped): {}",
            skipped.join(", ")
        ));
    }
    Ok(())
}

/// Remove what [`install_docs`] wrote.
fn uninstall_docs(scope: Scope) {
    let Some(dirs) = doc_dirs(scope) else {
        return;
    };
    let remove = |path: PathBuf, name: &str| {
        // Only ours: generated for this very binary name.
        let ours = fs::read_to_string(&path).is_ok_and(|t| t.contains(name));
        if ours && fs::remove_file(&path).is_ok() {
            println!("removed {}", path.display());
        }
    };
    for name in BINARIES {
        for shell in crate::shell::SHELLS {
            remove(dirs.completion(shell, name), name);
        }
        remove(dirs.man.join(format!("{name}.1")), name);
    }
    for page in crate::shell::man_pages() {
        remove(dirs.man.join(format!("{page}.1")), "manage-timers");
    }
}

pub fn uninstall(place: &PlaceArgs) -> anyhow::Result<()> {
    let scope = place.scope();
    system::require_root("uninstall", scope)?;
    let resolved = resolve(place, None)?;
    let unit_dir = resolved.unit_dir().to_owned();
    let layout = resolved.layout();
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
    unlink_binaries(&layout, scope);
    uninstall_docs(scope);
    println!(
        "uninstalled {} units; kept {} (secrets, logs, state, binaries, docs, the remembered choices) and the `etl` user",
        ours.len(),
        layout.prefix.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_install_keeps_what_the_last_one_chose_and_a_flag_changes_it() {
        let dir = temp_dir("record");
        let place = PlaceArgs {
            user: false,
            prefix: Some(dir.clone()),
            unit_dir: None,
        };
        let fresh = resolve(&place, None).unwrap();
        assert_eq!(fresh.now.queue_shards, 1);
        assert_eq!(fresh.now.ip_allow, None);
        assert_eq!(fresh.now.unit_dir, PathBuf::from("/etc/systemd/system"));
        assert!(fresh.before.is_none());
        let chosen = Remembered {
            prefix: dir.clone(),
            unit_dir: dir.join("units"),
            ip_allow: Some("10.0.0.0/8".to_owned()),
            queue_shards: 3,
        };
        fs::write(dir.join(RECORD), serde_json::to_string(&chosen).unwrap()).unwrap();
        let bare = resolve(&place, Some(&ChoiceArgs::default())).unwrap();
        assert_eq!(bare.now, chosen, "kept");
        assert!(choice_report(&bare)[0].contains("queue shards 3"));
        let changed = resolve(
            &place,
            Some(&ChoiceArgs {
                ip_allow: Some(String::new()),
                queue_shards: Some(1),
            }),
        )
        .unwrap();
        assert_eq!(changed.now.queue_shards, 1);
        assert_eq!(
            changed.now.ip_allow, None,
            "`--ip-allow none` clears the fence"
        );
        let report = choice_report(&changed).join("\n");
        assert!(
            report.contains("changed queue shards: 3 → 1")
                && report.contains("changed ip-allow: 10.0.0.0/8 → none"),
            "{report}"
        );
        fs::write(dir.join(RECORD), "not json").unwrap();
        assert!(
            resolve(&place, None).is_err(),
            "a broken record is not ignored"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_prefix_someone_else_can_change_is_refused() {
        let dir = temp_dir("owner");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(check_prefix(&dir.join("new"), Scope::System), Ok(()));
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_prefix(&dir, Scope::System).unwrap_err();
        assert!(err.contains("is writable by other users"), "{err}");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
        let err = check_prefix(&dir, Scope::System).unwrap_err();
        assert!(err.contains("is owned by uid 65534, not root"), "{err}");
        std::os::unix::fs::chown(&dir, Some(0), Some(0)).unwrap();
        std::os::unix::fs::symlink("/tmp", dir.join("bin")).unwrap();
        let err = check_prefix(&dir, Scope::System).unwrap_err();
        assert!(err.contains("bin` is a symbolic link"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

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
