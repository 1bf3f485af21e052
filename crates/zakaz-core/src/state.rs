//! The jobs' state directory: small private files (a token pair, a sent-notice log) written
//! atomically with mode 0600, and a lock so that two runs at once never interleave.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where the install keeps state (the units make it writable).
pub const DEFAULT_DIR: &str = "/opt/zakaz_dashboard/state";

/// The state directory: the setting when given, else systemd's `STATE_DIRECTORY` (its first
/// entry) when the unit declares one, else [`DEFAULT_DIR`].
pub fn resolve_dir(setting: Option<&Path>, state_directory: Option<&str>) -> PathBuf {
    if let Some(dir) = setting {
        return dir.to_path_buf();
    }
    state_directory
        .and_then(|v| v.split(':').find(|p| !p.is_empty()))
        .map_or_else(|| PathBuf::from(DEFAULT_DIR), PathBuf::from)
}

/// Check at start that this process can use its state: `dir` exists (or can be made) and
/// takes new files, and each of `files` in it that exists can be read and written. A job run
/// once by hand as root leaves root-owned files behind, after which the service's user fails
/// on every run: that is a setting to fix (exit 78), named with the fix, before any request.
pub fn check_usable(dir: &Path, files: &[&str], setting: &str) -> anyhow::Result<()> {
    let who = current_user();
    let fix = |what: &Path, e: &std::io::Error| {
        crate::error::config_error(format!(
            "`{}` cannot be used by {who}: {e}; it was probably left by a run as another user (root?): `chown` it to the service's user, or remove it (setting `{setting}`, {})",
            what.display(),
            dir.display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(|e| fix(dir, &e))?;
    for name in files {
        let path = dir.join(name);
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(fix(&path, &e)),
        }
    }
    // Files are replaced by rename: the directory must take a new one.
    let probe = dir.join(format!(".write-check-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)
        .map_err(|e| fix(dir, &e))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// `uid N` of this process (for messages).
fn current_user() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        })
        .map_or_else(|| "this process".to_owned(), |uid| format!("uid {uid}"))
}

/// Write `bytes` to `path` through a temporary file in the same directory, mode 0600, synced
/// and renamed: a reader sees the old content or the new, never half of it.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let fail = |e: std::io::Error| anyhow::anyhow!("cannot write `{}`: {e}", path.display());
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(fail)?;
    // `mode` applies only to a new file; a stale temporary keeps its own.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

/// An exclusive lock on `<path>.lock`, held until dropped (released by the kernel if the
/// process dies).
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Wait for the lock on `path` (another run holding it finishes its refresh first).
    pub fn acquire(path: &Path) -> anyhow::Result<Lock> {
        let lock_path = path.with_extension("lock");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| anyhow::anyhow!("cannot open `{}`: {e}", lock_path.display()))?;
        file.lock()
            .map_err(|e| anyhow::anyhow!("cannot lock `{}`: {e}", lock_path.display()))?;
        Ok(Lock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_precedence() {
        assert_eq!(
            resolve_dir(Some(Path::new("/x")), Some("/y")),
            PathBuf::from("/x")
        );
        assert_eq!(resolve_dir(None, Some("/y:/z")), PathBuf::from("/y"));
        assert_eq!(resolve_dir(None, None), PathBuf::from(DEFAULT_DIR));
    }

    #[test]
    fn private_atomic_write_and_lock() {
        let dir = std::env::temp_dir().join(format!("zakaz-state-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token.json");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let held = Lock::acquire(&path).unwrap();
        let other = File::options()
            .write(true)
            .open(path.with_extension("lock"))
            .unwrap();
        assert!(other.try_lock().is_err(), "a second holder must wait");
        drop(held);
        assert!(other.try_lock().is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
