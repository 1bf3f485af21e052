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
fn missing_and_unknown_names_are_usage_errors_listing_the_valid_ones() {
    let out = manage_timers(&["start"], &[]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("`manage-timers start` needs a job name: one of qtickets, vk_ads, direct, gmail_ingest, alerts, camp_queue, healthcheck"), "{err}");
    let out = manage_timers(&["logs", "qtickets-typo"], &[]);
    assert_eq!(
        out.status.code(),
        Some(64),
        "EX_USAGE, not a configuration error"
    );
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains(
            "unknown job `qtickets-typo`; did you mean `qtickets`? valid names: qtickets, vk_ads"
        ),
        "{err}"
    );
    let out = manage_timers(&["enable", "healthcheck.timer"], &[]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        stderr(&out).contains("`healthcheck` is a long-running service and has no timer"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn clap_suggestions_survive_the_one_line_error() {
    let out = manage_timers(&["stauts"], &[]);
    assert_eq!(out.status.code(), Some(64));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("unrecognized subcommand 'stauts'")
            && err.contains("tip:")
            && err.contains("'status'"),
        "{err}"
    );
    let out = manage_timers(&["install", "--queue-shard", "2"], &[]);
    assert_eq!(out.status.code(), Some(64));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("tip:") && err.contains("--queue-shards"),
        "{err}"
    );
}

#[test]
fn flags_a_subcommand_ignores_are_not_offered() {
    for args in [
        &["verify", "--prefix", "/opt/x"][..],
        &["verify", "--ip-allow", "10.0.0.0/8"][..],
        &["verify", "--queue-shards", "2"][..],
        &["uninstall", "--ip-allow", "10.0.0.0/8"][..],
        &["uninstall", "--queue-shards", "2"][..],
    ] {
        let out = manage_timers(args, &[]);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("unexpected argument"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn help_footers_list_every_job_and_alias() {
    for args in [
        &["--help"][..],
        &["enable", "--help"][..],
        &["run", "--help"][..],
        &["status", "--help"][..],
        &["logs", "--help"][..],
    ] {
        let out = manage_timers(args, &[]);
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout).replace('\n', " ");
        for job in zakaz_core::jobs::JOBS {
            assert!(
                text.contains(job.name),
                "{args:?} lacks {}: {text}",
                job.name
            );
            for alias in job.aliases {
                assert!(text.contains(alias), "{args:?} lacks {alias}: {text}");
            }
        }
    }
}

#[test]
fn colors_follow_the_flag_and_no_color() {
    let ansi = |out: &Output| String::from_utf8_lossy(&out.stdout).contains('\x1b');
    let out = manage_timers(&["--color", "always", "--help"], &[]);
    assert!(
        out.status.success() && ansi(&out),
        "--color always colors help"
    );
    let out = manage_timers(&["--color", "never", "--help"], &[]);
    assert!(out.status.success() && !ansi(&out));
    // On a terminal (util-linux's `script` gives one): colored unless NO_COLOR is set.
    let on_tty = |env: &str, flags: &str| {
        let out = Command::new("script")
            .args(["-qec"])
            .arg(format!(
                "env -i PATH=/usr/bin:/bin TERM=xterm {env} {} {flags} --help",
                env!("CARGO_BIN_EXE_manage-timers")
            ))
            .arg("/dev/null")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).contains('\x1b')
    };
    assert!(on_tty("", ""), "a terminal gets colors");
    assert!(!on_tty("NO_COLOR=1", ""), "NO_COLOR is honoured");
    assert!(!on_tty("", "--color=never"));
    assert!(on_tty("NO_COLOR=1", "--color=always"), "the flag wins");
}

#[test]
fn bash_completes_subcommand_flags_and_job_names() {
    let script = std::env::temp_dir().join(format!("zakaz-completion-{}.bash", std::process::id()));
    let out = manage_timers(&["--completions", "bash"], &[]);
    assert!(out.status.success());
    std::fs::write(&script, &out.stdout).unwrap();
    let complete = |line: &str| {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                r#"source {}; f=$(complete -p manage-timers | sed -E 's/.*-F ([^ ]+).*/\1/'); read -ra COMP_WORDS <<< "{line}"; [[ "{line}" == *" " ]] && COMP_WORDS+=(""); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); COMP_LINE="{line}"; COMP_POINT=${{#COMP_LINE}}; prev=""; (( COMP_CWORD > 0 )) && prev=${{COMP_WORDS[COMP_CWORD-1]}}; $f manage-timers "${{COMP_WORDS[COMP_CWORD]}}" "$prev"; printf '%s\n' "${{COMPREPLY[@]}}""#,
                script.display()
            ))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let offered = complete("manage-timers install --");
    for flag in [
        "--queue-shards",
        "--ip-allow",
        "--binaries",
        "--show",
        "--user",
    ] {
        assert!(offered.iter().any(|o| o == flag), "{flag}: {offered:?}");
    }
    assert_eq!(complete("manage-timers enable q"), ["qtickets", "queue"]);
    assert!(complete("manage-timers logs g").contains(&"gmail_ingest".to_owned()));
    std::fs::remove_file(&script).unwrap();
    // zsh and fish name the jobs too.
    for shell in ["zsh", "fish"] {
        let out = manage_timers(&["--completions", shell], &[]);
        let text = String::from_utf8_lossy(&out.stdout);
        for job in zakaz_core::jobs::JOBS {
            assert!(text.contains(job.name), "{shell} lacks {}", job.name);
        }
    }
    let fish = manage_timers(&["--completions", "fish"], &[]);
    assert!(
        String::from_utf8_lossy(&fish.stdout)
            .contains("__fish_manage_timers_using_subcommand enable\" -f -a \"qtickets\"")
    );
}

