//! The whole system in a real systemd: `manage-timers install`, timers listed with their next
//! elapse, a service run that loads data, its journal, an `OnFailure=` alert, a timer that
//! fires on its own, and the day-to-day commands — all inside the machine's own /etc overlay,
//! /tmp and /run, so the host is never touched (its /tmp is checked; its units are not read).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use zakaz_core::testing::{TestDb, query_tsv};
use zakaz_e2e::{Machine, output_text, wait_for, write_inside};

/// The error-priority lines of the qtickets service, as `journalctl -p err` shows them.
const ERROR_LINES: &[&str] = &[
    "journalctl",
    "-u",
    "qtickets.service",
    "-p",
    "err",
    "--no-pager",
    "-o",
    "cat",
];

fn ok(machine: &Machine, args: &[&str]) -> String {
    let out = machine.exec(args);
    assert!(
        out.status.success(),
        "`{}` failed: {}",
        args.join(" "),
        output_text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn install_run_fail_alert_and_fire_in_a_real_systemd() {
    let marker = std::env::temp_dir().join(format!("zakaz-e2e-host-marker-{}", std::process::id()));
    std::fs::write(&marker, "the host's /tmp must survive").unwrap();

    let (db, _ch) = TestDb::migrated().await;
    let sandbox = api_sandbox::Server::start_local(api_sandbox::SandboxConfig::default()).unwrap();
    let log = std::env::temp_dir().join(format!("zakaz-e2e-systemd-{}.log", std::process::id()));
    let machine = Machine::boot(&log).expect("a real systemd boots in a namespace (needs root)");
    machine.forward_url(&sandbox.base_url).unwrap();
    let unit_state = |verb: &str, unit: &str| {
        String::from_utf8_lossy(&machine.exec(&["systemctl", verb, unit]).stdout)
            .trim()
            .to_owned()
    };

    // Settings first: a timer that fires during the test then finds them.
    let qtickets_env = format!(
        "QTICKETS_BASE_URL={}/qtickets/api/rest/v1\nQTICKETS_TOKEN=sandbox-token\nQTICKETS_INVENTORY=false\nQTICKETS_BACKFILL_DAYS=40\nCLICKHOUSE_DB={}\n",
        sandbox.base_url, db.name
    );
    write_inside(
        &machine,
        "/opt/zakaz_dashboard/secrets/qtickets.env",
        &qtickets_env,
    );
    write_inside(
        &machine,
        "/opt/zakaz_dashboard/secrets/alerts.env",
        &format!(
            "TELEGRAM_API_URL={}/telegram\nTELEGRAM_BOT_TOKEN=sandbox-token\nTELEGRAM_CHAT_ID=-100123\nCLICKHOUSE_DB={}\n",
            sandbox.base_url, db.name
        ),
    );

    write_inside(
        &machine,
        "/opt/zakaz_dashboard/secrets/vk_ads.env",
        &format!(
            "VK_ADS_BASE_URL={}/vk\nVK_ADS_CLIENT_ID=sandbox-client\nVK_ADS_CLIENT_SECRET=sandbox-secret\nCLICKHOUSE_DB={}\n",
            sandbox.base_url, db.name
        ),
    );
    write_inside(
        &machine,
        "/opt/zakaz_dashboard/secrets/direct.env",
        &format!(
            "DIRECT_API_URL={}/direct/json/v5\nDIRECT_TOKEN=sandbox-token\nDIRECT_LOGINS=client-a,client-b\nCLICKHOUSE_DB={}\n",
            sandbox.base_url, db.name
        ),
    );

    write_inside(
        &machine,
        "/opt/zakaz_dashboard/secrets/gmail.env",
        &format!(
            "GMAIL_API_URL={b}/gmail\nGOOGLE_TOKEN_URL={b}/google/token\nGMAIL_CLIENT_ID=sandbox-client\nGMAIL_CLIENT_SECRET=sandbox-secret\nGMAIL_REFRESH_TOKEN=sandbox-refresh\nCLICKHOUSE_DB={}\n",
            db.name,
            b = sandbox.base_url
        ),
    );

    // The healthcheck (enabled by default) on its default 127.0.0.1:8080, which is the
    // machine's own: a healthcheck of the host's on 8080 is no obstacle.
    write_inside(
        &machine,
        "/opt/zakaz_dashboard/secrets/healthcheck.env",
        &format!("CLICKHOUSE_DB={}\n", db.name),
    );

    // --- install ----------------------------------------------------------------------------
    machine.stage_binaries();
    let manage = "/opt/zakaz_dashboard/bin/manage-timers";
    let install = ok(
        &machine,
        &[
            "/run/zakaz-binaries/manage-timers",
            "install",
            "--binaries",
            "/run/zakaz-binaries",
        ],
    );
    assert!(install.contains("created system user etl"), "{install}");
    assert!(
        install.contains("enabled qtickets.timer")
            && !install.contains("enabled gmail_ingest.timer"),
        "{install}"
    );
    assert!(
        install.contains("enabled vk_ads.timer") && install.contains("enabled direct.timer"),
        "{install}"
    );
    // The units went to the machine's /etc overlay (a tmpfs), never to the host's /etc: the
    // test checks where they landed instead of reading the host's unit directory.
    assert!(
        machine
            .path("/run/etc-upper/systemd/system/qtickets.timer")
            .exists(),
        "units are written through the overlay"
    );
    // Completions and man pages of every installed binary, generated by the binaries
    // themselves: they carry every flag and setting of the binary.
    for cmd in zakaz_e2e::all_commands()
        .into_iter()
        .filter(|c| manage_timers::install::BINARIES.contains(&c.get_name()))
    {
        let name = cmd.get_name().to_owned();
        let completion =
            std::fs::read_to_string(machine.path(&format!("/etc/bash_completion.d/{name}")))
                .unwrap_or_else(|e| panic!("no completion for {name}: {e}"));
        let man =
            std::fs::read_to_string(machine.path(&format!("/usr/local/share/man/man1/{name}.1")))
                .unwrap_or_else(|e| panic!("no man page for {name}: {e}"));
        for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            if let Some(long) = arg.get_long() {
                assert!(
                    completion.contains(&format!("--{long}")),
                    "{name}: completion lacks --{long}"
                );
                assert!(
                    man.contains(&format!("\\-\\-{}", long.replace('-', "\\-"))),
                    "{name}: man page lacks --{long}"
                );
            }
            if let Some(env) = arg.get_env() {
                assert!(
                    man.contains(&*env.to_string_lossy()),
                    "{name}: man page lacks {env:?}"
                );
            }
        }
    }
    let again = ok(&machine, &[manage, "install"]);
    assert!(
        !again.contains("wrote ") && !again.contains("created "),
        "idempotent: {again}"
    );
    let mode = |p: &str| {
        std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(machine.path(p)).unwrap().permissions(),
        ) & 0o777
    };
    assert_eq!(mode("/opt/zakaz_dashboard/secrets"), 0o700);
    assert_eq!(mode("/opt/zakaz_dashboard/secrets/qtickets.env"), 0o600);

    // --- timers with their next elapse; gmail not enabled -----------------------------------
    let timers: Value = serde_json::from_str(&ok(
        &machine,
        &["systemctl", "list-timers", "--all", "--output=json"],
    ))
    .unwrap();
    let listed: Vec<&str> = timers
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["unit"].as_str())
        .collect();
    for t in [
        "qtickets.timer",
        "vk_ads.timer",
        "direct.timer",
        "alerts.timer",
    ] {
        assert!(listed.contains(&t), "{t} not listed: {timers}");
        let entry = timers
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["unit"] == t)
            .unwrap();
        assert!(
            entry["next"].as_u64().unwrap_or(0) > 0,
            "{t} has no next elapse: {entry}"
        );
    }
    assert!(!listed.contains(&"gmail_ingest.timer"), "{timers}");
    assert_eq!(unit_state("is-enabled", "gmail_ingest.timer"), "disabled");
    let vk_next_us = timers
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["unit"] == "vk_ads.timer")
        .unwrap()["next"]
        .as_u64()
        .unwrap();
    let vk_next = chrono::DateTime::from_timestamp((vk_next_us / 1_000_000) as i64, 0)
        .unwrap()
        .with_timezone(&chrono_tz::Europe::Moscow);
    assert_eq!(
        chrono::Timelike::hour(&vk_next),
        0,
        "vk_ads at 00:00 MSK (+ ≤5 min): {vk_next}"
    );
    assert!(chrono::Timelike::minute(&vk_next) < 5, "{vk_next}");

    // --- a real run through systemd ------------------------------------------------------
    ok(&machine, &["systemctl", "start", "qtickets.service"]);
    // (A timer that fired meanwhile adds another `ok` run, never an error.)
    let runs = query_tsv(&format!(
        "SELECT countIf(status = 'ok' AND rows_processed > 0) >= 1, countIf(status != 'ok'), countIf(host = '') FROM `{}`.meta_job_runs WHERE job = 'qtickets'",
        db.name
    ));
    // `host` is filled under the unit's ProcSubset=pid too.
    assert_eq!(runs, "1\t0\t0\n");
    let facts = query_tsv(&format!(
        "SELECT count() > 0 FROM `{}`.fact_qtickets_sales_daily",
        db.name
    ));
    assert_eq!(facts, "1\n");

    // --- its journal, through manage-timers and journalctl ----------------------------------
    let logs = ok(&machine, &[manage, "logs", "qtickets", "-n", "50"]);
    assert!(logs.contains("run finished"), "{logs}");
    let journal = ok(
        &machine,
        &["journalctl", "-u", "qtickets.service", "--no-pager"],
    );
    assert!(
        journal.contains("run finished") && journal.contains("mode backfill"),
        "{journal}"
    );
    let errors = ok(&machine, ERROR_LINES);
    assert!(
        !errors.contains("run finished"),
        "info lines are not errors: {errors}"
    );

    // --- the ad loaders run green under their units ----------------------------------------
    for (job, table) in [
        ("vk_ads", "fact_vk_ads_daily"),
        ("direct", "fact_direct_daily"),
    ] {
        ok(&machine, &["systemctl", "start", &format!("{job}.service")]);
        let runs = query_tsv(&format!(
            "SELECT countIf(status = 'ok' AND rows_processed > 0) >= 1, countIf(status != 'ok') FROM `{}`.meta_job_runs WHERE job = '{job}'",
            db.name
        ));
        assert_eq!(runs, "1\t0\n", "{job}");
        let facts = query_tsv(&format!("SELECT count() > 0 FROM `{}`.{table}", db.name));
        assert_eq!(facts, "1\n", "{job}");
    }
    // The mail channel is off by default; switched on, its timer is scheduled and a run of
    // its unit loads the report mails. Switched off again for the checks below.
    let out = ok(&machine, &[manage, "enable", "gmail"]);
    assert!(out.contains("enabled gmail_ingest.timer"), "{out}");
    ok(&machine, &["systemctl", "start", "gmail_ingest.service"]);
    let runs = query_tsv(&format!(
        "SELECT status, rows_processed > 0 FROM `{}`.meta_job_runs WHERE job = 'gmail_ingest'",
        db.name
    ));
    assert_eq!(runs, "ok\t1\n");
    let out = ok(&machine, &[manage, "disable", "gmail"]);
    assert!(out.contains("disabled gmail_ingest.timer"), "{out}");

    // The VK token pair is kept in the state directory, private to the service user.
    let token_file = machine.path("/opt/zakaz_dashboard/state/vk_ads_tokens.json");
    let meta = std::fs::metadata(&token_file).expect("the VK token file");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    ok(&machine, &["systemctl", "start", "vk_ads.service"]);
    assert_eq!(
        sandbox.sandbox().state().vk_tokens.len(),
        1,
        "the second run reused the stored token"
    );

    // --- the periodic alerts job runs sandboxed: nothing is stale --------------------------
    ok(&machine, &["systemctl", "start", "alerts.service"]);
    let alerts_run = query_tsv(&format!(
        "SELECT status FROM `{}`.meta_job_runs WHERE job = 'alerts'",
        db.name
    ));
    assert_eq!(alerts_run, "ok\n");
    let stale: Vec<String> = sandbox
        .sandbox()
        .state()
        .telegram_messages
        .iter()
        .map(|m| m.text.clone())
        // Alerts are in Russian unless `ALERTS_LANGUAGE=en`.
        .filter(|t| t.contains("устарели"))
        .collect();
    assert!(
        stale.is_empty(),
        "every enabled loader delivered: {stale:?}"
    );

    // --- a failure starts its OnFailure= alert ----------------------------------------------
    write_inside(
        &machine,
        "/opt/zakaz_dashboard/secrets/qtickets.env",
        &qtickets_env.replace(
            "QTICKETS_TOKEN=sandbox-token",
            "QTICKETS_TOKEN=revoked-token",
        ),
    );
    let failed = machine.exec(&["systemctl", "start", "qtickets.service"]);
    assert!(!failed.status.success(), "the run must fail");
    let alert = wait_for(
        "the OnFailure alert in Telegram",
        Duration::from_secs(60),
        || {
            sandbox
                .sandbox()
                .state()
                .telegram_messages
                .iter()
                .map(|m| m.text.clone())
                .find(|t| t.contains("qtickets.service: сбой"))
        },
    );
    // The team on duty reads Russian: the default language of the alerts.
    assert!(
        alert.contains("ТРЕВОГА") && alert.contains("завершился сбоем (результат exit-code"),
        "{alert}"
    );
    assert!(
        alert.contains("QTICKETS_TOKEN"),
        "the last log lines name the setting: {alert}"
    );
    assert!(
        !alert.contains("revoked-token"),
        "no secret in the alert: {alert}"
    );
    let errors = ok(&machine, ERROR_LINES);
    assert!(
        errors.contains("QTickets rejected the token"),
        "`journalctl -p err` finds the error: {errors}"
    );

    // --- a timer fires on its own -------------------------------------------------------------
    write_inside(
        &machine,
        "/opt/zakaz_dashboard/secrets/qtickets.env",
        &qtickets_env,
    );
    write_inside(
        &machine,
        "/etc/systemd/system/qtickets.timer.d/test-schedule.conf",
        "[Timer]\nOnCalendar=\nOnCalendar=*:*:0/10\nRandomizedDelaySec=0\nAccuracySec=1s\n",
    );
    let ok_runs = || {
        query_tsv(&format!(
            "SELECT countIf(status = 'ok') FROM `{}`.meta_job_runs WHERE job = 'qtickets'",
            db.name
        ))
        .trim()
        .parse::<u32>()
        .unwrap_or(0)
    };
    let before = ok_runs();
    ok(&machine, &["systemctl", "daemon-reload"]);
    ok(&machine, &["systemctl", "reset-failed", "qtickets.service"]);
    ok(&machine, &["systemctl", "restart", "qtickets.timer"]);
    wait_for(
        "the timer to start qtickets.service by itself",
        Duration::from_secs(90),
        || (ok_runs() > before).then_some(()),
    );
    std::fs::remove_file(machine.path("/etc/systemd/system/qtickets.timer.d/test-schedule.conf"))
        .unwrap();
    ok(&machine, &["systemctl", "daemon-reload"]);

    // --- disable / enable / status / schedule -----------------------------------------------
    let out = ok(&machine, &[manage, "disable", "qtickets"]);
    assert!(out.contains("disabled qtickets.timer"), "{out}");
    assert_eq!(unit_state("is-enabled", "qtickets.timer"), "disabled");
    assert_eq!(unit_state("is-active", "qtickets.timer"), "inactive");
    let out = ok(&machine, &[manage, "enable", "qtickets"]);
    assert!(
        out.contains("enabled qtickets.timer") && out.contains("next run:"),
        "{out}"
    );
    assert_eq!(unit_state("is-active", "qtickets.timer"), "active");
    let out = ok(&machine, &[manage, "stop", "qtickets"]);
    assert!(out.contains("stopped qtickets.timer"), "{out}");
    assert_eq!(unit_state("is-active", "qtickets.timer"), "inactive");
    assert_eq!(
        unit_state("is-enabled", "qtickets.timer"),
        "enabled",
        "stop is not disable"
    );
    let out = ok(&machine, &[manage, "start", "qtickets"]);
    assert!(
        out.contains("started qtickets.timer") && out.contains("next run:"),
        "{out}"
    );
    let out = ok(&machine, &[manage, "restart", "qtickets"]);
    assert!(out.contains("restarted qtickets.timer"), "{out}");
    ok(&machine, &["systemctl", "reset-failed", "qtickets.service"]);
    let out = ok(&machine, &[manage, "run", "qtickets"]);
    assert!(
        out.contains("run finished") && out.contains("qtickets.service finished: success"),
        "{out}"
    );
    let status = ok(
        &machine,
        &[
            "env",
            &format!("CLICKHOUSE_DB={}", db.name),
            manage,
            "status",
        ],
    );
    let line = status
        .lines()
        .find(|l| l.starts_with("qtickets"))
        .unwrap_or_default();
    assert!(
        line.contains("timer enabled/active") && line.contains("ok at "),
        "{status}"
    );
    let gmail = status
        .lines()
        .find(|l| l.starts_with("gmail_ingest"))
        .unwrap_or_default();
    assert!(gmail.contains("timer disabled/inactive"), "{status}");
    let schedule = ok(&machine, &[manage, "schedule"]);
    assert!(schedule.contains("00:10 MSK"), "{schedule}");
    let verify = ok(&machine, &[manage, "verify"]);
    assert!(verify.contains("units clean"), "{verify}");

    // --- uninstall, power off, and the host is untouched ----------------------------------
    let out = ok(&machine, &[manage, "uninstall"]);
    assert!(out.contains("uninstalled 17 units"), "{out}");
    // The units are gone and nothing is scheduled any more; the settings stay.
    for unit in ["qtickets.timer", "qtickets.service", "zakaz-alert@.service"] {
        assert!(
            !machine
                .path(&format!("/etc/systemd/system/{unit}"))
                .exists(),
            "{unit} left behind"
        );
    }
    assert_ne!(unit_state("is-active", "qtickets.timer"), "active");
    assert_ne!(unit_state("is-enabled", "qtickets.timer"), "enabled");
    assert!(
        !machine
            .path("/etc/systemd/system/timers.target.wants/qtickets.timer")
            .exists()
    );
    assert_eq!(
        std::fs::read_to_string(machine.path("/opt/zakaz_dashboard/secrets/qtickets.env")).unwrap(),
        qtickets_env,
        "secrets are kept"
    );
    drop(machine);
    assert!(marker.exists(), "the host's /tmp was wiped");
    std::fs::remove_file(&marker).unwrap();
    assert!(
        !zakaz_e2e_user_exists("etl"),
        "the etl user leaked onto the host"
    );
    let _ = std::fs::remove_file(&log);
}

