//! The operator's day in a real systemd, as typed: `manage-timers` and `camp-queue` on the
//! PATH after `install`, install choices remembered across a bare reinstall, manual runs with
//! arguments, the documented exit codes, `status --json`, logs before any run, no restart of
//! a run that exits 78, and completion of job names in bash.

use std::time::Duration;

use serde_json::Value;
use zakaz_core::testing::{TestDb, query_tsv};
use zakaz_e2e::{Machine, output_text, wait_for, write_inside};

/// A command as the operator types it: found on the machine's PATH, with the test's database
/// for the ClickHouse readers.
fn typed(machine: &Machine, db: &str, line: &str) -> std::process::Output {
    machine.exec(&["env", &format!("CLICKHOUSE_DB={db}"), "bash", "-c", line])
}

fn ok(out: std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "`{what}` failed: {}",
        output_text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn show(machine: &Machine, unit: &str, prop: &str) -> String {
    String::from_utf8_lossy(
        &machine
            .exec(&["systemctl", "show", "-p", prop, "--value", unit])
            .stdout,
    )
    .trim()
    .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operators_day_works_as_typed_in_a_real_systemd() {
    let (db, _ch) = TestDb::migrated().await;
    let sandbox = api_sandbox::Server::start_local(api_sandbox::SandboxConfig::default()).unwrap();
    let log = std::env::temp_dir().join(format!("zakaz-e2e-operator-{}.log", std::process::id()));
    let machine = Machine::boot(&log).expect("a real systemd boots in a namespace (needs root)");
    machine.forward_url(&sandbox.base_url).unwrap();
    let qtickets_env = format!(
        "QTICKETS_BASE_URL={}/qtickets/api/rest/v1\nQTICKETS_TOKEN=sandbox-token\nQTICKETS_INVENTORY=false\nCLICKHOUSE_DB={}\n",
        sandbox.base_url, db.name
    );
    write_inside(
        &machine,
        "/opt/zakaz_dashboard/secrets/qtickets.env",
        &qtickets_env,
    );
    write_inside(
        &machine,
        "/opt/zakaz_dashboard/secrets/healthcheck.env",
        &format!("CLICKHOUSE_DB={}\n", db.name),
    );
    let sh = |line: &str| typed(&machine, &db.name, line);

    // --- not installed: status says a timer is missing (3) ------------------------------
    let bin = machine.stage_binaries();
    let out = machine.exec(&[&format!("{bin}/manage-timers"), "status"]);
    assert_eq!(out.status.code(), Some(3), "{}", output_text(&out));

    // --- install with choices; then the commands are on the PATH ----------------------
    let out = ok(
        machine.exec(&[
            &format!("{bin}/manage-timers"),
            "install",
            "--binaries",
            bin,
            "--queue-shards",
            "2",
            "--ip-allow",
            "10.0.0.0/8",
        ]),
        "install",
    );
    assert!(
        out.contains(
            "linked /usr/local/bin/manage-timers → /opt/zakaz_dashboard/bin/manage-timers"
        ),
        "{out}"
    );
    let found = ok(sh("command -v manage-timers camp-queue"), "command -v");
    assert_eq!(
        found,
        "/usr/local/bin/manage-timers\n/usr/local/bin/camp-queue\n"
    );
    let status = sh("manage-timers status");
    assert_eq!(status.status.code(), Some(0), "{}", output_text(&status));
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(
        status.contains("camp_queue-2-copy1") && status.contains("qtickets"),
        "{status}"
    );
    // The worker rows keep the columns: their STATE starts where the header's does.
    let header = status.lines().find(|l| l.starts_with("JOB")).unwrap();
    let col = header.find("STATE").unwrap();
    for line in status.lines().filter(|l| l.starts_with("camp_queue-")) {
        assert_eq!(line.find("timer "), Some(col), "{status}");
    }
    let json: Value = serde_json::from_str(&ok(sh("manage-timers status --json"), "status --json"))
        .expect("status --json is JSON");
    for job in zakaz_core::jobs::JOBS {
        assert!(
            json["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|j| j["job"] == job.name),
            "{json}"
        );
    }
    assert_eq!(json["ok"], true, "{json}");

    // --- a bare install keeps the choices -------------------------------------------------
    let again = ok(sh("manage-timers install"), "bare install");
    assert!(
        again.contains("kept the remembered choices")
            && again.contains("queue shards 2")
            && again.contains("ip-allow 10.0.0.0/8"),
        "{again}"
    );
    assert!(!again.contains("removed"), "{again}");
    for lane in ["copy1", "copy2", "copy3", "rest"] {
        assert!(
            machine
                .path(&format!("/etc/systemd/system/camp_queue-2-{lane}.timer"))
                .exists(),
            "shard 2's {lane} timer survived the bare install"
        );
    }
    let unit =
        std::fs::read_to_string(machine.path("/etc/systemd/system/qtickets.service")).unwrap();
    assert!(
        unit.contains("IPAddressDeny=any\nIPAddressAllow=localhost 10.0.0.0/8\n"),
        "the fence survived: {unit}"
    );
    let mut deny: Vec<String> = show(&machine, "qtickets.service", "IPAddressDeny")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    deny.sort();
    assert_eq!(deny, ["0.0.0.0/0", "::/0"], "systemd has the fence loaded");
    let shown = ok(sh("manage-timers install --show"), "install --show");
    assert!(
        shown.contains("--queue-shards  2") && shown.contains("--ip-allow      10.0.0.0/8"),
        "{shown}"
    );
    // Changing one is explicit: fewer shards remove the others' timers; `none` the fence.
    let fewer = ok(
        sh("manage-timers install --queue-shards 1 --ip-allow none"),
        "install --queue-shards 1",
    );
    assert!(
        fewer.contains(
            "removed /etc/systemd/system/camp_queue-2-rest.timer (beyond --queue-shards 1)"
        ) && fewer.contains("changed queue shards: 2 → 1")
            && fewer.contains("changed ip-allow: 10.0.0.0/8 → none"),
        "{fewer}"
    );
    assert!(
        !machine
            .path("/etc/systemd/system/camp_queue-2-copy1.timer")
            .exists()
    );
    assert_eq!(
        show(&machine, "camp_queue-2-copy1.timer", "LoadState"),
        "not-found"
    );
    let unit =
        std::fs::read_to_string(machine.path("/etc/systemd/system/qtickets.service")).unwrap();
    assert!(!unit.contains("IPAddressDeny"), "{unit}");

    // --- docs, man pages and completions where the system looks ---------------------------
    let doc = show(&machine, "qtickets.service", "Documentation");
    assert_eq!(doc, "file:/opt/zakaz_dashboard/docs/runbook.md");
    assert!(
        machine
            .path("/opt/zakaz_dashboard/docs/runbook.md")
            .exists()
    );
    assert!(
        machine
            .path("/opt/zakaz_dashboard/docs/runbook.ru.md")
            .exists()
    );
    for page in [
        "manage-timers",
        "manage-timers-install",
        "manage-timers-run",
        "camp-queue",
    ] {
        assert!(
            machine
                .path(&format!("/usr/local/share/man/man1/{page}.1"))
                .exists(),
            "{page}.1"
        );
    }
    assert!(
        machine
            .path("/usr/local/share/zsh/site-functions/_manage-timers")
            .exists()
    );
    assert!(
        machine
            .path("/usr/local/share/fish/vendor_completions.d/manage-timers.fish")
            .exists()
    );
    let completion = |line: &str| {
        let program = line.split_whitespace().next().unwrap();
        let script = format!(
            r#"source /etc/bash_completion.d/{program}
f=$(complete -p {program} | sed -E 's/.*-F ([^ ]+).*/\1/')
read -ra COMP_WORDS <<< "{line}"
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); COMP_LINE="{line}"; COMP_POINT=${{#COMP_LINE}}
$f {program} "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#
        );
        ok(machine.exec(&["bash", "-c", &script]), "completion")
    };
    let offered = completion("manage-timers enable q");
    assert!(offered.lines().any(|l| l == "qtickets"), "{offered}");
    let offered = completion("camp-queue enqueue --");
    assert!(
        offered.lines().any(|l| l == "--copy-workers"),
        "a hyphenated binary's subcommands complete: {offered}"
    );

    // --- a manual run with arguments -------------------------------------------------------
    // With the unit's drop-ins, as the timer's runs have them (`systemctl edit`).
    let drop_in = "/etc/systemd/system/qtickets.service.d/test-debug.conf";
    write_inside(
        &machine,
        drop_in,
        "[Service]\nEnvironment=LOG_LEVEL=debug\n",
    );
    ok(
        machine.exec(&["systemctl", "daemon-reload"]),
        "daemon-reload",
    );
    let out = sh("manage-timers run qtickets -- --days 2");
    let said = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("run finished"), "the run's log: {said}");
    assert!(said.contains("finished: success"), "{said}");
    // A debug line: the drop-in's LOG_LEVEL is in force.
    assert!(
        said.contains("connected to ClickHouse url="),
        "the drop-in's LOG_LEVEL: {said}"
    );
    std::fs::remove_file(machine.path(drop_in)).unwrap();
    ok(
        machine.exec(&["systemctl", "daemon-reload"]),
        "daemon-reload",
    );
    let runs = query_tsv(&format!(
        "SELECT count() FROM `{}`.meta_job_runs WHERE job = 'qtickets' AND status = 'ok'",
        db.name
    ));
    assert_eq!(runs, "1\n");
    // With the service's identity: its journal lines carry the job's name and the etl user.
    let fields = ok(
        machine.exec(&[
            "journalctl",
            "-t",
            "qtickets",
            "-o",
            "json",
            "--no-pager",
            "-n",
            "1",
        ]),
        "journalctl",
    );
    let fields: Value = serde_json::from_str(fields.trim()).unwrap();
    assert!(
        fields["_SYSTEMD_UNIT"]
            .as_str()
            .is_some_and(|u| u.starts_with("zakaz-run-qtickets-")),
        "{fields}"
    );
    let etl = ok(machine.exec(&["id", "-u", "etl"]), "id");
    assert_eq!(fields["_UID"].as_str(), Some(etl.trim()), "{fields}");

    // --- exit codes ---------------------------------------------------------------------------
    let out = sh("manage-timers run nosuchjob");
    assert_eq!(out.status.code(), Some(64), "{}", output_text(&out));
    // `manage-timers ARGS` as a user who is not root (nobody, no groups).
    let as_nobody = |args: &[&str]| {
        let mut all = vec![
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/usr/local/bin/manage-timers",
        ];
        all.extend_from_slice(args);
        machine.exec(&all)
    };
    let out = as_nobody(&["enable", "qtickets"]);
    assert_eq!(out.status.code(), Some(77), "{}", output_text(&out));

    // --- logs before any run, and every job's log ------------------------------------------
    let out = sh("manage-timers logs camp_queue");
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("no log lines of camp_queue yet"),
        "{}",
        output_text(&out)
    );
    assert!(!output_text(&out).contains("Failed to add filter"));
    let all = ok(sh("manage-timers logs -n 200"), "logs");
    assert!(all.contains("run finished"), "{all}");
    // A user who may not read the system journal is told so, never that nothing ran.
    let out = as_nobody(&["logs", "-n", "200"]);
    assert_eq!(out.status.code(), Some(77), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("that this user may read")
            && !output_text(&out).contains("has not run"),
        "{}",
        output_text(&out)
    );

    // --- a run exiting 78 is not restarted; status exits 3 ----------------------------------
    // Short restart periods, so a restart that should happen is seen quickly.
    write_inside(
        &machine,
        "/etc/systemd/system/qtickets.service.d/test-restart.conf",
        "[Service]\nRestartSec=1\n",
    );
    ok(
        machine.exec(&["systemctl", "daemon-reload"]),
        "daemon-reload",
    );
    write_inside(
        &machine,
        "/opt/zakaz_dashboard/secrets/qtickets.env",
        &qtickets_env.replace("QTICKETS_TOKEN=sandbox-token\n", ""),
    );
    let out = sh("manage-timers run qtickets");
    assert_eq!(
        out.status.code(),
        Some(78),
        "the run's own code: {}",
        output_text(&out)
    );
    assert!(
        output_text(&out).contains("QTICKETS_TOKEN"),
        "{}",
        output_text(&out)
    );
    // Every such run shows its own lines, however quickly it exits: journald may take a line
    // from a process already gone, without the run's invocation ID.
    for attempt in 0..40 {
        ok(
            machine.exec(&["systemctl", "reset-failed", "qtickets.service"]),
            "reset-failed",
        );
        let out = sh("manage-timers run qtickets");
        assert_eq!(out.status.code(), Some(78), "{}", output_text(&out));
        // The error line once: neither lost nor shown twice.
        let said = output_text(&out);
        if said
            .lines()
            .filter(|l| l.contains("QTICKETS_TOKEN"))
            .count()
            != 1
        {
            let journal = machine.exec(&["journalctl", "-o", "export", "--no-pager", "-n", "12"]);
            panic!(
                "run {attempt}: {}\nthe journal's last entries:\n{}",
                output_text(&out),
                output_text(&journal)
            );
        }
    }
    // A start systemd refuses before the job runs (here an assertion; the start limit after
    // a few failed starts in a row is the usual case) is said as such, not shown as the run
    // before with its lines and exit status. (Not driven into the start limit itself: starts
    // back to back without `reset-failed` now and then fail in this machine's systemd with
    // 219/CGROUP, a race of its own.)
    let assertion = "/etc/systemd/system/qtickets.service.d/test-assert.conf";
    write_inside(
        &machine,
        assertion,
        "[Unit]\nAssertPathExists=/zakaz-test-no-such-file\n",
    );
    ok(
        machine.exec(&["systemctl", "daemon-reload"]),
        "daemon-reload",
    );
    let refused = sh("manage-timers run qtickets");
    let text = output_text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{text}");
    assert!(
        text.contains("qtickets.service did not start, so no run of it is shown (systemd said: ")
            && text.contains("`sudo systemctl reset-failed qtickets.service` lets it start now"),
        "{text}"
    );
    assert!(!text.contains("QTICKETS_TOKEN"), "{text}");
    ok(machine.exec(&["rm", assertion]), "rm");
    ok(
        machine.exec(&["systemctl", "daemon-reload"]),
        "daemon-reload",
    );
    ok(
        machine.exec(&["systemctl", "reset-failed", "qtickets.service"]),
        "reset-failed",
    );
    let out = sh("manage-timers run qtickets");
    assert_eq!(out.status.code(), Some(78), "{}", output_text(&out));
    // Straight to failed: a restart would show `auto-restart` and count in NRestarts.
    assert_eq!(show(&machine, "qtickets.service", "SubState"), "failed");
    assert_eq!(show(&machine, "qtickets.service", "NRestarts"), "0");
    let out = sh("manage-timers status");
    assert_eq!(out.status.code(), Some(3), "{}", output_text(&out));
    assert!(
        output_text(&out)
            .contains("problem: qtickets: the last run of qtickets.service failed (exit-code)"),
        "{}",
        output_text(&out)
    );
    let json: Value = serde_json::from_slice(&sh("manage-timers status --json").stdout).unwrap();
    assert_eq!(json["ok"], false);
    // The contrast: a run that fails otherwise (the API unreachable) is restarted.
    write_inside(
        &machine,
        "/opt/zakaz_dashboard/secrets/qtickets.env",
        &qtickets_env.replace(&sandbox.base_url, "http://127.0.0.1:9"),
    );
    ok(
        machine.exec(&["systemctl", "reset-failed", "qtickets.service"]),
        "reset-failed",
    );
    let out = machine.exec(&["systemctl", "start", "qtickets.service"]);
    assert!(!out.status.success());
    let code = show(&machine, "qtickets.service", "ExecMainStatus");
    assert!(code != "0" && code != "78" && code != "64", "{code}");
    wait_for(
        "systemd to restart a run that failed with a retryable code",
        Duration::from_secs(60),
        || (show(&machine, "qtickets.service", "NRestarts") != "0").then_some(()),
    );

    // --- uninstall removes the links ----------------------------------------------------------
    ok(
        machine.exec(&["systemctl", "stop", "qtickets.service"]),
        "stop",
    );
    let out = ok(sh("manage-timers uninstall"), "uninstall");
    assert!(
        out.contains("removed /usr/local/bin/manage-timers"),
        "{out}"
    );
    assert!(!sh("command -v manage-timers").status.success());
    assert!(
        machine.path("/opt/zakaz_dashboard/install.json").exists(),
        "the choices are kept for a reinstall"
    );
    drop(machine);
    let _ = std::fs::remove_file(&log);
}
