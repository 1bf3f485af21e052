use zakaz_core::settings::{collect, looks_secret, render_env_example, render_markdown};
use zakaz_e2e::{all_commands, workspace_root};

/// Compare a committed file with what the binaries render. With `UPDATE_DOCS` set, a stale
/// file is rewritten — and the test still fails, so that it can never pass by rewriting what
/// it checks; the next run (without `UPDATE_DOCS`) passes.
fn check_rendered(files: &[(std::path::PathBuf, String)]) {
    let stale: Vec<&(std::path::PathBuf, String)> = files
        .iter()
        .filter(|(path, rendered)| std::fs::read_to_string(path).unwrap_or_default() != *rendered)
        .collect();
    if stale.is_empty() {
        return;
    }
    let names: Vec<String> = stale.iter().map(|(p, _)| p.display().to_string()).collect();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        for (path, rendered) in &stale {
            std::fs::write(path, rendered).unwrap();
        }
        panic!(
            "out of date and rewritten now: {}; check the diff and run the tests again",
            names.join(", ")
        );
    }
    panic!(
        "out of date: {}; run `UPDATE_DOCS=1 cargo nextest run -p zakaz-e2e configuration_docs`, then again without it",
        names.join(", ")
    );
}

#[test]
fn configuration_docs_match_the_binaries() {
    let rendered = render_markdown(&all_commands());
    check_rendered(&[(workspace_root().join("docs/configuration.md"), rendered)]);
}

/// Every secret setting of every binary (`hide_env_values`): (binary, flag, variable).
fn secret_settings() -> Vec<(String, String, String)> {
    fn walk(bin: &str, cmd: &clap::Command, out: &mut Vec<(String, String, String)>) {
        for arg in cmd.get_arguments() {
            if let (true, Some(long), Some(env)) =
                (arg.is_hide_env_values_set(), arg.get_long(), arg.get_env())
            {
                let entry = (
                    bin.to_owned(),
                    format!("--{long}"),
                    env.to_string_lossy().into_owned(),
                );
                if !out.contains(&entry) {
                    out.push(entry);
                }
            }
        }
        for sub in cmd.get_subcommands() {
            walk(bin, sub, out);
        }
    }
    let mut out = Vec::new();
    for cmd in all_commands() {
        walk(cmd.get_name(), &cmd, &mut out);
    }
    out
}

#[test]
fn every_secret_is_refused_as_a_flag_and_never_shown_by_the_real_binaries() {
    let secrets = secret_settings();
    for env in [
        "CLICKHOUSE_PASSWORD",
        "PPCDICT_DSN",
        "PPC_SHARD_DSNS",
        "QTICKETS_CLIENT_HASH_SALT",
        "QTICKETS_TOKEN",
        "TELEGRAM_BOT_TOKEN",
        "SMTP_PASSWORD",
    ] {
        assert!(
            secrets.iter().any(|(_, _, e)| e == env),
            "`{env}` is not declared secret"
        );
    }
    let value = "registry-secret-9f8e7d6c";
    for (bin, flag, env) in &secrets {
        let binary = zakaz_e2e::binary(bin);
        // As a flag: refused before anything runs, naming the variable, never echoing it.
        let out = zakaz_core::testing::clean_command(&binary)
            .arg(format!("{flag}={value}"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{bin} {flag}: {err}");
        assert!(
            err.contains(env.as_str()) && !err.contains(value),
            "{bin} {flag}: {err}"
        );
        // From the environment: `--help` shows the setting, not its value.
        let help = zakaz_core::testing::clean_command(&binary)
            .arg("--help")
            .env(env, value)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(help.status.success(), "{bin} --help");
        assert!(!text.contains(value), "{bin} --help shows `{env}`");
    }
}

#[test]
fn every_secret_setting_hides_its_value_from_help() {
    let settings = collect(&all_commands());
    assert!(
        settings
            .iter()
            .any(|s| s.env == "CLICKHOUSE_PASSWORD" && s.secret)
    );
    for s in settings {
        if looks_secret(&s.env) {
            assert!(
                s.secret,
                "`{}` must be declared with hide_env_values",
                s.env
            );
        }
    }
}

#[test]
fn common_clickhouse_settings_have_the_documented_defaults() {
    let settings = collect(&all_commands());
    let default = |env: &str| {
        settings
            .iter()
            .find(|s| s.env == env)
            .and_then(|s| s.default.clone())
    };
    assert_eq!(
        default("CLICKHOUSE_URL").as_deref(),
        Some("http://127.0.0.1:8123")
    );
    assert_eq!(default("CLICKHOUSE_USER").as_deref(), Some("default"));
    assert_eq!(default("CLICKHOUSE_DB").as_deref(), Some("zakaz"));
}

#[test]
fn env_examples_match_the_binaries_and_are_what_install_writes() {
    let commands = all_commands();
    let command = |job: &zakaz_core::jobs::Job| {
        commands
            .iter()
            .find(|c| c.get_name() == job.binary)
            .unwrap_or_else(|| panic!("no command for `{}`", job.binary))
    };
    let path =
        |job: &zakaz_core::jobs::Job| workspace_root().join(format!("{}.example", job.env_file));
    let files: Vec<_> = zakaz_core::jobs::JOBS
        .iter()
        .map(|job| (path(job), render_env_example(job, command(job))))
        .collect();
    check_rendered(&files);
    for job in zakaz_core::jobs::JOBS {
        let cmd = command(job);
        let (path, rendered) = (path(job), render_env_example(job, cmd));
        // What `manage-timers install` writes as the starting env file is that very text.
        assert_eq!(manage_timers::env_example(job), rendered, "{}", job.name);
        // Every setting of the binary is in it, commented out.
        for s in collect(std::slice::from_ref(cmd)) {
            assert!(
                rendered.contains(&format!("\n#{}=", s.env)),
                "{} lacks {}",
                path.display(),
                s.env
            );
        }
    }
}