fn zakaz_e2e_user_exists(name: &str) -> bool {
    std::process::Command::new("getent")
        .args(["passwd", name])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `GET path` of a server on the machine's own loopback: status and body.
fn http_get(machine: &Machine, port: u16, path: &str) -> Option<(u16, String)> {
    http_get_within(machine, port, path, Duration::from_secs(10))
}

/// [`http_get`], giving up when no answer came within `limit`.
fn http_get_within(
    machine: &Machine,
    port: u16,
    path: &str,
    limit: Duration,
) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = machine.connect(port).ok()?;
    s.set_read_timeout(Some(limit)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let code = raw.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, raw.split_once("\r\n\r\n")?.1.to_owned()))
}

#[tokio::test(flavor = "multi_thread")]
async fn healthcheck_is_ready_under_systemd_and_its_watchdog_restarts_it() {
    let (db, _ch) = TestDb::migrated().await;
    let log = std::env::temp_dir().join(format!("zakaz-e2e-health-{}.log", std::process::id()));
    let machine = Machine::boot(&log).expect("a real systemd boots in a namespace (needs root)");
    // The default port, inside the machine's own network.
    let port = 8080;
    let env_file = "/opt/zakaz_dashboard/secrets/healthcheck.env";
    let settings = format!("CLICKHOUSE_DB={}\nHEALTHCHECK_CACHE_SECONDS=1\n", db.name);
    // First on a port its user may not bind: the install goes on, enables it, remembers
    // its choices, and names the unit that did not start (exit 1).
    write_inside(
        &machine,
        env_file,
        &format!("{settings}HEALTHCHECK_LISTEN=127.0.0.1:80\n"),
    );
    let bin = machine.stage_binaries();
    let manage = format!("{bin}/manage-timers");
    let out = machine.exec(&[&manage, "install", "--binaries", bin, "--queue-shards", "2"]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("enabled healthcheck.service, but it did not start")
            && text.contains("installed, but healthcheck.service (")
            && text.contains("enabled qtickets.timer"),
        "{text}"
    );
    assert_eq!(
        ok(
            &machine,
            &["systemctl", "is-enabled", "healthcheck.service"]
        )
        .trim(),
        "enabled"
    );
    assert!(
        std::fs::read_to_string(machine.path("/opt/zakaz_dashboard/install.json"))
            .unwrap()
            .contains("\"queue_shards\": 2"),
        "the choices are remembered"
    );
    // Fixed as the message says.
    write_inside(&machine, env_file, &settings);
    ok(&machine, &["systemctl", "start", "healthcheck.service"]);
    let install = ok(&machine, &[&manage, "install", "--binaries", bin]);
    assert!(
        install.contains("kept the remembered choices") && install.contains("queue shards 2"),
        "a bare reinstall keeps the remembered shards: {install}"
    );
    let show = |prop: &str| {
        ok(
            &machine,
            &[
                "systemctl",
                "show",
                "-p",
                prop,
                "--value",
                "healthcheck.service",
            ],
        )
        .trim()
        .to_owned()
    };
    // Type=notify: `install` returned after READY=1, with the status line it sent.
    assert_eq!(show("ActiveState"), "active");
    assert_eq!(
        show("StatusText"),
        format!("listening on http://127.0.0.1:{port}")
    );
    let status = machine.exec(&["systemctl", "status", "--no-pager", "healthcheck.service"]);
    let status = output_text(&status);
    assert!(status.contains("active (running)"), "{status}");
    let (code, body) = http_get(&machine, port, "/healthz").expect("the healthcheck answers");
    assert_eq!(
        (code, body.as_str()),
        (200, r#"{"clickhouse":"reachable","status":"ok"}"#)
    );
    let (_, detailed) = http_get(&machine, port, "/healthz/detailed").unwrap();
    let detailed: Value = serde_json::from_str(&detailed).unwrap();
    assert_eq!(
        detailed["jobs"].as_array().unwrap().len(),
        zakaz_core::jobs::JOBS.len()
    );

    // A hung server (stopped, so it can neither answer nor ping) is killed by the watchdog
    // and restarted. Shorter periods than the shipped ones, so the test is quick.
    write_inside(
        &machine,
        "/etc/systemd/system/healthcheck.service.d/test-watchdog.conf",
        "[Service]\nWatchdogSec=2\nRestartSec=1\n",
    );
    ok(&machine, &["systemctl", "daemon-reload"]);
    ok(&machine, &["systemctl", "restart", "healthcheck.service"]);
    let hung = show("MainPID");
    assert_ne!(hung, "0");
    ok(&machine, &["kill", "-STOP", &hung]);
    wait_for(
        "systemd to restart the hung healthcheck",
        Duration::from_secs(60),
        || {
            let pid = show("MainPID");
            (pid != hung && pid != "0" && show("ActiveState") == "active").then_some(())
        },
    );
    assert!(show("NRestarts").parse::<u32>().unwrap() >= 1);
    let journal = || {
        ok(
            &machine,
            &[
                "journalctl",
                "-u",
                "healthcheck.service",
                "--no-pager",
                "-o",
                "cat",
            ],
        )
    };
    let lines = journal();
    assert!(lines.contains("Watchdog timeout"), "{lines}");
    wait_for(
        "/healthz after the restart",
        Duration::from_secs(30),
        || http_get(&machine, port, "/healthz").filter(|(c, _)| *c == 200),
    );

    // Alive but deaf: the process runs and accepts, a free worker answers /healthz, but every
    // worker that takes the server's own probe hangs (`ZAKAZ_TEST_DEAF`, a debug-build hook).
    // Its pinger keeps running, so only a pinger that pings while the probe is answered lets
    // the watchdog kill it; a stopped process (above) would be killed by any pinger.
    write_inside(
        &machine,
        env_file,
        &format!("{settings}ZAKAZ_TEST_DEAF=1\n"),
    );
    // Longer than the checks below take; a wider restart gap to see the failed state.
    write_inside(
        &machine,
        "/etc/systemd/system/healthcheck.service.d/test-watchdog.conf",
        "[Service]\nWatchdogSec=6\nRestartSec=2\n",
    );
    ok(&machine, &["systemctl", "daemon-reload"]);
    // The restarts so far must not count against StartLimitBurst.
    ok(
        &machine,
        &["systemctl", "reset-failed", "healthcheck.service"],
    );
    let failed_before = journal().matches("Failed with result 'watchdog'").count();
    ok(&machine, &["systemctl", "restart", "healthcheck.service"]);
    let restarts = show("NRestarts").parse::<u32>().unwrap();
    let deaf = show("MainPID");
    let (code, _) = http_get(&machine, port, "/healthz").expect("the deaf process still answers");
    assert_eq!(code, 200, "a free worker answers /healthz");
    assert_eq!(
        http_get_within(&machine, port, "/healthz/live", Duration::from_secs(1)),
        None,
        "no worker answers the probe"
    );
    let status = ok(&machine, &["cat", &format!("/proc/{deaf}/status")]);
    let state = status.lines().find(|l| l.starts_with("State:")).unwrap();
    assert!(
        state.contains("S (sleeping)") || state.contains("R (running)"),
        "{state}"
    );
    assert_eq!(show("MainPID"), deaf, "still the same process");
    // Killed by the watchdog: the unit failed with result `watchdog` and waits to restart.
    let start = Instant::now();
    let mut result = String::new();
    while start.elapsed() < Duration::from_secs(60) && result != "watchdog" {
        std::thread::sleep(Duration::from_millis(100));
        result = show("Result");
    }
    assert_eq!(result, "watchdog", "{}", journal());
    // The next start reads the env file again: deaf no more.
    write_inside(&machine, env_file, &settings);
    wait_for(
        "systemd to restart the deaf healthcheck",
        Duration::from_secs(60),
        || {
            let pid = show("MainPID");
            (pid != deaf && pid != "0" && show("ActiveState") == "active").then_some(())
        },
    );
    let lines = journal();
    assert!(
        lines.matches("Failed with result 'watchdog'").count() > failed_before,
        "{lines}"
    );
    wait_for(
        "/healthz/live after the deaf process was replaced",
        Duration::from_secs(60),
        || {
            http_get_within(&machine, port, "/healthz/live", Duration::from_secs(2))
                .filter(|(c, _)| *c == 200)
        },
    );
    assert!(show("NRestarts").parse::<u32>().unwrap() > restarts);

    // A clean stop on SIGTERM.
    ok(&machine, &["systemctl", "stop", "healthcheck.service"]);
    assert_eq!(show("Result"), "success");
    let lines = journal();
    assert!(lines.contains("SIGTERM received, stopping"), "{lines}");
    assert!(
        http_get(&machine, port, "/healthz/live").is_none(),
        "nothing listens after the stop"
    );

    let out = ok(&machine, &[&format!("{bin}/manage-timers"), "uninstall"]);
    // The 17 units of one queue shard, and the 4 worker units of the second.
    assert!(out.contains("uninstalled 21 units"), "{out}");
    drop(machine);
    let _ = std::fs::remove_file(&log);
}

#[test]
fn install_refuses_before_writing_anything_and_keeps_the_operators_choices() {
    let log = std::env::temp_dir().join(format!("zakaz-e2e-harm-{}.log", std::process::id()));
    let machine = Machine::boot(&log).expect("a real systemd boots in a namespace (needs root)");
    let bin = machine.stage_binaries();
    let manage = format!("{bin}/manage-timers");
    let units = "/etc/systemd/system";
    // An existing prefix with the operator's own owner and mode.
    ok(&machine, &["mkdir", "-p", "/opt/zakaz_dashboard"]);
    ok(&machine, &["chown", "65534:65534", "/opt/zakaz_dashboard"]);
    ok(&machine, &["chmod", "0775", "/opt/zakaz_dashboard"]);
    // A unit linked to a file the test owns (as a masked unit links to /dev/null), and a
    // foreign unit that mentions the marker below its first line.
    write_inside(
        &machine,
        "/run/zakaz-test/own-file",
        "the test's own file\n",
    );
    ok(&machine, &["chmod", "0600", "/run/zakaz-test/own-file"]);
    ok(
        &machine,
        &[
            "ln",
            "-s",
            "/run/zakaz-test/own-file",
            &format!("{units}/alerts.timer"),
        ],
    );
    let foreign = "[Unit]\n# managed-by: manage-timers\nDescription=someone else's\n";
    write_inside(&machine, &format!("{units}/direct.service"), foreign);

    let refused = machine.exec(&[&manage, "install", "--binaries", bin]);
    assert_eq!(refused.status.code(), Some(78), "{}", output_text(&refused));
    let said = output_text(&refused);
    assert!(
        said.contains("refusing to install, nothing was changed")
            && said.contains("alerts.timer` is a symbolic link to `/run/zakaz-test/own-file`")
            && said.contains("direct.service` was not written by manage-timers"),
        "{said}"
    );
    let written = |name: &str| machine.path(&format!("{units}/{name}")).exists();
    assert!(!written("qtickets.service"), "nothing half-installed");
    assert!(!machine.path("/opt/zakaz_dashboard/bin").exists());
    // --force overwrites the foreign unit but still never touches the link's target.
    let forced = machine.exec(&[&manage, "install", "--binaries", bin, "--force"]);
    assert_eq!(forced.status.code(), Some(78), "{}", output_text(&forced));
    assert!(!written("qtickets.service"));
    let own = machine.path("/run/zakaz-test/own-file");
    assert_eq!(
        std::fs::read_to_string(&own).unwrap(),
        "the test's own file\n"
    );
    let mode = |p: &Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
            & 0o777
    };
    assert_eq!(mode(&own), 0o600);

    // Without the link, --force still refuses the prefix: it belongs to uid 65534, and
    // `install` would then run PREFIX/bin/* as root. One line naming it, nothing written.
    std::fs::remove_file(machine.path(&format!("{units}/alerts.timer"))).unwrap();
    let refused = machine.exec(&[&manage, "install", "--binaries", bin, "--force"]);
    assert_eq!(refused.status.code(), Some(78), "{}", output_text(&refused));
    let said = output_text(&refused);
    assert_eq!(said.trim_end().lines().count(), 1, "{said}");
    assert!(
        said.contains("refusing to install, nothing was changed: `/opt/zakaz_dashboard` is owned by uid 65534, not root"),
        "{said}"
    );
    assert!(!written("qtickets.service"));
    assert!(!machine.path("/opt/zakaz_dashboard/bin").exists());
    assert!(!machine.path("/usr/local/bin/manage-timers").exists());
    let prefix = machine.path("/opt/zakaz_dashboard");
    assert_eq!(mode(&prefix), 0o775);
    // Root's but writable by others: refused the same way.
    ok(&machine, &["chown", "0:0", "/opt/zakaz_dashboard"]);
    ok(&machine, &["chmod", "0777", "/opt/zakaz_dashboard"]);
    let refused = machine.exec(&[&manage, "install", "--binaries", bin, "--force"]);
    assert_eq!(refused.status.code(), Some(78), "{}", output_text(&refused));
    assert!(
        output_text(&refused).contains("`/opt/zakaz_dashboard` is writable by other users"),
        "{}",
        output_text(&refused)
    );
    ok(&machine, &["chmod", "0755", "/opt/zakaz_dashboard"]);
    // A dangling link where an env file goes: it would create the link's target (0644
    // while saying 0600). Refused, its target never created.
    ok(
        &machine,
        &["mkdir", "-m", "0700", "/opt/zakaz_dashboard/secrets"],
    );
    ok(
        &machine,
        &[
            "ln",
            "-s",
            "/run/zakaz-test/not-yet",
            "/opt/zakaz_dashboard/secrets/vk_ads.env",
        ],
    );
    let refused = machine.exec(&[&manage, "install", "--binaries", bin, "--force"]);
    assert_eq!(refused.status.code(), Some(78), "{}", output_text(&refused));
    assert!(
        output_text(&refused).contains("`/opt/zakaz_dashboard/secrets/vk_ads.env` is a symbolic link to `/run/zakaz-test/not-yet`"),
        "{}",
        output_text(&refused)
    );
    assert!(!machine.path("/run/zakaz-test/not-yet").exists());
    assert!(
        !machine
            .path("/opt/zakaz_dashboard/secrets/qtickets.env")
            .exists()
    );
    std::fs::remove_file(machine.path("/opt/zakaz_dashboard/secrets/vk_ads.env")).unwrap();
    let out = ok(
        &machine,
        &[&manage, "install", "--binaries", bin, "--force"],
    );
    assert!(out.contains("enabled qtickets.timer"), "{out}");
    // An existing prefix keeps its mode.
    assert_eq!(mode(&prefix), 0o755);
    let direct = std::fs::read_to_string(machine.path(&format!("{units}/direct.service"))).unwrap();
    assert!(
        direct.starts_with("# managed-by: manage-timers\n"),
        "{direct}"
    );

    // The operator disables a timer; an upgrade (install again) leaves it disabled and says
    // that nothing needed changing.
    ok(&machine, &[&manage, "disable", "qtickets"]);
    let again = ok(&machine, &[&manage, "install", "--binaries", bin]);
    assert!(
        again.contains("17 unit(s) already as they should be: unchanged"),
        "{again}"
    );
    assert!(!again.contains("enabled qtickets.timer"), "{again}");
    let state = machine.exec(&["systemctl", "is-enabled", "qtickets.timer"]);
    assert_eq!(String::from_utf8_lossy(&state.stdout).trim(), "disabled");
    ok(&machine, &[&manage, "uninstall"]);

    // Under root's umask 077, the parents the install creates are still 0755: the jobs'
    // user must pass through them.
    let install = format!(
        "umask 077 && {manage} install --binaries {bin} --prefix /run/zakaz-umask/a/b --no-enable"
    );
    ok(&machine, &["sh", "-c", &install]);
    for dir in [
        "/run/zakaz-umask",
        "/run/zakaz-umask/a",
        "/run/zakaz-umask/a/b",
    ] {
        assert_eq!(mode(&machine.path(dir)), 0o755, "{dir}");
    }
    assert_eq!(mode(&machine.path("/run/zakaz-umask/a/b/secrets")), 0o700);
    ok(&machine, &[&manage, "uninstall"]);
    drop(machine);
    let _ = std::fs::remove_file(&log);
}

