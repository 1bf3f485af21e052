use zakaz_core::settings::{collect, looks_secret, render_markdown};
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
