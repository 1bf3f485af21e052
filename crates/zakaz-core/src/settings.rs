//! The registry of settings is the binaries' own clap definitions: every flag that has an
//! environment variable is a setting. `docs/configuration.md` is rendered from them (and a
//! test fails when the committed page drifts), so flags, `--help` and docs never disagree.

use std::collections::BTreeMap;

/// One environment setting as the binaries declare it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub env: String,
    pub flag: String,
    pub default: Option<String>,
    pub secret: bool,
    pub help: String,
    pub binaries: Vec<String>,
}

/// Every setting of every command given, merged by variable name.
pub fn collect(commands: &[clap::Command]) -> Vec<Setting> {
    let mut by_env: BTreeMap<String, Setting> = BTreeMap::new();
    for cmd in commands {
        let bin = cmd.get_name().to_owned();
        visit(cmd, &bin, &mut by_env);
    }
    by_env.into_values().collect()
}

fn visit(cmd: &clap::Command, bin: &str, out: &mut BTreeMap<String, Setting>) {
    for arg in cmd.get_arguments() {
        let Some(env) = arg.get_env() else { continue };
        let env = env.to_string_lossy().into_owned();
        let entry = out.entry(env.clone()).or_insert_with(|| Setting {
            env,
            flag: arg.get_long().map(|l| format!("--{l}")).unwrap_or_default(),
            default: arg
                .get_default_values()
                .first()
                .map(|v| v.to_string_lossy().into_owned()),
            secret: arg.is_hide_env_values_set(),
            help: arg
                .get_help()
                .map(|h| h.to_string().replace('\n', " "))
                .unwrap_or_default(),
            binaries: Vec::new(),
        });
        if !entry.binaries.iter().any(|b| b == bin) {
            entry.binaries.push(bin.to_owned());
        }
    }
    for sub in cmd.get_subcommands() {
        visit(sub, bin, out);
    }
}

/// Names that look like secrets must be declared with `hide_env_values`, or `--help` would
/// print their values. An endpoint's address (`GOOGLE_TOKEN_URL`) is not a secret; a DSN
/// carries a password, a salt keys a hash.
pub fn looks_secret(env: &str) -> bool {
    !env.ends_with("_URL")
        && [
            "TOKEN",
            "SECRET",
            "PASSWORD",
            "KEY",
            "DSN",
            "SALT",
            "CREDENTIAL",
        ]
        .iter()
        .any(|w| env.contains(w))
}

