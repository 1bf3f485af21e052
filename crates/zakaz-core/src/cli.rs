//! The start of every binary: `--env-file`, clap parsing with one-line errors, logging, the
//! tokio runtime, and the mapping of the final result to an exit code.

use std::ffi::OsString;
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory, Parser};

use crate::error::{exit, exit_code_for, one_line};
use crate::logging::LogArgs;

/// Flags every binary accepts.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Load `KEY=VALUE` settings from this file first (as systemd's `EnvironmentFile=` does);
    /// variables already set in the environment win.
    #[arg(long, value_name = "PATH", global = true)]
    pub env_file: Option<PathBuf>,

    #[command(flatten)]
    pub log: LogArgs,
}

/// A binary's top-level arguments.
pub trait JobCli: Parser {
    fn common(&self) -> &CommonArgs;
    /// Under systemd, send events to the journal natively so their fields become journal
    /// fields (`journalctl CID=123`), instead of one text line on stderr.
    const JOURNAL_FIELDS: bool = false;
}

/// What every loader takes: the common flags, ClickHouse, HTTP behaviour, the window of
/// dates and the clock.
#[derive(Debug, Clone, Args)]
pub struct LoaderArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub clickhouse: crate::ch::ClickHouseArgs,
    #[command(flatten)]
    pub http: crate::http::HttpArgs,
    #[command(flatten)]
    pub window: crate::time::WindowArgs,
    #[command(flatten)]
    pub clock: crate::time::ClockArgs,
}

/// Parse, set up logging, run `body` on a tokio runtime and turn the outcome into an exit
/// code. Errors are printed as one line with the whole cause chain and no secrets.
pub fn main<C, F, Fut>(body: F) -> ExitCode
where
    C: JobCli,
    F: FnOnce(C) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    crate::panic::install();
    let cli = match parse::<C>(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(Exit { code, message }) => {
            if code == exit::OK {
                print!("{message}");
            } else {
                eprintln!("{message}");
            }
            return ExitCode::from(code);
        }
    };
    if let Err(err) = crate::logging::init_with(&cli.common().log, C::JOURNAL_FIELDS) {
        eprintln!("error: {}", one_line(&err));
        return ExitCode::from(exit_code_for(&err));
    }
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(crate::panic::catch(body(cli))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{}", one_line(&err));
            ExitCode::from(exit_code_for(&err))
        }
    }
}

/// The tokio runtime every binary runs its work on (two workers: the machines are small); a
/// runtime that cannot start is printed and is the exit code.
pub fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|err| {
            eprintln!("error: cannot start the async runtime: {err}");
            ExitCode::from(exit::FAILURE)
        })
}

/// What to print and which code to exit with when parsing does not yield a command.
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

/// Load `--env-file` (if given) into the environment, then parse. Help and version come back
/// as `Exit` with code 0; every error as one line naming the setting.
pub fn parse<C: Parser>(args: Vec<OsString>) -> Result<C, Exit> {
    if let Some(path) = env_file_arg(&args)
        && let Err(err) = crate::env_file::load(&path)
    {
        return Err(Exit {
            code: exit_code_for(&err),
            message: format!("error: {}", one_line(&err)),
        });
    }
    if let Some(generated) = generated::<C>(&args) {
        return Err(match generated {
            Ok(text) => Exit {
                code: exit::OK,
                message: text,
            },
            Err(message) => Exit {
                code: exit::USAGE,
                message,
            },
        });
    }
    if let Some(message) = secret_flag::<C>(&args) {
        return Err(Exit {
            code: exit::USAGE,
            message,
        });
    }
    C::try_parse_from(args).map_err(|err| clap_exit::<C>(&err))
}

/// `--completions SHELL` and `--man` (hidden, taken before anything else is parsed, so no
/// setting is needed): the binary's shell completions or man page, generated from its own
/// flags, for `manage-timers install` to put where the system looks for them.
fn generated<C: CommandFactory>(args: &[OsString]) -> Option<Result<String, String>> {
    let first = args.get(1)?.to_str()?;
    let mut cmd = C::command();
    let name = cmd.get_name().to_owned();
    let mut out = Vec::new();
    match first {
        "--completions" => {
            let shell = args.get(2).and_then(|s| s.to_str()).unwrap_or_default();
            let Ok(shell) = shell.parse::<clap_complete::Shell>() else {
                return Some(Err(format!(
                    "error: `--completions` needs a shell: bash, zsh, fish, elvish or powershell (got `{shell}`)"
                )));
            };
            clap_complete::generate(shell, &mut cmd, name, &mut out);
        }
        "--man" => {
            if let Err(e) = clap_mangen::Man::new(cmd).render(&mut out) {
                return Some(Err(format!("error: cannot render the man page: {e}")));
            }
        }
        _ => return None,
    }
    Some(Ok(String::from_utf8_lossy(&out).into_owned()))
}