#[test]
fn the_queue_timers_fire_per_shard_and_drain_a_copy_across_servers() {
    let stand = zakaz_e2e::queue_stand();
    let mut env: String = stand
        .dsn_env()
        .iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    env.push_str("CAMP_QUEUE_POLL_MS=200\nCAMP_QUEUE_LIFETIME_SECS=20\n");

    let log = std::env::temp_dir().join(format!("zakaz-e2e-queue-{}.log", std::process::id()));
    let machine = Machine::boot(&log).expect("a real systemd boots in a namespace (needs root)");
    write_inside(
        &machine,
        "/opt/zakaz_dashboard/secrets/camp_queue.env",
        &env,
    );
    let bin = machine.stage_binaries();
    let manage = "/opt/zakaz_dashboard/bin/manage-timers";
    let install = ok(
        &machine,
        &[
            &format!("{bin}/manage-timers"),
            "install",
            "--binaries",
            bin,
            "--queue-shards",
            "2",
        ],
    );
    for shard in 1..=2 {
        for lane in ["copy1", "copy2", "copy3", "rest"] {
            assert!(
                install.contains(&format!("camp_queue-{shard}-{lane}.timer")),
                "{install}"
            );
        }
    }
    assert!(
        !install.contains("enabled camp_queue"),
        "not enabled by default: {install}"
    );
    // The data, enqueued on the machine as an operator would (its clock is the workers'):
    // client 1 on shard 1 (system server), client 2 on shard 2.
    let queue = |args: &[&str]| {
        let mut all = vec![
            "/opt/zakaz_dashboard/bin/camp-queue",
            "--env-file",
            "/opt/zakaz_dashboard/secrets/camp_queue.env",
        ];
        all.extend_from_slice(args);
        ok(&machine, &all)
    };
    queue(&[
        "demo-data",
        "--clients",
        "2",
        "--campaigns",
        "2",
        "--banners",
        "2",
        "--phrases",
        "3",
    ]);
    queue(&[
        "enqueue",
        "copy",
        "--cid",
        "1",
        "--to-client",
        "2",
        "--role",
        "client",
    ]);
    queue(&["enqueue", "arc", "--cid", "2"]);
    let list = ok(&machine, &[manage, "list"]);
    assert!(
        list.contains("camp_queue") && list.contains("copy:1 *:0/3"),
        "{list}"
    );

    // Shard 1's timers fire every few seconds here (the shipped calendar is every 3 minutes).
    for lane in ["copy1", "rest"] {
        write_inside(
            &machine,
            &format!("/etc/systemd/system/camp_queue-1-{lane}.timer.d/test-schedule.conf"),
            "[Timer]\nOnCalendar=\nOnCalendar=*:*:0/5\n",
        );
    }
    ok(&machine, &["systemctl", "daemon-reload"]);
    let enabled = ok(&machine, &[manage, "enable", "camp_queue"]);
    assert!(
        enabled.contains("enabled camp_queue-1-copy1.timer")
            && enabled.contains("enabled camp_queue-2-rest.timer"),
        "{enabled}"
    );
    wait_for(
        "the copy:1 timer to start a worker that copies cid 1",
        Duration::from_secs(90),
        || {
            (stand.sql(
                2,
                "SELECT COUNT(*) FROM campaigns WHERE copied_from_cid = 1",
            ) == "1")
                .then_some(())
        },
    );
    wait_for(
        "the rest timer to archive cid 2",
        Duration::from_secs(90),
        || {
            (stand.sql(1, "SELECT statusArchived FROM campaigns WHERE cid = 2") == "Yes")
                .then_some(())
        },
    );
    assert_eq!(
        stand.sql(1, "SELECT COUNT(*) FROM camp_operations_queue_copy"),
        "0"
    );
    let new_cid = stand.sql(2, "SELECT cid FROM campaigns WHERE copied_from_cid = 1");
    assert_eq!(
        stand.sql(
            2,
            &format!("SELECT COUNT(*) FROM phrases WHERE cid = {new_cid}")
        ),
        "6"
    );

    // The campaign's story is in the journal under its own field.
    let story = ok(
        &machine,
        &["journalctl", "CID=1", "--no-pager", "-o", "cat"],
    );
    assert!(
        story.contains("shard_1,par-id_copy:1 cid=1 claimed: copy to client 2"),
        "{story}"
    );
    assert!(
        story.contains(&format!(
            "shard_1,par-id_copy:1 cid=1 done: copied to cid {new_cid} of client 2 on shard 2"
        )),
        "{story}"
    );
    let fields = ok(
        &machine,
        &["journalctl", "CID=1", "--no-pager", "-o", "json", "-n", "1"],
    );
    let fields: Value = serde_json::from_str(fields.trim()).unwrap();
    assert_eq!(fields["SHARD"], "1");
    assert_eq!(fields["PAR_ID"], "copy:1");
    assert_eq!(fields["_SYSTEMD_UNIT"], "camp_queue@1-copy1.service");

    let status = ok(&machine, &[manage, "status", "camp_queue"]);
    assert!(
        status.contains("camp_queue-1-copy1") && status.contains("camp_queue-2-rest"),
        "{status}"
    );
    let out = ok(&machine, &[manage, "disable", "camp_queue"]);
    assert!(out.contains("disabled camp_queue-2-copy3.timer"), "{out}");
    let out = ok(&machine, &[&format!("{bin}/manage-timers"), "uninstall"]);
    assert!(
        out.contains("removed /etc/systemd/system/camp_queue-2-rest.timer"),
        "{out}"
    );
    drop(machine);
    let _ = std::fs::remove_file(&log);
}

