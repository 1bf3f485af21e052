//! The front of the binary: parsing with one-line errors that keep clap's "did you mean",
//! colors (`--color`, `NO_COLOR`), the exit codes of an operator's tool (64 usage, 69
//! unreachable, 77 not root, 78 configuration, 3 for `status`), and the generated shell
//! completions and man pages.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::OnceLock;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{ColorChoice, CommandFactory, FromArgMatches};
use zakaz_core::error::{exit, exit_code_for, one_line};

use crate::Cli;

/// EX_NOPERM: the command needs root.
pub const NOPERM: u8 = 77;

/// An error that decides its own exit code (usage 64, not root 77, `status`'s 3, a run's
/// own exit status). An empty message prints nothing.
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

pub fn usage_error(message: impl Into<String>) -> anyhow::Error {
    Exit {
        code: exit::USAGE,
        message: message.into(),
    }
    .into()
}

pub fn noperm_error(message: impl Into<String>) -> anyhow::Error {
    Exit {
        code: NOPERM,
        message: message.into(),
    }
    .into()
}

/// Exit with `code`, saying nothing more.
pub fn silent(code: u8) -> anyhow::Error {
    Exit {
        code,
        message: String::new(),
    }
    .into()
}

/// The exit code of an error chain: ours first, then the shared classes (78, 69, 1).
pub fn code_for(err: &anyhow::Error) -> u8 {
    err.chain()
        .find_map(|c| c.downcast_ref::<Exit>().map(|e| e.code))
        .unwrap_or_else(|| exit_code_for(err))
}

static COLOR: OnceLock<bool> = OnceLock::new();

/// Whether output is colored: `--color always|never` wins; `auto` colors a terminal unless
/// `NO_COLOR` is set (non-empty) or `TERM=dumb`.
pub fn decide_color(args: &[OsString]) -> bool {
    let mut choice = "auto".to_owned();
    let mut iter = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned());
    while let Some(arg) = iter.next() {
        if arg == "--" {
            break;
        }
        if arg == "--color" {
            choice = iter.next().unwrap_or_default();
        } else if let Some(v) = arg.strip_prefix("--color=") {
            choice = v.to_owned();
        }
    }
    match choice.as_str() {
        "always" => true,
        "never" => false,
        _ => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::env::var("TERM").map_or(true, |t| t != "dumb")
                && std::io::stdout().is_terminal()
        }
    }
}

pub fn color() -> bool {
    *COLOR.get().unwrap_or(&false)
}

/// `text` in red (1), green (2) or yellow (3) when colors are on.
pub fn paint(text: &str, color_code: u8) -> String {
    if color() && !text.is_empty() {
        format!("\x1b[3{color_code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

/// Aligned columns: each as wide as its widest cell (counted in characters), two spaces apart.
pub fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(visible_len(cell));
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < N {
                let pad = widths[i] - visible_len(cell) + 2;
                out.push_str(&" ".repeat(pad));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// Characters a terminal shows: ANSI color sequences do not count.
fn visible_len(s: &str) -> usize {
    let mut n = 0;
    let mut in_escape = false;
    for c in s.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => n += 1,
        }
    }
    n
}

/// The binary's `main`.
pub fn main() -> ExitCode {
    zakaz_core::panic::install();
    let args: Vec<OsString> = std::env::args_os().collect();
    let color = decide_color(&args);
    let _ = COLOR.set(color);
    if let Some(generated) = crate::shell::generated(&args) {
        return match generated {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::from(exit::USAGE)
            }
        };
    }
    // The shared front loads `--env-file` and refuses secrets given as flags; a clap error
    // is then rendered here, with its tips and our exit codes.
    let cli = match zakaz_core::cli::parse::<Cli>(args.clone()) {
        Ok(cli) => cli,
        Err(shared) => {
            let choice = if color {
                ColorChoice::Always
            } else {
                ColorChoice::Never
            };
            let parsed = Cli::command()
                .color(choice)
                .try_get_matches_from(&args)
                .and_then(|m| Cli::from_arg_matches(&m));
            // clap's own error (the shared front saw the same one) is rendered here; an
            // env file or a secret given as a flag is the shared front's to report.
            let from_clap = |err: &clap::Error| {
                let first = err.render().to_string();
                let first = first.lines().next().unwrap_or_default().trim().to_owned();
                shared.code == exit::OK || shared.message.starts_with(&first)
            };
            return match parsed {
                Err(err) if from_clap(&err) => clap_exit(&err, color),
                _ => {
                    if shared.code == exit::OK {
                        print!("{}", shared.message);
                    } else {
                        eprintln!("{}", shared.message);
                    }
                    ExitCode::from(shared.code)
                }
            };
        }
    };
    if let Err(err) = zakaz_core::logging::init_with(&cli.common.log, false) {
        eprintln!("error: {}", one_line(&err));
        return ExitCode::from(exit_code_for(&err));
    }
    let runtime = match zakaz_core::cli::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(zakaz_core::panic::catch(crate::run(cli))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let code = code_for(&err);
            let message = one_line(&err);
            if !message.is_empty() {
                tracing::error!("{message}");
            }
            ExitCode::from(code)
        }
    }
}

