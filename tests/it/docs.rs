//! Docs that run: every shell block of README.md and docs/runbook.md is either run as typed
//! in a real systemd machine (marked `<!-- e2e -->`) or marked `<!-- not run: why -->`; every
//! command they name (in blocks and in inline code) has the subcommands and flags it uses;
//! the Russian runbook has the same sections and the same commands as the English one.

use zakaz_core::testing::{TestDb, query_tsv};
use zakaz_e2e::{Machine, all_commands, binary, workspace_root, write_inside};

/// A fenced block of a markdown file.
#[derive(Debug, Clone)]
struct Block {
    lang: String,
    /// The `<!-- … -->` line right above it, if any.
    marker: Option<String>,
    body: String,
    line: usize,
}

fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        if let Some(lang) = lines[i].strip_prefix("```") {
            let start = i;
            let mut body = String::new();
            i += 1;
            while i < lines.len() && !lines[i].starts_with("```") {
                body.push_str(lines[i]);
                body.push('\n');
                i += 1;
            }
            let marker = start
                .checked_sub(1)
                .map(|p| lines[p].trim())
                .filter(|l| l.starts_with("<!--") && l.ends_with("-->"))
                .map(|l| {
                    l.trim_start_matches("<!--")
                        .trim_end_matches("-->")
                        .trim()
                        .to_owned()
                });
            out.push(Block {
                lang: lang.trim().to_owned(),
                marker,
                body,
                line: start + 1,
            });
        }
        i += 1;
    }
    out
}

fn is_shell(b: &Block) -> bool {
    matches!(b.lang.as_str(), "bash" | "sh" | "shell" | "console")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(workspace_root().join(path)).unwrap()
}

const SHELL_DOCS: &[&str] = &["README.md", "docs/runbook.md", "docs/runbook.ru.md"];

#[test]
fn every_shell_block_is_marked_as_run_or_not_run_with_a_reason() {
    for doc in SHELL_DOCS {
        let text = read(doc);
        for b in blocks(&text).iter().filter(|b| is_shell(b)) {
            let marker = b.marker.as_deref().unwrap_or_default();
            let ok = marker == "e2e"
                || marker
                    .strip_prefix("not run:")
                    .is_some_and(|why| why.trim().len() > 10);
            assert!(
                ok,
                "{doc}:{}: a shell block needs `<!-- e2e -->` or `<!-- not run: why -->` above it",
                b.line
            );
        }
    }
}

/// Shell words of a line, with operators as their own words; a comment ends the line.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut started = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                started = true;
            }
            (None, '#') if !started => break,
            (None, c) if c.is_whitespace() => {
                if started {
                    out.push(std::mem::take(&mut cur));
                    started = false;
                }
            }
            (None, ';' | '|' | '&' | '(' | ')') => {
                if started {
                    out.push(std::mem::take(&mut cur));
                    started = false;
                }
                let mut op = c.to_string();
                if chars.peek() == Some(&c) {
                    op.push(chars.next().unwrap());
                }
                out.push(op);
            }
            (None, c) => {
                cur.push(c);
                started = true;
            }
        }
    }
    if started {
        out.push(cur);
    }
    out
}

/// The commands of a line that are one of the workspace's binaries: (binary, arguments).
fn invocations(line: &str) -> Vec<(String, Vec<String>)> {
    let names: Vec<String> = all_commands()
        .iter()
        .map(|c| c.get_name().to_owned())
        .collect();
    let w = words(line);
    let mut out = Vec::new();
    let mut at_start = true;
    let mut i = 0;
    while i < w.len() {
        let word = w[i].as_str();
        if matches!(
            word,
            ";" | "|" | "||" | "&&" | "&" | "(" | ")" | "do" | "then"
        ) {
            at_start = true;
        } else if at_start && word == "sudo" {
            // sudo [-u USER] COMMAND
            if w.get(i + 1).map(String::as_str) == Some("-u") {
                i += 2;
            }
        } else if at_start && word.contains('=') && !word.starts_with('-') {
            // VAR=value COMMAND
        } else if at_start {
            let base = word.rsplit('/').next().unwrap_or(word);
            if names.iter().any(|n| n == base) {
                let args: Vec<String> = w[i + 1..]
                    .iter()
                    .take_while(|a| {
                        !matches!(a.as_str(), ";" | "|" | "||" | "&&" | "&" | ")" | ">" | "2>")
                    })
                    .cloned()
                    .collect();
                out.push((base.to_owned(), args));
            }
            at_start = false;
        }
        i += 1;
    }
    out
}