/// `--env-file` (manual runs) reads an env file exactly as systemd's `EnvironmentFile=` (the
/// timers' runs): quotes, backslashes, comments, continuation lines. A password with a quote
/// or a backslash must be the same password on both paths. (A line systemd ignores, such as
/// `export KEY=…`, is refused by `--env-file`: zakaz-core's own tests.)
#[test]
fn env_files_read_as_systemd_reads_them() {
    let log = std::env::temp_dir().join(format!("zakaz-e2e-envfile-{}.log", std::process::id()));
    let machine = Machine::boot(&log).expect("a real systemd boots in a namespace (needs root)");
    let text = concat!(
        "Z_PLAIN=abc\n",
        "Z_SPACES = padded value  \n",
        "Z_DQ=\"two words\"\n",
        "Z_SQ='x=y'\n",
        "Z_BS_UNQ=a\\b\n",
        "Z_BS_TWO=a\\\\b\n",
        "Z_DQ_ESC=\"say \\\"hi\\\" \\\\ \\$ok \\x\"\n",
        "Z_SQ_BS='c:\\path'\n",
        "Z_HASH=a#b\n",
        "Z_MIXED=\"a\"b'c'\n",
        "; a semicolon comment\n",
        "# a hash comment\n",
        "  # an indented comment\n",
        "# a comment whose line ends in a backslash \\\n",
        "Z_AFTER_COMMENT=1\n",
        "Z_CONT=first\\\n",
        "second\n",
        "Z_EMPTY=\n",
        "Z_TRAIL_DQ=\"x\"  \n",
        "Z_INNER_SPACE=a b  c\n",
        "Z_DQ_NL=\"line1\n",
        "line2\"\n",
        "Z_LAST=end\n",
    );
    write_inside(&machine, "/run/zakaz-envfile-test.env", text);
    let out = machine.exec(&[
        "systemd-run",
        "--wait",
        "--pipe",
        "--quiet",
        "-p",
        "EnvironmentFile=/run/zakaz-envfile-test.env",
        "/usr/bin/env",
        "-0",
    ]);
    assert!(out.status.success(), "{}", output_text(&out));
    let systemd: Vec<(String, String)> = out
        .stdout
        .split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok()?.split_once('='))
        .filter(|(k, _)| k.starts_with("Z_"))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let ours = zakaz_core::env_file::parse(Path::new("test.env"), text)
        .unwrap()
        .into_iter()
        .collect::<Vec<_>>();
    let sorted = |mut v: Vec<(String, String)>| {
        v.sort();
        v
    };
    assert_eq!(sorted(ours), sorted(systemd));
    drop(machine);
    let _ = std::fs::remove_file(&log);
}
