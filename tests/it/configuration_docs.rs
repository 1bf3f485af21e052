use zakaz_core::settings::{collect, looks_secret, render_env_example, render_markdown};
use zakaz_e2e::{all_commands, workspace_root};

#[test]
fn configuration_docs_match_the_binaries() {
    let rendered = render_markdown(&all_commands());
    let path = workspace_root().join("docs/configuration.md");
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &rendered).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == rendered,
        "docs/configuration.md is out of date: run `UPDATE_DOCS=1 cargo test -p zakaz-e2e configuration_docs`"
    );
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
    if std::env::var_os("UPDATE_DOCS").is_some() {
        for job in zakaz_core::jobs::JOBS {
            std::fs::write(path(job), render_env_example(job, command(job))).unwrap();
        }
    }
    for job in zakaz_core::jobs::JOBS {
        let (cmd, path) = (command(job), path(job));
        let rendered = render_env_example(job, cmd);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == rendered,
            "{} is out of date: run `UPDATE_DOCS=1 cargo test -p zakaz-e2e configuration_docs`",
            path.display()
        );
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
