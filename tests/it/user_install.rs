//! A per-user install (`manage-timers install --user`) in a real user manager, no root:
//! the units land in `~/.config/systemd/user`, timers run under the user's systemd.

use zakaz_e2e::Machine;

fn run(machine: &Machine, args: &[&str]) -> std::process::Output {
    machine.exec(args)
}

#[test]
fn a_per_user_install_works_without_root() {
    let log = std::env::temp_dir().join(format!("zakaz-e2e-user-{}.log", std::process::id()));
    let machine = Machine::boot(&log).expect("a real systemd boots in a namespace (needs root)");
    machine.stage_binaries();
    let out = run(
        &machine,
        &[
            "useradd",
            "--create-home",
            "--shell",
            "/bin/sh",
            "operator1",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let uid = String::from_utf8_lossy(&run(&machine, &["id", "-u", "operator1"]).stdout)
        .trim()
        .to_owned();
    let out = run(
        &machine,
        &["systemctl", "start", &format!("user@{uid}.service")],
    );
    assert!(
        out.status.success(),
        "user manager: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let as_user = |args: &[&str]| {
        let mut all = vec![
            "setpriv",
            "--reuid=operator1",
            "--regid=operator1",
            "--init-groups",
            "env",
        ];
        let runtime = format!("XDG_RUNTIME_DIR=/run/user/{uid}");
        all.extend(["HOME=/home/operator1", runtime.as_str()]);
        all.extend_from_slice(args);
        run(&machine, &all)
    };
    // The healthcheck service (enabled by default) keeps its default port: the machine's
    // network is its own.
    let secrets = "/home/operator1/zakaz_dashboard/secrets";
    std::fs::create_dir_all(machine.path(secrets)).unwrap();
    // A loader the user can run, against a sandbox and a database of this test's own.
    let sandbox = api_sandbox::Server::start_local(api_sandbox::SandboxConfig::default()).unwrap();
    machine.forward_url(&sandbox.base_url).unwrap();
    let db = zakaz_core::testing::TestDb::empty();
    std::fs::write(
        machine.path(&format!("{secrets}/qtickets.env")),
        format!(
            "QTICKETS_BASE_URL={}/qtickets/api/rest/v1\nQTICKETS_TOKEN=sandbox-token\nQTICKETS_INVENTORY=false\nCLICKHOUSE_DB={}\n",
            sandbox.base_url, db.name
        ),
    )
    .unwrap();
    let out = run(
        &machine,
        &[
            "chown",
            "-R",
            "operator1:operator1",
            "/home/operator1/zakaz_dashboard",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = as_user(&[
        "/run/zakaz-binaries/manage-timers",
        "install",
        "--user",
        "--binaries",
        "/run/zakaz-binaries",
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("/home/operator1/.config/systemd/user/qtickets.timer"),
        "{text}"
    );
    assert!(text.contains("enabled qtickets.timer"), "{text}");
    // The operator's commands are linked into ~/.local/bin.
    let link =
        std::fs::read_link(machine.path("/home/operator1/.local/bin/manage-timers")).unwrap();
    assert_eq!(
        link,
        std::path::Path::new("/home/operator1/zakaz_dashboard/bin/manage-timers")
    );
    // A job without settings yet gets the starting env file: every setting of its binary,
    // commented out; the user's own files are kept.
    let direct_env =
        std::fs::read_to_string(machine.path(&format!("{secrets}/direct.env"))).unwrap();
    assert_eq!(
        direct_env,
        manage_timers::env_example(zakaz_core::jobs::get("direct"))
    );
    assert!(direct_env.contains("\n#DIRECT_TOKEN=\n"), "{direct_env}");
    let own = std::fs::read_to_string(machine.path(&format!("{secrets}/qtickets.env"))).unwrap();
    assert!(own.starts_with("QTICKETS_BASE_URL="), "{own}");
    let out = as_user(&["systemctl", "--user", "is-active", "qtickets.timer"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "active\n");
    let out = as_user(&["systemctl", "--user", "is-active", "healthcheck.service"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "active\n",
        "Type=notify: ready under the user manager too"
    );
    // The day-to-day commands work in the user's scope too.
    let manage = "/home/operator1/zakaz_dashboard/bin/manage-timers";
    let said = |out: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let out = as_user(&[manage, "disable", "--user", "qtickets"]);
    assert!(
        said(&out).contains("disabled qtickets.timer"),
        "{}",
        said(&out)
    );
    let state = as_user(&["systemctl", "--user", "is-enabled", "qtickets.timer"]);
    assert_eq!(String::from_utf8_lossy(&state.stdout), "disabled\n");
    let out = as_user(&[manage, "enable", "--user", "qtickets"]);
    assert!(
        said(&out).contains("enabled qtickets.timer"),
        "{}",
        said(&out)
    );
    let out = as_user(&[manage, "run", "--user", "qtickets"]);
    assert!(
        out.status.success() && said(&out).contains("qtickets.service finished: success"),
        "{}",
        said(&out)
    );
    let runs = zakaz_core::testing::query_tsv(&format!(
        "SELECT status FROM `{}`.meta_job_runs WHERE job = 'qtickets'",
        db.name
    ));
    assert_eq!(runs, "ok\n", "the user's run loaded");
    let out = as_user(&[
        "env",
        &format!("CLICKHOUSE_DB={}", db.name),
        manage,
        "status",
        "--user",
    ]);
    let status = said(&out);
    let line = status
        .lines()
        .find(|l| l.starts_with("qtickets"))
        .unwrap_or_default();
    assert!(
        line.contains("timer enabled/active") && line.contains("ok at "),
        "{status}"
    );
    let unit = std::fs::read_to_string(
        machine.path("/home/operator1/.config/systemd/user/qtickets.service"),
    )
    .unwrap();
    assert!(
        unit.contains("ExecStart=/home/operator1/zakaz_dashboard/bin/ingest-qtickets")
            && !unit.contains("User="),
        "{unit}"
    );
    let out = as_user(&[
        "/home/operator1/zakaz_dashboard/bin/manage-timers",
        "uninstall",
        "--user",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::symlink_metadata(machine.path("/home/operator1/.local/bin/manage-timers"))
            .is_err(),
        "uninstall removes the link"
    );
    drop(machine);
    let _ = std::fs::remove_file(&log);
}