/// Secrets never come from the command line, where `ps`, shell history and sudo logs would
/// show them: a flag declared secret (`hide_env_values`) is refused, naming its variable.
fn secret_flag<C: CommandFactory>(args: &[OsString]) -> Option<String> {
    fn secrets(cmd: &clap::Command, out: &mut Vec<(String, String)>) {
        for arg in cmd.get_arguments() {
            if let (true, Some(long), Some(env)) =
                (arg.is_hide_env_values_set(), arg.get_long(), arg.get_env())
            {
                out.push((format!("--{long}"), env.to_string_lossy().into_owned()));
            }
        }
        for sub in cmd.get_subcommands() {
            secrets(sub, out);
        }
    }
    let mut known = Vec::new();
    secrets(&C::command(), &mut known);
    for arg in args.iter().skip(1) {
        let arg = arg.to_string_lossy();
        if arg == "--" {
            break;
        }
        let flag = arg.split('=').next().unwrap_or_default();
        if let Some((long, env)) = known.iter().find(|(long, _)| long == flag) {
            return Some(format!(
                "error: `{long}` would put a secret on the command line (visible in `ps` and shell history): set `{env}` in the environment or an env file instead"
            ));
        }
    }
    None
}

fn env_file_arg(args: &[OsString]) -> Option<PathBuf> {
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        let arg = arg.to_string_lossy();
        if arg == "--" {
            break;
        }
        if arg == "--env-file" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(path) = arg.strip_prefix("--env-file=") {
            return Some(PathBuf::from(path));
        }
    }
    None
}

fn clap_exit<C: CommandFactory>(err: &clap::Error) -> Exit {
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => Exit {
            code: exit::OK,
            message: err.render().to_string(),
        },
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => Exit {
            code: exit::USAGE,
            message: err.render().to_string(),
        },
        kind => {
            let code = match kind {
                ErrorKind::InvalidValue
                | ErrorKind::ValueValidation
                | ErrorKind::MissingRequiredArgument
                | ErrorKind::ArgumentConflict
                | ErrorKind::WrongNumberOfValues
                | ErrorKind::TooManyValues
                | ErrorKind::TooFewValues => exit::CONFIG,
                _ => exit::USAGE,
            };
            Exit {
                code,
                message: crate::secret::redact(&without_rejected_secret::<C>(
                    err,
                    one_line_clap::<C>(err),
                )),
            }
        }
    }
}

/// clap quotes the value it refused: a secret setting's value, or a URL's user and password,
/// is masked (a refused secret was never registered for redaction).
fn without_rejected_secret<C: CommandFactory>(err: &clap::Error, message: String) -> String {
    let Some(ContextValue::String(value)) = err.get(ContextKind::InvalidValue) else {
        return message;
    };
    if value.is_empty() {
        return message;
    }
    let secret_arg = match err.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => {
            let long = arg
                .trim_start_matches("--")
                .split([' ', '='])
                .next()
                .unwrap_or_default()
                .to_owned();
            is_secret_arg(&C::command(), &long)
        }
        _ => false,
    };
    let masked = if secret_arg {
        "***".to_owned()
    } else if let Some((scheme, rest)) = value.split_once("://")
        && let Some((_, host)) = rest.split_once('@')
    {
        format!("{scheme}://***@{host}")
    } else {
        return message;
    };
    message.replace(value.as_str(), &masked)
}

fn is_secret_arg(cmd: &clap::Command, long: &str) -> bool {
    cmd.get_arguments()
        .any(|a| a.get_long() == Some(long) && a.is_hide_env_values_set())
        || cmd.get_subcommands().any(|sub| is_secret_arg(sub, long))
}

/// clap's message up to its first blank line, folded into one line, plus the environment
/// variable behind each flag it mentions (operators set env files, not flags).
fn one_line_clap<C: CommandFactory>(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let mut parts = Vec::new();
    for line in rendered.lines() {
        let line = line.trim();
        if line.is_empty() {
            break;
        }
        parts.push(line);
    }
    let mut message = parts.join(" ");
    let mut mentioned = Vec::new();
    if let Some(ContextValue::String(arg)) = err.get(ContextKind::InvalidArg) {
        mentioned.push(arg.clone());
    }
    if let Some(ContextValue::Strings(args)) = err.get(ContextKind::InvalidArg) {
        mentioned.extend(args.iter().cloned());
    }
    let cmd = C::command();
    let mut envs = Vec::new();
    for flag in mentioned {
        let long = flag
            .trim_start_matches("--")
            .split([' ', '='])
            .next()
            .unwrap_or_default()
            .to_owned();
        if let Some(env) = env_of(&cmd, &long) {
            envs.push(format!("`{env}`"));
        }
    }
    if !envs.is_empty() {
        message.push_str(&format!(" (setting {})", envs.join(", ")));
    }
    message
}