/// Help and version on stdout (0); every error as one line with clap's tips kept ("a similar
/// subcommand exists: 'status'"), exit 64 — 78 when the bad value came with a setting's
/// variable (an env file's), which is configuration, not usage.
fn clap_exit(err: &clap::Error, color: bool) -> ExitCode {
    let rendered = if color {
        err.render().ansi().to_string()
    } else {
        err.render().to_string()
    };
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            print!("{rendered}");
            return ExitCode::SUCCESS;
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprint!("{rendered}");
            return ExitCode::from(exit::USAGE);
        }
        _ => {}
    }
    let plain = err.render().to_string();
    let mut parts = Vec::new();
    let mut first_block = true;
    for line in plain.lines() {
        let line = line.trim();
        if line.is_empty() {
            first_block = false;
            continue;
        }
        if first_block || line.starts_with("tip:") {
            parts.push(line.to_owned());
        }
    }
    let mut message = parts.join(" ");
    let env = invalid_arg_env(err);
    let code = match (err.kind(), &env) {
        (
            ErrorKind::InvalidValue
            | ErrorKind::ValueValidation
            | ErrorKind::MissingRequiredArgument
            | ErrorKind::WrongNumberOfValues,
            Some(env),
        ) => {
            message.push_str(&format!(" (setting `{env}`)"));
            exit::CONFIG
        }
        _ => exit::USAGE,
    };
    eprintln!("{}", zakaz_core::secret::redact(&message));
    ExitCode::from(code)
}

/// The environment variable behind the argument a clap error names, if it has one.
fn invalid_arg_env(err: &clap::Error) -> Option<String> {
    let mut mentioned = Vec::new();
    match err.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => mentioned.push(arg.clone()),
        Some(ContextValue::Strings(args)) => mentioned.extend(args.iter().cloned()),
        _ => {}
    }
    let cmd = Cli::command();
    mentioned.iter().find_map(|flag| {
        let long = flag
            .trim_start_matches("--")
            .split([' ', '='])
            .next()
            .unwrap_or_default();
        env_of(&cmd, long)
    })
}

fn env_of(cmd: &clap::Command, long: &str) -> Option<String> {
    for arg in cmd.get_arguments() {
        if arg.get_long() == Some(long) {
            return arg.get_env().map(|e| e.to_string_lossy().into_owned());
        }
    }
    cmd.get_subcommands().find_map(|sub| env_of(sub, long))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_by_visible_width() {
        let t = table(
            &["A", "B"],
            &[
                ["camp_queue-1-copy1".to_owned(), "x".to_owned()],
                ["\x1b[31mq\x1b[0m".to_owned(), "y".to_owned()],
            ],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], format!("A{}B", " ".repeat(19)));
        assert_eq!(lines[1], "camp_queue-1-copy1  x");
        assert_eq!(lines[2], format!("\x1b[31mq\x1b[0m{}y", " ".repeat(19)));
    }
}