#[test]
fn there_is_a_man_page_for_every_subcommand_the_main_page_names() {
    let out = manage_timers(&["--man-pages"], &[]);
    assert!(out.status.success());
    let pages: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    let main = manage_timers(&["--man"], &[]);
    let main = String::from_utf8_lossy(&main.stdout);
    for sub in ["install", "run", "status", "logs", "verify"] {
        let page = format!("manage-timers-{sub}");
        assert!(pages.contains(&page), "{pages:?}");
        assert!(
            main.contains(&format!("{}(1)", page.replace('-', "\\-"))),
            "the main page refers to {page}(1)"
        );
        let text = manage_timers(&["--man", &page], &[]);
        assert!(text.status.success());
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(
            text.contains(&format!(".TH {}", page.replace('-', "\\-")))
                || text.contains(&format!(".TH {page}")),
            "{text}"
        );
    }
    let install = manage_timers(&["--man", "manage-timers-install"], &[]);
    assert!(String::from_utf8_lossy(&install.stdout).contains("queue\\-shards"));
}

#[test]
fn systemd_unreachable_is_69() {
    if std::path::Path::new("/run/systemd/system").exists() {
        // A host booted with systemd reaches it: nothing to show here (the e2e machine
        // shows the other codes).
        return;
    }
    let out = manage_timers(&["status", "qtickets"], &[]);
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("systemd is not reachable"),
        "{}",
        stderr(&out)
    );
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
fn list_shows_every_job_of_the_table_with_its_timeout() {
    let out = manage_timers(&["list"], &[]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for job in zakaz_core::jobs::JOBS {
        assert!(text.contains(job.name), "{text}");
        if let Some(timeout) = job.timeout() {
            let line = text.lines().find(|l| l.starts_with(job.name)).unwrap();
            assert!(
                line.contains(&format!(" {}s ", timeout.as_secs())),
                "{line}"
            );
        }
    }
    assert!(text.contains("*-*-* 00:00:00 Europe/Moscow"), "{text}");
    assert_aligned(&text);
    let json = manage_timers(&["list", "--json"], &[]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), zakaz_core::jobs::JOBS.len());
    assert_eq!(json[0]["timeout_secs"], 300);
}

#[test]
fn schedule_rows_of_the_queue_keep_the_columns_aligned_and_json_names_every_job() {
    let out = manage_timers(&["schedule"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("camp_queue copy:1"), "{text}");
    assert_aligned(&text);
    let json = manage_timers(&["schedule", "--json"], &[]);
    assert!(json.status.success());
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    for job in zakaz_core::jobs::JOBS {
        assert!(
            json.as_array()
                .unwrap()
                .iter()
                .any(|r| r["job"] == job.name),
            "{json}"
        );
    }
}

/// Every row's columns start where the header's do.
fn assert_aligned(text: &str) {
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('(')).collect();
    let starts = |l: &str| -> Vec<usize> {
        let chars: Vec<char> = l.chars().collect();
        (1..chars.len())
            .filter(|&i| chars[i] != ' ' && chars[i - 1] == ' ' && i >= 2 && chars[i - 2] == ' ')
            .collect()
    };
    let header = starts(lines[0]);
    for line in &lines[1..] {
        for s in starts(line) {
            assert!(header.contains(&s), "misaligned at {s}:\n{text}");
        }
    }
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

/// An upgrade typed as the installed (older) `manage-timers` hands the install to the new
/// release's own `manage-timers`, with the same arguments, so the new release writes its
/// units; the one handed to is marked so that it never hands over again.
#[test]
fn an_upgrade_is_installed_by_the_new_releases_own_manage_timers() {
    use std::os::unix::fs::PermissionsExt;
    let release = zakaz_core::testing::TempDir::new("new-release");
    let _cleanup = scopeguard(&release.path);
    let new = release.path.join("manage-timers");
    let called = release.path.join("called");
    // The new release's manage-timers, standing in: it records how it was called.
    std::fs::write(
        &new,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"handed=$ZAKAZ_INSTALL_HANDED_OVER\" \"$@\" > '{}'\nexit 7\n",
            called.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = release.path.to_str().unwrap();
    // Were it not handed over, this install would stop before writing anything: its prefix
    // is writable by everyone, which `install` refuses (the test runs as root in CI).
    let prefix = release.path.join("prefix");
    std::fs::create_dir(&prefix).unwrap();
    std::fs::set_permissions(&prefix, std::fs::Permissions::from_mode(0o777)).unwrap();
    let units = release.path.join("units");
    let (prefix, units) = (prefix.to_str().unwrap(), units.to_str().unwrap());
    let out = manage_timers(
        &[
            "install",
            "--binaries",
            dir,
            "--prefix",
            prefix,
            "--unit-dir",
            units,
            "--queue-shards",
            "2",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("handing the install to {}", new.display())),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(&called).unwrap(),
        format!(
            "handed=1\ninstall\n--binaries\n{dir}\n--prefix\n{prefix}\n--unit-dir\n{units}\n--queue-shards\n2\n"
        )
    );
}
