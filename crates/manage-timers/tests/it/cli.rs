use std::process::{Command, Output};

use zakaz_core::testing::TestDb;

/// The binary with a clean environment (only `PATH`): nothing is inherited from the caller.
fn manage_timers(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = zakaz_core::testing::clean_command(env!("CARGO_BIN_EXE_manage-timers"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("manage-timers runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn migrate_creates_the_schema_and_is_idempotent() {
    let db = TestDb::empty();
    let first = manage_timers(&["migrate"], &db.env());
    assert!(first.status.success(), "{}", stderr(&first));
    let text = String::from_utf8_lossy(&first.stdout);
    assert!(text.contains(&format!("database `{}`", db.name)), "{text}");
    // Every migration the binary carries, in order.
    let all: Vec<u32> = zakaz_core::schema::MIGRATIONS
        .iter()
        .map(|m| m.version)
        .collect();
    assert_eq!(all, (1..=all.len() as u32).collect::<Vec<_>>());
    assert!(text.contains(&format!("applied now: {all:?}")), "{text}");
    let second = manage_timers(&["migrate"], &db.env());
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(String::from_utf8_lossy(&second.stdout).contains("applied now: []"));
}

#[test]
fn env_file_settings_apply_and_the_environment_wins() {
    let db = TestDb::empty();
    let path = std::env::temp_dir().join(format!("zakaz-envfile-{}.env", std::process::id()));
    std::fs::write(
        &path,
        format!(
            "# settings\nCLICKHOUSE_DB={}\nCLICKHOUSE_URL=http://127.0.0.1:{}\n",
            db.name,
            closed_port()
        ),
    )
    .unwrap();
    let file = path.display().to_string();
    // The file's CLICKHOUSE_DB is used; its unreachable URL loses to the environment's.
    let out = manage_timers(
        &["--env-file", &file, "migrate"],
        &[("CLICKHOUSE_URL", zakaz_core::testing::clickhouse_url())],
    );
    std::fs::remove_file(&path).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("database `{}`", db.name)));
}

#[test]
fn malformed_setting_fails_with_one_line_naming_it() {
    let out = manage_timers(
        &["migrate"],
        &[("CLICKHOUSE_URL", "ftp://127.0.0.1:8123".into())],
    );
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        err.contains("CLICKHOUSE_URL") && err.contains("scheme must be http or https"),
        "{err}"
    );

    let out = manage_timers(&["migrate"], &[("CLICKHOUSE_DB", "zakaz; DROP".into())]);
    assert_eq!(out.status.code(), Some(78));
    assert!(stderr(&out).contains("CLICKHOUSE_DB"), "{}", stderr(&out));

    let out = manage_timers(&["list"], &[("LOG_LEVEL", "loud=".into())]);
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("`LOG_LEVEL`"), "{err}");
}

/// A loopback port that nothing listens on (bound, then closed).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn an_https_clickhouse_url_is_accepted_and_tried() {
    let url = format!("https://127.0.0.1:{}", closed_port());
    let out = manage_timers(&["migrate"], &[("CLICKHOUSE_URL", url.clone())]);
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "ClickHouse at `{url}` (setting `CLICKHOUSE_URL`) is not reachable"
        )),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_proxys_503_at_connect_is_a_dependency_error_not_a_configuration_error() {
    // A proxy in front of ClickHouse that answers every request with a 503.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let proxy = std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut stream, &mut buf);
            let body = "Code: 202. DB::Exception: Too many simultaneous queries. Maximum: 100";
            let _ = std::io::Write::write_all(
                &mut stream,
                format!("HTTP/1.1 503 Service Unavailable\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes(),
            );
        }
    });
    let out = manage_timers(
        &["migrate"],
        &[("CLICKHOUSE_URL", format!("http://127.0.0.1:{port}"))],
    );
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("answered unexpectedly"),
        "{}",
        stderr(&out)
    );
    drop(proxy);
}

#[test]
fn unreachable_clickhouse_fails_clearly_before_any_run() {
    let url = format!("http://127.0.0.1:{}", closed_port());
    let out = manage_timers(&["migrate"], &[("CLICKHOUSE_URL", url.clone())]);
    assert_eq!(out.status.code(), Some(69));
    let err = stderr(&out);
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert!(last.contains("ERROR"), "{err}");
    assert!(
        last.contains(&format!(
            "ClickHouse at `{url}` (setting `CLICKHOUSE_URL`) is not reachable"
        )),
        "{err}"
    );
}