fn env_of(cmd: &clap::Command, long: &str) -> Option<String> {
    for arg in cmd.get_arguments() {
        if arg.get_long() == Some(long) {
            return arg.get_env().map(|e| e.to_string_lossy().into_owned());
        }
    }
    cmd.get_subcommands().find_map(|sub| env_of(sub, long))
}

/// The whole library part of a binary whose job is not built yet: it accepts the common
/// settings (so `--help` and the configuration reference work) and exits 78 with one line,
/// which systemd units do not retry.
#[macro_export]
macro_rules! placeholder_binary {
    ($name:literal, $about:literal) => {
        #[derive(Debug, clap::Parser)]
        #[command(name = $name, version, about = $about)]
        pub struct Cli {
            #[command(flatten)]
            pub common: $crate::cli::CommonArgs,
        }

        impl $crate::cli::JobCli for Cli {
            fn common(&self) -> &$crate::cli::CommonArgs {
                &self.common
            }
        }

        pub async fn run(_cli: Cli) -> anyhow::Result<()> {
            Err($crate::error::config_error(concat!(
                "`",
                $name,
                "` is not built yet; its timer can stay enabled, every run says so and alerts once"
            )))
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Parser)]
    struct Demo {
        #[command(flatten)]
        common: CommonArgs,
        /// A required token.
        #[arg(long, env = "DEMO_TOKEN_FOR_CLI_TEST", hide_env_values = true)]
        demo_token: crate::Secret,
        #[arg(long, env = "DEMO_COUNT_FOR_CLI_TEST", default_value = "1")]
        demo_count: u32,
    }

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn missing_setting_is_one_line_naming_it() {
        let err = parse::<Demo>(args(&["demo"])).unwrap_err();
        assert_eq!(err.code, exit::CONFIG);
        assert!(!err.message.contains('\n'), "{}", err.message);
        assert!(
            err.message.contains("--demo-token") && err.message.contains("DEMO_TOKEN_FOR_CLI_TEST"),
            "{}",
            err.message
        );
    }

    #[test]
    fn malformed_setting_is_one_line_naming_it() {
        let err = parse::<Demo>(args(&["demo", "--demo-count", "many"])).unwrap_err();
        assert_eq!(err.code, exit::CONFIG);
        assert!(!err.message.contains('\n'), "{}", err.message);
        assert!(
            err.message.contains("DEMO_COUNT_FOR_CLI_TEST"),
            "{}",
            err.message
        );
        assert!(err.message.contains("'many'"), "{}", err.message);
    }

    #[test]
    fn env_file_argument_is_found_in_both_spellings() {
        assert_eq!(
            env_file_arg(&args(&["x", "--env-file", "a.env"])),
            Some(PathBuf::from("a.env"))
        );
        assert_eq!(
            env_file_arg(&args(&["x", "--env-file=b.env"])),
            Some(PathBuf::from("b.env"))
        );
        assert_eq!(env_file_arg(&args(&["x", "--", "--env-file=b.env"])), None);
    }

    #[test]
    fn a_secret_given_as_a_flag_is_refused_naming_its_variable() {
        for argv in [
            &["demo", "--demo-token", "hunter2"][..],
            &["demo", "--demo-token=hunter2"][..],
        ] {
            let err = parse::<Demo>(args(argv)).unwrap_err();
            assert_eq!(err.code, exit::USAGE);
            assert_eq!(
                err.message,
                "error: `--demo-token` would put a secret on the command line (visible in `ps` and shell history): set `DEMO_TOKEN_FOR_CLI_TEST` in the environment or an env file instead"
            );
            assert!(!err.message.contains("hunter2"));
        }
    }

    #[test]
    fn an_unknown_flag_is_a_usage_error_in_one_line() {
        let err = parse::<Demo>(args(&["demo", "--no-such-flag"])).unwrap_err();
        assert_eq!(err.code, exit::USAGE);
        assert_eq!(
            err.code, 64,
            "sysexits' EX_USAGE, which the units do not retry"
        );
        assert!(!err.message.contains('\n'), "{}", err.message);
        assert!(err.message.contains("--no-such-flag"), "{}", err.message);
    }

    #[test]
    fn missing_env_file_is_a_config_error() {
        let err = parse::<Demo>(args(&["demo", "--env-file", "/nonexistent/x.env"])).unwrap_err();
        assert_eq!(err.code, exit::CONFIG);
        assert!(
            err.message
                .starts_with("error: cannot read env file `/nonexistent/x.env`")
        );
    }
}