/// Whether `args` only use subcommands and flags `binary` has. After `run JOB --`, the rest
/// is checked against the job's binary.
fn check(binary: &str, args: &[String]) -> Result<(), String> {
    let all = all_commands();
    let mut cmd = all
        .iter()
        .find(|c| c.get_name() == binary)
        .ok_or_else(|| format!("no binary `{binary}`"))?
        .clone();
    cmd.build();
    // Taken before clap parses (zakaz_core::cli and manage-timers' front).
    if matches!(
        args.first().map(String::as_str),
        Some("--completions" | "--man" | "--man-pages")
    ) {
        return Ok(());
    }
    let mut cur = &cmd;
    let mut path = vec![binary.to_owned()];
    let mut positional: Option<String> = None;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        let here = path.join(" ");
        // A placeholder (`…`, `NAME`, `<unit>`, `a\|b` in a table): nothing more to check.
        let placeholder = a == "…"
            || a == "..."
            || a.contains('<')
            || a.contains('|')
            || (a.len() > 1 && a.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
        if placeholder {
            return Ok(());
        }
        if a == "--" {
            if cur.get_name() == "run"
                && let Some(job) = positional.as_deref().and_then(zakaz_core::jobs::find)
            {
                return check(job.binary, &args[i + 1..]);
            }
            return Ok(());
        }
        if let Some(long) = a.strip_prefix("--") {
            let name = long.split('=').next().unwrap_or_default();
            let arg = cur
                .get_arguments()
                .find(|x| x.get_long() == Some(name))
                .ok_or_else(|| format!("`{here}` has no flag `--{name}`"))?;
            if arg.get_action().takes_values() && !long.contains('=') {
                i += 1;
            }
        } else if a.len() > 1 && a.starts_with('-') && !a.starts_with("-$") {
            let shorts: Vec<char> = a[1..].chars().collect();
            for (k, c) in shorts.iter().enumerate() {
                let arg = cur
                    .get_arguments()
                    .find(|x| x.get_short() == Some(*c))
                    .ok_or_else(|| format!("`{here}` has no flag `-{c}`"))?;
                if arg.get_action().takes_values() {
                    if k + 1 == shorts.len() {
                        i += 1;
                    }
                    break;
                }
            }
        } else if positional.is_none()
            && let Some(sub) = cur.find_subcommand(a)
        {
            cur = sub;
            path.push(a.to_owned());
        } else if cur.has_subcommands() && cur.get_positionals().next().is_none() {
            return Err(format!("`{here}` has no subcommand `{a}`"));
        } else if positional.is_none() {
            positional = Some(a.to_owned());
        }
        i += 1;
    }
    Ok(())
}

/// Every command line of a document: the lines of its shell blocks and its inline code.
fn command_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut shell_block = false;
    for (n, line) in text.lines().enumerate() {
        if let Some(lang) = line.strip_prefix("```") {
            if in_block {
                in_block = false;
            } else {
                in_block = true;
                shell_block = matches!(lang.trim(), "bash" | "sh" | "shell" | "console");
            }
            continue;
        }
        if in_block {
            if shell_block {
                out.push((n + 1, line.to_owned()));
            }
            continue;
        }
        // Inline code spans.
        for (k, span) in line.split('`').enumerate() {
            // `a\|b` in a table names alternatives, not a pipe.
            if k % 2 == 1 && !span.contains("\\|") {
                out.push((n + 1, span.to_owned()));
            }
        }
    }
    out
}