/// The starting env file of `job` (`secrets/<job>.env.example`), from its binary's own
/// settings: every one commented out with its default (or empty), its help above it, required
/// and secret ones marked. `manage-timers install` writes it as the job's env file when there
/// is none; a test fails when a committed example drifts from the binary.
pub fn render_env_example(job: &crate::jobs::Job, cmd: &clap::Command) -> String {
    let unit = if job.is_timer() {
        format!("{}.service (started by {}.timer)", job.name, job.name)
    } else if job.is_workers() {
        format!(
            "{}@<shard>-<par-id>.service (each started by its own timer)",
            job.name
        )
    } else {
        format!("{}.service", job.name)
    };
    let intro = format!(
        "{}: {} (`{}`). The settings of {unit}, read from {} (mode 0600). Generated from the \
         binary's own flags: every setting, with its default; uncomment what you change. \
         Reference: docs/configuration.md. Never commit a filled-in copy.",
        job.name, job.description, job.binary, job.env_file
    );
    let mut out = String::new();
    for line in wrap(&intro, 88) {
        out.push_str(&format!("# {line}\n"));
    }
    let required: Vec<String> = cmd
        .get_arguments()
        .filter(|a| a.is_required_set())
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect();
    for s in collect(std::slice::from_ref(cmd)) {
        out.push('\n');
        for line in wrap(&s.help, 88) {
            out.push_str(&format!("# {line}\n"));
        }
        let mut notes = Vec::new();
        if required.contains(&s.env) {
            notes.push("Required.");
        }
        if s.secret {
            notes.push("Secret: only in this file, never on a command line.");
        }
        if !notes.is_empty() {
            out.push_str(&format!("# {}\n", notes.join(" ")));
        }
        out.push_str(&format!("#{}={}\n", s.env, s.default.unwrap_or_default()));
    }
    out
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let last = lines.last_mut().expect("one line at least");
        if !last.is_empty() && last.chars().count() + 1 + word.chars().count() > width {
            lines.push(word.to_owned());
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    lines
}

/// The reference page.
pub fn render_markdown(commands: &[clap::Command]) -> String {
    let mut out = String::from(
        "# Configuration reference\n\n\
         Generated from the binaries' own flag definitions by the test `configuration_docs` \
         (`UPDATE_DOCS=1 cargo test -p zakaz-e2e configuration_docs` rewrites it). Every \
         setting is an environment variable (systemd loads them from `EnvironmentFile=` \
         under `secrets/`) with a flag that overrides it; `--env-file PATH` loads a \
         `KEY=VALUE` file for manual runs, and variables already set win over the file. \
         Secret values never appear in `--help`, logs or errors.\n\n\
         | Variable | Flag | Default | Used by | Meaning |\n\
         |---|---|---|---|---|\n",
    );
    for s in collect(commands) {
        let default = match (&s.default, s.secret) {
            (_, true) => "(secret)".to_owned(),
            (Some(d), false) => format!("`{d}`"),
            (None, false) => "—".to_owned(),
        };
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} | {} |\n",
            s.env,
            s.flag,
            default,
            s.binaries.join(", "),
            s.help.replace('|', "\\|")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, Command};

    fn demo(name: &'static str) -> Command {
        Command::new(name)
            .subcommand(
                Command::new("run").arg(
                    Arg::new("demo_token")
                        .long("demo-token")
                        .env("DEMO_TOKEN")
                        .hide_env_values(true)
                        .required(true)
                        .help("A token | with a pipe"),
                ),
            )
            .arg(
                Arg::new("demo_days")
                    .long("demo-days")
                    .env("DEMO_DAYS")
                    .default_value("3")
                    .help("Days, in a help text long enough to wrap: it goes on and on about days and weeks and months so that it needs two lines of a comment"),
            )
            .arg(Arg::new("no_env").long("no-env"))
    }

    #[test]
    fn settings_are_collected_by_variable_across_binaries_and_subcommands() {
        let all = collect(&[demo("one"), demo("two")]);
        assert_eq!(all.len(), 2, "{all:?}");
        let days = &all[0];
        assert_eq!(
            (
                days.env.as_str(),
                days.flag.as_str(),
                days.default.as_deref(),
                days.secret
            ),
            ("DEMO_DAYS", "--demo-days", Some("3"), false)
        );
        assert_eq!(days.binaries, ["one", "two"]);
        let token = &all[1];
        assert_eq!((token.env.as_str(), token.secret), ("DEMO_TOKEN", true));
        assert_eq!(token.default, None);
    }

    #[test]
    fn names_that_look_secret() {
        for env in [
            "QTICKETS_TOKEN",
            "VK_ADS_CLIENT_SECRET",
            "SMTP_PASSWORD",
            "API_KEY",
            "PPC_SHARD_DSNS",
            "QTICKETS_CLIENT_HASH_SALT",
            "GOOGLE_CREDENTIALS",
        ] {
            assert!(looks_secret(env), "{env}");
        }
        for env in ["GOOGLE_TOKEN_URL", "HTTP_TIMEOUT_SECS", "CLICKHOUSE_DB"] {
            assert!(!looks_secret(env), "{env}");
        }
    }

    #[test]
    fn the_reference_page_hides_secret_defaults_and_escapes_pipes() {
        let page = render_markdown(&[demo("one")]);
        assert!(page.starts_with("# Configuration reference\n"));
        assert!(
            page.contains("| `DEMO_DAYS` | `--demo-days` | `3` | one | Days, in a help"),
            "{page}"
        );
        assert!(
            page.contains(
                "| `DEMO_TOKEN` | `--demo-token` | (secret) | one | A token \\| with a pipe |"
            ),
            "{page}"
        );
    }

    #[test]
    fn an_env_example_lists_every_setting_commented_with_its_marks() {
        let job = crate::jobs::get("qtickets");
        let text = render_env_example(job, &demo("ingest-qtickets").subcommand(Command::new("x")));
        assert!(text.starts_with("# qtickets: "), "{text}");
        assert!(
            text.contains("qtickets.service (started by qtickets.timer)"),
            "{text}"
        );
        assert!(text.contains("\n#DEMO_DAYS=3\n"), "{text}");
        assert!(text.contains("\n#DEMO_TOKEN=\n"), "{text}");
        assert!(
            text.contains("# Secret: only in this file, never on a command line.\n#DEMO_TOKEN="),
            "{text}"
        );
        assert!(
            text.lines().all(|l| l.chars().count() <= 90),
            "wrapped: {text}"
        );
        for job in ["healthcheck", "camp_queue"] {
            let text = render_env_example(crate::jobs::get(job), &demo(job));
            let unit = if job == "healthcheck" {
                "healthcheck.service"
            } else {
                "camp_queue@<shard>-<par-id>.service"
            };
            assert!(text.contains(unit), "{job}: {text}");
        }
    }

    #[test]
    fn wrapping_keeps_words_whole() {
        assert_eq!(wrap("a bb ccc", 4), ["a bb", "ccc"]);
        assert_eq!(wrap("", 10), [""]);
        assert_eq!(wrap("abcdefghij", 3), ["abcdefghij"]);
        // A line is exactly as wide as allowed, never one more (the space counts).
        assert_eq!(wrap("aaa bbb", 7), ["aaa bbb"]);
        assert_eq!(wrap("aaa bbb", 6), ["aaa", "bbb"]);
    }
}