#[test]
fn a_secret_never_appears_in_logs_or_errors_of_a_failing_run() {
    let secret = "pw-Zq8-never-print-me";
    let dir = std::env::temp_dir().join(format!("zakaz-logtest-{}", std::process::id()));
    let log_file = dir.join("logs/manage-timers.log");
    let db = TestDb::empty();
    let mut env = db.env();
    env.push(("CLICKHOUSE_PASSWORD", secret.into()));
    env.push(("LOG_LEVEL", "trace".into()));
    env.push(("LOG_FILE", log_file.display().to_string()));
    // The local server's `default` user has no password: the run fails on authentication.
    let out = manage_timers(&["migrate"], &env);
    let _cleanup = scopeguard(&dir);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("rejected user `default`"), "{err}");
    let file = std::fs::read_to_string(&log_file).unwrap();
    assert!(file.contains("rejected user `default`"), "{file}");
    for text in [
        &err,
        &file,
        &String::from_utf8_lossy(&out.stdout).into_owned(),
    ] {
        assert!(!text.contains(secret), "secret leaked: {text}");
    }

    // Nor in `--help`, even when the secret is set in the environment.
    let help = manage_timers(&["migrate", "--help"], &env);
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("CLICKHOUSE_PASSWORD"), "{help}");
    assert!(!help.contains(secret), "{help}");
}

#[test]
fn under_systemd_lines_carry_syslog_priorities_and_no_timestamps() {
    // JOURNAL_STREAM must name stderr's own inode; without /proc metadata matching, the
    // process falls back to the terminal format. Point stderr at a file and name it.
    use std::os::unix::fs::MetadataExt;
    let path = std::env::temp_dir().join(format!("zakaz-journal-{}.txt", std::process::id()));
    let file = std::fs::File::create(&path).unwrap();
    let meta = file.metadata().unwrap();
    let url = format!("http://127.0.0.1:{}", closed_port());
    let out = zakaz_core::testing::clean_command(env!("CARGO_BIN_EXE_manage-timers"))
        .args(["migrate"])
        .env("CLICKHOUSE_URL", &url)
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stderr(file)
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(out.status.code(), Some(69));
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.iter().any(|l| l.starts_with("<4>")),
        "retries are warnings: {text}"
    );
    let last = lines.last().unwrap();
    assert!(
        last.starts_with(&format!("<3>ClickHouse at `{url}`")),
        "{text}"
    );
    assert!(
        lines.iter().all(|l| l.starts_with('<')),
        "one prefixed line per event: {text}"
    );
}

#[test]
fn missing_and_unknown_names_list_the_valid_ones() {
    let out = manage_timers(&["start"], &[]);
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    assert!(err.contains("`manage-timers start` needs a job name: one of qtickets, vk_ads, direct, gmail_ingest, alerts, camp_queue, healthcheck"), "{err}");
    let out = manage_timers(&["logs", "qtickets-typo"], &[]);
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("unknown job `qtickets-typo`; valid names: qtickets, vk_ads"),
        "{err}"
    );
    let out = manage_timers(&["enable", "healthcheck.timer"], &[]);
    assert!(
        stderr(&out).contains("`healthcheck` is a long-running service and has no timer"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn commands_that_need_root_say_so_before_doing_anything() {
    // Run as `nobody` (util-linux's setpriv): nothing may be created.
    let prefix = std::env::temp_dir().join(format!("zakaz-noroot-{}", std::process::id()));
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_manage-timers"))
        .args(["install", "--prefix"])
        .arg(&prefix)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    assert!(
        err.contains(
            "`manage-timers install` changes system units and needs root: run it with sudo"
        ),
        "{err}"
    );
    assert!(!prefix.exists(), "nothing created");
}

#[test]
fn schedule_shows_local_and_moscow_times() {
    let out = manage_timers(&["schedule"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let vk = text.lines().find(|l| l.starts_with("vk_ads")).unwrap();
    assert!(
        vk.contains("*-*-* 00:00:00 Europe/Moscow")
            && vk.contains("≤300s")
            && vk.contains(" 00:00 MSK"),
        "{vk}"
    );
    let alerts = text.lines().find(|l| l.starts_with("alerts")).unwrap();
    assert!(alerts.contains(":00 MSK"), "{alerts}");
}

#[test]
fn list_shows_every_job_of_the_table() {
    let out = manage_timers(&["list"], &[]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for job in zakaz_core::jobs::JOBS {
        assert!(text.contains(job.name), "{text}");
    }
    assert!(text.contains("*-*-* 00:00:00 Europe/Moscow"), "{text}");
}

struct Cleanup(std::path::PathBuf);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
fn scopeguard(dir: &std::path::Path) -> Cleanup {
    Cleanup(dir.to_owned())
}