#[test]
fn every_documented_subcommand_and_flag_exists() {
    let mut checked = 0;
    let mut problems = Vec::new();
    for doc in SHELL_DOCS
        .iter()
        .chain(&["docs/security.md", "docs/camp-queue.md"])
    {
        let text = read(doc);
        for (line, command) in command_lines(&text) {
            for (binary, args) in invocations(&command) {
                checked += 1;
                if let Err(e) = check(&binary, &args) {
                    problems.push(format!("{doc}:{line}: `{}`: {e}", command.trim()));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        checked > 50,
        "only {checked} commands found: the parser is broken"
    );
}

#[test]
fn the_checker_fails_on_a_subcommand_or_flag_that_does_not_exist() {
    let check_line = |line: &str| -> Vec<Result<(), String>> {
        invocations(line)
            .into_iter()
            .map(|(b, a)| check(&b, &a))
            .collect()
    };
    assert_eq!(
        check_line("sudo manage-timers install --queue-shards 2 --ip-allow \"10.0.0.0/8 ::1\""),
        [Ok(())]
    );
    assert_eq!(
        check_line("sudo manage-timers run vk_ads -- --since 2026-11-01 --until 2026-11-30"),
        [Ok(())]
    );
    assert!(check_line("sudo manage-timers run vk_ads -- --no-such-flag")[0].is_err());
    assert!(check_line("manage-timers install --no-such-flag")[0].is_err());
    assert!(check_line("manage-timers frobnicate qtickets")[0].is_err());
    assert!(check_line("manage-timers verify --prefix /opt/x")[0].is_err());
    assert!(check_line("manage-timers logs qtickets -x")[0].is_err());
    assert_eq!(
        check_line("for j in a b; do sudo manage-timers disable $j; done").len(),
        1
    );
    assert!(
        check_line("command -v manage-timers camp-queue").is_empty(),
        "not a command position"
    );
    assert_eq!(
        check_line("manage-timers status --json | jq -r .jobs"),
        [Ok(())]
    );
}

/// A block's commands without comments, for comparing the two languages.
fn commands_only(body: &str) -> Vec<String> {
    body.lines()
        .map(|l| words(l).join(" "))
        .filter(|l| !l.is_empty())
        .collect()
}

/// Heading levels outside code blocks.
fn heading_levels(text: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut in_block = false;
    for line in text.lines() {
        if line.starts_with("```") {
            in_block = !in_block;
        } else if !in_block && line.starts_with('#') {
            out.push(line.chars().take_while(|c| *c == '#').count());
        }
    }
    out
}

/// Table rows per section (outside code blocks).
fn table_rows(text: &str) -> Vec<usize> {
    let mut out = vec![0];
    let mut in_block = false;
    for line in text.lines() {
        if line.starts_with("```") {
            in_block = !in_block;
        } else if !in_block && line.starts_with('#') {
            out.push(0);
        } else if !in_block && line.starts_with('|') {
            *out.last_mut().unwrap() += 1;
        }
    }
    out
}

#[test]
fn the_russian_runbook_has_the_same_sections_and_commands() {
    let en = read("docs/runbook.md");
    let ru = read("docs/runbook.ru.md");
    assert_eq!(
        heading_levels(&en),
        heading_levels(&ru),
        "the same sections, in the same order"
    );
    assert_eq!(
        table_rows(&en),
        table_rows(&ru),
        "the same table rows per section"
    );
    let (be, br) = (blocks(&en), blocks(&ru));
    assert_eq!(be.len(), br.len(), "the same blocks");
    for (e, r) in be.iter().zip(&br) {
        assert_eq!(e.lang, r.lang, "block at runbook.md:{}", e.line);
        let kind = |m: &Option<String>| {
            m.as_deref()
                .map(|m| if m == "e2e" { "e2e" } else { "not run" })
        };
        assert_eq!(kind(&e.marker), kind(&r.marker), "runbook.md:{}", e.line);
        assert_eq!(
            commands_only(&e.body),
            commands_only(&r.body),
            "runbook.md:{} and runbook.ru.md:{}: the same commands",
            e.line,
            r.line
        );
    }
    // Every command of inline code too.
    let inline = |t: &str| {
        let mut v: Vec<String> = command_lines(t)
            .into_iter()
            .flat_map(|(_, c)| invocations(&c))
            .map(|(b, a)| format!("{b} {}", a.join(" ")))
            .collect();
        v.sort();
        v.dedup();
        v
    };
    assert_eq!(inline(&en), inline(&ru), "the same commands in the text");
}

fn ok(machine: &Machine, args: &[&str]) -> String {
    let out = machine.exec(args);
    assert!(
        out.status.success(),
        "`{}` failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where the blocks run: a checkout whose `target/release` holds the built binaries.
const CHECKOUT: &str = "/run/zakaz-docs";

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_and_runbook_blocks_run_as_typed_in_a_real_systemd() {
    let (db, _ch) = TestDb::migrated().await;
    let sandbox = api_sandbox::Server::start_local(api_sandbox::SandboxConfig::default()).unwrap();
    let log = std::env::temp_dir().join(format!("zakaz-e2e-docs-{}.log", std::process::id()));
    let machine = Machine::boot(&log).expect("a real systemd boots in a namespace (needs root)");
    machine.forward_url(&sandbox.base_url).unwrap();
    let b = &sandbox.base_url;
    let d = &db.name;
    for (file, env) in [
        (
            "qtickets.env",
            format!(
                "QTICKETS_BASE_URL={b}/qtickets/api/rest/v1\nQTICKETS_TOKEN=sandbox-token\nQTICKETS_INVENTORY=false\nCLICKHOUSE_DB={d}\n"
            ),
        ),
        (
            "vk_ads.env",
            format!(
                "VK_ADS_BASE_URL={b}/vk\nVK_ADS_CLIENT_ID=sandbox-client\nVK_ADS_CLIENT_SECRET=sandbox-secret\nCLICKHOUSE_DB={d}\n"
            ),
        ),
        (
            "direct.env",
            format!(
                "DIRECT_API_URL={b}/direct/json/v5\nDIRECT_TOKEN=sandbox-token\nDIRECT_LOGINS=client-a,client-b\nCLICKHOUSE_DB={d}\n"
            ),
        ),
        (
            "alerts.env",
            format!(
                "TELEGRAM_API_URL={b}/telegram\nTELEGRAM_BOT_TOKEN=sandbox-token\nTELEGRAM_CHAT_ID=-100123\nCLICKHOUSE_DB={d}\n"
            ),
        ),
        ("healthcheck.env", format!("CLICKHOUSE_DB={d}\n")),
    ] {
        write_inside(
            &machine,
            &format!("/opt/zakaz_dashboard/secrets/{file}"),
            &env,
        );
    }
    // The checkout: `target/release` as `cargo build --release` leaves it.
    let release = machine.path(&format!("{CHECKOUT}/target/release"));
    std::fs::create_dir_all(&release).unwrap();
    for name in manage_timers::install::BINARIES {
        std::fs::copy(binary(name), release.join(name)).unwrap();
    }
    // sudo, where the host has none: root runs the command; `-u USER` drops to USER.
    let has_sudo = machine
        .exec(&["sh", "-c", "command -v sudo"])
        .status
        .success();
    let shim_dir = format!("{CHECKOUT}/shim");
    if !has_sudo {
        write_inside(
            &machine,
            &format!("{shim_dir}/sudo"),
            "#!/bin/sh\n# A stand-in for sudo (not installed on this host).\nif [ \"$1\" = -u ]; then u=$2; shift 2; exec setpriv --reuid=\"$u\" --regid=\"$u\" --init-groups -- \"$@\"; fi\nexec \"$@\"\n",
        );
        ok(&machine, &["chmod", "0755", &format!("{shim_dir}/sudo")]);
    }
    let path =
        format!("PATH={shim_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let clickhouse_db = format!("CLICKHOUSE_DB={d}");
    let mut ran = 0;
    for doc in ["README.md", "docs/runbook.md"] {
        let text = read(doc);
        for block in blocks(&text)
            .into_iter()
            .filter(|b| is_shell(b) && b.marker.as_deref() == Some("e2e"))
        {
            let script = format!("set -euo pipefail\ncd {CHECKOUT}\n{}", block.body);
            // `exec` runs in the machine's network: its loopback is where the healthcheck
            // listens.
            let out = machine.exec(&[
                "env",
                &path,
                &clickhouse_db,
                "HOME=/root",
                "bash",
                "-c",
                &script,
            ]);
            assert!(
                out.status.success(),
                "{doc}:{} failed (exit {:?}):\n{}\n--- stdout\n{}\n--- stderr\n{}",
                block.line,
                out.status.code(),
                block.body,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            ran += 1;
        }
        // The SQL blocks, against this test's database.
        for block in blocks(&text).into_iter().filter(|b| b.lang == "sql") {
            for statement in block.body.split(';').filter(|s| !s.trim().is_empty()) {
                query_tsv(&statement.replace("zakaz.", &format!("`{d}`.")));
            }
        }
    }
    assert!(ran >= 10, "only {ran} blocks ran");
    // What the blocks did, checked from outside: the runs are in the journal of runs.
    let runs = query_tsv(&format!(
        "SELECT job, countIf(status = 'ok') > 0, countIf(status != 'ok') FROM `{d}`.meta_job_runs WHERE job IN ('qtickets', 'vk_ads', 'direct') GROUP BY job ORDER BY job"
    ));
    assert_eq!(runs, "direct\t1\t0\nqtickets\t1\t0\nvk_ads\t1\t0\n");
    assert!(
        machine.path("/backup").read_dir().unwrap().next().is_some(),
        "the backup block left its archive"
    );
    drop(machine);
    let _ = std::fs::remove_file(&log);
}
